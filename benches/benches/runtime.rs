//! The shard loop as users run it (issue 14 items 4 and 6): packets counted through a real
//! `Runtime`, not a bare `run_once` loop.
//!
//! * `runtime/null_io_1shard`: one pinned shard running `null_io` (null Rx with `copy=false`,
//!   no stage, null Tx — the work of `pipeline/null_io`) inside `Runtime`'s shard loop (control
//!   queue poll, stats publishing, clock). Throughput is counted packets per second, read from
//!   the shard's published counters. Peer: `dpdk-testpmd --forward-mode=io` on net_null.
//! * `runtime/scaling/N`: N shards, each pinned to its own core with its own null queue pair,
//!   for N = 1 .. the cores available. Criterion's throughput is the aggregate; the bench also
//!   prints Mpps per shard and Mpps per CPU-second of the shard threads (from
//!   `/proc/self/task/*/schedstat`), so a busy host does not hide a scaling defect. Goal: the
//!   per-CPU-second rate with 2 shards ≥ 0.95× the 1-shard rate.

use std::cell::Cell;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wirespeed_core::backend::null::{NullConfig, NullPort};
use wirespeed_core::runtime::{HandOutError, PerShard, Runtime, RuntimeConfig};
use wirespeed_core::{BATCH_SIZE, BufferPool, Pipeline, PoolConfig};

const NAME: &str = "wsb";

fn launch(shards: usize) -> Runtime {
    let pool = BufferPool::new(PoolConfig { buffers: 8192 * shards, ..PoolConfig::default() }).unwrap();
    let mut port =
        NullPort::new(NullConfig { queues: shards as u16, copy: false, ..NullConfig::default() }, pool);
    let queues = PerShard::queue_pairs(&mut port, shards).unwrap();
    let cfg = RuntimeConfig { shards, name: NAME.into(), ..RuntimeConfig::default() };
    Runtime::launch(cfg, move |s| {
        let (rx, tx) = queues.take(s)?;
        Ok::<_, HandOutError>(Pipeline::new(rx, tx, ()))
    })
    .unwrap()
}

fn counted(rt: &Runtime) -> u64 {
    rt.stats().iter().map(|s| s.counters.tx_packets).sum()
}

/// Thread ids of the runtime's shard threads (named `wsb-<shard>`).
fn shard_tids(shards: usize) -> Vec<String> {
    let want: Vec<String> = (0..shards).map(|i| format!("{NAME}-{i}")).collect();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| want.iter().any(|w| w == c.trim()))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Nanoseconds the threads spent on a CPU (first field of `schedstat`); 0 where unavailable.
fn cpu_ns(tids: &[String]) -> u64 {
    tids.iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/self/task/{t}/schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// What one measuring window saw.
struct Window {
    /// Wall time scaled to exactly the packets asked for.
    scaled: Duration,
    /// Packets counted in the window.
    done: u64,
    /// Wall time of the window.
    wall: Duration,
    /// CPU time of the shard threads in the window (ns).
    cpu: u64,
}

/// Lets the shards run until at least `packets` more are counted.
fn run_for(rt: &Runtime, packets: u64, tids: &[String]) -> Window {
    let (c0, cpu0, t0) = (counted(rt), cpu_ns(tids), Instant::now());
    loop {
        std::thread::sleep(Duration::from_micros(200));
        let done = counted(rt) - c0;
        if done >= packets {
            let wall = t0.elapsed();
            let cpu = cpu_ns(tids) - cpu0;
            return Window { scaled: wall.mul_f64(packets as f64 / done as f64), done, wall, cpu };
        }
    }
}

fn null_io_1shard(c: &mut Criterion) {
    let rt = launch(1);
    let tids = shard_tids(1);
    let (packets, cpu) = (Cell::new(0u64), Cell::new(0u64));
    let mut g = c.benchmark_group("runtime");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    g.bench_function("null_io_1shard", |b| {
        b.iter_custom(|iters| {
            let w = run_for(&rt, iters * BATCH_SIZE as u64, &tids);
            packets.set(packets.get() + w.done);
            cpu.set(cpu.get() + w.cpu);
            w.scaled
        })
    });
    g.finish();
    if cpu.get() > 0 {
        // On a shared host the shard gets only part of its core: this is the loop's own rate.
        eprintln!(
            "runtime/null_io_1shard: {:.1} Mpps per CPU-second of the shard thread",
            packets.get() as f64 / (cpu.get() as f64 / 1e9) / 1e6
        );
    }
    let end = rt.stop().unwrap();
    assert_eq!(end[0].counters().total_drops(), 0);
}

fn scaling(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut g = c.benchmark_group("runtime");
    for shards in 1..=cores {
        let rt = launch(shards);
        let tids = shard_tids(shards);
        let (packets, wall, cpu) = (Cell::new(0u64), Cell::new(Duration::ZERO), Cell::new(0u64));
        g.throughput(Throughput::Elements((BATCH_SIZE * shards) as u64));
        g.bench_with_input(BenchmarkId::new("scaling", shards), &shards, |b, &n| {
            b.iter_custom(|iters| {
                let w = run_for(&rt, iters * (BATCH_SIZE * n) as u64, &tids);
                packets.set(packets.get() + w.done);
                wall.set(wall.get() + w.wall);
                cpu.set(cpu.get() + w.cpu);
                w.scaled
            })
        });
        let mpps = packets.get() as f64 / wall.get().as_secs_f64().max(1e-9) / 1e6;
        let per_cpu = if cpu.get() > 0 {
            format!("{:.1}", packets.get() as f64 / (cpu.get() as f64 / 1e9) / 1e6)
        } else {
            "n/a".into()
        };
        eprintln!(
            "runtime/scaling/{shards}: {mpps:.1} Mpps total, {:.1} Mpps per shard, {per_cpu} Mpps per CPU-second ({} shard threads found)",
            mpps / shards as f64,
            tids.len()
        );
        drop(rt);
    }
    g.finish();
}

criterion_group!(benches, null_io_1shard, scaling);
criterion_main!(benches);
