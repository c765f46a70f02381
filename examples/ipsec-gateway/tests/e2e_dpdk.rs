//! The gateway on DPDK virtual devices, built from a configuration with `backend = "dpdk"`
//! ports through the same `gateway::build_with` path as every backend. One EAL per process, so
//! this is its own test file. Skips, saying why, only when wirespeed-dpdk was built without
//! libdpdk.
#![cfg(feature = "dpdk")]

use std::time::{Duration, Instant};

use ipsec_gateway::config::{GatewayConfig, PortConfig};
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::gateway::{self, RunMode, Steering};
use ipsec_gateway::ports;
use wirespeed_dpdk::{DpdkError, Eal, TEST_EAL_ARGS};

const SHARDS: usize = 2;

/// Gateway A's demo configuration with DPDK ports on `lan` / `wan` (EAL arguments on the LAN
/// port only, as the example config does).
fn dpdk_config(vdevs: &[&str], lan: &str, wan: &str) -> String {
    let mut eal: Vec<String> = TEST_EAL_ARGS.iter().map(|s| format!("{s:?}")).collect();
    eal.extend(vdevs.iter().map(|v| format!("\"--vdev={v}\"")));
    let text = configs::config(Site::A, SHARDS, None);
    let mem = "port = { backend = \"mem\" }";
    let q = SHARDS + 1;
    let lan = format!(
        "port = {{ backend = \"dpdk\", eal = [{}], device = \"{lan}\", queues = {q}, rx_desc = 256, tx_desc = 256, \
         mempool = {{ mbufs = 8191 }} }}",
        eal.join(", ")
    );
    let wan = format!(
        "port = {{ backend = \"dpdk\", device = \"{wan}\", queues = {q}, rx_desc = 256, tx_desc = 256 }}"
    );
    text.replacen(mem, &lan, 1).replacen(mem, &wan, 1)
}

#[test]
fn gateway_runs_on_net_null_ports_from_its_configuration() {
    let vdevs = ["net_null0", "net_null1"];
    let cfg = GatewayConfig::from_toml(&dpdk_config(&vdevs, "net_null0", "net_null1"), None, "dpdk-test")
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
