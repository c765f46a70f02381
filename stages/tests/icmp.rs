//! ICMP errors (issue 20 item 3): Time Exceeded and Destination Unreachable from the forward
//! stage, Fragmentation Needed / Packet Too Big with the tunnel's effective MTU from the encrypt
//! stage, rate-limited, suppressed where RFC 1812 / RFC 4443 say so. The generated packets are
//! parsed with etherparse and their checksums verified.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherparse::{
    Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice, icmpv4, icmpv6,
};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{
    Batch, BufferPool, DropReason, PacketBuf, PacketMeta, PoolBuf, PoolConfig, ShardCtx, Stage,
};
use wirespeed_stages::classify::{Classify, ClassifyConfig, ipv4_header_valid};
use wirespeed_stages::esp::*;
use wirespeed_stages::forward::{FibBuilder, Forward, NextHop};
use wirespeed_stages::icmp::{IcmpConfig, IcmpErrors};

const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const ME4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const HOST4: [u8; 4] = [10, 0, 0, 10];

fn me6() -> Ipv6Addr {
    "fd00::1".parse().unwrap()
}
fn host6() -> Ipv6Addr {
    "fd00::10".parse().unwrap()
}

fn icmp_cfg(rate: u32) -> IcmpConfig {
    IcmpConfig {
        sources: vec![(Some(ME4), Some(me6())), (Some(Ipv4Addr::new(192, 0, 2, 1)), None)],
        macs: vec![LAN_MAC, WAN_MAC],
        rate,
    }
}

/// UDP from the LAN host to `dst` with `ttl` and `payload` bytes, DF as given.
fn udp4(dst: [u8; 4], ttl: u8, payload: usize, df: bool) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, LAN_MAC)
        .ipv4(HOST4, dst, ttl)
        .udp(4000, 5000)
        .write(&mut f, &vec![0xab; payload])
        .unwrap();
    f[20] = if df { 0x40 } else { 0 };
    f[24..26].fill(0);
    let c = wirespeed_core::backend::null::ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

fn udp6(dst: Ipv6Addr, hops: u8, payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, LAN_MAC)
        .ipv6(host6().octets(), dst.octets(), hops)
        .udp(4000, 5000)
        .write(&mut f, &vec![0xab; payload])
        .unwrap();
    f
}

/// Frames through classify and `stage` as received on port 0; what stayed in the batch.
fn run<S: Stage<PoolBuf>>(stage: &mut S, cx: &mut ShardCtx, frames: &[Vec<u8>]) -> Vec<(Vec<u8>, u16)> {
    let pool = BufferPool::new(PoolConfig { buffers: 64, ..PoolConfig::default() }).unwrap();
    let mut batch = Batch::<PoolBuf>::new();
    for f in frames {
        let mut p = pool.alloc().unwrap();
        p.copy_from(f).unwrap();
        *p.meta_mut() = PacketMeta::received(0, 0);
        batch.push(p).ok().unwrap();
    }
    Classify::new(ClassifyConfig::default()).process(cx, &mut batch);
    stage.process(cx, &mut batch);
    batch.iter().map(|p| (p.data().to_vec(), p.meta().out_port)).collect()
}

fn fib() -> Publisher<wirespeed_stages::Fib> {
    let mut b = FibBuilder::new();
    b.route("10.0.0.0".parse().unwrap(), 24, NextHop::Direct).unwrap();
    b.route("fd00::".parse().unwrap(), 64, NextHop::Direct).unwrap();
    b.route("10.9.0.0".parse().unwrap(), 16, NextHop::Gateway("192.0.2.254".parse().unwrap())).unwrap();
    b.neighbor(IpAddr::from(HOST4), HOST_MAC, 0);
    b.neighbor(host6().into(), HOST_MAC, 0);
    b.neighbor("192.0.2.254".parse().unwrap(), ROUTER_MAC, 1);
    Publisher::new(b.build().unwrap())
}

/// The ICMP error in `f`: checks Ethernet and IP addressing and the checksums; returns the
/// ICMP slice's type and the quoted bytes.
fn icmp4(f: &[u8], orig: &[u8]) -> (Icmpv4Type, Vec<u8>) {
    assert_eq!(&f[0..6], &HOST_MAC, "back to the previous hop");
    assert_eq!(&f[6..12], &LAN_MAC);
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else { panic!("not IPv4") };
    assert_eq!(ip.header().source_addr(), ME4);
    assert_eq!(ip.header().destination_addr(), Ipv4Addr::from(HOST4));
    assert!(ipv4_header_valid(&f[14..34]), "IPv4 header checksum");
    assert!(f.len() - 14 <= 576, "at most 576 bytes (RFC 1812 §4.3.2.3)");
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!("not ICMP") };
    let mut sum = 0u32;
    for c in f[34..].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    assert_eq!(sum, 0xffff, "ICMP checksum");
    let quote = icmp.payload().to_vec();
    assert_eq!(quote[..], orig[14..14 + quote.len()], "the original packet, from its IP header");
    (icmp.icmp_type(), quote)
}

