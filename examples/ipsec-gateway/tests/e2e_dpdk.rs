//! The gateway on DPDK virtual devices, built from a configuration with `backend = "dpdk"`
//! ports through the same `gateway::build_with` path as every backend: `net_null` ports (every
//! shard receives, every frame is a counted drop, every mbuf returns), and `net_pcap` ports
//! carrying the demo's traffic through gateway A into ESP that gateway B (mem) decrypts. One EAL
//! per process, so this is its own test file (both tests give the same EAL arguments; the
//! `net_pcap` devices are hot-plugged from their `devargs`). Skips, saying why, only when
//! wirespeed-dpdk was built without libdpdk.
#![cfg(feature = "dpdk")]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipsec_gateway::config::{GatewayConfig, PortConfig};
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::demo::{check, traffic};
use ipsec_gateway::gateway::{self, RunMode, Steering};
use ipsec_gateway::ports;
use wirespeed_dpdk::{DpdkError, Eal, TEST_EAL_ARGS};

mod common;

const SHARDS: usize = 2;
/// The vdevs of this process's EAL (the same list in every test).
const VDEVS: [&str; 2] = ["net_null0", "net_null1"];
/// The tests share the process's EAL; one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Gateway A's demo configuration with DPDK ports on `lan` / `wan` (EAL arguments on the LAN
/// port only, as the example config does).
fn dpdk_config(vdevs: &[&str], lan: &str, wan: &str, devargs: [Option<String>; 2]) -> String {
    let mut eal: Vec<String> = TEST_EAL_ARGS.iter().map(|s| format!("{s:?}")).collect();
    eal.extend(vdevs.iter().map(|v| format!("\"--vdev={v}\"")));
    let text = configs::config(Site::A, SHARDS, None);
    let mem = "port = { backend = \"mem\" }";
    let q = SHARDS + 1;
    let dev = |d: &Option<String>| d.as_ref().map(|d| format!(", devargs = \"{d}\"")).unwrap_or_default();
    let lan = format!(
        "port = {{ backend = \"dpdk\", eal = [{}], device = \"{lan}\"{}, queues = {q}, rx_desc = 256, \
         tx_desc = 256, mempool = {{ mbufs = 8191 }} }}",
        eal.join(", "),
        dev(&devargs[0])
    );
    let wan = format!(
        "port = {{ backend = \"dpdk\", device = \"{wan}\"{}, queues = {q}, rx_desc = 256, tx_desc = 256 }}",
        dev(&devargs[1])
    );
    text.replacen(mem, &lan, 1).replacen(mem, &wan, 1)
}

#[test]
fn gateway_runs_on_net_null_ports_from_its_configuration() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = GatewayConfig::from_toml(
        &dpdk_config(&VDEVS, "net_null0", "net_null1", [None, None]),
        None,
        "dpdk-test",
    )
    .expect("valid configuration");
    assert!(matches!(cfg.wan.port, PortConfig::Dpdk(_)));
    let (ports, alloc, notes) = match ports::open_dpdk(&cfg, &Steering::new(&cfg).unwrap()) {
        Err(ports::PortOpenError::Dpdk { source: DpdkError::NotInstalled, .. }) => {
            eprintln!("SKIPPED: DPDK is not installed (wirespeed-dpdk was built without libdpdk)");
            return;
        }
        r => r.expect("ports open"),
    };
    for n in &notes {
        eprintln!("{n}");
    }
    let pool = ports.lan.mempool();
    let gw = gateway::build_with(&cfg, ports, move |tx| (tx, alloc), RunMode::UntilStopped)
        .expect("gateway starts");
    // net_null fills every Rx burst with frames; wait until every shard, the control shard
    // (the management queue) included, has received some.
    let end = Instant::now() + Duration::from_secs(10);
    while gw.stats().iter().any(|s| s.counters.rx_packets == 0) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = gw.stop().expect("gateway stops");
    assert_eq!(stats.len(), SHARDS + 1);
    for s in &stats {
        let c = &s.counters;
        assert!(c.rx_packets > 0, "shard {}: {c}", s.shard);
        // net_null's frames are not traffic the gateway forwards: every one is a counted drop.
        assert_eq!(c.tx_packets, 0, "shard {}: {c}", s.shard);
        assert!(c.total_drops() > 0 && c.total_drops() <= c.rx_packets, "shard {}: {c}", s.shard);
    }
    // The queues are gone with the shards, the ports closed: every mbuf is back in the pool.
    assert_eq!(pool.in_use(), 0, "mbufs leaked");
    assert!(Eal::get().is_some());
}

