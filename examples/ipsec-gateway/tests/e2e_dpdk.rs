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
