//! Issue 13 item 4: ESP encapsulation of inner packets near 64 KiB (pool buffers larger than
//! 64 KiB) and the outer MTU. An encapsulation whose outer IP packet would not fit its 16-bit
//! length field is a counted `EspTooBig` drop, never a wrapped length or an overflow panic; one
//! over the SA's MTU is `EspMtuExceeded`. Packets that just fit carry exact lengths and decrypt
//! back to the original.
//!
//! Before the fix, `ipv4_outer_one_byte_over_the_limit_is_too_big` encapsulated a 65 535-byte
//! packet with an outer header claiming a few bytes, and `ipv6_outer_near_64k_has_the_right_
//! payload_length` panicked on `ip_len - 40` (overflow).

mod esp_common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use esp_common::udp4;
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{Batch, BufferPool, DropReason, PacketBuf, PoolBuf, PoolConfig, ShardCtx, Stage};
use wirespeed_stages::esp::*;

const ALG: AeadAlgorithm = AeadAlgorithm::Aes128Gcm;

fn big_pool() -> BufferPool {
    BufferPool::new(PoolConfig { buffers: 4, data_room: 70_000, headroom: 256 }).unwrap()
}

/// An IPv4/UDP packet of exactly `total` bytes.
fn inner(total: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..total - 28).map(|i| (i * 7) as u8).collect();
    let p = udp4([10, 0, 0, 1], [10, 9, 0, 9], 1000, 2000, &payload);
    assert_eq!(p.len(), total);
    p
}

fn addrs(v6: bool) -> (IpAddr, IpAddr) {
    if v6 {
        ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap())
    } else {
        ("192.0.2.1".parse().unwrap(), "198.51.100.7".parse().unwrap())
    }
}

fn sas(v6: bool, transport: bool) -> (SecurityAssociation, SecurityAssociation) {
    let (gw, peer) = addrs(v6);
    let km = [9u8; 20];
    let (mut o, mut i) = (
        SaConfig::tunnel(7, Direction::Outbound { shard: 0 }, ALG, &km, gw, peer),
        SaConfig::tunnel(7, Direction::Inbound, ALG, &km, peer, gw),
    );
    if transport {
        o = SaConfig::transport(7, Direction::Outbound { shard: 0 }, ALG, &km);
        i = SaConfig::transport(7, Direction::Inbound, ALG, &km);
    }
    (SecurityAssociation::new(&o).unwrap(), SecurityAssociation::new(&i).unwrap())
}

fn encap(
    pool: &BufferPool,
    sa: &SecurityAssociation,
    st: &mut SaState,
    pkt: &[u8],
) -> (PoolBuf, Result<(), DropReason>) {
    let mut b = pool.alloc().unwrap();
    b.copy_from(pkt).unwrap();
    let r = encapsulate(&mut b, 0, sa, st, Instant::now(), |_| {});
    (b, r)
}

fn round_trip(v6: bool, transport: bool, inner_len: usize) -> Vec<u8> {
    let pool = big_pool();
    let (out, inb) = sas(v6, transport);
    let mut st = SaState::new(&out);
    let pkt = inner(inner_len);
    let (mut b, r) = encap(&pool, &out, &mut st, &pkt);
    assert_eq!(r, Ok(()), "inner {inner_len}");
    let outer = b.data().to_vec();
    let loc = locate_esp(b.data(), 0, NAT_T_PORT).unwrap().expect("ESP");
    assert_eq!(loc.end, outer.len(), "outer length field covers the whole packet");
    let mut ist = SaState::new(&inb);
    assert_eq!(
        decapsulate(&mut b, 0, &loc, &inb, &mut ist, Instant::now(), |_| {}),
        Ok(Decapsulated::Packet)
    );
    assert_eq!(b.data(), &pkt[..]);
    outer
}

fn too_big(v6: bool, transport: bool, inner_len: usize) {
    let pool = big_pool();
    let (out, _) = sas(v6, transport);
    let mut st = SaState::new(&out);
    let pkt = inner(inner_len);
    let (b, r) = encap(&pool, &out, &mut st, &pkt);
    assert_eq!(r, Err(DropReason::EspTooBig), "inner {inner_len}");
    assert_eq!(b.data(), &pkt[..], "packet untouched");
    assert_eq!(st.seq(), 0, "no sequence number spent");
}

#[test]
fn ipv4_outer_at_the_limit_round_trips_with_exact_lengths() {
    // 20 outer + 16 ESP/IV + (65 478 + 2, already a multiple of 4) + 16 ICV = 65 532.
    let outer = round_trip(false, false, 65_478);
    assert_eq!(outer.len(), 65_532);
    assert_eq!(u16::from_be_bytes([outer[2], outer[3]]) as usize, outer.len());
}

#[test]
fn ipv4_outer_one_byte_over_the_limit_is_too_big() {
    // 65 482 needs 65 484 bytes of ciphertext: 65 536 outer bytes.
    too_big(false, false, 65_482);
    too_big(false, false, 65_535);
}

#[test]
fn ipv6_outer_near_64k_has_the_right_payload_length() {
    // 40 + 16 + 65 484 + 16 = 65 556: more than 65 535 bytes, but the IPv6 payload length
    // (65 516) fits.
    let outer = round_trip(true, false, 65_480);
    assert_eq!(outer.len(), 65_556);
    assert_eq!(u16::from_be_bytes([outer[4], outer[5]]), 65_516);
    too_big(true, false, 65_535);
}

#[test]
fn transport_mode_near_64k() {
    // Transport adds 16 + trailer + 16 to the packet itself.
    let outer = round_trip(false, true, 65_496);
    assert_eq!(outer.len(), 65_532);
    assert_eq!(u16::from_be_bytes([outer[2], outer[3]]) as usize, outer.len());
    too_big(false, true, 65_535);
}

#[test]
fn outer_mtu_is_a_counted_drop_in_the_stage() {
    let (gw, peer) = addrs(false);
    let mut o = SaConfig::tunnel(7, Direction::Outbound { shard: 0 }, ALG, &[9; 20], gw, peer);
    o.mtu = Some(1400);
    // Without fragmentation (on by default for DF-clear IPv4: tests/frag.rs).
    o.fragment = false;
    let out = Arc::new(SecurityAssociation::new(&o).unwrap());
    assert_eq!(out.mtu(), Some(1400));
    let spd = Spd::new(vec![SecurityPolicy {
        selector: Selector::between(IpPrefix::any_v4(), IpPrefix::any_v4()),
        action: PolicyAction::Protect { spis: vec![7] },
    }]);
    let mut publisher = Publisher::new(SaSet::new([out], &spd).unwrap());
    let mut enc = EspEncrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
    let pool = BufferPool::new(PoolConfig { buffers: 8, data_room: 2048, headroom: 256 }).unwrap();
    let mut cx = ShardCtx::new(0);
    let mut batch: Batch<PoolBuf> = Batch::new();
    // 1348 inner → 20 + 16 + 1352 + 16 = 1404 > 1400; 1344 → 1400 fits exactly.
    for n in [1348, 1344] {
        let mut b = pool.alloc().unwrap();
        b.copy_from(&inner(n)).unwrap();
        batch.push(b).unwrap();
    }
    enc.process(&mut cx, &mut batch);
    assert_eq!(cx.counters.drops_of(DropReason::EspMtuExceeded), 1);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch.as_slice()[0].len(), 1400);
    assert_eq!(enc.stats().encrypted, 1);
}
