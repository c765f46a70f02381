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
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig, BindMode, TxStats, XdpMode};
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

/// The tests pin threads (one of them real-time) to CPU 0, where each pins its veth's NAPI
/// thread: run one at a time, or one starves another's sink.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A veth pair whose peer end (in its namespace) runs threaded NAPI with GRO on, its NAPI
/// thread pinned to CPU 0, and TSO off on our end: frames we send take the NAPI path, and the
/// veth pushes back when its ring is full.
fn pushing_back_veth() -> common::Veth {
    let veth = common::Veth::new(1);
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
    veth
}

/// Waits up to 2 s for the peer's receive counter to reach `before + want`; returns the count.
fn delivered_since(veth: &common::Veth, before: u64, want: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(2);
    let mut delivered = peer_rx_packets(veth) - before;
    while delivered < want && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
        delivered = peer_rx_packets(veth) - before;
    }
    delivered
}

#[test]
fn pushed_back_bursts_are_sent_later_not_dropped() {
    require_kernel!();
    let _serial = one_at_a_time();
    let veth = pushing_back_veth();
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());

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
    assert_eq!(delivered_since(&veth, before, accepted as u64), accepted as u64, "frames the peer received");
}

/// Sends `total` frames back to back from a thread pinned to CPU 0 (where the peer's NAPI
/// thread runs, so the sender outpaces the sink and the Tx ring fills), in bursts of 32, with
/// the given `tx_wait_us`. Returns (accepted, refused, Tx stats, frames the peer received).
fn saturate(tx_wait_us: u32, total: usize) -> (usize, usize, TxStats, u64) {
    let veth = pushing_back_veth();
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.mode = XdpMode::Copy;
    cfg.tx_wait_us = tx_wait_us;
    let mut port = AfXdpPort::open(cfg).unwrap();
    let (_rx, mut tx) = port.queue_pair(0).unwrap();
    let frame = common::udp_frame(theirs, ours, 7, 0, 64);
    let before = peer_rx_packets(&veth);
    let sender = std::thread::spawn(move || {
        assert!(core_affinity::set_for_current(core_affinity::CoreId { id: 0 }), "pin to cpu 0");
        let (mut accepted, mut refused) = (0usize, 0usize);
        let mut batch = Batch::new();
        let mut left = total;
        while left > 0 {
            while !batch.is_full() && left > 0 {
                // Frames of this UMEM run out only while the kernel holds them all: that is
                // the backpressure under test, so wait for one as the Tx queue would.
                let Some(mut b) = tx.alloc() else {
                    tx.idle();
                    std::thread::yield_now();
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
        let end = Instant::now() + Duration::from_secs(2);
        while tx.tx_backlog() > 0 && Instant::now() < end {
            tx.flush();
            std::thread::sleep(Duration::from_millis(1));
        }
        (accepted, refused, tx.tx_stats())
    });
    let (accepted, refused, stats) = sender.join().unwrap();
    let delivered = delivered_since(&veth, before, accepted as u64);
    eprintln!(
        "tx_wait_us {tx_wait_us}: accepted {accepted}, refused {refused}, delivered {delivered}; {stats:?}"
    );
    (accepted, refused, stats, delivered)
}

/// Saturation: a sender that outpaces the sink. With the default `tx_wait_us` every burst that
/// finds the Tx ring full waits (yielding the core to the NAPI thread that drains the veth)
/// and nothing is refused; with `tx_wait_us = 0` the same load is refused as `TxFull`, which
/// shows the load does fill the ring (the test can fail).
#[test]
fn a_saturated_tx_ring_is_waited_out_not_dropped() {
    require_kernel!();
    let _serial = one_at_a_time();
    const TOTAL: usize = 100_000;
    let (accepted, refused, stats, _) = saturate(0, TOTAL);
    assert!(
        refused > 0 && stats.ring_full > 0,
        "without waiting the ring never filled: the load provokes nothing"
    );
    assert_eq!((stats.waits, accepted + refused), (0, TOTAL));

    let (accepted, refused, stats, delivered) = saturate(AfXdpPortConfig::new("x").tx_wait_us, TOTAL);
    assert!(stats.waits > 0, "the Tx ring never filled: {stats:?}");
    assert_eq!(
        (refused, stats.ring_full, stats.wait_timeouts),
        (0, 0, 0),
        "refused under backpressure: {stats:?}"
    );
    assert_eq!(accepted, TOTAL);
    assert_eq!(delivered, TOTAL as u64, "frames the peer received");
}

/// A link that makes no progress (the sink's NAPI thread starved by a real-time sender on its
/// core) holds a burst for `tx_wait_us` and no longer; later bursts do not wait until the
/// kernel moves again, and once it does, bursts are waited out again.
#[test]
fn a_stuck_tx_ring_is_waited_on_once_then_refused_at_once() {
    require_kernel!();
    let _serial = one_at_a_time();
    const WAIT: Duration = Duration::from_millis(20);
    let veth = pushing_back_veth();
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.mode = XdpMode::Copy;
    cfg.tx_wait_us = WAIT.as_micros() as u32;
    let mut port = AfXdpPort::open(cfg).unwrap();
    let (_rx, mut tx) = port.queue_pair(0).unwrap();
    let frame = common::udp_frame(theirs, ours, 7, 0, 64);
    let sender = std::thread::spawn(move || {
        assert!(core_affinity::set_for_current(core_affinity::CoreId { id: 0 }), "pin to cpu 0");
        let fill = |tx: &mut wirespeed_afxdp::XdpTx, batch: &mut Batch<_>| {
            while !batch.is_full() {
                let Some(mut b) = tx.alloc() else { break };
                b.copy_from(&frame).unwrap();
                let _ = batch.push(b);
            }
        };
        // Real-time: the NAPI thread on this core cannot run while we do, so the veth ring,
        // then the Tx ring, fills and stays full.
        common::run(&["chrt", "-f", "-p", "1", &own_tid()]);
        let mut batch = Batch::new();
        let end = Instant::now() + Duration::from_secs(1);
        let mut first_refusal = None;
        while first_refusal.is_none() && Instant::now() < end {
            fill(&mut tx, &mut batch);
            let t = Instant::now();
            tx.tx_burst(&mut batch);
            if !batch.is_empty() {
                first_refusal = Some(t.elapsed());
            }
            batch.clear();
        }
        // The queue is stalled now: the next burst is refused without waiting.
        fill(&mut tx, &mut batch);
        let t = Instant::now();
        let sent_stalled = tx.tx_burst(&mut batch);
        let stalled_took = t.elapsed();
        let refused_stalled = batch.len();
        batch.clear();
        let at_stall = tx.tx_stats();
        // Let the NAPI thread drain the veth: the next full ring is waited out again.
        common::run(&["chrt", "-o", "-p", "0", &own_tid()]);
        std::thread::sleep(Duration::from_millis(100));
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..200 {
            fill(&mut tx, &mut batch);
            accepted += tx.tx_burst(&mut batch);
            refused += batch.len();
            batch.clear();
        }
        (
            first_refusal,
            sent_stalled,
            refused_stalled,
            stalled_took,
            at_stall,
            accepted,
            refused,
            tx.tx_stats(),
        )
    });
    let (first_refusal, sent_stalled, refused_stalled, stalled_took, at_stall, accepted, refused, after) =
        sender.join().unwrap();
    eprintln!(
        "first refusal after {first_refusal:?}; stalled burst: {sent_stalled} sent, {refused_stalled} refused in {stalled_took:?}; \
         at stall {at_stall:?}; then {accepted} accepted, {refused} refused; {after:?}"
    );
    let waited = first_refusal.expect("the Tx ring never filled in 1 s: nothing was stuck");
    assert!(waited >= WAIT, "refused after {waited:?}, before tx_wait_us ({WAIT:?}) without progress");
    assert!(waited < Duration::from_millis(500), "a stuck ring held the burst {waited:?}");
    assert_eq!(at_stall.wait_timeouts, 1, "{at_stall:?}");
    assert_eq!(sent_stalled, 0);
    assert!(refused_stalled > 0);
    assert!(stalled_took < WAIT / 2, "a stalled queue waited again: {stalled_took:?}");
    assert_eq!(refused, 0, "after the link moved again, bursts were refused: {after:?}");
    assert!(accepted > 0);
    assert_eq!(after.wait_timeouts, 1, "{after:?}");
}
