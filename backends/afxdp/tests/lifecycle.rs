//! Attach modes, detach on every way out, and the management traffic the XDP program leaves to
//! the kernel.
#![cfg(target_os = "linux")]

mod common;

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{peer_exchange, run};
use wirespeed_afxdp::peer::enter_netns;
use wirespeed_afxdp::{
    AfXdpPort, AfXdpPortConfig, AttachMode, BindMode, KernelPass, XdpBuf, XdpMode, XdpRx, XdpTx,
};
use wirespeed_core::{DropReason, PerPacket, Pipeline, Port, ShardCtx, Verdict};

/// A stage that drops every packet, counted as `PolicyDiscard`.
fn drop_all() -> PerPacket<impl FnMut(&mut ShardCtx, &mut XdpBuf) -> Verdict> {
    PerPacket(|_: &mut ShardCtx, _: &mut XdpBuf| Verdict::Drop(DropReason::PolicyDiscard))
}

/// A shard on its own thread polling `rx`/`tx` through [`drop_all`] (with a short sleep between
/// polls) until stopped.
struct DroppingShard {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl DroppingShard {
    fn spawn(rx: XdpRx, tx: XdpTx) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut pipeline = Pipeline::new(rx, tx, drop_all());
            let mut cx = ShardCtx::new(0);
            while !stop2.load(Ordering::Relaxed) {
                pipeline.run_once(&mut cx);
                std::thread::sleep(Duration::from_micros(200));
            }
            cx.counters.rx_packets
        });
        Self { stop, thread }
    }

    /// Stops the shard; the packets it received.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// TCP connections from inside namespace `ns` to each of `targets`, `timeout` each, in order.
fn connect_from(ns: &str, targets: [(&str, u16); 3], timeout: Duration) -> [io::Result<()>; 3] {
    let ns = ns.to_string();
    let targets = targets.map(|(ip, port)| SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port));
    std::thread::spawn(move || {
        enter_netns(&ns).unwrap();
        targets.map(|a| TcpStream::connect_timeout(&a, timeout).map(drop))
    })
    .join()
    .unwrap()
}

/// The kernel answered `what` (a connection refused, or accepted by a local sshd): never a
/// timeout.
fn assert_kernel_answered(r: &io::Result<()>, what: &str) {
    match r {
        Ok(()) => {}
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{what}: {e}"),
    }
}

/// `what` went to the socket (and was dropped there): the connection timed out.
fn assert_went_to_the_socket(r: io::Result<()>, what: &str) {
    let e = r.expect_err(&format!("{what} must not reach the kernel"));
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{what}: {e}");
}

#[test]
fn generic_mode_without_need_wakeup_echoes_and_shows_as_xdpgeneric() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.mode = XdpMode::Skb;
    cfg.kernel_pass = KernelPass::none(); // the shortest program passes the verifier too
    cfg.need_wakeup = false; // and the queue kicks the kernel on every burst instead
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
    if let Err(shown) = veth.detached() {
        panic!("detached: ip link still shows {shown}");
    }
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
    if let Err(shown) = veth.detached() {
        panic!("unwinding detached the program: ip link still shows {shown}");
    }
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
    if let Err(shown) = veth.detached() {
        panic!("the last queue detaches: ip link still shows {shown}");
    }
    // And the interface can be taken again.
    let mut again = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    again.queue_pair(0).unwrap();
}

/// SSH (TCP 22) to the box's own address and ARP reach the kernel; TCP to another port, and SSH
/// to an address the box does not own (transit), go to the socket.
#[test]
fn management_traffic_goes_to_the_kernel_stack() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let net = 100 + (std::process::id() % 100);
    let (ip_a, ip_b, ip_c) =
        (format!("198.18.{net}.1"), format!("198.18.{net}.2"), format!("198.18.{net}.3"));
    // The kernel holds .1 and .3, but only .1 is declared the box's own: .3 stands for a transit
    // destination (the kernel would answer it, so a timeout proves the program kept it).
    run(&["ip", "addr", "add", &format!("{ip_a}/24"), "dev", &veth.local]);
    run(&["ip", "addr", "add", &format!("{ip_c}/24"), "dev", &veth.local]);
    run(&["ip", "-n", &veth.ns, "addr", "add", &format!("{ip_b}/24"), "dev", &veth.peer]);
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    // An IPv6 address too, so the verifier checks the IPv6 address compares as well.
    cfg.kernel_pass.own_addresses = vec![ip_a.parse().unwrap(), "2001:db8::1".parse().unwrap()];
    let mut port = AfXdpPort::open(cfg).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    // The shard drops whatever reaches it, counting it.
    let shard = DroppingShard::spawn(rx, tx);
    let [own_ssh, own_other, transit_ssh] =
        connect_from(&veth.ns, [(&ip_a, 22), (&ip_a, 2222), (&ip_c, 22)], Duration::from_millis(700));
    let seen = shard.stop();
    // Port 22 on the own address was answered by the kernel (refused, or accepted by a local
    // sshd): never a timeout. That also needed ARP to reach the kernel both ways.
    assert_kernel_answered(&own_ssh, "port 22");
    // Port 2222, and port 22 on the address not declared own, went to the socket (and were
    // dropped there): the connections timed out.
    assert_went_to_the_socket(own_other, "port 2222");
    assert_went_to_the_socket(transit_ssh, "SSH to a transit address (port 22)");
    assert!(seen >= 2, "the SYNs reached the AF_XDP socket");
}

