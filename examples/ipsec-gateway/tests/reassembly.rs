//! Outer IPv4 reassembly before decryption (issue 20; RFC 4301 §5.2, RFC 4303 §3.4.1), end to
//! end on the mem backend: ESP packets from gateway A, split into outer IPv4 fragments (as a
//! Linux peer does when a DF-clear ESP packet is too big for its path) and injected on B's WAN
//! in any order, come out of B's LAN decrypted, exactly as the unfragmented packets do; the
//! stage counters say so. Duplicates and overlaps are counted drops; `[reassembly]` is validated and can be
//! turned off.

use ipsec_gateway::config::{GatewayConfig, Side};
use ipsec_gateway::demo::check;
use ipsec_gateway::demo::configs::{self, Site};
use wirespeed_core::DropReason;
use wirespeed_core::wire::checksum::checksum;
use wirespeed_stages::frag::plan_v4;

mod common;
use common::*;

/// The frame `f` (Ethernet + IPv4) with DF cleared, split into fragments of at most `mtu`
/// bytes of IP.
fn fragments(f: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let mut ip = f[14..].to_vec();
    ip[6] &= !0x40;
    ip[10..12].fill(0);
    let c = checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let plan = plan_v4(&ip, mtu).expect("fragmentable");
    (0..plan.count())
        .map(|n| {
            let mut out = f[..14].to_vec();
            if n == 0 {
                let mut first = ip.clone();
                let len = plan.first_in_place(&mut first);
                out.extend_from_slice(&first[..len]);
            } else {
                out.resize(14 + plan.len(n), 0);
                let len = plan.write(&ip, n, &mut out[14..]);
                out.truncate(14 + len);
            }
            out
        })
        .collect()
}

/// Reassembly counters summed over B's shards.
fn reasm_counters(rig: &Rig) -> (u64, u64) {
    let s = rig.gw().stage_stats();
    (s.iter().map(|c| c.reasm_fragments).sum(), s.iter().map(|c| c.reassembled).sum())
}

#[test]
fn fragmented_esp_is_reassembled_then_decrypted() {
    let (flows, esp, _) = through_a();
    // Reference: what B makes of the unfragmented packets.
    let mut plain = Rig::start(Site::B);
    for f in &esp {
        plain.send(Side::Wan, f);
    }
    plain.settle();
    let mut expected = plain.take(Side::Lan);
    plain.stop();

    let mut b = Rig::start(Site::B);
    let mut sent = 0;
    let mut fragmented = 0;
    for (i, f) in esp.iter().enumerate() {
        if f.len() - 14 <= 120 {
            b.send(Side::Wan, f);
            continue;
        }
        // Small pieces so every packet splits; every other packet's fragments reversed.
        let mut frags = fragments(f, 96.max((f.len() - 14) / 3 + 24));
        assert!(frags.len() >= 2);
        if i % 2 == 1 {
            frags.reverse();
        }
        sent += frags.len() as u64;
        fragmented += 1;
        for p in &frags {
            b.send(Side::Wan, p);
        }
    }
    assert!(fragmented > 10, "the demo traffic has packets to fragment");
    b.settle();
    let mut out = b.take(Side::Lan);
    let (frags, whole) = reasm_counters(&b);
    let t = b.stop();
    assert_eq!(t.total_drops(), 0, "{t}");
    assert_eq!((frags, whole), (sent, fragmented), "{t}");
    let v = check::lan_frames(&flows, out.clone().into_iter().map(Ok)).unwrap();
    assert!(v.ok(), "{v:#?}");
    out.sort();
    expected.sort();
    assert_eq!(out, expected, "the same LAN frames as without fragmentation");
}