#[test]
fn demo_traffic_through_gateway_a_on_net_pcap_decrypts_at_b() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).display().to_string();
    let flows = traffic::demo_flows(None);
    traffic::write_capture(&flows, std::path::Path::new(&path("lan-in.pcap"))).unwrap();
    traffic::write_capture(&[], std::path::Path::new(&path("empty.pcap"))).unwrap();
    // Queue q of a net_pcap port reads its q-th rx_pcap and writes its q-th tx_pcap. All of the
    // LAN traffic arrives on queue 0 (a NIC without RSS); queues 1 and the management queue 2
    // read nothing.
    let q = SHARDS + 1;
    let devargs = |name: &str, rx: &[String], tx: &str| {
        let mut d = name.to_string();
        for f in rx {
            d += &format!(",rx_pcap={f}");
        }
        for i in 0..q {
            d += &format!(",tx_pcap={}", path(&format!("{tx}-{i}.pcap")));
        }
        d
    };
    let lan_rx = [path("lan-in.pcap"), path("empty.pcap"), path("empty.pcap")];
    let wan_rx = [path("empty.pcap"), path("empty.pcap"), path("empty.pcap")];
    let lan_dev = devargs("net_pcap_gwlan", &lan_rx, "lan-out");
    let wan_dev = devargs("net_pcap_gwwan", &wan_rx, "wan-out");
    let text = dpdk_config(&VDEVS, "net_pcap_gwlan", "net_pcap_gwwan", [Some(lan_dev), Some(wan_dev)]);
    let cfg = GatewayConfig::from_toml(&text, None, "dpdk-pcap-test").expect("valid configuration");
    let (ports, alloc, _) = match ports::open_dpdk(&cfg, &Steering::new(&cfg).unwrap()) {
        Err(ports::PortOpenError::Dpdk { source: DpdkError::NotInstalled, .. }) => {
            eprintln!("SKIPPED: DPDK is not installed (wirespeed-dpdk was built without libdpdk)");
            return;
        }
        r => r.expect("ports open"),
    };
    let gw = gateway::build_with(&cfg, ports, move |tx| (tx, alloc), RunMode::UntilStopped)
        .expect("gateway starts");
    let tunnelled: u64 = flows.iter().filter(|f| check::tunnelled(f)).map(|f| f.packets as u64).sum();
    let sent: u64 = flows.iter().map(|f| f.packets as u64).sum();
    let end = Instant::now() + Duration::from_secs(20);
    let seen = |gw: &gateway::Gateway| gw.stats().iter().map(|s| s.counters.rx_packets).sum::<u64>();
    while seen(&gw) < sent && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = gw.stop().expect("gateway stops"); // closes the ports: the tx captures are flushed
    let mut totals = wirespeed_core::ShardCounters::default();
    for s in &stats {
        totals.accumulate(&s.counters);
    }
    assert_eq!(totals.rx_packets, sent, "{totals}");
    assert_eq!(totals.tx_packets, tunnelled, "{totals}");
    assert_eq!(totals.drops_of(wirespeed_core::DropReason::NoRoute), 5, "{totals}");
    assert_eq!(totals.drops_of(wirespeed_core::DropReason::TtlExpired), 3, "{totals}");

    let mut esp = Vec::new();
    for i in 0..q {
        let mut r = wirespeed_pcap::CaptureReader::open(path(&format!("wan-out-{i}.pcap"))).unwrap();
        while let Some(f) = r.next_frame() {
            esp.push(f.unwrap().data.to_vec());
        }
        let mut r = wirespeed_pcap::CaptureReader::open(path(&format!("lan-out-{i}.pcap"))).unwrap();
        assert!(r.next_frame().is_none(), "nothing goes back out of A's LAN side");
    }
    assert_eq!(esp.len() as u64, tunnelled);
    let mut b = common::Rig::start(Site::B);
    for f in &esp {
        assert_eq!(f[23], 50, "ESP in IPv4");
        b.send(ipsec_gateway::config::Side::Wan, f);
    }
    b.settle();
    let out = b.take(ipsec_gateway::config::Side::Lan);
    let tb = b.stop();
    assert_eq!(tb.total_drops(), 0, "B: {tb}");
    let v = check::lan_frames(&flows, out.into_iter().map(Ok)).unwrap();
    assert!(v.ok(), "{v:#?}");
    assert_eq!(v.flows.len(), 12);
}

