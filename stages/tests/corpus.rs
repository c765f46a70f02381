//! Classify and forward every frame of every capture in the tcpdump test corpus
//! (`testing/corpus/tcpdump`, the captures of the tcpdump project's test suite: many of them are
//! deliberately malformed, fuzzer-found frames). Frames are read with `wirespeed-pcap` (classic
//! pcap and pcapng) and normalised to Ethernet II (Linux SLL, raw IP, loopback ... get a synthetic
//! Ethernet header). Nothing may panic; both classify paths must agree; offsets must stay inside
//! the frame. Parsed / dropped counts are printed per drop reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wirespeed_core::epoch::Publisher;
use wirespeed_core::meta::flags;
use wirespeed_core::{FlowClass, PacketMeta, Verdict};
use wirespeed_pcap::{CaptureReader, MAX_RECORD};
use wirespeed_stages::classify::ClassifyConfig;
use wirespeed_stages::forward::{FibBuilder, Forward, NextHop};

fn corpus_dir() -> PathBuf {
    wirespeed_test_corpus::dir()
}

/// Every frame of `path` that normalises to Ethernet, as owned bytes; plus frames the reader or
/// the normalisation rejected.
fn ethernet_frames(path: &Path) -> Option<(Vec<Vec<u8>>, u64)> {
    let mut r = CaptureReader::open(path).ok()?;
    let mut out = Vec::new();
    let mut rejected = 0;
    let mut buf = vec![0u8; MAX_RECORD as usize + 64];
    while let Some(item) = r.next_frame() {
        match item {
            Ok(frame) => match frame.to_ethernet(&mut buf) {
                Ok(n) => out.push(buf[..n].to_vec()),
                Err(_) => rejected += 1,
            },
            Err(e) => {
                rejected += 1;
                if !e.is_recoverable() {
                    break;
                }
            }
        }
    }
    Some((out, rejected))
}

#[test]
fn every_corpus_frame_classifies_and_forwards_without_panic() {
    let dir = corpus_dir();
    let cfg = ClassifyConfig {
        own_ipv4: vec!["10.0.0.1".parse().unwrap(), "192.168.1.1".parse().unwrap()],
        own_ipv6: vec!["fe80::1".parse().unwrap()],
        ..ClassifyConfig::default()
    };
    let mut b = FibBuilder::new();
    let gw4 = "192.0.2.254".parse().unwrap();
    let gw6 = "fe80::fe".parse().unwrap();
    b.route("0.0.0.0".parse().unwrap(), 0, NextHop::Gateway(gw4)).unwrap();
    b.route("10.0.0.0".parse().unwrap(), 8, NextHop::Direct).unwrap();
    b.route("::".parse().unwrap(), 0, NextHop::Gateway(gw6)).unwrap();
    b.neighbor(gw4, [0x02, 0, 0, 0, 0, 0xfe], 1);
    b.neighbor(gw6, [0x02, 0, 0, 0, 0, 0xfe], 1);
    let mut fib = Publisher::new(b.build().unwrap());
    let forward = Forward::new(fib.subscribe(), &[[0x02, 0, 0, 0, 0, 1], [0x02, 0, 0, 0, 0, 2]]);

    let mut files = 0;
    let mut skipped_files = 0;
    let mut not_ethernet = 0u64;
    let mut frames = 0u64;
    let mut parsed = 0u64;
    let mut dropped: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut classes: BTreeMap<String, u64> = BTreeMap::new();
    let mut forwarded = 0u64;
    let mut vlan_seen = 0u64;
    let mut esp_spis = 0u64;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let Some((list, bad)) = ethernet_frames(&path) else {
            skipped_files += 1;
            continue;
        };
        not_ethernet += bad;
        files += 1;
        for frame in &list {
            let frame = frame.as_slice();
            frames += 1;
            let mut fast = PacketMeta::default();
            let mut slow = PacketMeta::default();
            let rf = cfg.classify(frame, &mut fast);
            let rs = cfg.classify_etherparse(frame, &mut slow);
            assert_eq!(rf.map(|_| fast), rs.map(|_| slow), "paths disagree in {}", path.display());
            match rf {
                Ok(()) => {
                    parsed += 1;
                    assert!(fast.l3_offset as usize <= frame.len() && fast.l4_offset as usize <= frame.len());
                    *classes.entry(format!("{:?}", fast.flow_class)).or_default() += 1;
                    if fast.has(flags::VLAN) {
                        vlan_seen += 1;
                    }
                    if fast.flow_class == FlowClass::Esp && fast.spi != 0 {
                        esp_spis += 1;
                    }
                    let mut copy = frame.to_vec();
                    if let Verdict::Forward { .. } = forward.forward_frame(&mut copy, &fast) {
                        forwarded += 1;
                    }
                }
                Err(r) => *dropped.entry(r.name()).or_default() += 1,
            }
        }
    }
    println!(
        "corpus: {files} captures ({skipped_files} files of link types wirespeed-pcap does not read), {frames} frames \
         ({not_ethernet} more not normalisable to Ethernet or unreadable): {parsed} parsed, {} \
         dropped {dropped:?}; classes {classes:?}; {forwarded} forwarded",
        frames - parsed
    );
    assert!(files > 500, "only {files} captures read");
    assert!(parsed > frames / 2, "{parsed} of {frames} frames parsed");
    assert!(vlan_seen > 0, "no VLAN-tagged frame recognised (802.1ad_QinQ.pcap has some)");
    assert!(esp_spis > 0, "no ESP frame recognised (02-sunrise-sunset-esp.pcap has some)");
    assert!(forwarded > 0);
}

#[test]
fn esp_capture_yields_spis() {
    // 02-sunrise-sunset-esp.pcap: ESP between 192.1.2.23 and 192.0.2.1 (tcpdump's ESP tests).
    let dir = corpus_dir();
    let (frames, bad) = ethernet_frames(&dir.join("02-sunrise-sunset-esp.pcap")).expect("readable");
    assert_eq!(bad, 0);
    let cfg = ClassifyConfig::default();
    let mut spis = std::collections::BTreeSet::new();
    for f in &frames {
        let mut m = PacketMeta::default();
        cfg.classify(f, &mut m).unwrap();
        assert_eq!((m.flow_class, m.l4_proto), (FlowClass::Esp, 50));
        spis.insert(m.spi);
    }
    assert!(!frames.is_empty());
    assert!(!spis.contains(&0));
    println!("SPIs: {spis:x?}");
}
