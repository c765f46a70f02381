//! End to end on AF_XDP (root; skipped with the reason printed otherwise): gateway A of the demo,
//! built from its configuration with both ports switched to `backend = "afxdp"`, serves two veth
//! pairs whose peer ends sit in their own network namespaces. The demo's cleartext flows are sent
//! from the LAN namespace; the ESP leaving A's WAN veth is collected in the WAN namespace and
//! decrypted by gateway B (mem backend), which must deliver every tunnelled inner packet
//! byte-identical (TTL aside) and in order per flow. The XDP programs are detached afterwards.
//! The mirror: ESP from gateway A (mem) into gateway B on AF_XDP, decrypted out of its LAN veth.
//! Also: ARP and ping answered through the management queue's socket, and `run` on AF_XDP.
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipsec_gateway::config::{GatewayConfig, PortConfig, Side};
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::demo::{check, traffic};
use ipsec_gateway::gateway::{self, RunMode, Steering, queues_per_port};
use ipsec_gateway::ports::{self, XdpControlTx};
use wirespeed_afxdp::peer::{RawSocket, enter_netns};
use wirespeed_core::DropReason;

mod common;
mod support;

use support::netns::Veth;

/// A demo gateway's configuration with AF_XDP ports on `lan` and `wan`.
fn afxdp_config(site: Site, lan: &str, wan: &str) -> String {
    let text = configs::config(site, common::SHARDS, None);
    let mem = "port = { backend = \"mem\" }";
    assert_eq!(text.matches(mem).count(), 2, "{text}");
    // Nothing passed to the kernel: the gateway's control plane answers ARP and ND itself.
    let port = |itf: &str| {
        format!(
            "port = {{ backend = \"afxdp\", interface = \"{itf}\", mode = \"auto\", frames = 4096, \
             fill_ring = 1024, tx_ring = 1024, kernel_pass = {{ arp = false, ipv6_nd = false, tcp_dst_ports = [] }} }}"
        )
    };
    text.replacen(mem, &port(lan), 1).replacen(mem, &port(wan), 1)
}

#[test]
fn demo_flows_through_gateway_a_on_afxdp_decrypt_at_b() {
    require_kernel!();
    let q = common::SHARDS as u16 + 1;
    let lan = Veth::with_macs(q, configs::A_LAN_MAC, traffic::CLIENT_MAC);
    let wan = Veth::with_macs(q, configs::A_WAN_MAC, configs::B_WAN_MAC);
    let cfg = GatewayConfig::from_toml(&afxdp_config(Site::A, &lan.local, &wan.local), None, "afxdp-test")
        .expect("valid configuration");
    assert!(matches!(cfg.lan.port, PortConfig::Afxdp(_)));
    assert_eq!(queues_per_port(&cfg), q);

    let (ports, notes) = ports::open_afxdp(&cfg, &Steering::new(&cfg).unwrap()).expect("ports open");
    for n in &notes {
        eprintln!("{n}");
    }
    let gw =
        gateway::build_with(&cfg, ports, XdpControlTx::split, RunMode::UntilStopped).expect("gateway starts");

    let flows = traffic::demo_flows(None);
    let tunnelled: usize = flows.iter().filter(|f| check::tunnelled(f)).map(|f| f.packets).sum();
    let mut frames = Vec::new(); // (frame, produces ESP)
    let longest = flows.iter().map(|f| f.packets).max().unwrap();
    for seq in 0..longest {
        for f in flows.iter().filter(|f| seq < f.packets) {
            frames.push((traffic::frame(f, seq as u32), check::tunnelled(f)));
        }
    }

    // The WAN side collects ESP (IPv4 protocol 50).
    let esp =
        exchange(&lan, frames, &wan, tunnelled, |f| f.len() > 34 && f[12..14] == [0x08, 0x00] && f[23] == 50);
    let stats = gw.stop().expect("gateway stops");
    let mut totals = wirespeed_core::ShardCounters::default();
    for s in &stats {
        totals.accumulate(&s.counters);
    }
    assert_eq!(esp.len(), tunnelled, "A on AF_XDP: {totals}");
    assert_eq!(totals.drops_of(DropReason::NoRoute), 5, "{totals}");
    assert_eq!(totals.drops_of(DropReason::TtlExpired), 3, "{totals}");
    for f in &esp {
        assert_eq!(f[0..6], configs::B_WAN_MAC, "to the WAN router");
        assert_eq!(f[6..12], configs::A_WAN_MAC, "from A's WAN MAC");
    }

    // Gateway B (mem) decrypts what A sent on the wire.
    let mut b = common::Rig::start(Site::B);
    for f in &esp {
        b.send(Side::Wan, f);
    }
    b.settle();
    let out = b.take(Side::Lan);
    let tb = b.stop();
    assert_eq!(tb.total_drops(), 0, "B: {tb}");
    let v = check::lan_frames(&flows, out.into_iter().map(Ok)).unwrap();
    assert!(v.ok(), "{v:#?}");
    assert_eq!(v.flows.len(), 12);

    // The programs left with the ports.
    for veth in [&lan, &wan] {
        if let Err(shown) = veth.detached() {
            panic!("XDP program still attached to {}:\n{shown}", veth.local);
        }
    }
}

