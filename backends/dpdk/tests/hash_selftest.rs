//! The hardware-hash self-test, with mbufs carrying hashes DPDK's own `rte_softrss` computed
//! (built the DPDK way: `rte_ipv4_tuple`/`rte_ipv6_tuple`), as a NIC would store them. Under the
//! configured key they agree with wirespeed's Toeplitz; under a wrong key every packet is
//! reported with its tuple and both hashes. Vectors: Microsoft's RSS verification suite.

mod common;

use common::*;
use wirespeed_core::PacketBuf;
use wirespeed_core::rss::{FlowTuple, L4, MS_KEY, RssConfig, RssHasher, SYMMETRIC_KEY, SymmetricMode};
use wirespeed_dpdk::{HashSelfTest, Mbuf, Mempool, MempoolConfig, rte_softrss};

/// (source, destination, source port, destination port, 4-tuple hash) from Microsoft's "Verifying
/// the RSS Hash Calculation" (the key is `MS_KEY`).
const MS_V4: [(&str, &str, u16, u16, u32); 5] = [
    ("66.9.149.187", "161.142.100.80", 2794, 1766, 0x51ccc178),
    ("199.92.111.2", "65.69.140.83", 14230, 4739, 0xc626b0ea),
    ("24.19.198.95", "12.22.207.184", 12898, 38024, 0x5c2b394a),
    ("38.27.205.30", "209.142.163.6", 48228, 2217, 0xafc7327f),
    ("153.39.163.191", "202.188.127.2", 44251, 1303, 0x10e828a2),
];
const MS_V6: [(&str, &str, u16, u16, u32); 3] = [
    ("3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 2794, 1766, 0x40207d3d),
    ("3ffe:501:8::260:97ff:fe40:efab", "ff02::1", 14230, 4739, 0xdde51bbf),
    ("3ffe:1900:4545:3:200:f8ff:fe21:67cf", "fe80::200:f8ff:fe21:67cf", 44251, 38024, 0x02d1feef),
];

/// An Ethernet frame carrying `t` (TCP, UDP or ESP) with a minimal valid header layout.
fn frame(t: &FlowTuple) -> Vec<u8> {
    let l4: Vec<u8> = match t.l4 {
        L4::Ports { sport, dport } if t.proto == 6 => {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[12] = 5 << 4;
            h
        }
        L4::Ports { sport, dport } => {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[4..6].copy_from_slice(&8u16.to_be_bytes());
            h
        }
        L4::Esp { spi } => {
            let mut h = spi.to_be_bytes().to_vec();
            h.extend_from_slice(&[0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd]);
            h
        }
        _ => unreachable!("test tuples are TCP, UDP or ESP"),
    };
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    match (t.src, t.dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let total = (20 + l4.len()) as u16;
            f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0, 0, 64, t.proto, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd]);
            let plen = l4.len() as u16;
            f.extend_from_slice(&[0x60, 0, 0, 0, (plen >> 8) as u8, plen as u8, t.proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => unreachable!(),
    }
    f.extend_from_slice(&l4);
    f
}

fn tuples() -> Vec<FlowTuple> {
    let mut v = Vec::new();
    for (s, d, sp, dp, _) in MS_V4.iter().chain(MS_V6.iter()) {
        let (s, d) = (s.parse().unwrap(), d.parse().unwrap());
        v.push(FlowTuple::tcp(s, d, *sp, *dp));
        v.push(FlowTuple::udp(s, d, *sp, *dp));
        v.push(FlowTuple::esp(s, d, 0x1000_0000 | u32::from(*sp)));
    }
    v
}

#[test]
fn hardware_hash_agrees_with_software_and_mismatches_are_reported() {
    let _g = serial();
    let Some(eal) = eal(&[]) else { return };
    let pool =
        Mempool::for_socket(eal, 0, MempoolConfig { mbufs: Some(1023), cache: 32, data_room: 2048 }).unwrap();

    // rte_softrss on DPDK's own tuple layout reproduces the published vectors.
    for (s, d, sp, dp, want) in MS_V4.iter().chain(MS_V6.iter()) {
        let t = FlowTuple::tcp(s.parse().unwrap(), d.parse().unwrap(), *sp, *dp);
        assert_eq!(rte_softrss(eal, &t, true, &MS_KEY), Some(*want), "{s} -> {d}");
    }

    // "Received" packets: each hash stored the way a NIC stores it.
    let mut pkts = Vec::new();
    for t in tuples() {
        let mut m = Mbuf::from_bytes(&pool, &frame(&t)).unwrap().unwrap();
        m.set_hw_rss_hash(rte_softrss(eal, &t, true, &MS_KEY).unwrap());
        pkts.push(m);
    }
    let plain = Mbuf::from_bytes(&pool, &frame(&tuples()[0])).unwrap().unwrap();

    let mut ok = HashSelfTest::new(RssHasher::new(&RssConfig::default()).unwrap());
    ok.observe_all(&pkts);
    ok.observe(&plain);
    let r = ok.report();
    assert!(r.passed(), "{r}");
    assert_eq!(
        (r.compared, r.agreed, r.mismatched, r.no_hw_hash),
        (pkts.len() as u64, pkts.len() as u64, 0, 1)
    );

    // A wrong key (the NIC was given another): every packet is a reported mismatch.
    let wrong =
        RssConfig { key: SYMMETRIC_KEY.repeat(20), mode: SymmetricMode::None, ..RssConfig::default() };
    let mut bad = HashSelfTest::new(RssHasher::new(&wrong).unwrap());
    bad.observe_all(&pkts);
    let r = bad.report();
    assert!(!r.passed());
    assert_eq!(r.mismatched, pkts.len() as u64);
    let first = r.mismatches[0];
    assert_eq!(first.tuple, tuples()[0]);
    assert_eq!(first.hardware, 0x51ccc178);
    assert_eq!(Some(first.software), RssHasher::new(&wrong).unwrap().hash_tuple(&tuples()[0]));
    let text = r.to_string();
    assert!(
        text.contains("66.9.149.187 -> 161.142.100.80") && text.contains("hardware 0x51ccc178"),
        "{text}"
    );

    // The hash the NIC stored reaches the packet metadata, as on Rx.
    assert_eq!(pkts[0].meta().rss_hash, Some(0x51ccc178));
}
