//! The fuzz suite: property tests over mutations of real frames and captures (the tcpdump test
//! corpus in `testing/corpus/tcpdump`, many of them fuzzer-found malformed frames), for every
//! place untrusted wire input is parsed: the pcap/pcapng reader, classify (both paths), the RSS
//! parser and hasher, a whole data shard (classify → punt → forward), ESP decapsulation, and the
//! control plane (smoltcp + neighbor learning).
//!
//! Properties, beyond "never panics":
//! - the reader makes progress: at most one frame per 12 input bytes, every frame within the
//!   record limit;
//! - classify's fast path and etherparse path agree, offsets stay inside the frame;
//! - the RSS table hash equals the bit-serial reference, and symmetric modes hash both
//!   directions of a flow alike;
//! - every packet is accounted for: on a data shard rx == tx + drops + punted; through ESP
//!   decap out + drops == in; on the control shard rx == tx + drops (when no management
//!   connection is involved) and nothing learned breaks the neighbor-learning rules;
//! - no forged ESP is accepted: a mutated packet that decrypts yields exactly the original inner
//!   packet.
//!
//! Cases per property: 1000 by default (the whole suite runs in about 10 s in a debug build
//! on 2 cores); set `WIRESPEED_FUZZ_CASES=N` for longer runs, e.g.
//! `WIRESPEED_FUZZ_CASES=100000 cargo test --release -p wirespeed-stages --test fuzz`.
//! The corpus is found at `testing/corpus/tcpdump` (vendored), or `WIRESPEED_CORPUS`.

mod esp_common;

use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use esp_common::buf;
use proptest::prelude::*;
use wirespeed_core::backend::mem::{MemConfig, MemPort};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::rss::{PacketInfo, RssConfig, RssHasher, SymmetricMode};
use wirespeed_core::{
    Batch, BufferPool, DropReason, PacketBuf, PacketMeta, Pipeline, PoolBuf, PoolConfig, Port, ShardCtx,
    Stage, Worker,
};
use wirespeed_pcap::{CaptureReader, MAX_RECORD};
use wirespeed_stages::classify::{Classify, ClassifyConfig};
use wirespeed_stages::control::{ControlConfig, ControlPlane, MAX_LEARNED, Punt, punt_queue};
use wirespeed_stages::esp::*;
use wirespeed_stages::forward::{FibBuilder, Forward, NextHop};

/// Cases per property: `WIRESPEED_FUZZ_CASES` or `default`.
fn cases(default: u32) -> u32 {
    std::env::var("WIRESPEED_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: cases(1000), max_shrink_iters: 256, ..ProptestConfig::default() }
}

fn corpus_dir() -> PathBuf {
    wirespeed_test_corpus::dir()
}

struct Seeds {
    /// Capture files' bytes (the first 16 KiB of each, enough for many records).
    captures: Vec<Vec<u8>>,
    /// Every frame of the corpus that normalises to Ethernet.
    frames: Vec<Vec<u8>>,
    /// Their IP packets (Ethernet header removed), 20..=1400 bytes: inner packets for ESP.
    ip: Vec<Vec<u8>>,
    /// Frames the control plane would be punted: ARP, ICMP, ICMPv6 and TCP from the corpus,
    /// plus frames addressed to it (below).
    control: Vec<Vec<u8>>,
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(corpus_dir()).unwrap().flatten().map(|e| e.path()).collect();
        files.sort();
        let mut s =
            Seeds { captures: Vec::new(), frames: Vec::new(), ip: Vec::new(), control: control_seeds() };
        let mut out = vec![0u8; MAX_RECORD as usize + 64];
        for f in files {
            let Ok(bytes) = std::fs::read(&f) else { continue };
            s.captures.push(bytes[..bytes.len().min(16 * 1024)].to_vec());
            let Ok(mut r) = CaptureReader::open(&f) else { continue };
            while let Some(item) = r.next_frame() {
                let Ok(frame) = item else { break };
                let Ok(n) = frame.to_ethernet(&mut out) else { continue };
                // Jumbo frames do not fit the test pools' 2 KiB buffers (mutations add up to
                // 128 bytes).
                if !(14..=1800).contains(&n) {
                    continue;
                }
                let e = &out[..n];
                let et = u16::from_be_bytes([e[12], e[13]]);
                // Inner packets for ESP: exactly the IP packet (no Ethernet padding, not cut).
                let ip_len = match et {
                    0x0800 if n >= 34 => usize::from(u16::from_be_bytes([e[16], e[17]])),
                    0x86dd if n >= 54 => 40 + usize::from(u16::from_be_bytes([e[18], e[19]])),
                    _ => 0,
                };
                if (20..=1400).contains(&ip_len) && ip_len <= n - 14 {
                    s.ip.push(e[14..14 + ip_len].to_vec());
                }
                let proto = match et {
                    0x0800 if n >= 34 => Some(e[23]),
                    0x86dd if n >= 54 => Some(e[20]),
                    _ => None,
                };
                if et == 0x0806 || matches!(proto, Some(1 | 6 | 58)) {
                    s.control.push(e.to_vec());
                }
                s.frames.push(e.to_vec());
            }
        }
        let sizes = (s.captures.len(), s.frames.len(), s.ip.len(), s.control.len());
        assert!(
            sizes.0 > 800 && sizes.1 > 5_000 && sizes.2 > 1000 && sizes.3 > 1000,
            "corpus too small: {sizes:?}"
        );
        s
    })
}

