//! Zero heap allocation on the L3 forwarding path: null Rx (frames copied, like DPDK `net_null`
//! `copy=1`) → classify → punt → forward → null Tx, 10 000 batches after warm-up, counted by a
//! global allocator that counts allocations made on the test's thread.

use wirespeed_core::backend::null::{NullConfig, NullPort, udp4_frame};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{BufferPool, Pipeline, PoolBuf, PoolConfig, Port, ShardCtx};
use wirespeed_stages::classify::{Classify, ClassifyConfig};
use wirespeed_stages::control::{Punt, punt_queue};
use wirespeed_stages::forward::{FibBuilder, Forward, NextHop};

use wirespeed_alloc_counter::{CountingAlloc, allocations_during};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn classify_and_forward_allocate_nothing() {
    let pool = BufferPool::new(PoolConfig { buffers: 2048, ..PoolConfig::default() }).unwrap();
    let mut port =
        NullPort::new(NullConfig { frame: udp4_frame(64), copy: true, ..NullConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    // The template goes 10.0.0.1 -> 10.0.1.1.
    let gw = "10.0.255.254".parse().unwrap();
    let mut b = FibBuilder::new();
    b.route("10.0.0.0".parse().unwrap(), 16, NextHop::Gateway(gw)).unwrap();
    b.route("2001:db8::".parse().unwrap(), 32, NextHop::Direct).unwrap();
    b.neighbor(gw, [0x02, 0, 0, 0, 0, 0xfe], 0);
    let mut fib = Publisher::new(b.build().unwrap());
    let classify = Classify::new(ClassifyConfig {
        own_ipv4: vec!["10.0.0.254".parse().unwrap()],
        ..ClassifyConfig::default()
    });
    let forward = Forward::new(fib.subscribe(), &[[0x02, 0, 0, 0, 0, 1]]);
    let punt = Punt::<PoolBuf>::new(punt_queue(64));
    let mut pipeline = Pipeline::new(rx, tx, (classify, punt, forward));
    let mut cx = ShardCtx::new(0);
    for _ in 0..100 {
        pipeline.run_once(&mut cx);
    }
    let warm = cx.counters.tx_packets;
    assert_eq!(warm, 100 * 32, "warm-up did not forward everything: {}", cx.counters);

    // The counter works: one boxed value is one allocation.
    assert_eq!(allocations_during(|| drop(std::hint::black_box(Box::new(7u64)))), 1);
    let n = allocations_during(|| {
        for _ in 0..10_000 {
            pipeline.run_once(&mut cx);
        }
    });
    assert_eq!(n, 0, "{n} heap allocations in 10 000 batches");
    assert_eq!(cx.counters.tx_packets - warm, 10_000 * 32);
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
}

/// Next-hop resolution allocates nothing either: packets held while the neighbor is unknown
/// (queue overflow included), released when a learned table is published, held again when it is
/// withdrawn, expired after the timeout. Only the table publications (control side) allocate,
/// and they are outside the measured closures.
#[test]
fn holding_and_releasing_for_neighbor_resolution_allocate_nothing() {
    use std::time::Duration;
    use wirespeed_stages::forward::{HoldConfig, Neighbor, Neighbors, Resolving, resolve_queue};

    let pool = BufferPool::new(PoolConfig { buffers: 2048, ..PoolConfig::default() }).unwrap();
    let mut port =
        NullPort::new(NullConfig { frame: udp4_frame(64), copy: true, ..NullConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    // 10.0.1.1 is on a connected route, no static neighbor.
    let mut b = FibBuilder::new();
    b.route("10.0.1.0".parse().unwrap(), 24, NextHop::Direct).unwrap();
    let mut fib = Publisher::new(b.build().unwrap());
    let mut learned = Publisher::new(Neighbors::new());
    let requests = resolve_queue(4);
    let forward = Forward::new(fib.subscribe(), &[[0x02, 0, 0, 0, 0, 1]]).with_neighbors(learned.subscribe());
    let resolving = Resolving::new(forward, requests.clone(), HoldConfig::default());
    let mut pipeline = Pipeline::new(rx, tx, (Classify::new(ClassifyConfig::default()), resolving));
    let mut cx = ShardCtx::new(0);
    let mut resolved = Neighbors::new();
    resolved.insert("10.0.1.1".parse().unwrap(), Neighbor { mac: [0x02, 0, 0, 0, 0, 0x11], port: 0 });
    let mut allocations = 0;
    for round in 0..50 {
        // Unresolved: 64 held, the rest overflow; the request queue fills, then is lost.
        allocations += allocations_during(|| {
            for _ in 0..10 {
                pipeline.run_once(&mut cx);
            }
        });
        assert_eq!(pipeline.stages().1.held(), 64);
        if round % 2 == 0 {
            learned.publish(resolved.clone());
            allocations += allocations_during(|| {
                for _ in 0..10 {
                    pipeline.run_once(&mut cx);
                }
            });
            // Under back-to-back full bursts a burst's worth stays queued behind the released
            // ones (order is kept); the gateway's shard drains it with a release pass.
            assert_eq!(pipeline.stages().1.held(), 32, "released once resolved");
            learned.publish(Neighbors::new());
            learned.reclaim();
        } else {
            cx.now += Duration::from_secs(4);
            allocations += allocations_during(|| {
                pipeline.run_once(&mut cx);
            });
            assert_eq!(pipeline.stages().1.held(), 32, "the old ones expired, this batch is held");
            cx.now += Duration::from_secs(4);
            allocations += allocations_during(|| {
                pipeline.run_once(&mut cx);
            });
        }
        while requests.pop().is_some() {}
    }
    assert_eq!(allocations, 0, "{allocations} heap allocations");
    let h = pipeline.stages().1.counters();
    assert!(h.released >= 25 * 10 * 32 && h.overflow > 0 && h.expired > 0 && h.requests > 0, "{h:?}");
    let c = cx.counters;
    assert_eq!(c.rx_packets, c.tx_packets + c.total_drops() + pipeline.stages().1.held() as u64, "{c}");
}

/// ICMP errors are built in place: answering a stream of TTL-expired packets with Time
/// Exceeded allocates nothing.
#[test]
fn icmp_time_exceeded_allocates_nothing() {
    use wirespeed_core::backend::null::ipv4_header_checksum;
    use wirespeed_stages::icmp::{IcmpConfig, IcmpErrors};

    let pool = BufferPool::new(PoolConfig { buffers: 2048, ..PoolConfig::default() }).unwrap();
    let mut frame = udp4_frame(64);
    frame[22] = 1; // TTL 1: expires here
    frame[24..26].fill(0);
    let c = ipv4_header_checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
    let mut port = NullPort::new(NullConfig { frame, copy: true, ..NullConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut b = FibBuilder::new();
    b.route("10.0.0.0".parse().unwrap(), 8, NextHop::Direct).unwrap();
    let mut fib = Publisher::new(b.build().unwrap());
    let icmp = IcmpErrors::new(&IcmpConfig {
        sources: vec![(Some("10.0.0.254".parse().unwrap()), None)],
        macs: vec![[0x02, 0, 0, 0, 0, 1]],
        rate: u32::MAX,
    });
    let forward = Forward::new(fib.subscribe(), &[[0x02, 0, 0, 0, 0, 1]]).with_icmp_errors(icmp);
    let mut pipeline = Pipeline::new(rx, tx, (Classify::new(ClassifyConfig::default()), forward));
    let mut cx = ShardCtx::new(0);
    for _ in 0..100 {
        pipeline.run_once(&mut cx);
    }
    let n = allocations_during(|| {
        for _ in 0..10_000 {
            pipeline.run_once(&mut cx);
        }
    });
    assert_eq!(n, 0, "{n} heap allocations in 10 000 batches");
    assert_eq!(pipeline.stages().1.icmp_counters().time_exceeded, 10_100 * 32);
    assert_eq!(cx.counters.tx_packets, 10_100 * 32, "every packet answered: {}", cx.counters);
    assert_eq!(cx.counters.total_drops(), 0);
}
