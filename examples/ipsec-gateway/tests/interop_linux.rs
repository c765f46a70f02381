//! Interoperability with Linux's own IPsec (XFRM): the gateway runs on AF_XDP veths; its peer is
//! Linux in a VM (`wirespeed-test-linux-peer`: Debian's kernel under QEMU), doing tunnel-mode ESP
//! with `ip xfrm` states and policies. Root, AF_XDP, QEMU and the prepared kernel needed
//! (`bash testing/linux-peer/prepare.sh`); skipped with the reason otherwise, a failure when
//! `WIRESPEED_LINUX_PEER_REQUIRE` (or `WIRESPEED_AFXDP_REQUIRE_KERNEL`) is set.
//!
//! ```text
//!  netns lan            host (gateway, AF_XDP)              netns wslp-N (the peer's)    VM
//!  10.1.0.50  ── veth ── LAN 10.1.0.1                                                    
//!  fd00:1::50            WAN 192.0.2.100 ── veth ──── br0 ── tap0 ── eth0 192.0.2.1      
//!                                               10.2.0.50 br1 ── tap1 ── eth1 10.2.0.1   
//! ```
//!
//! Site 1 (10.1.0.0/16, fd00:1::/64) is behind the gateway, site 2 (10.2.0.0/24, fd00:2::/64)
//! behind the Linux peer; the host on site 2 is the peer namespace's `br1`. Pings go both ways
//! through the tunnel, IPv4 and IPv6 inner over IPv4 outer, with each AEAD; then iperf3 TCP both
//! ways. Afterwards the peer's `/proc/net/xfrm_stat` is all zero, its SAs counted the packets,
//! and the gateway's only drops are the ones explained below.
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipsec_gateway::app::{RunOptions, RunReport};
use ipsec_gateway::config::GatewayConfig;
use ipsec_gateway::demo::configs::{A_LAN_MAC, A_WAN_MAC};
use wirespeed_core::DropReason;
use wirespeed_test_linux_peer::{LinuxPeer, Options};

mod support;

use support::netns::Veth;

/// The MAC of the LAN host (the LAN veth's far end).
const LAN_HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x50];

/// One AEAD: the gateway's name, Linux's, and the key length (salt included).
struct Aead {
    gateway: &'static str,
    linux: &'static str,
    key_bytes: usize,
}

const AEADS: [Aead; 3] = [
    Aead { gateway: "aes128gcm", linux: "rfc4106(gcm(aes))", key_bytes: 20 },
    Aead { gateway: "chacha20poly1305", linux: "rfc7539esp(chacha20,poly1305)", key_bytes: 36 },
    Aead { gateway: "aes256gcm", linux: "rfc4106(gcm(aes))", key_bytes: 36 },
];

/// The SAs: (SPI, direction as the gateway sees it, inner family) — one per direction per
/// family, all IPv4 outer (192.0.2.100 ↔ 192.0.2.1).
const SAS: [(u32, &str, &str); 4] = [
    (0x4000, "outbound", "v4"),
    (0x5000, "inbound", "v4"),
    (0x6000, "outbound", "v6"),
    (0x7000, "inbound", "v6"),
];

