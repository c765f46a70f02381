//! Mirroring IKE-negotiated SAs (`wirespeed-xfrm`).
//!
//! - `xfrm/newsa_to_first_seal`: from the bytes of a kernel `XFRM_MSG_NEWSA` notification (an
//!   AES-128-GCM tunnel SA scoped by if_id, its policy already mirrored) to the first packet
//!   sealed with that SA: decode, mirror (scope check, conversion, validation), build the SA
//!   (key expansion) and the SA set with the SPD (what the epoch publish hands the shards), the
//!   SPD lookup of a flow, and `encapsulate` of a 64-byte packet. The shards' adoption of the
//!   new epoch (at their next batch) is not included. Each event is also timed alone and the
//!   median and p99 of those times are printed to stderr.
//! - `xfrm/dump_10000_sas`: applying a dump of 10 000 inbound SAs (as the kernel sends it:
//!   NEWSA messages packed into 32 KiB datagrams) to an empty mirror. The memory is measured
//!   once as the growth of the resident set (`/proc/self/status`) and printed to stderr.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use wirespeed_core::{BufferPool, PacketBuf, PoolBuf, PoolConfig};
use wirespeed_stages::esp::{FlowKey, OutboundDecision, SaSet, SaState, SecurityAssociation, encapsulate};
use wirespeed_test_xfrm::{A, LOCAL, PEER, append_message, ip, newpolicy, out_policy, sa_info, tmpl};
use wirespeed_xfrm::msg::Builder;
use wirespeed_xfrm::wire::{AlgoAead, msg_type};
use wirespeed_xfrm::{Mirror, MirrorConfig, Scope};

/// `VmRSS` and `VmHWM` of this process in KiB (Linux), after resetting the high-water mark when
/// `reset` (writing 5 to `/proc/self/clear_refs`).
fn rss_kib(reset: bool) -> Option<(i64, i64)> {
    if reset {
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<i64> {
        status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

const IF_ID: u32 = 42;

fn mirror() -> Mirror {
    Mirror::new(MirrorConfig::new(Scope { if_ids: vec![IF_ID], marks: vec![] }, vec![ip(LOCAL)]))
}

/// Appends the `NEWSA` of an AES-128-GCM tunnel SA `src` → `dst` (reqid 1, key from `spi`) to `b`.
fn newsa(b: &mut Builder, src: &str, dst: &str, spi: u32) {
    let aead = AlgoAead {
        name: "rfc4106(gcm(aes))".into(),
        key: zeroize::Zeroizing::new((0..20).map(|i| (i as u8) ^ (spi as u8)).collect()),
        icv_bits: 128,
    };
    let a = A { aead: Some(aead), if_id: Some(IF_ID), ..A::default() };
    append_message(b, msg_type::NEWSA, |o| sa_info(src, dst, spi, 1).write(o), &a);
}

/// The outbound policy 10.1.0.0/16 → 10.9.0.0/16, protected by a tunnel to the peer (reqid 1).
fn policy() -> Vec<u8> {
    let info = out_policy(0x201, 0, "10.1.0.0", 16, "10.9.0.0", 16);
    let a = A { tmpls: vec![tmpl(LOCAL, PEER, 1)], if_id: Some(IF_ID), ..A::default() };
    newpolicy(msg_type::NEWPOLICY, &info, &a)
}

/// Ethernet + IPv4/UDP packet of `inner_len` bytes from 10.1.0.1 to 10.9.0.9.
fn frame(inner_len: usize) -> Vec<u8> {
    wirespeed_benches::udp4_frame(inner_len, [10, 1, 0, 1], [10, 9, 0, 9])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn bench_newsa_to_first_seal(c: &mut Criterion) {
    let pool = BufferPool::new(PoolConfig { buffers: 64, data_room: 2048, headroom: 256 }).unwrap();
    let pol = policy();
    let mut sa_msg = Builder::new();
    newsa(&mut sa_msg, LOCAL, PEER, 0xa000_0001);
    let sa_msg = sa_msg.bytes().to_vec();
    let tmpl = frame(64);
    let key = FlowKey {
        v6: false,
        src: u128::from(u32::from_be_bytes([10, 1, 0, 1])) << 96,
        dst: u128::from(u32::from_be_bytes([10, 9, 0, 9])) << 96,
        proto: 17,
        ports: Some((12345, 4711)),
    };
    let mut each = Vec::new();
    let mut g = c.benchmark_group("xfrm");
    g.bench_function("newsa_to_first_seal", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut m = mirror();
                m.apply_datagram(&pol);
                let mut b: PoolBuf = pool.alloc().unwrap();
                b.copy_from(&tmpl).unwrap();
                let t = Instant::now();
                let (changed, _) = m.apply_datagram(&sa_msg);
                debug_assert!(changed);
                let configs = m.configs();
                let sas: Vec<_> = configs
                    .iter()
                    .map(|c| std::sync::Arc::new(SecurityAssociation::new(c).unwrap()))
                    .collect();
                let set = SaSet::new(sas, &m.spd()).unwrap();
                let OutboundDecision::Protect(i) = set.decide_outbound(&key, 0) else { panic!("no SA") };
                let sa = set.sa(i);
                let mut st = SaState::new(sa);
                encapsulate(&mut b, 14, sa, &mut st, t, |_| {}).unwrap();
                let dt = t.elapsed();
                black_box(b.data().len());
                total += dt;
                each.push(dt);
            }
            total
        })
    });
    g.finish();
    each.sort();
    if !each.is_empty() {
        eprintln!(
            "xfrm/newsa_to_first_seal: {} events timed alone: median {:?}, p99 {:?}",
            each.len(),
            percentile(&each, 0.5),
            percentile(&each, 0.99)
        );
    }
}

