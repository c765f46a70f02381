//! The configuration: the example files load, and every kind of mistake is refused with an
//! error naming the key and the bad value (never a panic).

use std::path::Path;

use ipsec_gateway::config::{ConfigError, GatewayConfig, PortConfig, Side};
use wirespeed_stages::esp::{Direction, EspMode, PolicyAction};

const BASE: &str = r#"
[gateway]
shards = 2

[interfaces.lan]
mac = "02:00:00:00:0a:01"
addresses = ["10.1.0.1/16"]
port = { backend = "mem" }

[interfaces.wan]
mac = "02:00:00:00:0a:02"
addresses = ["192.0.2.100/24"]
port = { backend = "mem" }

[[routes]]
prefix = "10.2.0.0/16"
via = "192.0.2.1"

[[neighbors]]
ip = "192.0.2.1"
mac = "02:00:00:00:ff:01"
interface = "wan"

[[policies]]
name = "p"
src = "10.1.0.0/16"
dst = "10.2.0.0/16"
action = "protect"
sas = [0x100, 0x101]

[[sa]]
spi = 0x100
direction = "outbound"
shard = 0
aead = "aes128gcm"
key = "000102030405060708090a0b0c0d0e0f10111213"
local = "192.0.2.100"
remote = "203.0.113.1"

[[sa]]
spi = 0x101
direction = "outbound"
shard = 1
aead = "aes128gcm"
key = "101112131415161718191a1b1c1d1e1f20212223"
local = "192.0.2.100"
remote = "203.0.113.1"

[[sa]]
spi = 0x200
direction = "inbound"
aead = "aes128gcm"
key = "202122232425262728292a2b2c2d2e2f30313233"
local = "192.0.2.100"
remote = "203.0.113.1"
policy = "p"
"#;

fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
    GatewayConfig::from_toml(text, None, "<test>")
}

/// `BASE` with `from` replaced by `to` (which must occur).
fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "test setup: {from:?} not in BASE");
    BASE.replacen(from, to, 1)
}

