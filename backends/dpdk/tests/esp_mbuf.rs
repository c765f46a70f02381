//! ESP on mbufs: the existing gateway stages (classify → ESP decrypt → ESP encrypt → forward,
//! the same setup as `stages/tests/esp_gateway.rs`) run unchanged on DPDK mbufs. `net_ring0`
//! with two queue pairs gives two independent loopbacks: frames injected on Tx queue 0 reach
//! the pipeline on Rx queue 0; its output on Tx queue 1 is collected on Rx queue 1. The outer
//! headers go into the mbuf's headroom and the trailer into its tailroom (no copy).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use common::*;
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{Batch, PacketBuf, Pipeline, Port, RxQueue, ShardCtx, TxQueue};
use wirespeed_dpdk::Mbuf;
use wirespeed_stages::classify::{Classify, ClassifyConfig, ipv4_header_valid};
use wirespeed_stages::esp::*;
use wirespeed_stages::forward::{FibBuilder, Forward, NextHop};

const MAC_LAN: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa0];
const HOST: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf1];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf2];

fn lan_frame(src: [u8; 4], dst: [u8; 4], payload: usize, seed: u8) -> Vec<u8> {
    let mut f = udp4(src, dst, 5000, 5001, payload, seed);
    f[0..6].copy_from_slice(&MAC_LAN);
    f
}

#[test]
fn gateway_stages_encrypt_and_decrypt_in_mbufs() {
    let _g = serial();
    let Some(mut port) = port(&["net_ring0"], "net_ring0", |c| c.queues = 2) else { return };
    let pool = port.mempool();
    let base = pool.in_use();
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let peer: IpAddr = "198.51.100.7".parse().unwrap();
    let alg = AeadAlgorithm::Aes128Gcm;
    let (k_out, k_in) = ([0x11u8; 20], [0x22u8; 20]);
    let ours = [
        SaConfig::tunnel(0x1001, Direction::Outbound { shard: 0 }, alg, &k_out, gw, peer),
        SaConfig::tunnel(0x2001, Direction::Inbound, alg, &k_in, gw, peer),
    ];
    let spd = Spd::new(vec![SecurityPolicy {
        selector: Selector::between(
            IpPrefix::new("10.0.1.0".parse().unwrap(), 24),
            IpPrefix::new("10.9.0.0".parse().unwrap(), 16),
        ),
        action: PolicyAction::Protect { spis: vec![0x1001] },
    }]);
    let set = SaSet::new(ours.iter().map(|c| Arc::new(SecurityAssociation::new(c).unwrap())), &spd).unwrap();
    let mut sad = Publisher::new(set);
    let mut b = FibBuilder::new();
    b.route("10.0.1.0".parse().unwrap(), 24, NextHop::Direct).unwrap();
    b.route("0.0.0.0".parse().unwrap(), 0, NextHop::Gateway(peer)).unwrap();
    b.neighbor("10.0.1.5".parse().unwrap(), HOST, 0);
    b.neighbor(peer, PEER_MAC, 0);
    let mut fib = Publisher::new(b.build().unwrap());

    let (rx0, mut inject) = port.queue_pair(0).unwrap();
    let (mut collect, tx1) = port.queue_pair(1).unwrap();
    let classify = Classify::new(ClassifyConfig {
        own_ipv4: vec![Ipv4Addr::new(192, 0, 2, 1)],
        ..ClassifyConfig::default()
    });
    let stages = (
        classify,
        EspDecrypt::new(sad.subscribe()),
        EspEncrypt::new(sad.subscribe()),
        Forward::new(fib.subscribe(), &[MAC_LAN]),
    );
    let mut pipeline = Pipeline::new(rx0, tx1, stages);
    let mut cx = ShardCtx::new(0);

    // Outbound: 32 LAN frames of growing size are encrypted towards the peer.
    let clear: Vec<Vec<u8>> =
        (0..32u8).map(|i| lan_frame([10, 0, 1, 5], [10, 9, 0, 9], 20 + usize::from(i) * 40, i)).collect();
    let mut batch: Batch<Mbuf> = Batch::new();
    for f in &clear {
        batch.push(Mbuf::from_bytes(&pool, f).unwrap().unwrap()).unwrap();
    }
    assert_eq!(inject.tx_burst(&mut batch), 32);
    assert_eq!(pipeline.run_once(&mut cx), 32);
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    let mut out: Batch<Mbuf> = Batch::new();
    assert_eq!(collect.rx_burst(&mut out), 32);

    // The peer's inbound SA decrypts each, in its mbuf, to the original inner packet.
    let peer_in =
        SecurityAssociation::new(&SaConfig::tunnel(0x1001, Direction::Inbound, alg, &k_out, peer, gw))
            .unwrap();
    let mut st = SaState::new(&peer_in);
    for (m, orig) in out.iter_mut().zip(&clear) {
        let f = m.data();
        assert_eq!(&f[0..6], &PEER_MAC, "routed by the outer destination");
        assert_eq!(f[14 + 9], 50, "ESP");
        assert!(ipv4_header_valid(&f[14..34]));
        assert_eq!(&f[26..34], &[192, 0, 2, 1, 198, 51, 100, 7]);
        assert_eq!(u32::from_be_bytes(f[34..38].try_into().unwrap()), 0x1001);
        let loc = locate_esp(m.data(), 14, NAT_T_PORT).unwrap().unwrap();
        decapsulate(m, 14, &loc, &peer_in, &mut st, cx.now, |_| {}).unwrap();
        assert_eq!(&m.data()[14..], &orig[14..], "inner packet intact");
    }
    out.clear();

    // Inbound: the peer encapsulates replies (in mbufs: its outer headers go in the headroom);
    // the gateway decrypts and forwards them to the LAN host.
    let peer_out = SecurityAssociation::new(&SaConfig::tunnel(
        0x2001,
        Direction::Outbound { shard: 0 },
        alg,
        &k_in,
        peer,
        gw,
    ))
    .unwrap();
    let mut st = SaState::new(&peer_out);
    let replies: Vec<Vec<u8>> =
        (0..32u8).map(|i| lan_frame([10, 9, 0, 9], [10, 0, 1, 5], 300 + usize::from(i), i)).collect();
    for r in &replies {
        let mut m = Mbuf::from_bytes(&pool, r).unwrap().unwrap();
        encapsulate(&mut m, 14, &peer_out, &mut st, cx.now, |_| {}).unwrap();
        batch.push(m).unwrap();
    }
    assert_eq!(inject.tx_burst(&mut batch), 32);
    assert_eq!(pipeline.run_once(&mut cx), 32);
    assert_eq!(collect.rx_burst(&mut out), 32);
    for (m, r) in out.iter().zip(&replies) {
        let f = m.data();
        assert_eq!(&f[0..6], &HOST);
        assert_eq!(f.len(), r.len());
        assert_eq!(f[14 + 8], 63, "forwarded: TTL decremented");
        assert!(ipv4_header_valid(&f[14..34]));
        assert_eq!(&f[34..], &r[34..], "payload intact");
    }
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    assert_eq!(cx.counters.tx_packets, 64);
    out.clear();
    drop(pipeline);
    assert_eq!(pool.in_use(), base, "every mbuf back in the pool");
}
