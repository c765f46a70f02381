//! The driver's RSS hash through XDP metadata (`rx_hash = true`): on a veth in driver mode the
//! device-bound program's `bpf_xdp_metadata_rx_hash` result reaches every packet's
//! `PacketMeta::rss_hash` (flagged `HW_RSS`), the packet bytes are untouched, the hash is the
//! same for every packet of a flow, and the self-test compares it with the software Toeplitz —
//! and reports a mismatch, because veth's "RSS hash" is the kernel's software flow hash. In
//! generic mode the hash is unavailable and the report says why.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wirespeed_afxdp::selftest::HashSelfTest;
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig, AttachMode, RxHashState, XdpMode};
use wirespeed_core::meta::flags::HW_RSS;
use wirespeed_core::rss::{RssConfig, RssHasher};
use wirespeed_core::{Batch, PacketBuf, Port, RxQueue, TxQueue};

type Outcome = (wirespeed_afxdp::AttachReport, HashMap<u16, Vec<Option<u32>>>, HashSelfTest, u64);

/// 16 flows (source ports 1000..1016), `n` frames of `len(i)` bytes, echoed (at `mtu` when
/// given); returns per source port the hashes seen, and the self-test.
fn run(mode: XdpMode, n: u32, len: fn(u32) -> usize, mtu: Option<u32>) -> Outcome {
    let veth = common::Veth::new(1);
    if let Some(m) = mtu {
        let m = m.to_string();
        common::run(&["ip", "link", "set", "dev", &veth.local, "mtu", &m]);
        common::run(&["ip", "-n", &veth.ns, "link", "set", "dev", &veth.peer, "mtu", &m]);
    }
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut cfg = AfXdpPortConfig::new(&veth.local);
    cfg.mode = mode;
    cfg.rx_hash = true;
    let mut port = AfXdpPort::open(cfg).unwrap();
    let report = port.report().clone();
    let (mut rx, mut tx) = port.queue_pair(0).unwrap();
    let frames: Vec<Vec<u8>> =
        (0..n).map(|i| common::udp_frame(ours, theirs, 1000 + (i % 16) as u16, i, len(i))).collect();
    let expected = frames.clone();
    let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
    let peer = std::thread::spawn(move || {
        common::peer_exchange(ns, dev, frames, n as usize, |_| true, Duration::from_secs(10), None)
    });
    let mut selftest = HashSelfTest::new(RssHasher::new(&RssConfig::default()).unwrap());
    let mut seen: HashMap<u16, Vec<Option<u32>>> = HashMap::new();
    let mut batch = Batch::new();
    let end = Instant::now() + Duration::from_secs(15);
    while !peer.is_finished() && Instant::now() < end {
        rx.rx_burst(&mut batch);
        for p in batch.iter() {
            selftest.observe(p);
            let sport = u16::from_be_bytes([p.data()[34], p.data()[35]]);
            let m = p.meta();
            assert_eq!(m.rss_hash.is_some(), m.flags & HW_RSS != 0);
            seen.entry(sport).or_default().push(m.rss_hash);
        }
        while !batch.is_empty() {
            tx.tx_burst(&mut batch);
        }
        tx.idle();
    }
    let back = peer.join().unwrap();
    assert!(back == expected, "every frame came back byte for byte ({} of {n})", back.len());
    let stats = rx.rx_hash_stats();
    (report, seen, selftest, stats.hashed)
}

#[test]
fn the_drivers_rss_hash_reaches_the_packet_metadata_in_driver_mode() {
    require_kernel!();
    let (report, seen, selftest, hashed) = run(XdpMode::Copy, 320, |_| 200, None);
    assert_eq!(report.attach, AttachMode::Driver);
    assert_eq!(report.rx_hash, RxHashState::On, "{report}");
    assert_eq!(hashed, 320, "every packet came with the driver's hash");
    assert_eq!(seen.len(), 16);
    let mut distinct = std::collections::HashSet::new();
    for (sport, hashes) in &seen {
        let first = hashes[0].expect("hashed");
        assert!(hashes.iter().all(|h| *h == Some(first)), "flow {sport}: one hash for all its packets");
        distinct.insert(first);
    }
    assert!(distinct.len() >= 12, "16 flows, {} distinct hashes", distinct.len());
    let r = selftest.report();
    eprintln!("veth: {}", r.to_string().lines().next().unwrap_or_default());
    assert_eq!(r.compared, 320);
    // veth's hash is the kernel's seeded software flow hash, not Toeplitz: the self-test must
    // say so rather than pass.
    assert!(!r.passed() && r.mismatched == 320, "{r}");
}

#[test]
fn generic_mode_reports_the_hash_unavailable() {
    require_kernel!();
    let (report, seen, selftest, hashed) = run(XdpMode::Skb, 64, |_| 200, None);
    assert_eq!(report.attach, AttachMode::Generic);
    assert!(matches!(&report.rx_hash, RxHashState::Unavailable(why) if why.contains("generic")), "{report}");
    assert!(report.to_string().contains("no RX hash"), "{report}");
    assert_eq!(hashed, 0);
    assert!(seen.values().flatten().all(Option::is_none));
    assert_eq!(selftest.report().no_hw_hash, 64);
}

/// The prefix and a descriptor chain together: at MTU 9000 jumbo frames arrive hashed and byte
/// for byte, and so do frames one prefix short of filling a UMEM frame.
#[test]
fn the_hash_rides_on_jumbo_chains_too() {
    require_kernel!();
    let len = |i: u32| [9014, 1792, 1784, 64][i as usize % 4];
    let (report, seen, selftest, hashed) = run(XdpMode::Copy, 160, len, Some(9000));
    assert_eq!(report.rx_hash, RxHashState::On, "{report}");
    assert_eq!(hashed, 160);
    assert!(seen.values().flatten().all(Option::is_some));
    assert_eq!(selftest.report().compared, 160);
}
