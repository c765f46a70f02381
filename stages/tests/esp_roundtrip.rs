//! Behaviour of the ESP stages: round trips over every mode × AEAD × address family ×
//! encapsulation, replay / too-old / forgery / truncation / bad-trailer drops with their own
//! counters, lifetimes and sequence overflow with control events, SPD actions, per-shard SAs,
//! rekey by epoch, NAT-T control traffic, TFC padding and dummy packets, and a proptest that
//! decapsulating arbitrary bytes never panics.

mod esp_common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use esp_common::{buf, ipv4_header, udp4, udp6};
use proptest::prelude::*;
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{Batch, DropReason, PacketBuf, PoolBuf, ShardCtx, Stage};
use wirespeed_stages::esp::aead::{EspAead, ICV_LEN};
use wirespeed_stages::esp::*;

const ALGS: [AeadAlgorithm; 3] =
    [AeadAlgorithm::Aes128Gcm, AeadAlgorithm::Aes256Gcm, AeadAlgorithm::ChaCha20Poly1305];

fn km(alg: AeadAlgorithm) -> Vec<u8> {
    (0..alg.keymat_len()).map(|i| (i * 29 + 3) as u8).collect()
}

fn v4(a: [u8; 4]) -> IpAddr {
    a.into()
}

fn v6(last: u8) -> IpAddr {
    IpAddr::from([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last])
}

const GW4: [u8; 4] = [192, 0, 2, 1];
const PEER4: [u8; 4] = [198, 51, 100, 7];

fn inner4(n: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
    udp4([10, 0, 0, 1], [10, 9, 0, 9], 1000, 2000, &payload)
}

fn inner6(n: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = 1;
    let mut b = a;
    b[15] = 2;
    udp6(a, b, 1000, 2000, &payload)
}

fn ether(ip: &[u8], vlan: bool) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    }
    f.extend_from_slice(if ip[0] >> 4 == 6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    f.extend_from_slice(ip);
    f
}

/// One gateway pair: an outbound SA and the matching inbound SA (same SPI and key), as the two
/// ends of one direction of a tunnel.
struct Pair {
    enc: EspEncrypt,
    dec: EspDecrypt,
    publisher: Publisher<SaSet>,
    out: Arc<SecurityAssociation>,
    inb: Arc<SecurityAssociation>,
}

fn pair_with(out: SaConfig, inb: SaConfig, spd: Spd, framing: Framing) -> Pair {
    let out = Arc::new(SecurityAssociation::new(&out).unwrap());
    let inb = Arc::new(SecurityAssociation::new(&inb).unwrap());
    let set = SaSet::new([out.clone(), inb.clone()], &spd).unwrap();
    let mut publisher = Publisher::new(set);
    let enc = EspEncrypt::new(publisher.subscribe()).with_framing(framing);
    let dec = EspDecrypt::new(publisher.subscribe()).with_framing(framing);
    Pair { enc, dec, publisher, out, inb }
}

fn protect_all(spi: u32, inner_v6: bool) -> Spd {
    let any = if inner_v6 { IpPrefix::any_v6() } else { IpPrefix::any_v4() };
    Spd::new(vec![SecurityPolicy {
        selector: Selector::between(any, any),
        action: PolicyAction::Protect { spis: vec![spi] },
    }])
}

fn tunnel_pair(alg: AeadAlgorithm, outer_v6: bool, inner_v6: bool, natt: bool, framing: Framing) -> Pair {
    let (gw, peer) = if outer_v6 { (v6(1), v6(2)) } else { (v4(GW4), v4(PEER4)) };
    let mut o = SaConfig::tunnel(0x100, Direction::Outbound { shard: 0 }, alg, &km(alg), gw, peer);
    let mut i = SaConfig::tunnel(0x100, Direction::Inbound, alg, &km(alg), peer, gw);
    if natt {
        o.udp_encap = Some(UdpEncap::default());
        i.udp_encap = Some(UdpEncap::default());
    }
    pair_with(o, i, protect_all(0x100, inner_v6), framing)
}

/// Runs `pkts` through `stage` in batches of up to 32; returns what is left, in order.
fn run<S: Stage<PoolBuf>>(stage: &mut S, cx: &mut ShardCtx, pkts: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for chunk in pkts.chunks(32) {
        let mut batch: Batch<PoolBuf> = Batch::new();
        for p in chunk {
            batch.push(buf(p)).unwrap();
        }
        stage.process(cx, &mut batch);
        out.extend(batch.iter().map(|b| b.data().to_vec()));
    }
    out
}