const DUMP: u32 = 10_000;

fn dump() -> Vec<Vec<u8>> {
    let mut datagrams = Vec::new();
    let mut b = Builder::new();
    for i in 0..DUMP {
        newsa(&mut b, PEER, LOCAL, 0x1000_0000 + i);
        if b.bytes().len() > 32 * 1024 - 400 {
            datagrams.push(b.bytes().to_vec());
            b.clear();
        }
    }
    let at = b.start(wirespeed_xfrm::msg::NLMSG_DONE, 0, 0);
    b.fixed(|o| o.extend_from_slice(&0i32.to_ne_bytes()));
    b.finish(at);
    datagrams.push(b.bytes().to_vec());
    datagrams
}

fn bench_dump(c: &mut Criterion) {
    let d = dump();
    // Memory, once, outside the timing: resident set growth (page granularity, allocator
    // caching included) and its peak.
    let base = rss_kib(true);
    let mut m = mirror();
    for x in &d {
        m.apply_datagram(x);
    }
    assert_eq!(m.configs().len(), DUMP as usize);
    let after = rss_kib(false);
    match (base, after) {
        (Some((rss0, _)), Some((rss1, hwm))) => eprintln!(
            "xfrm/dump_10000_sas: {} datagrams, {} KiB of netlink; resident set +{} KiB after the dump ({} B per SA), peak +{} KiB",
            d.len(),
            d.iter().map(Vec::len).sum::<usize>() / 1024,
            rss1 - rss0,
            (rss1 - rss0) * 1024 / i64::from(DUMP),
            hwm - rss0
        ),
        _ => eprintln!("xfrm/dump_10000_sas: /proc/self/status unreadable, memory not measured"),
    }
    drop(m);
    let mut g = c.benchmark_group("xfrm");
    g.sample_size(10);
    g.bench_function("dump_10000_sas", |bench| {
        bench.iter_batched(
            mirror,
            |mut m| {
                for x in &d {
                    m.apply_datagram(x);
                }
                m
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_newsa_to_first_seal, bench_dump);
criterion_main!(benches);
