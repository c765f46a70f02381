//! Issue 10's out-of-tree integration test: runs the appliance of `src/lib.rs` on a real capture
//! (the tcpdump corpus' `afs.pcap`: AFS/Rx over UDP between two /24s, ICMP, IP fragments, ARP and
//! other non-IP frames) and checks its output against expectations computed from the input here,
//! independently of the stages: the counters per reason (the firewall's own one included), each
//! shard's firewall report, the output captures' contents, and that ESP frames decrypt — with
//! the peer's SA, built from the same keys — to exactly the packets the appliance forwarded.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use integrator_appliance::{FirewallState, LOCAL, MACS, REMOTE, SPI, run};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::rss::{RssConfig, RssGroup, RssHasher, SteeringEngine, SteeringPlan, SymmetricMode};
use wirespeed_core::{Batch, BufferPool, DropReason, PacketBuf, PoolConfig, ShardCtx, Stage};
use wirespeed_pcap::{CaptureReader, queue_file};
use wirespeed_stages::esp::{AeadAlgorithm, Direction, SaConfig, SecurityAssociation};
use wirespeed_stages::{EspDecrypt, EspStats, SaSet, Spd};

/// AES-128 key ‖ salt shared with the peer (as IKE would).
const KEYMAT: [u8; 20] = *b"integrator-key-salt!";

fn corpus(name: &str) -> PathBuf {
    wirespeed_test_corpus::file(name)
}

fn frames(path: &Path) -> Vec<Vec<u8>> {
    let mut r = CaptureReader::open(path).unwrap();
    std::iter::from_fn(|| r.next_frame().map(|f| f.unwrap().data.to_vec())).collect()
}

