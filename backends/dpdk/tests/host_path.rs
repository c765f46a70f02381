//! The host exception path on vdevs: a `net_pcap` data port (frames injected from an `rx_pcap`
//! file, what it transmits written to one `tx_pcap` file per Tx queue) with a `net_tap`
//! exception port. IKE (UDP 500) and IKE behind the non-ESP marker (UDP 4500) reach UDP sockets
//! of the kernel on the tap interface; ESP-in-UDP, plain ESP and other traffic stay in the data
//! plane; an ARP request reaches both; what the kernel sends from the tap (its ARP reply, a UDP
//! datagram from a socket bound to the tap's address) leaves by the data port's reserved Tx
//! queue. Needs root (the tap, `ip addr`); CI runs as root. Runs in a network namespace of its own.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use wirespeed_core::rss::{RssGroup, SteeringPlan};
use wirespeed_core::{Batch, DropReason, PacketBuf, Port, RxQueue};
use wirespeed_dpdk::{HostPathConfig, Mbuf};
use wirespeed_pcap::{CaptureReader, PcapWriter};

const TAP_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x02];
const TAP_IP: [u8; 4] = [198, 18, 77, 1];
const PEER_IP: [u8; 4] = [198, 18, 77, 2];

fn ipv4_udp(proto: u8, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = TAP_MAC.to_vec();
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let l4 = if proto == 17 { 8 } else { 0 };
    let total = (20 + l4 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&PEER_IP);
    f.extend_from_slice(&TAP_IP);
    let c = wirespeed_core::backend::null::ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    if proto == 17 {
        f.extend_from_slice(&dport.to_be_bytes()); // source port = destination port (IKE)
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]); // no UDP checksum (IPv4)
    }
    f.extend_from_slice(payload);
    f
}

/// An IKE_SA_INIT-shaped IKEv2 header (RFC 7296: initiator SPI, zero responder SPI, next
/// payload SA, version 2.0, exchange 34, flags Initiator, message ID 0, length).
fn ike_sa_init() -> Vec<u8> {
    let mut h = vec![0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&[33, 0x20, 34, 0x08, 0, 0, 0, 0, 0, 0, 0, 28]);
    h
}

fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&PEER_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&TAP_IP);
    f
}

