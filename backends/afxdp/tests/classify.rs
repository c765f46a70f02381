//! The XDP program's management classification through VLAN tags and IPv6 extension headers,
//! and its IKE pass (UDP 500, UDP 4500 behind the RFC 3948 non-ESP marker) against ESP-in-UDP,
//! short and truncated UDP and fragments: frames sent from the peer either reach the AF_XDP
//! socket (data) or not (handed to the kernel). Each case is sent three times, then a fence of
//! data frames; once the fence has arrived, every earlier data frame has too, so a case not seen
//! went to the kernel.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wirespeed_afxdp::peer::{RawSocket, enter_netns};
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig, KernelPass};
use wirespeed_core::{DropReason, PacketBuf, PerPacket, Pipeline, Port, ShardCtx, Verdict};

const OWN4: [u8; 4] = [10, 9, 0, 1];
const OWN6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const FENCE: u32 = 999;

fn eth(dst: [u8; 6], src: [u8; 6], tags: &[u16], ethertype: u16) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    for (i, tpid) in tags.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes()); // VLAN id
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn tcp(dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02; // SYN
    t
}

fn ipv4_tcp(dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 9, 0, 2];
    ip.extend_from_slice(&dst);
    ip.extend(tcp(dport));
    ip
}

/// IPv6 to `dst` with extension headers `exts` (each: next-header code, length in bytes, a
/// multiple of 8) and then `proto` carrying `l4`.
fn ipv6(dst: [u8; 16], exts: &[(u8, usize)], proto: u8, l4: Vec<u8>) -> Vec<u8> {
    let codes: Vec<u8> = exts.iter().map(|e| e.0).chain([proto]).collect();
    let body: usize = exts.iter().map(|e| e.1).sum::<usize>() + l4.len();
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(body as u16).to_be_bytes());
    ip.extend_from_slice(&[codes[0], 64]);
    ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    ip.extend_from_slice(&dst);
    for (i, (_, len)) in exts.iter().enumerate() {
        let mut h = vec![0u8; *len];
        h[0] = codes[i + 1];
        h[1] = (len / 8 - 1) as u8;
        if codes[i] == 44 {
            h[1] = 0; // a fragment header has no length field
        }
        ip.extend(h);
    }
    ip.extend(l4);
    ip
}

fn icmpv6(kind: u8) -> Vec<u8> {
    let mut m = vec![0u8; 24];
    m[0] = kind;
    m
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]); // no checksum (IPv4); the kernel's to judge
    u.extend_from_slice(payload);
    u
}

/// IPv4 to `dst`, protocol `proto`, flags + fragment offset `frag`, IHL `ihl` (options NOP).
fn ipv4(dst: [u8; 4], proto: u8, frag: u16, ihl: u8, l4: Vec<u8>) -> Vec<u8> {
    let hl = usize::from(ihl) * 4;
    let total = (hl + l4.len()) as u16;
    let mut ip = vec![0x40 | ihl, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1]);
    ip.extend_from_slice(&frag.to_be_bytes());
    ip.extend_from_slice(&[64, proto, 0, 0, 10, 9, 0, 2]);
    ip.extend_from_slice(&dst);
    ip.resize(hl, 1);
    ip.extend(l4);
    ip
}

/// The IKE header's start: a zero SPI would be odd, any initiator SPI does.
const IKE_HDR: [u8; 8] = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];

/// Non-ESP marker (four zero bytes), then an IKE header.
fn marked() -> Vec<u8> {
    [[0u8; 4].as_slice(), &IKE_HDR].concat()
}

/// ESP-in-UDP: SPI 0x1000, sequence 1, some ciphertext.
fn esp_in_udp() -> Vec<u8> {
    [[0, 0, 0x10, 0], [0, 0, 0, 1], [9u8; 4]].concat()
}

