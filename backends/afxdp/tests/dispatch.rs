//! The software fallback for RSS: veth has no hardware RSS (the port reports every RSS item as
//! software), so one hardware queue feeds two shards through `wirespeed_core::rss`'s software
//! dispatcher. Shard 0 receives on AF_XDP queue 0 and hands shard 1 its flows; shard 1 sends
//! them out of queue 1, whose socket has its own UMEM — so those frames are copied across UMEMs
//! on Tx, and their original frames are freed on shard 1's thread.
#![cfg(target_os = "linux")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::peer_exchange;
use wirespeed_afxdp::ethtool::Placed;
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig, XdpBuf};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::rss::{
    DispatchFabric, Reta, RssConfig, RssGroup, RssHasher, SteeringEngine, SteeringPlan, SymmetricMode,
};
use wirespeed_core::{Pipeline, Port, ShardCtx};

#[test]
fn one_hardware_queue_two_shards_by_software_rss() {
    require_kernel!();
    let veth = common::Veth::new(2);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let rss = RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() };
    let hw = port.apply_rss(&rss, &Reta::round_robin(128, 2).unwrap());
    assert!(hw.items.iter().all(|i| matches!(i.placed, Placed::Software(_))), "veth: RSS in software\n{hw}");

    let (rx0, tx0) = port.queue_pair(0).unwrap();
    let (_rx1, tx1) = port.queue_pair(1).unwrap(); // nothing arrives here: the peer sends on queue 0
    let engine = Arc::new(
        SteeringEngine::new(RssHasher::new(&rss).unwrap(), SteeringPlan::rss_only(RssGroup::first(2)), 2)
            .unwrap(),
    );
    let mut reta = Publisher::new(engine.default_reta().unwrap());
    let fabric = DispatchFabric::<XdpBuf>::new(1, 2, 64).unwrap();
    let dispatcher = fabric.dispatcher(0, engine.clone(), reta.subscribe(), Some(0)).unwrap();
    let receiver = fabric.receiver(1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s0 = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut p = Pipeline::new(rx0, tx0, (dispatcher,));
            let mut cx = ShardCtx::new(0);
            while !stop.load(Ordering::Relaxed) {
                p.run_once(&mut cx);
            }
            cx.counters
        })
    };
    let s1 = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut p = Pipeline::new(receiver, tx1, ());
            let mut cx = ShardCtx::new(1);
            while !stop.load(Ordering::Relaxed) {
                p.run_once(&mut cx);
            }
            cx.counters
        })
    };

    // 64 flows (source ports), 16 frames each, all sent on the peer's queue 0 (CPU 0).
    let frames: Vec<Vec<u8>> = (0..1024u32)
        .map(|i| common::udp_frame(ours, theirs, 1000 + (i % 64) as u16, i, 64 + (i as usize * 7) % 900))
        .collect();
    let mut expected = frames.clone();
    let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
    let mut back = peer_exchange(ns, dev, frames, 1024, |_| true, Duration::from_secs(5), Some(0));
    stop.store(true, Ordering::Relaxed);
    let (c0, c1) = (s0.join().unwrap(), s1.join().unwrap());
    // Per-flow order holds, but the two shards interleave: compare as sorted sets.
    back.sort();
    expected.sort();
    assert_eq!(back.len(), expected.len(), "shard 0: {c0}; shard 1: {c1}");
    assert!(back == expected, "every frame back byte for byte");
    assert!(
        c0.tx_packets > 0 && c1.tx_packets > 0,
        "both shards forwarded: {} and {}",
        c0.tx_packets,
        c1.tx_packets
    );
    assert_eq!(c0.handed_off, c1.rx_packets);
    assert_eq!(c0.tx_packets + c1.tx_packets, 1024);
    assert_eq!(c0.total_drops() + c1.total_drops(), 0, "shard 0: {c0}; shard 1: {c1}");
}
