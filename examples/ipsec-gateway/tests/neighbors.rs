//! Issue 20 item 2 end to end on the mem backend: gateway B with its LAN as a connected route
//! and no `[[neighbors]]` entry. The demo's ESP from A, decrypted, goes to hosts nobody
//! configured: B holds the packets, sends ARP requests / Neighbor Solicitations on its LAN,
//! learns the answers, publishes them to the data shards, and delivers every packet in order.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use etherparse::icmpv6::{Icmpv6PayloadSlice, NeighborAdvertisementHeader};
use etherparse::{ArpOperation, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use ipsec_gateway::config::Side;
use ipsec_gateway::demo::check;
use ipsec_gateway::demo::configs::{self, B_LAN_MAC, B_LAN_ROUTER_MAC, Site};
use wirespeed_core::DropReason;

mod common;
use common::*;

/// B's configuration with the LAN routes connected (no `via`) and no LAN neighbors.
fn b_without_lan_neighbors() -> String {
    let text = configs::config(Site::B, SHARDS, None);
    let text = text
        .replace("prefix = \"10.2.0.0/16\"\nvia = \"10.2.255.254\"\n", "prefix = \"10.2.0.0/16\"\n")
        .replace("prefix = \"fd00:2::/64\"\nvia = \"fd00:2::fe\"\n", "prefix = \"fd00:2::/64\"\n");
    let mut out = String::new();
    for block in text.split("\n\n") {
        if block.starts_with("[[neighbors]]") && block.contains("interface = \"lan\"") {
            continue;
        }
        out.push_str(block);
        out.push_str("\n\n");
    }
    assert!(!out.contains("10.2.255.254") && !out.contains("fd00:2::fe"), "{out}");
    out
}

/// The LAN's answer to an ARP request or Neighbor Solicitation from B (every host sits behind
/// B's LAN router MAC, so the demo's delivery check applies unchanged); `None` for other frames.
fn answer(f: &[u8]) -> Option<Vec<u8>> {
    let p = SlicedPacket::from_ethernet(f).ok()?;
    match (&p.net, &p.transport) {
        (Some(NetSlice::Arp(a)), _) => {
            assert_eq!(a.operation(), ArpOperation::REQUEST);
            let a = a.to_packet().try_eth_ipv4().unwrap();
            assert_eq!(a.sender_mac, B_LAN_MAC);
            let mut r = a.sender_mac.to_vec();
            r.extend_from_slice(&B_LAN_ROUTER_MAC);
            r.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
            r.extend_from_slice(&B_LAN_ROUTER_MAC);
            r.extend_from_slice(&a.target_ipv4);
            r.extend_from_slice(&a.sender_mac);
            r.extend_from_slice(&a.sender_ipv4);
            r.resize(60, 0);
            Some(r)
        }
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp)))
            if icmp.icmp_type() == Icmpv6Type::NeighborSolicitation =>
        {
            let Ok(Icmpv6PayloadSlice::NeighborSolicitation(ns)) = icmp.payload_slice() else { return None };
            let target: Ipv6Addr = ns.target_address();
            let src = ip.header().source_addr();
            let mut body = target.octets().to_vec();
            body.extend_from_slice(&[2, 1]);
            body.extend_from_slice(&B_LAN_ROUTER_MAC);
            let mut r = Vec::new();
            PacketBuilder::ethernet2(B_LAN_ROUTER_MAC, B_LAN_MAC)
                .ipv6(target.octets(), src.octets(), 255)
                .icmpv6(Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
                    router: false,
                    solicited: true,
                    r#override: true,
                }))
                .write(&mut r, &body)
                .unwrap();
            Some(r)
        }
        _ => None,
    }
}

/// Sends `esp` to B's WAN and answers B's solicitations on its LAN until `want` data frames
/// came out; returns them and how many solicitations were answered.
fn deliver(b: &mut Rig, esp: &[Vec<u8>], want: usize) -> (Vec<Vec<u8>>, usize) {
    for f in esp {
        b.send(Side::Wan, f);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut out, mut answered) = (Vec::new(), 0);
    while out.len() < want && Instant::now() < deadline {
        for f in b.take(Side::Lan) {
            match answer(&f) {
                Some(r) => {
                    b.send(Side::Lan, &r);
                    answered += 1;
                }
                None => out.push(f),
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (out, answered)
}

#[test]
fn a_connected_lan_without_static_neighbors_just_works() {
    let (flows, esp, _) = through_a();
    let mut b = Rig::start_with(&b_without_lan_neighbors());
    // In bursts the hold queues take whole (64 packets per path and shard): the first packets
    // to each host wait for its resolution, the next bursts find it learned.
    let (mut out, mut answered) = (Vec::new(), 0);
    for burst in esp.chunks(32) {
        let before = out.len();
        let (got, n) = deliver(&mut b, burst, burst.len());
        out.extend(got);
        answered += n;
        assert_eq!(out.len(), before + burst.len(), "burst delivered ({answered} solicitations answered)");
    }
    b.settle();
    let t = b.totals();
    let v = check::lan_frames(&flows, out.into_iter().map(Ok)).unwrap();
    assert!(v.ok(), "every packet, in order per flow, to the MAC learned: {v:#?}");
    assert_eq!(v.flows.len(), 12);
    assert_eq!(t.drops_of(DropReason::NoNeighbor), 0, "{t}");
    assert_eq!(t.drops_of(DropReason::NeighborQueueFull), 0, "{t}");
    // The solicitation answers are learned (and otherwise ignored by smoltcp); nothing else drops.
    assert_eq!(t.total_drops(), t.drops_of(DropReason::ControlIgnored), "{t}");
    // Each of the 12 destination hosts solicited once (retries only if an answer were late).
    assert_eq!(answered, 12, "one solicitation per host");
    b.stop();
}
