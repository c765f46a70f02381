//! Zero heap allocation per packet on AF_XDP: once warm, a shard receiving from the socket,
//! running a stage and transmitting back out allocates nothing (counted by a global allocator
//! that counts the shard thread's allocations only; the peer's traffic thread is not counted).
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::peer_exchange;
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig};
use wirespeed_alloc_counter::{CountingAlloc, allocations_during};
use wirespeed_core::{PacketBuf, PerPacket, Pipeline, Port, ShardCtx, Verdict};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn afxdp_rx_stage_tx_allocates_nothing() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    // A stage that touches the bytes: swap the MAC addresses.
    let swap = PerPacket(|_: &mut ShardCtx, p: &mut wirespeed_afxdp::XdpBuf| {
        let d = p.data_mut();
        for i in 0..6 {
            d.swap(i, i + 6);
        }
        Verdict::Continue
    });
    let mut pipeline = Pipeline::new(rx, tx, swap);
    let mut cx = ShardCtx::new(0);
    let round = |n: u32, cx: &mut ShardCtx, pipeline: &mut Pipeline<_, _, _>| {
        let frames: Vec<Vec<u8>> = (0..n).map(|i| common::udp_frame(ours, theirs, 9, i, 128)).collect();
        let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
        let peer = std::thread::spawn(move || {
            peer_exchange(ns, dev, frames, n as usize, |_| true, Duration::from_secs(5), None)
        });
        let allocs = allocations_during(|| {
            while !peer.is_finished() {
                pipeline.run_once(cx);
            }
        });
        (allocs, peer.join().unwrap().len())
    };
    let (_, back) = round(1000, &mut cx, &mut pipeline);
    assert_eq!(back, 1000, "warm-up");
    assert_eq!(allocations_during(|| drop(std::hint::black_box(Box::new(7u64)))), 1, "the counter counts");
    let (allocs, back) = round(5000, &mut cx, &mut pipeline);
    assert_eq!(back, 5000);
    assert_eq!(allocs, 0, "{allocs} heap allocations while forwarding 5000 frames");
    assert_eq!(cx.counters.tx_packets, 6000);
}

/// The same with jumbo frames at MTU 9000: chains gathered into jumbo slots and sent as chains
/// allocate nothing either.
#[test]
fn afxdp_jumbo_rx_stage_tx_allocates_nothing() {
    require_kernel!();
    let veth = common::Veth::new(1);
    for (dev, ns) in [(&veth.local, None), (&veth.peer, Some(&veth.ns))] {
        let mut args = vec!["ip"];
        if let Some(ns) = ns {
            args.extend(["-n", ns.as_str()]);
        }
        args.extend(["link", "set", "dev", dev.as_str(), "mtu", "9000"]);
        common::run(&args);
    }
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    assert!(rx.multi_buffer());
    let mut pipeline = Pipeline::new(
        rx,
        tx,
        PerPacket(|_: &mut ShardCtx, _: &mut wirespeed_afxdp::XdpBuf| Verdict::Continue),
    );
    let mut cx = ShardCtx::new(0);
    let round = |n: u32, cx: &mut ShardCtx, pipeline: &mut Pipeline<_, _, _>| {
        let frames: Vec<Vec<u8>> = (0..n).map(|i| common::udp_frame(ours, theirs, 9, i, 9014)).collect();
        let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
        let peer = std::thread::spawn(move || {
            peer_exchange(ns, dev, frames, n as usize, |_| true, Duration::from_secs(10), None)
        });
        let allocs = allocations_during(|| {
            while !peer.is_finished() {
                pipeline.run_once(cx);
            }
        });
        (allocs, peer.join().unwrap().len())
    };
    let (_, back) = round(500, &mut cx, &mut pipeline);
    assert_eq!(back, 500, "warm-up: {}", cx.counters);
    let (allocs, back) = round(2000, &mut cx, &mut pipeline);
    assert_eq!(back, 2000);
    assert_eq!(allocs, 0, "{allocs} heap allocations while forwarding 2000 jumbo frames");
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
}
