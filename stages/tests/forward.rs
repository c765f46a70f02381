//! Forward stage: LPM tables against a brute-force reference, RFC 1624 incremental checksums,
//! TTL / hop limit, neighbors and MAC rewrite.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use wirespeed_core::backend::null::{ipv4_header_checksum, udp4_frame};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{DropReason, L3Kind, PacketMeta, Verdict};
use wirespeed_stages::classify::{ClassifyConfig, ipv4_header_valid};
use wirespeed_stages::forward::lpm4::mask4;
use wirespeed_stages::forward::lpm6::mask6;
use wirespeed_stages::forward::{Dir24_8, FibBuilder, Forward, Lpm6, NextHop, checksum_adjust};
use wirespeed_test_gen::{SplitMix, bgp_like_routes};

/// Reference LPM: one map per length, longest first.
fn ref4(routes: &[(u32, u8, u32)]) -> impl Fn(u32) -> Option<u32> {
    let mut by_len: Vec<HashMap<u32, u32>> = vec![HashMap::new(); 33];
    for &(a, l, v) in routes {
        by_len[l as usize].insert(mask4(a, l), v);
    }
    move |addr| (0..=32u8).rev().find_map(|l| by_len[l as usize].get(&mask4(addr, l)).copied())
}

/// RFC 1624 §4 worked example: m = 0x5555 becomes 0x3285 under HC = 0xDD2F; eqn. 3 gives
/// 0x0000 (eqn. 2 would give the wrong -0, 0xFFFF).
#[test]
fn rfc1624_section4_example() {
    assert_eq!(checksum_adjust(0xdd2f, 0x5555, 0x3285), 0x0000);
}

proptest! {
    // Each case builds a 64 MiB DIR-24-8 table; short prefixes fill millions of entries, which
    // is slow in debug builds, so fewer cases here.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn incremental_checksum_equals_recomputation(
        mut hdr in proptest::collection::vec(any::<u8>(), 20),
        at in 0usize..10,
        new in any::<u16>(),
    ) {
        hdr[10] = 0;
        hdr[11] = 0;
        let hc = ipv4_header_checksum(&hdr);
        hdr[10..12].copy_from_slice(&hc.to_be_bytes());
        let at = if at == 5 { 4 } else { at } * 2; // not the checksum word itself
        let old = u16::from_be_bytes([hdr[at], hdr[at + 1]]);
        hdr[at..at + 2].copy_from_slice(&new.to_be_bytes());
        let inc = checksum_adjust(hc, old, new);
        hdr[10..12].copy_from_slice(&inc.to_be_bytes());
        prop_assert!(ipv4_header_valid(&hdr), "incremental checksum {inc:#06x} does not verify");
    }

    #[test]
    fn dir24_8_matches_reference(
        routes in proptest::collection::vec((any::<u32>(), 0u8..=32, 0u32..1000), 0..60),
        probes in proptest::collection::vec(any::<u32>(), 50),
    ) {
        let t = Dir24_8::build(&routes).unwrap();
        let r = ref4(&routes);
        // Probe random addresses and addresses inside and just outside each route.
        let mut addrs = probes.clone();
        for &(a, l, _) in &routes {
            let m = mask4(a, l);
            addrs.extend([m, m | (!0u32).checked_shr(l as u32).unwrap_or(0), m.wrapping_sub(1), a]);
        }
        for a in addrs {
            prop_assert_eq!(t.lookup(a), r(a), "address {}", Ipv4Addr::from(a));
        }
    }

    #[test]
    fn lpm6_matches_reference(
        routes in proptest::collection::vec((any::<u128>(), 0u8..=128, 0u32..1000), 0..40),
        probes in proptest::collection::vec(any::<u128>(), 30),
    ) {
        let t = Lpm6::build(&routes).unwrap();
        let reference = |addr: u128| {
            let mut best: Option<(u8, u32)> = None;
            for &(p, l, v) in &routes {
                if addr & mask6(l) == p & mask6(l) && best.is_none_or(|(bl, _)| l >= bl) {
                    best = Some((l, v));
                }
            }
            best.map(|(_, v)| v)
        };
        let mut addrs = probes.clone();
        for &(a, l, _) in &routes {
            addrs.extend([a, a & mask6(l), (a & mask6(l)).wrapping_sub(1)]);
        }
        for a in addrs {
            prop_assert_eq!(t.lookup(a), reference(a), "address {}", Ipv6Addr::from(a));
        }
    }
}

