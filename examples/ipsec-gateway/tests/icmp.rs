//! Issue 20 item 3 end to end on the mem backend: gateway A with ICMP errors on (`[icmp]`, the
//! default outside the demo) and a 1400-byte MTU on its outbound SAs. A traceroute-like probe
//! gets Time Exceeded, a packet without a route gets Destination Unreachable, a DF packet too
//! big for the tunnel gets Fragmentation Needed with the tunnel's effective MTU, routed back to
//! its source through the LAN router; a packet that fits is encrypted as before; the same
//! packet with DF clear is fragmented before encryption and leaves as two ESP packets. The
//! stage counters say so in `Gateway::stage_stats` and `/metrics`.

use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice, icmpv4};
use ipsec_gateway::config::Side;
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::demo::traffic;
use std::net::Ipv4Addr;
use wirespeed_core::DropReason;

mod common;
use common::*;

const A_LAN_ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0xfe];

fn udp(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(traffic::CLIENT_MAC, configs::A_LAN_MAC)
        .ipv4(src, dst, ttl)
        .udp(5000, 6000)
        .write(&mut f, &vec![7; payload])
        .unwrap();
    f
}

fn parse(f: &[u8]) -> (Ipv4Addr, Ipv4Addr, Icmpv4Type) {
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else { panic!("not IPv4: {f:02x?}") };
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!("not ICMP: {f:02x?}") };
    (ip.header().source_addr(), ip.header().destination_addr(), icmp.icmp_type())
}

#[test]
fn the_gateway_answers_with_icmp_errors_and_the_tunnel_mtu() {
    let text = configs::config(Site::A, SHARDS, None)
        .replace("[icmp]\nerrors = false\n", "[icmp]\nerrors = true\nrate = 1000\n")
        .replace("direction = \"outbound\"\n", "direction = \"outbound\"\nmtu = 1400\n");
    let mut a = Rig::start_with(&text);
    // 20 (outer IPv4) + 8 (ESP) + 8 (IV) + 16 (ICV): 1348, padded to 4 with the 2-byte trailer.
    let mtu = 1346u16;
    let probe = udp([10, 1, 0, 98], [10, 2, 3, 4], 1, 24);
    let lost = udp([10, 1, 0, 99], [198, 51, 100, 7], 64, 32);
    let too_big = udp([10, 1, 0, 10], [10, 2, 0, 20], 64, usize::from(mtu) - 27);
    let fits = udp([10, 1, 0, 10], [10, 2, 0, 20], 64, usize::from(mtu) - 28);
    assert_ne!(too_big[20] & 0x40, 0, "etherparse sets DF");
    let mut df_clear = too_big.clone();
    df_clear[20] &= !0x40;
    df_clear[24..26].fill(0);
    let c = wirespeed_core::backend::null::ipv4_header_checksum(&df_clear[14..34]);
    df_clear[24..26].copy_from_slice(&c.to_be_bytes());
    for f in [&probe, &lost, &too_big, &fits, &df_clear] {
        a.send(Side::Lan, f);
    }
    a.settle();
    let lan = a.take(Side::Lan);
    let wan = a.take(Side::Wan);
    // Shards publish their stage counters when they go idle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stages = loop {
        let s = ipsec_gateway::stagestats::StageCounters::sum(&a.gw().stage_stats());
        if s.fragments == 2 && s.icmp_too_big == 1 || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    a.gw().refresh_metrics();
    let metrics = a.gw().metrics_text();
    let t = a.stop();
    assert_eq!(t.total_drops(), 0, "every refused packet answered: {t}");
    assert_eq!(wan.len(), 3, "the packet that fits is encrypted, the DF-clear one fragmented");
    assert_eq!(wan[0].len() - 14, 1400, "to exactly the SA's MTU");
    assert!(wan.iter().all(|f| f.len() - 14 <= 1400 && f[23] == 50), "ESP within the MTU");
    assert_eq!(
        (stages.icmp_time_exceeded, stages.icmp_unreachable, stages.icmp_too_big),
        (1, 1, 1),
        "{stages}"
    );
    assert_eq!((stages.fragmented, stages.fragments, stages.frag_failed), (1, 2, 0), "{stages}");
    for line in [
        "wirespeed_gateway_icmp_too_big_total{gateway=\"gateway-a\"} 1\n",
        "wirespeed_gateway_fragments_total{gateway=\"gateway-a\"} 2\n",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert_eq!(lan.len(), 3, "{lan:02x?}");
    let me = Ipv4Addr::new(10, 1, 0, 1);
    let mut seen = [0; 3];
    for f in &lan {
        let (src, dst, ty) = parse(f);
        assert_eq!(src, me, "from A's LAN address");
        match ty {
            Icmpv4Type::TimeExceeded(_) => {
                assert_eq!(dst, Ipv4Addr::new(10, 1, 0, 98));
                assert_eq!(f[0..6], traffic::CLIENT_MAC, "back to the previous hop");
                seen[0] += 1;
            }
            Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::Network) => {
                assert_eq!(dst, Ipv4Addr::new(10, 1, 0, 99));
                seen[1] += 1;
            }
            Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu,
            }) => {
                assert_eq!(next_hop_mtu, mtu, "the tunnel's effective MTU");
                assert_eq!(dst, Ipv4Addr::new(10, 1, 0, 10));
                assert_eq!(f[0..6], A_LAN_ROUTER_MAC, "routed to the source through the LAN router");
                seen[2] += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, [1, 1, 1], "one of each");
    assert_eq!(t.drops_of(DropReason::EspMtuExceeded), 0);
}
