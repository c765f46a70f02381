//! Toeplitz hash benchmarks, shaped like DPDK's `thash_perf_autotest` (`app/test/test_thash_perf.c`)
//! so the figures compare with `rte_softrss`: every iteration hashes a batch of 1024 random
//! tuples (DPDK: `BATCH_SZ` = 1 << 10 tuples from `rte_rand`, cycles divided by the tuple count),
//! so branch predictors and caches see varied input, not one value hashed again and again.
//! Throughput is per tuple.
//!
//! * `toeplitz/reference_ipv4_4tuple`: the bit-serial reference (what not to use).
//! * `toeplitz/ipv4_4tuple`, `toeplitz/ipv6_4tuple`: one hash call per tuple, the fastest
//!   single-hash path (per-byte tables on fixed-size input).
//! * `toeplitz/batch32_ipv4_4tuple`: the 1024 tuples in calls of 32 (CLMUL when the CPU has it).
//! * `toeplitz/batch32_ipv4_4tuple_tables`: the same by tables only (the portable fallback).
//!
//! The previous fixed-input versions (one constant tuple, or 32 near-identical ones, per
//! iteration) stay as `toeplitz/fixed_ipv4_4tuple`, `toeplitz/fixed_ipv6_4tuple` and
//! `toeplitz/fixed_batch32_ipv4_4tuple`: they show the best case a hot loop on one flow gets.
//!
//! Every id also runs under `cpu/` (e.g. `cpu/toeplitz/...`): the same routine timed by the bench
//! thread's CPU time (`wirespeed_benches::ThreadCpuTime`), whose throughput is per CPU-second.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use wirespeed_benches::Clock;
use wirespeed_core::rss::{MS_KEY, Toeplitz, toeplitz_reference};
use wirespeed_test_gen::SplitMix;

/// Row 1 of the Microsoft RSS vectors: 66.9.149.187:2794 → 161.142.100.80:1766.
const V4: [u8; 12] = [66, 9, 149, 187, 161, 142, 100, 80, 0x0a, 0xea, 0x06, 0xe6];

/// Row 1 of the Microsoft IPv6 vectors: 3ffe:2501:200:1fff::7:2794 → 3ffe:2501:200:3::1:1766.
const V6: [u8; 36] = [
    0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 7, 0x3f, 0xfe, 0x25, 0x01, 0x02,
    0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 1, 0x0a, 0xea, 0x06, 0xe6,
];

/// Tuples per iteration, as DPDK's `BATCH_SZ`.
const BATCH: usize = 1024;

fn random_tuples<const N: usize>(seed: u64) -> Vec<[u8; N]> {
    let mut rng = SplitMix(seed);
    (0..BATCH)
        .map(|_| {
            let mut t = [0u8; N];
            for c in t.chunks_mut(8) {
                c.copy_from_slice(&rng.next_u64().to_le_bytes()[..c.len()]);
            }
            t
        })
        .collect()
}

fn fixed_inputs32() -> [[u8; 12]; 32] {
    let mut v = [V4; 32];
    for (i, t) in v.iter_mut().enumerate() {
        t[10] = i as u8; // vary the destination port
        t[3] ^= (i * 7) as u8;
    }
    v
}

fn toeplitz<M: Clock>(c: &mut Criterion<M>) {
    let t = Toeplitz::new(&MS_KEY);
    assert_eq!(t.hash_ipv4_4tuple(&V4), 0x51ccc178, "MS vector row 1");
    assert_eq!(t.hash_ipv6_4tuple(&V6), 0x40207d3d, "MS IPv6 vector row 1");
    let v4 = random_tuples::<12>(1);
    let v6 = random_tuples::<36>(2);
    let batches: Vec<[[u8; 12]; 32]> = v4.chunks_exact(32).map(|c| std::array::from_fn(|i| c[i])).collect();
    // The paths under test agree with the reference on the random input.
    let mut out = [0u32; 32];
    t.hash_batch(&batches[0], &mut out);
    for (x, h) in batches[0].iter().zip(out) {
        assert_eq!(h, toeplitz_reference(&MS_KEY, x));
        assert_eq!(t.hash_ipv4_4tuple(x), h);
    }

    let mut g = c.benchmark_group(M::group("toeplitz"));
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("reference_ipv4_4tuple", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for x in black_box(&v4) {
                acc ^= toeplitz_reference(&MS_KEY, x);
            }
            acc
        })
    });
    g.bench_function("ipv4_4tuple", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for x in black_box(&v4) {
                acc ^= t.hash_ipv4_4tuple(x);
            }
            acc
        })
    });
    g.bench_function("ipv6_4tuple", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for x in black_box(&v6) {
                acc ^= t.hash_ipv6_4tuple(x);
            }
            acc
        })
    });
    g.bench_function("batch32_ipv4_4tuple", |b| {
        b.iter(|| {
            for batch in black_box(&batches) {
                t.hash_batch(batch, &mut out);
                black_box(&out);
            }
        })
    });
    g.bench_function("batch32_ipv4_4tuple_tables", |b| {
        b.iter(|| {
            for batch in black_box(&batches) {
                t.hash_batch_tables(batch, &mut out);
                black_box(&out);
            }
        })
    });

    // The former fixed-input benches, under new names.
    g.throughput(Throughput::Elements(1));
    g.bench_function("fixed_ipv4_4tuple", |b| b.iter(|| t.hash_ipv4_4tuple(black_box(&V4))));
    g.bench_function("fixed_ipv6_4tuple", |b| b.iter(|| t.hash_ipv6_4tuple(black_box(&V6))));
    let inputs = fixed_inputs32();
    g.throughput(Throughput::Elements(32));
    g.bench_function("fixed_batch32_ipv4_4tuple", |b| {
        b.iter(|| {
            t.hash_batch(black_box(&inputs), &mut out);
            black_box(&out);
        })
    });
    g.finish();
}

wirespeed_benches::wall_and_cpu_main!(toeplitz);
