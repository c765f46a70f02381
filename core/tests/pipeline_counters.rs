//! The pipeline's byte counters come from the queues' `rx_burst_bytes` / `tx_burst_bytes`: the
//! default implementations must count exactly the packets received and the packets a queue
//! accepted, also when a queue takes only part of a batch.

use wirespeed_core::backend::mem::{MemConfig, MemPort};
use wirespeed_core::{
    Batch, BufferPool, DropReason, PacketBuf, Pipeline, PoolBuf, PoolConfig, Port, ShardCtx, TxQueue,
};

/// Accepts at most `take` packets per burst, keeping their lengths.
struct Partial {
    take: usize,
    sent: Vec<usize>,
}

impl TxQueue for Partial {
    type Buf = PoolBuf;
    fn tx_burst(&mut self, batch: &mut Batch<PoolBuf>) -> usize {
        let n = batch.len().min(self.take);
        for p in batch.drain(..n) {
            self.sent.push(p.len());
        }
        n
    }
}

#[test]
fn byte_counters_count_what_was_received_and_what_a_partial_tx_took() {
    let pool = BufferPool::new(PoolConfig { buffers: 64, ..PoolConfig::default() }).unwrap();
    let (mut port, h) = MemPort::new(MemConfig::default(), pool);
    let (rx, _) = port.queue_pair(0).unwrap();
    let lens = [60usize, 61, 200, 1000, 64, 1514, 90];
    for (i, &l) in lens.iter().enumerate() {
        h.inject(0, &vec![i as u8; l]).unwrap();
    }
    let mut p = Pipeline::new(rx, Partial { take: 3, sent: Vec::new() }, ());
    let mut cx = ShardCtx::new(0);
    assert_eq!(p.run_once(&mut cx), lens.len());
    assert_eq!(cx.counters.rx_packets, lens.len() as u64);
    assert_eq!(cx.counters.rx_bytes, lens.iter().sum::<usize>() as u64);
    assert_eq!(cx.counters.tx_packets, 3);
    assert_eq!(cx.counters.tx_bytes, lens[..3].iter().sum::<usize>() as u64);
    assert_eq!(cx.counters.drops_of(DropReason::TxFull), (lens.len() - 3) as u64);
}
