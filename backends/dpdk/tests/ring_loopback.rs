//! `net_ring` loopback: what a Tx queue sends comes back on the Rx queue of the same index.
//! Frames go out and back byte for byte in mbufs (no copy), a pipeline runs an unchanged stage
//! on them, and every mbuf returns to the mempool.

mod common;

use common::*;
use wirespeed_core::{
    Batch, DropReason, PacketBuf, PerPacket, Pipeline, Port, RxQueue, ShardCtx, TxQueue, Verdict,
};
use wirespeed_dpdk::Mbuf;

const VDEVS: [&str; 1] = ["net_ring0"];

#[test]
fn frames_round_trip_through_the_ring_unchanged() {
    let _g = serial();
    let Some(mut port) = port(&VDEVS, "net_ring0", |_| {}) else { return };
    assert_eq!(port.driver(), "net_ring");
    assert!(port.link().unwrap().up);
    // The port's frame limit is its MTU (DPDK's default 1500) plus the Ethernet header, not
    // the 2048-byte mbuf room: the control plane sizes its frames by it.
    assert_eq!(port.info().max_frame, 1514);
    let pool = port.mempool();
    let base = pool.in_use();
    let (mut rx, mut tx) = port.queue_pair(0).unwrap();
    assert!(port.queue_pair(0).is_err(), "a queue pair is handed out once");

    let frames: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            udp4([192, 0, 2, 1], [198, 51, 100, i], 1000 + u16::from(i), 53, 18 + usize::from(i) * 50, i)
        })
        .collect();
    let mut batch: Batch<Mbuf> = Batch::new();
    for f in &frames {
        let m = Mbuf::from_bytes(&pool, f).unwrap().unwrap();
        assert!(m.headroom() >= 128, "headroom for ESP encapsulation");
        batch.push(m).unwrap();
    }
    assert_eq!(tx.tx_burst(&mut batch), frames.len());
    assert!(batch.is_empty());

    let mut got: Batch<Mbuf> = Batch::new();
    assert_eq!(rx.rx_burst(&mut got), frames.len());
    for (m, f) in got.iter().zip(&frames) {
        assert_eq!(m.data(), &f[..]);
        assert_eq!(m.meta().rx_queue, 0);
        assert_eq!(m.meta().rss_hash, None, "net_ring delivers no RSS hash");
    }
    assert_eq!(pool.in_use() - base, frames.len() as u32);
    got.clear();
    assert_eq!(pool.in_use(), base, "dropped mbufs are back in the mempool");

    let c = port.counters().unwrap();
    assert_eq!(c.rx_packets, frames.len() as u64);
    assert_eq!(c.tx_packets, frames.len() as u64);
    assert!(!c.xstats.is_empty());
    assert_eq!(c.xstat("rx_good_packets"), Some(frames.len() as u64));
}

#[test]
fn a_pipeline_stage_runs_unchanged_on_mbufs() {
    let _g = serial();
    let Some(mut port) = port(&VDEVS, "net_ring0", |c| c.queues = 2) else { return };
    let pool = port.mempool();
    let base = pool.in_use();
    let (rx, mut tx) = port.queue_pair(1).unwrap();
    // Preload ring 1; the pipeline then loops the frames through itself.
    let mut batch: Batch<Mbuf> = Batch::new();
    for i in 0..32u8 {
        batch
            .push(Mbuf::from_bytes(&pool, &udp4([10, 0, 0, 1], [10, 0, 0, 2], 7, 9, 40, i)).unwrap().unwrap())
            .unwrap();
    }
    assert_eq!(tx.tx_burst(&mut batch), 32);
    let mut ttls = Vec::new();
    // Decrement the IPv4 TTL; a stage written for any PacketBuf.
    let stage = PerPacket(|_: &mut ShardCtx, p: &mut Mbuf| match p.data_mut().get_mut(22) {
        Some(t) if *t > 62 => {
            *t -= 1;
            ttls.push(*t);
            Verdict::Continue
        }
        Some(_) => Verdict::Drop(DropReason::TtlExpired),
        None => Verdict::Drop(DropReason::Truncated),
    });
    let mut pipeline = Pipeline::new(rx, tx, stage);
    let mut cx = ShardCtx::new(0);
    assert_eq!(pipeline.run_once(&mut cx), 32);
    assert_eq!(pipeline.run_once(&mut cx), 32);
    assert_eq!(pipeline.run_once(&mut cx), 32, "third pass: TTL 62 → dropped");
    assert_eq!(pipeline.run_once(&mut cx), 0);
    drop(pipeline);
    assert_eq!(ttls.len(), 64);
    assert!(ttls[..32].iter().all(|t| *t == 63) && ttls[32..].iter().all(|t| *t == 62));
    assert_eq!(cx.counters.drops_of(DropReason::TtlExpired), 32);
    assert_eq!(cx.counters.tx_packets, 64);
    assert_eq!(pool.in_use(), base, "every mbuf back in the pool");
}

