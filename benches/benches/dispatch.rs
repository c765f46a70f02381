//! Software dispatcher benchmarks (issue 14 item 3): the queue choice of a whole batch.
//!
//! * `dispatch/batch32_ipv4_udp`: hashing + RETA of 32 IPv4/UDP flows whose inputs were staged
//!   as their packets were parsed (`HashBatch::hash_into`: one batch Toeplitz, CLMUL when the
//!   CPU has it, then the RETA). Goal ≤ 2 ns per packet.
//! * `dispatch/decide_batch32_ipv4_udp`: `SteeringEngine::decide_batch` on 32 parsed packets
//!   (rules, input staging, batch hash, RETA, decisions): the dispatcher's path after parsing.
//! * `dispatch/per_packet32_ipv4_udp`: the same 32 decisions one packet at a time
//!   (`SteeringEngine::decide`, per-byte tables), the path the dispatcher took before.
//! * `dispatch/parse_batch32_ipv4_udp`: parsing and deciding the 32 frames with
//!   `SteeringEngine::decide_frames` (the dispatcher's path since issue 22: the common IPv4
//!   TCP/UDP frame goes from its header bytes straight into the batch hash's input, no
//!   `PacketInfo`): everything the dispatcher computes per batch before it moves the buffers.
//!
//! * `dispatch/host_filter32` (feature `dpdk`): `wirespeed_dpdk::HostFilter::decide` on the 32
//!   frames (28 data UDP flows, 2 IKE on UDP 500, 1 IKE behind the non-ESP marker, 1
//!   ESP-in-UDP), with the gateway's management plan for one own address: what the DPDK host
//!   exception path adds per received packet (a header parse and the rule walk).
//!
//! Symmetric `sort` mode, the Microsoft key, a 128-entry round-robin RETA over 4 queues; the 32
//! flows differ in addresses and ports.
//!
//! Every id also runs under `cpu/` (e.g. `cpu/dispatch/...`): the same routine timed by the bench
//! thread's CPU time (`wirespeed_benches::ThreadCpuTime`), whose throughput is per CPU-second.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use wirespeed_benches::Clock;
use wirespeed_core::backend::null::udp4_frame;
use wirespeed_core::rss::{
    DecideScratch, HashBatch, PacketInfo, RssConfig, RssGroup, RssHasher, SteeringDecision, SteeringEngine,
    SteeringPlan, SymmetricMode,
};

fn frames32() -> Vec<Vec<u8>> {
    (0..32u16)
        .map(|i| {
            let mut f = udp4_frame(64);
            f[29] = i as u8; // source address
            f[33] = (i * 7) as u8; // destination address
            f[34..36].copy_from_slice(&(1024 + i * 13).to_be_bytes());
            f[36..38].copy_from_slice(&(53 + i).to_be_bytes());
            f
        })
        .collect()
}

fn dispatch<M: Clock>(c: &mut Criterion<M>) {
    let hasher = RssHasher::new(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() }).unwrap();
    let engine = SteeringEngine::new(hasher, SteeringPlan::rss_only(RssGroup::first(4)), 4).unwrap();
    let reta = engine.default_reta().unwrap();
    let frames = frames32();
    let infos: Vec<PacketInfo> = frames.iter().map(|f| PacketInfo::parse_ethernet(f)).collect();
    assert!(infos.iter().all(|p| p.tuple.is_some()));
    let mut scratch = DecideScratch::new();
    let mut out = [SteeringDecision::Drop { rule: 0 }; 32];
    engine.decide_batch(&infos, &reta, &mut scratch, &mut out);
    for (p, d) in infos.iter().zip(&out) {
        assert_eq!(*d, engine.decide(p, &reta), "batch and per-packet decisions agree");
    }
    let queues: std::collections::BTreeSet<_> = out.iter().filter_map(|d| d.queue()).collect();
    assert!(queues.len() > 1, "the flows spread over queues");

    let mut staged = HashBatch::new();
    for (i, p) in infos.iter().enumerate() {
        assert!(staged.push(engine.hasher(), i, p.tuple.as_ref().unwrap()));
    }
    let mut hashes = [0u32; 32];
    let mut queues = [0u16; 32];
    assert_eq!(staged.hash_into(engine.hasher(), &mut hashes), u32::MAX);
    for ((q, &h), d) in queues.iter_mut().zip(&hashes).zip(&out) {
        *q = reta.queue(h);
        assert_eq!(Some(*q), d.queue());
    }

    let mut g = c.benchmark_group(M::group("dispatch"));
    g.throughput(Throughput::Elements(32));
    g.bench_function("batch32_ipv4_udp", |b| {
        b.iter(|| {
            let hashed = black_box(&staged).hash_into(engine.hasher(), &mut hashes);
            reta.queues_into(&hashes, &mut queues);
            black_box(hashed);
            black_box(&queues);
        })
    });
    g.bench_function("decide_batch32_ipv4_udp", |b| {
        b.iter(|| {
            engine.decide_batch(black_box(&infos), &reta, &mut scratch, &mut out);
            black_box(&out);
        })
    });
    g.bench_function("per_packet32_ipv4_udp", |b| {
        b.iter(|| {
            for (p, o) in black_box(&infos).iter().zip(out.iter_mut()) {
                *o = engine.decide(p, &reta);
            }
            black_box(&out);
        })
    });
    g.bench_function("parse_batch32_ipv4_udp", |b| {
        b.iter(|| {
            engine.decide_frames(
                black_box(&frames).iter().map(|f| f.as_slice()),
                &reta,
                &mut scratch,
                &mut out,
            );
            black_box(&out);
        })
    });
    g.finish();
}

#[cfg(feature = "dpdk")]
fn host_filter<M: Clock>(c: &mut Criterion<M>) {
    use wirespeed_dpdk::{HostAction, HostFilter, HostPathConfig};
    let mut frames = frames32();
    let own = [0xc0, 0x00, 0x02, 0x01]; // 192.0.2.1
    for (i, (dport, word)) in
        [(500, [0x21, 0x20, 0x22, 0x08]), (500, [1, 2, 3, 4]), (4500, [0; 4]), (4500, [0, 0, 0x10, 1])]
            .into_iter()
            .enumerate()
    {
        let f = &mut frames[i * 8];
        f[30..34].copy_from_slice(&own);
        f[36..38].copy_from_slice(&(dport as u16).to_be_bytes());
        f[42..46].copy_from_slice(&word);
    }
    let plan =
        SteeringPlan::management_default(4, RssGroup::first(4), &[std::net::Ipv4Addr::from(own).into()]);
    let filter = HostFilter::compile(&plan, &HostPathConfig::new("wan0")).unwrap();
    let host = frames.iter().filter(|f| filter.decide(f) == HostAction::Host).count();
    assert_eq!(host, 3, "two IKE on 500, one behind the marker; ESP-in-UDP and data stay");
    let mut g = c.benchmark_group(M::group("dispatch"));
    g.throughput(Throughput::Elements(32));
    g.bench_function("host_filter32", |b| {
        b.iter(|| {
            let mut n = 0;
            for f in &frames {
                n += usize::from(filter.decide(black_box(f)) == HostAction::Host);
            }
            black_box(n)
        })
    });
    g.finish();
}

#[cfg(not(feature = "dpdk"))]
wirespeed_benches::wall_and_cpu_main!(dispatch);
#[cfg(feature = "dpdk")]
wirespeed_benches::wall_and_cpu_main!(dispatch, host_filter);
