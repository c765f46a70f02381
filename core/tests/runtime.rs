//! The shard runtime end to end: two pinned shards, each owning a queue pair of a `mem` port,
//! updated while running, observed through lock-free stats, stopped with a drain.

use std::time::{Duration, Instant};

use wirespeed_core::backend::mem::{MemConfig, MemPort};
use wirespeed_core::backend::null::udp4_frame;
use wirespeed_core::runtime::ShardState;
use wirespeed_core::{
    BufferPool, DropReason, PacketBuf, PerPacket, Pipeline, PoolConfig, Port, Runtime, RuntimeConfig,
    ShardCtx, Verdict,
};

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn two_shards_forward_update_and_stop() {
    let pool = BufferPool::new(PoolConfig { buffers: 2048, ..PoolConfig::default() }).unwrap();
    let (port, wire) = MemPort::new(MemConfig { queues: 2, ..MemConfig::default() }, pool);
    let port = std::sync::Mutex::new(port);

    // Each shard drops frames longer than its limit; the limit is changed by an update.
    type Filter = PerPacket<Box<dyn FnMut(&mut ShardCtx, &mut wirespeed_core::PoolBuf) -> Verdict>>;
    let rt = Runtime::launch(RuntimeConfig { shards: 2, ..RuntimeConfig::default() }, move |shard| {
        let (rx, tx) = port.lock().unwrap().queue_pair(shard as u16)?;
        let limit = std::rc::Rc::new(std::cell::Cell::new(usize::MAX)); // !Send state is fine
        let l = limit.clone();
        let stage: Filter = PerPacket(Box::new(move |_cx, p| {
            if p.len() > l.get() { Verdict::Drop(DropReason::TooLarge) } else { Verdict::Continue }
        }));
        let _keep = limit;
        Ok::<_, wirespeed_core::PortError>(Pipeline::new(rx, tx, (stage,)))
    })
    .unwrap();

    let placement = rt.placement(0).unwrap();
    assert!(placement.core.is_some() || core_count() == 0);

    for q in 0..2 {
        for _ in 0..100 {
            wire.inject(q, &udp4_frame(100)).unwrap();
        }
    }
    wait_until("200 frames forwarded", || {
        rt.stats().iter().map(|s| s.counters.tx_packets).sum::<u64>() == 200
    });
    assert_eq!(wire.drain_tx(0).len(), 100);
    assert_eq!(wire.drain_tx(1).len(), 100);

    // Swap shard 1's stage for one that drops everything over 80 bytes.
    rt.update(
        1,
        Box::new(|stages: &mut (Filter,)| {
            stages.0 = PerPacket(Box::new(|_cx, p| {
                if p.len() > 80 { Verdict::Drop(DropReason::TooLarge) } else { Verdict::Continue }
            }));
        }),
    )
    .map_err(|e| e.shard)
    .expect("control queue has room");
    std::thread::sleep(Duration::from_millis(20));
    for _ in 0..50 {
        wire.inject(1, &udp4_frame(100)).unwrap();
        wire.inject(1, &udp4_frame(64)).unwrap();
    }
    wait_until("shard 1 saw 200 packets", || rt.stats()[1].counters.rx_packets == 200);
    let s1 = rt.stats()[1].counters;
    assert_eq!(s1.drops_of(DropReason::TooLarge), 50);
    assert_eq!(s1.tx_packets, 150);
    assert_eq!(rt.control(0).unwrap().state(), ShardState::Running);

    let last = rt.stop().unwrap();
    let total: u64 = last.iter().map(|s| s.counters.rx_packets).sum();
    assert_eq!(total, 300);
    for s in &last {
        assert_eq!(s.counters.rx_packets, s.counters.tx_packets + s.counters.total_drops());
    }
}

fn core_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
}

#[test]
fn factory_failure_is_reported_with_context() {
    let err = Runtime::launch(RuntimeConfig { shards: 2, ..RuntimeConfig::default() }, |shard| {
        if shard == 1 {
            Err(format!("no queue for shard {shard}"))
        } else {
            Ok(Pipeline::new(
                wirespeed_core::backend::mem::MemPort::new(
                    MemConfig::default(),
                    BufferPool::new(PoolConfig { buffers: 64, ..PoolConfig::default() }).unwrap(),
                )
                .0
                .queue_pair(0)
                .unwrap()
                .0,
                NoTx,
                (),
            ))
        }
    })
    .err()
    .expect("launch must fail");
    assert_eq!(err.to_string(), "shard 1 failed to start: no queue for shard 1");
}

struct NoTx;
impl wirespeed_core::TxQueue for NoTx {
    type Buf = wirespeed_core::PoolBuf;
    fn tx_burst(&mut self, b: &mut wirespeed_core::Batch<Self::Buf>) -> usize {
        let n = b.len();
        b.clear();
        n
    }
}
