//! Classify: flow classes and metadata on frames built to the RFC layouts (with etherparse's
//! `PacketBuilder` where it can, by hand for ESP, fragments and extension headers), fast path
//! against etherparse path, and property tests on random and mutated frames.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{PacketBuilder, VlanId};
use proptest::prelude::*;
use wirespeed_core::backend::null::{ipv4_header_checksum, udp4_frame};
use wirespeed_core::meta::flags;
use wirespeed_core::{DropReason, FlowClass, L3Kind, PacketMeta};
use wirespeed_stages::classify::ClassifyConfig;

const ME4: [u8; 4] = [192, 0, 2, 1];
const PEER4: [u8; 4] = [198, 51, 100, 7];
const FAR4: [u8; 4] = [203, 0, 113, 9];
const ME6: &str = "2001:db8::1";
const PEER6: &str = "2001:db8:ffff::7";
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];

fn cfg() -> ClassifyConfig {
    ClassifyConfig {
        own_ipv4: vec![Ipv4Addr::from(ME4)],
        own_ipv6: vec![ME6.parse().unwrap()],
        ..ClassifyConfig::default()
    }
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().unwrap().octets()
}

/// Classifies with both paths, checks they agree, returns the result.
fn both(f: &[u8]) -> Result<PacketMeta, DropReason> {
    let c = cfg();
    let mut a = PacketMeta::default();
    let mut b = PacketMeta::default();
    let ra = c.classify(f, &mut a).map(|_| a);
    let rb = c.classify_etherparse(f, &mut b).map(|_| b);
    assert_eq!(ra, rb, "fast path and etherparse disagree on {f:02x?}");
    ra
}

fn udp4(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64).udp(sp, dp);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn tcp4(dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(PEER4, dst, 64).tcp(sp, dp, 1, 1000);
    let mut v = Vec::new();
    b.write(&mut v, b"hello").unwrap();
    v
}

/// Ethernet + IPv4 (no options) carrying `proto` with `payload`, checksummed, optional frag field.
fn raw4(dst: [u8; 4], proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 34];
    f[0..6].copy_from_slice(&MAC_B);
    f[6..12].copy_from_slice(&MAC_A);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    f[20..22].copy_from_slice(&frag.to_be_bytes());
    f[22] = 64;
    f[23] = proto;
    f[26..30].copy_from_slice(&PEER4);
    f[30..34].copy_from_slice(&dst);
    let c = ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn data_udp_and_tcp_ipv4() {
    let m = both(&udp4(PEER4, FAR4, 1234, 53, b"query")).unwrap();
    assert_eq!((m.l3, m.l3_offset, m.l4_offset, m.l4_proto), (L3Kind::Ipv4, 14, 34, 17));
    assert_eq!((m.src_port, m.dst_port, m.flow_class), (1234, 53, FlowClass::Data));
    let m = both(&tcp4(FAR4, 40000, 443)).unwrap();
    assert_eq!((m.l4_proto, m.src_port, m.dst_port, m.flow_class), (6, 40000, 443, FlowClass::Data));
}

#[test]
fn appliance_traffic_is_management_or_control() {
    let c = |f: Vec<u8>| both(&f).unwrap().flow_class;
    assert_eq!(c(tcp4(ME4, 40000, 9000)), FlowClass::Management, "management port");
    assert_eq!(c(tcp4(ME4, 40000, 22)), FlowClass::Management, "SSH");
    assert_eq!(c(tcp4(ME4, 40000, 179)), FlowClass::Control, "BGP to us");
    assert_eq!(c(tcp4(ME4, 179, 40000)), FlowClass::Control, "BGP reply to us");
    assert_eq!(c(tcp4(FAR4, 40000, 179)), FlowClass::Data, "transit BGP");
    assert_eq!(c(udp4(PEER4, ME4, 500, 500, &[0x11; 28])), FlowClass::Control, "IKE");
    // RFC 3948 §2.2: IKE on 4500 starts with the four-byte zero non-ESP marker.
    let mut ike = vec![0u8; 4];
    ike.extend_from_slice(&[0x22; 28]);
    assert_eq!(c(udp4(PEER4, ME4, 4500, 4500, &ike)), FlowClass::Control, "IKE on 4500");
    // RFC 3948 §2.3: NAT-keepalive is a single 0xFF byte.
    assert_eq!(c(udp4(PEER4, ME4, 4500, 4500, &[0xff])), FlowClass::Control, "NAT keepalive");
    // ICMP echo request to us (RFC 792 type 8).
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(PEER4, ME4, 64).icmpv4_echo_request(1, 1);
    let mut f = Vec::new();
    b.write(&mut f, b"ping").unwrap();
    assert_eq!(c(f), FlowClass::Management, "ping to us");
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(PEER4, FAR4, 64).icmpv4_echo_request(1, 1);
    let mut f = Vec::new();
    b.write(&mut f, b"ping").unwrap();
    assert_eq!(c(f), FlowClass::Data, "transit ping");
    // UDP to another port of ours: the control plane answers (port unreachable) or ignores.
    assert_eq!(c(udp4(PEER4, ME4, 1, 2, b"x")), FlowClass::Management);
}

