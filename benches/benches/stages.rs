//! Stage micro-benchmarks: `classify/ipv4_udp` and `classify/ipv6_tcp` (one packet per
//! iteration, fast path) and `lpm/ipv4_lookup_1m_routes` (one DIR-24-8 lookup per iteration in a
//! table of 1 M BGP-like random prefixes, addresses drawn from a pre-generated random array).
//!
//! Every id also runs under `cpu/` (`cpu/classify/...`, `cpu/lpm/...`): the same routine timed by
//! the bench thread's CPU time (`wirespeed_benches::ThreadCpuTime`), whose throughput is per CPU-second.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use wirespeed_benches::Clock;
use wirespeed_core::PacketMeta;
use wirespeed_core::backend::null::udp4_frame;
use wirespeed_stages::classify::ClassifyConfig;
use wirespeed_stages::forward::Dir24_8;
use wirespeed_test_gen::{SplitMix, bgp_like_routes};

/// Ethernet / IPv6 / TCP (20-byte header, ACK) from 2001:db8:1::1 port 40000 to 2001:db8:2::2
/// port 443, 6 bytes of payload (74 bytes).
fn ipv6_tcp_frame() -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40 + 20 + 6];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    f[14] = 0x60;
    f[18..20].copy_from_slice(&26u16.to_be_bytes());
    f[20] = 6;
    f[21] = 64;
    f[22..24].copy_from_slice(&[0x20, 0x01]);
    f[24..26].copy_from_slice(&[0x0d, 0xb8]);
    f[27] = 1;
    f[37] = 1;
    f[38..40].copy_from_slice(&[0x20, 0x01]);
    f[40..42].copy_from_slice(&[0x0d, 0xb8]);
    f[43] = 2;
    f[53] = 2;
    f[54..56].copy_from_slice(&40000u16.to_be_bytes());
    f[56..58].copy_from_slice(&443u16.to_be_bytes());
    f[66] = 5 << 4;
    f[67] = 0x10;
    f
}

fn classify<M: Clock>(c: &mut Criterion<M>) {
    let cfg = ClassifyConfig {
        own_ipv4: vec!["192.0.2.1".parse().unwrap()],
        own_ipv6: vec!["2001:db8::1".parse().unwrap()],
        ..ClassifyConfig::default()
    };
    let v4 = udp4_frame(64);
    let v6 = ipv6_tcp_frame();
    let mut g = c.benchmark_group(M::group("classify"));
    g.throughput(Throughput::Elements(1));
    for (name, frame) in [("ipv4_udp", &v4), ("ipv6_tcp", &v6)] {
        let mut m = PacketMeta::default();
        cfg.classify(frame, &mut m).expect("bench frame classifies");
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = cfg.classify(black_box(frame), &mut m);
                black_box((&r, &m));
            })
        });
    }
    g.finish();
}

fn lpm<M: Clock>(c: &mut Criterion<M>) {
    // A BGP-like random table: 60 % /24, 35 % /16–/23, 3 % /8–/15, 2 % /25–/32; 1024 next hops.
    let routes = bgp_like_routes(1_000_000, 1, 1024);
    let t0 = Instant::now();
    let table = Dir24_8::build(&routes).unwrap();
    eprintln!("lpm: built {} prefixes ({} tbl8 groups) in {:?}", table.len(), table.groups(), t0.elapsed());
    let mut rng = SplitMix(2);
    const N: usize = 1 << 20;
    let addrs: Vec<u32> = (0..N).map(|_| rng.next_u64() as u32).collect();
    let mut g = c.benchmark_group(M::group("lpm"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("ipv4_lookup_1m_routes", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let a = addrs[i & (N - 1)];
            i = i.wrapping_add(1);
            black_box(table.lookup(a))
        })
    });
    g.finish();
}

wirespeed_benches::wall_and_cpu_main!(classify, lpm);