/// An ARP request (RFC 826) for `target` from `CLIENT_MAC` / `sender`, padded to 60 bytes.
fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&traffic::CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&traffic::CLIENT_MAC);
    f.extend_from_slice(&sender);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

/// Management traffic over AF_XDP: an ARP request and a ping to A's LAN address, sent from the
/// LAN namespace, arrive on a data queue, are punted to the control plane, and are answered
/// through the management queue's socket (frames allocated from its UMEM).
#[test]
fn arp_and_ping_to_the_gateway_are_answered_over_afxdp() {
    require_kernel!();
    let q = common::SHARDS as u16 + 1;
    let lan = Veth::with_macs(q, configs::A_LAN_MAC, traffic::CLIENT_MAC);
    let wan = Veth::with_macs(q, configs::A_WAN_MAC, configs::B_WAN_MAC);
    let cfg =
        GatewayConfig::from_toml(&afxdp_config(Site::A, &lan.local, &wan.local), None, "afxdp-ping").unwrap();
    let (ports, _) = ports::open_afxdp(&cfg, &Steering::new(&cfg).unwrap()).expect("ports open");
    let gw =
        gateway::build_with(&cfg, ports, XdpControlTx::split, RunMode::UntilStopped).expect("gateway starts");
    let (me, client) = ([10, 1, 0, 1], [10, 1, 0, 50]);
    let mut ping = Vec::new();
    etherparse::PacketBuilder::ethernet2(traffic::CLIENT_MAC, configs::A_LAN_MAC)
        .ipv4(client, me, 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut ping, b"are you there")
        .unwrap();
    let (ns, dev) = (lan.ns.clone(), lan.peer.clone());
    let replies = std::thread::spawn(move || {
        assert!(core_affinity::set_for_current(core_affinity::CoreId { id: 0 }), "pin to cpu 0");
        enter_netns(&ns).unwrap();
        let s = RawSocket::open(&dev).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 2048];
        for frame in [arp_request(client, me), ping] {
            assert!(s.send(&frame).unwrap());
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if let Some(n) = s.recv(&mut buf, 50).unwrap()
                    && buf[6..12] == configs::A_LAN_MAC
                {
                    got.push(buf[..n].to_vec());
                    break;
                }
            }
        }
        got
    })
    .join()
    .unwrap();
    let stats = gw.stop().unwrap();
    assert_eq!(replies.len(), 2, "answers: {replies:02x?}; shards: {stats:?}");
    assert_eq!(replies[0][12..14], [0x08, 0x06], "ARP");
    assert_eq!(replies[0][20..22], [0, 2], "ARP reply");
    assert_eq!(replies[0][22..28], configs::A_LAN_MAC, "A answers with its LAN MAC");
    let p = etherparse::SlicedPacket::from_ethernet(&replies[1]).unwrap();
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = p.transport else { panic!("not ICMP: {p:?}") };
    assert!(matches!(icmp.icmp_type(), etherparse::Icmpv4Type::EchoReply(e) if (e.id, e.seq) == (7, 1)));
    assert_eq!(icmp.payload(), b"are you there");
}

/// `run` opens AF_XDP ports from the configuration and serves them until told to stop, then
/// drains and reports every shard; the programs detach afterwards.
#[test]
fn run_serves_afxdp_ports_until_stopped() {
    require_kernel!();
    let q = common::SHARDS as u16 + 1;
    let lan = Veth::with_macs(q, configs::A_LAN_MAC, traffic::CLIENT_MAC);
    let wan = Veth::with_macs(q, configs::A_WAN_MAC, configs::B_WAN_MAC);
    let cfg =
        GatewayConfig::from_toml(&afxdp_config(Site::A, &lan.local, &wan.local), None, "afxdp-run").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = ipsec_gateway::app::RunOptions { quiet: true, stop: Some(stop.clone()), ..Default::default() };
    let runner = std::thread::spawn(move || ipsec_gateway::app::run(&cfg, &opts));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!runner.is_finished(), "live ports run until stopped");
    stop.store(true, Ordering::Relaxed);
    let report = runner.join().unwrap().expect("run succeeds");
    assert!(report.interrupted);
    assert_eq!(report.stats.len(), common::SHARDS + 1);
    for veth in [&lan, &wan] {
        if let Err(shown) = veth.detached() {
            panic!("XDP program still attached to {}:\n{shown}", veth.local);
        }
    }
}

