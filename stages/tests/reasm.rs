//! Outer IPv4 reassembly before ESP (issue 20; RFC 4301 §5.2, RFC 4303 §3.4.1): fragments of
//! ESP (and UDP) to the appliance's own address, in any order, reassemble into the original
//! packet, classified again; duplicates, overlaps, missing pieces, timeouts, a full table,
//! datagrams too big for a buffer and hostile offsets give counted drops, never a panic; other
//! fragments pass unchanged.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use proptest::prelude::*;
use wirespeed_core::meta::flags;
use wirespeed_core::wire::checksum::checksum;
use wirespeed_core::{
    Batch, BufferPool, DropReason, FlowClass, PacketBuf, PoolBuf, PoolConfig, ShardCtx, Stage,
};
use wirespeed_stages::classify::{Classify, ClassifyConfig};
use wirespeed_stages::reasm::{MAX_FRAGMENTS, ReasmConfig, ReasmConfigError, Reassemble};

const OWN: [u8; 4] = [192, 0, 2, 1];
const PEER: [u8; 4] = [192, 0, 2, 2];
const OWN6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const PEER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// An IPv6 ESP packet to `dst` (frame, Ethernet included) with `ext` bytes of Destination
/// Options (0 or a multiple of 8) and `payload` bytes of ESP (SPI 0x1234, sequence 1, pattern).
fn datagram6(payload: usize, ext: usize, seed: u8, dst: [u8; 16]) -> Vec<u8> {
    let mut f = eth();
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&((ext + payload) as u16).to_be_bytes());
    h[6] = if ext > 0 { 60 } else { 50 };
    h[7] = 64;
    h[8..24].copy_from_slice(&PEER6);
    h[24..40].copy_from_slice(&dst);
    f.extend_from_slice(&h);
    if ext > 0 {
        let mut e = vec![0u8; ext];
        e[0] = 50;
        e[1] = (ext / 8 - 1) as u8;
        // PadN over the rest.
        e[2] = 1;
        e[3] = (ext - 4) as u8;
        f.extend_from_slice(&e);
    }
    let mut p: Vec<u8> = (0..payload).map(|i| (i * 11 + usize::from(seed)) as u8).collect();
    p[..4].copy_from_slice(&0x1234u32.to_be_bytes());
    p[4..8].copy_from_slice(&1u32.to_be_bytes());
    f.extend_from_slice(&p);
    f
}

/// The fragment frame of `whole` (from `datagram6`, `ext` bytes of extension headers) holding
/// payload `[off, off + len)`.
fn fragment6(whole: &[u8], ext: usize, off: usize, len: usize, more: bool, id: u32) -> Vec<u8> {
    let keep = 14 + 40 + ext;
    let mut f = whole[..keep].to_vec();
    f[18..20].copy_from_slice(&((ext + 8 + len) as u16).to_be_bytes());
    let nh_pos = if ext > 0 { 54 } else { 20 };
    let proto = f[nh_pos];
    f[nh_pos] = 44;
    f.extend_from_slice(&[proto, 0]);
    f.extend_from_slice(&(off as u16 & 0xfff8 | u16::from(more)).to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&whole[keep + off..keep + off + len]);
    f
}

fn split6(whole: &[u8], ext: usize, cuts: &[usize], id: u32) -> Vec<Vec<u8>> {
    let payload = whole.len() - 54 - ext;
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < payload));
    bounds.push(payload);
    bounds.dedup();
    bounds.windows(2).map(|w| fragment6(whole, ext, w[0], w[1] - w[0], w[1] != payload, id)).collect()
}

fn classify_cfg() -> ClassifyConfig {
    ClassifyConfig {
        own_ipv4: vec![Ipv4Addr::from(OWN)],
        own_ipv6: vec![Ipv6Addr::from(OWN6)],
        ..ClassifyConfig::default()
    }
}

/// An IPv4 packet of `total` bytes, protocol `proto`, to `dst`: an ESP header (SPI 0x1234,
/// sequence 1) or a UDP header to port 4500 carrying one, then a pattern.
fn datagram(total: usize, id: u16, proto: u8, dst: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&PEER);
    p[16..20].copy_from_slice(&dst);
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = (i * 7 + usize::from(id)) as u8;
    }
    let esp = if proto == 17 {
        p[20..22].copy_from_slice(&4500u16.to_be_bytes());
        p[22..24].copy_from_slice(&4500u16.to_be_bytes());
        p[24..26].copy_from_slice(&((total - 20) as u16).to_be_bytes());
        p[26..28].fill(0);
        28
    } else {
        20
    };
    p[esp..esp + 4].copy_from_slice(&0x1234u32.to_be_bytes());
    p[esp + 4..esp + 8].copy_from_slice(&1u32.to_be_bytes());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// Ethernet header.