#[test]
fn management_is_found_behind_vlan_tags_and_ipv6_extension_headers() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let pass = KernelPass {
        own_addresses: vec![OWN4.into(), OWN6.into()],
        tcp_dst_ports: vec![22],
        ..KernelPass::default()
    };
    let (q, ad, v4, v6, arp) = (0x8100u16, 0x88a8u16, 0x0800u16, 0x86ddu16, 0x0806u16);
    let e = |tags: &[u16], t: u16, body: Vec<u8>| [eth(ours, theirs, tags, t), body].concat();
    let (hbh, rt, dst, frag) = (0u8, 43u8, 60u8, 44u8);
    // (case, frame, goes to the socket?)
    let cases: Vec<(u32, Vec<u8>, bool)> = vec![
        (1, e(&[], v4, ipv4_tcp(OWN4, 22)), false),
        (2, e(&[q], v4, ipv4_tcp(OWN4, 22)), false),
        (3, e(&[ad, q], v4, ipv4_tcp(OWN4, 22)), false),
        (4, e(&[q], v4, ipv4_tcp(OWN4, 2222)), true),
        (5, e(&[q], v4, ipv4_tcp([10, 9, 0, 7], 22)), true),
        (6, e(&[], v6, ipv6(OWN6, &[(hbh, 8)], 6, tcp(22))), false),
        (7, e(&[], v6, ipv6(OWN6, &[(hbh, 8), (dst, 16)], 6, tcp(22))), false),
        (8, e(&[], v6, ipv6(OWN6, &[(hbh, 8)], 6, tcp(2222))), true),
        (9, e(&[], v6, ipv6(OWN6, &[(dst, 16)], 58, icmpv6(135))), false),
        (10, e(&[q], v6, ipv6(OWN6, &[], 58, icmpv6(135))), false),
        (11, e(&[], v6, ipv6(OWN6, &[(hbh, 8), (rt, 8), (dst, 8)], 6, tcp(22))), true),
        (12, e(&[q], arp, vec![0u8; 28]), false),
        (13, e(&[], v6, ipv6(OWN6, &[(frag, 8)], 6, tcp(22))), true),
        (14, e(&[ad, q], v6, ipv6(OWN6, &[(hbh, 8)], 6, tcp(22))), false),
        (15, e(&[q, q, q], v4, ipv4_tcp(OWN4, 22)), true), // a third tag is not looked through
    ];
    let seen = run_cases(&veth, pass, &cases);
    let want: BTreeSet<u32> = cases.iter().filter(|c| c.2).map(|c| c.0).chain([FENCE]).collect();
    assert_eq!(seen, want, "cases that reached the socket (the others went to the kernel)");
}

