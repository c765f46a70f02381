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
