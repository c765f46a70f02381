//! Classify and forward every Ethernet frame of every capture in the tcpdump test corpus
//! (`shared/corpus/tcpdump`, the captures of the tcpdump project's test suite: many of them are
//! deliberately malformed, fuzzer-found frames). Nothing may panic; both classify paths must agree;
//! offsets must stay inside the frame. Parsed / dropped counts are printed per drop reason.
//!
//! The reader is a minimal classic-pcap and pcapng reader for Ethernet (link type 1) only,
//! written here so the test does not depend on the pcap backend crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wirespeed_core::epoch::Publisher;
use wirespeed_core::meta::flags;
use wirespeed_core::{FlowClass, PacketMeta, Verdict};
use wirespeed_stages::classify::ClassifyConfig;
use wirespeed_stages::forward::{FibBuilder, Forward, NextHop};

const LINKTYPE_ETHERNET: u32 = 1;

fn corpus_dir() -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The worktree may sit anywhere; the corpus is `shared/corpus/tcpdump` beside the repo
    // (CI) or under /work/shared.
    [here.join("../../shared/corpus/tcpdump"), PathBuf::from("/work/shared/corpus/tcpdump")]
        .into_iter()
        .find(|p| p.is_dir())
}

fn u32_at(b: &[u8], at: usize, le: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if le { u32::from_le_bytes(s) } else { u32::from_be_bytes(s) })
}

fn u16_at(b: &[u8], at: usize, le: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if le { u16::from_le_bytes(s) } else { u16::from_be_bytes(s) })
}

/// Ethernet frames of a classic pcap file (RFC draft-ietf-opsawg-pcap §4/§5); `None` when the
/// file is not classic pcap or not Ethernet.
fn classic_pcap(b: &[u8]) -> Option<Vec<&[u8]>> {
    let le = match b.get(0..4)? {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return None,
    };
    if u32_at(b, 20, le)? & 0x0fff_ffff != LINKTYPE_ETHERNET {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 24;
    while let Some(incl) = u32_at(b, at + 8, le) {
        let start = at + 16;
        let Some(frame) = b.get(start..start + incl as usize) else { break };
        out.push(frame);
        at = start + incl as usize;
    }
    Some(out)
}

/// Ethernet frames of a pcapng file (draft-ietf-opsawg-pcapng: SHB, IDB, EPB, SPB).
fn pcapng(b: &[u8]) -> Option<Vec<&[u8]>> {
    if b.get(0..4)? != [0x0a, 0x0d, 0x0d, 0x0a] {
        return None;
    }
    let mut out = Vec::new();
    let mut le = true;
    let mut links: Vec<u32> = Vec::new();
    let mut at = 0;
    while at + 12 <= b.len() {
        if b[at..at + 4] == [0x0a, 0x0d, 0x0d, 0x0a] {
            le = match b.get(at + 8..at + 12)? {
                [0x4d, 0x3c, 0x2b, 0x1a] => true,
                [0x1a, 0x2b, 0x3c, 0x4d] => false,
                _ => return Some(out),
            };
            links.clear();
        }
        let ty = u32_at(b, at, le)?;
        let len = u32_at(b, at + 4, le)? as usize;
        if len < 12 || at + len > b.len() {
            break;
        }
        let body = &b[at + 8..at + len - 4];
        match ty {
            1 => links.push(u16_at(body, 0, le)? as u32),
            6 => {
                let iface = u32_at(body, 0, le)? as usize;
                let cap = u32_at(body, 12, le)? as usize;
                if links.get(iface) == Some(&LINKTYPE_ETHERNET)
                    && let Some(f) = body.get(20..20 + cap)
                {
                    out.push(f);
                }
            }
            3 if links.first() == Some(&LINKTYPE_ETHERNET) => out.push(&body[4.min(body.len())..]),
            _ => {}
        }
        at += len;
    }
    Some(out)
}

#[test]
fn every_corpus_frame_classifies_and_forwards_without_panic() {
    let Some(dir) = corpus_dir() else {
        panic!("tcpdump corpus not found (expected shared/corpus/tcpdump beside the repository)");
    };
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
        let bytes = std::fs::read(&path).unwrap();
        let Some(list) = classic_pcap(&bytes).or_else(|| pcapng(&bytes)) else {
            skipped_files += 1;
            continue;
        };
        if list.is_empty() {
            skipped_files += 1;
            continue;
        }
        files += 1;
        for frame in list {
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
        "corpus: {files} Ethernet captures ({skipped_files} other files skipped), {frames} frames: \
         {parsed} parsed, {} dropped {dropped:?}; classes {classes:?}; {forwarded} forwarded",
        frames - parsed
    );
    assert!(files > 300, "only {files} Ethernet captures read");
    assert!(parsed > frames / 2, "{parsed} of {frames} frames parsed");
    assert!(vlan_seen > 0, "no VLAN-tagged frame recognised (802.1ad_QinQ.pcap has some)");
    assert!(esp_spis > 0, "no ESP frame recognised (02-sunrise-sunset-esp.pcap has some)");
    assert!(forwarded > 0);
}

#[test]
fn esp_capture_yields_spis() {
    // 02-sunrise-sunset-esp.pcap: ESP between 192.1.2.23 and 192.0.2.1 (tcpdump's ESP tests).
    let Some(dir) = corpus_dir() else { panic!("tcpdump corpus not found") };
    let bytes = std::fs::read(dir.join("02-sunrise-sunset-esp.pcap")).unwrap();
    let frames = classic_pcap(&bytes).expect("classic pcap, Ethernet");
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
