//! Two queues, two shards: a veth with `numtxqueues 2 numrxqueues 2`; the peer sends from two
//! threads pinned to CPUs 0 and 1, so its raw sockets (which bypass the qdisc) transmit on
//! queues 0 and 1 and the frames arrive on our receive queues 0 and 1. Each queue is served by
//! its own shard thread; every frame must come back byte for byte, on the queue it came in on.
#![cfg(target_os = "linux")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::peer_exchange;
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig, XdpRx, XdpTx};
use wirespeed_core::{DropReason, PacketBuf, PerPacket, Pipeline, Port, ShardCtx, Verdict};

fn shard(rx: XdpRx, tx: XdpTx, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let queue = rx.queue();
        // Every frame a shard sees must be stamped with its own queue (else a counted drop,
        // which the assertion below catches).
        let stage = PerPacket(move |_: &mut ShardCtx, p: &mut wirespeed_afxdp::XdpBuf| {
            if p.meta().rx_queue == queue {
                Verdict::Continue
            } else {
                Verdict::Drop(DropReason::Unsupported)
            }
        });
        let mut pipeline = Pipeline::new(rx, tx, stage);
        let mut cx = ShardCtx::new(queue as usize);
        while !stop.load(Ordering::Relaxed) {
            if pipeline.run_once(&mut cx) == 0 {
                std::thread::yield_now();
            }
        }
        assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
        assert_eq!(cx.counters.rx_packets, cx.counters.tx_packets);
        cx.counters.rx_packets
    })
}

#[test]
fn two_queues_two_shards_traffic_on_both() {
    require_kernel!();
    if core_affinity::get_core_ids().is_none_or(|c| c.len() < 2) {
        let why = "needs two CPUs to steer the peer's frames to two queues";
        assert!(std::env::var_os("WIRESPEED_AFXDP_REQUIRE_KERNEL").is_none(), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let veth = common::Veth::new(2);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    assert_eq!(port.info().queues, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let (rx0, tx0) = port.queue_pair(0).unwrap();
    let (rx1, tx1) = port.queue_pair(1).unwrap();
    eprintln!("{}", port.report());
    let shards = [shard(rx0, tx0, stop.clone()), shard(rx1, tx1, stop.clone())];

    // Sender A (CPU 0) uses UDP source port 1000, sender B (CPU 1) port 2000.
    let set = |sport: u16| -> Vec<Vec<u8>> {
        (0..1000u32)
            .map(|i| common::udp_frame(ours, theirs, sport, i, 64 + (i as usize * 13) % 1400))
            .collect()
    };
    let (a, b) = (set(1000), set(2000));
    let peers: Vec<_> = [(a.clone(), 0), (b.clone(), 1)]
        .into_iter()
        .map(|(frames, cpu)| {
            let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
            let sport = [frames[0][34], frames[0][35]];
            let mine = move |f: &[u8]| f.len() > 36 && f[34..36] == sport;
            std::thread::spawn(move || {
                peer_exchange(ns, dev, frames, 1000, mine, Duration::from_secs(5), Some(cpu))
            })
        })
        .collect();
    let back: Vec<Vec<Vec<u8>>> = peers.into_iter().map(|p| p.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u64> = shards.into_iter().map(|s| s.join().unwrap()).collect();

    // Both raw sockets see every frame coming back; each kept its own flow's.
    for (sent, got) in [(&a, &back[0]), (&b, &back[1])] {
        let sport = &sent[0][34..36];
        let mine: Vec<&Vec<u8>> = got.iter().filter(|f| f.len() > 36 && &f[34..36] == sport).collect();
        assert_eq!(mine.len(), sent.len(), "flow {sport:?}: {} of {} back", mine.len(), sent.len());
        for (i, (g, s)) in mine.iter().zip(sent.iter()).enumerate() {
            assert_eq!(*g, s, "flow {sport:?} frame {i} differs");
        }
    }
    assert_eq!(counts.iter().sum::<u64>(), 2000);
    assert_eq!(
        counts,
        vec![1000, 1000],
        "each sender's CPU picks one queue, so each shard gets one flow set"
    );
    drop(port);
    if let Err(shown) = veth.detached() {
        panic!("detached: ip link still shows {shown}");
    }
}
