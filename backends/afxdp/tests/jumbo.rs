//! Jumbo frames over AF_XDP multi-buffer: at MTU 9000 a veth port receives 9014-byte frames as
//! chains of descriptors (`XDP_USE_SG`), hands them to the pipeline as one contiguous buffer
//! (a jumbo slot of the UMEM), and sends them back as chains — in driver and in generic XDP
//! mode, echoed on one port and forwarded between two (a copy into the other port's UMEM), and
//! through the ESP gateway stages (an 8900-byte inner packet encrypted and decrypted). With
//! `multi_buffer = false` the jumbo MTU is refused with the reason; an MTU that fits a 4096-byte
//! frame needs no chains at all.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::peer_exchange;
use wirespeed_afxdp::peer::{RawSocket, enter_netns};
use wirespeed_afxdp::{AfXdpError, AfXdpPort, AfXdpPortConfig, AttachMode, XdpMode};
use wirespeed_core::{PacketBuf, PerPacket, Pipeline, PoolConfig, Port, ShardCtx, Verdict};
use wirespeed_test_esp::{lan_frame, reply_frame};

fn set_mtu(veth: &common::Veth, mtu: u32) {
    let m = mtu.to_string();
    common::run(&["ip", "link", "set", "dev", &veth.local, "mtu", &m]);
    common::run(&["ip", "-n", &veth.ns, "link", "set", "dev", &veth.peer, "mtu", &m]);
}

/// Jumbo and small frames, mixed.
fn mixed_frames(dst: [u8; 6], src: [u8; 6], n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let len = match i % 4 {
                0 => 9014,
                1 => 64,
                2 => 4000 + (i as usize * 37) % 5000,
                _ => 1514,
            };
            common::udp_frame(dst, src, 9, i, len)
        })
        .collect()
}

fn echo_jumbo(mode: XdpMode, attach: AttachMode) {
    let veth = common::Veth::new(1);
    set_mtu(&veth, 9000);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.mode = mode;
    // Few jumbo buffers: a slot that never came home would show as drops well before the end.
    cfg.jumbo_buffers = 128;
    let mut port = AfXdpPort::open(cfg).unwrap();
    assert_eq!(port.report().attach, attach, "{}", port.report());
    assert_eq!(port.info().max_frame, 9014);
    let (rx, tx) = port.queue_pair(0).unwrap();
    assert!(rx.multi_buffer());
    let free_jumbo = rx.free_jumbo_buffers();
    assert_eq!(free_jumbo, 128);
    let frames = mixed_frames(ours, theirs, 1000);
    let expected = frames.clone();
    let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
    let peer = std::thread::spawn(move || {
        peer_exchange(ns, dev, frames, 1000, |_| true, Duration::from_secs(20), None)
    });
    let mut jumbo_seen = 0;
    let count = PerPacket(|_: &mut ShardCtx, p: &mut wirespeed_afxdp::XdpBuf| {
        if p.is_jumbo() {
            jumbo_seen += 1;
            assert!(p.len() > 1792, "only frames larger than one UMEM frame come as chains");
        }
        Verdict::Continue
    });
    let mut pipeline = Pipeline::new(rx, tx, count);
    let mut cx = ShardCtx::new(0);
    while !peer.is_finished() {
        pipeline.run_once(&mut cx);
    }
    let back = peer.join().unwrap();
    assert_eq!(back.len(), expected.len(), "{}", cx.counters);
    assert!(back == expected, "every frame came back intact, in order");
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    drop(pipeline);
    assert_eq!(jumbo_seen, 500, "the 9014-byte and the 4000-9000-byte frames; 1514 fits a frame");
}

#[test]
fn jumbo_frames_echo_at_mtu_9000_in_driver_mode() {
    require_kernel!();
    echo_jumbo(XdpMode::Copy, AttachMode::Driver);
}

#[test]
fn jumbo_frames_echo_at_mtu_9000_in_generic_mode() {
    require_kernel!();
    echo_jumbo(XdpMode::Skb, AttachMode::Generic);
}

