//! strongSwan negotiates, wirespeed carries: two strongSwan (charon) instances run IKEv2 with each
//! other inside the Linux peer VM (`wirespeed-test-linux-peer`, Debian's kernel under QEMU: only
//! its kernel can hold ESP states, the host's has no ESP); one side's SAs are mirrored from its
//! network namespace's XFRM database into an `ipsec-gateway` (`[keying] source = "xfrm"`) on
//! AF_XDP veths, which carries that side's traffic. Root, AF_XDP, QEMU, the prepared kernel
//! (`bash testing/linux-peer/prepare.sh`) and strongSwan on the host (`strongswan-charon`,
//! `strongswan-swanctl`: the guest runs the host's binaries over 9p) needed; skipped with the
//! reason otherwise, a failure when `WIRESPEED_LINUX_PEER_REQUIRE` is set (CI).
//!
//! ```text
//!  guest netns lan            guest netns gw                          guest netns peer
//!  10.1.0.50 ── lan0 ═ veth ═ gw-lan ┐ ipsec-gateway (AF_XDP) ┌ gw-wan ═ veth ═ peer-wan 192.0.2.1
//!                                    └─ 10.1.0.1 ... 192.0.2.100 ┘                charon B + kernel ESP
//!                              charon A (kernel: 192.0.2.100 on gw-wan,         10.2.0.1 (lo)
//!                              SAs/policies with if_id 42: never used by it)
//! ```
//!
//! Charon A's IKE goes out through the gw namespace's kernel; IKE coming back (UDP 500, and UDP
//! 4500 behind the non-ESP marker) is passed to that kernel by the gateway's XDP program, while
//! ESP stays in the data plane. Charon A installs its CHILD_SAs with `if_id_in`/`if_id_out` 42,
//! so the gw kernel never encrypts with them (no xfrm interface has that if_id); the gateway
//! mirrors them and seals/opens site 1's traffic. Charon B is an ordinary strongSwan on the
//! kernel's ESP. The test pings both ways through the tunnel — the gw kernel's SAs hold exactly
//! the counts wirespeed reported (`XFRM_MSG_NEWAE`), `swanctl --list-sas` on A shows them, and
//! the peer's kernel saw no replayed sequence number and no ICV failure (one sender per key) —,
//! rekeys the CHILD_SA under traffic (`swanctl --rekey`), then terminates it and watches the
//! SAs leave the gateway. Then again over NAT-T (ESP-in-UDP on port 4500, next to IKE on the
//! same port) with ChaCha20-Poly1305, where charon A rekeys by the packet counts wirespeed
//! keeps: its soft limit (`rekey_packets`) is mirrored into the data plane, which sends the soft
//! `XFRM_MSG_EXPIRE` that makes charon rekey. Last, the gateway is restarted: it picks the SAs
//! up from the kernel's dump, refuses to continue the outbound SA the previous run used (its
//! sequence numbers are the AEAD nonces) and asks for a rekey, and traffic goes on under fresh
//! SAs.
//!
//! A rekey must lose nothing here. charon A installs the new inbound SA in the kernel and at
//! once sends the DELETE of the old CHILD_SA, upon which charon B switches to the new SA; the
//! gateway learns the new SA asynchronously (netlink event → mirror → epoch publish), so the
//! first packet under the new SPI may reach a data shard before that publish (under TCG
//! emulation, with both daemons, the gateway (a debug build) and the pings sharing two
//! emulated CPUs, it did: 0 to 2 echoes per rekey were dropped as `esp_no_sa`). With
//! `source = "xfrm"` the data shards hold such packets (`[keying] hold_unknown_spi`, default
//! 64 packets for 50 ms) and decrypt them once the SA is published, so the test asks for no
//! lost echo and no drop at all.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use ipsec_gateway::demo::configs::{A_LAN_MAC, A_WAN_MAC};
use wirespeed_test_linux_peer::{LinuxPeer, Options};

/// The if_id scoping charon A's SAs and policies to the gateway.
const IF_ID: u32 = 42;
/// The guest's working directory (its /tmp is a tmpfs of its own).
const DIR: &str = "/tmp/ss";
const PEER_WAN_MAC: &str = "02:00:00:00:0b:02";
const LAN_HOST_MAC: &str = "02:00:00:00:01:50";