fn frames_of(path: &Path) -> Vec<Vec<u8>> {
    let Ok(mut r) = CaptureReader::open(path) else { return Vec::new() };
    let mut v = Vec::new();
    while let Some(f) = r.next_frame() {
        v.push(f.unwrap().data.to_vec());
    }
    v
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn ike_reaches_the_kernel_through_the_tap_and_the_kernel_answers_through_the_data_port() {
    let _g = serial();
    if not_root() {
        panic!("the host-path test needs root (net_tap creates a kernel interface); CI runs as root");
    }
    // The tap, its address and the UDP 500/4500 sockets live in a namespace of their own.
    if eal(&[]).is_none()
        || in_netns("ike_reaches_the_kernel_through_the_tap_and_the_kernel_answers_through_the_data_port")
    {
        return;
    }
    let dir = tempdir();
    let input = dir.join("in.pcap");
    let (out0, out1) = (dir.join("out0.pcap"), dir.join("out1.pcap"));
    let ike = ike_sa_init();
    let mut natt_ike = vec![0, 0, 0, 0];
    natt_ike.extend_from_slice(&ike);
    let esp_in_udp = ipv4_udp(17, 4500, &[0x00, 0x00, 0x10, 0x01, 0, 0, 0, 7, 0xaa, 0xbb, 0xcc, 0xdd]);
    let plain_esp = ipv4_udp(50, 0, &[0x00, 0x00, 0x10, 0x01, 0, 0, 0, 8, 0xaa, 0xbb, 0xcc, 0xdd]);
    let frames = [
        ipv4_udp(17, 500, &ike),
        esp_in_udp.clone(),
        ipv4_udp(17, 4500, &natt_ike),
        plain_esp.clone(),
        arp_request(),
    ];
    let mut w = PcapWriter::create(&input).unwrap();
    for f in &frames {
        w.write_frame(f, 0).unwrap();
    }
    w.flush().unwrap();
    drop(w);

    let iface = format!("wsh{}", std::process::id() % 100_000);
    let mac = TAP_MAC.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let data = format!(
        "net_pcap_h,rx_pcap={},tx_pcap={},tx_pcap={}",
        input.display(),
        out0.display(),
        out1.display()
    );
    let Some(mut port) = port(&[], "net_pcap_h", |c| {
        c.devargs = Some(data.clone());
        c.host = Some(HostPathConfig {
            // The tap carries the MAC the test's frames are addressed to.
            device_args: Some(format!("net_tap_{iface},iface={iface},mac={mac}")),
            ..HostPathConfig::new(iface.clone())
        });
    }) else {
        return;
    };
    // One plan for every backend: the gateway's management plan for the tap's address.
    let plan = SteeringPlan::management_default(0, RssGroup::first(1), &[Ipv4Addr::from(TAP_IP).into()]);
    port.set_host_plan(&plan).unwrap();
    assert_eq!(port.host_iface(), Some(iface.as_str()));

    // The kernel side: the tap's address, IKE's sockets.
    ip(&["addr", "add", "198.18.77.1/24", "dev", &iface]);
    ip(&["link", "set", &iface, "up"]);
    let sock = |port: u16| {
        let s = UdpSocket::bind(SocketAddrV4::new(TAP_IP.into(), port))
            .unwrap_or_else(|e| panic!("bind {}:{port}: {e}", Ipv4Addr::from(TAP_IP)));
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s
    };
    let (ike500, ike4500) = (sock(500), sock(4500));

    let (mut rx, _tx) = port.queue_pair(0).unwrap();
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut drops = 0;
    let mut batch: Batch<Mbuf> = Batch::new();
    let poll = |rx: &mut wirespeed_dpdk::DpdkRx,
                kept: &mut Vec<Vec<u8>>,
                drops: &mut u64,
                batch: &mut Batch<Mbuf>| {
        rx.rx_burst(batch);
        kept.extend(batch.iter().map(|m| m.data().to_vec()));
        batch.clear();
        if let Some((r, n)) = rx.take_drops() {
            assert_eq!(r, DropReason::from_name("host_path_full").unwrap());
            *drops += n;
        }
    };
    for _ in 0..50 {
        poll(&mut rx, &mut kept, &mut drops, &mut batch);
    }
    assert_eq!(
        kept,
        vec![esp_in_udp, plain_esp, arp_request()],
        "ESP-in-UDP, ESP and ARP stay in the data plane"
    );
    assert_eq!(drops, 0);

    let mut buf = [0u8; 512];
    let (n, from) = ike500.recv_from(&mut buf).expect("IKE on UDP 500 reaches the kernel socket");
    assert_eq!(&buf[..n], &ike[..]);
    assert_eq!(from, SocketAddrV4::new(PEER_IP.into(), 500).into());
    let (n, _) = ike4500.recv_from(&mut buf).expect("IKE behind the non-ESP marker reaches UDP 4500");
    assert_eq!(&buf[..n], &natt_ike[..], "the marker and the IKE message, as the daemon reads them");
    assert!(ike4500.recv_from(&mut buf).is_err(), "ESP-in-UDP did not reach the kernel");

    // The kernel answers the ARP request (it got a copy) and learns the peer; a datagram from
    // the daemon's socket then leaves by the data port.
    ike500.send_to(b"IKE_SA_INIT response", SocketAddrV4::new(PEER_IP.into(), 500)).unwrap();
    // The kernel writes to the tap when it sends; a few hundred milliseconds of polling drain it.
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        poll(&mut rx, &mut kept, &mut drops, &mut batch);
        std::thread::sleep(Duration::from_millis(2));
    }
    let c = port.host_counters().unwrap();
    let from_host = c.from_host;
    assert_eq!(c.to_host, 3, "IKE, NAT-T IKE and a copy of the ARP request: {c:?}");
    assert_eq!(c.copies, 1);
    assert_eq!((c.to_host_full, c.copy_no_mbuf, c.from_host_full), (0, 0, 0));
    assert!(from_host >= 2, "the kernel's ARP reply and UDP left by the data port: {c:?}");
    drop(rx);
    drop(_tx);
    drop(port); // stops the port: net_pcap closes its files

    assert!(frames_of(&out0).is_empty(), "the shard's own Tx queue carried nothing");
    let sent = frames_of(&out1);
    assert_eq!(sent.len() as u64, c.from_host, "every frame the kernel sent is in the reserved queue's file");
    let arp_reply = sent.iter().find(|f| f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2]);
    let arp_reply = arp_reply.expect("the kernel's ARP reply");
    assert_eq!(&arp_reply[22..28], &TAP_MAC, "answered with the tap's (the port's) MAC");
    assert_eq!(&arp_reply[28..32], &TAP_IP);
    let udp = sent
        .iter()
        .find(|f| {
            f.len() > 42 && f[12..14] == [0x08, 0x00] && f[23] == 17 && f[36..38] == 500u16.to_be_bytes()
        })
        .expect("the daemon's UDP datagram");
    assert_eq!(&udp[0..6], &PEER_MAC, "to the peer's MAC the kernel learned from the copied ARP");
    assert_eq!(&udp[26..30], &TAP_IP);
    assert_eq!(&udp[30..34], &PEER_IP);
    assert_eq!(&udp[42..], b"IKE_SA_INIT response");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The integrator's configuration: two queue pairs, an exception path, the default pool (its