fn mac_text(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// A key for SA `spi` of `aead` (distinct per SA and per round).
fn key(aead: &Aead, spi: u32, round: usize) -> String {
    (0..aead.key_bytes)
        .map(|i| format!("{:02x}", (i as u32 * 7 + spi / 0x100 + round as u32 * 31) & 0xff))
        .collect()
}

/// The gateway's configuration: one data shard, AF_XDP ports on `lan` and `wan`.
fn gateway_config(aead: &Aead, round: usize, lan: &str, wan: &str, peer_mac: [u8; 6]) -> String {
    let port = |itf: &str| {
        format!(
            "{{ backend = \"afxdp\", interface = \"{itf}\", mode = \"auto\", frames = 4096, fill_ring = 1024, \
             tx_ring = 1024, kernel_pass = {{ arp = false, ipv6_nd = false, tcp_dst_ports = [] }} }}"
        )
    };
    let mut t = format!(
        r#"
[gateway]
name = "interop"
shards = 1
stats_interval = 0

[interfaces.lan]
mac = "{lan_mac}"
addresses = ["10.1.0.1/16", "fd00:1::1/64"]
port = {lan_port}

[interfaces.wan]
mac = "{wan_mac}"
addresses = ["192.0.2.100/24"]
port = {wan_port}

[[routes]]
prefix = "10.2.0.0/16"
via = "192.0.2.1"

[[routes]]
prefix = "fd00:2::/64"
via = "fe80::5054:ff:fe1e:0"

[[routes]]
prefix = "10.1.0.0/16"

[[routes]]
prefix = "fd00:1::/64"

# Static neighbors (no dynamic neighbor resolution yet).
[[neighbors]]
ip = "192.0.2.1"
mac = "{peer_mac}"
interface = "wan"

[[neighbors]]
ip = "fe80::5054:ff:fe1e:0"
mac = "{peer_mac}"
interface = "wan"

[[neighbors]]
ip = "10.1.0.50"
mac = "{host_mac}"
interface = "lan"

[[neighbors]]
ip = "fd00:1::50"
mac = "{host_mac}"
interface = "lan"

[[policies]]
name = "v4"
src = "10.1.0.0/16"
dst = "10.2.0.0/16"
action = "protect"
sas = [0x4000]

[[policies]]
name = "v6"
src = "fd00:1::/64"
dst = "fd00:2::/64"
action = "protect"
sas = [0x6000]
"#,
        lan_mac = mac_text(A_LAN_MAC),
        wan_mac = mac_text(A_WAN_MAC),
        lan_port = port(lan),
        wan_port = port(wan),
        peer_mac = mac_text(peer_mac),
        host_mac = mac_text(LAN_HOST_MAC),
    );
    for (spi, dir, fam) in SAS {
        let k = key(aead, spi, round);
        let extra = match dir {
            "outbound" => "shard = 0".to_string(),
            _ => format!("policy = \"{fam}\""),
        };
        t += &format!(
            "\n[[sa]]\nspi = {spi:#x}\ndirection = \"{dir}\"\naead = \"{}\"\nkey = \"{k}\"\nmode = \"tunnel\"\n\
             local = \"192.0.2.100\"\nremote = \"192.0.2.1\"\n{extra}\n",
            aead.gateway
        );
    }
    t
}

/// The peer's XFRM states and policies for the same SAs (its outbound are our inbound).
fn linux_xfrm(aead: &Aead, round: usize) -> String {
    let mut s = String::from("set -e\nip xfrm state flush\nip xfrm policy flush\n");
    for (spi, dir, fam) in SAS {
        let (src, dst) =
            if dir == "outbound" { ("192.0.2.100", "192.0.2.1") } else { ("192.0.2.1", "192.0.2.100") };
        // An IPv6-inner state over IPv4 says so in its selector.
        let sel = if fam == "v6" { "sel src ::/0 dst ::/0" } else { "" };
        s += &format!(
            "ip xfrm state add src {src} dst {dst} proto esp spi {spi:#x} reqid {spi} mode tunnel \
             aead '{}' 0x{} 128 {sel}\n",
            aead.linux,
            key(aead, spi, round)
        );
    }
    let tmpl = |src: &str, dst: &str, reqid: u32| {
        format!("tmpl src {src} dst {dst} proto esp reqid {reqid} mode tunnel")
    };
    for (sel, out_reqid, in_reqid) in [
        ("src 10.2.0.0/24 dst 10.1.0.0/16", 0x5000, 0x4000),
        ("src fd00:2::/64 dst fd00:1::/64", 0x7000, 0x6000),
    ] {
        let rev = sel.replace("src ", "SRC ").replace("dst ", "src ").replace("SRC ", "dst ");
        s += &format!("ip xfrm policy add {sel} dir out {}\n", tmpl("192.0.2.1", "192.0.2.100", out_reqid));
        s += &format!("ip xfrm policy add {rev} dir fwd {}\n", tmpl("192.0.2.100", "192.0.2.1", in_reqid));
        s += &format!("ip xfrm policy add {rev} dir in {}\n", tmpl("192.0.2.100", "192.0.2.1", in_reqid));
    }
    s
}

/// Packets counted by the peer's SA `spi` (`ip -s xfrm state`).
fn sa_packets(peer: &LinuxPeer, spi: u32) -> u64 {
    let (src, dst) = if spi == 0x4000 || spi == 0x6000 {
        ("192.0.2.100", "192.0.2.1")
    } else {
        ("192.0.2.1", "192.0.2.100")
    };
    let text =
        peer.check(&format!("ip -s xfrm state get src {src} dst {dst} proto esp spi {spi:#x}")).unwrap();
    // "  lifetime current:\n    1234(bytes), 12(packets)"
    let words: Vec<&str> = text.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "current:").unwrap_or_else(|| panic!("{text}"));
    words[i + 2].strip_suffix("(packets)").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{text}"))
}