/// IKE reaches the kernel (where the IKE daemon listens) on UDP 500, and on UDP 4500 only
/// behind the non-ESP marker, over IPv4 and IPv6, tagged or not, addressed to the box; ESP,
/// ESP-in-UDP, NAT keepalives, short UDP whose padding looks like a marker, truncated headers,
/// transit IKE and fragments not for the box stay in the data plane. Fragments of UDP to the box
/// go to the kernel whole (it reassembles large IKE messages).
#[test]
fn ike_goes_to_the_kernel_and_esp_in_udp_stays() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let pass = KernelPass { own_addresses: vec![OWN4.into(), OWN6.into()], ..KernelPass::default() };
    assert_eq!((pass.ike_ports.as_slice(), pass.nat_t_ports.as_slice()), (&[500][..], &[4500][..]));
    let (q, ad, v4, v6) = (0x8100u16, 0x88a8u16, 0x0800u16, 0x86ddu16);
    let e = |tags: &[u16], t: u16, body: Vec<u8>| [eth(ours, theirs, tags, t), body].concat();
    let u4 = |dst: [u8; 4], l4: Vec<u8>| ipv4(dst, 17, 0, 5, l4);
    let (hbh, frag) = (0u8, 44u8);
    let other4 = [10, 9, 0, 7];
    let mut other6 = OWN6;
    other6[15] = 7;
    // An IPv6 fragment header: next header, reserved, offset + M, identification.
    let frag6 = |more: bool, offset: u16, l4: Vec<u8>| {
        let mut h = vec![17, 0];
        h.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 9]);
        [h, l4].concat()
    };
    // (case, frame, goes to the socket?)
    let cases: Vec<(u32, Vec<u8>, bool)> = vec![
        (1, e(&[], v4, u4(OWN4, udp(500, 500, &IKE_HDR))), false),
        (2, e(&[], v4, u4(OWN4, udp(4500, 4500, &marked()))), false),
        (3, e(&[], v4, u4(OWN4, udp(4500, 4500, &esp_in_udp()))), true),
        (4, e(&[], v4, ipv4(OWN4, 50, 0, 5, esp_in_udp())), true), // ESP
        (5, e(&[], v4, u4(OWN4, udp(4500, 4500, &[0xff]))), true), // NAT keepalive
        // Short UDP: one zero payload byte; the Ethernet padding after it is zero too, but the
        // UDP length (9) says the marker is not there.
        (6, e(&[], v4, u4(OWN4, udp(4500, 4500, &[0]))), true),
        (7, e(&[], v4, u4(OWN4, udp(4500, 4500, &[0, 0, 0]))), true),
        (8, e(&[], v4, u4(other4, udp(500, 500, &IKE_HDR))), true), // transit IKE
        (9, e(&[], v4, u4(other4, udp(4500, 4500, &marked()))), true),
        (10, e(&[q], v4, u4(OWN4, udp(500, 500, &IKE_HDR))), false),
        (11, e(&[ad, q], v4, u4(OWN4, udp(4500, 4500, &marked()))), false),
        (12, e(&[q], v4, u4(OWN4, udp(4500, 4500, &esp_in_udp()))), true),
        (13, e(&[], v4, u4(OWN4, udp(500, 4500, &esp_in_udp()))), true), // IKE is by destination
        (14, e(&[], v4, u4(OWN4, udp(4500, 501, &IKE_HDR))), true),
        // Fragments of UDP to the box, first and later: the kernel's, whole.
        (15, e(&[], v4, ipv4(OWN4, 17, 0x2000, 5, udp(500, 500, &IKE_HDR))), false),
        (16, e(&[], v4, ipv4(OWN4, 17, 0x0010, 5, vec![7u8; 16])), false),
        // ... not to the box: the data plane's, whole.
        (17, e(&[], v4, ipv4(other4, 17, 0x2000, 5, udp(500, 500, &IKE_HDR))), true),
        (18, e(&[], v4, ipv4(other4, 17, 0x0010, 5, vec![7u8; 16])), true),
        // A fragment of TCP to the box is not IKE.
        (19, e(&[], v4, ipv4(OWN4, 6, 0x0010, 5, vec![7u8; 16])), true),
        // Truncated: 60 bytes of IPv4 header, then only the source port. Were the frame's end
        // not checked, the case number after it (0x01f4....) would read as destination port 500.
        (0x01f4_0001, e(&[], v4, ipv4(OWN4, 17, 0, 15, vec![0x01, 0xf4])), true),
        (20, e(&[], v6, ipv6(OWN6, &[], 17, udp(500, 500, &IKE_HDR))), false),
        (21, e(&[], v6, ipv6(OWN6, &[], 17, udp(4500, 4500, &marked()))), false),
        (22, e(&[], v6, ipv6(OWN6, &[], 17, udp(4500, 4500, &esp_in_udp()))), true),
        (23, e(&[], v6, ipv6(OWN6, &[], 50, esp_in_udp())), true),
        (24, e(&[], v6, ipv6(OWN6, &[(hbh, 8)], 17, udp(500, 500, &IKE_HDR))), false),
        (25, e(&[q], v6, ipv6(OWN6, &[(hbh, 8)], 17, udp(4500, 4500, &marked()))), false),
        (26, e(&[], v6, ipv6(OWN6, &[], 17, udp(4500, 4500, &[0, 0, 0]))), true),
        (27, e(&[], v6, ipv6(other6, &[], 17, udp(500, 500, &IKE_HDR))), true),
        (28, e(&[], v6, ipv6(OWN6, &[], frag, frag6(true, 0, udp(500, 500, &IKE_HDR)))), false),
        (29, e(&[], v6, ipv6(OWN6, &[], frag, frag6(false, 2, vec![7u8; 16]))), false),
        (30, e(&[], v6, ipv6(other6, &[], frag, frag6(true, 0, udp(500, 500, &IKE_HDR)))), true),
        // Truncated behind a hop-by-hop header: only the source port of the UDP header is there.
        (0x01f4_0002, e(&[], v6, ipv6(OWN6, &[(hbh, 8)], 17, vec![0x01, 0xf4])), true),
    ];
    let seen = run_cases(&veth, pass, &cases);
    let want: BTreeSet<u32> = cases.iter().filter(|c| c.2).map(|c| c.0).chain([FENCE]).collect();
    assert_eq!(seen, want, "cases that reached the socket (the others went to the kernel)");
}