fn icmp6(f: &[u8], orig: &[u8]) -> Icmpv6Type {
    assert_eq!(&f[0..6], &HOST_MAC);
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!("not IPv6") };
    assert_eq!(ip.header().source_addr(), me6());
    assert_eq!(ip.header().destination_addr(), host6());
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else { panic!("not ICMPv6") };
    assert!(icmp.is_checksum_valid(me6().octets(), host6().octets()), "ICMPv6 checksum");
    assert!(f.len() - 14 <= 1280);
    let quote = icmp.payload();
    assert_eq!(quote[..], orig[14..14 + quote.len()]);
    icmp.icmp_type()
}

#[test]
fn time_exceeded_and_no_route_are_answered() {
    let mut fib = fib();
    let mut fwd =
        Forward::new(fib.subscribe(), &[LAN_MAC, WAN_MAC]).with_icmp_errors(IcmpErrors::new(&icmp_cfg(100)));
    let mut cx = ShardCtx::new(0);
    let expired = udp4([10, 9, 1, 1], 1, 1000, true);
    let lost = udp4([172, 16, 0, 1], 64, 20, true);
    let expired6 = udp6("fd00::20".parse().unwrap(), 1, 100);
    let lost6 = udp6("2001:db8:77::1".parse().unwrap(), 64, 100);
    let ok = udp4([10, 9, 1, 1], 64, 20, true);
    let out = run(&mut fwd, &mut cx, &[expired.clone(), lost.clone(), expired6.clone(), lost6.clone(), ok]);
    assert_eq!(out.len(), 5, "four errors and one forwarded packet");
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    let (t, quote) = icmp4(&out[0].0, &expired);
    assert_eq!(t, Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit));
    assert_eq!(quote.len(), 576 - 28, "as much of the original as fits 576 bytes");
    assert_eq!(out[0].1, 0, "out the port it came in by");
    let (t, quote) = icmp4(&out[1].0, &lost);
    assert_eq!(t, Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::Network));
    assert_eq!(quote.len(), lost.len() - 14, "a small packet is quoted whole");
    assert_eq!(
        icmp6(&out[2].0, &expired6),
        Icmpv6Type::TimeExceeded(icmpv6::TimeExceededCode::HopLimitExceeded)
    );
    assert_eq!(
        icmp6(&out[3].0, &lost6),
        Icmpv6Type::DestinationUnreachable(icmpv6::DestUnreachableCode::NoRoute)
    );
    assert_eq!(&out[4].0[0..6], &ROUTER_MAC);
    assert_eq!(out[4].1, 1);
    let c = fwd.icmp_counters();
    assert_eq!((c.time_exceeded, c.unreachable, c.rate_limited, c.suppressed), (2, 2, 0, 0), "{c:?}");
}

#[test]
fn icmp_errors_are_rate_limited_and_never_about_errors() {
    let mut fib = fib();
    let mut fwd =
        Forward::new(fib.subscribe(), &[LAN_MAC, WAN_MAC]).with_icmp_errors(IcmpErrors::new(&icmp_cfg(2)));
    let mut cx = ShardCtx::new(0);
    cx.now = Instant::now();
    let expired: Vec<_> = (0..5).map(|_| udp4([10, 9, 1, 1], 1, 20, true)).collect();
    let out = run(&mut fwd, &mut cx, &expired);
    assert_eq!(out.len(), 2, "two tokens");
    assert_eq!(cx.counters.drops_of(DropReason::TtlExpired), 3, "the rest dropped as before");
    cx.now += Duration::from_millis(500);
    assert_eq!(run(&mut fwd, &mut cx, &expired[..2]).len(), 1, "one token per half second at 2/s");
    assert_eq!(fwd.icmp_counters().rate_limited, 4);

    // An ICMP error about an ICMP error, a non-initial fragment, a multicast destination: none.
    cx.now += Duration::from_secs(10);
    let mut about_error = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, LAN_MAC)
        .ipv4(HOST4, [10, 9, 1, 1], 1)
        .icmpv4(Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit))
        .write(&mut about_error, &[0; 28])
        .unwrap();
    let mut fragment = udp4([10, 9, 1, 1], 1, 20, false);
    fragment[14 + 6..14 + 8].copy_from_slice(&100u16.to_be_bytes());
    fragment[24..26].fill(0);
    let c = wirespeed_core::backend::null::ipv4_header_checksum(&fragment[14..34]);
    fragment[24..26].copy_from_slice(&c.to_be_bytes());
    let mut echo = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, LAN_MAC)
        .ipv4(HOST4, [10, 9, 1, 1], 1)
        .icmpv4_echo_request(1, 1)
        .write(&mut echo, &[0; 8])
        .unwrap();
    let before = cx.counters.drops_of(DropReason::TtlExpired);
    let out = run(&mut fwd, &mut cx, &[about_error, fragment, echo]);
    assert_eq!(out.len(), 1, "only the echo request gets an error");
    assert_eq!(cx.counters.drops_of(DropReason::TtlExpired) - before, 2);
    assert_eq!(fwd.icmp_counters().suppressed, 2);
}

