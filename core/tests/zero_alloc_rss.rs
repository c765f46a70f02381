//! Zero heap allocations in the RSS hot path, proven with a counting global allocator: after
//! warm-up, dispatching 5 000 batches of varied frames (steering plan, Toeplitz, RETA, rings to
//! three owner shards, their `DispatchRx`) and hashing batches allocates nothing.

use wirespeed_core::backend::mem::{MemConfig, MemPort};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::rss::{
    DispatchFabric, MS_KEY, RssConfig, RssGroup, RssHasher, SteeringEngine, SteeringPlan, SymmetricMode,
    Toeplitz, load_channel,
};
use wirespeed_core::sync::Arc;
use wirespeed_core::{Batch, BufferPool, PoolBuf, PoolConfig, Port, RxQueue, ShardCtx};

use wirespeed_alloc_counter::{CountingAlloc, allocations_during};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// An Ethernet + IPv4 + UDP frame from `10.0.0.x:sport` to `10.1.0.1:53`.
fn frame(i: u32) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, (i >> 8) as u8, i as u8, 10, 1, 0, 1];
    ip[2..4].copy_from_slice(&28u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&(1024 + (i as u16 % 4000)).to_be_bytes());
    f.extend_from_slice(&53u16.to_be_bytes());
    f.extend_from_slice(&[0, 8, 0, 0]);
    f.resize(64, 0);
    f
}

#[test]
fn dispatch_and_hash_allocate_nothing() {
    let pool = BufferPool::new(PoolConfig { buffers: 1024, ..PoolConfig::default() }).expect("pool");
    let (mut port, handle) = MemPort::new(MemConfig { ring_size: 256, ..MemConfig::default() }, pool);
    let (mut rx, _tx) = port.queue_pair(0).expect("queue");
    let hasher =
        RssHasher::new(&RssConfig { mode: SymmetricMode::Xor, ..RssConfig::default() }).expect("cfg");
    let plan =
        SteeringPlan::management_default(3, RssGroup::new(vec![0, 1, 2]), &["10.1.0.1".parse().expect("ip")]);
    let engine = Arc::new(SteeringEngine::new(hasher, plan, 4).expect("plan"));
    let mut publisher = Publisher::new(engine.default_reta().expect("reta"));
    let fabric: DispatchFabric<PoolBuf> = DispatchFabric::new(1, 4, 16).expect("fabric");
    let mut disp = fabric.dispatcher(0, engine, publisher.subscribe(), Some(0)).expect("dispatcher");
    let mut receivers: Vec<_> = (0..4).map(|s| fabric.receiver(s).expect("receiver")).collect();
    // Load reports every 8 batches, taken and handed back by the "control side" in the loop.
    let (load_tx, load_rx) = load_channel(128);
    disp.report_load(load_tx, 8);
    let mut reports = 0u64;
    let frames: Vec<Vec<u8>> = (0..64).map(frame).collect();
    let mut cx = ShardCtx::new(0);
    let mut batch: Batch<PoolBuf> = Batch::new();
    let mut out: Batch<PoolBuf> = Batch::new();
    let mut delivered = 0u64;
    let mut round = |cx: &mut ShardCtx, r: usize, count: bool| -> u64 {
        for k in 0..32 {
            handle.inject(0, &frames[(r + k) % frames.len()]).expect("inject");
        }
        let mut run = || {
            let mut n = 0;
            rx.rx_burst(&mut batch);
            disp.dispatch(cx, &mut batch);
            n += batch.len() as u64;
            batch.clear();
            for r in receivers.iter_mut() {
                while r.rx_burst(&mut out) > 0 {
                    n += out.len() as u64;
                    out.clear();
                }
            }
            if let Some(load) = load_rx.take() {
                reports += 1;
                load_rx.recycle(load);
            }
            n
        };
        if count {
            let mut n = 0;
            let allocs = allocations_during(|| n = run());
            assert_eq!(allocs, 0, "round {r} allocated {allocs} times");
            n
        } else {
            run()
        }
    };
    for r in 0..16 {
        delivered += round(&mut cx, r, false);
    }
    for r in 0..5000 {
        delivered += round(&mut cx, r, true);
    }
    assert_eq!(delivered, 32 * 5016, "every packet delivered");
    assert!(cx.counters.handed_off > 0);
    assert!(reports >= 5016 / 8 - 1, "{reports} load reports");

    let t = Toeplitz::new(&MS_KEY);
    let inputs = [[7u8; 12]; 32];
    let mut hashes = [0u32; 32];
    assert_eq!(allocations_during(|| t.hash_batch(&inputs, &mut hashes)), 0);
    assert_ne!(hashes, [0; 32]);
}