#[test]
fn dir24_8_overlaps_and_groups() {
    let routes = [
        (0x0a00_0000, 8, 1),  // 10/8
        (0x0a01_0200, 24, 2), // 10.1.2/24
        (0x0a01_0280, 25, 3), // 10.1.2.128/25
        (0x0a01_02fe, 32, 4), // 10.1.2.254/32
        (0x0a01_0300, 26, 5), // 10.1.3.0/26: group seeded with 10/8
    ];
    let t = Dir24_8::build(&routes).unwrap();
    assert_eq!(t.lookup(0x0a01_0201), Some(2));
    assert_eq!(t.lookup(0x0a01_0281), Some(3));
    assert_eq!(t.lookup(0x0a01_02fe), Some(4));
    assert_eq!(t.lookup(0x0a01_02ff), Some(3));
    assert_eq!(t.lookup(0x0a01_0301), Some(5));
    assert_eq!(t.lookup(0x0a01_0341), Some(1));
    assert_eq!(t.lookup(0x0b00_0000), None);
    assert_eq!(t.groups(), 2);
    assert_eq!(t.len(), 5);
    assert!(Dir24_8::build(&[(0, 33, 1)]).is_err());
}

#[test]
fn million_routes_build_and_agree_with_reference() {
    // A BGP-like random table, 64 next hops.
    let routes = bgp_like_routes(1_000_000, 7, 64);
    let t = Dir24_8::build(&routes).unwrap();
    let r = ref4(&routes);
    let mut rng = SplitMix(99);
    for i in 0..20_000 {
        let a =
            if i % 2 == 0 { rng.next_u64() as u32 } else { routes[rng.next_u64() as usize % routes.len()].0 };
        assert_eq!(t.lookup(a), r(a), "address {}", Ipv4Addr::from(a));
    }
    assert!(t.len() > 900_000, "{} distinct prefixes", t.len());
}

const PORT_MACS: [[u8; 6]; 2] = [[0x02, 0, 0, 0, 0xa0, 0], [0x02, 0, 0, 0, 0xa0, 1]];

fn classify(f: &[u8]) -> PacketMeta {
    let mut m = PacketMeta::default();
    ClassifyConfig::default().classify(f, &mut m).expect("valid frame");
    m
}

fn ipv6_udp_frame(dst: Ipv6Addr, hop_limit: u8) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40 + 8];
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    f[14] = 0x60;
    f[18..20].copy_from_slice(&8u16.to_be_bytes());
    f[20] = 17;
    f[21] = hop_limit;
    f[22..38].copy_from_slice(&"2001:db8:1::1".parse::<Ipv6Addr>().unwrap().octets());
    f[38..54].copy_from_slice(&dst.octets());
    f[54..56].copy_from_slice(&1000u16.to_be_bytes());
    f[56..58].copy_from_slice(&2000u16.to_be_bytes());
    f[58..60].copy_from_slice(&8u16.to_be_bytes());
    f
}