fn eth() -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// The frame of the fragment of `ip` (20-byte header) holding payload `[off, off + len)`,
/// More Fragments as given; `off` need not be a multiple of 8 (it is rounded down in the
/// header, which is what a hostile sender can do too).
fn fragment(ip: &[u8], off: usize, len: usize, more: bool) -> Vec<u8> {
    let mut f = eth();
    let mut h = ip[..20].to_vec();
    h[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
    let fo = (off / 8) as u16 | if more { 0x2000 } else { 0 };
    h[6..8].copy_from_slice(&fo.to_be_bytes());
    h[10..12].fill(0);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(&ip[20 + off..20 + off + len]);
    f
}

/// Splits `ip`'s payload at the given cut points (multiples of 8) into fragment frames.
fn split(ip: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let payload = ip.len() - 20;
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < payload));
    bounds.push(payload);
    bounds.dedup();
    bounds.windows(2).map(|w| fragment(ip, w[0], w[1] - w[0], w[1] != payload)).collect()
}

struct Rig {
    pool: BufferPool,
    classify: Classify,
    stage: Reassemble<PoolBuf>,
    cx: ShardCtx,
}

impl Rig {
    fn new(cfg: ReasmConfig) -> Self {
        let pool = BufferPool::new(PoolConfig { buffers: 128, ..PoolConfig::default() }).unwrap();
        Self {
            pool,
            classify: Classify::new(classify_cfg()),
            stage: Reassemble::new(classify_cfg(), cfg).unwrap(),
            cx: ShardCtx::new(0),
        }
    }

    /// Runs the frames through classify and reassembly, one batch each; returns what came out.
    fn run(&mut self, frames: &[Vec<u8>]) -> Vec<PoolBuf> {
        let mut out = Vec::new();
        for f in frames {
            let mut b = Batch::new();
            let mut p = self.pool.alloc().expect("a buffer");
            p.copy_from(f).unwrap();
            b.push(p).ok();
            self.classify.process(&mut self.cx, &mut b);
            self.stage.process(&mut self.cx, &mut b);
            out.extend(b.drain(..));
        }
        out
    }

    /// Buffers not free in the pool (taken by allocating every free one).
    fn in_use(&self) -> usize {
        let mut taken = Vec::new();
        while let Some(b) = self.pool.alloc() {
            taken.push(b);
        }
        self.pool.stats().capacity - taken.len()
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.cx.counters.drops_of(r)
    }
}

fn whole(ip: &[u8]) -> Vec<u8> {
    let mut f = eth();
    f.extend_from_slice(ip);
    f
}

#[test]
fn in_order_reassembles_and_is_classified_again() {
    let ip = datagram(1800, 7, 50, OWN);
    let mut rig = Rig::new(ReasmConfig::default());
    let frags = split(&ip, &[1000]);
    assert_eq!(frags.len(), 2);
    let out = rig.run(&frags);
    assert_eq!(out.len(), 1, "{}", rig.cx.counters);
    assert_eq!(out[0].data(), &whole(&ip)[..]);
    let m = out[0].meta();
    assert_eq!((m.flow_class, m.spi, m.has(flags::FRAGMENT)), (FlowClass::Esp, 0x1234, false));
    assert_eq!(rig.cx.counters.total_drops(), 0);
    let s = rig.stage.stats();
    assert_eq!((s.fragments, s.reassembled, s.active), (2, 1, 0));
    // The buffers of the fragments went back to the pool (the packet holds one).
    drop(out);
    assert_eq!(rig.in_use(), 0);
}

#[test]
fn reverse_order_and_udp_encapsulated_esp() {
    let ip = datagram(1900, 8, 17, OWN);
    let mut rig = Rig::new(ReasmConfig::default());
    let mut frags = split(&ip, &[600, 1200, 1800]);
    frags.reverse();
    let out = rig.run(&frags);
    assert_eq!(out.len(), 1, "{}", rig.cx.counters);
    assert_eq!(out[0].data(), &whole(&ip)[..]);
    assert_eq!((out[0].meta().flow_class, out[0].meta().spi), (FlowClass::EspInUdp, 0x1234));
}