/// count derived: a fixed 8191 failed the port's own check). Both queue pairs (and their tap
/// queues) work, and the pool is the port's own, shared by the tap.
#[test]
fn two_queues_and_a_host_path_open_with_the_default_pool() {
    let _g = serial();
    if not_root() {
        panic!("the host-path test needs root (net_tap creates a kernel interface); CI runs as root");
    }
    if eal(&[]).is_none() || in_netns("two_queues_and_a_host_path_open_with_the_default_pool") {
        return;
    }
    let iface = format!("wsq{}", std::process::id() % 100_000);
    let mut cfg = wirespeed_dpdk::DpdkPortConfig::new(eal_args(&[]), "net_null_hq");
    cfg.devargs = Some("net_null_hq".into());
    cfg.queues = 2;
    cfg.host = Some(HostPathConfig::new(iface.clone()));
    assert_eq!(cfg.mempool.mbufs, None, "the default is derived");
    let mbufs = cfg.mbufs().unwrap();
    let mut port = wirespeed_dpdk::DpdkPort::new(&cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(port.host_iface(), Some(iface.as_str()));
    let pool = port.mempool();
    assert_eq!(pool.config().mbufs, Some(mbufs));
    // The tap fills its two Rx rings from the data port's pool (net_null fills none).
    let tap_desc = cfg.host.as_ref().unwrap().desc;
    assert!(pool.in_use() >= 2 * u32::from(tap_desc), "{} in use", pool.in_use());
    assert_eq!(pool.in_use() + pool.available(), mbufs);
    let mut batch: Batch<Mbuf> = Batch::new();
    for q in 0..2 {
        let (mut rx, _tx) = port.queue_pair(q).unwrap();
        // net_null hands out a burst of (pool) mbufs; each goes back to the pool.
        assert!(rx.rx_burst(&mut batch) > 0, "queue {q} receives");
        batch.clear();
    }
}

fn not_root() -> bool {
    // The effective uid, from /proc (no libc in this test crate).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u != "0"))
        .unwrap_or(true)
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("wirespeed-dpdk-host-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