/// One mutation of a byte string.
#[derive(Clone, Debug)]
enum Mutation {
    Xor(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// Copies 2 or 4 bytes from one place to another (lengths and addresses move around).
    Copy(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..).prop_map(|(a, x)| Mutation::Xor(a, x)),
        2 => (any::<usize>(), prop_oneof![Just(0u8), Just(0xff), Just(0x80), any::<u8>()])
            .prop_map(|(a, v)| Mutation::Set(a, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(a, b)| Mutation::Insert(a, b)),
        1 => (any::<usize>(), 1usize..32).prop_map(|(a, n)| Mutation::Delete(a, n)),
        1 => (any::<usize>(), any::<usize>(), prop_oneof![Just(2usize), Just(4)]).prop_map(|(a, b, n)| Mutation::Copy(a, b, n)),
    ]
}

fn mutate(seed: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for m in muts {
        let len = v.len();
        match m {
            Mutation::Xor(a, x) if len > 0 => v[a % len] ^= x,
            Mutation::Set(a, x) if len > 0 => v[a % len] = *x,
            Mutation::Truncate(n) => v.truncate(n % (len + 1)),
            Mutation::Insert(a, b) => {
                let at = a % (len + 1);
                v.splice(at..at, b.iter().copied());
            }
            Mutation::Delete(a, n) if len > 0 => {
                let at = a % len;
                v.drain(at..(at + n).min(len));
            }
            Mutation::Copy(a, b, n) if len >= *n => {
                let (from, to) = (a % (len - n + 1), b % (len - n + 1));
                let chunk: Vec<u8> = v[from..from + n].to_vec();
                v[to..to + n].copy_from_slice(&chunk);
            }
            _ => {}
        }
    }
    v
}

fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 0..=max)
}

// ---------------------------------------------------------------------------------------------
// pcap / pcapng reader

