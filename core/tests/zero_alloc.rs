//! Zero heap allocations on the hot path, proven with a counting global allocator: after
//! warm-up, 10 000 batches through a 3-stage pipeline on the `mem` backend and on the `null`
//! backend allocate nothing.

use wirespeed_core::backend::mem::{MemConfig, MemPort};
use wirespeed_core::backend::null::{NullConfig, NullPort, udp4_frame};
use wirespeed_core::{
    Batch, BufferPool, DropReason, L3Kind, PacketBuf, Pipeline, PoolBuf, PoolConfig, Port, ShardCtx, Stage,
};

use wirespeed_alloc_counter::{CountingAlloc, allocations_during};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Stage 1: recognise Ethernet + IPv4, drop anything else as malformed.
struct ParseEth;
impl<B: PacketBuf> Stage<B> for ParseEth {
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        batch.keep_or_drop(cx, |p| {
            let d = p.data();
            if d.len() < 34 || d[12..14] != [0x08, 0x00] {
                return Err(DropReason::MalformedL2);
            }
            let m = p.meta_mut();
            m.l3 = L3Kind::Ipv4;
            m.l3_offset = 14;
            Ok(())
        });
    }
}

/// Stage 2: decrement TTL (drop at zero).
struct Ttl;
impl<B: PacketBuf> Stage<B> for Ttl {
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        batch.keep_or_drop(cx, |p| {
            let off = p.meta().l3_offset as usize + 8;
            let ttl = &mut p.data_mut()[off];
            if *ttl <= 1 {
                return Err(DropReason::TtlExpired);
            }
            *ttl -= 1;
            Ok(())
        });
    }
}

/// Stage 3: swap MAC addresses.
struct SwapMac;
impl<B: PacketBuf> Stage<B> for SwapMac {
    fn process(&mut self, _cx: &mut ShardCtx, batch: &mut Batch<B>) {
        for p in batch.iter_mut() {
            let d = p.data_mut();
            for i in 0..6 {
                d.swap(i, i + 6);
            }
        }
    }
}

const BATCHES: usize = 10_000;

#[test]
fn mem_backend_three_stages_allocates_nothing() {
    let pool = BufferPool::new(PoolConfig { buffers: 4096, ..PoolConfig::default() }).unwrap();
    let (mut port, handle) = MemPort::new(MemConfig { ring_size: 256, ..MemConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut pipeline = Pipeline::new(rx, tx, (ParseEth, Ttl, SwapMac));
    let mut cx = ShardCtx::new(0);
    let good = udp4_frame(128);
    let mut bad = udp4_frame(60);
    bad[12] = 0x86; // not IPv4: dropped by stage 1, every 8th frame
    let mut run = |batches: usize, cx: &mut ShardCtx| {
        for i in 0..batches {
            for j in 0..32 {
                let f = if (i + j) % 8 == 0 { &bad[..] } else { &good[..] };
                handle.inject(0, f).unwrap();
            }
            assert_eq!(pipeline.run_once(cx), 32);
            while let Some(out) = handle.take_tx(0) {
                assert_eq!(out.data()[22], 63, "TTL decremented");
                drop(out);
            }
        }
    };
    run(100, &mut cx); // warm-up: thread caches fill
    let allocs = allocations_during(|| run(BATCHES, &mut cx));
    assert_eq!(allocs, 0, "allocations on the hot path");
    let total = (BATCHES + 100) as u64 * 32;
    assert_eq!(cx.counters.rx_packets, total);
    assert_eq!(cx.counters.drops_of(DropReason::MalformedL2), total / 8);
    assert_eq!(cx.counters.tx_packets, total - total / 8);
}

#[test]
fn null_backend_allocates_nothing() {
    let pool = BufferPool::new(PoolConfig::default()).unwrap();
    let mut port = NullPort::new(NullConfig { copy: true, ..NullConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut pipeline = Pipeline::new(rx, tx, (ParseEth, Ttl, SwapMac));
    let mut cx = ShardCtx::new(0);
    for _ in 0..100 {
        pipeline.run_once(&mut cx);
    }
    let allocs = allocations_during(|| {
        for _ in 0..BATCHES {
            assert_eq!(pipeline.run_once(&mut cx), 32);
        }
    });
    assert_eq!(allocs, 0, "allocations on the hot path");
    assert_eq!(cx.counters.tx_packets, (BATCHES as u64 + 100) * 32);
    assert_eq!(cx.counters.total_drops(), 0);
}

#[test]
fn counting_allocator_counts() {
    // The proof above is only as good as the counter: make sure it sees an allocation.
    let n = allocations_during(|| {
        let v: Vec<PoolBuf> = Vec::with_capacity(4);
        std::hint::black_box(&v);
    });
    assert_eq!(n, 1);
}

/// The shard loop itself (control-queue poll, clock refresh, stats publishing, the final drain
/// at the end of input) allocates nothing: 100 000 batches through `run_shard` on the shard's
/// own thread, after warm-up, as a `dyn Worker` the way the runtime runs it.
#[test]
fn shard_loop_allocates_nothing() {
    use wirespeed_core::runtime::{LoopOptions, ShardControl, ShardExit, Worker, run_shard};
    let pool = BufferPool::new(PoolConfig { buffers: 1024, ..PoolConfig::default() }).unwrap();
    let batches = 100_000u64;
    let cfg = NullConfig {
        frame: udp4_frame(64),
        copy: true,
        limit: Some(32 * (batches + 64)),
        ..NullConfig::default()
    };
    let mut port = NullPort::new(cfg, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut pipeline = Pipeline::new(rx, tx, (ParseEth,));
    let mut cx = ShardCtx::new(0);
    for _ in 0..64 {
        pipeline.run_once(&mut cx);
    }
    let mut worker: Box<dyn Worker> = Box::new(pipeline);
    let ctl = ShardControl::new(0, 4);
    let opts = LoopOptions { exit_when_finished: true, ..LoopOptions::default() };
    let mut exit = None;
    let n = allocations_during(|| exit = Some(run_shard(&ctl, &mut *worker, &mut cx, &opts)));
    assert_eq!(exit, Some(ShardExit::Finished));
    assert_eq!(cx.counters.tx_packets, 32 * (batches + 64), "{}", cx.counters);
    assert!(ctl.stats().generation > batches / 64, "stats were published along the way");
    assert_eq!(n, 0, "{n} allocations in the shard loop");
}