/// An Ethernet/IPv4 frame from the WAN router (192.0.2.1) to gateway A's WAN address, UDP with
/// source and destination port `port` (no UDP checksum) or, with `port` 0, ESP.
fn to_a_wan(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = configs::A_WAN_MAC.to_vec();
    f.extend_from_slice(&configs::B_WAN_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let (proto, l4) = if port == 0 { (50, 0) } else { (17, 8) };
    let total = (20 + l4 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 100]);
    let c = wirespeed_core::backend::null::ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    if port != 0 {
        f.extend_from_slice(&port.to_be_bytes());
        f.extend_from_slice(&port.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.extend_from_slice(payload);
    f
}

fn run_ip(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// The WAN port's exception path (`host = { iface = … }`): IKE on UDP 500 and behind the
/// non-ESP marker on UDP 4500, addressed to gateway A's WAN address, reach UDP sockets of the
/// kernel on the tap interface (which carries the WAN's configured MAC); ESP-in-UDP stays in the
/// data plane (a counted `esp_no_sa` drop: no such SA); an ARP request reaches both; the
/// kernel's answer to the IKE peer leaves by the WAN port's reserved Tx queues. Needs root
/// (net_tap, a network namespace); CI runs as root.
#[test]
fn ike_on_the_wan_port_reaches_the_kernel_through_the_host_path() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The tap, its address and the UDP 500/4500 sockets live in a network namespace of their
    // own: the test runs itself again inside one (as root; CI runs as root).
    const INNER: &str = "WIRESPEED_GW_HOST_NETNS_INNER";
    if std::env::var_os(INNER).is_none() {
        // The same EAL arguments as the other tests of this process (one EAL per process).
        let mut eal: Vec<String> = TEST_EAL_ARGS.iter().map(|s| s.to_string()).collect();
        eal.extend(VDEVS.iter().map(|v| format!("--vdev={v}")));
        if Eal::init(&eal).err() == Some(DpdkError::NotInstalled) {
            eprintln!("SKIPPED: DPDK is not installed (wirespeed-dpdk was built without libdpdk)");
            return;
        }
        let ns = format!("wsgh{}", std::process::id());
        run_ip(&["netns", "add", &ns]);
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "ike_on_the_wan_port_reaches_the_kernel_through_the_host_path", "--nocapture"])
            .env(INNER, "1")
            .output()
            .unwrap();
        let _ = std::process::Command::new("ip").args(["netns", "del", &ns]).status();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        println!("{text}");
        assert!(out.status.success(), "inner run failed");
        assert!(text.contains("1 passed"), "inner run did not run the test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).display().to_string();
    let ike: Vec<u8> = [0x11u8; 8]
        .iter()
        .copied()
        .chain([0; 8])
        .chain([33, 0x20, 34, 0x08, 0, 0, 0, 0, 0, 0, 0, 28])
        .collect();
    let natt: Vec<u8> = [0u8; 4].iter().copied().chain(ike.iter().copied()).collect();
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&configs::B_WAN_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&configs::B_WAN_MAC);
    arp.extend_from_slice(&[192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 192, 0, 2, 100]);
    // ESP: SPI, sequence number, then IV, ciphertext and ICV (long enough to be parsed).
    let esp = |spi: u8| -> Vec<u8> { [0, 0, 0x77, spi, 0, 0, 0, 1].iter().copied().chain(0..64).collect() };
    let frames =
        [to_a_wan(500, &ike), to_a_wan(4500, &esp(1)), to_a_wan(4500, &natt), to_a_wan(0, &esp(2)), arp];
    let mut w = wirespeed_pcap::PcapWriter::create(path("wan-in.pcap")).unwrap();
    for f in &frames {
        w.write_frame(f, 0).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    traffic::write_capture(&[], std::path::Path::new(&path("empty.pcap"))).unwrap();
    let q = SHARDS + 1;
    // Queue q reads its q-th rx_pcap and writes its q-th tx_pcap; the exception path adds q Tx
    // queues (what the kernel sends), so the WAN port has 2q tx_pcap files.
    let devargs = |name: &str, rx: &[String], tx: &str, ntx: usize| {
        let mut d = name.to_string();
        for f in rx {
            d += &format!(",rx_pcap={f}");
        }
        for i in 0..ntx {
            d += &format!(",tx_pcap={}", path(&format!("{tx}-{i}.pcap")));
        }
        d
    };
    let empty = vec![path("empty.pcap"); q];
    let mut wan_rx = empty.clone();
    wan_rx[0] = path("wan-in.pcap");
    let lan_dev = devargs("net_pcap_hlan", &empty, "lan-out", q);
    let wan_dev = devargs("net_pcap_hwan", &wan_rx, "wan-out", 2 * q);
    let iface = format!("wsg{}", std::process::id() % 100_000);
    let text = dpdk_config(&VDEVS, "net_pcap_hlan", "net_pcap_hwan", [Some(lan_dev), Some(wan_dev)])
        .replacen(
            "tx_desc = 256 }",
            &format!("tx_desc = 256, host = {{ iface = \"{iface}\", desc = 128 }} }}"),
            1,
        );
    let cfg = GatewayConfig::from_toml(&text, None, "dpdk-host-test").expect("valid configuration");
    let (ports, alloc, notes) = match ports::open_dpdk(&cfg, &Steering::new(&cfg).unwrap()) {
        Err(ports::PortOpenError::Dpdk { source: DpdkError::NotInstalled, .. }) => {
            eprintln!("SKIPPED: DPDK is not installed (wirespeed-dpdk was built without libdpdk)");
            return;
        }
        r => r.expect("ports open"),
    };
    let note = notes.iter().find(|n| n.contains("host path")).expect("a host-path note");
    assert!(
        note.contains(&iface) && note.contains("ike@192.0.2.100") && note.contains("arp (copy)"),
        "{note}"
    );
    // The kernel side: the WAN address on the tap, the IKE daemon's sockets.
    run_ip(&["addr", "add", "192.0.2.100/32", "dev", &iface]);
    run_ip(&["route", "add", "192.0.2.1/32", "dev", &iface]);
    let sock = |port: u16| {
        let s =
            std::net::UdpSocket::bind(("192.0.2.100", port)).unwrap_or_else(|e| panic!("bind :{port}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let (s500, s4500) = (sock(500), sock(4500));
    let host_metrics = ports::host_path_metrics(&ports).expect("the WAN port has a host path");
    let mut gw = gateway::build_with(&cfg, ports, move |tx| (tx, alloc), RunMode::UntilStopped)
        .expect("gateway starts");
    gw.add_metrics_source(host_metrics);
    let mut buf = [0u8; 256];
    let (n, from) = s500.recv_from(&mut buf).expect("IKE on UDP 500 reaches the kernel");
    assert_eq!((&buf[..n], from), (&ike[..], "192.0.2.1:500".parse().unwrap()));
    let (n, _) = s4500.recv_from(&mut buf).expect("IKE behind the non-ESP marker reaches UDP 4500");
    assert_eq!(&buf[..n], &natt[..]);
    s4500.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(s4500.recv_from(&mut buf).is_err(), "ESP-in-UDP did not reach the kernel");
    s500.send_to(b"IKE_SA_INIT response", "192.0.2.1:500").unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the shards forward it on their next polls
    gw.refresh_metrics();
    let text = gw.metrics_text();
    let value = |series: &str| -> u64 {
        let line =
            text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("{series} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let labels = format!("gateway=\"{}\",interface=\"wan\",iface=\"{iface}\"", cfg.name);
    // IKE, IKE behind the marker, and a copy of the ARP request.
    assert_eq!(
        value(&format!("wirespeed_host_path_packets_total{{{labels},direction=\"to_host\"}}")),
        3,
        "{text}"
    );
    assert_eq!(value(&format!("wirespeed_host_path_copies_total{{{labels}}}")), 1, "{text}");
    // At least the kernel's ARP reply and its UDP datagram.
    assert!(
        value(&format!("wirespeed_host_path_packets_total{{{labels},direction=\"from_host\"}}")) >= 2,
        "{text}"
    );
    for reason in ["to_host_full", "from_host_full", "copy_no_mbuf"] {
        assert_eq!(
            value(&format!("wirespeed_host_path_drops_total{{{labels},reason=\"{reason}\"}}")),
            0,
            "{text}"
        );
    }
    assert!(!text.contains("interface=\"lan\",iface="), "the LAN port has no host path");
    let stats = gw.stop().expect("gateway stops"); // closes the ports: the captures are flushed
    let mut totals = wirespeed_core::ShardCounters::default();
    for s in &stats {
        totals.accumulate(&s.counters);
    }
    // The shards saw ESP-in-UDP, ESP (both no SA) and the ARP request (answered); not the IKE.
    assert_eq!(totals.drops_of(wirespeed_core::DropReason::EspNoSa), 2, "{totals}");
    assert_eq!(totals.rx_packets, 3, "{totals}");
    let frames_of = |name: String| {
        let mut v = Vec::new();
        let mut r = wirespeed_pcap::CaptureReader::open(name).unwrap();
        while let Some(f) = r.next_frame() {
            v.push(f.unwrap().data.to_vec());
        }
        v
    };
    let from_kernel: Vec<Vec<u8>> =
        (q..2 * q).flat_map(|i| frames_of(path(&format!("wan-out-{i}.pcap")))).collect();
    let reply = from_kernel
        .iter()
        .find(|f| f.len() > 42 && f[23] == 17 && f[36..38] == 500u16.to_be_bytes())
        .expect("the kernel's UDP to the IKE peer left by the WAN port");
    assert_eq!(
        &reply[0..6],
        &configs::B_WAN_MAC,
        "to the MAC the kernel learned from the copied ARP request"
    );
    assert_eq!(&reply[6..12], &configs::A_WAN_MAC, "from the WAN's configured MAC");
    assert_eq!(&reply[42..], b"IKE_SA_INIT response");
}