fn mac_text(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The guest's network: three namespaces, two veth pairs, addresses and routes.
fn topology() -> String {
    let (lan_mac, wan_mac) = (mac_text(A_LAN_MAC), mac_text(A_WAN_MAC));
    format!(
        "set -e
mkdir -p {DIR}/gw {DIR}/peer
for n in gw peer lan; do
  ip netns add $n
  ip -n $n link set lo up
  ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add gw-wan netns gw address {wan_mac} numtxqueues 2 numrxqueues 2 type veth peer name peer-wan netns peer address {PEER_WAN_MAC} numtxqueues 2 numrxqueues 2
ip link add gw-lan netns gw address {lan_mac} numtxqueues 2 numrxqueues 2 type veth peer name lan0 netns lan address {LAN_HOST_MAC} numtxqueues 2 numrxqueues 2
# charon A's IKE address is the gateway's WAN address, on the gw kernel too; the gateway answers
# ARP for it (ARP stays in the data plane), so the kernel is told the peer's MAC.
ip -n gw addr add 192.0.2.100/24 dev gw-wan
ip -n gw neigh replace 192.0.2.1 lladdr {PEER_WAN_MAC} dev gw-wan nud permanent
ip -n gw link set gw-wan up
ip -n gw link set gw-lan up
ip -n peer addr add 192.0.2.1/24 dev peer-wan
ip -n peer link set peer-wan up
ip -n peer addr add 10.2.0.1/32 dev lo
ip -n peer route add 10.1.0.0/16 via 192.0.2.100 src 10.2.0.1
ip -n lan addr add 10.1.0.50/16 dev lan0
ip -n lan link set lan0 up
ip -n lan route add default via 10.1.0.1
# Kernel senders fill their checksums (AF_XDP sees a veth's frames as they are).
for x in 'gw gw-wan' 'peer peer-wan' 'lan lan0'; do set -- $x; ip netns exec $1 ethtool -K $2 tx off >/dev/null; done
"
    )
}

/// strongswan.conf of one charon: its own vici socket and log, only the plugins it needs.
fn strongswan_conf(side: &str) -> String {
    format!(
        "charon {{
  load = random nonce openssl pem pkcs1 x509 pubkey kdf hmac sha1 sha2 aes gcm kernel-netlink socket-default vici
  install_routes = no
  install_virtual_ip = no
  retransmit_timeout = 8.0
  plugins {{
    vici {{
      socket = unix://{DIR}/{side}/charon.vici
    }}
  }}
  filelog {{
    log {{
      path = {DIR}/{side}/charon.log
      time_format = %T
      default = 1
      knl = 2
      ike = 2
    }}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
}}
swanctl {{
  load = random nonce openssl pem pkcs1 x509 pubkey
}}
"
    )
}

/// swanctl.conf of one side: IKEv2, PSK, AES-GCM for IKE, `esp` for the CHILD_SA, plus
/// `conn_extra` / `child_extra` settings; side `gw` scopes its CHILD_SA with if_id 42.
fn swanctl_conf(side: &str, esp: &str, conn_extra: &str, child_extra: &str) -> String {
    let (local, remote, local_ts, remote_ts, scope) = if side == "gw" {
        (
            "192.0.2.100",
            "192.0.2.1",
            "10.1.0.0/16",
            "10.2.0.0/16",
            format!("if_id_in = {IF_ID}\n        if_id_out = {IF_ID}"),
        )
    } else {
        ("192.0.2.1", "192.0.2.100", "10.2.0.0/16", "10.1.0.0/16", String::new())
    };
    format!(
        "connections {{
  tun {{
    version = 2
    local_addrs = {local}
    remote_addrs = {remote}
    proposals = aes128gcm16-prfsha256-x25519
    {conn_extra}
    local {{
      auth = psk
      id = {side}
    }}
    remote {{
      auth = psk
    }}
    children {{
      net {{
        local_ts = {local_ts}
        remote_ts = {remote_ts}
        esp_proposals = {esp}
        mode = tunnel
        start_action = none
        {scope}
        {child_extra}
      }}
    }}
  }}
}}
secrets {{
  ike-all {{
    secret = \"wirespeed-interop-psk-0123456789\"
  }}
}}
"
    )
}