#[test]
fn mbuf_extent_operations_match_the_packetbuf_contract() {
    let _g = serial();
    let Some(port) = port(&VDEVS, "net_ring0", |_| {}) else { return };
    let pool = port.mempool();
    let mut m = Mbuf::from_bytes(&pool, &[1, 2, 3, 4]).unwrap().unwrap();
    let (head, tail) = (m.headroom(), m.tailroom());
    assert_eq!(head, port.eal().mbuf_headroom());
    m.prepend(78).unwrap().copy_from_slice(&[0xee; 78]);
    assert_eq!(m.len(), 82);
    assert_eq!(&m.data()[78..], &[1, 2, 3, 4]);
    assert_eq!(m.headroom(), head - 78);
    m.trim_front(78).unwrap();
    assert_eq!(m.data(), &[1, 2, 3, 4]);
    m.extend(16).unwrap().fill(9);
    assert_eq!(m.tailroom(), tail - 16);
    m.set_len(2).unwrap();
    assert_eq!(m.data(), &[1, 2]);
    assert!(matches!(m.prepend(head + 1), Err(wirespeed_core::BufError::NoHeadroom { .. })));
    assert!(matches!(m.trim_front(3), Err(wirespeed_core::BufError::TooShort { trim: 3, len: 2 })));
    assert!(matches!(m.set_len(2 + tail + 16 + 1), Err(wirespeed_core::BufError::NoTailroom { .. })));
    assert_eq!(m.data(), &[1, 2], "failed operations change nothing");
}

#[test]
fn rss_on_a_device_without_it_leaves_every_type_to_software() {
    let _g = serial();
    let rss = wirespeed_dpdk::RssSettings::default();
    let Some(mut port) = port(&VDEVS, "net_ring0", |c| c.rss = Some(rss.clone())) else { return };
    let r = port.hw_rss().unwrap().report().clone();
    assert_eq!(r.not_in_hardware, wirespeed_core::rss::HashTypes::ALL, "{r}");
    assert_eq!(r.reta_size, 0, "net_ring has no RETA");
    let ctl = port.rss().unwrap();
    assert!(ctl.set_reta(&wirespeed_core::rss::Reta::round_robin(8, 1).unwrap()).is_err());
}

#[test]
fn shard_threads_give_their_lcore_back_when_they_exit() {
    let _g = serial();
    let Some(eal) = eal(&VDEVS) else { return };
    // RTE_MAX_LCORE is 128 in Debian's build: without unregistering, this would run out.
    for i in 0..300 {
        std::thread::spawn(move || eal.register_thread())
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("thread {i}: {e}"));
    }
}

/// The metadata of a received mbuf is built on first use (Rx records only port and queue), and
/// then says what an eagerly built one would: the port index, the queue, the NIC's RSS hash;
/// `out_port` answers 0 without building it.
#[test]
fn metadata_is_built_on_first_use_with_port_queue_and_hash() {
    use wirespeed_core::meta::flags;
    let _g = serial();
    let Some(mut port) = port(&VDEVS, "net_ring0", |c| c.port_index = 3) else { return };
    let pool = port.mempool();
    let (mut rx, mut tx) = port.queue_pair(0).unwrap();
    let frame = udp4([192, 0, 2, 1], [198, 51, 100, 2], 1000, 53, 64, 7);
    let mut batch: Batch<Mbuf> = Batch::new();
    for _ in 0..3 {
        batch.push(Mbuf::from_bytes(&pool, &frame).unwrap().unwrap()).unwrap();
    }
    assert_eq!(tx.tx_burst(&mut batch), 3);
    assert_eq!(rx.rx_burst(&mut batch), 3);
    let [a, b, c] = batch.as_mut_slice() else { panic!("3 packets") };

    // Built by `meta()`: port index and queue from Rx, no hash (net_ring gives none).
    assert_eq!(a.out_port(), 0);
    assert_eq!(a.meta().rx_port, 3);
    assert_eq!(a.meta().rx_queue, 0);
    assert_eq!(a.meta().rss_hash, None);
    assert!(!a.meta().has(flags::HW_RSS));

    // A hash stored in the mbuf before the metadata is built is picked up when it is.
    b.set_hw_rss_hash(0x1234_5678);
    assert_eq!(b.hw_rss_hash(), Some(0x1234_5678));
    assert_eq!(b.meta().rss_hash, Some(0x1234_5678));
    assert!(b.meta().has(flags::HW_RSS));
    assert_eq!(b.meta().rx_port, 3);

    // After it is built, writes go to it and the hash setter updates it too.
    c.meta_mut().out_port = 2;
    assert_eq!(c.out_port(), 2);
    c.set_hw_rss_hash(0xdead_beef);
    assert_eq!(c.meta().rss_hash, Some(0xdead_beef));
    assert_eq!(c.meta().out_port, 2);
    batch.clear();
}