#[test]
fn duplicate_and_overlapping_fragments_are_counted_drops() {
    let (_, esp, _) = through_a();
    let big = esp.iter().max_by_key(|f| f.len()).unwrap();
    let frags = fragments(big, 96.max((big.len() - 14) / 2 + 24));
    let mut b = Rig::start(Site::B);
    // The first fragment twice (a duplicate, dropped alone), then a forged fragment overlapping
    // the second: the datagram is discarded.
    b.send(Side::Wan, &frags[0]);
    b.send(Side::Wan, &frags[0]);
    let mut forged = frags[1].clone();
    let fo = u16::from_be_bytes([forged[20], forged[21]]);
    forged[20..22].copy_from_slice(&(fo - 1).to_be_bytes());
    forged[24..26].fill(0);
    let c = checksum(&forged[14..34]);
    forged[24..26].copy_from_slice(&c.to_be_bytes());
    b.send(Side::Wan, &forged);
    b.settle();
    assert!(b.take(Side::Lan).is_empty());
    let t = b.stop();
    assert_eq!(t.drops_of(DropReason::ReasmDuplicate), 1, "{t}");
    assert_eq!(t.drops_of(DropReason::ReasmOverlap), 2, "{t}");
    assert!(t.to_string().contains("reasm_overlap=2"), "{t}");
}

#[test]
fn reassembly_can_be_turned_off_and_is_validated() {
    let base = configs::config(Site::B, SHARDS, None);
    for (section, key) in [
        ("contexts = 0", "reassembly.contexts"),
        ("contexts = 1025", "reassembly.contexts"),
        ("timeout = 0.05", "reassembly.timeout"),
        ("timeout = 31.0", "reassembly.timeout"),
        ("timeout = nan", "reassembly.timeout"),
    ] {
        let text = format!("{base}\n[reassembly]\n{section}\n");
        let e = GatewayConfig::from_toml(&text, None, "t").expect_err(section).to_string();
        assert!(e.contains(key), "{section}: {e}");
    }
    let ok =
        GatewayConfig::from_toml(&format!("{base}\n[reassembly]\ncontexts = 64\ntimeout = 1.5\n"), None, "t")
            .unwrap();
    let r = ok.reassembly.unwrap();
    assert_eq!((r.contexts, r.timeout.as_millis()), (64, 1500));
    assert!(GatewayConfig::from_toml(&base, None, "t").unwrap().reassembly.is_some(), "on by default");

    // Off: ESP fragments reach the decrypt stage as they are and are not decrypted.
    let (_, esp, _) = through_a();
    let big = esp.iter().max_by_key(|f| f.len()).unwrap();
    let frags = fragments(big, 96.max((big.len() - 14) / 2 + 24));
    let mut b = Rig::start_with(&format!("{base}\n[reassembly]\nenabled = false\n"));
    for f in &frags {
        b.send(Side::Wan, f);
    }
    b.settle();
    assert!(b.take(Side::Lan).is_empty());
    assert_eq!(reasm_counters(&b), (0, 0));
    let t = b.stop();
    assert_eq!(t.total_drops(), frags.len() as u64, "{t}");
}

#[test]
fn an_incomplete_datagram_times_out_without_more_traffic() {
    let (_, esp, _) = through_a();
    let big = esp.iter().max_by_key(|f| f.len()).unwrap();
    let frags = fragments(big, 96.max((big.len() - 14) / 2 + 24));
    let base = configs::config(Site::B, SHARDS, None);
    let mut b = Rig::start_with(&format!("{base}\n[reassembly]\ntimeout = 0.1\n"));
    b.send(Side::Wan, &frags[0]);
    b.settle();
    // The shard expires it on its own clock, with nothing more arriving.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while b.totals().drops_of(DropReason::ReasmTimeout) == 0 {
        assert!(std::time::Instant::now() < deadline, "{}", b.totals());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The rest arrives too late: a new datagram that cannot complete, dropped at stop.
    for f in &frags[1..] {
        b.send(Side::Wan, f);
    }
    b.settle();
    assert!(b.take(Side::Lan).is_empty());
    let t = b.stop();
    assert_eq!(t.drops_of(DropReason::ReasmTimeout), 1, "{t}");
    assert!(
        t.drops_of(DropReason::ReasmTimeout) + t.drops_of(DropReason::Shutdown) == frags.len() as u64,
        "{t}"
    );
}
