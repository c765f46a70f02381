//! Toeplitz hash benchmarks, against DPDK `rte_softrss` (dpdk-test `thash_perf_autotest`:
//! ~107 cycles for an IPv4 4-tuple, ~367 for IPv6 on the reference machine).
//!
//! * `toeplitz/reference_ipv4_4tuple`: the bit-serial reference (what not to use).
//! * `toeplitz/ipv4_4tuple`, `toeplitz/ipv6_4tuple`: one hash per iteration, the fastest
//!   single-hash path (per-byte tables on fixed-size input).
//! * `toeplitz/batch32_ipv4_4tuple`: 32 hashes per iteration (CLMUL when the CPU has it).
//! * `toeplitz/batch32_ipv4_4tuple_tables`: the same by tables only (the portable fallback).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wirespeed_core::rss::{MS_KEY, Toeplitz, toeplitz_reference};

/// Row 1 of the Microsoft RSS vectors: 66.9.149.187:2794 → 161.142.100.80:1766.
const V4: [u8; 12] = [66, 9, 149, 187, 161, 142, 100, 80, 0x0a, 0xea, 0x06, 0xe6];

/// Row 1 of the Microsoft IPv6 vectors: 3ffe:2501:200:1fff::7:2794 → 3ffe:2501:200:3::1:1766.
const V6: [u8; 36] = [
    0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 7, 0x3f, 0xfe, 0x25, 0x01, 0x02,
    0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 1, 0x0a, 0xea, 0x06, 0xe6,
];

fn inputs32() -> [[u8; 12]; 32] {
    let mut v = [V4; 32];
    for (i, t) in v.iter_mut().enumerate() {
        t[10] = i as u8; // vary the destination port
        t[3] ^= (i * 7) as u8;
    }
    v
}

fn toeplitz(c: &mut Criterion) {
    let t = Toeplitz::new(&MS_KEY);
    assert_eq!(t.hash_ipv4_4tuple(&V4), 0x51ccc178, "MS vector row 1");
    assert_eq!(t.hash_ipv6_4tuple(&V6), 0x40207d3d, "MS IPv6 vector row 1");
    let mut g = c.benchmark_group("toeplitz");
    g.throughput(Throughput::Elements(1));
    g.bench_function("reference_ipv4_4tuple", |b| {
        b.iter(|| toeplitz_reference(black_box(&MS_KEY), black_box(&V4)))
    });
    g.bench_function("ipv4_4tuple", |b| b.iter(|| t.hash_ipv4_4tuple(black_box(&V4))));
    g.bench_function("ipv6_4tuple", |b| b.iter(|| t.hash_ipv6_4tuple(black_box(&V6))));
    let inputs = inputs32();
    let mut out = [0u32; 32];
    g.throughput(Throughput::Elements(32));
    g.bench_function("batch32_ipv4_4tuple", |b| {
        b.iter(|| {
            t.hash_batch(black_box(&inputs), &mut out);
            black_box(&out);
        })
    });
    g.bench_function("batch32_ipv4_4tuple_tables", |b| {
        b.iter(|| {
            t.hash_batch_tables(black_box(&inputs), &mut out);
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, toeplitz);
criterion_main!(benches);