/// The gateway's configuration: one shard, AF_XDP ports on gw-lan and gw-wan, no static SAs:
/// everything from charon A through XFRM.
fn gateway_conf() -> String {
    let port = |itf: &str, pass: &str| {
        format!(
            "{{ backend = \"afxdp\", interface = \"{itf}\", mode = \"skb\", frames = 2048, fill_ring = 512, \
             tx_ring = 512, rx_ring = 512, completion_ring = 512, kernel_pass = {{ arp = false, ipv6_nd = false, tcp_dst_ports = [], {pass} }} }}"
        )
    };
    format!(
        r#"[gateway]
name = "ike"
shards = 1
stats_interval = 1
control_socket = "{DIR}/gw/ctl.sock"

[interfaces.lan]
mac = "{lan_mac}"
addresses = ["10.1.0.1/16"]
port = {lan_port}

[interfaces.wan]
mac = "{wan_mac}"
addresses = ["192.0.2.100/24"]
port = {wan_port}

[[routes]]
prefix = "10.2.0.0/16"
via = "192.0.2.1"

[[routes]]
prefix = "10.1.0.0/16"

[keying]
source = "xfrm"
if_ids = [{IF_ID}]
counters_interval = 1
"#,
        lan_mac = mac_text(A_LAN_MAC),
        wan_mac = mac_text(A_WAN_MAC),
        lan_port = port("gw-lan", "ike_ports = [], nat_t_ports = []"),
        // IKE to the WAN address goes to charon A through the gw kernel.
        wan_port = port("gw-wan", "own_addresses = [\"192.0.2.100\"]"),
    )
}

/// Writes `text` to `path` in the guest.
fn write(vm: &LinuxPeer, path: &str, text: &str) {
    vm.check(&format!("cat > {path} <<'WIRESPEED_EOF'\n{text}WIRESPEED_EOF\n")).unwrap();
}

/// Starts charon of `side` in its namespace, with a /run of its own (two charons share no pid
/// file), and waits for its vici socket.
fn start_charon(vm: &LinuxPeer, side: &str) {
    let o = vm.run_timeout(&format!(
        "cd /\nSTRONGSWAN_CONF={DIR}/{side}/strongswan.conf setsid ip netns exec {side} unshare -m sh -c \
         'mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon' >{DIR}/{side}/charon.out 2>&1 </dev/null &\n\
         pid=$!\nfor i in $(seq 1 1200); do [ -S {DIR}/{side}/charon.vici ] && exit 0; kill -0 $pid 2>/dev/null || break; sleep 0.1; done\n\
         echo no vici socket; cat {DIR}/{side}/charon.out {DIR}/{side}/charon.log; exit 1"
    ), Duration::from_secs(150)).unwrap();
    assert_eq!(o.code, 0, "charon {side}: {}", o.stdout);
}

/// `swanctl` against charon of `side`.
fn swanctl(side: &str, args: &str) -> String {
    format!(
        "STRONGSWAN_CONF={DIR}/{side}/strongswan.conf swanctl {args} --uri unix://{DIR}/{side}/charon.vici"
    )
}

/// The gateway's SAs (`ctl show sas`), e.g. `0xc1234567/in[xfrm] 0xc7654321/out@0[xfrm]`.
fn show_sas(vm: &LinuxPeer, gw: &str) -> String {
    vm.check(&format!("{gw} ctl {DIR}/gw/ctl.sock 'show sas'")).unwrap().trim().to_string()
}

/// Mirrored SAs in a `show sas` reply.
fn mirrored(reply: &str) -> Vec<String> {
    reply
        .split_whitespace()
        .filter(|s| s.contains("[xfrm]"))
        .map(|s| s.split(':').next().unwrap_or(s).to_string())
        .collect()
}

/// Packets wirespeed counted per mirrored SA (`0xc1234567/in[xfrm]:20p/1680B`), by SPI, and
/// whether the SA is outbound.
fn wirespeed_packets(reply: &str) -> Vec<(u32, u64, bool)> {
    reply
        .split_whitespace()
        .filter(|s| s.contains("[xfrm]:"))
        .filter_map(|s| {
            let spi = u32::from_str_radix(s.strip_prefix("0x")?.split('/').next()?, 16).ok()?;
            let packets = s.split(':').nth(1)?.split('p').next()?.parse().ok()?;
            Some((spi, packets, s.contains("/out")))
        })
        .collect()
}