fn sh(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The gateway, running `cfg` until stopped.
struct Running {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<RunReport, ipsec_gateway::app::RunError>>,
}

impl Running {
    fn start(text: &str) -> Self {
        let cfg = GatewayConfig::from_toml(text, None, "interop").expect("valid configuration");
        let stop = Arc::new(AtomicBool::new(false));
        let opts = RunOptions { quiet: true, stop: Some(stop.clone()), ..Default::default() };
        let thread = std::thread::spawn(move || ipsec_gateway::app::run(&cfg, &opts));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!thread.is_finished(), "the gateway runs: {:?}", thread.join().map(|r| r.map(|_| ())));
        Running { stop, thread }
    }

    fn stop(self) -> RunReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap().expect("the gateway runs and stops")
    }
}

#[test]
fn linux_xfrm_peer_pings_and_tcp_through_the_tunnel_with_each_aead() {
    require_kernel!();
    let Some(peer) = LinuxPeer::for_test(&Options::default(), module_path!()) else { return };
    eprintln!("linux peer: kernel {} up in {:.1?} ({:?})", peer.kernel(), peer.boot_time(), peer.accel());
    let (eth0, eth1) = (peer.nic(0).guest.clone(), peer.nic(1).guest.clone());
    let peer_mac = peer.nic(0).mac;

    // The wires: the gateway's LAN veth to a host namespace, its WAN veth onto the VM's NIC 0.
    let lan = Veth::with_macs(2, A_LAN_MAC, LAN_HOST_MAC);
    let wan = Veth::with_macs(2, A_WAN_MAC, [0x02, 0, 0, 0, 0xff, 0x02]);
    peer.attach(0, Some(&wan.ns), &wan.peer).unwrap();
    // A veth delivers a frame on the Rx queue the sender's kernel picked for Tx; without steering
    // (a NIC's RSS and ntuple rules), frames the sender hashed onto the management queue would
    // reach the control plane, which drops data frames (not_for_control_plane). XPS sends every
    // CPU's frames on queue 0, the data shard's: it punts ARP/ND to the control plane itself.
    pin_tx_queue_0(&lan.ns, &lan.peer);
    // The LAN host's kernel leaves TCP/UDP checksums to the "hardware" of its veth (checksum
    // offload); AF_XDP hands the gateway the frame as it is, checksum unfilled. A real wire has
    // no such frames: checksums are computed in software here.
    sh(&["ip", "netns", "exec", &lan.ns, "ethtool", "-K", &lan.peer, "tx", "off"]);
    pin_tx_queue_0(peer.netns(), &wan.peer);
    let ns = lan.ns.as_str();
    let key = format!("net.ipv6.conf.{}.disable_ipv6=0", lan.peer);
    sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", &key]);
    sh(&["ip", "-n", ns, "addr", "add", "10.1.0.50/16", "dev", &lan.peer]);
    sh(&["ip", "-n", ns, "addr", "add", "fd00:1::50/64", "dev", &lan.peer, "nodad"]);
    sh(&["ip", "-n", ns, "route", "add", "default", "via", "10.1.0.1"]);
    sh(&["ip", "-n", ns, "-6", "route", "add", "default", "via", "fd00:1::1"]);
    // Site 2's host: the peer namespace itself, on NIC 1's bridge.
    peer.host(&["sysctl", "-qw", "net.ipv6.conf.br1.disable_ipv6=0"]).unwrap();
    peer.host(&["ip", "addr", "add", "10.2.0.50/24", "dev", "br1"]).unwrap();
    peer.host(&["ip", "addr", "add", "fd00:2::50/64", "dev", "br1", "nodad"]).unwrap();
    peer.host(&["ip", "route", "add", "10.1.0.0/16", "via", "10.2.0.1"]).unwrap();
    peer.host(&["ip", "-6", "route", "add", "fd00:1::/64", "via", "fd00:2::1"]).unwrap();
    // The peer: a router between its NICs.
    peer.check(&format!(
        "set -e\nsysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1\n\
         ip addr add 192.0.2.1/24 dev {eth0}\nip addr add 10.2.0.1/24 dev {eth1}\n\
         ip addr add fd00:2::1/64 dev {eth1} nodad\nip link set {eth0} up\nip link set {eth1} up\n\
         ip route add 10.1.0.0/16 via 192.0.2.100 dev {eth0}\n\
         ip -6 route add fd00:1::/64 via fe80::ff:fe00:a02 dev {eth0}\n\
         ip -6 neigh replace fe80::ff:fe00:a02 lladdr {} dev {eth0}",
        mac_text(A_WAN_MAC)
    ))
    .unwrap();

    let ping = |from_peer: bool, dst: &str| {
        let mut args = vec!["ip", "netns", "exec"];
        args.push(if from_peer { peer.netns() } else { ns });
        args.extend(["busybox", "ping", "-c", "5", "-W", "3", dst]);
        let out = std::process::Command::new(args[0]).args(&args[1..]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), text)
    };

    for (round, aead) in AEADS.iter().enumerate() {
        peer.check(&linux_xfrm(aead, round)).unwrap();
        let gw = Running::start(&gateway_config(aead, round, &lan.local, &wan.local, peer_mac));
        // The first pings also resolve the peer's and the LAN host's neighbors (the gateway
        // answers ARP and ND itself): allow one retry.
        let mut results = Vec::new();
        for (from_peer, dst) in
            [(false, "10.2.0.50"), (true, "10.1.0.50"), (false, "fd00:2::50"), (true, "fd00:1::50")]
        {
            let (mut ok, mut text) = ping(from_peer, dst);
            if !ok {
                (ok, text) = ping(from_peer, dst);
            }
            results.push((dst, ok, text));
        }
        // Bulk traffic once (under TCG the VM forwards some tens of Mbit/s): TCP both ways,
        // then UDP. iperf3's server is the site-2 host, its client the LAN host.
        let mut bulk = Vec::new();
        if round == 0 && results.iter().all(|(_, ok, _)| *ok) {
            for args in [
                &["-t", "3", "-M", MSS][..],
                &["-t", "3", "-M", MSS, "-R"],
                &["-t", "3", "-u", "-b", "20M", "-l", "1200"],
            ] {
                bulk.push((args.join(" "), iperf3(&peer, ns, args)));
            }
        }
        let report = gw.stop();
        let t = report.total();
        if results.iter().any(|(_, ok, _)| !ok) {
            for (dst, ok, text) in &results {
                eprintln!("ping {dst}: {ok}\n{text}");
            }
            eprintln!("{}", diagnostics(&peer, ns));
        }
        for (dst, ok, text) in &results {
            assert!(ok, "{}: ping {dst} failed:\n{text}\ngateway: {t}\npeer: {}", aead.gateway, peer.logs());
            assert!(text.contains(" 0% packet loss"), "{}: ping {dst}:\n{text}", aead.gateway);
        }
        for (args, r) in &bulk {
            let r =
                r.as_ref().unwrap_or_else(|e| panic!("{}: iperf3 {args}: {e}\ngateway: {t}", aead.gateway));
            eprintln!(
                "{}: iperf3 {args}: {:.1} Mbit/s received, {} of {} datagrams lost",
                aead.gateway,
                r.0 / 1e6,
                r.1,
                r.2
            );
            assert!(r.0 > 1e6, "{}: iperf3 {args}: {r:?}", aead.gateway);
        }
        for (spi, _, _) in SAS {
            assert!(sa_packets(&peer, spi) >= 10, "{}: peer SA {spi:#x} idle", aead.gateway);
        }
        let stat = peer.xfrm_stat().unwrap();
        assert!(stat.iter().all(|(_, n)| *n == 0), "{}: peer's xfrm_stat: {stat:?}", aead.gateway);
        eprintln!("{}: gateway {t}", aead.gateway);
        let unexplained: Vec<_> = t.nonzero_drops().filter(|(r, _)| !explained(*r)).collect();
        assert!(unexplained.is_empty(), "{}: unexplained gateway drops {unexplained:?}: {t}", aead.gateway);
    }
}