/// Sends `frames` (each with whether it should produce an output frame) from the peer end of
/// `from`, in order and from one CPU (a raw socket bypassing the qdisc transmits on queue
/// `cpu % queues`, so every frame reaches the gateway on data queue 0), at most WINDOW producing
/// frames ahead of what arrived — a veth queue holds 256 frames, and overrunning it would be loss
/// these tests are not about. Collects at the peer end of `to` the frames `keep` accepts until
/// `expect` have arrived or 30 s passed.
fn exchange(
    from: &Veth,
    frames: Vec<(Vec<u8>, bool)>,
    to: &Veth,
    expect: usize,
    keep: fn(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let received = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(AtomicBool::new(false));
    let collector = {
        let (ns, dev, received, ready) = (to.ns.clone(), to.peer.clone(), received.clone(), ready.clone());
        std::thread::spawn(move || {
            enter_netns(&ns).unwrap();
            let s = RawSocket::open(&dev).unwrap();
            ready.store(true, Ordering::Release);
            let mut out = Vec::new();
            let mut buf = vec![0u8; 4096];
            let end = Instant::now() + Duration::from_secs(30);
            while out.len() < expect && Instant::now() < end {
                if let Some(n) = s.recv(&mut buf, 50).unwrap()
                    && keep(&buf[..n])
                {
                    out.push(buf[..n].to_vec());
                    received.fetch_add(1, Ordering::Release);
                }
            }
            out
        })
    };
    while !ready.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (ns, dev) = (from.ns.clone(), from.peer.clone());
    std::thread::spawn(move || {
        assert!(core_affinity::set_for_current(core_affinity::CoreId { id: 0 }), "pin to cpu 0");
        enter_netns(&ns).unwrap();
        let s = RawSocket::open(&dev).unwrap();
        const WINDOW: usize = 48;
        let end = Instant::now() + Duration::from_secs(30);
        let mut sent = 0;
        for (f, produces) in &frames {
            while sent >= received.load(Ordering::Acquire) + WINDOW && Instant::now() < end {
                std::thread::sleep(Duration::from_micros(200));
            }
            while !s.send(f).unwrap() {
                std::thread::sleep(Duration::from_micros(50));
            }
            sent += usize::from(*produces);
        }
    })
    .join()
    .unwrap();
    collector.join().unwrap()
}

/// The other direction: gateway A (mem) encrypts the demo traffic; its ESP is sent into
/// gateway B's WAN veth, and B, on AF_XDP, decrypts, checks policy and routes every inner packet
/// out of its LAN veth, byte-identical (TTL aside) and in order per flow.
#[test]
fn esp_from_gateway_a_decrypted_by_gateway_b_on_afxdp() {
    require_kernel!();
    let (flows, esp, _) = common::through_a();
    let q = common::SHARDS as u16 + 1;
    let lan = Veth::with_macs(q, configs::B_LAN_MAC, configs::B_LAN_ROUTER_MAC);
    let wan = Veth::with_macs(q, configs::B_WAN_MAC, configs::A_WAN_MAC);
    let cfg =
        GatewayConfig::from_toml(&afxdp_config(Site::B, &lan.local, &wan.local), None, "afxdp-b").unwrap();
    let (ports, _) = ports::open_afxdp(&cfg, &Steering::new(&cfg).unwrap()).expect("ports open");
    let gw =
        gateway::build_with(&cfg, ports, XdpControlTx::split, RunMode::UntilStopped).expect("gateway starts");
    let expect = esp.len();
    let frames = esp.into_iter().map(|f| (f, true)).collect();
    let out = exchange(&wan, frames, &lan, expect, |f| f.len() > 14 && f[6..12] == configs::B_LAN_MAC);
    let stats = gw.stop().expect("gateway stops");
    let mut totals = wirespeed_core::ShardCounters::default();
    for s in &stats {
        totals.accumulate(&s.counters);
    }
    assert_eq!(totals.total_drops(), 0, "B on AF_XDP: {totals}");
    let v = check::lan_frames(&flows, out.into_iter().map(Ok)).unwrap();
    assert!(v.ok(), "{v:#?}");
    assert_eq!(v.flows.len(), 12);
}
