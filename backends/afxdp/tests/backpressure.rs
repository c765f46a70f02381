//! Tx backpressure on a real kernel. A veth whose peer runs threaded NAPI (GRO on there, TSO off
//! on our end so the frames take that path) accepts at most its 256-entry ring until the peer's
//! NAPI thread drains it, and then pushes back: a copy-mode `sendto` returns early and leaves
//! descriptors on the Tx ring. The sender here runs as a real-time thread on the core the NAPI
//! thread is pinned to, in bursts of 384 frames (so every burst overruns the ring) separated by
//! pauses in which it polls its (empty) Rx queue, as an idle shard does. The average rate is
//! far below what the sink absorbs, so nothing may be refused: every frame must be accepted by
//! `tx_burst` (no `TxFull`) and reach the peer.
//!
//! With a single kick per burst (the backend before this test), the backlog left by each
//! pushback was never worked off — every later kick sent at most one burst's worth — until the
//! Tx ring (or the UMEM) was full and bursts were refused.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use wirespeed_afxdp::ethtool::{self, Offload};
use wirespeed_afxdp::peer::enter_netns;
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig, BindMode, XdpMode};
use wirespeed_core::{Batch, PacketBuf, Port, RxQueue, TxQueue};

/// Frames per burst (more than the veth ring's 256), bursts, pause between bursts.
const BURST: usize = 384;
const BURSTS: usize = 40;
const PAUSE: Duration = Duration::from_millis(3);

fn peer_rx_packets(veth: &common::Veth) -> u64 {
    let path = format!("/sys/class/net/{}/statistics/rx_packets", veth.peer);
    common::output(&["ip", "netns", "exec", &veth.ns, "cat", &path]).trim().parse().unwrap()
}

/// Thread id of the calling thread (`/proc/thread-self` → `PID/task/TID`).
fn own_tid() -> String {
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_string_lossy().into_owned()
}

/// Pid of the NAPI kernel thread of `dev` (`napi/DEV-ID`), waiting up to a second for it.
fn napi_thread(dev: &str) -> Option<String> {
    let prefix = format!("napi/{dev}-");
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.starts_with(&prefix) {
                return Some(e.file_name().to_string_lossy().into_owned());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn pushed_back_bursts_are_sent_later_not_dropped() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    ethtool::set_offload(&veth.local, Offload::Tso, false).unwrap();
    let (ns, peer) = (veth.ns.clone(), veth.peer.clone());
    std::thread::spawn(move || {
        enter_netns(&ns).unwrap();
        ethtool::set_offload(&peer, Offload::Gro, true).unwrap();
    })
    .join()
    .unwrap();
    let threaded = format!("echo 1 > /sys/class/net/{}/threaded", veth.peer);
    common::run(&["ip", "netns", "exec", &veth.ns, "sh", "-c", &threaded]);
    let napi = napi_thread(&veth.peer).expect("the peer's threaded NAPI kernel thread");
    common::run(&["taskset", "-pc", "0", &napi]);

    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.mode = XdpMode::Copy;
    let mut port = AfXdpPort::open(cfg).unwrap();
    let (mut rx, mut tx) = port.queue_pair(0).unwrap();
    assert_eq!(tx.bind_mode(), BindMode::Copy);
    let frame = common::udp_frame(theirs, ours, 7, 0, 64);
    let before = peer_rx_packets(&veth);

    let sender = std::thread::spawn(move || {
        assert!(core_affinity::set_for_current(core_affinity::CoreId { id: 0 }), "pin to cpu 0");
        // Real-time, so the NAPI thread on this core runs only in the pauses: every burst
        // overruns the veth ring.
        common::run(&["chrt", "-f", "-p", "1", &own_tid()]);
        let (mut accepted, mut refused, mut no_frame) = (0usize, 0usize, 0usize);
        let mut batch = Batch::new();
        let mut empty = Batch::new();
        for _ in 0..BURSTS {
            let mut left = BURST;
            while left > 0 {
                while !batch.is_full() && left > 0 {
                    let Some(mut b) = tx.alloc() else {
                        no_frame += 1;
                        left -= 1;
                        continue;
                    };
                    b.copy_from(&frame).unwrap();
                    let _ = batch.push(b);
                    left -= 1;
                }
                accepted += tx.tx_burst(&mut batch);
                refused += batch.len();
                batch.clear();
            }
            let end = Instant::now() + PAUSE;
            while Instant::now() < end {
                assert_eq!(rx.rx_burst(&mut empty), 0, "nothing is sent to us");
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        // Whatever is still queued goes out now (bounded wait).
        let end = Instant::now() + Duration::from_secs(2);
        while tx.tx_backlog() > 0 && Instant::now() < end {
            tx.flush();
            std::thread::sleep(Duration::from_millis(1));
        }
        // Reclaim the last completions (posted once the peer's NAPI has freed the frames).
        let end = Instant::now() + Duration::from_secs(1);
        while rx.free_frames() < 4096 - 4096 / 8 && Instant::now() < end {
            tx.flush();
            std::thread::sleep(Duration::from_millis(1));
        }
        // A queue nothing arrives on keeps only its first fill target (an eighth of the UMEM)
        // with the kernel, not half of it.
        assert_eq!(rx.fill_target(), 4096 / 8);
        assert!(rx.free_frames() >= 4096 - 4096 / 8, "{} frames free", rx.free_frames());
        (accepted, refused, no_frame, tx.tx_stats(), tx.tx_budget(), tx.tx_backlog())
    });
    let (accepted, refused, no_frame, stats, budget, backlog) = sender.join().unwrap();
    eprintln!(
        "accepted {accepted}, refused {refused}, no frame {no_frame}; {stats:?}; budget {budget}; backlog {backlog}"
    );
    assert!(
        stats.backlogged > 0,
        "the veth never pushed back (kernel without veth Tx backpressure?): the test provoked nothing"
    );
    assert_eq!((refused, no_frame), (0, 0), "bursts refused (TxFull) or out of frames under backpressure");
    assert_eq!(accepted, BURST * BURSTS);
    assert_eq!(backlog, 0, "the backlog drained");
    // Every accepted frame reached the peer (its counter may lag the last NAPI poll a little).
    let end = Instant::now() + Duration::from_secs(2);
    let mut delivered = peer_rx_packets(&veth) - before;
    while delivered < accepted as u64 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
        delivered = peer_rx_packets(&veth) - before;
    }
    assert_eq!(delivered, accepted as u64, "frames the peer received");
}
