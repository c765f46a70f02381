//! Idle policies on a real AF_XDP socket: `Block` sleeps in `poll()` and wakes when a frame
//! arrives (the exchange below could not finish in time if it only woke at its timeout), using
//! next to no CPU while idle; `PreferBusyPoll` sets the socket's busy-poll options and forwards.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::peer_exchange;
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig, XdpRx};
use wirespeed_core::runtime::IdlePolicy;
use wirespeed_core::{PerPacket, Pipeline, Port, RxQueue, ShardCtx, Verdict, Worker};

/// CPU time the calling thread has used (`/proc/thread-self/schedstat`, first field, ns).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
}

/// Echoes `n` frames through a pipeline run the way the shard loop runs it under `policy`.
fn echo(policy: IdlePolicy, n: u32) -> (usize, ShardCtx) {
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut pipeline = Pipeline::new(rx, tx, PerPacket(|_: &mut ShardCtx, _: &mut _| Verdict::Continue));
    Worker::set_idle_policy(&mut pipeline, policy);
    let frames: Vec<Vec<u8>> = (0..n).map(|i| common::udp_frame(ours, theirs, 9, i, 200)).collect();
    let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
    let peer = std::thread::spawn(move || {
        peer_exchange(ns, dev, frames, n as usize, |_| true, Duration::from_secs(5), None)
    });
    let mut cx = ShardCtx::new(0);
    let timeout = match policy {
        IdlePolicy::Block { timeout } => Some(timeout),
        _ => None,
    };
    while !peer.is_finished() {
        if pipeline.run_once(&mut cx) == 0
            && let Some(t) = timeout
        {
            assert!(Worker::wait(&mut pipeline, t), "an AF_XDP queue can wait");
        }
    }
    (peer.join().unwrap().len(), cx)
}

#[test]
fn block_wakes_on_arrival_and_idles_without_cpu() {
    require_kernel!();
    // Woken only by its 2 s timeout, 600 frames in windows of 64 would need about 20 s.
    let (back, cx) = echo(IdlePolicy::Block { timeout: Duration::from_secs(2) }, 600);
    assert_eq!(back, 600, "{}", cx.counters);
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);

    // Idle: 300 ms of waiting on an empty queue costs (far) less than 30 ms of CPU.
    let veth = common::Veth::new(1);
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let (mut rx, _tx): (XdpRx, _) = port.queue_pair(0).unwrap();
    rx.set_idle_policy(IdlePolicy::BLOCK);
    let mut batch = wirespeed_core::Batch::new();
    let (start, cpu0) = (Instant::now(), thread_cpu());
    while start.elapsed() < Duration::from_millis(300) {
        if rx.rx_burst(&mut batch) == 0 {
            rx.wait(Duration::from_millis(10));
        }
    }
    let cpu = thread_cpu() - cpu0;
    assert!(cpu < Duration::from_millis(30), "{cpu:?} of CPU in 300 ms of blocking idle");
}

#[test]
fn prefer_busy_poll_sets_the_socket_up_and_forwards() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let (mut rx, _tx) = port.queue_pair(0).unwrap();
    rx.set_idle_policy(IdlePolicy::BUSY_POLL);
    assert_eq!(rx.idle_policy(), (IdlePolicy::BUSY_POLL, None), "the kernel took the busy-poll options");
    drop((rx, _tx, port, veth));

    let (back, cx) = echo(IdlePolicy::BUSY_POLL, 500);
    assert_eq!(back, 500, "{}", cx.counters);
}