#[test]
fn exact_duplicate_drops_only_the_copy() {
    let ip = datagram(1500, 9, 50, OWN);
    let mut rig = Rig::new(ReasmConfig::default());
    let f = split(&ip, &[400, 800]);
    let out = rig.run(&[f[0].clone(), f[1].clone(), f[1].clone(), f[2].clone()]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data(), &whole(&ip)[..]);
    assert_eq!(rig.drops(DropReason::ReasmDuplicate), 1);
}

#[test]
fn overlap_discards_the_whole_datagram() {
    let ip = datagram(1500, 10, 50, OWN);
    let mut rig = Rig::new(ReasmConfig::default());
    // [0, 800) then [400, 1200) overlapping it, then the rest.
    let frames =
        [fragment(&ip, 0, 800, true), fragment(&ip, 400, 800, true), fragment(&ip, 1200, 280, false)];
    let out = rig.run(&frames);
    assert!(out.is_empty());
    assert_eq!(rig.drops(DropReason::ReasmOverlap), 2, "{}", rig.cx.counters);
    // The last fragment opened a new context that never completes.
    assert_eq!(rig.stage.stats().active, 1);
    assert_eq!(rig.stage.stats().reassembled, 0);
}

#[test]
fn missing_last_times_out_on_the_shard_clock() {
    let ip = datagram(1500, 11, 50, OWN);
    let mut rig = Rig::new(ReasmConfig { timeout: Duration::from_secs(1), ..ReasmConfig::default() });
    let f = split(&ip, &[400, 800]);
    assert!(rig.run(&f[..2]).is_empty());
    assert_eq!(rig.stage.stats().active, 1);
    rig.cx.now += Duration::from_millis(999);
    assert!(!rig.stage.needs_service(rig.cx.now));
    rig.stage.process(&mut rig.cx, &mut Batch::new());
    assert_eq!(rig.stage.stats().active, 1);
    rig.cx.now += Duration::from_millis(1);
    assert!(rig.stage.needs_service(rig.cx.now));
    // What a Pipeline does on an empty poll.
    let now = rig.cx.now;
    assert!(Stage::<PoolBuf>::needs_service(&mut rig.stage, now));
    Stage::<PoolBuf>::service(&mut rig.stage, &mut rig.cx, &mut Batch::new());
    assert!(!rig.stage.needs_service(rig.cx.now));
    assert_eq!(rig.stage.stats().active, 0);
    assert_eq!(rig.drops(DropReason::ReasmTimeout), 2);
    // The late last fragment starts a datagram of its own, which also cannot complete.
    assert!(rig.run(&f[2..]).is_empty());
    assert_eq!(rig.stage.stats().active, 1);
    assert_eq!(rig.in_use(), 1);
}

#[test]
fn each_datagram_expires_at_its_own_deadline() {
    let mut rig = Rig::new(ReasmConfig { timeout: Duration::from_secs(1), ..ReasmConfig::default() });
    let a = datagram(1500, 30, 50, OWN);
    let b = datagram(1500, 31, 50, OWN);
    rig.run(&split(&a, &[800])[..1]);
    rig.cx.now += Duration::from_millis(600);
    rig.run(&split(&b, &[800])[..1]);
    rig.cx.now += Duration::from_millis(400);
    rig.stage.expire(&mut rig.cx);
    assert_eq!((rig.stage.stats().active, rig.drops(DropReason::ReasmTimeout)), (1, 1));
    assert!(!rig.stage.needs_service(rig.cx.now));
    // The younger one completes in time.
    let out = rig.run(&split(&b, &[800])[1..]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data(), &whole(&b)[..]);
    assert_eq!(rig.stage.stats().active, 0);
}

#[test]
fn a_full_table_drops_new_datagrams_and_keeps_the_old() {
    let mut rig = Rig::new(ReasmConfig { contexts: 4, ..ReasmConfig::default() });
    let ips: Vec<_> = (0..5).map(|id| datagram(1200, 100 + id, 50, OWN)).collect();
    for ip in &ips {
        rig.run(&split(ip, &[600])[..1]);
    }
    assert_eq!(rig.stage.stats().active, 4);
    assert_eq!(rig.drops(DropReason::ReasmNoContext), 1);
    let out = rig.run(&split(&ips[0], &[600])[1..]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data(), &whole(&ips[0])[..]);
}