#[test]
fn base_config_is_valid_and_typed() {
    let c = parse(BASE).expect("valid");
    assert_eq!(c.shards, 2);
    assert_eq!(c.lan.mac, [2, 0, 0, 0, 0x0a, 1]);
    assert_eq!(c.lan.port, PortConfig::Mem(Default::default()));
    assert_eq!(c.management.side, Side::Lan);
    assert_eq!(c.sas.len(), 3);
    assert_eq!(c.sas[0].direction, Direction::Outbound { shard: 0 });
    // local is this gateway, remote the peer, in both directions.
    for i in [0, 2] {
        assert_eq!(
            c.sas[i].mode,
            EspMode::Tunnel { local: "192.0.2.100".parse().unwrap(), remote: "203.0.113.1".parse().unwrap() }
        );
    }
    // The inbound SA checks the policy reversed.
    let sel = c.sas[2].selector.expect("policy attached");
    assert_eq!(sel.src.addr, "10.2.0.0".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(sel.dst.addr, "10.1.0.0".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(c.policies[0].policy.action, PolicyAction::Protect { spis: vec![0x100, 0x101] });
    // Steering: management queue is the one after the data queues.
    c.steering.validate(3).expect("plan fits 3 queues");
    assert!(c.steering.validate(2).is_err(), "plan uses the management queue 2");
}

/// Every case: the text change, then strings the error message must contain (key and value).
#[test]
fn every_config_error_names_key_and_value() {
    let cases: Vec<(String, &[&str])> = vec![
        (with("shards = 2", "shards = 0"), &["gateway.shards", "0"]),
        (with("shards = 2", "shards = 2\ncores = [1]"), &["gateway.cores", "[1]"]),
        (with("shards = 2", "shards = 2\nstats_interval = -1.0"), &["gateway.stats_interval", "-1"]),
        (with("shards = 2", "shards = 2\nbuffers = 10"), &["gateway.buffers", "10"]),
        (with("shards = 2", "shards = 2\nbogus = 1"), &["bogus"]),
        (with("\"02:00:00:00:0a:01\"", "\"02:00:00:0a:01\""), &["interfaces.lan.mac", "02:00:00:0a:01"]),
        (with("\"02:00:00:00:0a:01\"", "\"01:00:00:00:0a:01\""), &["interfaces.lan.mac", "unicast"]),
        (
            with("\"02:00:00:00:0a:02\"", "\"02:00:00:00:0a:01\""),
            &["interfaces.wan.mac", "02:00:00:00:0a:01"],
        ),
        (with("[\"10.1.0.1/16\"]", "[\"10.1.0.1\"]"), &["interfaces.lan.addresses[0]", "10.1.0.1"]),
        (with("[\"10.1.0.1/16\"]", "[\"10.1.0.1/33\"]"), &["interfaces.lan.addresses[0]", "10.1.0.1/33"]),
        (with("{ backend = \"mem\" }", "{ backend = \"dpdkk\" }"), &["dpdkk"]),
        (with("{ backend = \"mem\" }", "{ backend = \"pcap\" }"), &["interfaces.lan.port.input", "missing"]),
        (with("{ backend = \"mem\" }", "{ backend = \"mem\", speed = 3 }"), &["speed"]),
        (
            with("{ backend = \"mem\" }", "{ backend = \"pcap\", iface = \"eth0\", input = \"x.pcap\" }"),
            &["interfaces.lan.port.iface", "eth0"],
        ),
        (
            with("{ backend = \"mem\" }", "{ backend = \"pcap\", input = \"x.pcap\" }"),
            &["interfaces.wan.port.backend", "mem"],
        ),
        (with("[[routes]]", "[rss]\nkey = \"zz\"\n\n[[routes]]"), &["rss.key", "zz"]),
        (with("[[routes]]", "[rss]\nsymmetric = \"both\"\n\n[[routes]]"), &["rss.symmetric", "both"]),
        (with("[[routes]]", "[rss]\nhash_types = [\"ipv5\"]\n\n[[routes]]"), &["rss.hash_types", "ipv5"]),
        (with("[[routes]]", "[rss]\nreta_size = 100\n\n[[routes]]"), &["rss.reta_size", "100"]),
        (
            with("[[routes]]", "[management]\ninterface = \"dmz\"\n\n[[routes]]"),
            &["management.interface", "dmz"],
        ),
        (with("[[routes]]", "[management]\nhttp_port = 0\n\n[[routes]]"), &["management.http_port", "0"]),
        (
            with("[[routes]]", "[management]\nhost_listen = \"localhost\"\n\n[[routes]]"),
            &["management.host_listen", "localhost"],
        ),
        (
            with("[[routes]]", "[management]\ngateway_v4 = \"fd00::1\"\n\n[[routes]]"),
            &["management.gateway_v4", "fd00::1"],
        ),
        (
            with(
                "[[routes]]",
                "[steering]\nrules = [{ name = \"x\", action = { queue = 7 } }]\n\n[[routes]]",
            ),
            &["steering.rules"],
        ),
        (with("\"10.2.0.0/16\"\nvia", "\"10.2.0.0/x\"\nvia"), &["routes[0].prefix", "10.2.0.0/x"]),
        (
            with("via = \"192.0.2.1\"", "via = \"198.51.100.9\""),
            &["routes[0].via", "198.51.100.9", "neighbors"],
        ),
        (with("via = \"192.0.2.1\"", "via = \"fd00::1\""), &["routes[0].via", "fd00::1", "family"]),
        (with("interface = \"wan\"", "interface = \"wan0\""), &["neighbors[0].interface", "wan0"]),
        (with("mac = \"02:00:00:00:ff:01\"", "mac = \"zz\""), &["neighbors[0].mac", "zz"]),
        (with("action = \"protect\"", "action = \"encrypt\""), &["policies[0].action", "encrypt"]),
        (with("sas = [0x100, 0x101]", "sas = [0x100]"), &["policies[0].sas", "shard 1"]),
        (with("sas = [0x100, 0x101]", "sas = [0x100, 0x999]"), &["policies[0].sas", "0x999"]),
        (with("sas = [0x100, 0x101]", "sas = [0x100, 0x100]"), &["policies[0].sas", "0x100", "shard 0"]),
        (with("sas = [0x100, 0x101]", "sas = []"), &["policies[0].sas", "missing"]),
        (with("dst = \"10.2.0.0/16\"", "dst = \"fd00::/8\""), &["policies[0].dst", "fd00::/8"]),
        (with("spi = 0x101", "spi = 0"), &["sa[1].spi", "0"]),
        (with("spi = 0x101", "spi = 0x100"), &["sa[1].spi", "0x100", "duplicate"]),
        (with("shard = 1", "shard = 5"), &["sa[1].shard", "5"]),
        (with("shard = 1\n", ""), &["sa[1].shard", "missing"]),
        (with("direction = \"inbound\"", "direction = \"sideways\""), &["sa[2].direction", "sideways"]),
        (with("direction = \"inbound\"", "direction = \"inbound\"\nshard = 0"), &["sa[2].shard", "0"]),
        (with("aead = \"aes128gcm\"", "aead = \"des\""), &["sa[0].aead", "des"]),
        (
            with("key = \"000102030405060708090a0b0c0d0e0f10111213\"", "key = \"0001\""),
            &["sa[0].key", "<2 bytes>", "20 bytes"],
        ),
        (
            with("key = \"000102030405060708090a0b0c0d0e0f10111213\"", "key = \"xyz\""),
            &["sa[0].key", "not hex"],
        ),
        (
            with("key = \"000102030405060708090a0b0c0d0e0f10111213\"", "key_file = \"/nonexistent/key\""),
            &["sa[0].key_file", "/nonexistent/key"],
        ),
        (with("key = \"000102030405060708090a0b0c0d0e0f10111213\"\n", ""), &["sa[0].key", "missing"]),
        (with("remote = \"203.0.113.1\"\n", ""), &["sa[0].remote", "missing"]),
        (with("local = \"192.0.2.100\"", "local = \"fd00::1\""), &["sa[0].remote", "family"]),
        (with("local = \"192.0.2.100\"", "local = \"gw\""), &["sa[0].local", "gw"]),
        (with("policy = \"p\"", "policy = \"q\""), &["sa[2].policy", "q"]),
        (with("shard = 0\n", "shard = 0\npolicy = \"p\"\n"), &["sa[0].policy", "inbound"]),
        (with("shard = 0\n", "shard = 0\nmode = \"tunnel-ish\"\n"), &["sa[0].mode", "tunnel-ish"]),
        (with("shard = 0\n", "shard = 0\nesn = true\nreplay_window = 0\n"), &["sa[0].spi", "0x100"]),
        (
            with("shard = 0\n", "shard = 0\nlifetime = { soft_packets = 10, hard_packets = 5 }\n"),
            &["sa[0].lifetime.soft_packets", "10", "hard_packets = 5"],
        ),
        (with("shard = 0\n", "shard = 0\nnat_t_port = 0\n"), &["sa[0].nat_t_port", "0"]),
        (with("shard = 0\n", "shard = 0\nprovider = \"qat\"\n"), &["sa[0].provider", "qat"]),
        (with("shard = 0\n", "shard = 0\nmtu = 10\n"), &["sa[0].spi", "0x100"]),
        ("this is = not toml [".to_string(), &["<test>"]),
    ];
    for (text, needles) in &cases {
        let err = match parse(text) {
            Ok(_) => panic!("accepted, but should name {needles:?}:\n{text}"),
            Err(e) => e.to_string(),
        };
        for n in *needles {
            assert!(err.contains(n), "error {err:?} does not mention {n:?}");
        }
    }
}

#[test]
fn key_material_never_appears_in_errors() {
    let secret = "00112233445566778899aabbccddeeff0011223344";
    let err = parse(&with("000102030405060708090a0b0c0d0e0f10111213", secret)).unwrap_err().to_string();
    assert!(!err.contains(secret), "{err}");
}

#[test]
fn key_file_is_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k.hex"), "000102030405060708090a0b0c0d0e0f10111213\n").unwrap();
    let text = with("key = \"000102030405060708090a0b0c0d0e0f10111213\"", "key_file = \"k.hex\"");
    std::fs::write(dir.path().join("gw.toml"), text).unwrap();
    let c = GatewayConfig::load(&dir.path().join("gw.toml")).expect("key file found");
    assert_eq!(c.sas[0].keymat[..4], [0, 1, 2, 3]);
    assert!(matches!(GatewayConfig::load(Path::new("/nonexistent.toml")), Err(ConfigError::Read { .. })));
}

#[test]
fn example_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            n += 1;
            if name.starts_with("dpdk") && !cfg!(feature = "dpdk") {
                // Parsed, and refused for the one reason that applies.
                let e = GatewayConfig::load(&p).unwrap_err().to_string();
                assert!(
                    e.contains("interfaces.lan.port.backend = dpdk") && e.contains("--features dpdk"),
                    "{e}"
                );
                continue;
            }
            let c = GatewayConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(!c.sas.is_empty() && !c.policies.is_empty() && !c.routes.is_empty(), "{}", p.display());
            assert!(name.starts_with(c.lan.port.backend()), "{name}: {:?}", c.lan.port);
        }
    }
    assert!(n >= 4, "one example config per backend (pcap, mem, afxdp, dpdk)");
}