/// RFC 1071 checksum, written here so the test does not trust the library's.
fn checksum(d: &[u8]) -> u16 {
    let mut s: u32 =
        d.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn v4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// The appliance's LAN, 131.151.1.0/25 (the capture also has hosts above it: no route).
fn in_lan(a: Ipv4Addr) -> bool {
    a.octets()[..3] == [131, 151, 1] && a.octets()[3] < 128
}

/// The servers, 131.151.32.0/24.
fn in_servers(a: Ipv4Addr) -> bool {
    a.octets()[..3] == [131, 151, 32]
}

/// The IPv4 packet of an untagged Ethernet frame.
fn ipv4(f: &[u8]) -> Option<&[u8]> {
    (f.len() >= 34 && f[12..14] == [8, 0] && f[14] >> 4 == 4).then(|| &f[14..])
}

#[test]
fn appliance_runs_to_completion_and_its_output_checks_out() {
    let input = corpus("afs.pcap");
    let dir = std::env::temp_dir().join(format!("wirespeed-integrator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.pcap");

    // `run` returns when `Runtime::wait_finished` does: end of input must reach shard 1 through
    // the dispatcher. A hang fails here instead of blocking the test suite.
    let (done, result) = std::sync::mpsc::channel();
    let (i, o) = (input.clone(), out.clone());
    std::thread::spawn(move || done.send(run(&i, &o, &KEYMAT).map_err(|e| e.to_string())));
    let mut reports = result
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("wait_finished returns at the end of the input")
        .expect("the appliance runs");
    let deny = DropReason::register("fw_icmp_denied").unwrap(); // the same reason again
    assert_eq!(deny.name(), "fw_icmp_denied");

    // Expectations from the input. The same symmetric RSS choice as the appliance's (spelled out
    // here rather than with `SteeringEngine::rss_only`), to check that each packet came out of
    // the shard owning its flow.
    let sent = frames(&input);
    let hasher = RssHasher::new(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() }).unwrap();
    let engine = SteeringEngine::new(hasher, SteeringPlan::rss_only(RssGroup::first(2)), 2).unwrap();
    let reta = engine.default_reta().unwrap();
    let (mut icmp, mut no_route) = ([0u64; 2], [0u64; 2]);
    // Forwarded IP packet (TTL one lower, checksum updated) → owning shards, with multiplicity.
    let mut expected: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for f in &sent {
        let owner = usize::from(engine.decide_frame(f, &reta).queue().unwrap());
        let ip = ipv4(f).expect("the capture is all IPv4");
        let ip = &ip[..usize::from(u16::from_be_bytes([ip[2], ip[3]]))];
        if ip[9] == 1 {
            icmp[owner] += 1;
        } else if !in_lan(v4(&ip[16..])) && !in_servers(v4(&ip[16..])) {
            no_route[owner] += 1;
        } else {
            assert!(ip[8] > 1, "no TTL runs out in this capture");
            let mut fwd = ip.to_vec();
            fwd[8] -= 1;
            fwd[10..12].fill(0);
            let c = checksum(&fwd[..usize::from(fwd[0] & 15) * 4]);
            fwd[10..12].copy_from_slice(&c.to_be_bytes());
            expected.entry(fwd).or_default().push(owner);
        }
    }
    let forwarded: usize = expected.values().map(Vec::len).sum();
    assert!(icmp.iter().sum::<u64>() > 0 && forwarded > 300, "the capture has ICMP and routable traffic");
    assert!(no_route.iter().sum::<u64>() > 0, "and traffic to hosts the appliance has no route to");

    // Counters: every frame received once, by the shard that processed it; each shard balances.
    let (c0, c1) = (*reports[0].counters(), *reports[1].counters());
    assert_eq!(c0.rx_packets + c1.rx_packets, sent.len() as u64, "{c0}\n{c1}");
    assert_eq!(c0.handed_off, c1.rx_packets);
    assert!(c0.rx_packets > 0 && c1.rx_packets > 0, "both shards get flows: {c0}\n{c1}");
    for (shard, c) in [&c0, &c1].into_iter().enumerate() {
        assert_eq!(c.rx_packets, c.tx_packets + c.total_drops(), "shard {shard}: {c}");
        // The firewall's own reason, counted per shard and shown under its name.
        assert_eq!(c.drops_of(deny), icmp[shard], "shard {shard}: {c}");
        assert!(
            icmp[shard] == 0 || c.to_string().contains(&format!("fw_icmp_denied={}", icmp[shard])),
            "{c}"
        );
        // A built-in reason beside it: traffic to hosts beyond the LAN /25.
        assert_eq!(c.drops_of(DropReason::NoRoute), no_route[shard], "shard {shard}: {c}");
        assert_eq!(
            c.total_drops(),
            icmp[shard] + no_route[shard],
            "shard {shard}: nothing else dropped: {c}"
        );
    }
    assert_eq!(c0.tx_packets + c1.tx_packets, forwarded as u64, "{c0}\n{c1}");

    // Each shard's firewall state, read from its report.
    // Shards may report different types: shard 0 adds its ESP stage's statistics.
    let report0 = reports[0].take_report::<(Option<FirewallState>, Option<EspStats>)>();
    let (Some(fw0), Some(esp_stats)) = report0.expect("shard 0's report") else {
        panic!("shard 0's report names its Firewall and EspEncrypt stages by type")
    };
    let fw1 = reports[1].take_report::<Option<FirewallState>>().flatten().expect("shard 1's firewall");
    for (shard, (s, c)) in [fw0, fw1].iter().zip([&c0, &c1]).enumerate() {
        assert_eq!(s.denied, icmp[shard], "shard {shard}");
        assert_eq!(s.passed, c.tx_packets + no_route[shard], "shard {shard}");
    }

    // The peer gateway: its inbound SA names the same tunnel from its own end.
    let inbound = SaConfig::tunnel(SPI, Direction::Inbound, AeadAlgorithm::Aes128Gcm, &KEYMAT, REMOTE, LOCAL);
    let set = SaSet::new([Arc::new(SecurityAssociation::new(&inbound).unwrap())], &Spd::new(vec![])).unwrap();
    let mut peer = EspDecrypt::new(Publisher::new(set).subscribe());
    let pool = BufferPool::new(PoolConfig::default()).unwrap();
    let mut cx = ShardCtx::new(0);

    let mut esp_frames = 0;
    for shard in 0..2 {
        for f in frames(&queue_file(&out, shard as u16)) {
            let ip = ipv4(&f).expect("only IPv4 is forwarded");
            let inner = if ip[9] == 50 {
                // ESP from this appliance to the peer, only from shard 0, only LAN → servers.
                assert_eq!(shard, 0);
                assert_eq!(f[..6], MACS[1], "the peer is reached through the servers' router");
                assert_eq!((IpAddr::from(v4(&ip[12..])), IpAddr::from(v4(&ip[16..]))), (LOCAL, REMOTE));
                let mut b = pool.alloc().unwrap();
                b.copy_from(&f).unwrap();
                let mut batch: Batch<_> = Batch::new();
                batch.push(b).unwrap();
                peer.process(&mut cx, &mut batch);
                assert_eq!(
                    batch.len(),
                    1,
                    "the peer authenticates and decrypts every ESP frame: {}",
                    cx.counters
                );
                esp_frames += 1;
                let inner = batch.as_slice()[0].data()[14..].to_vec();
                assert!(in_lan(v4(&inner[12..])) && in_servers(v4(&inner[16..])));
                inner
            } else {
                let to_lan = in_lan(v4(&ip[16..]));
                assert_eq!((f[..6] == MACS[0], f[..6] == MACS[1]), (to_lan, !to_lan), "next-hop MAC");
                assert!(
                    shard == 1 || to_lan || !in_lan(v4(&ip[12..])),
                    "shard 0 leaked LAN → servers in clear"
                );
                ip.to_vec()
            };
            assert_eq!(f[6..12], MACS[2]);
            let owners =
                expected.get_mut(&inner).expect("an output packet that was not forwarded (or twice)");
            assert_eq!(owners.pop(), Some(shard), "packet came out of the shard not owning its flow");
            if owners.is_empty() {
                expected.remove(&inner);
            }
        }
    }
    assert!(expected.is_empty(), "{} forwarded packets never came out", expected.len());
    assert!(esp_frames > 0);
    assert_eq!(esp_stats.encrypted, esp_frames);
    assert_eq!(esp_stats.encrypted + esp_stats.passed, c0.tx_packets, "the rest bypasses the tunnel");
    let _ = std::fs::remove_dir_all(dir);
}