/// Drops the gateway may count here and why: none so far.
fn explained(_reason: DropReason) -> bool {
    false
}

/// What the peer and the namespaces saw, for a failure message.
fn diagnostics(peer: &LinuxPeer, lan_ns: &str) -> String {
    let guest = peer
        .run("ip -s xfrm state; ip xfrm policy; ip -s link; ip neigh; ip route; ip -6 route; cat /proc/net/xfrm_stat")
        .map(|o| o.stdout)
        .unwrap_or_else(|e| e.to_string());
    let host = peer
        .host(&["sh", "-c", "ip -s link; ip neigh; ip -6 neigh; bridge fdb"])
        .unwrap_or_else(|e| e.to_string());
    let lan = std::process::Command::new("ip")
        .args(["netns", "exec", lan_ns, "sh", "-c", "ip -s link; ip neigh; ip -6 neigh; ip route"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    format!("--- guest\n{guest}\n--- peer namespace\n{host}\n--- LAN namespace\n{lan}")
}

/// XPS: every CPU of the host transmits on queue 0 of `dev` (in namespace `ns`).
fn pin_tx_queue_0(ns: &str, dev: &str) {
    let script = format!(
        "n=$(nproc --all); printf %x $(( (1 << n) - 1 )) > /sys/class/net/{dev}/queues/tx-0/xps_cpus && \
         echo 0 > /sys/class/net/{dev}/queues/tx-1/xps_cpus"
    );
    sh(&["ip", "netns", "exec", ns, "sh", "-c", &script]);
}

/// TCP maximum segment size of the bulk tests: the ESP packet of a full segment (IPv4 outer: 20 +
/// 8 ESP + 8 IV + 1420 inner + at most 3 padding + 2 + 16 ICV) fits the WAN's 1500-byte MTU.
const MSS: &str = "1380";

/// iperf3 from the LAN host (namespace `lan_ns`) to the site-2 host (the peer's namespace) with
/// `args`: (bits per second received, datagrams lost, datagrams sent; 0 and 0 for TCP).
fn iperf3(peer: &LinuxPeer, lan_ns: &str, args: &[&str]) -> Result<(f64, u64, u64), String> {
    let mut server = std::process::Command::new("ip")
        .args(["netns", "exec", peer.netns(), "iperf3", "-s", "-1", "-B", "10.2.0.50"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            lan_ns,
            "timeout",
            "30",
            "iperf3",
            "-J",
            "--connect-timeout",
            "5000",
            "-c",
            "10.2.0.50",
        ])
        .args(args)
        .output()
        .map_err(|e| e.to_string());
    let _ = server.kill();
    let _ = server.wait();
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if let Some(e) = v.get("error") {
        return Err(format!("{e}"));
    }
    let end = &v["end"];
    if args.contains(&"-u") {
        let sum = &end["sum"];
        let bps = sum["bits_per_second"].as_f64().ok_or_else(|| text.to_string())?;
        Ok((bps, sum["lost_packets"].as_u64().unwrap_or(u64::MAX), sum["packets"].as_u64().unwrap_or(0)))
    } else {
        let bps = end["sum_received"]["bits_per_second"].as_f64().ok_or_else(|| text.to_string())?;
        Ok((bps, 0, 0))
    }
}