#[test]
fn esp_and_esp_in_udp() {
    // RFC 4303 §2: SPI (4) + sequence (4) + payload.
    let esp = [0x00, 0x00, 0x12, 0x34, 0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd];
    let m = both(&raw4(ME4, 50, 0, &esp)).unwrap();
    assert_eq!((m.flow_class, m.spi, m.l4_proto, m.l4_offset), (FlowClass::Esp, 0x1234, 50, 34));
    let m = both(&raw4(FAR4, 50, 0, &esp)).unwrap();
    assert_eq!((m.flow_class, m.spi), (FlowClass::Esp, 0x1234), "transit ESP is still ESP");
    assert_eq!(both(&raw4(ME4, 50, 0, &[0u8; 12])), Err(DropReason::EspMalformed), "SPI 0");
    assert_eq!(both(&raw4(ME4, 50, 0, &esp[..6])), Err(DropReason::EspMalformed), "short");
    // RFC 3948 §2.1: UDP-encapsulated ESP, non-zero first word.
    let m = both(&udp4(PEER4, ME4, 4500, 4500, &esp)).unwrap();
    assert_eq!((m.flow_class, m.spi, m.dst_port), (FlowClass::EspInUdp, 0x1234, 4500));
    let m = both(&udp4(PEER4, ME4, 31337, 4500, &esp)).unwrap();
    assert_eq!(m.flow_class, FlowClass::EspInUdp, "NATed source port");
    assert_eq!(both(&udp4(PEER4, ME4, 4500, 4500, &esp[..5])), Err(DropReason::EspMalformed));
}

#[test]
fn vlan_and_qinq() {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .single_vlan(VlanId::try_new(100).unwrap())
        .ipv4(PEER4, FAR4, 64)
        .udp(1, 2);
    let mut f = Vec::new();
    b.write(&mut f, b"abc").unwrap();
    let m = both(&f).unwrap();
    assert_eq!((m.vlan, m.l3_offset, m.l4_offset, m.src_port), (100, 18, 38, 1));
    assert!(m.has(flags::VLAN));
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .double_vlan(VlanId::try_new(7).unwrap(), VlanId::try_new(8).unwrap())
        .ipv6(v6(PEER6), v6(ME6), 64)
        .tcp(5000, 9000, 1, 100);
    let mut f = Vec::new();
    b.write(&mut f, b"").unwrap();
    let m = both(&f).unwrap();
    assert_eq!((m.vlan, m.l3, m.l3_offset, m.l4_offset), (7, L3Kind::Ipv6, 22, 62));
    assert_eq!(m.flow_class, FlowClass::Management);
}

#[test]
fn ipv4_options_and_fragments() {
    // IHL 6 with one 4-byte option (NOP NOP NOP EOL, RFC 791).
    let mut f = udp4(PEER4, FAR4, 10, 20, b"opts");
    f.splice(34..34, [1u8, 1, 1, 0]);
    f[14] = 0x46;
    let tl = u16::from_be_bytes([f[16], f[17]]) + 4;
    f[16..18].copy_from_slice(&tl.to_be_bytes());
    f[24..26].fill(0);
    let c = ipv4_header_checksum(&f[14..38]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let m = both(&f).unwrap();
    assert_eq!((m.l4_offset, m.src_port, m.dst_port), (38, 10, 20));
    assert!(m.has(flags::IP_OPTIONS));
    // A later fragment (offset 185 * 8): no transport header, only the 2-tuple.
    let m = both(&raw4(FAR4, 17, 185, &[0x55; 40])).unwrap();
    assert!(m.has(flags::FRAGMENT));
    assert_eq!((m.src_port, m.dst_port, m.flow_class), (0, 0, FlowClass::Data));
    // First fragment (MF set) to us.
    let m = both(&raw4(ME4, 17, 0x2000, &[0x55; 40])).unwrap();
    assert!(m.has(flags::FRAGMENT));
    assert_eq!(m.flow_class, FlowClass::Management);
}

/// IPv6 with a hop-by-hop header (RFC 8200 §4.3, 8 bytes of PadN) then UDP.
fn ipv6_hbh_udp(dst: &str) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
    ip.extend_from_slice(&v6(PEER6));
    ip.extend_from_slice(&v6(dst));
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // next = UDP, len 0, PadN(4)
    f.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0]); // 5000 -> 53, len 8
    f
}