/// Never two senders on one key, and the IKE daemon sees what wirespeed counted: with no
/// traffic, after two counter intervals, every gw kernel SA that carried packets in this run of
/// the gateway holds exactly the packets wirespeed reported for it (`XFRM_MSG_NEWAE`, totals),
/// charon A lists them, together at least `at_least`; and the peer's kernel saw no sequence
/// number twice and no ICV failure (what a second sender under the same key — the gw kernel, or
/// the gateway renumbering a used SA — would cause).
fn one_sender(vm: &LinuxPeer, gw: &str, at_least: u64) {
    std::thread::sleep(Duration::from_millis(2500));
    let reply = show_sas(vm, gw);
    let ws: Vec<(u32, u64, bool)> = wirespeed_packets(&reply).into_iter().filter(|w| w.1 > 0).collect();
    assert!(ws.iter().map(|w| w.1).sum::<u64>() >= at_least, "wirespeed counted the traffic: {reply}");
    let kernel = kernel_sa_counters(vm, "gw");
    let replay = kernel_sa_replay(vm, "gw");
    let list = vm.check(&swanctl("gw", "--list-sas")).unwrap();
    for (spi, packets, outbound) in &ws {
        let k = kernel.iter().find(|c| c.0.starts_with(&format!("{spi:#010x}"))).map(|c| c.2);
        assert_eq!(k, Some(*packets), "gw kernel SA {spi:#x} holds wirespeed's count: {kernel:?} vs {reply}");
        // Its replay state holds wirespeed's sequence numbers (NEWAE, `XFRM_AE_RVAL`): the last
        // sent (one per packet from 1) or the highest received, where a restarted gateway
        // resumes the inbound SA's window.
        let r = replay.iter().find(|c| c.0.starts_with(&format!("{spi:#010x}"))).map(|c| (c.1, c.2));
        let (seq, oseq) =
            r.unwrap_or_else(|| panic!("gw kernel SA {spi:#x} shows a replay state: {replay:?}"));
        if *outbound {
            assert_eq!(oseq, *packets, "gw kernel SA {spi:#x}: wirespeed's last sequence number sent");
        } else {
            assert!(seq >= *packets, "gw kernel SA {spi:#x}: highest received {seq} < {packets} packets");
        }
        // "out c4a7a5c9 (-|0x0000002a),   1680 bytes,    20 packets"
        let line = list.lines().find(|l| l.split_whitespace().nth(1) == Some(&format!("{spi:08x}")));
        let shown = line.and_then(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.iter().position(|x| x.starts_with("packets")).and_then(|i| w[i - 1].parse::<u64>().ok())
        });
        assert!(shown == Some(*packets), "charon A shows wirespeed's count for {spi:#x} ({packets}): {list}");
    }
    let stat = vm.check("ip netns exec peer cat /proc/net/xfrm_stat").unwrap();
    let bad: Vec<&str> = stat.lines().filter(|l| l.split_whitespace().nth(1) != Some("0")).collect();
    assert!(bad.is_empty(), "the peer's xfrm_stat is all zero: {bad:?}");
    let shown: Vec<String> = ws.iter().map(|(spi, p, _)| format!("{spi:#x}: {p} packets")).collect();
    eprintln!(
        "one sender per key: wirespeed {shown:?} = gw kernel (NEWAE, counters and sequence numbers) = \
         charon A; peer xfrm_stat all zero"
    );
}

/// Stops the gateway (SIGTERM) and starts it again: it rebuilds its SAs from the kernel's dump.
fn restart_gateway(vm: &LinuxPeer, gw: &str) {
    vm.check(&format!(
        "pid=$(pgrep -f '{gw} run')\nkill -TERM $pid\nfor i in $(seq 1 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done\n\
         kill -0 $pid 2>/dev/null && exit 1\nrm -f {DIR}/gw/ctl.sock"
    ))
    .unwrap();
    start_gateway(vm, gw, ">>");
}

/// Starts the gateway in namespace gw, its log to gateway.log (`redirect`: `>` or `>>`).
fn start_gateway(vm: &LinuxPeer, gw: &str, redirect: &str) {
    let started = vm
        .run_timeout(
            &format!(
                "cd /\nsetsid ip netns exec gw {gw} run --config {DIR}/gw/gateway.toml --json {redirect}{DIR}/gw/gateway.log 2>&1 </dev/null &\n\
                 pid=$!\nfor i in $(seq 1 1200); do [ -S {DIR}/gw/ctl.sock ] && exit 0; kill -0 $pid 2>/dev/null || break; sleep 0.1; done\n\
                 echo gateway did not start; cat {DIR}/gw/gateway.log; exit 1"
            ),
            Duration::from_secs(150),
        )
        .unwrap();
    assert_eq!(started.code, 0, "{}", started.stdout);
}