proptest! {
    #![proptest_config(config())]

    #[test]
    fn pcap_reader_survives_mutated_captures(seed in any::<prop::sample::Index>(), muts in mutations(8)) {
        let s = seeds();
        let bytes = mutate(&s.captures[seed.index(s.captures.len())], &muts);
        let len = bytes.len();
        let Ok(mut r) = CaptureReader::from_reader(Cursor::new(bytes)) else { return Ok(()) };
        let mut frames = 0usize;
        let mut out = vec![0u8; MAX_RECORD as usize + 64];
        while let Some(item) = r.next_frame() {
            match item {
                Ok(f) => {
                    frames += 1;
                    prop_assert!(f.data.len() <= MAX_RECORD as usize);
                    let _ = f.to_ethernet(&mut out);
                }
                Err(e) => if !e.is_recoverable() { break },
            }
            // Every record has at least a 12-byte header: more frames than that means the
            // reader is not consuming its input.
            prop_assert!(frames <= len / 12 + 1, "{} frames from {} bytes", frames, len);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// classify, RSS, a whole data shard

fn classify_config() -> ClassifyConfig {
    ClassifyConfig {
        own_ipv4: vec!["192.0.2.1".parse().unwrap(), "10.0.0.1".parse().unwrap()],
        own_ipv6: vec!["2001:db8::1".parse().unwrap(), "fe80::1".parse().unwrap()],
        ..ClassifyConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn classify_paths_agree_on_mutated_frames(seed in any::<prop::sample::Index>(), muts in mutations(6)) {
        let s = seeds();
        let f = mutate(&s.frames[seed.index(s.frames.len())], &muts);
        let cfg = classify_config();
        let (mut fast, mut slow) = (PacketMeta::default(), PacketMeta::default());
        let rf = cfg.classify(&f, &mut fast);
        let rs = cfg.classify_etherparse(&f, &mut slow);
        prop_assert_eq!(rf.map(|_| fast), rs.map(|_| slow));
        if rf.is_ok() {
            prop_assert!(fast.l3_offset as usize <= f.len() && fast.l4_offset as usize <= f.len());
        }
    }

    #[test]
    fn rss_parse_and_hash_hold_on_mutated_frames(seed in any::<prop::sample::Index>(), muts in mutations(6)) {
        let s = seeds();
        let f = mutate(&s.frames[seed.index(s.frames.len())], &muts);
        let info = PacketInfo::parse_ethernet(&f);
        if f.len() >= 14 && !matches!(u16::from_be_bytes([f[12], f[13]]), 0x8100 | 0x88a8 | 0x9100) {
            prop_assert_eq!(info.ethertype, u16::from_be_bytes([f[12], f[13]]));
            prop_assert_eq!(info, PacketInfo::parse_l3(info.ethertype, &f[14..]));
        }
        if let Some(t) = info.tuple {
            for h in hashers() {
                prop_assert_eq!(h.hash_tuple(&t), h.hash_tuple_reference(&t), "{:?}", h.mode());
                if h.mode() != SymmetricMode::None {
                    prop_assert_eq!(h.hash_tuple(&t), h.hash_tuple(&t.reversed()), "{:?}", h.mode());
                }
            }
        }
    }
}

fn hashers() -> &'static [RssHasher] {
    static H: OnceLock<Vec<RssHasher>> = OnceLock::new();
    H.get_or_init(|| {
        [
            SymmetricMode::None,
            SymmetricMode::Key,
            SymmetricMode::Xor,
            SymmetricMode::OrXor,
            SymmetricMode::Sort,
        ]
        .into_iter()
        .map(|mode| RssHasher::new(&RssConfig { mode, ..RssConfig::default() }).unwrap())
        .collect()
    })
}

/// A data shard (classify → punt → forward on the mem backend) accounts for every frame. One
/// shard serves every case (building a FIB allocates its DIR-24-8 table); each case
/// checks the counters' deltas.
#[test]
fn data_shard_accounts_for_every_mutated_frame() {
    let s = seeds();
    let pool = BufferPool::new(PoolConfig { buffers: 128, ..PoolConfig::default() }).unwrap();
    let (mut port, wire) = MemPort::new(MemConfig { queues: 1, ..MemConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut b = FibBuilder::new();
    let gw4: IpAddr = "192.0.2.254".parse().unwrap();
    let gw6: IpAddr = "fe80::fe".parse().unwrap();
    b.route("0.0.0.0".parse().unwrap(), 0, NextHop::Gateway(gw4)).unwrap();
    b.route("::".parse().unwrap(), 0, NextHop::Gateway(gw6)).unwrap();
    b.neighbor(gw4, [0x02, 0, 0, 0, 0, 0xfe], 0);
    b.neighbor(gw6, [0x02, 0, 0, 0, 0, 0xfe], 0);
    let mut fib = Publisher::new(b.build().unwrap());
    let queue = punt_queue(64);
    let stages = (
        Classify::new(classify_config()),
        Punt::new(queue.clone()),
        Forward::new(fib.subscribe(), &[[0x02, 0, 0, 0, 0, 1]]),
    );
    let shard = std::cell::RefCell::new((Pipeline::new(rx, tx, stages), ShardCtx::new(0)));
    let strategy = proptest::collection::vec((any::<prop::sample::Index>(), mutations(4)), 1..=32);
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let result = runner.run(&strategy, |picks| {
        let (pipeline, cx) = &mut *shard.borrow_mut();
        let before = cx.counters;
        let mut injected = 0u64;
        for (seed, muts) in &picks {
            let f = mutate(&s.frames[seed.index(s.frames.len())], muts);
            if wire.inject(0, &f).is_ok() {
                injected += 1;
            }
        }
        pipeline.run_once(cx);
        let c = cx.counters;
        let (rx, tx, punted) =
            (c.rx_packets - before.rx_packets, c.tx_packets - before.tx_packets, c.punted - before.punted);
        let drops = c.total_drops() - before.total_drops();
        prop_assert_eq!(rx, injected);
        prop_assert_eq!(rx, tx + drops + punted, "{}", c);
        prop_assert_eq!(wire.drain_tx(0).len() as u64, tx);
        prop_assert_eq!(std::iter::from_fn(|| queue.pop()).count() as u64, punted);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// ESP decapsulation (public API only)

const GW4: [u8; 4] = [192, 0, 2, 1];
const PEER4: [u8; 4] = [198, 51, 100, 7];

fn keymat(alg: AeadAlgorithm) -> Vec<u8> {
    (0..alg.keymat_len()).map(|i| (i * 29 + 3) as u8).collect()
}

/// An outbound SA and the matching inbound one (tunnel between GW4 and PEER4, both inner
/// families), as encrypt and decrypt stages on Ethernet frames.
fn esp_pair(alg: AeadAlgorithm, natt: bool) -> (EspEncrypt, EspDecrypt, Publisher<SaSet>) {
    let mut o = SaConfig::tunnel(
        0x100,
        Direction::Outbound { shard: 0 },
        alg,
        &keymat(alg),
        GW4.into(),
        PEER4.into(),
    );
    // Loopback: the inbound SA is the peer's (local = PEER4, remote = GW4).
    let mut i = SaConfig::tunnel(0x100, Direction::Inbound, alg, &keymat(alg), PEER4.into(), GW4.into());
    if natt {
        o.udp_encap = Some(UdpEncap::default());
        i.udp_encap = Some(UdpEncap::default());
    }
    let out = Arc::new(SecurityAssociation::new(&o).unwrap());
    let inb = Arc::new(SecurityAssociation::new(&i).unwrap());
    let spd = Spd::new(vec![
        SecurityPolicy {
            selector: Selector::between(IpPrefix::any_v4(), IpPrefix::any_v4()),
            action: PolicyAction::Protect { spis: vec![0x100] },
        },
        SecurityPolicy {
            selector: Selector::between(IpPrefix::any_v6(), IpPrefix::any_v6()),
            action: PolicyAction::Protect { spis: vec![0x100] },
        },
    ]);
    let mut publisher = Publisher::new(SaSet::new([out, inb], &spd).unwrap());
    let enc = EspEncrypt::new(publisher.subscribe());
    let dec = EspDecrypt::new(publisher.subscribe());
    (enc, dec, publisher)
}

fn ether(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    f.extend_from_slice(if ip[0] >> 4 == 6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    f.extend_from_slice(ip);
    f
}

fn run<S: Stage<PoolBuf>>(stage: &mut S, cx: &mut ShardCtx, pkt: &[u8]) -> Option<Vec<u8>> {
    let mut batch: Batch<PoolBuf> = Batch::new();
    batch.push(buf(pkt)).unwrap();
    stage.process(cx, &mut batch);
    batch.iter().next().map(|b| b.data().to_vec())
}

/// The ECN field of an IP packet.
fn ecn(ip: &[u8]) -> u8 {
    if ip[0] >> 4 == 4 { ip[1] & 3 } else { (ip[1] >> 4) & 3 }
}

/// An IP packet with its ECN field (and, for IPv4, the header checksum) zeroed.
fn without_ecn(ip: &[u8]) -> Vec<u8> {
    let mut v = ip.to_vec();
    if v[0] >> 4 == 4 {
        v[1] &= !3;
        v[10..12].fill(0);
    } else {
        v[1] &= !0x30;
    }
    v
}

/// RFC 1071: an IPv4 header with a correct checksum sums to 0xffff.
fn ipv4_header_ok(h: &[u8]) -> bool {
    let mut sum: u32 =
        h.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

const ALGS: [AeadAlgorithm; 3] =
    [AeadAlgorithm::Aes128Gcm, AeadAlgorithm::Aes256Gcm, AeadAlgorithm::ChaCha20Poly1305];

/// The ESP seeds are meaningful: the corpus IP packets round-trip through a tunnel (so the
/// mutation test below starts from real ESP packets, not from early refusals).
#[test]
fn esp_seeds_round_trip() {
    let s = seeds();
    let (mut enc, mut dec, _p) = esp_pair(AeadAlgorithm::Aes128Gcm, false);
    let mut cx = ShardCtx::new(0);
    let (mut ok, mut refused) = (0usize, 0u64);
    for inner in s.ip.iter().step_by(7) {
        let Some(e) = run(&mut enc, &mut cx, &ether(inner)) else { continue };
        match run(&mut dec, &mut cx, &e) {
            Some(d) if d[14..] == inner[..] => ok += 1,
            Some(d) => panic!("round trip changed the packet: {inner:02x?} -> {d:02x?}"),
            None => refused += 1,
        }
    }
    assert_eq!(cx.counters.total_drops(), (s.ip.len().div_ceil(7) - ok) as u64, "{}", cx.counters);
    assert!(
        ok * 10 >= s.ip.len().div_ceil(7) * 9,
        "{ok} of {} round-tripped ({refused} refused inbound)",
        s.ip.len().div_ceil(7)
    );
}

proptest! {
    #![proptest_config(config())]

    /// A real inner packet from the corpus, encrypted, then mutated anywhere: decapsulation
    /// either drops it (counted), passes it on as not-ESP, or — only if the mutation missed
    /// everything the ICV covers — yields exactly the original inner packet. Never a forgery.
    #[test]
    fn mutated_esp_is_dropped_passed_or_authentic(
        seed in any::<prop::sample::Index>(),
        alg in 0usize..3,
        natt in any::<bool>(),
        muts in mutations(4),
    ) {
        let s = seeds();
        let inner = &s.ip[seed.index(s.ip.len())];
        let (mut enc, mut dec, _p) = esp_pair(ALGS[alg], natt);
        let mut cx = ShardCtx::new(0);
        let Some(e) = run(&mut enc, &mut cx, &ether(inner)) else {
            // The corpus packet itself was refused outbound (malformed IP): counted.
            prop_assert_eq!(cx.counters.total_drops(), 1);
            return Ok(());
        };
        let m = mutate(&e, &muts);
        let drops = cx.counters.total_drops();
        let before = *dec.stats();
        let out = run(&mut dec, &mut cx, &m);
        let after = *dec.stats();
        prop_assert_eq!(out.is_some() as u64 + cx.counters.total_drops() - drops, 1);
        if let Some(o) = out {
            if after.decrypted > before.decrypted {
                // Authentic: the output is an Ethernet header (up to two VLAN tags) + the inner,
                // except that congestion marked on the (unauthenticated) outer header is copied
                // to an ECN-capable inner one (RFC 6040 §4.2).
                prop_assert!(o.len() >= inner.len() && o.len() - inner.len() <= 22);
                let got = &o[o.len() - inner.len()..];
                prop_assert_eq!(without_ecn(got), without_ecn(inner));
                let (e_in, e_out) = (ecn(inner), ecn(got));
                prop_assert!(e_in == e_out || (e_in != 0 && e_out == 3), "ECN {} -> {}", e_in, e_out);
                if got[0] >> 4 == 4 {
                    // The checksum follows the ECN change (RFC 1624): still right if it was.
                    let hl = (usize::from(got[0] & 0x0f) * 4).min(got.len());
                    prop_assert_eq!(ipv4_header_ok(&got[..hl]), ipv4_header_ok(&inner[..hl]), "inner checksum");
                }
            } else {
                prop_assert_eq!(after.passed, before.passed + 1, "not decrypted, so passed as not ESP");
                prop_assert_eq!(&o, &m);
            }
        }
        // The same mutated packet again is never accepted a second time (anti-replay).
        if after.decrypted > before.decrypted {
            let again = run(&mut dec, &mut cx, &m);
            prop_assert!(again.is_none() || dec.stats().decrypted == after.decrypted);
        }
    }

    /// Any corpus frame, mutated, through decapsulation with a live SA: counted, no panic.
    #[test]
    fn esp_decap_accounts_for_mutated_corpus_frames(seed in any::<prop::sample::Index>(), muts in mutations(6)) {
        let s = seeds();
        let f = mutate(&s.frames[seed.index(s.frames.len())], &muts);
        let (_enc, mut dec, _p) = esp_pair(AeadAlgorithm::Aes128Gcm, false);
        let mut cx = ShardCtx::new(0);
        let out = run(&mut dec, &mut cx, &f);
        prop_assert_eq!(out.is_some() as u64 + cx.counters.total_drops(), 1);
        prop_assert_eq!(dec.stats().decrypted, 0, "nothing in the corpus is under this key");
    }
}

// ---------------------------------------------------------------------------------------------
// Control plane

const ME_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x42];
const ME4: [u8; 4] = [192, 0, 2, 1];

/// Frames addressed to the control plane (checksums valid), for mutations to start from.
fn control_seeds() -> Vec<Vec<u8>> {
    use etherparse::PacketBuilder;
    let me6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let peer6: Ipv6Addr = "2001:db8::42".parse().unwrap();
    let mut v = Vec::new();
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&PEER_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&PEER_MAC);
    arp.extend_from_slice(&[192, 0, 2, 42, 0, 0, 0, 0, 0, 0]);
    arp.extend_from_slice(&ME4);
    arp.resize(60, 0);
    v.push(arp);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, ME_MAC)
        .ipv4([192, 0, 2, 42], ME4, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut f, b"ping")
        .unwrap();
    v.push(f);
    for (ty, target, opt) in [(135u8, me6, 1u8), (136, peer6, 2)] {
        let dst = if ty == 135 { "ff02::1:ff00:1" } else { "ff02::1" };
        let mut body = target.octets().to_vec();
        body.extend_from_slice(&[opt, 1]);
        body.extend_from_slice(&PEER_MAC);
        let mut f = Vec::new();
        PacketBuilder::ethernet2(PEER_MAC, [0x33, 0x33, 0, 0, 0, 1])
            .ipv6(peer6.octets(), dst.parse::<Ipv6Addr>().unwrap().octets(), 255)
            .icmpv6_raw(ty, 0, if ty == 136 { [0x60, 0, 0, 0] } else { [0; 4] })
            .write(&mut f, &body)
            .unwrap();
        v.push(f);
    }
    for port in [9000u16, 22] {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(PEER_MAC, ME_MAC)
            .ipv4([192, 0, 2, 42], ME4, 64)
            .tcp(40000, port, 1, 1024)
            .syn()
            .write(&mut f, &[])
            .unwrap();
        v.push(f);
    }
    let mut f = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, ME_MAC)
        .ipv6(peer6.octets(), me6.octets(), 64)
        .icmpv6_echo_request(1, 1)
        .write(&mut f, b"ping6")
        .unwrap();
    v.push(f);
    v
}

/// Whether `f` may carry TCP to port 9000 (a management connection may then exist, whose
/// segments smoltcp consumes without a one-to-one answer).
fn may_be_management_tcp(f: &[u8]) -> bool {
    let port_at = |off: usize| f.get(off..off + 2) == Some(&9000u16.to_be_bytes()[..]);
    match f.get(12..14) {
        Some([0x08, 0x00]) => {
            let ihl = usize::from(f.get(14).copied().unwrap_or(0) & 0x0f) * 4;
            f.get(23) == Some(&6) && port_at(14 + ihl + 2)
        }
        // IPv6: TCP right after the header, or behind extension headers (conservatively).
        Some([0x86, 0xdd]) => match f.get(20) {
            Some(6) => port_at(56),
            Some(0 | 43 | 44 | 51 | 60 | 135 | 139 | 140) => true,
            _ => false,
        },
        _ => false,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn control_plane_accounts_for_mutated_frames(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), mutations(4), any::<bool>()), 1..=24),
    ) {
        let s = seeds();
        let pool = BufferPool::new(PoolConfig { buffers: 64, ..PoolConfig::default() }).unwrap();
        let (mut port, wire) = MemPort::new(MemConfig { queues: 2, mac: ME_MAC, ..MemConfig::default() }, pool);
        let (_rx, tx) = port.queue_pair(1).unwrap();
        let queue = punt_queue(64);
        let own: [(IpAddr, u8); 2] = [(IpAddr::from(ME4), 24), ("2001:db8::1".parse().unwrap(), 64)];
        let cfg = ControlConfig { mac: ME_MAC, addresses: own.to_vec(), ..ControlConfig::default() };
        let mut control = ControlPlane::new(cfg, queue.clone(), tx, pool).unwrap();
        let mut cx = ShardCtx::new(1);
        let mut pushed = 0u64;
        let mut mgmt = false;
        for (seed, muts, ours) in &picks {
            let base = if *ours { &s.control[seed.index(8)] } else { &s.control[seed.index(s.control.len())] };
            let f = mutate(base, muts);
            mgmt |= may_be_management_tcp(&f);
            let mut b = pool.alloc().unwrap();
            b.copy_from(&f).unwrap();
            *b.meta_mut() = PacketMeta::received(0, 0);
            prop_assert!(queue.push(b).is_ok());
            pushed += 1;
        }
        Worker::poll(&mut control, &mut cx);
        cx.now += std::time::Duration::from_secs(1);
        Worker::poll(&mut control, &mut cx);
        let c = cx.counters;
        prop_assert_eq!(c.rx_packets, pushed);
        prop_assert!(c.drops_of(DropReason::ControlIgnored) <= pushed);
        if !mgmt {
            prop_assert_eq!(c.rx_packets, c.tx_packets + c.total_drops(), "{}", c);
        }
        prop_assert_eq!(wire.drain_tx(1).len() as u64, c.tx_packets);
        let learned: Vec<_> = control.learned_neighbors().collect();
        prop_assert!(learned.len() <= MAX_LEARNED);
        for (ip, n) in learned {
            prop_assert!(n.mac[0] & 1 == 0 && n.mac != [0; 6], "{:?}", n);
            prop_assert!(!own.iter().any(|(a, _)| *a == ip), "learned our own address");
            let on_link = match ip {
                IpAddr::V4(a) => a.octets()[..3] == ME4[..3] && a != Ipv4Addr::from([192, 0, 2, 255]),
                IpAddr::V6(a) => a.segments()[..4] == [0x2001, 0xdb8, 0, 0] || a.segments()[0] & 0xffc0 == 0xfe80,
            };
            prop_assert!(on_link, "learned {} off the configured subnets", ip);
        }
    }
}

/// Found by `classify_paths_agree_on_mutated_frames`: a DNS query from the corpus whose IPv4
/// protocol byte became 51 (AH). The header checksum no longer verifies; the fast path said
/// `MalformedIpv4`, the etherparse path parsed the (garbage) AH first and said `Truncated`.
#[test]
fn classify_checks_the_ipv4_checksum_before_ah() {
    let mut f = vec![0x00, 0x02, 0x41, 0x05, 0x64, 0x44, 0x38, 0xd5, 0x47, 0x14, 0xf5, 0xa1, 0x08, 0x00];
    f.extend_from_slice(&[
        0x45, 0, 0, 0x4a, 0xaa, 0x43, 0, 0, 0x40, 0x33, 0x50, 0x5c, 192, 0, 0, 1, 192, 0, 0, 2,
    ]);
    f.extend_from_slice(&[0xb4, 0x91, 0x00, 0x35, 0x00, 0x36, 0xcd, 0x24]);
    f.resize(14 + 0x4a, 0);
    let cfg = classify_config();
    let (mut a, mut b) = (PacketMeta::default(), PacketMeta::default());
    assert_eq!(cfg.classify(&f, &mut a), Err(DropReason::MalformedIpv4));
    assert_eq!(cfg.classify_etherparse(&f, &mut b), Err(DropReason::MalformedIpv4));
}
