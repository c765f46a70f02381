//! Interoperability with Linux's own IPsec (XFRM): the gateway runs on AF_XDP veths; its peer is
//! Linux in a VM (`wirespeed-test-linux-peer`: Debian's kernel under QEMU), doing tunnel-mode ESP
//! with `ip xfrm` states and policies. Root, AF_XDP, QEMU and the prepared kernel needed
//! (`bash testing/linux-peer/prepare.sh`); skipped with the reason otherwise, a failure when
//! `WIRESPEED_LINUX_PEER_REQUIRE` (or `WIRESPEED_AFXDP_REQUIRE_KERNEL`) is set.
//!
//! ```text
//!  netns lan                 host: gateway (AF_XDP)      netns wslp-N (the peer's)     VM
//!  10.1.0.50, fd00:1::50 ── veth ── LAN 10.1.0.1, fd00:1::1
//!                                   WAN 192.0.2.100,  ── veth ── br0 ── tap0 ── eth0 192.0.2.1,
//!                                       2001:db8::100                            2001:db8::1
//!                           site-2 host: br1 10.2.0.50, ── tap1 ── eth1 10.2.0.1, fd00:2::1
//!                                        fd00:2::50
//! ```
//!
//! Site 1 (10.1.0.0/16, fd00:1::/64) is behind the gateway, site 2 (10.2.0.0/24, fd00:2::/64)
//! behind the Linux peer; the host on site 2 is the peer namespace's `br1`. Pings go both ways
//! through the tunnel, IPv4 and IPv6 inner, with each AEAD over IPv4, then over IPv6 outer and
//! with NAT-T (UDP 4500), and with extended sequence numbers (ESN, ChaCha20-Poly1305); iperf3
//! TCP both ways and UDP (AES-128-GCM). Then both directions are
//! rekeyed (`ctl` on the gateway, `ip xfrm` on the peer, make-before-break) under UDP both ways:
//! no datagram lost. After each part the peer's `/proc/net/xfrm_stat` is all zero, its SAs
//! counted the packets, and the gateway dropped nothing. Round 0 also sends DF-clear UDP too big
//! for the tunnel (fragmented by the gateway before encryption, reassembled by the site-2 host)
//! and IPv6 inner too big for it (ICMPv6 Packet Too Big; UDP, iperf3 `-6` TCP both ways). Last,
//! the gateway runs two data shards on three-queue veths (pings, iperf3 with 8 streams both ways,
//! UDP). No neighbor is configured: the gateway
//! resolves the peer and the LAN host by ARP / ND. TCP runs with the hosts' own MSS over
//! 1500-byte MTUs everywhere: each sender learns the tunnel's inner MTU (1446) from the ICMP
//! Fragmentation Needed of the tunnel's entry, the gateway's (its outbound SAs have `mtu = 1500`)
//! or Linux's.
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipsec_gateway::app::{RunOptions, RunReport};
use ipsec_gateway::config::GatewayConfig;
use ipsec_gateway::demo::configs::{A_LAN_MAC, A_WAN_MAC};
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
/// family.
const SAS: [(u32, &str, &str); 4] = [
    (0x4000, "outbound", "v4"),
    (0x5000, "inbound", "v4"),
    (0x6000, "outbound", "v6"),
    (0x7000, "inbound", "v6"),
];

/// The tunnel's outer addresses (the gateway's, the peer's) and whether it is UDP-encapsulated
/// (NAT-T, RFC 3948, port 4500 both ends).
#[derive(Clone, Copy, Debug)]
struct Outer {
    gateway: &'static str,
    peer: &'static str,
    nat_t: bool,
}

const OUTER_V4: Outer = Outer { gateway: "192.0.2.100", peer: "192.0.2.1", nat_t: false };
const OUTER_V6: Outer = Outer { gateway: "2001:db8::100", peer: "2001:db8::1", nat_t: false };
const OUTER_NAT_T: Outer = Outer { nat_t: true, ..OUTER_V4 };

/// The rounds: an AEAD (index into AEADS) and the outer tunnel. Each AEAD over IPv4, then
/// IPv6 outer and NAT-T.
const ROUNDS: [(usize, Outer); 5] =
    [(0, OUTER_V4), (1, OUTER_V4), (2, OUTER_V4), (0, OUTER_V6), (1, OUTER_NAT_T)];

/// The round (index into ROUNDS) whose SAs use extended sequence numbers (RFC 4303 §2.2.1) on
/// both sides: the high 32 bits are in the AEAD's associated data (RFC 4106 §5), so an ESN
/// mismatch fails every packet's ICV.
const ESN_ROUND: usize = 1;