/// Received on one port, sent by another: the jumbo buffer is copied into a jumbo slot of the
/// sending port's UMEM and leaves as a chain there.
#[test]
fn jumbo_frames_forward_between_two_ports() {
    require_kernel!();
    let (a, b) = (common::Veth::new(1), common::Veth::new(1));
    set_mtu(&a, 9000);
    set_mtu(&b, 9000);
    let mut pa = AfXdpPort::open(AfXdpPortConfig::new(&a.local)).unwrap();
    let mut pb = AfXdpPort::open(AfXdpPortConfig::new(&b.local)).unwrap();
    let (rx, _tx_a) = pa.queue_pair(0).unwrap();
    let (_rx_b, tx) = pb.queue_pair(0).unwrap();
    let frames = mixed_frames(a.local_mac(), a.peer_mac(), 400);
    let expected = frames.clone();
    let (ns_b, dev_b) = (b.ns.clone(), b.peer.clone());
    let sink = std::thread::spawn(move || {
        enter_netns(&ns_b).unwrap();
        let s = RawSocket::open(&dev_b).unwrap();
        let mut buf = vec![0u8; 16384];
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(20);
        while got.len() < 400 && Instant::now() < end {
            if let Some(n) = s.recv(&mut buf, 50).unwrap() {
                got.push(buf[..n].to_vec());
            }
        }
        got
    });
    let (ns_a, dev_a) = (a.ns.clone(), a.peer.clone());
    let source = std::thread::spawn(move || {
        // Lets the sink open its socket first.
        std::thread::sleep(Duration::from_millis(200));
        enter_netns(&ns_a).unwrap();
        let s = RawSocket::open(&dev_a).unwrap();
        for f in &frames {
            while !s.send(f).unwrap() {
                std::thread::sleep(Duration::from_micros(50));
            }
            // Paced: the test is about chains, not about overrunning a veth queue.
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let mut pipeline = Pipeline::new(rx, tx, PerPacket(|_: &mut ShardCtx, _: &mut _| Verdict::Continue));
    let mut cx = ShardCtx::new(0);
    while !sink.is_finished() {
        pipeline.run_once(&mut cx);
    }
    source.join().unwrap();
    let got = sink.join().unwrap();
    assert_eq!(got.len(), 400, "{}", cx.counters);
    assert!(got == expected, "every frame arrived intact, in order");
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
}

/// The ESP gateway stages over jumbo frames: an 8900-byte inner packet leaves encrypted as one
/// ~8960-byte ESP packet, and the peer's jumbo ESP comes back decrypted.
#[test]
fn esp_over_jumbo_frames() {
    require_kernel!();
    let veth = common::Veth::new(1);
    set_mtu(&veth, 9000);
    let gw_mac = veth.local_mac();
    // Outbound: an 8900-byte IPv4 packet (8872 bytes of UDP payload).
    let clear = lan_frame(gw_mac, 8872, 3);
    assert_eq!(clear.len(), 14 + 8900);
    // Inbound: the peer's jumbo ESP for the LAN host comes back decrypted.
    common::esp::round_trip(
        &veth,
        PoolConfig { buffers: 8, data_room: 12 * 1024, ..PoolConfig::default() },
        clear,
        reply_frame(gw_mac, 8872, 5),
        |f| assert!(f.len() > 8950 && f.len() <= 9014, "one ESP frame of {} bytes", f.len()),
        |rb| assert!(rb.len() > 8950 && rb.len() <= 9014, "the ESP frame is jumbo too: {}", rb.len()),
    );
}

#[test]
fn a_jumbo_mtu_without_multi_buffer_is_refused_with_the_reason() {
    require_kernel!();
    let veth = common::Veth::new(1);
    set_mtu(&veth, 9000);
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.multi_buffer = false;
    let e = AfXdpPort::open(cfg).unwrap_err();
    assert!(
        matches!(
            e,
            AfXdpError::MtuTooLarge { mtu: 9000, frame_size: 2048, max_mtu: 1778, max_mtu_4k: 3826, .. }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("multi_buffer = false") && text.contains("MTU 9000"), "{text}");
    // Nothing was left attached.
    assert!(!veth.link_show().contains("xdp"), "{}", veth.link_show());

    // With multi-buffer on, an MTU whose jumbo buffer would need a chain longer than the
    // kernel sends (33 frames of 2048 bytes) is refused too; 4096-byte frames take it (16).
    set_mtu(&veth, 65000);
    let e = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap_err();
    assert!(matches!(e, AfXdpError::MtuTooLarge { mtu: 65000, frame_size: 2048, .. }), "{e:?}");
    assert!(e.to_string().contains("more than 16 frames"), "{e}");
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.frame_size = 4096;
    let mut port = AfXdpPort::open(cfg).unwrap();
    assert_eq!(port.info().max_frame, 65014);
    let (rx, _tx) = port.queue_pair(0).unwrap();
    assert!(rx.multi_buffer());
}

#[test]
fn an_mtu_that_fits_a_4k_frame_echoes_full_size_frames_without_chains() {
    require_kernel!();
    let veth = common::Veth::new(1);
    set_mtu(&veth, 3000);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.frame_size = 4096;
    let mut port = AfXdpPort::open(cfg).unwrap();
    assert_eq!(port.info().max_frame, 3014);
    let (rx, tx) = port.queue_pair(0).unwrap();
    assert!(!rx.multi_buffer(), "one frame holds every frame: no XDP_USE_SG");
    assert_eq!(rx.free_jumbo_buffers(), 0);
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