/// `BASE` with both ports replaced by `lan` / `wan` (inline tables).
fn with_ports(lan: &str, wan: &str) -> String {
    let mut it = BASE.splitn(3, "port = { backend = \"mem\" }");
    let (a, b, c) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    format!("{a}port = {lan}{b}port = {wan}{c}")
}

fn invalid_key(text: &str) -> (String, String) {
    match parse(text) {
        Err(ConfigError::Invalid { key, value, .. }) => (key, value),
        other => panic!("want Invalid, got {other:?}"),
    }
}

#[test]
fn afxdp_ports_parse_into_the_backend_config() {
    let c = parse(&with_ports(
        r#"{ backend = "afxdp", interface = "veth-lan", queues = 3, mode = "copy" }"#,
        r#"{ backend = "afxdp", interface = "veth-wan", frames = 8192, kernel_pass = { tcp_dst_ports = [22] } }"#,
    ))
    .expect("valid");
    let PortConfig::Afxdp(lan) = &c.lan.port else { panic!("{:?}", c.lan.port) };
    assert_eq!(
        (lan.interface.as_str(), lan.queues, lan.mode),
        ("veth-lan", Some(3), wirespeed_afxdp::XdpMode::Copy)
    );
    let PortConfig::Afxdp(wan) = &c.wan.port else { panic!("{:?}", c.wan.port) };
    assert_eq!((wan.queues, wan.frames, wan.kernel_pass.tcp_dst_ports.as_slice()), (None, 8192, &[22][..]));
    assert_eq!(c.lan.port.backend(), "afxdp");
}

