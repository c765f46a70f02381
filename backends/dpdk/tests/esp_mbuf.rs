//! ESP on mbufs: the existing gateway stages (classify → ESP decrypt → ESP encrypt → forward:
//! the gateway of the fixture `wirespeed-test-esp`, shared with the `mem` and AF_XDP ESP tests)
//! run unchanged on DPDK mbufs. `net_ring0`
//! with two queue pairs gives two independent loopbacks: frames injected on Tx queue 0 reach
//! the pipeline on Rx queue 0; its output on Tx queue 1 is collected on Rx queue 1. The outer
//! headers go into the mbuf's headroom and the trailer into its tailroom (no copy).

mod common;

use common::*;
use wirespeed_core::{Batch, PacketBuf, Pipeline, Port, RxQueue, ShardCtx, TxQueue};
use wirespeed_dpdk::Mbuf;
use wirespeed_stages::esp::AeadAlgorithm;
use wirespeed_test_esp::{EspGateway, lan_frame, reply_frame};

const MAC_LAN: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa0];
const HOST: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf1];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf2];

#[test]
fn gateway_stages_encrypt_and_decrypt_in_mbufs() {
    let _g = serial();
    let Some(mut port) = port(&["net_ring0"], "net_ring0", |c| c.queues = 2) else { return };
    let pool = port.mempool();
    let base = pool.in_use();
    let mut gw = EspGateway::new(AeadAlgorithm::Aes128Gcm, HOST, PEER_MAC);
    let (rx0, mut inject) = port.queue_pair(0).unwrap();
    let (mut collect, tx1) = port.queue_pair(1).unwrap();
    let mut pipeline = Pipeline::new(rx0, tx1, gw.stages(MAC_LAN));
    let mut cx = ShardCtx::new(0);

    // Outbound: 32 LAN frames of growing size are encrypted towards the peer.
    let clear: Vec<Vec<u8>> = (0..32u8).map(|i| lan_frame(MAC_LAN, 20 + usize::from(i) * 40, i)).collect();
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
    for (m, orig) in out.iter_mut().zip(&clear) {
        EspGateway::assert_encrypted(m.data(), PEER_MAC);
        gw.peer_decrypt(m, cx.now);
        assert_eq!(&m.data()[14..], &orig[14..], "inner packet intact");
    }
    out.clear();

    // Inbound: the peer encapsulates replies (in mbufs: its outer headers go in the headroom);
    // the gateway decrypts and forwards them to the LAN host.
    let replies: Vec<Vec<u8>> = (0..32u8).map(|i| reply_frame(MAC_LAN, 300 + usize::from(i), i)).collect();
    for r in &replies {
        let mut m = Mbuf::from_bytes(&pool, r).unwrap().unwrap();
        gw.peer_encrypt(&mut m, cx.now);
        batch.push(m).unwrap();
    }
    assert_eq!(inject.tx_burst(&mut batch), 32);
    assert_eq!(pipeline.run_once(&mut cx), 32);
    assert_eq!(collect.rx_burst(&mut out), 32);
    for (m, r) in out.iter().zip(&replies) {
        EspGateway::assert_decrypted(m.data(), r, HOST);
    }
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    assert_eq!(cx.counters.tx_packets, 64);
    out.clear();
    drop(pipeline);
    assert_eq!(pool.in_use(), base, "every mbuf back in the pool");
}

/// `PacketBuf::alloc_like` (what IPv4 fragmentation before encryption takes its fragment
/// buffers with): an empty mbuf from the same mempool, headroom reserved, returned on drop.
#[test]
fn alloc_like_takes_an_mbuf_from_the_same_pool() {
    let _g = serial();
    let Some(port) = port(&["net_ring0"], "net_ring0", |c| c.queues = 2) else { return };
    let pool = port.mempool();
    let base = pool.in_use();
    let m = Mbuf::from_bytes(&pool, &[1, 2, 3]).unwrap().unwrap();
    let mut sibling = m.alloc_like().expect("a free mbuf");
    assert_eq!(pool.in_use(), base + 2);
    assert!(sibling.is_empty());
    assert!(sibling.headroom() >= 128, "headroom {}", sibling.headroom());
    sibling.copy_from(&[9; 1500]).unwrap();
    assert_eq!(sibling.len(), 1500);
    drop((m, sibling));
    assert_eq!(pool.in_use(), base);
}