/// Without own addresses IKE to any destination is the kernel's, and no fragment of UDP is
/// (its followers carry no ports, so a datagram is never split between kernel and data plane).
#[test]
fn ike_to_any_address_without_own_addresses() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let e = |body: Vec<u8>| [eth(ours, theirs, &[], 0x0800), body].concat();
    let any = [198, 51, 100, 9];
    let cases: Vec<(u32, Vec<u8>, bool)> = vec![
        (1, e(ipv4(any, 17, 0, 5, udp(500, 500, &IKE_HDR))), false),
        (2, e(ipv4(any, 17, 0, 5, udp(4500, 4500, &marked()))), false),
        (3, e(ipv4(any, 17, 0, 5, udp(4500, 4500, &esp_in_udp()))), true),
        (4, e(ipv4(any, 17, 0x2000, 5, udp(500, 500, &IKE_HDR))), true),
        (5, e(ipv4(any, 17, 0x0010, 5, vec![7u8; 16])), true),
        (6, e(ipv4(any, 6, 0, 5, tcp(22))), false),
    ];
    let seen = run_cases(&veth, KernelPass::default(), &cases);
    let want: BTreeSet<u32> = cases.iter().filter(|c| c.2).map(|c| c.0).chain([FENCE]).collect();
    assert_eq!(seen, want, "cases that reached the socket (the others went to the kernel)");
    // And with the IKE pass switched off, IKE is data like any UDP.
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let e = |body: Vec<u8>| [eth(ours, theirs, &[], 0x0800), body].concat();
    let cases: Vec<(u32, Vec<u8>, bool)> = vec![
        (1, e(ipv4(any, 17, 0, 5, udp(500, 500, &IKE_HDR))), true),
        (2, e(ipv4(any, 17, 0, 5, udp(4500, 4500, &marked()))), true),
    ];
    let pass = KernelPass { ike_ports: vec![], nat_t_ports: vec![], ..KernelPass::default() };
    let seen = run_cases(&veth, pass, &cases);
    assert_eq!(seen, BTreeSet::from([1, 2, FENCE]));
}

/// Opens an AF_XDP port with `pass` on `veth`, sends every case (three times) and then the fence
/// from the peer end, and returns the case numbers that reached the socket.
fn run_cases(veth: &common::Veth, pass: KernelPass, cases: &[(u32, Vec<u8>, bool)]) -> BTreeSet<u32> {
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.kernel_pass = pass;
    let mut port = AfXdpPort::open(cfg).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    // Each frame ends with its case number.
    let mark = |mut f: Vec<u8>, id: u32| {
        f.resize(f.len().max(60), 0);
        f.extend_from_slice(&id.to_be_bytes());
        f
    };
    let fence = mark([eth(ours, theirs, &[], 0x0800), ipv4_tcp([10, 9, 0, 7], 80)].concat(), FENCE);

    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (seen2, stop2) = (seen.clone(), stop.clone());
    let shard = std::thread::spawn(move || {
        let record = PerPacket(move |_: &mut ShardCtx, p: &mut wirespeed_afxdp::XdpBuf| {
            let d = p.data();
            let id = u32::from_be_bytes(d[d.len() - 4..].try_into().unwrap());
            seen2.lock().unwrap().insert(id);
            Verdict::Drop(DropReason::PolicyDiscard)
        });
        let mut pipeline = Pipeline::new(rx, tx, record);
        let mut cx = ShardCtx::new(0);
        while !stop2.load(Ordering::Relaxed) {
            if pipeline.run_once(&mut cx) == 0 {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    });
    let frames: Vec<Vec<u8>> = cases.iter().map(|(id, f, _)| mark(f.clone(), *id)).collect();
    let ns = veth.ns.clone();
    let peer = veth.peer.clone();
    std::thread::spawn(move || {
        enter_netns(&ns).unwrap();
        let s = RawSocket::open(&peer).unwrap();
        for _ in 0..3 {
            for f in &frames {
                while !s.send(f).unwrap() {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        for _ in 0..3 {
            while !s.send(&fence).unwrap() {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    })
    .join()
    .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while !seen.lock().unwrap().contains(&FENCE) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    shard.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&FENCE), "the fence arrived");
    drop(port);
    seen
}