#[test]
fn afxdp_errors_name_key_and_value() {
    let wan = r#"{ backend = "afxdp", interface = "veth-wan" }"#;
    let cases = [
        (r#"{ backend = "afxdp", interface = "veth-lan", queues = 2 }"#, "interfaces.lan.port.queues", "2"),
        (
            r#"{ backend = "afxdp", interface = "veth-lan", frame_size = 3000 }"#,
            "interfaces.lan.port.frame_size",
            "3000",
        ),
        (
            r#"{ backend = "afxdp", interface = "a-name-far-too-long" }"#,
            "interfaces.lan.port.interface",
            "a-name-far-too-long",
        ),
        (
            r#"{ backend = "afxdp", interface = "veth-lan", rx_ring = 100 }"#,
            "interfaces.lan.port.rx_ring",
            "100",
        ),
        (r#"{ backend = "afxdp", interface = "veth-wan" }"#, "interfaces.wan.port.interface", "veth-wan"),
    ];
    for (lan, key, value) in cases {
        assert_eq!(invalid_key(&with_ports(lan, wan)), (key.to_string(), value.to_string()), "{lan}");
    }
    // Unknown keys and modes are syntax errors naming the key.
    let e = parse(&with_ports(r#"{ backend = "afxdp", interface = "x", queue = 3 }"#, wan))
        .unwrap_err()
        .to_string();
    assert!(e.contains("queue"), "{e}");
    let e = parse(&with_ports(r#"{ backend = "afxdp", interface = "x", mode = "fast" }"#, wan))
        .unwrap_err()
        .to_string();
    assert!(e.contains("fast"), "{e}");
    // One backend for both sides.
    let (k, v) =
        invalid_key(&with_ports(r#"{ backend = "afxdp", interface = "x" }"#, r#"{ backend = "mem" }"#));
    assert_eq!((k.as_str(), v.as_str()), ("interfaces.wan.port.backend", "mem"));
}

#[cfg(not(feature = "dpdk"))]
#[test]
fn dpdk_without_the_feature_says_how_to_get_it() {
    let p = r#"{ backend = "dpdk", device = "net_null0", queues = 3 }"#;
    let e = parse(&with_ports(p, p)).unwrap_err();
    assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "interfaces.lan.port.backend"), "{e}");
    assert!(e.to_string().contains("--features dpdk"), "{e}");
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_ports_parse_and_errors_name_key_and_value() {
    let eal = r#"eal = ["--no-huge", "-m", "512", "--no-pci", "--vdev", "net_null0", "--vdev", "net_null1"]"#;
    let lan = format!(r#"{{ backend = "dpdk", {eal}, device = "net_null0", queues = 3 }}"#);
    let wan = r#"{ backend = "dpdk", device = "net_null1", queues = 3, rx_desc = 512 }"#;
    let c = parse(&with_ports(&lan, wan)).expect("valid");
    let PortConfig::Dpdk(l) = &c.lan.port else { panic!("{:?}", c.lan.port) };
    assert_eq!((l.device.as_str(), l.queues, l.eal.len()), ("net_null0", 3, 8));
    let PortConfig::Dpdk(w) = &c.wan.port else { panic!("{:?}", c.wan.port) };
    assert_eq!((w.rx_desc, w.eal.len()), (512, 0));

    let cases = [
        (lan.replace("queues = 3", "queues = 2"), wan.to_string(), "interfaces.lan.port.queues", "2"),
        (lan.replace("queues = 3", "queues = 0"), wan.to_string(), "interfaces.lan.port.queues", "0"),
        (lan.clone(), wan.replace("net_null1", ""), "interfaces.wan.port.device", "\"\""),
        (lan.clone(), wan.replace("net_null1", "net_null0"), "interfaces.wan.port.device", "net_null0"),
        (
            lan.clone(),
            wan.replace("rx_desc = 512", "mempool = { mbufs = 1000 }"),
            "interfaces.wan.port.mempool.mbufs",
            "1000",
        ),
        (
            lan.clone(),
            wan.replace("queues = 3", r#"queues = 3, eal = ["-l", "1"]"#),
            "interfaces.wan.port.eal",
            r#"["-l", "1"]"#,
        ),
        (
            lan.replace(
                "queues = 3",
                r#"queues = 3, host = { iface = "wan0" }, mempool = { mbufs = 16383 }"#,
            ),
            wan.replace(
                "queues = 3",
                r#"queues = 3, host = { iface = "wan0" }, mempool = { mbufs = 16383 }"#,
            ),
            "interfaces.wan.port.host.iface",
            "wan0",
        ),
        (
            lan.clone(),
            wan.replace("queues = 3", r#"queues = 3, host = { iface = "a name too long for linux" }"#),
            "interfaces.wan.port.host.iface",
            r#""a name too long for linux""#,
        ),
        (
            lan.clone(),
            wan.replace("queues = 3", r#"queues = 3, host = { iface = "wan0", rules = [] }"#),
            "interfaces.wan.port.host.rules",
            "[]",
        ),
    ];
    // The tap's rings come out of the same mempool: 3 × (512 + 1024) + 3 × (1024 + 2 × 512).
    // Left unset, the pool's count is derived from that and the configuration is valid.
    let with_host = wan.replace("queues = 3", r#"queues = 3, host = { iface = "wan0", copy = [] }"#);
    let c = parse(&with_ports(&lan, &with_host)).expect("valid with the default (derived) pool");
    let PortConfig::Dpdk(w) = &c.wan.port else { panic!("{:?}", c.wan.port) };
    assert_eq!(w.mempool.mbufs, None);
    assert_eq!(w.mbufs().unwrap(), 16383);
    // A count given explicitly is checked as given.
    assert_eq!(
        invalid_key(&with_ports(
            &lan,
            &with_host.replace("rx_desc = 512", "rx_desc = 512, mempool = { mbufs = 8191 }")
        )),
        ("interfaces.wan.port.mempool.mbufs".to_string(), "8191".to_string())
    );
    let with_host = with_host.replace("rx_desc = 512", "rx_desc = 512, mempool = { mbufs = 16383 }");
    let c = parse(&with_ports(&lan, &with_host)).expect("valid");
    let PortConfig::Dpdk(w) = &c.wan.port else { panic!("{:?}", c.wan.port) };
    let h = w.host.as_ref().expect("host path");
    assert_eq!((h.iface.as_str(), h.rules.len(), h.copy.len(), h.desc), ("wan0", 2, 0, 512));
    assert_eq!(h.rules, ["ike", "ike-natt"]);
    for (l, w, key, value) in cases {
        assert_eq!(invalid_key(&with_ports(&l, &w)), (key.to_string(), value.to_string()), "{l} / {w}");
    }
}
