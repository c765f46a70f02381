//! AF_XDP on a real kernel: a veth pair whose peer end is in its own network namespace; frames
//! sent there arrive through the XDP program and an AF_XDP socket, are sent back out unchanged,
//! and must come back to the peer byte for byte.
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::peer_exchange;

use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig, AttachMode, BindMode, XdpMode};
use wirespeed_core::{PerPacket, Pipeline, Port, ShardCtx, Verdict};

#[test]
fn every_frame_comes_back_byte_for_byte() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.mode = XdpMode::Auto;
    let mut port = AfXdpPort::open(cfg).unwrap();
    let shown = veth.link_show();
    eprintln!("{shown}");
    assert!(shown.contains("prog/xdp"), "program attached in driver mode: {shown}");
    let (rx, tx) = port.queue_pair(0).unwrap();
    let report = port.report().clone();
    eprintln!("{report}");
    // veth has native XDP but no zero-copy AF_XDP: driver mode, copy-mode socket, reason given.
    assert_eq!(report.attach, AttachMode::Driver);
    assert_eq!(report.queues[0].1, BindMode::Copy);
    assert!(report.queues[0].2.is_some(), "auto mode says why it is not zero-copy");

    // Sizes from the minimum frame to a full 1500-byte MTU frame.
    let frames: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| common::udp_frame(ours, theirs, 5000, i, 60 + (i as usize * 37) % 1455))
        .collect();
    let expected = frames.clone();
    let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
    let peer = std::thread::spawn(move || {
        peer_exchange(ns, dev, frames, 2000, |_| true, Duration::from_secs(5), None)
    });

    let mut pipeline = Pipeline::new(rx, tx, PerPacket(|_: &mut ShardCtx, _: &mut _| Verdict::Continue));
    let mut cx = ShardCtx::new(0);
    while !peer.is_finished() {
        if pipeline.run_once(&mut cx) == 0 {
            std::thread::yield_now();
        }
    }
    let back = peer.join().unwrap();
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    assert_eq!(back.len(), expected.len(), "echoed {} of {}; {}", back.len(), expected.len(), cx.counters);
    for (i, (b, e)) in back.iter().zip(&expected).enumerate() {
        assert_eq!(b, e, "frame {i} differs");
    }
    assert_eq!(cx.counters.rx_packets, 2000);
    assert_eq!(cx.counters.tx_packets, 2000);

    drop(pipeline);
    drop(port);
    if let Err(shown) = veth.detached() {
        panic!("program detached once port and queues are gone: ip link still shows {shown}");
    }
}

/// A packet a stage cut below an Ethernet header is not handed to the kernel (which could lose
/// track of its frame): it is left unsent and counted as a drop by the pipeline.
#[test]
fn runt_packets_are_counted_not_sent() {
    require_kernel!();
    use wirespeed_core::{DropReason, PacketBuf};
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    let frames: Vec<Vec<u8>> = (0..20u32).map(|i| common::udp_frame(ours, theirs, 5, i, 80)).collect();
    let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
    // Every other frame is cut to 10 bytes.
    let peer = std::thread::spawn(move || {
        peer_exchange(ns, dev, frames, 10, |_| true, Duration::from_secs(2), None)
    });
    let cut = PerPacket(|_: &mut ShardCtx, p: &mut wirespeed_afxdp::XdpBuf| {
        let seq = u32::from_be_bytes(p.data()[42..46].try_into().unwrap_or([0; 4]));
        if seq % 2 == 1 {
            let _ = p.set_len(10);
        }
        Verdict::Continue
    });
    let mut pipeline = Pipeline::new(rx, tx, cut);
    let mut cx = ShardCtx::new(0);
    while !peer.is_finished() {
        pipeline.run_once(&mut cx);
    }
    let back = peer.join().unwrap();
    assert_eq!(cx.counters.rx_packets, 20);
    assert!(back.iter().all(|f| f.len() >= 60), "no runt left the box");
    assert_eq!(back.len() as u64 + cx.counters.drops_of(DropReason::TxFull), 20, "{}", cx.counters);
}
