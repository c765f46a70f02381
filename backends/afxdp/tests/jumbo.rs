//! Frames larger than a UMEM frame: a jumbo MTU is refused with an error that says why (no
//! multi-buffer AF_XDP yet) and what fits; an MTU that fits a 4096-byte frame works end to end.
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::peer_exchange;
use wirespeed_afxdp::{AfXdpError, AfXdpPort, AfXdpPortConfig};
use wirespeed_core::{PerPacket, Pipeline, Port, ShardCtx, Verdict};

fn set_mtu(veth: &common::Veth, mtu: u32) {
    let m = mtu.to_string();
    common::run(&["ip", "link", "set", "dev", &veth.local, "mtu", &m]);
    common::run(&["ip", "-n", &veth.ns, "link", "set", "dev", &veth.peer, "mtu", &m]);
}

#[test]
fn a_jumbo_mtu_is_refused_with_the_reason() {
    require_kernel!();
    let veth = common::Veth::new(1);
    set_mtu(&veth, 9000);
    let e = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap_err();
    assert!(
        matches!(
            e,
            AfXdpError::MtuTooLarge { mtu: 9000, frame_size: 2048, max_mtu: 1778, max_mtu_4k: 3826, .. }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("XDP_USE_SG") && text.contains("MTU 9000"), "{text}");
    // Nothing was left attached.
    assert!(!veth.link_show().contains("xdp"), "{}", veth.link_show());
}

#[test]
fn an_mtu_that_fits_a_4k_frame_echoes_full_size_frames() {
    require_kernel!();
    let veth = common::Veth::new(1);
    set_mtu(&veth, 3000);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    assert!(matches!(
        AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap_err(),
        AfXdpError::MtuTooLarge { mtu: 3000, .. }
    ));
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.frame_size = 4096;
    let mut port = AfXdpPort::open(cfg).unwrap();
    assert_eq!(port.info().max_frame, 3014);
    let (rx, tx) = port.queue_pair(0).unwrap();
    let frames: Vec<Vec<u8>> = (0..100u32).map(|i| common::udp_frame(ours, theirs, 9, i, 3014)).collect();
    let expected = frames.clone();
    let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
    let peer = std::thread::spawn(move || {
        peer_exchange(ns, dev, frames, 100, |_| true, Duration::from_secs(5), None)
    });
    let mut pipeline = Pipeline::new(rx, tx, PerPacket(|_: &mut ShardCtx, _: &mut _| Verdict::Continue));
    let mut cx = ShardCtx::new(0);
    while !peer.is_finished() {
        pipeline.run_once(&mut cx);
    }
    let back = peer.join().unwrap();
    assert_eq!(back, expected, "{}", cx.counters);
}