#[test]
fn ipv6_extension_headers_and_neighbor_discovery() {
    let m = both(&ipv6_hbh_udp("2001:db8:aaaa::1")).unwrap();
    assert_eq!((m.l3, m.l4_offset, m.l4_proto, m.src_port, m.dst_port), (L3Kind::Ipv6, 62, 17, 5000, 53));
    assert!(m.has(flags::IP_OPTIONS));
    // Neighbor Solicitation (RFC 4861 §4.3, type 135) to a solicited-node multicast address.
    let b = PacketBuilder::ethernet2(MAC_A, [0x33, 0x33, 0xff, 0, 0, 1])
        .ipv6(v6(PEER6), v6("ff02::1:ff00:1"), 255)
        .icmpv6_raw(135, 0, [0; 4]);
    let mut f = Vec::new();
    b.write(&mut f, &v6(ME6)).unwrap();
    let m = both(&f).unwrap();
    assert_eq!((m.l4_proto, m.flow_class), (58, FlowClass::Management));
    // Echo request to us (RFC 4443 type 128) vs transit.
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv6(v6(PEER6), v6(ME6), 64).icmpv6_echo_request(1, 2);
    let mut f = Vec::new();
    b.write(&mut f, b"ping6").unwrap();
    assert_eq!(both(&f).unwrap().flow_class, FlowClass::Management);
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(v6(PEER6), v6("2001:db8:9::9"), 64)
        .icmpv6_echo_request(1, 2);
    let mut f = Vec::new();
    b.write(&mut f, b"ping6").unwrap();
    assert_eq!(both(&f).unwrap().flow_class, FlowClass::Data);
}

#[test]
fn arp_and_other_ethertypes() {
    // RFC 826 request, Ethernet/IPv4: who has 192.0.2.1, tell 198.51.100.7.
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&PEER4);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ME4);
    f.resize(60, 0);
    let m = both(&f).unwrap();
    assert_eq!((m.l3, m.flow_class, m.l3_offset), (L3Kind::Arp, FlowClass::Management, 14));
    // LLDP (0x88cc) is passed on as Other.
    let mut f = vec![0u8; 60];
    f[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    let m = both(&f).unwrap();
    assert_eq!((m.l3, m.flow_class), (L3Kind::Other, FlowClass::Other));
}

#[test]
fn malformed_frames_are_reasoned_drops() {
    let good = udp4(PEER4, FAR4, 1, 2, b"abcd");
    let mut f = good.clone();
    f[14] = 0x44; // IHL 4
    assert_eq!(both(&f), Err(DropReason::MalformedIpv4));
    let mut f = good.clone();
    f[38..40].copy_from_slice(&100u16.to_be_bytes()); // UDP length beyond the packet
    assert!(both(&f).is_err());
    let mut f = good.clone();
    f[16..18].copy_from_slice(&200u16.to_be_bytes()); // total length beyond the frame
    assert_eq!(both(&f), Err(DropReason::Truncated));
    assert_eq!(both(&good[..10]), Err(DropReason::Truncated));
    let mut f = tcp4(FAR4, 1, 2);
    f[34 + 12] = 0x40; // data offset 4
    assert_eq!(both(&f), Err(DropReason::MalformedL4));
    // Ethernet padding after a short IPv4 packet is fine (the null template is padded too).
    let mut f = good.clone();
    f.resize(64, 0);
    assert!(both(&f).is_ok());
    assert!(both(&udp4_frame(64)).is_ok());
}

fn valid_frames() -> Vec<Vec<u8>> {
    let mut esp = vec![0, 0, 1, 0, 0, 0, 0, 9];
    esp.extend_from_slice(&[0x77; 24]);
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .single_vlan(VlanId::try_new(42).unwrap())
        .ipv6(v6(PEER6), v6(ME6), 64)
        .udp(4500, 4500);
    let mut vlan6 = Vec::new();
    b.write(&mut vlan6, &esp).unwrap();
    vec![
        vlan6,
        udp4(PEER4, FAR4, 1234, 53, b"query"),
        udp4(PEER4, ME4, 4500, 4500, &esp),
        tcp4(ME4, 40000, 9000),
        raw4(ME4, 50, 0, &esp),
        raw4(FAR4, 17, 0x2000, &[1; 24]),
        ipv6_hbh_udp(ME6),
        udp4_frame(64),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(f in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut m = PacketMeta::default();
        let _ = cfg().classify(&f, &mut m);
    }

    #[test]
    fn random_ip_frames_agree_between_paths(
        ethertype in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), Just(0x0806)],
        body in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(&body);
        let _ = both(&f);
    }

    #[test]
    fn mutated_frames_agree_and_stay_in_bounds(
        which in 0usize..8,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let mut f = valid_frames()[which].clone();
        for (at, x) in flips {
            let i = at % f.len();
            f[i] ^= x;
        }
        if cut % 3 == 0 {
            f.truncate(cut % (f.len() + 1));
        }
        if let Ok(m) = both(&f) {
            prop_assert!((m.l3_offset as usize) <= f.len());
            prop_assert!((m.l4_offset as usize) <= f.len());
            prop_assert!(m.flow_class != FlowClass::Unclassified);
        }
    }
}