/// veth has channels but no RSS, no ntuple filters, no device and no IRQs: the port says so
/// item by item and leaves it all to software, without failing.
#[test]
fn veth_reports_hardware_and_software_items() {
    require_kernel!();
    use wirespeed_afxdp::ethtool::Placed;
    use wirespeed_core::rss::{Reta, RssConfig, RssGroup, RssHasher, SteeringPlan, SymmetricMode};
    let veth = common::Veth::new(2);
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let ch = port.channels().expect("veth answers ETHTOOL_GCHANNELS");
    assert_eq!(ch.rx_queues(), 2, "{ch:?}");

    let rss = RssConfig { mode: SymmetricMode::Xor, ..RssConfig::default() };
    RssHasher::new(&rss).unwrap();
    let reta = Reta::round_robin(128, 2).unwrap();
    let hw = port.apply_rss(&rss, &reta);
    eprintln!("{hw}");
    for item in ["rss key", "rss indirection table", "symmetric hashing (xor)", "rss hash fields (4-tuple)"] {
        let i = hw.items.iter().find(|i| i.item == item).unwrap_or_else(|| panic!("{item} reported"));
        assert!(matches!(&i.placed, Placed::Software(_)), "{item} on veth: {:?}", i.placed);
    }
    let plan = SteeringPlan::management_default(0, RssGroup::first(2), &["192.0.2.1".parse().unwrap()]);
    let rules = port.apply_plan(&plan);
    eprintln!("{rules}");
    assert_eq!(rules.items.len(), plan.rules.len(), "one line per rule");
    assert!(rules.software_items().count() == plan.rules.len(), "veth has no ntuple filters");
    let applied = wirespeed_core::rss::RssControl::apply_steering(&mut port, &plan).unwrap();
    assert_eq!((applied.in_hardware, applied.in_software), (0, plan.rules.len()));

    let placed = port.placement(true);
    eprintln!("{placed}");
    assert_eq!(placed.numa_node, None);
    assert!(placed.irqs.is_empty());
    assert!(placed.mismatches.iter().any(|m| m.contains("no device")), "{placed}");
    assert_eq!(placed.shard_cores.len(), 2);
}

/// Frames the kernel could not hand to a slow shard (Rx ring full, no free frame) are counted
/// drops in the shard's counters, not silent loss: received + dropped = sent.
#[test]
fn kernel_drops_for_a_slow_shard_are_counted() {
    require_kernel!();
    use wirespeed_afxdp::peer::RawSocket;
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    (cfg.rx_ring, cfg.tx_ring, cfg.fill_ring, cfg.completion_ring, cfg.frames) = (256, 256, 256, 256, 512);
    let mut port = AfXdpPort::open(cfg).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    // The shard is not polling while the peer sends 1000 frames.
    let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
    std::thread::spawn(move || {
        enter_netns(&ns).unwrap();
        let s = RawSocket::open(&dev).unwrap();
        for i in 0..1000u32 {
            while !s.send(&common::udp_frame(ours, theirs, 11, i, 100)).unwrap() {
                std::thread::sleep(Duration::from_micros(50));
            }
            std::thread::sleep(Duration::from_micros(20)); // within what veth's own ring holds
        }
    })
    .join()
    .unwrap();
    let mut pipeline = Pipeline::new(rx, tx, drop_all());
    let mut cx = ShardCtx::new(0);
    for _ in 0..2048 {
        pipeline.run_once(&mut cx); // the kernel's counters are read every 1024 bursts
    }
    let lost = cx.counters.drops_of(DropReason::PoolExhausted);
    assert!(lost > 0, "{}", cx.counters);
    assert_eq!(cx.counters.rx_packets + lost, 1000, "every frame received or counted: {}", cx.counters);
}