#[test]
fn a_datagram_larger_than_a_buffer_is_dropped() {
    // 2048 bytes of data room: 14 + 60 reserved before the payload, so at most 1974 bytes.
    let ip = datagram(4000, 12, 50, OWN);
    let mut rig = Rig::new(ReasmConfig::default());
    let out = rig.run(&split(&ip, &[1400, 2800]));
    assert!(out.is_empty());
    assert!(rig.drops(DropReason::ReasmTooBig) >= 1, "{}", rig.cx.counters);
    // The largest that fits does reassemble.
    let ip = datagram(20 + 1974, 13, 50, OWN);
    let out = rig.run(&split(&ip, &[1000]));
    assert_eq!(out.len(), 1, "{}", rig.cx.counters);
    assert_eq!(out[0].data(), &whole(&ip)[..]);
    let ip = datagram(20 + 1975, 14, 50, OWN);
    let before = rig.drops(DropReason::ReasmTooBig);
    assert!(rig.run(&split(&ip, &[1000])).is_empty());
    assert!(rig.drops(DropReason::ReasmTooBig) > before);
}

#[test]
fn tiny_fragments_beyond_the_limit_drop_the_datagram() {
    let ip = datagram(20 + 8 * (MAX_FRAGMENTS + 4), 15, 50, OWN);
    let cuts: Vec<_> = (1..MAX_FRAGMENTS + 4).map(|i| i * 8).collect();
    let mut rig = Rig::new(ReasmConfig::default());
    let out = rig.run(&split(&ip, &cuts));
    assert!(out.is_empty());
    assert_eq!(rig.drops(DropReason::ReasmMalformed), MAX_FRAGMENTS as u64 + 1);
    // Exactly the limit is fine.
    let ip = datagram(20 + 8 * MAX_FRAGMENTS, 16, 50, OWN);
    let cuts: Vec<_> = (1..MAX_FRAGMENTS).map(|i| i * 8).collect();
    let out = rig.run(&split(&ip, &cuts));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data(), &whole(&ip)[..]);
}