#[test]
fn forwards_ipv4_rewrites_ttl_checksum_and_macs() {
    // Template frame: 10.0.0.1 -> 10.0.1.1, TTL 64.
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let mut b = FibBuilder::new();
    b.route("10.0.0.0".parse().unwrap(), 16, NextHop::Gateway(gw)).unwrap();
    b.route("10.0.1.0".parse().unwrap(), 24, NextHop::Direct).unwrap();
    b.neighbor(gw, [0x02, 0, 0, 0, 0, 0x99], 0);
    b.neighbor("10.0.1.1".parse().unwrap(), [0x02, 0, 0, 0, 0, 0x11], 1);
    let mut p = Publisher::new(b.build().unwrap());
    let fwd = Forward::new(p.subscribe(), &PORT_MACS);

    let mut f = udp4_frame(64);
    let m = classify(&f);
    assert_eq!(fwd.forward_frame(&mut f, &m), Verdict::Forward { port: 1 });
    assert_eq!(&f[0..6], &[0x02, 0, 0, 0, 0, 0x11]);
    assert_eq!(&f[6..12], &PORT_MACS[1]);
    assert_eq!(f[14 + 8], 63);
    assert!(ipv4_header_valid(&f[14..34]));
    // Forwarding the result again still verifies (TTL 62).
    assert_eq!(fwd.forward_frame(&mut f, &m), Verdict::Forward { port: 1 });
    assert!(ipv4_header_valid(&f[14..34]));

    // 10.0.1.2 is on the connected /24 but has no neighbor entry.
    let mut g = udp4_frame(64);
    g[14 + 19] = 2;
    g[24..26].fill(0);
    let c = ipv4_header_checksum(&g[14..34]);
    g[24..26].copy_from_slice(&c.to_be_bytes());
    let m = classify(&g);
    assert_eq!(fwd.forward_frame(&mut g, &m), Verdict::Drop(DropReason::NoNeighbor));
    // Outside every route.
    g[14 + 16] = 11;
    g[24..26].fill(0);
    let c = ipv4_header_checksum(&g[14..34]);
    g[24..26].copy_from_slice(&c.to_be_bytes());
    let before = g.clone();
    let m = classify(&g);
    assert_eq!(fwd.forward_frame(&mut g, &m), Verdict::Drop(DropReason::NoRoute));
    assert_eq!(g, before, "a dropped packet is left untouched");
}

#[test]
fn ttl_expiry_and_unresolved_gateways() {
    let mut b = FibBuilder::new();
    b.route("0.0.0.0".parse().unwrap(), 0, NextHop::Gateway("192.0.2.1".parse().unwrap())).unwrap();
    let mut p = Publisher::new(b.build().unwrap());
    let fwd = Forward::new(p.subscribe(), &PORT_MACS);
    let mut f = udp4_frame(64);
    let m = classify(&f);
    assert_eq!(fwd.forward_frame(&mut f, &m), Verdict::Drop(DropReason::NoNeighbor));
    for ttl in [0u8, 1] {
        let mut f = udp4_frame(64);
        f[22] = ttl;
        f[24..26].fill(0);
        let c = ipv4_header_checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let m = classify(&f);
        assert_eq!(fwd.forward_frame(&mut f, &m), Verdict::Drop(DropReason::TtlExpired));
    }
    // Non-IP is not forwarded.
    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let m = PacketMeta { l3: L3Kind::Arp, l3_offset: 14, ..PacketMeta::default() };
    assert_eq!(fwd.forward_frame(&mut arp, &m), Verdict::Drop(DropReason::Unsupported));
    // Metadata pointing past the end never panics.
    let m = PacketMeta { l3: L3Kind::Ipv4, l3_offset: 60, ..PacketMeta::default() };
    assert_eq!(fwd.forward_frame(&mut arp, &m), Verdict::Drop(DropReason::Truncated));
}

