//! TCP MSS clamping on a tunnel (issue 20 item 3, `mss_clamp`): the option of SYN segments is
//! lowered, the TCP checksum stays valid (checked with etherparse), other segments are left
//! alone; through the ESP stages, outbound before encryption and inbound after decryption.

use std::net::IpAddr;
use std::sync::Arc;

use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{Batch, BufferPool, PacketBuf, PoolBuf, PoolConfig, ShardCtx, Stage};
use wirespeed_stages::classify::{Classify, ClassifyConfig};
use wirespeed_stages::esp::*;
use wirespeed_stages::mss;

/// A TCP segment 10.0.0.10 → 10.9.0.1 (or over IPv6) with `flags` SYN/ACK and the options.
fn tcp(v6: bool, syn: bool, opts: &[TcpOptionElement]) -> Vec<u8> {
    let mut f = Vec::new();
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x10], [2, 0, 0, 0, 0, 1]);
    let b = if v6 {
        eth.ipv6(
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10],
            [0x20, 1, 0xd, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            64,
        )
    } else {
        eth.ipv4([10, 0, 0, 10], [10, 9, 0, 1], 64)
    };
    let mut b = b.tcp(40000, 443, 1000, 65535);
    if syn {
        b = b.syn();
    } else {
        b = b.ack(1);
    }
    b.options(opts).unwrap().write(&mut f, b"").unwrap();
    f
}

/// The MSS option and whether the TCP checksum verifies.
fn mss_of(f: &[u8]) -> (Option<u16>, bool) {
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("not TCP") };
    let mss = t.options_iterator().find_map(|o| match o.unwrap() {
        TcpOptionElement::MaximumSegmentSize(m) => Some(m),
        _ => None,
    });
    let ok = match &p.net {
        Some(etherparse::NetSlice::Ipv4(ip)) => {
            t.to_header().calc_checksum_ipv4(&ip.header().to_header(), t.payload()).unwrap() == t.checksum()
        }
        Some(etherparse::NetSlice::Ipv6(ip)) => {
            t.to_header().calc_checksum_ipv6(&ip.header().to_header(), t.payload()).unwrap() == t.checksum()
        }
        _ => false,
    };
    (mss, ok)
}

#[test]
fn syn_mss_is_clamped_with_a_valid_checksum_at_either_alignment() {
    use TcpOptionElement::*;
    for v6 in [false, true] {
        // MSS first (even offset), then after one NOP (odd offset).
        for opts in [
            vec![MaximumSegmentSize(1460), SelectiveAcknowledgementPermitted, WindowScale(7)],
            vec![Noop, MaximumSegmentSize(1460), Noop, WindowScale(7)],
        ] {
            let mut f = tcp(v6, true, &opts);
            assert_eq!(mss_of(&f), (Some(1460), true));
            assert!(mss::clamp(&mut f[14..], 1300));
            assert_eq!(mss_of(&f), (Some(1300), true), "v6 {v6}, {opts:?}");
            assert!(!mss::clamp(&mut f[14..], 1360), "already below");
            assert_eq!(mss_of(&f).0, Some(1300));
        }
        // Not a SYN, or no MSS option: untouched.
        let mut f = tcp(v6, false, &[MaximumSegmentSize(1460)]);
        let before = f.clone();
        assert!(!mss::clamp(&mut f[14..], 1300));
        assert_eq!(f, before);
        let mut f = tcp(v6, true, &[WindowScale(7)]);
        assert!(!mss::clamp(&mut f[14..], 1300));
    }
    // Truncated or malformed input never panics.
    let f = tcp(false, true, &[MaximumSegmentSize(1460)]);
    for n in 0..f.len() {
        let mut g = f[14..n.max(14)].to_vec();
        let _ = mss::clamp(&mut g, 1000);
    }
}

#[test]
fn the_mss_clamp_stage_clamps_classified_syns_and_leaves_the_rest() {
    use TcpOptionElement::*;
    let pool = BufferPool::new(PoolConfig { buffers: 8, ..PoolConfig::default() }).unwrap();
    let frames = [
        tcp(false, true, &[MaximumSegmentSize(1460)]),
        tcp(true, true, &[Noop, MaximumSegmentSize(1440)]),
        tcp(false, false, &[MaximumSegmentSize(1460)]), // not a SYN
        tcp(false, true, &[MaximumSegmentSize(1200)]),  // already small enough
    ];
    let mut batch = Batch::<PoolBuf>::new();
    for f in &frames {
        let mut p = pool.alloc().unwrap();
        p.copy_from(f).unwrap();
        batch.push(p).ok().unwrap();
    }
    // Unclassified packets (no L3 in the metadata) are left alone.
    let mut cx = ShardCtx::new(0);
    let mut stage = mss::MssClamp::new(1300);
    stage.process(&mut cx, &mut batch);
    assert_eq!(stage.clamped(), 0);
    Classify::new(ClassifyConfig::default()).process(&mut cx, &mut batch);
    stage.process(&mut cx, &mut batch);
    assert_eq!((stage.mss(), stage.clamped()), (1300, 2));
    let out: Vec<_> = batch.iter().map(|p| mss_of(p.data())).collect();
    assert_eq!(out, [(Some(1300), true), (Some(1300), true), (Some(1460), true), (Some(1200), true)]);
    assert_eq!(batch.len(), 4, "never drops: {}", cx.counters);
}

