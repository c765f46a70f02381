//! Pipeline benchmarks: whole batches through Rx → stages → Tx on one shard.
//!
//! `pipeline/null_io`: null Rx (copy=false, like DPDK net_null copy=0) → pipeline that forwards
//! untouched → null Tx. One iteration = one batch of 32 packets. Peer: `dpdk-testpmd
//! --forward-mode=io` on two net_null ports (`tools/peer-anchors.sh io`).
//!
//! `pipeline/l3fwd`: null Rx (64-byte frames copied into pool buffers, like DPDK `net_null`
//! `copy=1`) → classify → forward (route lookup, TTL, RFC 1624 checksum, MAC rewrite) → null Tx,
//! one batch of 32 per iteration. Peer: DPDK testpmd `5tswap` on net_null copy=1.
//! `pipeline/null_copy_baseline` is the same Rx/Tx with no stage, to separate the backend's cost.
//!
//! `pipeline/dpdk_null_io` (feature `dpdk`): the same forward-untouched pipeline on the DPDK
//! backend — Rx on DPDK `net_null0`, Tx on `net_null1`, zero-copy mbufs — exactly what
//! `dpdk-testpmd --forward-mode=io` does on the same two vdevs (the peer of `null_io`). One
//! iteration = one batch of 32.
//!
//! Every id also runs under `cpu/pipeline/...`: the same routine timed by the bench thread's CPU
//! time (`wirespeed_benches::ThreadCpuTime`), whose throughput is per CPU-second.

use criterion::{Criterion, Throughput};
use std::hint::black_box;
use wirespeed_benches::Clock;
use wirespeed_core::backend::null::{NullConfig, NullPort, udp4_frame};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{BATCH_SIZE, BufferPool, Pipeline, PoolConfig, Port, ShardCtx};
use wirespeed_stages::classify::{Classify, ClassifyConfig};
use wirespeed_stages::forward::{FibBuilder, Forward, NextHop};

fn null_io<M: Clock>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group(M::group("pipeline"));
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

fn l3fwd<M: Clock>(c: &mut Criterion<M>) {
    let pool = BufferPool::new(PoolConfig { buffers: 4096, ..PoolConfig::default() }).unwrap();
    let mut port =
        NullPort::new(NullConfig { frame: udp4_frame(64), copy: true, ..NullConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    // The template goes 10.0.0.1 -> 10.0.1.1: a /16 via a resolved gateway, plus a default.
    let gw = "10.0.255.254".parse().unwrap();
    let mut b = FibBuilder::new();
    b.route("10.0.0.0".parse().unwrap(), 16, NextHop::Gateway(gw)).unwrap();
    b.route("0.0.0.0".parse().unwrap(), 0, NextHop::Gateway(gw)).unwrap();
    b.neighbor(gw, [0x02, 0, 0, 0, 0, 0xfe], 0);
    let mut fib = Publisher::new(b.build().unwrap());
    let classify = Classify::new(ClassifyConfig {
        own_ipv4: vec!["10.0.0.254".parse().unwrap()],
        ..ClassifyConfig::default()
    });
    let forward = Forward::new(fib.subscribe(), &[[0x02, 0, 0, 0, 0, 1]]);
    let mut pipeline = Pipeline::new(rx, tx, (classify, forward));
    let mut cx = ShardCtx::new(0);
    for _ in 0..64 {
        pipeline.run_once(&mut cx);
    }
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);

    let mut g = c.benchmark_group(M::group("pipeline"));
    g.throughput(Throughput::Elements(32));
    g.bench_function("l3fwd", |b| b.iter(|| pipeline.run_once(&mut cx)));
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);

    // Baseline: the same null Rx (copy) -> null Tx with no stage, to separate the backend's cost.
    let mut port = NullPort::new(
        NullConfig { port_id: 1, frame: udp4_frame(64), copy: true, ..NullConfig::default() },
        pool,
    );
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut base = Pipeline::new(rx, tx, ());
    g.bench_function("null_copy_baseline", |b| b.iter(|| base.run_once(&mut cx)));
    g.finish();
}

#[cfg(feature = "dpdk")]
fn dpdk_null_io<M: Clock>(c: &mut Criterion<M>) {
    use wirespeed_dpdk::{DpdkPort, DpdkPortConfig, TEST_EAL_ARGS};
    // The EAL arguments of testpmd in peer-anchors.sh (`-l 0,1`, no hugepages) and its two vdevs.
    let mut eal: Vec<String> = TEST_EAL_ARGS.iter().map(|s| s.to_string()).collect();
    eal.extend(["-l", "0,1", "--vdev=net_null0", "--vdev=net_null1"].map(String::from));
    let make = |dev: &str| {
        let mut cfg = DpdkPortConfig::new(eal.clone(), dev);
        cfg.mempool.mbufs = Some(8192);
        match DpdkPort::new(&cfg) {
            Ok(p) => Some(p),
            Err(wirespeed_dpdk::DpdkError::NotInstalled) => None,
            Err(e) => panic!("{dev}: {e}"),
        }
    };
    let (Some(mut p0), Some(mut p1)) = (make("net_null0"), make("net_null1")) else {
        eprintln!("pipeline/dpdk_null_io skipped: DPDK is not installed");
        return;
    };
    let (rx, _) = p0.queue_pair(0).unwrap();
    let (_, tx) = p1.queue_pair(0).unwrap();
    let mut pipeline = Pipeline::new(rx, tx, ());
    let mut cx = ShardCtx::new(0);
    let mut g = c.benchmark_group(M::group("pipeline"));
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    g.bench_function("dpdk_null_io", |b| b.iter(|| black_box(pipeline.run_once(&mut cx))));
    g.finish();
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    // For rates per CPU-second (`perf stat -e task-clock`), robust to a loaded machine.
    eprintln!("pipeline/dpdk_null_io forwarded {} packets", cx.counters.tx_packets);
}

// Each function runs twice: wall-clock ids (`pipeline/...`) and the bench thread's CPU time
// (`cpu/pipeline/...`, whose throughput is per CPU-second).
#[cfg(not(feature = "dpdk"))]
wirespeed_benches::wall_and_cpu_main!(null_io, l3fwd);
#[cfg(feature = "dpdk")]
wirespeed_benches::wall_and_cpu_main!(null_io, l3fwd, dpdk_null_io);