#[test]
fn forwards_ipv6_and_follows_published_updates() {
    let gw: IpAddr = "fe80::1".parse().unwrap();
    let mut b = FibBuilder::new();
    b.route("2001:db8:2::".parse().unwrap(), 48, NextHop::Gateway(gw)).unwrap();
    b.neighbor(gw, [0x02, 0, 0, 0, 0, 0x66], 1);
    let mut p = Publisher::new(b.build().unwrap());
    let mut fwd = Forward::new(p.subscribe(), &PORT_MACS);
    let dst: Ipv6Addr = "2001:db8:2::42".parse().unwrap();
    let mut f = ipv6_udp_frame(dst, 2);
    let m = classify(&f);
    assert_eq!(fwd.forward_frame(&mut f, &m), Verdict::Forward { port: 1 });
    assert_eq!(f[21], 1);
    assert_eq!(&f[0..6], &[0x02, 0, 0, 0, 0, 0x66]);
    assert_eq!(fwd.forward_frame(&mut f, &m), Verdict::Drop(DropReason::TtlExpired));

    // A more specific route via port 0 is published; the stage adopts it at its next batch.
    b.route("2001:db8:2:42::".parse().unwrap(), 64, NextHop::Direct).unwrap();
    b.neighbor(dst.into(), [0x02, 0, 0, 0, 0, 0x42], 0);
    let mut f = ipv6_udp_frame("2001:db8:2:42::7".parse().unwrap(), 64);
    let m = classify(&f);
    assert_eq!(fwd.forward_frame(&mut f, &m), Verdict::Forward { port: 1 });
    let v = p.publish(b.build().unwrap());
    assert!(fwd.refresh());
    assert_eq!(fwd.fib_version(), v);
    // 2001:db8:2:42::7 is on the /64 now but not a known neighbor; ::42 is not on it.
    assert_eq!(fwd.forward_frame(&mut f, &m), Verdict::Drop(DropReason::NoNeighbor));
    assert_eq!(b.remove_route("2001:db8:2:42::".parse().unwrap(), 64), 1);
}

#[test]
fn never_forwarded_destinations() {
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let gw6: IpAddr = "2001:db8::fe".parse().unwrap();
    let mut b = FibBuilder::new();
    b.route("0.0.0.0".parse().unwrap(), 0, NextHop::Gateway(gw)).unwrap();
    b.route("::".parse().unwrap(), 0, NextHop::Gateway(gw6)).unwrap();
    b.neighbor(gw, [0x02, 0, 0, 0, 0, 0x99], 0);
    b.neighbor(gw6, [0x02, 0, 0, 0, 0, 0x98], 0);
    let mut p = Publisher::new(b.build().unwrap());
    let fwd = Forward::new(p.subscribe(), &PORT_MACS);
    for (dst, want) in [
        ([224, 0, 0, 5], Some(DropReason::Unsupported)),
        ([239, 1, 2, 3], Some(DropReason::Unsupported)),
        ([255, 255, 255, 255], Some(DropReason::NoRoute)),
        ([127, 0, 0, 1], Some(DropReason::NoRoute)),
        ([0, 1, 2, 3], Some(DropReason::NoRoute)),
        ([198, 51, 100, 1], None),
    ] {
        let mut f = udp4_frame(64);
        f[30..34].copy_from_slice(&dst);
        f[24..26].fill(0);
        let c = ipv4_header_checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let m = classify(&f);
        let want = want.map_or(Verdict::Forward { port: 0 }, Verdict::Drop);
        assert_eq!(fwd.forward_frame(&mut f, &m), want, "{}", Ipv4Addr::from(dst));
    }
    for (dst, want) in [
        ("ff02::1", Some(DropReason::Unsupported)),
        ("fe80::1", Some(DropReason::NoRoute)),
        ("febf::1", Some(DropReason::NoRoute)),
        ("::1", Some(DropReason::NoRoute)),
        ("fec0::1", None),
        ("2001:db8:5::1", None),
    ] {
        let mut f = ipv6_udp_frame(dst.parse().unwrap(), 64);
        let m = classify(&f);
        let want = want.map_or(Verdict::Forward { port: 0 }, Verdict::Drop);
        assert_eq!(fwd.forward_frame(&mut f, &m), want, "{dst}");
    }
    // A host's link-local multicast with hop limit / TTL 1 (MLD and IGMP reports) is a
    // never-forwarded destination, not a TTL expiry (no Time Exceeded for it).
    let mut f = ipv6_udp_frame("ff02::16".parse().unwrap(), 1);
    let m = classify(&f);
    assert_eq!(fwd.forward_frame(&mut f, &m), Verdict::Drop(DropReason::Unsupported));
    let mut f = udp4_frame(64);
    f[30..34].copy_from_slice(&[224, 0, 0, 22]);
    f[22] = 1;
    f[24..26].fill(0);
    let c = ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let m = classify(&f);
    assert_eq!(fwd.forward_frame(&mut f, &m), Verdict::Drop(DropReason::Unsupported));
}