/// Every shape of the program passes the kernel's verifier (it rejects, among other things,
/// unreachable instructions, so each combination of rules must assemble to a tight program).
#[test]
fn every_kernel_pass_shape_loads() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let v4: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
    let shapes = [
        KernelPass::none(),
        KernelPass::default(),
        KernelPass { arp: true, ..KernelPass::none() },
        KernelPass { ipv6_nd: true, ..KernelPass::none() },
        KernelPass { tcp_dst_ports: vec![22, 179, 830], ..KernelPass::none() },
        KernelPass { own_addresses: vec![v4], ..KernelPass::default() },
        KernelPass { own_addresses: vec![v6], ..KernelPass::default() },
        KernelPass { own_addresses: vec![v4, v6, "10.0.0.255".parse().unwrap()], ..KernelPass::default() },
        KernelPass { own_addresses: vec![v4], tcp_dst_ports: vec![22], ..KernelPass::none() },
        // IKE alone, with and without the NAT-T marker check, any address or own ones.
        KernelPass { ike_ports: vec![500], ..KernelPass::none() },
        KernelPass { nat_t_ports: vec![4500, 14500], ..KernelPass::none() },
        KernelPass { ike_ports: vec![500], nat_t_ports: vec![4500], ..KernelPass::none() },
        KernelPass {
            own_addresses: vec![v4],
            ike_ports: vec![500],
            nat_t_ports: vec![4500],
            ..KernelPass::none()
        },
        KernelPass {
            own_addresses: vec![v6],
            ike_ports: vec![500],
            nat_t_ports: vec![4500],
            ..KernelPass::none()
        },
        KernelPass { ipv6_nd: true, nat_t_ports: vec![4500], ..KernelPass::none() },
        KernelPass { tcp_dst_ports: vec![22], ike_ports: vec![500, 1500, 2500, 3500], ..KernelPass::none() },
    ];
    for pass in shapes {
        let mut cfg = AfXdpPortConfig::new(&veth.local);
        cfg.kernel_pass = pass.clone();
        let port = AfXdpPort::open(cfg).unwrap_or_else(|e| panic!("{pass:?}: {e}"));
        drop(port);
        if let Err(shown) = veth.detached() {
            panic!("{pass:?} left the program attached: {shown}");
        }
    }
}

/// An interface carries one port: a second open says why it cannot attach and leaves the first
/// port's program in place.
#[test]
fn a_second_port_on_the_same_interface_is_refused() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let first = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let e = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap_err();
    assert!(matches!(e, wirespeed_afxdp::AfXdpError::Attach { .. }), "{e}");
    assert!(e.to_string().contains(&veth.local), "{e}");
    assert!(veth.link_show().contains("prog/xdp"), "the first port keeps its program");
    drop(first);
    if let Err(shown) = veth.detached() {
        panic!("detached: {shown}");
    }
}

/// The IPv6 side of the kernel pass: neighbor discovery reaches the kernel (or nothing would
/// connect at all), SSH to the box's own IPv6 address is answered by the kernel, while another
/// port and SSH to an address not declared own go to the socket.
#[test]
fn ipv6_neighbor_discovery_and_ssh_go_to_the_kernel() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", veth.local), "0");
    run(&[
        "ip",
        "netns",
        "exec",
        &veth.ns,
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{}.disable_ipv6=0", veth.peer),
    ]);
    let net = format!("{:x}", 0x100 + std::process::id() % 0xf00);
    let (own, transit, peer) =
        (format!("2001:db8:{net}::1"), format!("2001:db8:{net}::3"), format!("2001:db8:{net}::2"));
    run(&["ip", "addr", "add", &format!("{own}/64"), "dev", &veth.local, "nodad"]);
    run(&["ip", "addr", "add", &format!("{transit}/64"), "dev", &veth.local, "nodad"]);
    run(&["ip", "-n", &veth.ns, "addr", "add", &format!("{peer}/64"), "dev", &veth.peer, "nodad"]);
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.kernel_pass.own_addresses = vec![own.parse().unwrap()];
    let mut port = AfXdpPort::open(cfg).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    let shard = DroppingShard::spawn(rx, tx);
    let [own_ssh, own_other, transit_ssh] =
        connect_from(&veth.ns, [(&own, 22), (&own, 2222), (&transit, 22)], Duration::from_millis(900));
    shard.stop();
    assert_kernel_answered(&own_ssh, "[own]:22");
    assert_went_to_the_socket(own_other, "[own]:2222");
    assert_went_to_the_socket(transit_ssh, "[transit]:22");
}

/// A device without native XDP (a bridge): `auto` falls back to generic XDP and says why.
#[test]
fn auto_falls_back_to_generic_when_the_driver_has_no_xdp() {
    require_kernel!();
    struct Bridge(String);
    impl Drop for Bridge {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["link", "del", &self.0]).output();
        }
    }
    let d = Bridge(format!("wxbr{}", std::process::id() % 100_000));
    run(&["ip", "link", "add", &d.0, "type", "bridge"]);
    run(&["ip", "link", "set", &d.0, "up"]);
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&d.0)).unwrap();
    port.queue_pair(0).unwrap();
    let r = port.report();
    assert_eq!(r.attach, AttachMode::Generic, "{r}");
    assert!(r.driver_mode_refused.is_some(), "the reason driver mode was refused is given: {r}");
    assert_eq!(r.queues[0].1, BindMode::Copy);
    assert!(common::output(&["ip", "link", "show", "dev", &d.0]).contains("xdpgeneric"));
    let mut cfg = AfXdpPortConfig::new(&d.0);
    cfg.mode = XdpMode::Zerocopy;
    drop(port);
    std::thread::sleep(Duration::from_millis(50));
    let e = AfXdpPort::open(cfg).map(drop).unwrap_err();
    assert!(e.to_string().contains("driver"), "zerocopy mode does not fall back: {e}");
}
