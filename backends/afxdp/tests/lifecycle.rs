//! Attach modes, detach on every way out, and the management traffic the XDP program leaves to
//! the kernel.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{peer_exchange, run};
use wirespeed_afxdp::peer::enter_netns;
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig, AttachMode, BindMode, XdpMode};
use wirespeed_core::{PerPacket, Pipeline, Port, ShardCtx, Verdict};

#[test]
fn generic_mode_echoes_and_shows_as_xdpgeneric() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.mode = XdpMode::Skb;
    let mut port = AfXdpPort::open(cfg).unwrap();
    let shown = veth.link_show();
    assert!(shown.contains("xdpgeneric"), "generic attach: {shown}");
    let (rx, tx) = port.queue_pair(0).unwrap();
    assert_eq!(port.report().attach, AttachMode::Generic);
    assert_eq!(port.report().queues[0].1, BindMode::Copy);
    let frames: Vec<Vec<u8>> =
        (0..500u32).map(|i| common::udp_frame(ours, theirs, 7, i, 60 + i as usize)).collect();
    let expected = frames.clone();
    let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
    let peer = std::thread::spawn(move || {
        peer_exchange(ns, dev, frames, 500, |_| true, Duration::from_secs(5), None)
    });
    let mut pipeline = Pipeline::new(rx, tx, PerPacket(|_: &mut ShardCtx, _: &mut _| Verdict::Continue));
    let mut cx = ShardCtx::new(0);
    while !peer.is_finished() {
        pipeline.run_once(&mut cx);
    }
    assert_eq!(peer.join().unwrap(), expected);
    drop((pipeline, port));
    assert!(!veth.link_show().contains("xdp"), "detached: {}", veth.link_show());
}

#[test]
fn zerocopy_mode_on_veth_is_refused_with_the_reason() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.mode = XdpMode::Zerocopy;
    let mut port = AfXdpPort::open(cfg).unwrap();
    let e = port.queue_pair(0).unwrap_err().to_string();
    assert!(e.contains("zero-copy unavailable"), "{e}");
}

#[test]
fn program_detaches_when_a_shard_panics() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let local = veth.local.clone();
    let shard = std::thread::spawn(move || {
        let mut port = AfXdpPort::open(AfXdpPortConfig::new(&local)).unwrap();
        let (_rx, _tx) = port.queue_pair(0).unwrap();
        assert!(common::output(&["ip", "link", "show", "dev", &local]).contains("prog/xdp"));
        panic!("shard dies holding the port and its queue");
    });
    assert!(shard.join().is_err());
    let shown = veth.link_show();
    assert!(!shown.contains("xdp"), "unwinding detached the program: {shown}");
}

#[test]
fn queues_keep_the_program_attached_after_the_port_drops() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let q = port.queue_pair(0).unwrap();
    drop(port);
    assert!(veth.link_show().contains("prog/xdp"), "a running shard keeps its traffic");
    drop(q);
    assert!(!veth.link_show().contains("xdp"), "the last queue detaches: {}", veth.link_show());
    // And the interface can be taken again.
    let mut again = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    again.queue_pair(0).unwrap();
}

/// SSH (TCP 22) and ARP reach the kernel; TCP to another port goes to the socket.
#[test]
fn management_traffic_goes_to_the_kernel_stack() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let net = 100 + (std::process::id() % 100);
    let (ip_a, ip_b) = (format!("198.18.{net}.1"), format!("198.18.{net}.2"));
    run(&["ip", "addr", "add", &format!("{ip_a}/24"), "dev", &veth.local]);
    run(&["ip", "-n", &veth.ns, "addr", "add", &format!("{ip_b}/24"), "dev", &veth.peer]);
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    // The shard drops whatever reaches it, counting it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let shard = std::thread::spawn(move || {
        let drop_all =
            PerPacket(|_: &mut ShardCtx, _: &mut _| Verdict::Drop(wirespeed_core::DropReason::PolicyDiscard));
        let mut pipeline = Pipeline::new(rx, tx, drop_all);
        let mut cx = ShardCtx::new(0);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            pipeline.run_once(&mut cx);
            std::thread::sleep(Duration::from_micros(200));
        }
        cx.counters.rx_packets
    });
    let ns = veth.ns.clone();
    let target = ip_a.clone();
    let results = std::thread::spawn(move || {
        enter_netns(&ns).unwrap();
        let connect = |port: u16| {
            let a: SocketAddr = format!("{target}:{port}").parse().unwrap();
            TcpStream::connect_timeout(&a, Duration::from_millis(700)).map(drop)
        };
        (connect(22), connect(2222))
    })
    .join()
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = shard.join().unwrap();
    // Port 22 was answered by the kernel (refused, or accepted by a local sshd): never a
    // timeout. That also needed ARP to reach the kernel both ways.
    match &results.0 {
        Ok(()) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "port 22: {e}"),
    }
    // Port 2222 went to the socket (and was dropped there): the connection timed out.
    let e = results.1.expect_err("port 2222 must not reach the kernel");
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "port 2222: {e}");
    assert!(seen >= 1, "the SYNs to port 2222 reached the AF_XDP socket");
}