#[test]
fn hostile_fragments_are_counted_drops() {
    let ip = datagram(1500, 17, 50, OWN);
    let mut rig = Rig::new(ReasmConfig::default());
    // A non-final fragment whose length is not a multiple of 8.
    assert!(rig.run(&[fragment(&ip, 0, 100, true)]).is_empty());
    assert_eq!(rig.drops(DropReason::ReasmMalformed), 1);
    // An offset near the top of the 13-bit field: past 65 535 bytes.
    let mut big = fragment(&ip, 0, 64, false);
    big[14 + 6..14 + 8].copy_from_slice(&0x1fffu16.to_be_bytes());
    big[14 + 10..14 + 12].fill(0);
    let c = checksum(&big[14..34]);
    big[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    assert!(rig.run(&[big]).is_empty());
    assert_eq!(rig.drops(DropReason::ReasmTooBig), 1);
    // A fragment past the end the final fragment set, and a second end.
    let f = [fragment(&ip, 800, 680, false), fragment(&ip, 0, 1000, true)];
    assert!(rig.run(&f).is_empty());
    assert_eq!(rig.drops(DropReason::ReasmOverlap), 2);
    let f = [fragment(&ip, 800, 400, false), fragment(&ip, 1200, 80, true)];
    assert!(rig.run(&f).is_empty());
    assert_eq!(rig.drops(DropReason::ReasmMalformed), 3);
    let f = [fragment(&ip, 1200, 80, true), fragment(&ip, 800, 400, false)];
    assert!(rig.run(&f).is_empty());
    assert_eq!(rig.drops(DropReason::ReasmMalformed), 5);
    assert_eq!(rig.stage.stats().active, 0);
    assert_eq!(rig.in_use(), 0);
}

#[test]
fn non_first_fragment_first_and_first_last() {
    let ip = datagram(1700, 18, 50, OWN);
    let mut rig = Rig::new(ReasmConfig::default());
    let f = split(&ip, &[504, 1008]);
    let out = rig.run(&[f[1].clone(), f[2].clone(), f[0].clone()]);
    assert_eq!(out.len(), 1, "{}", rig.cx.counters);
    assert_eq!(out[0].data(), &whole(&ip)[..]);
}

#[test]
fn transit_fragments_and_other_protocols_pass_unchanged() {
    let mut rig = Rig::new(ReasmConfig::default());
    let transit = datagram(1500, 19, 50, [198, 51, 100, 7]);
    let tcp = {
        let mut p = datagram(1500, 20, 6, OWN);
        p[10..12].fill(0);
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    };
    let frames: Vec<_> = split(&transit, &[800]).into_iter().chain(split(&tcp, &[800])).collect();
    let out = rig.run(&frames);
    assert_eq!(out.len(), 4);
    for (o, f) in out.iter().zip(&frames) {
        assert_eq!(o.data(), &f[..]);
        assert!(o.meta().has(flags::FRAGMENT));
    }
    assert_eq!(rig.stage.stats().fragments, 0);
}

#[test]
fn disabled_passes_fragments_unchanged() {
    let ip = datagram(1500, 23, 50, OWN);
    let mut rig = Rig::new(ReasmConfig::default());
    rig.stage = Reassemble::disabled();
    assert!(!rig.stage.enabled());
    let frames = split(&ip, &[800]);
    let out = rig.run(&frames);
    assert_eq!(out.len(), 2);
    for (o, f) in out.iter().zip(&frames) {
        assert_eq!(o.data(), &f[..]);
    }
    assert_eq!(rig.stage.stats().fragments, 0);
}

#[test]
fn interleaved_datagrams_and_finish() {
    let a = datagram(1600, 21, 50, OWN);
    let b = datagram(1600, 22, 17, OWN);
    let (fa, fb) = (split(&a, &[800]), split(&b, &[800]));
    let mut rig = Rig::new(ReasmConfig::default());
    let out = rig.run(&[fa[1].clone(), fb[0].clone(), fa[0].clone()]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data(), &whole(&a)[..]);
    rig.stage.finish(&mut rig.cx);
    assert_eq!(rig.drops(DropReason::Shutdown), 1);
    assert_eq!(rig.stage.stats().active, 0);
}

#[test]
fn config_ranges_are_checked() {
    let bad = |contexts, ms| {
        Reassemble::<PoolBuf>::new(
            classify_cfg(),
            ReasmConfig { contexts, timeout: Duration::from_millis(ms) },
        )
        .err()
    };
    assert_eq!(bad(0, 1000), Some(ReasmConfigError::Contexts(0)));
    assert_eq!(bad(1025, 1000), Some(ReasmConfigError::Contexts(1025)));
    assert_eq!(bad(32, 99), Some(ReasmConfigError::Timeout(Duration::from_millis(99))));
    assert_eq!(bad(32, 30_001), Some(ReasmConfigError::Timeout(Duration::from_millis(30_001))));
    assert_eq!(bad(1, 100), None);
    assert_eq!(bad(1024, 30_000), None);
}

#[test]
fn ipv6_fragments_reassemble_with_and_without_extension_headers() {
    let mut rig = Rig::new(ReasmConfig::default());
    for (ext, id) in [(0, 1), (16, 2)] {
        let whole = datagram6(1800, ext, id as u8, OWN6);
        let mut frags = split6(&whole, ext, &[600, 1200], id);
        if ext > 0 {
            frags.reverse();
        }
        let out = rig.run(&frags);
        assert_eq!(out.len(), 1, "{}", rig.cx.counters);
        assert_eq!(out[0].data(), &whole[..]);
        let m = out[0].meta();
        assert_eq!((m.flow_class, m.spi, m.has(flags::FRAGMENT)), (FlowClass::Esp, 0x1234, false));
    }
    assert_eq!(rig.cx.counters.total_drops(), 0, "{}", rig.cx.counters);
    // Overlap: the datagram is discarded.
    let whole = datagram6(1600, 0, 3, OWN6);
    let f = [fragment6(&whole, 0, 0, 800, true, 3), fragment6(&whole, 0, 792, 808, false, 3)];
    assert!(rig.run(&f).is_empty());
    assert_eq!(rig.drops(DropReason::ReasmOverlap), 2);
    // Transit IPv6 fragments pass unchanged.
    let mut other = OWN6;
    other[15] = 9;
    let whole = datagram6(1600, 0, 4, other);
    let f = split6(&whole, 0, &[800], 4);
    let out = rig.run(&f);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].data(), &f[0][..]);
    drop(out);
    // Too big for a buffer.
    let whole = datagram6(2100, 0, 5, OWN6);
    assert!(rig.run(&split6(&whole, 0, &[1000], 5)).is_empty());
    assert!(rig.drops(DropReason::ReasmTooBig) >= 1);
    assert_eq!(rig.stage.stats().active, 0);
    assert_eq!(rig.in_use(), 0);
}