fn sa(spi: u32, dir: Direction, local: &str, remote: &str, clamp: Option<u16>) -> SaConfig {
    let (l, r): (IpAddr, IpAddr) = (local.parse().unwrap(), remote.parse().unwrap());
    let mut c = SaConfig::tunnel(spi, dir, AeadAlgorithm::Aes128Gcm, &[9; 20], l, r);
    c.mss_clamp = clamp;
    c
}

/// `frame` through EspEncrypt with the outbound SA `out`, then EspDecrypt with the inbound SA
/// `inb` (same SPI and key, the peer's view); returns the decrypted frame and both stats.
fn through_tunnel(frame: &[u8], out: SaConfig, inb: SaConfig) -> (Vec<u8>, EspStats, EspStats) {
    let policy = |spi| {
        Spd::new(vec![SecurityPolicy {
            selector: Selector::between(
                IpPrefix::new("10.0.0.0".parse().unwrap(), 24),
                IpPrefix::new("10.9.0.0".parse().unwrap(), 16),
            ),
            action: PolicyAction::Protect { spis: vec![spi] },
        }])
    };
    let mut a = Publisher::new(
        SaSet::new([Arc::new(SecurityAssociation::new(&out).unwrap())], &policy(out.spi)).unwrap(),
    );
    let mut b = Publisher::new(
        SaSet::new([Arc::new(SecurityAssociation::new(&inb).unwrap())], &Spd::new(vec![])).unwrap(),
    );
    let mut enc = EspEncrypt::new(a.subscribe());
    let mut dec = EspDecrypt::new(b.subscribe());
    let pool = BufferPool::new(PoolConfig { buffers: 8, ..PoolConfig::default() }).unwrap();
    let mut batch = Batch::<PoolBuf>::new();
    let mut p = pool.alloc().unwrap();
    p.copy_from(frame).unwrap();
    batch.push(p).ok().unwrap();
    let mut cx = ShardCtx::new(0);
    let mut classify = Classify::new(ClassifyConfig::default());
    classify.process(&mut cx, &mut batch);
    enc.process(&mut cx, &mut batch);
    assert_eq!(batch.len(), 1, "{}", cx.counters);
    assert_eq!(batch.as_slice()[0].data()[23], 50, "ESP");
    let esp = batch.as_slice()[0].data().to_vec();
    batch.clear();
    let mut p = pool.alloc().unwrap();
    p.copy_from(&esp).unwrap();
    batch.push(p).ok().unwrap();
    classify.process(&mut cx, &mut batch);
    dec.process(&mut cx, &mut batch);
    assert_eq!(batch.len(), 1, "{}", cx.counters);
    (batch.as_slice()[0].data().to_vec(), *enc.stats(), *dec.stats())
}

#[test]
fn a_tunnel_clamps_syn_mss_outbound_and_inbound() {
    let syn = tcp(false, true, &[TcpOptionElement::MaximumSegmentSize(1460)]);
    // Outbound clamp: the peer decrypts a SYN already clamped.
    let (inner, enc, dec) = through_tunnel(
        &syn,
        sa(0x100, Direction::Outbound { shard: 0 }, "192.0.2.1", "198.51.100.7", Some(1300)),
        sa(0x100, Direction::Inbound, "198.51.100.7", "192.0.2.1", None),
    );
    assert_eq!(mss_of(&inner), (Some(1300), true));
    assert_eq!((enc.mss_clamped, dec.mss_clamped), (1, 0));
    // Inbound clamp: a SYN from a peer that does not clamp is clamped after decryption.
    let (inner, enc, dec) = through_tunnel(
        &syn,
        sa(0x200, Direction::Outbound { shard: 0 }, "192.0.2.1", "198.51.100.7", None),
        sa(0x200, Direction::Inbound, "198.51.100.7", "192.0.2.1", Some(1200)),
    );
    assert_eq!(mss_of(&inner), (Some(1200), true));
    assert_eq!((enc.mss_clamped, dec.mss_clamped), (0, 1));
    // A data segment passes unchanged.
    let ack = tcp(false, false, &[]);
    let (inner, _, dec) = through_tunnel(
        &ack,
        sa(0x300, Direction::Outbound { shard: 0 }, "192.0.2.1", "198.51.100.7", Some(1300)),
        sa(0x300, Direction::Inbound, "198.51.100.7", "192.0.2.1", Some(1300)),
    );
    assert_eq!(inner[14..], ack[14..]);
    assert_eq!(dec.mss_clamped, 0);
}