/// One outbound tunnel SA with `mtu` from 192.0.2.1 to 198.51.100.7 protecting LAN → 10.9/16
/// (and fd00:: → 2001:db8:9::/48), and the encrypt stage with ICMP errors routed by `fib`.
fn encrypt(
    mtu: u16,
    fib: &mut Publisher<wirespeed_stages::Fib>,
) -> (EspEncrypt, Arc<SecurityAssociation>, Publisher<SaSet>) {
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let peer: IpAddr = "198.51.100.7".parse().unwrap();
    let mut c = SaConfig::tunnel(
        0x1001,
        Direction::Outbound { shard: 0 },
        AeadAlgorithm::Aes128Gcm,
        &[7; 20],
        gw,
        peer,
    );
    c.mtu = Some(mtu);
    let sa = Arc::new(SecurityAssociation::new(&c).unwrap());
    let spd = Spd::new(vec![
        SecurityPolicy {
            selector: Selector::between(
                IpPrefix::new("10.0.0.0".parse().unwrap(), 24),
                IpPrefix::new("10.9.0.0".parse().unwrap(), 16),
            ),
            action: PolicyAction::Protect { spis: vec![0x1001] },
        },
        SecurityPolicy {
            selector: Selector::between(
                IpPrefix::new("fd00::".parse().unwrap(), 64),
                IpPrefix::new("2001:db8:9::".parse().unwrap(), 48),
            ),
            action: PolicyAction::Protect { spis: vec![0x1001] },
        },
    ]);
    let mut sad = Publisher::new(SaSet::new([sa.clone()], &spd).unwrap());
    let icmp = IcmpErrors::new(&icmp_cfg(100)).with_routes(fib.subscribe(), None);
    (EspEncrypt::new(sad.subscribe()).with_icmp_errors(icmp), sa, sad)
}

#[test]
fn packets_over_the_tunnel_mtu_get_fragmentation_needed_with_the_effective_mtu() {
    let mut fib = fib();
    let (mut enc, sa, _sad) = encrypt(1400, &mut fib);
    // Outer IPv4 (20) + ESP header (8) + IV (8) + ICV (16), payload padded to 4 with 2 trailer
    // bytes: 1400 - 52 = 1348, rounded down to 4, less 2.
    let mtu = sa.inner_mtu().unwrap();
    assert_eq!(mtu, 1346);
    let mut cx = ShardCtx::new(0);
    // What the forward stage leaves: MACs already rewritten towards the WAN router.
    let forwarded = |f: Vec<u8>| {
        let mut f = f;
        f[0..6].copy_from_slice(&ROUTER_MAC);
        f[6..12].copy_from_slice(&WAN_MAC);
        f
    };
    let fits = forwarded(udp4([10, 9, 1, 1], 63, usize::from(mtu) - 28, true));
    let over = forwarded(udp4([10, 9, 1, 1], 63, usize::from(mtu) - 27, true));
    let over_no_df = forwarded(udp4([10, 9, 1, 1], 63, usize::from(mtu) - 27, false));
    let out = run(&mut enc, &mut cx, &[fits, over.clone(), over_no_df]);
    assert_eq!(out.len(), 4, "{}", cx.counters);
    let esp = &out[0].0;
    assert_eq!(esp.len() - 14, 1400, "exactly the SA's MTU");
    let (t, _) = icmp4(&out[1].0, &over);
    assert_eq!(out[1].1, 0, "routed back to the LAN host");
    assert_eq!(
        t,
        Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: mtu
        })
    );
    // DF clear: fragmented, two ESP packets within the MTU (the second after the batch).
    for f in [&out[2].0, &out[3].0] {
        assert!(f.len() - 14 <= 1400);
        assert_eq!(f[23], 50, "ESP");
    }
    assert_eq!((enc.stats().fragmented, enc.stats().fragments), (1, 2));
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    assert_eq!(enc.icmp_counters().too_big, 1);

    // IPv6: always Packet Too Big (routers never fragment IPv6).
    let dst6: Ipv6Addr = "2001:db8:9::1".parse().unwrap();
    let big6 = forwarded(udp6(dst6, 63, usize::from(mtu) - 40 - 8 + 1));
    let out = run(&mut enc, &mut cx, std::slice::from_ref(&big6));
    assert_eq!(out.len(), 1);
    assert_eq!(icmp6(&out[0].0, &big6), Icmpv6Type::PacketTooBig { mtu: u32::from(mtu) });
    let fits6 = forwarded(udp6(dst6, 63, usize::from(mtu) - 40 - 8));
    let out = run(&mut enc, &mut cx, &[fits6]);
    assert_eq!(out[0].0.len() - 14, 1400, "the largest IPv6 packet that fits");
    assert_eq!(out[0].0[23], 50, "ESP");
}