/// Runs hostile `frames` through a rig of 2 contexts: the table never grows past them, nothing
/// larger than a buffer comes out, and after `finish` no buffer is kept.
fn hostile_run(rig: &mut Rig, frames: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let out = rig.run(frames);
    prop_assert!(rig.stage.stats().active <= 2);
    for o in &out {
        prop_assert!(o.len() <= 2048);
    }
    drop(out);
    rig.stage.finish(&mut rig.cx);
    prop_assert_eq!(rig.in_use(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random splits, in a random order, reassemble to the original.
    #[test]
    fn random_splits_reassemble(total in 29usize..1994, cuts in prop::collection::vec(1usize..250, 0..20), seed in any::<u64>(), udp in any::<bool>()) {
        let ip = datagram(total.max(if udp { 36 } else { 28 }), seed as u16, if udp { 17 } else { 50 }, OWN);
        let cuts: Vec<usize> = cuts.iter().map(|c| c * 8).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let mut frames = split(&ip, &cuts);
        // A deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..frames.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            frames.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut rig = Rig::new(ReasmConfig::default());
        let out = rig.run(&frames);
        if frames.len() == 1 {
            // Not a fragment at all: passes as it is.
            prop_assert_eq!(out.len(), 1);
            prop_assert_eq!(out[0].data(), &whole(&ip)[..]);
        } else {
            prop_assert_eq!(out.len(), 1, "{}", rig.cx.counters);
            prop_assert_eq!(out[0].data(), &whole(&ip)[..]);
            prop_assert_eq!(rig.cx.counters.total_drops(), 0);
        }
    }

    /// IPv6: arbitrary fragments never panic and keep no buffer past `finish`.
    #[test]
    fn hostile_ipv6_fragments_never_panic(frags in prop::collection::vec((0usize..2100, 0usize..300, any::<bool>(), 0u32..3, any::<bool>()), 1..40)) {
        let wholes: Vec<_> = [0, 8].iter().map(|&ext| datagram6(2500, ext, 7, OWN6)).collect();
        let mut rig = Rig::new(ReasmConfig { contexts: 2, ..ReasmConfig::default() });
        let frames: Vec<_> = frags
            .iter()
            .map(|&(off, len, more, id, ext)| {
                let len = len.min(2480 - off);
                fragment6(&wholes[usize::from(ext)], if ext { 8 } else { 0 }, off, len, more, id)
            })
            .collect();
        hostile_run(&mut rig, &frames)?;
    }

    /// IPv6: random splits in a random order reassemble to the original.
    #[test]
    fn random_ipv6_splits_reassemble(payload in 8usize..1890, cuts in prop::collection::vec(1usize..240, 1..16), ext in 0usize..3, seed in any::<u32>()) {
        let ext = ext * 8;
        let whole = datagram6(payload, ext, seed as u8, OWN6);
        let cuts: Vec<usize> = cuts.iter().map(|c| c * 8).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let mut frames = split6(&whole, ext, &cuts, seed);
        let n = frames.len();
        frames.rotate_left(seed as usize % n);
        let mut rig = Rig::new(ReasmConfig::default());
        let out = rig.run(&frames);
        if frames.len() == 1 {
            // An atomic fragment passes as it is.
            prop_assert_eq!(out.len(), 1);
            prop_assert_eq!(out[0].data(), &frames[0][..]);
        } else {
            prop_assert_eq!(out.len(), 1, "{}", rig.cx.counters);
            prop_assert_eq!(out[0].data(), &whole[..]);
        }
    }

    /// Arbitrary fragments (any offset, length, flag, order, duplicates) never panic, never leak
    /// a buffer past `finish`, and never exceed the table.
    #[test]
    fn hostile_fragments_never_panic(frags in prop::collection::vec((0usize..2100, 0usize..300, any::<bool>(), 0u16..3), 1..40)) {
        let ips: Vec<_> = (0..3).map(|id| datagram(2500, id, 50, OWN)).collect();
        let mut rig = Rig::new(ReasmConfig { contexts: 2, ..ReasmConfig::default() });
        let frames: Vec<_> = frags.iter().map(|&(off, len, more, id)| {
            let len = len.min(2480 - off);
            fragment(&ips[usize::from(id)], off, len, more)
        }).collect();
        hostile_run(&mut rig, &frames)?;
    }
}