/// The outer MTU of the gateway's outbound SAs: the WAN's.
const WAN_MTU: u16 = 1500;

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
fn gateway_config(aead: &Aead, round: usize, outer: Outer, lan: &str, wan: &str) -> String {
    let esn = round == ESN_ROUND;
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
addresses = ["192.0.2.100/24", "2001:db8::100/64"]
port = {wan_port}

[[routes]]
prefix = "10.2.0.0/16"
via = "192.0.2.1"

[[routes]]
prefix = "fd00:2::/64"
via = "2001:db8::1"

[[routes]]
prefix = "10.1.0.0/16"

[[routes]]
prefix = "fd00:1::/64"

# No [[neighbors]]: every next hop is on a connected subnet, resolved by ARP / ND (the peer's
# 192.0.2.1 and 2001:db8::1 on the WAN, the LAN host on the LAN).

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
    );
    for (spi, dir, fam) in SAS {
        let k = key(aead, spi, round);
        // Outbound: packets that do not fit the WAN after ESP are answered with ICMP
        // Fragmentation Needed / Packet Too Big (path MTU discovery through the tunnel).
        let mut extra = match dir {
            "outbound" => format!("shard = 0\nmtu = {WAN_MTU}"),
            _ => format!("policy = \"{fam}\""),
        };
        if esn {
            extra += "\nesn = true\nreplay_window = 128";
        }
        if outer.nat_t {
            extra += "\nnat_t_port = 4500";
        }
        t += &format!(
            "\n[[sa]]\nspi = {spi:#x}\ndirection = \"{dir}\"\naead = \"{}\"\nkey = \"{k}\"\nmode = \"tunnel\"\n\
             local = \"{}\"\nremote = \"{}\"\n{extra}\n",
            aead.gateway, outer.gateway, outer.peer
        );
    }
    t
}

