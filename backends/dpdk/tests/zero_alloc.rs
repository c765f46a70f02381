//! The DPDK data path allocates nothing per packet: after warm-up, 10 000 batches through a
//! pipeline on `net_null` (PMD-allocated mbufs) and on a `net_ring` loopback (the same mbufs
//! circulating) run with a counting global allocator reading zero.

mod common;

use common::*;
use wirespeed_alloc_counter::{CountingAlloc, start_counting, stop_counting};
use wirespeed_core::{Batch, DropReason, PacketBuf, PerPacket, Pipeline, Port, ShardCtx, TxQueue, Verdict};
use wirespeed_dpdk::Mbuf;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn ttl_stage() -> PerPacket<impl FnMut(&mut ShardCtx, &mut Mbuf) -> Verdict> {
    PerPacket(|_: &mut ShardCtx, p: &mut Mbuf| match p.data_mut().get_mut(22) {
        Some(t) => {
            *t = t.wrapping_sub(1).max(1);
            Verdict::Continue
        }
        None => Verdict::Drop(DropReason::Truncated),
    })
}

// One test function: the counter is process-wide, so nothing else may run beside it.
#[test]
fn no_allocation_per_batch() {
    let vdevs = ["net_null0", "net_ring0"];
    let Some(mut null) = port(&vdevs, "net_null0", |_| {}) else { return };
    let Some(mut ring) = port(&vdevs, "net_ring0", |c| c.queues = 2) else { return };

    let (rx, tx) = null.queue_pair(0).unwrap();
    let mut p = Pipeline::new(rx, tx, ttl_stage());
    let mut cx = ShardCtx::new(0);
    for _ in 0..100 {
        p.run_once(&mut cx);
    }
    start_counting();
    for _ in 0..10_000 {
        p.run_once(&mut cx);
    }
    assert_eq!(stop_counting(), 0, "net_null pipeline allocated");
    assert_eq!(cx.counters.rx_packets, 10_100 * 32);

    let pool = ring.mempool();
    let (rx, mut tx) = ring.queue_pair(1).unwrap();
    let mut batch: Batch<Mbuf> = Batch::new();
    for i in 0..32u8 {
        batch
            .push(Mbuf::from_bytes(&pool, &udp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 64, i)).unwrap().unwrap())
            .unwrap();
    }
    assert_eq!(tx.tx_burst(&mut batch), 32);
    let mut p = Pipeline::new(rx, tx, ttl_stage());
    let mut cx = ShardCtx::new(1);
    for _ in 0..100 {
        p.run_once(&mut cx);
    }
    start_counting();
    for _ in 0..10_000 {
        assert_eq!(p.run_once(&mut cx), 32);
    }
    assert_eq!(stop_counting(), 0, "net_ring pipeline allocated");
}
