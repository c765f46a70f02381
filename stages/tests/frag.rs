//! IPv4 fragmentation before encryption (issue 20 item 3): a DF-clear packet too big for its
//! tunnel SA leaves as several ESP packets, each within the SA's MTU, whose decrypted contents
//! are fragments that reassemble into the original; fragments beyond a full batch wait in the
//! stage's spill and leave, in sequence-number order, with the next (empty) batch; an SA with
//! `fragment = false`, a pool with no buffer left and malformed packets give counted drops.

use std::net::IpAddr;
use std::sync::Arc;

use wirespeed_core::epoch::Publisher;
use wirespeed_core::wire::checksum::{fold, ones_sum};
use wirespeed_core::{Batch, BufferPool, DropReason, PacketBuf, PoolBuf, PoolConfig, ShardCtx, Stage};
use wirespeed_stages::esp::*;

/// An IPv4 UDP packet of `total` bytes from 10.0.0.1 to 10.9.0.1, flags as given.
fn udp4(total: usize, flags: u16, id: u16) -> Vec<u8> {
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&flags.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 9, 0, 1]);
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((total - 20) as u16).to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = (i * 13 + usize::from(id)) as u8;
    }
    let c = fold(ones_sum(0, &p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

struct Tunnel {
    enc: EspEncrypt,
    dec: EspDecrypt,
    _sad: Publisher<SaSet>,
    mtu: u16,
}

/// An outbound tunnel SA with `mtu` and `fragment`, and its mirror inbound SA (loopback: the
/// decrypt stage plays the peer).
fn tunnel(mtu: u16, fragment: bool) -> Tunnel {
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let peer: IpAddr = "198.51.100.7".parse().unwrap();
    let alg = AeadAlgorithm::Aes128Gcm;
    let mut out = SaConfig::tunnel(0x10, Direction::Outbound { shard: 0 }, alg, &[9; 20], gw, peer);
    out.mtu = Some(mtu);
    out.fragment = fragment;
    let inb = SaConfig::tunnel(0x10, Direction::Inbound, alg, &[9; 20], peer, gw);
    let out = Arc::new(SecurityAssociation::new(&out).unwrap());
    let inner_mtu = out.inner_mtu().unwrap();
    let sas = vec![out, Arc::new(SecurityAssociation::new(&inb).unwrap())];
    let spd = Spd::new(vec![SecurityPolicy {
        selector: Selector::between(IpPrefix::any_v4(), IpPrefix::new(IpAddr::from([10, 9, 0, 0]), 16)),
        action: PolicyAction::Protect { spis: vec![0x10] },
    }]);
    let mut sad = Publisher::new(SaSet::new(sas, &spd).unwrap());
    Tunnel {
        enc: EspEncrypt::new(sad.subscribe()).with_framing(Framing::Ip),
        dec: EspDecrypt::new(sad.subscribe()).with_framing(Framing::Ip),
        _sad: sad,
        mtu: inner_mtu,
    }
}

fn pool(buffers: usize) -> BufferPool {
    BufferPool::new(PoolConfig { buffers, data_room: 9216, headroom: 256 }).unwrap()
}

fn fill(pool: &BufferPool, packets: &[Vec<u8>]) -> Batch<PoolBuf> {
    let mut batch = Batch::new();
    for p in packets {
        let mut b = pool.alloc().unwrap();
        b.copy_from(p).unwrap();
        batch.push(b).ok().unwrap();
    }
    batch
}

/// The ESP sequence number of an outbound packet (outer IPv4, no UDP).
fn seq(esp: &[u8]) -> u32 {
    u32::from_be_bytes(esp[24..28].try_into().unwrap())
}

/// Reassembles the IPv4 fragments `frags` of one datagram (any order), checking every header;
/// returns the datagram.
fn reassemble(mut frags: Vec<Vec<u8>>, mtu: usize) -> Vec<u8> {
    frags.sort_by_key(|f| u16::from_be_bytes([f[6], f[7]]) & 0x1fff);
    let mut payload = Vec::new();
    for (k, f) in frags.iter().enumerate() {
        assert!(f.len() <= mtu, "fragment of {} bytes over the inner MTU {mtu}", f.len());
        assert_eq!(fold(ones_sum(0, &f[..20])), 0, "header checksum");
        assert_eq!(usize::from(u16::from_be_bytes([f[2], f[3]])), f.len());
        let fl = u16::from_be_bytes([f[6], f[7]]);
        assert_eq!(usize::from(fl & 0x1fff) * 8, payload.len(), "offsets follow each other");
        assert_eq!(fl & 0x2000 != 0, k + 1 < frags.len(), "MF on all but the last");
        assert_eq!(&f[4..6], &frags[0][4..6], "one identification");
        payload.extend_from_slice(&f[20..]);
    }
    let mut d = frags[0][..20].to_vec();
    d[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    d[6..8].fill(0);
    d[10..12].fill(0);
    let c = fold(ones_sum(0, &d));
    d[10..12].copy_from_slice(&c.to_be_bytes());
    d.extend_from_slice(&payload);
    d
}

#[test]
fn df_clear_packets_are_fragmented_encrypted_and_reassemble() {
    let mut t = tunnel(1400, true);
    let mtu = usize::from(t.mtu);
    let pool = pool(64);
    let mut cx = ShardCtx::new(0);
    // One that fits, one a byte over, one of 3000 bytes.
    let packets = [udp4(mtu, 0, 1), udp4(mtu + 1, 0, 2), udp4(3000, 0, 3)];
    let mut batch = fill(&pool, &packets);
    t.enc.process(&mut cx, &mut batch);
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    assert_eq!(batch.len(), 1 + 2 + 3);
    for p in batch.iter() {
        assert!(p.len() <= 1400, "an ESP packet of {} bytes over the SA's MTU", p.len());
        assert_eq!(p.data()[9], 50, "ESP");
    }
    let seqs: Vec<u32> = batch.iter().map(|p| seq(p.data())).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>(), "sequence numbers in the order sent");
    let s = t.enc.stats();
    assert_eq!((s.encrypted, s.fragmented, s.fragments, s.frag_failed), (6, 2, 5, 0));
    assert_eq!(t.enc.pending(), 0);

    t.dec.process(&mut cx, &mut batch);
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    let inner: Vec<Vec<u8>> = batch.iter().map(|p| p.data().to_vec()).collect();
    assert_eq!(inner[0], packets[0], "the one that fits is untouched");
    let by_id = |id: u16| inner.iter().filter(|f| f[4..6] == id.to_be_bytes()).cloned().collect::<Vec<_>>();
    assert_eq!(reassemble(by_id(2), mtu), packets[1]);
    assert_eq!(reassemble(by_id(3), mtu), packets[2]);
}

#[test]
fn fragments_beyond_a_full_batch_wait_and_leave_in_order() {
    let mut t = tunnel(1400, true);
    let pool = pool(256);
    let mut cx = ShardCtx::new(0);
    // A full batch of 3000-byte packets: 3 fragments each, 96 ESP packets.
    let packets: Vec<Vec<u8>> = (0..32).map(|i| udp4(3000, 0, 100 + i)).collect();
    let mut batch = fill(&pool, &packets);
    t.enc.process(&mut cx, &mut batch);
    assert_eq!(batch.len(), 32);
    assert_eq!(t.enc.pending(), 64);
    let mut sent: Vec<Vec<u8>> = batch.drain(..).map(|p| p.data().to_vec()).collect();
    while t.enc.pending() > 0 {
        let mut empty = Batch::<PoolBuf>::new();
        t.enc.process(&mut cx, &mut empty);
        assert!(!empty.is_empty());
        sent.extend(empty.drain(..).map(|p| p.data().to_vec()));
    }
    assert_eq!(sent.len(), 96);
    let seqs: Vec<u32> = sent.iter().map(|p| seq(p)).collect();
    assert_eq!(seqs, (1..=96).collect::<Vec<_>>(), "sent in sequence-number order");
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);

    // The peer decrypts everything (its replay window sees them in order) and reassembles.
    let mut inner = Vec::new();
    for chunk in sent.chunks(32) {
        let mut b = fill(&pool, chunk);
        t.dec.process(&mut cx, &mut b);
        inner.extend(b.drain(..).map(|p| p.data().to_vec()));
    }
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    for p in &packets {
        let frags: Vec<Vec<u8>> = inner.iter().filter(|f| f[4..6] == p[4..6]).cloned().collect();
        assert_eq!(frags.len(), 3);
        assert_eq!(&reassemble(frags, usize::from(t.mtu)), p);
    }
}

#[test]
fn a_spill_too_full_drops_the_packet_whole() {
    let mut t = tunnel(1280, true);
    let pool = pool(2048);
    let mut cx = ShardCtx::new(0);
    // 8000-byte packets: 7 fragments each at inner MTU 1226; 32 of them need 192 more buffers
    // than the batch holds, within the spill; a second full batch right after does not fit.
    let packets: Vec<Vec<u8>> = (0..32).map(|i| udp4(8000, 0, i)).collect();
    let mut batch = fill(&pool, &packets);
    t.enc.process(&mut cx, &mut batch);
    assert_eq!(t.enc.stats().fragmented, 32);
    assert_eq!(t.enc.pending(), 32 * 6);
    let mut batch2 = fill(&pool, &packets);
    t.enc.process(&mut cx, &mut batch2);
    let room = FRAG_SPILL - 32 * 6;
    let s = t.enc.stats();
    assert_eq!(s.fragmented, 32 + (room / 6) as u64);
    assert_eq!(s.frag_failed, 32 - (room / 6) as u64);
    assert_eq!(cx.counters.drops_of(DropReason::EspMtuExceeded), s.frag_failed, "{}", cx.counters);
    assert!(t.enc.pending() <= FRAG_SPILL);
}

#[test]
fn fragmentation_off_dropped_and_counted() {
    let mut t = tunnel(1400, false);
    let pool = pool(16);
    let mut cx = ShardCtx::new(0);
    let mut batch = fill(&pool, &[udp4(3000, 0, 1), udp4(1500, 0x4000, 2)]);
    t.enc.process(&mut cx, &mut batch);
    assert!(batch.is_empty());
    assert_eq!(cx.counters.drops_of(DropReason::EspMtuExceeded), 2);
    assert_eq!(t.enc.stats().fragmented, 0);
}

#[test]
fn no_buffer_or_a_malformed_packet_is_a_counted_drop() {
    let mut t = tunnel(1400, true);
    // Two buffers: the packet itself and one more; a 5000-byte packet needs three more.
    let pool = pool(2);
    let mut cx = ShardCtx::new(0);
    let mut batch = fill(&pool, &[udp4(5000, 0, 1)]);
    t.enc.process(&mut cx, &mut batch);
    assert!(batch.is_empty());
    assert_eq!(cx.counters.drops_of(DropReason::PoolExhausted), 1, "{}", cx.counters);
    assert_eq!(t.enc.stats().frag_failed, 1);
    assert_eq!(t.enc.pending(), 0, "the fragments made are given back");
    drop(batch);
    // Now a packet with a malformed option (length past the header): dropped, not fragmented.
    let mut bad = udp4(3000, 0, 2);
    bad[0] = 0x46;
    bad[20..24].copy_from_slice(&[0x83, 9, 0, 0]);
    bad[10..12].fill(0);
    let c = fold(ones_sum(0, &bad[..24]));
    bad[10..12].copy_from_slice(&c.to_be_bytes());
    let mut batch = fill(&pool, &[bad]);
    t.enc.process(&mut cx, &mut batch);
    assert!(batch.is_empty());
    assert_eq!(cx.counters.drops_of(DropReason::MalformedIpv4), 1, "{}", cx.counters);
    assert_eq!(t.enc.stats().frag_failed, 2);
}

mod plan {
    use proptest::prelude::*;
    use wirespeed_core::wire::checksum::{fold, ones_sum};
    use wirespeed_stages::frag::{FragError, plan_v4};

    proptest! {
        /// Any header bytes (options included), any flags and offset, any total length
        /// (within the bytes or not), any MTU: no panic; what is planned splits into fragments
        /// within the MTU, with valid checksums and continuous offsets, that carry the payload
        /// exactly; what is refused is refused for a reason that holds.
        #[test]
        fn random_packets_fragment_correctly_or_are_refused(
            ihl in 0u8..16,
            opts in proptest::collection::vec(any::<u8>(), 40),
            flags in any::<u16>(),
            payload in 0usize..3000,
            short in 0usize..4,
            mtu in 0usize..1600,
        ) {
            let hdr = usize::from(ihl) * 4;
            let total = hdr.max(20) + payload;
            let mut p = vec![0u8; total];
            p[0] = 0x40 | ihl;
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[4..6].copy_from_slice(&[0x12, 0x34]);
            p[6..8].copy_from_slice(&flags.to_be_bytes());
            p[8] = 64;
            p[9] = 17;
            let n = hdr.saturating_sub(20).min(p.len() - 20);
            p[20..20 + n].copy_from_slice(&opts[..n]);
            for (i, b) in p[hdr.max(20)..].iter_mut().enumerate() {
                *b = i as u8;
            }
            // Sometimes the buffer is shorter than the total length says.
            let bytes = &p[..p.len().saturating_sub(short * 7)];
            match plan_v4(bytes, mtu) {
                Ok(plan) => {
                    prop_assert!(hdr >= 20 && short == 0 && total > mtu && flags & 0x4000 == 0);
                    let mut payload_out = Vec::new();
                    let mut first = p.clone();
                    let len0 = plan.first_in_place(&mut first);
                    let mut frags = vec![first[..len0].to_vec()];
                    for k in 1..plan.count() {
                        let mut f = vec![0u8; plan.len(k)];
                        prop_assert_eq!(plan.write(&p, k, &mut f), plan.len(k));
                        frags.push(f);
                    }
                    let base = usize::from(flags & 0x1fff) * 8;
                    for (k, f) in frags.iter().enumerate() {
                        let ihl = usize::from(f[0] & 0x0f) * 4;
                        prop_assert!(f.len() <= mtu);
                        prop_assert_eq!(fold(ones_sum(0, &f[..ihl])), 0);
                        let fl = u16::from_be_bytes([f[6], f[7]]);
                        prop_assert_eq!(usize::from(fl & 0x1fff) * 8, base + payload_out.len());
                        let last = k + 1 == frags.len();
                        prop_assert_eq!(fl & 0x2000 != 0, !last || flags & 0x2000 != 0);
                        payload_out.extend_from_slice(&f[ihl..]);
                    }
                    prop_assert_eq!(&payload_out[..], &p[hdr..]);
                }
                Err(FragError::Fits) => prop_assert!(total <= mtu),
                Err(FragError::DontFragment) => prop_assert!(flags & 0x4000 != 0),
                Err(FragError::MtuTooSmall { .. }) => prop_assert!(mtu < hdr + 8 || mtu < 28),
                Err(FragError::Malformed) => {}
            }
        }
    }
}