/// Waits (up to `limit`) until `show sas` satisfies `want`; returns the reply and the time.
fn wait_sas(
    vm: &LinuxPeer,
    gw: &str,
    limit: Duration,
    want: impl Fn(&[String]) -> bool,
) -> (String, Duration) {
    let start = Instant::now();
    loop {
        let reply = show_sas(vm, gw);
        if want(&mirrored(&reply)) || start.elapsed() > limit {
            return (reply, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `swanctl --terminate` on side A, then the time until the gateway published a table without
/// mirrored SAs (its log line), measured in the guest; `show sas` confirms.
fn terminate(vm: &LinuxPeer, gw: &str) {
    let log = format!("{DIR}/gw/gateway.log");
    let out = vm
        .run_timeout(
            &format!(
                "n=$(grep -c 'xfrm: 0 mirrored SAs' {log})\n{}\nt0=$(date +%s%N)\n\
                 for i in $(seq 1 2000); do [ $(grep -c 'xfrm: 0 mirrored SAs' {log}) -gt $n ] && break; sleep 0.005; done\n\
                 echo $(( ($(date +%s%N) - t0) / 1000000 ))",
                swanctl("gw", "--terminate --ike tun --timeout 30")
            ),
            Duration::from_secs(90),
        )
        .unwrap();
    assert_eq!(out.code, 0, "{}", out.stdout);
    let ms: u64 = out
        .stdout
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let reply = show_sas(vm, gw);
    assert!(mirrored(&reply).is_empty(), "SAs removed: {reply}");
    eprintln!("terminated: SAs gone from the gateway {ms} ms after swanctl --terminate returned");
    // (A loaded TCG guest: well under a second when the machine is idle.)
    assert!(ms < 5000, "SAs removed within 5 s: {ms} ms");
}

/// `(bytes, packets)` of every ESP state of namespace `ns` (`ip -s xfrm state`), by SPI.
fn kernel_sa_counters(vm: &LinuxPeer, ns: &str) -> Vec<(String, u64, u64)> {
    let text = vm.check(&format!("ip -n {ns} -s xfrm state")).unwrap();
    let mut out = Vec::new();
    let mut spi = String::new();
    let words: Vec<&str> = text.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        if *w == "spi" {
            spi = words.get(i + 1).map(|s| s.to_string()).unwrap_or_default();
        }
        if *w == "current:" {
            let n = |s: Option<&&str>, unit: &str| {
                s.and_then(|s| s.strip_suffix(unit))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{text}"))
            };
            out.push((spi.clone(), n(words.get(i + 1), "(bytes),"), n(words.get(i + 2), "(packets)")));
        }
    }
    out
}

/// `(seq, oseq)` of every ESP state of namespace `ns` by SPI, from the anti-replay context
/// `ip -s xfrm state` prints ("anti-replay context: seq 0x0, oseq 0x14, bitmap 0x00000000", or
/// the ESN form "anti-replay esn context: seq-hi 0x0, seq 0x0, oseq-hi 0x0, oseq 0x14 …").
fn kernel_sa_replay(vm: &LinuxPeer, ns: &str) -> Vec<(String, u64, u64)> {
    let text = vm.check(&format!("ip -n {ns} -s xfrm state")).unwrap();
    let hex = |s: Option<&&str>| {
        s.and_then(|s| u64::from_str_radix(s.trim_end_matches(',').trim_start_matches("0x"), 16).ok())
            .unwrap_or_else(|| panic!("{text}"))
    };
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    let mut in_replay = false;
    let words: Vec<&str> = text.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        match *w {
            "spi" => {
                in_replay = false;
                out.push((words.get(i + 1).map(|s| s.to_string()).unwrap_or_default(), 0, 0));
            }
            "anti-replay" => in_replay = true,
            "seq" if in_replay => {
                out.last_mut().unwrap_or_else(|| panic!("{text}")).1 = hex(words.get(i + 1))
            }
            "oseq" if in_replay => {
                out.last_mut().unwrap_or_else(|| panic!("{text}")).2 = hex(words.get(i + 1))
            }
            _ => {}
        }
    }
    out
}

/// The cumulative counters of shard `shard` in the gateway's latest JSON stats line.
fn shard_totals(vm: &LinuxPeer, shard: u32) -> serde_json::Value {
    let line = vm
        .check(&format!("grep '\"shard\":{shard},' {DIR}/gw/gateway.log | grep -v final | tail -n 1"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    // How often the unknown-SPI hold caught the rekey race (module doc).
    let s = |k: &str| v["stages"][k].as_u64().unwrap_or(0);
    eprintln!(
        "shard {shard} unknown-SPI hold: held {}, resolved {}, expired {}, full {}",
        s("spi_held"),
        s("spi_hold_resolved"),
        s("spi_hold_expired"),
        s("spi_hold_full")
    );
    v["total"].clone()
}

/// Sent and received of a busybox ping summary ("5 packets transmitted, 5 packets received").
fn ping_counts(text: &str) -> (u32, u32) {
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = |what: &str| {
        words
            .iter()
            .position(|w| w.starts_with(what))
            .and_then(|i| words[i - 2].parse().ok())
            .unwrap_or_else(|| panic!("no ping summary: {text}"))
    };
    (at("transmitted"), at("received"))
}

#[test]
fn strongswan_negotiates_and_wirespeed_carries() {
    let test_start = Instant::now();
    let opts = Options { memory_mib: 768, cpus: 2, nics: 0, ..Options::default() };
    let Some(vm) = LinuxPeer::for_test(&opts, module_path!()) else { return };
    eprintln!("linux peer: kernel {} up in {:.1?} ({:?})", vm.kernel(), vm.boot_time(), vm.accel());
    let charon = std::path::Path::new("/usr/lib/ipsec/charon");
    if !charon.exists() || !std::path::Path::new("/usr/sbin/swanctl").exists() {
        let why = "strongSwan not installed (apt-get install strongswan-charon strongswan-swanctl)";
        if std::env::var_os(wirespeed_test_linux_peer::REQUIRE_ENV).is_some() {
            panic!("{why}, and {} is set", wirespeed_test_linux_peer::REQUIRE_ENV);
        }
        eprintln!("SKIPPED {}: {why}", module_path!());
        return;
    }
    let gw = env!("CARGO_BIN_EXE_ipsec-gateway");
    let logs = |vm: &LinuxPeer| {
        vm.run(&format!(
            "for f in {DIR}/gw/gateway.log {DIR}/gw/charon.log {DIR}/peer/charon.log; do echo \"== $f\"; tail -n 60 $f; done"
        ))
        .map(|o| o.stdout)
        .unwrap_or_default()
    };

    vm.check(&topology()).unwrap();
    for side in ["gw", "peer"] {
        write(&vm, &format!("{DIR}/{side}/strongswan.conf"), &strongswan_conf(side));
        write(&vm, &format!("{DIR}/{side}/swanctl.conf"), &swanctl_conf(side, "aes128gcm16", "", ""));
    }
    write(&vm, &format!("{DIR}/gw/gateway.toml"), &gateway_conf());
    vm.check(&format!("{gw} check --config {DIR}/gw/gateway.toml")).unwrap();

    // The gateway first: it dumps the (empty) XFRM database and follows it.
    start_gateway(&vm, gw, ">");
    for side in ["gw", "peer"] {
        start_charon(&vm, side);
        vm.check(&swanctl(side, &format!("--load-all --noprompt --file {DIR}/{side}/swanctl.conf")))
            .unwrap_or_else(|e| panic!("swanctl --load-all on {side}: {e}\n{}", logs(&vm)));
    }

    // IKEv2 from charon A: its IKE leaves through the gw kernel, the answers come back through
    // the XDP program's kernel pass.
    let t = Instant::now();
    let up = vm
        .run_timeout(&swanctl("gw", "--initiate --child net --timeout 90"), Duration::from_secs(100))
        .unwrap();
    assert_eq!(up.code, 0, "swanctl --initiate:\n{}\n{}", up.stdout, logs(&vm));
    eprintln!("CHILD_SA up in {:.1?}", t.elapsed());
    let (reply, took) = wait_sas(&vm, gw, Duration::from_secs(10), |m| m.len() == 2);
    assert_eq!(mirrored(&reply).len(), 2, "two mirrored SAs (in, out): {reply}\n{}", logs(&vm));
    eprintln!("mirrored into the gateway {took:.1?} after swanctl returned: {reply}");

    // Pings both ways through the tunnel.
    let ping = |from: &str, args: &str| {
        let o = vm
            .run_timeout(&format!("ip netns exec {from} busybox ping {args}"), Duration::from_secs(120))
            .unwrap();
        ping_counts(&o.stdout)
    };
    let (sent, got) = ping("lan", "-c 10 -i 0.2 -W 3 10.2.0.1");
    assert_eq!((sent, got), (10, 10), "site 1 -> site 2\n{}", logs(&vm));
    let (sent, got) = ping("peer", "-c 10 -i 0.2 -W 3 -I 10.2.0.1 10.1.0.50");
    assert_eq!((sent, got), (10, 10), "site 2 -> site 1\n{}", logs(&vm));

    // wirespeed carried the traffic, alone on each key; the peer's kernel carried it too.
    one_sender(&vm, gw, 20);
    let peer_kernel = kernel_sa_counters(&vm, "peer");
    assert!(peer_kernel.iter().all(|c| c.2 >= 20), "the peer's SAs carried both pings: {peer_kernel:?}");
    let list = vm.check(&swanctl("peer", "--list-sas")).unwrap();
    eprintln!("{list}");
    // IKE floated to UDP 4500 (RFC 7296 §2.23): IKE_AUTH and later went through the XDP
    // program's non-ESP-marker pass.
    assert!(list.contains("192.0.2.100[4500]"), "IKE on port 4500: {list}");

    // Rekey under traffic: a ping every 100 ms through the rekey.
    let before = mirrored(&show_sas(&vm, gw));
    vm.check(&format!(
        "cd /\nsetsid ip netns exec lan busybox ping -c 100 -i 0.1 -W 3 10.2.0.1 >{DIR}/rekey-ping.txt 2>&1 </dev/null &"
    ))
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    vm.check(&swanctl("gw", "--rekey --child net")).unwrap();
    let (reply, took) =
        wait_sas(&vm, gw, Duration::from_secs(20), |m| m.len() == 2 && m.iter().all(|s| !before.contains(s)));
    let after = mirrored(&reply);
    assert!(
        after.len() == 2 && after.iter().all(|s| !before.contains(s)),
        "rekeyed: {before:?} -> {reply}\n{}",
        logs(&vm)
    );
    eprintln!("rekeyed {before:?} -> {after:?}, {took:.1?} after swanctl --rekey ({:.1?})", t.elapsed());
    let text = vm
        .run_timeout(
            &format!("while pgrep -f 'ping -c 100' >/dev/null; do sleep 0.5; done; cat {DIR}/rekey-ping.txt"),
            Duration::from_secs(120),
        )
        .unwrap()
        .stdout;
    let (sent, got) = ping_counts(&text);
    eprintln!("ping through the rekey: {got}/{sent}");
    assert_eq!(sent, 100, "{text}");
    let mut lost = sent - got;
    assert_eq!(lost, 0, "no echo lost in the rekey: {text}\n{}", logs(&vm));
    let (sent, got) = ping("lan", "-c 5 -i 0.2 -W 3 10.2.0.1");
    assert_eq!((sent, got), (5, 5), "the new SAs carry\n{}", logs(&vm));
    one_sender(&vm, gw, 5);

    // Terminate: the SAs leave the gateway.
    terminate(&vm, gw);
    // wirespeed forwarded every packet of the tunnel: 10 + 10 + 100 + 5 echoes, request and
    // reply each crossing the data shard once (but the replies lost in the rekey).
    std::thread::sleep(Duration::from_millis(1500)); // the next stats line
    let data = shard_totals(&vm, 0);
    eprintln!("gateway data shard: {data}");
    assert!(data["tx_packets"].as_u64().unwrap() >= 2 * 125 - u64::from(lost), "{data}");
    // A loss could only be the rekey race (module doc): a packet under an SPI the gateway has
    // not mirrored yet, held and here not released in time, counted as esp_no_sa; nothing else
    // is dropped (with no loss: nothing at all).
    let drops = data["drops"].as_object().unwrap();
    assert!(drops.keys().all(|k| k == "esp_no_sa"), "{data}");
    assert_eq!(data["dropped"].as_u64(), Some(u64::from(lost)), "each lost echo is one counted drop: {data}");

    // Rekeys by wirespeed's counters, over NAT-T with ChaCha20-Poly1305: charon A asks for a
    // rekey after 60 packets (its soft limit, copied into the mirrored SAs); the gw kernel
    // counts nothing, so only the data plane's EXPIRE can trigger it. ESP-in-UDP on port 4500
    // stays in the data plane, IKE on the same port goes to the kernel.
    let t = Instant::now();
    let established = |vm: &LinuxPeer| {
        vm.check(&format!(
            "grep -o 'CHILD_SA net{{[0-9]*}} established' {DIR}/gw/charon.log | sort -u | wc -l"
        ))
        .unwrap()
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
    };
    let expires = |vm: &LinuxPeer| {
        vm.check(&format!("grep -c 'soft EXPIRE sent' {DIR}/gw/gateway.log || true"))
            .unwrap()
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
    };
    let (children_before, expires_before) = (established(&vm), expires(&vm));
    for side in ["gw", "peer"] {
        let child = if side == "gw" {
            "rekey_packets = 60\n        rand_packets = 0\n        life_packets = 100000"
        } else {
            ""
        };
        let conf = swanctl_conf(side, "chacha20poly1305", "encap = yes", child);
        write(&vm, &format!("{DIR}/{side}/swanctl.conf"), &conf);
        vm.check(&swanctl(side, &format!("--load-all --noprompt --file {DIR}/{side}/swanctl.conf"))).unwrap();
    }
    let up = vm
        .run_timeout(&swanctl("gw", "--initiate --child net --timeout 90"), Duration::from_secs(100))
        .unwrap();
    assert_eq!(up.code, 0, "swanctl --initiate (NAT-T):\n{}\n{}", up.stdout, logs(&vm));
    let (reply, _) = wait_sas(&vm, gw, Duration::from_secs(10), |m| m.len() == 2);
    assert_eq!(mirrored(&reply).len(), 2, "{reply}\n{}", logs(&vm));
    let states = vm.check("ip -n gw xfrm state").unwrap();
    assert!(
        states.contains("espinudp") && states.contains("rfc7539esp"),
        "NAT-T ChaCha20-Poly1305 SAs: {states}"
    );
    let text = vm
        .run_timeout("ip netns exec lan busybox ping -c 200 -i 0.1 -W 3 10.2.0.1", Duration::from_secs(240))
        .unwrap()
        .stdout;
    let (sent, got) = ping_counts(&text);
    std::thread::sleep(Duration::from_secs(2));
    let (children, sent_expires) = (established(&vm) - children_before, expires(&vm) - expires_before);
    eprintln!(
        "NAT-T/ChaCha20-Poly1305: {got}/{sent} echoes, {} rekeys by charon on {sent_expires} soft EXPIREs from wirespeed ({:.1?})",
        children.saturating_sub(1),
        t.elapsed()
    );
    assert!(children >= 3, "at least two rekeys (CHILD_SAs established: {children})\n{}", logs(&vm));
    assert!(sent_expires >= 2, "soft EXPIREs sent by the gateway: {sent_expires}\n{}", logs(&vm));
    assert_eq!(sent, 200, "{text}");
    let rekeys = children - 1;
    assert_eq!(sent - got, 0, "no echo lost in {rekeys} rekeys: {text}\n{}", logs(&vm));
    lost += sent - got;
    one_sender(&vm, gw, 0);
    let data = shard_totals(&vm, 0);
    eprintln!("gateway data shard: {data}; echoes lost in all: {lost}");
    assert!(data["drops"].as_object().unwrap().keys().all(|k| k == "esp_no_sa"), "{data}");
    assert_eq!(data["dropped"].as_u64(), Some(u64::from(lost)), "each lost echo is one counted drop: {data}");

    // A gateway restart picks the SAs up from the kernel's dump. Its outbound SA was used by the
    // previous run (the kernel holds the NEWAE totals): continuing it would restart its sequence
    // numbers (AES-GCM/ChaCha20 nonces) under the same key, so it is refused and a rekey asked
    // for (soft EXPIRE); charon rekeys and the traffic goes on under fresh SAs.
    let before = mirrored(&show_sas(&vm, gw));
    let t = Instant::now();
    restart_gateway(&vm, gw);
    let (reply, took) = wait_sas(&vm, gw, Duration::from_secs(60), |m| {
        m.iter().any(|s| s.contains("/out") && !before.contains(s))
    });
    let after = mirrored(&reply);
    assert!(
        after.iter().any(|s| s.contains("/out") && !before.contains(s)),
        "rekeyed after the restart: {before:?} -> {reply}\n{}",
        logs(&vm)
    );
    let log = vm.check(&format!("cat {DIR}/gw/gateway.log")).unwrap();
    assert!(log.contains("already used"), "the used outbound SA was refused: {}", logs(&vm));
    eprintln!(
        "restart: {before:?} -> {after:?}, a fresh outbound SA {took:.1?} after the restart ({:.1?} in all)",
        t.elapsed()
    );
    let (sent, got) = ping("lan", "-c 10 -i 0.2 -W 3 10.2.0.1");
    assert_eq!((sent, got), (10, 10), "the fresh SAs carry\n{}", logs(&vm));
    one_sender(&vm, gw, 10);
    terminate(&vm, gw);
    eprintln!("test took {:.1?} (boot {:.1?})", test_start.elapsed(), vm.boot_time());
}