#[test]
fn tunnel_round_trips_every_aead_family_and_encapsulation() {
    let mut n = 0;
    for alg in ALGS {
        for (outer_v6, inner_v6) in [(false, false), (true, true), (false, true), (true, false)] {
            for natt in [false, true] {
                for (framing, vlan) in
                    [(Framing::Ip, false), (Framing::Ethernet, false), (Framing::Ethernet, true)]
                {
                    let mut p = tunnel_pair(alg, outer_v6, inner_v6, natt, framing);
                    let mut cx = ShardCtx::new(0);
                    let pkts: Vec<Vec<u8>> = [0usize, 1, 2, 3, 100, 1400]
                        .iter()
                        .map(|&len| {
                            let ip = if inner_v6 { inner6(len) } else { inner4(len) };
                            if framing == Framing::Ip { ip } else { ether(&ip, vlan) }
                        })
                        .collect();
                    let enc = run(&mut p.enc, &mut cx, &pkts);
                    assert_eq!(enc.len(), pkts.len(), "{}", cx.counters);
                    let l3 = match (framing, vlan) {
                        (Framing::Ip, _) => 0,
                        (_, false) => 14,
                        (_, true) => 18,
                    };
                    for e in &enc {
                        if !outer_v6 {
                            assert_eq!(esp_common::ipv4_checksum(&e[l3..l3 + 20]), 0, "outer IPv4 checksum");
                            assert_eq!(u16::from_be_bytes([e[l3 + 2], e[l3 + 3]]) as usize, e.len() - l3);
                        }
                        if outer_v6 && natt {
                            assert_eq!(
                                udp6_checksum_ok(&e[l3..]),
                                Ok(()),
                                "UDP over IPv6 needs a valid checksum"
                            );
                        }
                        let proto_at = if outer_v6 { l3 + 6 } else { l3 + 9 };
                        assert_eq!(e[proto_at], if natt { 17 } else { 50 });
                        if framing == Framing::Ethernet {
                            let et = u16::from_be_bytes([e[l3 - 2], e[l3 - 1]]);
                            assert_eq!(et, if outer_v6 { 0x86dd } else { 0x0800 });
                        }
                    }
                    let dec = run(&mut p.dec, &mut cx, &enc);
                    assert_eq!(
                        dec, pkts,
                        "{alg:?} outer_v6={outer_v6} inner_v6={inner_v6} natt={natt} {framing:?}"
                    );
                    assert_eq!(cx.counters.total_drops(), 0);
                    assert_eq!(p.enc.stats().encrypted, pkts.len() as u64);
                    assert_eq!(p.dec.stats().decrypted, pkts.len() as u64);
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 3 * 4 * 2 * 3);
}

/// Verifies the UDP checksum of an IPv6 packet `p` (fixed header, then UDP), RFC 8200 §8.1.
fn udp6_checksum_ok(p: &[u8]) -> Result<(), String> {
    let udp = &p[40..];
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
        }
    };
    add(&p[8..40]);
    add(&(udp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 17]);
    add(udp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if sum == 0xffff && udp[6..8] != [0, 0] { Ok(()) } else { Err(format!("sum {sum:#x}")) }
}

#[test]
fn transport_round_trips() {
    for alg in ALGS {
        for inner_v6 in [false, true] {
            for natt in [false, true] {
                let mut o = SaConfig::transport(0x200, Direction::Outbound { shard: 0 }, alg, &km(alg));
                let mut i = SaConfig::transport(0x200, Direction::Inbound, alg, &km(alg));
                if natt {
                    o.udp_encap = Some(UdpEncap::default());
                    i.udp_encap = Some(UdpEncap::default());
                }
                let mut p = pair_with(o, i, protect_all(0x200, inner_v6), Framing::Ethernet);
                let mut cx = ShardCtx::new(0);
                let pkts: Vec<Vec<u8>> = [0usize, 5, 1000]
                    .iter()
                    .map(|&n| ether(&if inner_v6 { inner6(n) } else { inner4(n) }, false))
                    .collect();
                let enc = run(&mut p.enc, &mut cx, &pkts);
                for (e, orig) in enc.iter().zip(&pkts) {
                    // The IP header stays (addresses unchanged), its protocol becomes ESP/UDP.
                    let (proto_at, addr) =
                        if inner_v6 { (14 + 6, 14 + 8..14 + 40) } else { (14 + 9, 14 + 12..14 + 20) };
                    assert_eq!(e[proto_at], if natt { 17 } else { 50 });
                    assert_eq!(e[addr.clone()], orig[addr]);
                    if !inner_v6 {
                        assert_eq!(esp_common::ipv4_checksum(&e[14..34]), 0);
                    }
                }
                let dec = run(&mut p.dec, &mut cx, &enc);
                assert_eq!(dec, pkts, "{alg:?} v6={inner_v6} natt={natt}");
                assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
            }
        }
    }
}

fn encrypt_n(p: &mut Pair, cx: &mut ShardCtx, n: usize) -> Vec<Vec<u8>> {
    let pkts: Vec<Vec<u8>> = (0..n).map(|i| inner4(i % 50)).collect();
    run(&mut p.enc, cx, &pkts)
}

#[test]
fn replay_too_old_and_reordering_have_distinct_counters() {
    let alg = AeadAlgorithm::Aes128Gcm;
    let mut o = SaConfig::tunnel(0x300, Direction::Outbound { shard: 0 }, alg, &km(alg), v4(GW4), v4(PEER4));
    let mut i = SaConfig::tunnel(0x300, Direction::Inbound, alg, &km(alg), v4(PEER4), v4(GW4));
    o.replay_window = 64;
    i.replay_window = 64;
    let mut p = pair_with(o, i, protect_all(0x300, false), Framing::Ip);
    let mut cx = ShardCtx::new(0);
    let enc = encrypt_n(&mut p, &mut cx, 200);
    // Deliver 100..200 first, then reordered ones inside the window, then stale ones.
    assert_eq!(run(&mut p.dec, &mut cx, &enc[100..132]).len(), 32);
    assert_eq!(run(&mut p.dec, &mut cx, &enc[132..200]).len(), 68);
    // seq 199 is 137..=200 inside a 64-window at top 200: indices 136..=199.
    assert_eq!(run(&mut p.dec, &mut cx, &enc[136..140]).len(), 0, "already seen");
    assert_eq!(cx.counters.drops_of(DropReason::EspReplay), 4);
    assert_eq!(run(&mut p.dec, &mut cx, &enc[10..14]).len(), 0);
    assert_eq!(cx.counters.drops_of(DropReason::EspTooOld), 4);
    // Fresh window, out-of-order delivery inside it is fine.
    let mut p = tunnel_pair(alg, false, false, false, Framing::Ip);
    let enc = encrypt_n(&mut p, &mut cx, 64);
    let mut shuffled: Vec<Vec<u8>> = enc.iter().rev().cloned().collect();
    shuffled.swap(3, 40);
    assert_eq!(run(&mut p.dec, &mut cx, &shuffled).len(), 64);
}

/// `SaConfig::resume_seq`: an inbound SA resumed at 100 (as after a data-plane restart) takes
/// the traffic that follows and refuses what a capture from before the restart replays, inside
/// its window or left of it; an outbound SA cannot be resumed.
#[test]
fn a_resumed_inbound_sa_refuses_replays_from_before_the_restart() {
    let alg = AeadAlgorithm::ChaCha20Poly1305;
    let o = SaConfig::tunnel(0x310, Direction::Outbound { shard: 0 }, alg, &km(alg), v4(GW4), v4(PEER4))
        .with_replay_window(64);
    let i = SaConfig::tunnel(0x310, Direction::Inbound, alg, &km(alg), v4(PEER4), v4(GW4))
        .with_replay_window(64)
        .with_resume_seq(100);
    let mut p = pair_with(o.clone(), i, protect_all(0x310, false), Framing::Ip);
    let mut cx = ShardCtx::new(0);
    let enc = encrypt_n(&mut p, &mut cx, 130); // sequence numbers 1..=130
    assert_eq!(run(&mut p.dec, &mut cx, &enc[100..130]).len(), 30, "101..=130 pass");
    assert_eq!(run(&mut p.dec, &mut cx, &enc[70..100]).len(), 0, "71..=100: seen before the restart");
    assert_eq!(cx.counters.drops_of(DropReason::EspReplay), 30);
    assert_eq!(run(&mut p.dec, &mut cx, &enc[0..10]).len(), 0);
    assert_eq!(cx.counters.drops_of(DropReason::EspTooOld), 10);
    let err = SecurityAssociation::new(&o.with_resume_seq(5)).unwrap_err();
    assert_eq!(err, SaError::ResumedOutbound { spi: 0x310, seq: 5 });
    assert!(err.to_string().contains("nonce"), "{err}");
}

#[test]
fn forgery_truncation_and_unknown_spi_are_dropped() {
    let mut p = tunnel_pair(AeadAlgorithm::ChaCha20Poly1305, false, false, false, Framing::Ip);
    let mut cx = ShardCtx::new(0);
    let enc = encrypt_n(&mut p, &mut cx, 8);
    let mut bad = Vec::new();
    // Flip one bit of the ciphertext, of the ICV, of the sequence number (AAD).
    for (k, at) in [(0usize, 40usize), (1, usize::MAX), (2, 27)] {
        let mut e = enc[k].clone();
        let at = if at == usize::MAX { e.len() - 1 } else { at };
        e[at] ^= 0x10;
        bad.push(e);
    }
    assert!(run(&mut p.dec, &mut cx, &bad).is_empty());
    assert_eq!(cx.counters.drops_of(DropReason::EspAuthFailed), 3);
    // The genuine packets still pass: a forgery did not move the window.
    assert_eq!(run(&mut p.dec, &mut cx, &enc[..3]).len(), 3);
    // Unknown SPI.
    let mut e = enc[3].clone();
    e[20..24].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    assert!(run(&mut p.dec, &mut cx, &[e]).is_empty());
    assert_eq!(cx.counters.drops_of(DropReason::EspNoSa), 1);
    // Known SPI, wrong tunnel endpoints (issue 10 item 6): its own reason, not EspNoSa. Outer
    // destination changed (not the SA's local address), then outer source (not its remote).
    for at in [16, 12] {
        let mut e = enc[3].clone();
        e[at] ^= 0x01;
        let c = esp_common::ipv4_checksum(&{
            let mut h = e[..20].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        e[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(run(&mut p.dec, &mut cx, &[e]).is_empty());
    }
    assert_eq!(cx.counters.drops_of(DropReason::EspWrongEndpoint), 2);
    assert_eq!(cx.counters.drops_of(DropReason::EspNoSa), 1);
    // Truncated at every length (with the IP length fixed up, and without).
    let full = enc[4].clone();
    for cut in 20..full.len() {
        let mut t = full[..cut].to_vec();
        let keep_len = t.clone();
        t[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
        let c = esp_common::ipv4_checksum(&{
            let mut h = t[..20].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        t[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(run(&mut p.dec, &mut cx, &[t, keep_len]).is_empty(), "cut {cut}");
    }
    let c = &cx.counters;
    assert!(c.drops_of(DropReason::EspMalformed) > 0 && c.drops_of(DropReason::Truncated) > 0, "{c}");
}

/// Builds an ESP packet by hand (outer IPv4, SPI, seq, IV = seq) around `plaintext`, which must
/// already hold the trailer the test wants, sealed with `sa`'s AEAD.
fn hand_esp(sa: &SecurityAssociation, keymat: &[u8], seq: u32, plaintext: &[u8]) -> Vec<u8> {
    let mut body = plaintext.to_vec();
    let mut icv = [0u8; ICV_LEN];
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&keymat[keymat.len() - 4..]);
    nonce[4..].copy_from_slice(&(seq as u64).to_be_bytes());
    let mut aad = sa.spi().to_be_bytes().to_vec();
    aad.extend_from_slice(&seq.to_be_bytes());
    sa.cipher().seal(&nonce, &aad, &mut body, &mut icv).unwrap();
    let mut esp = sa.spi().to_be_bytes().to_vec();
    esp.extend_from_slice(&seq.to_be_bytes());
    esp.extend_from_slice(&(seq as u64).to_be_bytes());
    esp.extend_from_slice(&body);
    esp.extend_from_slice(&icv);
    // Outer addresses as the tunnel pair's encrypt side writes them (the inbound SA checks dst).
    let mut p = ipv4_header(50, GW4, PEER4, esp.len());
    p.extend_from_slice(&esp);
    p
}

#[test]
fn trailer_checks_tfc_padding_and_dummy_packets() {
    let alg = AeadAlgorithm::Aes256Gcm;
    let mut p = tunnel_pair(alg, false, false, false, Framing::Ip);
    let k = km(alg);
    let inner = inner4(9); // 37 bytes
    let mut cx = ShardCtx::new(0);
    let with_trailer = |body: &[u8], pad: &[u8], nh: u8| {
        let mut v = body.to_vec();
        v.extend_from_slice(pad);
        v.push(pad.len() as u8);
        v.push(nh);
        v
    };
    // Valid, with 7 bytes of TFC padding after the inner packet: 37 + 7 + 2 = 46 → pad 2.
    let mut tfc = inner.clone();
    tfc.extend_from_slice(&[0xee; 7]);
    let good = hand_esp(&p.inb, &k, 1, &with_trailer(&tfc, &[1, 2], 4));
    assert_eq!(run(&mut p.dec, &mut cx, &[good]), vec![inner.clone()], "TFC padding tolerated");
    // Wrong pad content.
    let bad_pad = hand_esp(&p.inb, &k, 2, &with_trailer(&tfc, &[1, 3], 4));
    // Pad length beyond the payload.
    let mut long = with_trailer(&inner[..2], &[], 4);
    long[2] = 200;
    let bad_len = hand_esp(&p.inb, &k, 3, &long);
    // Next header that does not match a tunnel SA.
    let bad_nh = hand_esp(&p.inb, &k, 4, &with_trailer(&tfc, &[1, 2], 6));
    assert!(run(&mut p.dec, &mut cx, &[bad_pad, bad_len, bad_nh]).is_empty());
    assert_eq!(cx.counters.drops_of(DropReason::EspBadTrailer), 3);
    // A dummy packet (next header 59) is authentic but discarded.
    let dummy = hand_esp(&p.inb, &k, 5, &with_trailer(&[0xab; 30], &[], 59));
    assert!(run(&mut p.dec, &mut cx, &[dummy]).is_empty());
    assert_eq!(p.dec.stats().dummy, 1);
    assert_eq!(cx.counters.drops_of(DropReason::PolicyDiscard), 1);
    // Ciphertext not a multiple of 4.
    let odd = hand_esp(&p.inb, &k, 6, &with_trailer(&inner, &[1], 4)[..39]);
    assert!(run(&mut p.dec, &mut cx, &[odd]).is_empty());
    assert_eq!(cx.counters.drops_of(DropReason::EspMalformed), 1);
}

#[test]
fn lifetimes_raise_events_and_expire() {
    let alg = AeadAlgorithm::Aes128Gcm;
    let mut o = SaConfig::tunnel(0x400, Direction::Outbound { shard: 0 }, alg, &km(alg), v4(GW4), v4(PEER4));
    o.lifetime = Lifetime {
        soft: Limits { packets: Some(3), ..Limits::default() },
        hard: Limits { packets: Some(5), ..Limits::default() },
    };
    let mut i = SaConfig::tunnel(0x400, Direction::Inbound, alg, &km(alg), v4(PEER4), v4(GW4));
    i.lifetime.hard = Limits { bytes: Some(100), ..Limits::default() };
    let mut p = pair_with(o, i, protect_all(0x400, false), Framing::Ip);
    let q = event_queue(16);
    p.enc = p.enc.with_events(q.clone());
    p.dec = p.dec.with_events(q.clone());
    let mut cx = ShardCtx::new(0);
    let enc = run(&mut p.enc, &mut cx, &vec![inner4(30); 8]);
    assert_eq!(enc.len(), 5);
    assert_eq!(cx.counters.drops_of(DropReason::EspSaExpired), 3);
    let uid = p.out.uid();
    assert_eq!(q.pop(), Some(SaEvent { shard: 0, spi: 0x400, uid, kind: SaEventKind::SoftLifetime }));
    assert_eq!(q.pop(), Some(SaEvent { shard: 0, spi: 0x400, uid, kind: SaEventKind::HardLifetime }));
    assert_eq!(q.pop(), None, "each event once");
    assert_eq!(p.enc.sas().state_of(uid).unwrap().status(), SaStatus::Expired);
    // Inbound: 58-byte inner packets, 100 bytes hard → the third is refused.
    let dec = run(&mut p.dec, &mut cx, &enc);
    assert_eq!(dec.len(), 2);
    assert_eq!(q.pop().map(|e| e.kind), Some(SaEventKind::HardLifetime));
    // Time lifetime.
    let mut o = SaConfig::tunnel(0x401, Direction::Outbound { shard: 0 }, alg, &km(alg), v4(GW4), v4(PEER4));
    o.lifetime.hard.time = Some(Duration::from_secs(60));
    let i = SaConfig::tunnel(0x401, Direction::Inbound, alg, &km(alg), v4(PEER4), v4(GW4));
    let mut p = pair_with(o, i, protect_all(0x401, false), Framing::Ip);
    assert_eq!(run(&mut p.enc, &mut cx, &[inner4(1)]).len(), 1);
    cx.now = Instant::now() + Duration::from_secs(61);
    assert_eq!(run(&mut p.enc, &mut cx, &[inner4(1)]).len(), 0);
}

#[test]
fn sequence_overflow_and_esn_across_the_32_bit_boundary() {
    let alg = AeadAlgorithm::Aes128Gcm;
    // Without ESN the last sequence number is 2^32 - 1.
    let mut p = tunnel_pair(alg, false, false, false, Framing::Ip);
    let q = event_queue(4);
    p.enc = p.enc.with_events(q.clone());
    let uid = p.out.uid();
    p.enc.sas_mut().state_of_mut(uid).unwrap().set_seq(u32::MAX as u64 - 1);
    let mut cx = ShardCtx::new(0);
    assert_eq!(run(&mut p.enc, &mut cx, &[inner4(1), inner4(1), inner4(1)]).len(), 1);
    assert_eq!(cx.counters.drops_of(DropReason::EspSeqOverflow), 1);
    assert_eq!(cx.counters.drops_of(DropReason::EspSaExpired), 1);
    assert_eq!(q.pop().map(|e| e.kind), Some(SaEventKind::SeqOverflow));
    // With ESN the sender crosses 2^32 and the receiver infers the high bits.
    let mut o = SaConfig::tunnel(0x500, Direction::Outbound { shard: 0 }, alg, &km(alg), v4(GW4), v4(PEER4));
    let mut i = SaConfig::tunnel(0x500, Direction::Inbound, alg, &km(alg), v4(PEER4), v4(GW4));
    o.esn = true;
    i.esn = true;
    let mut p = pair_with(o, i, protect_all(0x500, false), Framing::Ip);
    let ou = p.out.uid();
    p.enc.sas_mut().state_of_mut(ou).unwrap().set_seq(u32::MAX as u64 - 3);
    let enc = run(&mut p.enc, &mut cx, &vec![inner4(10); 8]);
    assert_eq!(enc.len(), 8);
    // Low 32 bits on the wire wrap to 0..
    let lows: Vec<u32> = enc.iter().map(|e| u32::from_be_bytes(e[24..28].try_into().unwrap())).collect();
    assert_eq!(lows, vec![u32::MAX - 2, u32::MAX - 1, u32::MAX, 0, 1, 2, 3, 4]);
    // A fresh receiver: its first packet, 2^32 - 3, is inferred in subspace 0 (nothing precedes
    // it), the next ones across the wrap in subspace 1.
    drop(p.dec);
    let mut dec = EspDecrypt::new(p.publisher.subscribe()).with_framing(Framing::Ip);
    // Deliver: the first half, then a late one from before the wrap, then the rest.
    let got = run(
        &mut dec,
        &mut cx,
        &[enc[0].clone(), enc[1].clone(), enc[3].clone(), enc[2].clone(), enc[4].clone()],
    );
    assert_eq!(got.len(), 5, "{}", cx.counters);
    let st = dec.sas().state_of(p.inb.uid()).unwrap();
    assert_eq!(st.seq(), (1u64 << 32) + 1, "top is past 2^32");
    // Replaying a pre-wrap packet is caught with the right high bits.
    assert!(run(&mut dec, &mut cx, &[enc[2].clone()]).is_empty());
    assert_eq!(cx.counters.drops_of(DropReason::EspReplay), 1);
    // And ESN allows far more than 2^32 packets before overflow.
    let mut o = SaConfig::tunnel(0x501, Direction::Outbound { shard: 0 }, alg, &km(alg), v4(GW4), v4(PEER4));
    o.esn = true;
    let sa = SecurityAssociation::new(&o).unwrap();
    let mut st = SaState::new(&sa);
    st.set_seq(u64::MAX - 1);
    let mut b = buf(&inner4(1));
    assert!(encapsulate(&mut b, 0, &sa, &mut st, Instant::now(), |_| {}).is_ok());
    let mut b = buf(&inner4(1));
    assert_eq!(encapsulate(&mut b, 0, &sa, &mut st, Instant::now(), |_| {}), Err(DropReason::EspSeqOverflow));
}

#[test]
fn policies_bypass_discard_default_and_no_room() {
    let alg = AeadAlgorithm::Aes128Gcm;
    let o = SaConfig::tunnel(0x600, Direction::Outbound { shard: 0 }, alg, &km(alg), v4(GW4), v4(PEER4));
    let i = SaConfig::tunnel(0x600, Direction::Inbound, alg, &km(alg), v4(PEER4), v4(GW4));
    let spd = Spd {
        policies: vec![
            SecurityPolicy {
                selector: Selector {
                    proto: Some(17),
                    dst_ports: (53, 53),
                    ..Selector::between(IpPrefix::any_v4(), IpPrefix::any_v4())
                },
                action: PolicyAction::Bypass,
            },
            SecurityPolicy {
                selector: Selector::between(IpPrefix::any_v4(), IpPrefix::new(v4([10, 66, 0, 0]), 16)),
                action: PolicyAction::Discard,
            },
            SecurityPolicy {
                selector: Selector::between(
                    IpPrefix::new(v4([10, 0, 0, 0]), 8),
                    IpPrefix::new(v4([10, 9, 0, 0]), 16),
                ),
                action: PolicyAction::Protect { spis: vec![0x600] },
            },
        ],
        default_action: DefaultAction::Discard,
    };
    let mut p = pair_with(o, i, spd, Framing::Ip);
    let mut cx = ShardCtx::new(0);
    let dns = udp4([10, 0, 0, 1], [10, 9, 0, 9], 999, 53, b"q");
    let blocked = udp4([10, 0, 0, 1], [10, 66, 1, 1], 1, 2, b"x");
    let protected = inner4(3);
    let unmatched = udp4([172, 16, 0, 1], [172, 16, 0, 2], 1, 2, b"y");
    let arp_like = vec![0x15; 28];
    let out = run(&mut p.enc, &mut cx, &[dns.clone(), blocked, protected, unmatched, arp_like.clone()]);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], dns);
    assert_eq!(out[1][9], 50);
    assert_eq!(out[2], arp_like, "not IP: passed through");
    assert_eq!(cx.counters.drops_of(DropReason::PolicyDiscard), 2);
    // No headroom: a buffer whose packet starts 6 bytes into it cannot take the outer headers.
    let mut b = buf(&[]);
    b.prepend(250).unwrap();
    b.copy_from(&protected_clone()).unwrap();
    assert_eq!(b.headroom(), 6);
    let mut batch: Batch<PoolBuf> = Batch::new();
    batch.push(b).unwrap();
    p.enc.process(&mut cx, &mut batch);
    assert!(batch.is_empty());
    assert_eq!(cx.counters.drops_of(DropReason::EspNoRoom), 1);
}

#[test]
fn inbound_selector_is_enforced_after_decryption() {
    let alg = AeadAlgorithm::Aes128Gcm;
    let o = SaConfig::tunnel(0x800, Direction::Outbound { shard: 0 }, alg, &km(alg), v4(GW4), v4(PEER4));
    let mut i = SaConfig::tunnel(0x800, Direction::Inbound, alg, &km(alg), v4(PEER4), v4(GW4));
    i.selector =
        Some(Selector::between(IpPrefix::new(v4([10, 0, 0, 0]), 24), IpPrefix::new(v4([10, 9, 0, 0]), 16)));
    let mut p = pair_with(o, i, protect_all(0x800, false), Framing::Ip);
    let mut cx = ShardCtx::new(0);
    let allowed = inner4(4);
    let spoofed = udp4([10, 7, 7, 7], [10, 9, 0, 9], 1, 2, b"evil");
    let enc = run(&mut p.enc, &mut cx, &[allowed.clone(), spoofed]);
    assert_eq!(run(&mut p.dec, &mut cx, &enc), vec![allowed]);
    assert_eq!(cx.counters.drops_of(DropReason::PolicyDiscard), 1);
}

#[test]
fn congestion_marks_reach_ecn_capable_inner_packets() {
    // RFC 6040 normal mode: encapsulation copies ECN out, decapsulation copies CE back in.
    let mut p = tunnel_pair(AeadAlgorithm::Aes128Gcm, false, false, false, Framing::Ip);
    let mut cx = ShardCtx::new(0);
    for (inner_ecn, want) in [(0b10u8, 0b11u8), (0b01, 0b11), (0b00, 0b00)] {
        let mut inner = inner4(20);
        inner[1] = 0xb8 | inner_ecn; // DSCP EF
        inner[10..12].fill(0);
        let c = esp_common::ipv4_checksum(&inner[..20]);
        inner[10..12].copy_from_slice(&c.to_be_bytes());
        let mut e = run(&mut p.enc, &mut cx, std::slice::from_ref(&inner)).remove(0);
        assert_eq!(e[1], inner[1], "outer TOS copied from the inner packet");
        e[1] |= 3; // a router on the path marks congestion
        e[10..12].fill(0);
        let c = esp_common::ipv4_checksum(&e[..20]);
        e[10..12].copy_from_slice(&c.to_be_bytes());
        let d = run(&mut p.dec, &mut cx, &[e]).remove(0);
        assert_eq!(d[1], 0xb8 | want);
        assert_eq!(esp_common::ipv4_checksum(&d[..20]), 0);
        assert_eq!(d[20..], inner[20..]);
    }
}

fn protected_clone() -> Vec<u8> {
    inner4(3)
}

#[test]
fn per_shard_sas_for_one_tunnel() {
    // RFC 9611: one tunnel, one outbound SA per shard, one policy naming them all.
    let alg = AeadAlgorithm::ChaCha20Poly1305;
    let mut sas = Vec::new();
    for shard in 0..3usize {
        let spi = 0x700 + shard as u32;
        let k: Vec<u8> = km(alg).iter().map(|b| b ^ shard as u8).collect();
        sas.push(Arc::new(
            SecurityAssociation::new(&SaConfig::tunnel(
                spi,
                Direction::Outbound { shard },
                alg,
                &k,
                v4(GW4),
                v4(PEER4),
            ))
            .unwrap(),
        ));
        sas.push(Arc::new(
            SecurityAssociation::new(&SaConfig::tunnel(spi, Direction::Inbound, alg, &k, v4(PEER4), v4(GW4)))
                .unwrap(),
        ));
    }
    let spd = Spd::new(vec![SecurityPolicy {
        selector: Selector::between(IpPrefix::any_v4(), IpPrefix::any_v4()),
        action: PolicyAction::Protect { spis: vec![0x700, 0x701, 0x702] },
    }]);
    let mut publisher = Publisher::new(SaSet::new(sas, &spd).unwrap());
    let mut dec = EspDecrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
    let mut dcx = ShardCtx::new(7);
    for shard in 0..3usize {
        let mut enc = EspEncrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
        let mut cx = ShardCtx::new(shard);
        let out = run(&mut enc, &mut cx, &[inner4(5), inner4(6)]);
        for e in &out {
            assert_eq!(u32::from_be_bytes(e[20..24].try_into().unwrap()), 0x700 + shard as u32);
            assert_eq!(
                u32::from_be_bytes(e[24..28].try_into().unwrap()),
                1 + (e == &out[1]) as u32,
                "own sequence space"
            );
        }
        assert_eq!(run(&mut dec, &mut dcx, &out), vec![inner4(5), inner4(6)]);
    }
    // A shard the policy has no SA for drops (never borrows another shard's SA: nonce reuse).
    let mut enc = EspEncrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
    let mut cx = ShardCtx::new(3);
    assert!(run(&mut enc, &mut cx, &[inner4(5)]).is_empty());
    assert_eq!(cx.counters.drops_of(DropReason::EspNoSa), 1);
}

/// One outbound SA (owned by shard 0) and traffic arriving on shard 1 (as when the NIC cannot
/// steer the policy's flows to the owner): with hand-off queues, shard 1 hands every packet to
/// shard 0, whose encrypt stage seals them under the one SA in the order shard 1 queued them —
/// one sender, contiguous sequence numbers — and the counters move the packets' reception to
/// the owner. A packet already handed once is not handed again; a full queue drops.
#[test]
fn a_shard_without_the_sa_hands_packets_to_its_owner() {
    let alg = AeadAlgorithm::Aes128Gcm;
    let out = SaConfig::tunnel(0x720, Direction::Outbound { shard: 0 }, alg, &km(alg), v4(GW4), v4(PEER4));
    let inb = SaConfig::tunnel(0x720, Direction::Inbound, alg, &km(alg), v4(PEER4), v4(GW4));
    let mut p = pair_with(out, inb, protect_all(0x720, false), Framing::Ip);
    let queues: Vec<wirespeed_core::queue::SharedQueue<PoolBuf>> =
        (0..2).map(|_| wirespeed_core::queue::SharedQueue::new(64)).collect();
    let mut owner =
        EspEncrypt::new(p.publisher.subscribe()).with_framing(Framing::Ip).with_handoff(queues.clone());
    let mut other =
        EspEncrypt::new(p.publisher.subscribe()).with_framing(Framing::Ip).with_handoff(queues.clone());
    let (mut cx0, mut cx1) = (ShardCtx::new(0), ShardCtx::new(1));
    let pkts: Vec<Vec<u8>> = (0..40).map(|i| inner4(i % 30)).collect();
    // Shard 1 received them (as a data shard counts them) and hands all of them on.
    cx1.counters.rx_packets = pkts.len() as u64;
    cx1.counters.rx_bytes = pkts.iter().map(|p| p.len() as u64).sum();
    assert!(run(&mut other, &mut cx1, &pkts).is_empty());
    assert_eq!((other.stats().handed_off, cx1.counters.handed_off), (40, 40));
    assert_eq!((cx1.counters.rx_packets, cx1.counters.rx_bytes, cx1.counters.total_drops()), (0, 0, 0));
    assert_eq!((queues[0].len(), queues[1].len()), (40, 0), "to the owner's queue");
    // The owner seals them in order: sequence numbers 1..=40, under the one SA.
    let mut sealed = Vec::new();
    while !queues[0].is_empty() {
        let mut batch: Batch<PoolBuf> = Batch::new();
        while !batch.is_full() {
            let Some(b) = queues[0].pop() else { break };
            assert_ne!(b.meta().flags & wirespeed_core::meta::flags::HANDED_OFF, 0);
            batch.push(b).unwrap();
        }
        owner.process(&mut cx0, &mut batch);
        sealed.extend(batch.iter().map(|b| b.data().to_vec()));
    }
    assert_eq!(cx0.counters.total_drops(), 0, "{}", cx0.counters);
    let seqs: Vec<u32> = sealed.iter().map(|e| u32::from_be_bytes(e[24..28].try_into().unwrap())).collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<u32>>());
    let mut dcx = ShardCtx::new(5);
    assert_eq!(run(&mut p.dec, &mut dcx, &sealed), pkts, "the peer decrypts them all");
    // Not handed twice: a handed packet reaching a shard that still does not own the SA.
    let mut once = buf(&inner4(3));
    once.meta_mut().flags |= wirespeed_core::meta::flags::HANDED_OFF;
    let mut batch: Batch<PoolBuf> = Batch::new();
    batch.push(once).unwrap();
    other.process(&mut cx1, &mut batch);
    assert!(batch.is_empty());
    assert_eq!((cx1.counters.drops_of(DropReason::EspNoSa), queues[0].len()), (1, 0));
    // A full queue drops (counted), it does not block.
    let full: Vec<Vec<u8>> = (0..70).map(|i| inner4(i % 30)).collect();
    assert!(run(&mut other, &mut cx1, &full).is_empty());
    assert_eq!((queues[0].len(), cx1.counters.drops_of(DropReason::DispatchRingFull)), (64, 6));
}

#[test]
fn invalid_sets_and_sas_are_refused() {
    let alg = AeadAlgorithm::Aes128Gcm;
    let mk = |spi, d| {
        Arc::new(
            SecurityAssociation::new(&SaConfig::tunnel(spi, d, alg, &km(alg), v4(GW4), v4(PEER4))).unwrap(),
        )
    };
    let e = SaSet::new([mk(1, Direction::Inbound), mk(1, Direction::Inbound)], &Spd::default()).unwrap_err();
    assert_eq!(e, SadError::DuplicateSpi { direction: "inbound", spi: 1 });
    let spd = protect_all(9, false);
    assert!(matches!(
        SaSet::new([mk(9, Direction::Inbound)], &spd),
        Err(SadError::UnknownSpi { spi: 9, .. })
    ));
    let spd = Spd::new(vec![SecurityPolicy {
        selector: Selector::between(IpPrefix::any_v4(), IpPrefix::any_v4()),
        action: PolicyAction::Protect { spis: vec![2, 3] },
    }]);
    assert!(matches!(
        SaSet::new([mk(2, Direction::Outbound { shard: 1 }), mk(3, Direction::Outbound { shard: 1 })], &spd),
        Err(SadError::ShardConflict { shard: 1, .. })
    ));
    let mut c = SaConfig::tunnel(0, Direction::Inbound, alg, &km(alg), v4(GW4), v4(PEER4));
    assert_eq!(SecurityAssociation::new(&c).unwrap_err(), SaError::ZeroSpi);
    c.spi = 5;
    c.keymat.pop();
    assert!(matches!(SecurityAssociation::new(&c), Err(SaError::Aead { .. })));
    let c = SaConfig::tunnel(5, Direction::Inbound, alg, &km(alg), v4(GW4), v6(1));
    assert!(matches!(SecurityAssociation::new(&c), Err(SaError::MixedTunnelFamilies { .. })));
    let mut c = SaConfig::tunnel(5, Direction::Inbound, alg, &km(alg), v4(GW4), v4(PEER4));
    c.esn = true;
    c.replay_window = 0;
    assert_eq!(SecurityAssociation::new(&c).unwrap_err(), SaError::EsnWithoutWindow { spi: 5 });
    // A provider that does not implement the algorithm is refused at SA creation.
    #[derive(Debug)]
    struct GcmOnly;
    impl AeadProvider for GcmOnly {
        fn name(&self) -> &str {
            "gcm-only"
        }
        fn supports(&self, a: AeadAlgorithm) -> bool {
            a != AeadAlgorithm::ChaCha20Poly1305
        }
        fn new_aead(&self, a: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn EspAead>, AeadError> {
            RustCrypto.new_aead(a, key)
        }
    }
    let cc = AeadAlgorithm::ChaCha20Poly1305;
    let c = SaConfig::tunnel(5, Direction::Inbound, cc, &km(cc), v4(GW4), v4(PEER4))
        .with_provider(Arc::new(GcmOnly));
    assert_eq!(
        SecurityAssociation::new(&c).unwrap_err(),
        SaError::Aead { spi: 5, source: AeadError::Unsupported(cc) }
    );
    let mut c = SaConfig::tunnel(5, Direction::Inbound, alg, &km(alg), v4(GW4), v4(PEER4));
    c.mtu = Some(1000);
    assert_eq!(
        SecurityAssociation::new(&c).unwrap_err(),
        SaError::MtuTooSmall { spi: 5, mtu: 1000, min: 1280 }
    );
}

#[test]
fn rekey_by_epoch_keeps_state_of_surviving_sas() {
    let alg = AeadAlgorithm::Aes128Gcm;
    let mut p = tunnel_pair(alg, false, false, false, Framing::Ip);
    let mut cx = ShardCtx::new(0);
    let first = encrypt_n(&mut p, &mut cx, 10);
    assert_eq!(run(&mut p.dec, &mut cx, &first).len(), 10);
    // Rekey: a new outbound SA takes over the policy; the old inbound SA stays (late packets).
    let new_out = Arc::new(
        SecurityAssociation::new(&SaConfig::tunnel(
            0x101,
            Direction::Outbound { shard: 0 },
            alg,
            &km(alg),
            v4(GW4),
            v4(PEER4),
        ))
        .unwrap(),
    );
    let new_in = Arc::new(
        SecurityAssociation::new(&SaConfig::tunnel(
            0x101,
            Direction::Inbound,
            alg,
            &km(alg),
            v4(PEER4),
            v4(GW4),
        ))
        .unwrap(),
    );
    let version = p
        .publisher
        .publish(SaSet::new([p.inb.clone(), new_out, new_in], &protect_all(0x101, false)).unwrap());
    assert!(!p.publisher.adopted_by_all(version));
    let second = encrypt_n(&mut p, &mut cx, 3);
    assert!(second.iter().all(|e| e[20..24] == 0x101u32.to_be_bytes()), "new SA in use");
    // The old inbound SA kept its window: a replay of an old packet is still caught.
    assert!(run(&mut p.dec, &mut cx, &first[..1]).is_empty());
    assert_eq!(cx.counters.drops_of(DropReason::EspReplay), 1);
    assert_eq!(run(&mut p.dec, &mut cx, &second).len(), 3);
    assert!(p.publisher.adopted_by_all(version));
    assert!(p.publisher.reclaim() >= 2, "old versions come back to the control side");
}

#[test]
fn nat_t_control_traffic_and_non_esp_pass_through() {
    let mut p = tunnel_pair(AeadAlgorithm::Aes128Gcm, false, false, true, Framing::Ip);
    let mut cx = ShardCtx::new(0);
    let keepalive = udp4(PEER4, GW4, 4500, 4500, &[0xff]);
    let ike = udp4(PEER4, GW4, 4500, 4500, &[0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    let dns = udp4(PEER4, GW4, 53, 53, b"abc");
    let v6 = inner6(4);
    let pkts = vec![keepalive, ike, dns, v6];
    assert_eq!(run(&mut p.dec, &mut cx, &pkts), pkts);
    assert_eq!(p.dec.stats().passed, 4);
    // ESP fragments cannot be authenticated alone: dropped, not forwarded still encrypted.
    let enc = run(&mut p.enc, &mut cx, &[inner4(10)]);
    let mut frag = enc[0].clone();
    frag[9] = 50;
    frag[6] = 0x20; // MF
    frag[10] = 0;
    frag[11] = 0;
    let c = esp_common::ipv4_checksum(&frag[..20]);
    frag[10..12].copy_from_slice(&c.to_be_bytes());
    assert!(run(&mut p.dec, &mut cx, &[frag]).is_empty());
    assert_eq!(cx.counters.drops_of(DropReason::Unsupported), 1);
}

fn fuzz_pair() -> Pair {
    let alg = AeadAlgorithm::Aes128Gcm;
    let mut o = SaConfig::tunnel(0x100, Direction::Outbound { shard: 0 }, alg, &km(alg), v4(GW4), v4(PEER4));
    let mut i = SaConfig::transport(0x100, Direction::Inbound, alg, &km(alg));
    o.replay_window = 0;
    i.replay_window = 0;
    pair_with(o, i, protect_all(0x100, false), Framing::Ip)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes (as bare IP and as Ethernet frames) never panic the decrypt stage.
    #[test]
    fn decap_of_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), spi_hit in any::<bool>()) {
        let mut p = fuzz_pair();
        let mut cx = ShardCtx::new(0);
        let mut b = bytes.clone();
        // Steer a fraction into the ESP path with a known SPI and a valid-looking IPv4 header.
        if spi_hit && b.len() >= 28 {
            b[0] = 0x45;
            let len = b.len() as u16;
            b[2..4].copy_from_slice(&len.to_be_bytes());
            b[6] = 0;
            b[7] = 0;
            b[9] = 50;
            b[20..24].copy_from_slice(&0x100u32.to_be_bytes());
        }
        let out = run(&mut p.dec, &mut cx, &[b.clone()]);
        prop_assert!(out.len() + cx.counters.total_drops() as usize == 1);
        let mut dec = EspDecrypt::new(p.publisher.subscribe());
        let _ = run(&mut dec, &mut cx, &[bytes]);
    }

    /// Mutating any byte of a valid ESP packet yields a counted drop or (if the mutation hit
    /// a field outside the authenticated data, e.g. the IP TTL) the original packet.
    #[test]
    fn mutated_esp_packets_are_dropped_or_intact(at in 0usize..200, xor in 1u8..=255, len in 0usize..100) {
        let alg = AeadAlgorithm::Aes128Gcm;
        let o = SaConfig::tunnel(0x100, Direction::Outbound { shard: 0 }, alg, &km(alg), v4(GW4), v4(PEER4));
        let mut i = SaConfig::tunnel(0x100, Direction::Inbound, alg, &km(alg), v4(PEER4), v4(GW4));
        i.mode = EspMode::Tunnel { local: IpAddr::from([0u8; 4]), remote: v4(GW4) };
        let mut p = pair_with(o, i, protect_all(0x100, false), Framing::Ip);
        let mut cx = ShardCtx::new(0);
        let inner = inner4(len);
        let mut e = run(&mut p.enc, &mut cx, std::slice::from_ref(&inner)).remove(0);
        let at = at % e.len();
        e[at] ^= xor;
        let out = run(&mut p.dec, &mut cx, std::slice::from_ref(&e));
        match out.first() {
            // Version or protocol byte hit: no longer ESP, passed on untouched (still encrypted).
            Some(o) if o == &e => prop_assert!(at == 0 || at == 9, "at {}", at),
            Some(o) => prop_assert_eq!(o, &inner),
            None => prop_assert_eq!(cx.counters.total_drops(), 1),
        }
    }
}
