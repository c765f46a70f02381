//! Pipeline benchmarks: whole batches through Rx → stages → Tx on one shard.
//!
//! `pipeline/null_io`: null Rx (copy=false, like DPDK net_null copy=0) → pipeline that forwards
//! untouched → null Tx. One iteration = one batch of 32 packets. Peer: `dpdk-testpmd
//! --forward-mode=io` on two net_null ports (`../shared/tools/peer-anchors.sh io`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wirespeed_core::backend::null::{NullConfig, NullPort};
use wirespeed_core::{BATCH_SIZE, BufferPool, Pipeline, PoolConfig, Port, ShardCtx};

fn null_io(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    let pool = BufferPool::new(PoolConfig { buffers: 8192, ..PoolConfig::default() }).unwrap();
    let mut port = NullPort::new(NullConfig { copy: false, ..NullConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut pipeline = Pipeline::new(rx, tx, ());
    let mut cx = ShardCtx::new(0);
    g.bench_function("null_io", |b| b.iter(|| black_box(pipeline.run_once(&mut cx))));
    g.finish();
    assert_eq!(cx.counters.total_drops(), 0);
}

criterion_group!(benches, null_io);
criterion_main!(benches);
