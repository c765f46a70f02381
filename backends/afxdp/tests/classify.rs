//! The XDP program's management classification through VLAN tags and IPv6 extension headers:
//! frames sent from the peer either reach the AF_XDP socket (data) or not (handed to the
//! kernel). Each case is sent three times, then a fence of data frames; once the fence has
//! arrived, every earlier data frame has too, so a case not seen went to the kernel.
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

#[test]
fn management_is_found_behind_vlan_tags_and_ipv6_extension_headers() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.kernel_pass = KernelPass {
        own_addresses: vec![OWN4.into(), OWN6.into()],
        tcp_dst_ports: vec![22],
        ..KernelPass::default()
    };
    let mut port = AfXdpPort::open(cfg).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();

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
    // Each frame ends with its case number.
    let mark = |mut f: Vec<u8>, id: u32| {
        f.resize(f.len().max(60), 0);
        f.extend_from_slice(&id.to_be_bytes());
        f
    };
    let fence = mark(e(&[], v4, ipv4_tcp([10, 9, 0, 7], 80)), FENCE);

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
    let want: BTreeSet<u32> = cases.iter().filter(|c| c.2).map(|c| c.0).chain([FENCE]).collect();
    assert_eq!(seen, want, "cases that reached the socket (the others went to the kernel)");
}