/// The peer's XFRM states and policies for the same SAs (its outbound are our inbound).
fn linux_xfrm(aead: &Aead, round: usize, outer: Outer) -> String {
    let esn = if round == ESN_ROUND { " replay-window 128 flag esn" } else { "" };
    let mut s = String::from("set -e\nip xfrm state flush\nip xfrm policy flush\n");
    for (spi, dir, fam) in SAS {
        let (src, dst) =
            if dir == "outbound" { (outer.gateway, outer.peer) } else { (outer.peer, outer.gateway) };
        // The inner family, in the selector (it may differ from the outer one).
        let mut sel =
            if fam == "v6" { "sel src ::/0 dst ::/0" } else { "sel src 0.0.0.0/0 dst 0.0.0.0/0" }.to_string();
        if outer.nat_t {
            sel += " encap espinudp 4500 4500 0.0.0.0";
        }
        s += &format!(
            "ip xfrm state add src {src} dst {dst} proto esp spi {spi:#x} reqid {spi} mode tunnel \
             aead '{}' 0x{} 128{esn} {sel}\n",
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
        s += &format!("ip xfrm policy add {sel} dir out {}\n", tmpl(outer.peer, outer.gateway, out_reqid));
        s += &format!("ip xfrm policy add {rev} dir fwd {}\n", tmpl(outer.gateway, outer.peer, in_reqid));
        s += &format!("ip xfrm policy add {rev} dir in {}\n", tmpl(outer.gateway, outer.peer, in_reqid));
    }
    s
}

/// Packets counted by the peer's SA `spi` (`ip -s xfrm state`).
fn sa_packets(peer: &LinuxPeer, spi: u32, outer: Outer) -> u64 {
    // 0x4xxx and 0x6xxx: the gateway's outbound, the peer's inbound.
    let (src, dst) =
        if matches!(spi >> 12, 4 | 6) { (outer.gateway, outer.peer) } else { (outer.peer, outer.gateway) };
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
fn linux_xfrm_peer_pings_carries_tcp_udp_and_rekeys_without_loss() {
    require_kernel!();
    let Some(peer) = LinuxPeer::for_test(&Options::default(), module_path!()) else { return };
    eprintln!("linux peer: kernel {} up in {:.1?} ({:?})", peer.kernel(), peer.boot_time(), peer.accel());
    let (eth0, eth1) = (peer.nic(0).guest.clone(), peer.nic(1).guest.clone());

    // The wires: the gateway's LAN veth to a host namespace, its WAN veth onto the VM's NIC 0.
    let lan = Veth::with_macs(2, A_LAN_MAC, LAN_HOST_MAC);
    let wan = Veth::with_macs(2, A_WAN_MAC, [0x02, 0, 0, 0, 0xff, 0x02]);
    peer.attach(0, Some(&wan.ns), &wan.peer).unwrap();
    // A veth delivers a frame on the Rx queue the sender's kernel picked for Tx (no RSS, no
    // ntuple rules): data frames also arrive on the management queue, and the control shard
    // hands them to the data shard (counted as handed off).
    let ns = lan.ns.as_str();
    // Counted from before the LAN host's IPv6 comes up (below: its MLD reports).
    let mld_before = mld_reports(ns);
    lan_host_up(&lan);
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
         ip addr add 2001:db8::1/64 dev {eth0} nodad\n\
         ip addr add fd00:2::1/64 dev {eth1} nodad\nip link set {eth0} up\nip link set {eth1} up\n\
         ip route add 10.1.0.0/16 via 192.0.2.100 dev {eth0}\n\
         ip -6 route add fd00:1::/64 via 2001:db8::100 dev {eth0}"
    ))
    .unwrap();

    // Packet Too Big that Linux, as the tunnel's entry for the site-2 host's IPv6, sent it: XFRM
    // counts each such refusal as `XfrmOutStateModeError` (the size check fails in the outer
    // mode's output, xfrm6_prepare_output, after it sent the ICMPv6 error), so that counter may
    // grow by as many, and only by as many.
    let mut linux_ptb6 = 0u64;
    for (round, &(a, outer)) in ROUNDS.iter().enumerate() {
        let aead = &AEADS[a];
        if outer.nat_t {
            // ESP-in-UDP reaches XFRM through a UDP socket marked for it (an IKE daemon's).
            peer.check(
                "setsid python3 -c 'import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
                 s.setsockopt(socket.IPPROTO_UDP, 100, 2); s.bind((\"0.0.0.0\", 4500)); time.sleep(3600)' \
                 </dev/null >/dev/null 2>&1 &\nsleep 1",
            )
            .unwrap();
        }
        peer.check(&linux_xfrm(aead, round, outer)).unwrap();
        let gw = Running::start(&gateway_config(aead, round, outer, &lan.local, &wan.local));
        let udp_before = udp_in_datagrams(&peer);
        let results = pings_both_ways(&peer, ns);
        // Bulk traffic once (under TCG the VM forwards some tens of Mbit/s): TCP both ways,
        // then UDP. iperf3's server is the site-2 host, its client the LAN host. TCP runs with
        // the hosts' own MSS (1460: 1500-byte MTUs everywhere) and DF set: full segments do not
        // fit the tunnel, and each sender learns the path MTU from the ICMP Fragmentation Needed
        // of the tunnel's entry (the gateway's, or the Linux peer's for -R).
        let mut bulk = Vec::new();
        // Per TCP run, its sender's ICMP Destination Unreachable received and path MTU learned.
        let mut pmtud = Vec::new();
        // Round 0 also: UDP datagrams with DF clear too big for the tunnel (the gateway
        // fragments them before encryption, the site-2 host reassembles), and IPv6 inner too
        // big for it (ICMPv6 Packet Too Big from the gateway, then the host fragments to the
        // path MTU; TCP over IPv6 both ways).
        let mut big = None;
        if round == 0 && results.iter().all(|(_, ok, _)| *ok) {
            flush_route_caches([ns, peer.netns()], &[V4, V6]);
            let reasm = reasm_oks(peer.netns());
            // 1472 bytes: one 1500-byte IPv4 packet, split in two by the gateway; 3000 and
            // 8000 bytes: fragmented by the LAN host to 1500 bytes, each fragment split again.
            let v4 = udp_echo(peer.netns(), ns, "10.2.0.50", &[1472, 3000, 8000]);
            let reasm = reasm_oks(peer.netns()) - reasm;
            let v6 = udp_echo(peer.netns(), ns, "fd00:2::50", &[1452, 3000]);
            let mtu6 = route_mtu(ns, "fd00:2::50");
            let mut tcp6 = Vec::new();
            for args in [&["-6", "-t", "3"][..], &["-6", "-t", "3", "-R"]] {
                flush_route_caches([ns, peer.netns()], &[V6]);
                let sender = if args.contains(&"-R") { peer.netns() } else { ns };
                let dst = if args.contains(&"-R") { "fd00:1::50" } else { "fd00:2::50" };
                let ptb = icmp6_in_pkt_too_bigs(sender);
                let r = iperf3_at(peer.netns(), ns, "fd00:2::50", args);
                let ptb = icmp6_in_pkt_too_bigs(sender) - ptb;
                if args.contains(&"-R") {
                    linux_ptb6 += ptb;
                }
                tcp6.push((args.join(" "), r, route_mtu(sender, dst)));
            }
            big = Some((v4, reasm, v6, mtu6, tcp6));
            for args in [&["-t", "3"][..], &["-t", "3", "-R"], &["-t", "3", "-u", "-b", "10M", "-l", "1200"]]
            {
                // The sender: the LAN host, or the site-2 host with -R.
                let (sender, dst) =
                    if args.contains(&"-R") { (peer.netns(), "10.1.0.50") } else { (ns, "10.2.0.50") };
                // Both hosts forget what they learned (a learned path MTU also lowers the MSS
                // they announce, which would spare the other direction its discovery).
                flush_route_caches([ns, peer.netns()], &[V4]);
                let before = icmp_in_dest_unreachs(sender);
                bulk.push((args.join(" "), iperf3(&peer, ns, args)));
                if !args.contains(&"-u") {
                    pmtud.push((
                        args.join(" "),
                        icmp_in_dest_unreachs(sender) - before,
                        route_mtu(sender, dst),
                    ));
                }
            }
        }
        let report = gw.stop();
        let t = report.total();
        let stages = ipsec_gateway::stagestats::StageCounters::sum(&report.stages);
        eprintln!("{} {outer:?}: gateway stages: {stages}", aead.gateway);
        if let Some((v4, reasm, v6, mtu6, tcp6)) = &big {
            let v4 = v4.as_ref().unwrap_or_else(|e| {
                panic!(
                    "DF-clear UDP through the tunnel: {e}
gateway: {t}"
                )
            });
            eprintln!("DF clear UDP echo (size, attempts): {v4:?}; the site-2 host reassembled {reasm}");
            assert!(v4.iter().all(|&(_, tries)| tries == 1), "DF-clear datagrams lost: {v4:?}; {stages}");
            assert!(*reasm >= 3, "the site-2 host reassembled {reasm} datagrams");
            // At the tunnel's inner MTU of 1446 (1424 bytes of payload per fragment): 1472 is
            // one 1500-byte packet, 2 fragments; 3000 leaves the LAN host as 1500 + 1500 + 68
            // bytes, the first two split in 2 each; 8000 as five of 1500 bytes (2 each) and
            // one of 628.
            assert_eq!(stages.fragmented, 1 + 2 + 5, "{stages}");
            assert_eq!(stages.fragments, 2 + 4 + 10, "{stages}");
            assert_eq!(stages.frag_failed, 0, "{stages}");
            let v6 = v6.as_ref().unwrap_or_else(|e| {
                panic!(
                    "IPv6 UDP through the tunnel: {e}
gateway: {t}"
                )
            });
            eprintln!("IPv6 UDP echo (size, attempts): {v6:?}; the LAN host's path MTU {mtu6:?}");
            assert_eq!(
                mtu6.as_deref(),
                Some("1446"),
                "the LAN host learned the tunnel's MTU from Packet Too Big"
            );
            assert!(stages.icmp_too_big >= 1, "{stages}");
            for (args, r, mtu) in tcp6 {
                let r = r.as_ref().unwrap_or_else(|e| {
                    panic!(
                        "iperf3 {args}: {e}
gateway: {t}"
                    )
                });
                eprintln!(
                    "{}: iperf3 {args}: {:.1} Mbit/s received, sender's path MTU {mtu:?} (Linux's Packet Too Big to the -R sender so far: {linux_ptb6})",
                    aead.gateway,
                    r.0 / 1e6
                );
                assert!(r.0 > 1e6, "iperf3 {args}: {r:?}");
                assert_eq!(mtu.as_deref(), Some("1446"), "iperf3 {args}: the sender's path MTU");
            }
        }
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
        check_bulk(aead.gateway, &bulk, &t, Loss::Allowed);
        for (args, unreach, mtu) in &pmtud {
            eprintln!("iperf3 {args}: the sender received {unreach} ICMP unreachable, path MTU {mtu:?}");
            assert!(
                *unreach >= 1,
                "iperf3 {args}: the sender received no ICMP Fragmentation Needed; gateway: {t}"
            );
            // Either tunnel entry (the gateway, or Linux's XFRM for -R) reports the same inner
            // MTU: an AES-GCM tunnel over IPv4 in a 1500-byte WAN carries inner packets up to
            // 1500 - 20 (outer IP) - 8 (ESP) - 8 (IV) - 16 (ICV) rounded down to a multiple of 4,
            // less 2 (pad length, next header) = 1446 bytes.
            assert_eq!(mtu.as_deref(), Some("1446"), "iperf3 {args}: the sender's path MTU");
        }
        if outer.nat_t {
            // The ESP the peer received came in UDP (counted by its UDP layer, then decrypted).
            let udp = udp_in_datagrams(&peer) - udp_before;
            assert!(
                udp >= 20,
                "{}: {udp} UDP datagrams received by the peer during NAT-T pings",
                aead.gateway
            );
        }
        for (spi, _, _) in SAS {
            assert!(
                sa_packets(&peer, spi, outer) >= 10,
                "{}: peer SA {spi:#x} idle ({outer:?})",
                aead.gateway
            );
        }
        if round == ESN_ROUND {
            // Linux took the flag: each of its four states prints `flag ... esn` and carries the
            // ESN replay state.
            let states = peer.check("ip xfrm state").unwrap();
            let esn =
                states.lines().filter(|l| l.contains("flag") && l.split_whitespace().any(|w| w == "esn"));
            assert_eq!(esn.count(), SAS.len(), "{}: the peer's states lack ESN:\n{states}", aead.gateway);
        }
        xfrm_stat_clean(&peer, aead.gateway, linux_ptb6);
        eprintln!("{} {outer:?}: gateway {t}", aead.gateway);
        // The LAN host's MLD reports (hop limit 1, to ff02::16), sent when its IPv6 came up,
        // may reach the gateway in the first round, which routes no multicast: counted as
        // `unsupported` (a never-forwarded destination; no ICMP error about multicast). Nothing
        // else is dropped.
        let mld = mld_reports(ns) - mld_before;
        let unforwardable = t.drops_of(wirespeed_core::DropReason::Unsupported);
        assert!(
            unforwardable <= mld,
            "{} {outer:?}: {unforwardable} unforwardable, {mld} MLD reports: {t}",
            aead.gateway
        );
        assert_eq!(t.total_drops() - unforwardable, 0, "{} {outer:?}: gateway drops: {t}", aead.gateway);
    }

    // Rekey both directions of the IPv4 tunnel under UDP traffic both ways, make-before-break on
    // both sides: the receiver installs the new SA first, then the sender switches; no datagram
    // may be lost.
    let aead = &AEADS[0];
    let round = ROUNDS.len();
    peer.check(&linux_xfrm(aead, round, OUTER_V4)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let text = gateway_config(aead, round, OUTER_V4, &lan.local, &wan.local).replace(
        "stats_interval = 0",
        &format!("stats_interval = 0\ncontrol_socket = \"{}\"", sock.display()),
    );
    let gw = Running::start(&text);
    let (ok, text) = ping(peer.netns(), ns, false, "10.2.0.50");
    assert!(ok, "before the rekey: {text}");
    let traffic: Vec<_> = [&["-p", "5202"][..], &["-p", "5203", "-R"]]
        .into_iter()
        .map(|args| {
            let (peer_ns, lan_ns) = (peer.netns().to_string(), ns.to_string());
            let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            args.extend(["-t", "10", "-u", "-b", "2M", "-l", "1000"].map(String::from));
            std::thread::spawn(move || iperf3_in(&peer_ns, &lan_ns, &args))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let ctl = |line: String| {
        let reply = ipsec_gateway::ctl::request(&sock, std::slice::from_ref(&line)).unwrap();
        assert!(reply[0].starts_with("ok"), "{line}: {reply:?}");
        eprintln!("ctl: {line} -> {}", reply[0]);
    };
    let sa = |spi: u32, dir: &str, extra: &str| {
        format!(
            "{{ spi = {spi:#x}, direction = \"{dir}\", aead = \"{}\", key = \"{}\", mode = \"tunnel\", \
             local = \"192.0.2.100\", remote = \"192.0.2.1\", {extra} }}",
            aead.gateway,
            key(aead, spi, round)
        )
    };
    let state = |src: &str, dst: &str, spi: u32, reqid: u32| {
        format!(
            "ip xfrm state add src {src} dst {dst} proto esp spi {spi:#x} reqid {reqid} mode tunnel aead '{}' 0x{} 128",
            aead.linux,
            key(aead, spi, round)
        )
    };
    // Gateway → peer: the peer accepts 0x4100 next to 0x4000, the gateway switches.
    peer.check(&state("192.0.2.100", "192.0.2.1", 0x4100, 0x4000)).unwrap();
    ctl(format!("sa rekey 0x4000 {}", sa(0x4100, "outbound", "shard = 0")));
    // Peer → gateway: the gateway accepts 0x5100 next to 0x5000 (kept 30 s), the peer switches
    // (its newest state for the policy's reqid; the old one deleted).
    ctl(format!("sa rekey 0x5000 {} grace=30", sa(0x5100, "inbound", "policy = \"v4\"")));
    peer.check(&state("192.0.2.1", "192.0.2.100", 0x5100, 0x5000)).unwrap();
    peer.check("ip xfrm state delete src 192.0.2.1 dst 192.0.2.100 proto esp spi 0x5000").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    // The peer forgets the old inbound SA once nothing uses it.
    peer.check("ip xfrm state delete src 192.0.2.100 dst 192.0.2.1 proto esp spi 0x4000").unwrap();
    let results: Vec<_> = traffic.into_iter().map(|t| t.join().unwrap()).collect();
    let report = gw.stop();
    let t = report.total();
    for r in &results {
        let (bps, lost, sent) =
            r.as_ref().unwrap_or_else(|e| panic!("iperf3 during the rekey: {e}\ngateway: {t}"));
        eprintln!("rekey: UDP {:.1} Mbit/s, {lost} of {sent} datagrams lost", bps / 1e6);
        assert!(*sent > 1000, "{r:?}");
        assert_eq!(*lost, 0, "datagrams lost during the rekey; gateway: {t}");
    }
    for spi in [0x4100, 0x5100] {
        assert!(sa_packets(&peer, spi, OUTER_V4) >= 100, "peer SA {spi:#x} idle after the rekey");
    }
    xfrm_stat_clean(&peer, "rekey", linux_ptb6);
    assert_only_unforwardable_drops(&t, "rekey");

    two_data_shards(&peer, [&lan, &wan], linux_ptb6);
}

/// Two data shards: new LAN and WAN veths with three queues each (two data queues and the
/// management queue), replacing the one-shard ones. A veth delivers each frame on the queue its
/// sender's kernel picked, so flows land on both data queues and on the management queue (handed
/// to a data shard by the software RSS). Outbound SAs belong to one shard each, so each policy
/// has one per shard (0x4000 / 0x4001, 0x6000 / 0x6001), which Linux accepts under the same
/// reqid. Pings both ways, iperf3 TCP both ways and UDP with 8 parallel streams: both data
/// shards carry traffic, the gateway drops nothing, the peer's `xfrm_stat` stays clean.
fn two_data_shards(peer: &LinuxPeer, old: [&Veth; 2], linux_ptb6: u64) {
    for v in old {
        sh(&["ip", "link", "del", &v.local]);
    }
    let lan = Veth::with_macs(3, A_LAN_MAC, LAN_HOST_MAC);
    let wan = Veth::with_macs(3, A_WAN_MAC, [0x02, 0, 0, 0, 0xff, 0x03]);
    peer.attach(0, Some(&wan.ns), &wan.peer).unwrap();
    let ns = lan.ns.as_str();
    lan_host_up(&lan);

    let aead = &AEADS[0];
    let round = ROUNDS.len() + 1;
    let mut text = gateway_config(aead, round, OUTER_V4, &lan.local, &wan.local)
        .replace("shards = 1\n", "shards = 2\n")
        // Three queues per port: with 4096 frames the UMEM ran dry under 8 TCP streams
        // (`pool_exhausted`): each queue's fill and Tx rings park up to 1024 frames each.
        .replace("frames = 4096", "frames = 16384")
        .replace("sas = [0x4000]", "sas = [0x4000, 0x4001]")
        .replace("sas = [0x6000]", "sas = [0x6000, 0x6001]");
    let mut linux = linux_xfrm(aead, round, OUTER_V4);
    for (spi, reqid, sel) in [(0x4001u32, 0x4000u32, "0.0.0.0/0"), (0x6001, 0x6000, "::/0")] {
        // A key of its own (`key` varies by SPI / 0x100 only).
        let k = key(aead, spi, round + 50);
        text += &format!(
            "\n[[sa]]\nspi = {spi:#x}\ndirection = \"outbound\"\naead = \"{}\"\nkey = \"{k}\"\nmode = \"tunnel\"\n\
             local = \"{}\"\nremote = \"{}\"\nshard = 1\nmtu = {WAN_MTU}\n",
            aead.gateway, OUTER_V4.gateway, OUTER_V4.peer
        );
        linux += &format!(
            "ip xfrm state add src {} dst {} proto esp spi {spi:#x} reqid {reqid} mode tunnel aead '{}' 0x{k} 128 sel src {sel} dst {sel}\n",
            OUTER_V4.gateway, OUTER_V4.peer, aead.linux
        );
    }
    peer.check(&linux).unwrap();
    let gw = Running::start(&text);
    let pings = pings_both_ways(peer, ns);
    let mut bulk = Vec::new();
    if pings.iter().all(|(_, ok, _)| *ok) {
        flush_route_caches([ns, peer.netns()], &[V4]);
        for args in [
            &["-t", "3", "-P", "8"][..],
            &["-t", "3", "-P", "8", "-R"],
            &["-t", "3", "-P", "8", "-u", "-b", "1M", "-l", "1200"],
        ] {
            bulk.push((args.join(" "), iperf3_in(peer.netns(), ns, args)));
        }
    }
    let report = gw.stop();
    let t = report.total();
    for (dst, ok, out) in &pings {
        assert!(ok, "two shards: ping {dst} failed:\n{out}\ngateway: {t}\n{}", diagnostics(peer, ns));
    }
    check_bulk("two shards", &bulk, &t, Loss::None);
    for s in &report.stats {
        eprintln!("two shards: shard {}: {}", s.shard, s.counters);
    }
    eprintln!("two shards: stages {}", ipsec_gateway::stagestats::StageCounters::sum(&report.stages));
    let data: Vec<u64> = report.stats[..2].iter().map(|s| s.counters.rx_packets).collect();
    assert!(data.iter().all(|&n| n > 100), "both data shards carry traffic: {data:?}");
    xfrm_stat_clean(peer, "two shards", linux_ptb6);
    let used: Vec<u64> = [0x4000, 0x4001].iter().map(|&spi| sa_packets(peer, spi, OUTER_V4)).collect();
    eprintln!("two shards: the peer's inbound SAs 0x4000 / 0x4001 counted {used:?} packets");
    assert_only_unforwardable_drops(&t, "two shards");
}

/// Brings up the LAN host on `lan`'s far end: checksums in software, IPv4 and IPv6 addresses
/// and default routes through the gateway.
fn lan_host_up(lan: &Veth) {
    let ns = lan.ns.as_str();
    // The LAN host's kernel leaves TCP/UDP checksums to the "hardware" of its veth (checksum
    // offload); AF_XDP hands the gateway the frame as it is, checksum unfilled. A real wire has
    // no such frames: checksums are computed in software here.
    sh(&["ip", "netns", "exec", ns, "ethtool", "-K", &lan.peer, "tx", "off"]);
    let v6_on = format!("net.ipv6.conf.{}.disable_ipv6=0", lan.peer);
    sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", &v6_on]);
    sh(&["ip", "-n", ns, "addr", "add", "10.1.0.50/16", "dev", &lan.peer]);
    sh(&["ip", "-n", ns, "addr", "add", "fd00:1::50/64", "dev", &lan.peer, "nodad"]);
    sh(&["ip", "-n", ns, "route", "add", "default", "via", "10.1.0.1"]);
    sh(&["ip", "-n", ns, "-6", "route", "add", "default", "via", "fd00:1::1"]);
}

/// Five pings to `dst` from the site-2 host (the peer's namespace) when `from_peer`, else from
/// the LAN host (namespace `lan_ns`): whether all were answered, and ping's output.
fn ping(peer_ns: &str, lan_ns: &str, from_peer: bool, dst: &str) -> (bool, String) {
    let ns = if from_peer { peer_ns } else { lan_ns };
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "busybox", "ping", "-c", "5", "-i", "0.2", "-W", "3", dst])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`ping`] both ways through the tunnel, IPv4 and IPv6 inner: (destination, ok, output) each.
/// The first pings also resolve the peer's and the LAN host's neighbors (the gateway answers
/// ARP and ND itself): one retry allowed.
fn pings_both_ways(peer: &LinuxPeer, lan_ns: &str) -> Vec<(&'static str, bool, String)> {
    [(false, "10.2.0.50"), (true, "10.1.0.50"), (false, "fd00:2::50"), (true, "fd00:1::50")]
        .into_iter()
        .map(|(from_peer, dst)| {
            let (mut ok, mut text) = ping(peer.netns(), lan_ns, from_peer, dst);
            if !ok {
                (ok, text) = ping(peer.netns(), lan_ns, from_peer, dst);
            }
            (dst, ok, text)
        })
        .collect()
}

/// `ip route` family options: IPv4 (the default) and IPv6.
const V4: &[&str] = &[];
const V6: &[&str] = &["-6"];

/// The hosts forget what they learned (a path MTU): `ip [-6] route flush cache` in each of
/// `namespaces`, for each of `families`.
fn flush_route_caches(namespaces: [&str; 2], families: &[&[&str]]) {
    for n in namespaces {
        for family in families {
            let mut args = vec!["ip", "-n", n];
            args.extend_from_slice(family);
            args.extend(["route", "flush", "cache"]);
            sh(&args);
        }
    }
}

/// An iperf3 run: (bits per second received, datagrams lost, datagrams sent; 0 and 0 for TCP).
type IperfResult = Result<(f64, u64, u64), String>;

/// Whether an iperf3 UDP run may lose datagrams.
#[derive(Clone, Copy, PartialEq)]
enum Loss {
    Allowed,
    None,
}

/// The iperf3 runs (`args` joined, result) of `what`: each ran and received more than 1 Mbit/s
/// (and lost no datagram unless `loss` allows); each printed.
fn check_bulk(what: &str, bulk: &[(String, IperfResult)], t: &wirespeed_core::ShardCounters, loss: Loss) {
    for (args, r) in bulk {
        let r = r.as_ref().unwrap_or_else(|e| panic!("{what}: iperf3 {args}: {e}\ngateway: {t}"));
        eprintln!(
            "{what}: iperf3 {args}: {:.1} Mbit/s received, {} of {} datagrams lost",
            r.0 / 1e6,
            r.1,
            r.2
        );
        assert!(r.0 > 1e6, "{what}: iperf3 {args}: {r:?}");
        if loss == Loss::None {
            assert_eq!(r.1, 0, "{what}: iperf3 {args}: datagrams lost; gateway: {t}");
        }
    }
}

/// The peer's `/proc/net/xfrm_stat` is all zero after `what`, but for `XfrmOutStateModeError`:
/// at most `ptb6`, the ICMPv6 Packet Too Big Linux sent as a tunnel entry (XFRM counts each such
/// refusal there).
fn xfrm_stat_clean(peer: &LinuxPeer, what: &str, ptb6: u64) {
    let stat = peer.xfrm_stat().unwrap();
    for (name, n) in &stat {
        let allowed = if name == "XfrmOutStateModeError" { ptb6 } else { 0 };
        assert!(*n <= allowed, "{what}: peer's xfrm_stat {name} = {n} (allowed {allowed}): {stat:?}");
    }
}

/// Every gateway drop accounted: none at all, except packets the hosts send on their own to
/// destinations a router never forwards (IGMP/MLD reports to link-local multicast, counted as
/// `unsupported`; they come when an interface or address comes up, so their number varies).
fn assert_only_unforwardable_drops(t: &wirespeed_core::ShardCounters, what: &str) {
    let other: Vec<_> =
        t.nonzero_drops().filter(|(r, _)| *r != wirespeed_core::DropReason::Unsupported).collect();
    assert!(
        other.is_empty(),
        "{what}: gateway drops other than never-forwarded destinations: {other:?}; {t}"
    );
    assert!(
        t.drops_of(wirespeed_core::DropReason::Unsupported) <= 32,
        "{what}: too many unforwardable packets: {t}"
    );
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

/// `Icmp6OutMLDv2Reports` of namespace `netns` (its `/proc/net/snmp6`).
fn mld_reports(netns: &str) -> u64 {
    snmp6(netns, "Icmp6OutMLDv2Reports")
}

/// `Icmp: InDestUnreachs` of namespace `netns` (its `/proc/net/snmp`).
fn icmp_in_dest_unreachs(netns: &str) -> u64 {
    snmp_field(&sh(&["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"]), "Icmp:", "InDestUnreachs")
}

/// Counter `name` of namespace `netns`'s `/proc/net/snmp6` (a line `NAME VALUE`).
fn snmp6(netns: &str, name: &str) -> u64 {
    let text = sh(&["ip", "netns", "exec", netns, "cat", "/proc/net/snmp6"]);
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{text}"));
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{text}"))
}

/// Counter `name` of table `table` (`"Ip:"`, `"Icmp:"`, `"Udp:"`) in `text`, a `/proc/net/snmp`:
/// each table is a line of names and a line of values.
fn snmp_field(text: &str, table: &str, name: &str) -> u64 {
    let mut lines = text.lines().filter(|l| l.starts_with(table));
    let (names, values) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default());
    let i = names.split_whitespace().position(|n| n == name).unwrap_or_else(|| panic!("{text}"));
    values.split_whitespace().nth(i).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{text}"))
}

/// Sends UDP datagrams of each of `sizes` bytes with DF clear (IPv4: `IP_PMTUDISC_DONT`; IPv6
/// fragments at the source to the path MTU anyway) from the LAN host (namespace `lan_ns`) to
/// an echo server on `server` in the site-2 host's namespace `peer_ns`, which answers each with
/// its length and a checksum (a small reply: the test is about the large direction). Returns
/// per size the attempts it took (a datagram lost is sent again, at most 5 times, 1 s apart).
fn udp_echo(peer_ns: &str, lan_ns: &str, server: &str, sizes: &[usize]) -> Result<Vec<(usize, u32)>, String> {
    let mut srv = std::process::Command::new("ip")
        .args(["netns", "exec", peer_ns, "timeout", "60", "python3", "-c", UDP_ECHO_PY, "server", server])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    let sizes: Vec<String> = sizes.iter().map(|n| n.to_string()).collect();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", lan_ns, "timeout", "40", "python3", "-c", UDP_ECHO_PY, "client", server])
        .args(&sizes)
        .output()
        .map_err(|e| e.to_string());
    let _ = srv.kill();
    let _ = srv.wait();
    let out = out?;
    if !out.status.success() {
        return Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().map(|x| x.parse().ok());
            Some((w.next()??, w.next()?? as u32))
        })
        .collect())
}

/// The UDP echo of [`udp_echo`]: `server ADDR` answers each datagram on port 7007 with its
/// length and CRC-32; `client ADDR SIZE...` sends datagrams of each size (IPv4 with DF clear),
/// up to 5 times 1 s apart until the right answer comes, and prints `SIZE ATTEMPTS`.
const UDP_ECHO_PY: &str = r#"
import socket, sys, zlib
mode, addr = sys.argv[1], sys.argv[2]
fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
if fam == socket.AF_INET:
    s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT: DF clear
if mode == 'server':
    s.bind((addr, 7007))
    while True:
        d, a = s.recvfrom(65535)
        s.sendto(b'%d %d' % (len(d), zlib.crc32(d)), a)
s.settimeout(1)
for n in map(int, sys.argv[3:]):
    d = bytes((i * 7 + n) & 255 for i in range(n))
    want = b'%d %d' % (n, zlib.crc32(d))
    for k in range(1, 6):
        s.sendto(d, (addr, 7007))
        try:
            got = s.recv(100)
        except socket.timeout:
            continue
        if got == want:
            print(n, k, flush=True)
            break
    else:
        sys.exit('no echo of %d bytes' % n)
"#;

/// `Icmp6InPktTooBigs` of namespace `netns` (its `/proc/net/snmp6`).
fn icmp6_in_pkt_too_bigs(netns: &str) -> u64 {
    snmp6(netns, "Icmp6InPktTooBigs")
}

/// `Ip: ReasmOKs` of namespace `netns`: datagrams it reassembled.
fn reasm_oks(netns: &str) -> u64 {
    snmp_field(&sh(&["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"]), "Ip:", "ReasmOKs")
}

/// The path MTU namespace `netns` has for `dst` (`ip route get`), if it learned one.
fn route_mtu(netns: &str, dst: &str) -> Option<String> {
    sh(&["ip", "-n", netns, "route", "get", dst])
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .map(String::from)
}

/// iperf3 from the LAN host (namespace `lan_ns`) to the site-2 host (the peer's namespace) with
/// `args`: (bits per second received, datagrams lost, datagrams sent; 0 and 0 for TCP).
fn iperf3(peer: &LinuxPeer, lan_ns: &str, args: &[&str]) -> IperfResult {
    iperf3_in(peer.netns(), lan_ns, args)
}

/// [`iperf3`] with the site-2 host in namespace `peer_ns`; a `-p PORT` in `args` is the server's
/// too.
fn iperf3_in<S: AsRef<str>>(peer_ns: &str, lan_ns: &str, args: &[S]) -> IperfResult {
    iperf3_at(peer_ns, lan_ns, "10.2.0.50", args)
}

/// [`iperf3_in`] with the server on `server` (an address of the site-2 host).
fn iperf3_at<S: AsRef<str>>(peer_ns: &str, lan_ns: &str, server: &str, args: &[S]) -> IperfResult {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let port = args.iter().position(|a| *a == "-p").map_or("5201", |i| args[i + 1]);
    let mut srv = std::process::Command::new("ip")
        .args(["netns", "exec", peer_ns, "iperf3", "-s", "-1", "-B", server, "-p", port])
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
            server,
        ])
        .args(&args)
        .output()
        .map_err(|e| e.to_string());
    let _ = srv.kill();
    let _ = srv.wait();
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if let Some(e) = v.get("error") {
        return Err(format!("{e}"));
    }
    let end = &v["end"];
    if args.contains(&"-u") {
        // -R: the client received; either way the receiver's loss count is the one reported.
        let sum = &end["sum"];
        let bps = sum["bits_per_second"].as_f64().ok_or_else(|| text.to_string())?;
        Ok((bps, sum["lost_packets"].as_u64().unwrap_or(u64::MAX), sum["packets"].as_u64().unwrap_or(0)))
    } else {
        let bps = end["sum_received"]["bits_per_second"].as_f64().ok_or_else(|| text.to_string())?;
        Ok((bps, 0, 0))
    }
}

/// The peer's `Udp: InDatagrams` (`/proc/net/snmp`): ESP-in-UDP handed to XFRM counts there.
fn udp_in_datagrams(peer: &LinuxPeer) -> u64 {
    snmp_field(&peer.check("grep '^Udp:' /proc/net/snmp").unwrap(), "Udp:", "InDatagrams")
}
