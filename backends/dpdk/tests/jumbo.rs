//! Jumbo frames on DPDK: `DpdkPortConfig::mtu` sets the port's MTU when it is configured, the
//! port's frame limit follows it, and a 9014-byte frame goes out and back through `net_ring`
//! byte for byte in one mbuf. An MTU the mbufs cannot hold, or below IPv4's minimum, is a clear
//! configuration error before the device is touched.

mod common;

use common::*;
use wirespeed_core::{Batch, PacketBuf, Port, RxQueue, TxQueue};
use wirespeed_dpdk::{DpdkPortConfig, Mbuf};

const VDEVS: [&str; 1] = ["net_ring0"];

#[test]
fn a_jumbo_mtu_carries_9000_byte_packets_in_one_mbuf() {
    let _g = serial();
    let Some(mut port) = port(&VDEVS, "net_ring0", |c| {
        c.mtu = Some(9000);
        c.mempool.data_room = 9216;
        c.mempool.mbufs = Some(1023);
    }) else {
        return;
    };
    assert_eq!(port.info().max_frame, 9014, "MTU 9000 + the Ethernet header");
    let pool = port.mempool();
    let (mut rx, mut tx) = port.queue_pair(0).unwrap();
    // A 9014-byte frame (a 9000-byte IPv4 packet) and a 1514-byte one, out and back.
    let frames = [
        udp4([192, 0, 2, 1], [198, 51, 100, 1], 4000, 4001, 9000 - 28, 3),
        udp4([192, 0, 2, 1], [198, 51, 100, 2], 4000, 4001, 1500 - 28, 5),
    ];
    assert_eq!(frames[0].len(), 9014);
    let mut batch: Batch<Mbuf> = Batch::new();
    for f in &frames {
        batch.push(Mbuf::from_bytes(&pool, f).unwrap().expect("an mbuf holds 9014 bytes")).unwrap();
    }
    assert_eq!(tx.tx_burst(&mut batch), frames.len());
    let mut got: Batch<Mbuf> = Batch::new();
    assert_eq!(rx.rx_burst(&mut got), frames.len());
    for (m, f) in got.iter().zip(&frames) {
        assert_eq!(m.data(), &f[..]);
    }
}

#[test]
fn an_mtu_the_mbufs_cannot_hold_is_refused_with_the_reason() {
    let mut cfg = DpdkPortConfig::new(eal_args(&VDEVS), "net_ring0");
    cfg.mtu = Some(9000);
    let err = cfg.check().unwrap_err().to_string();
    assert!(err.contains("mtu") && err.contains("data_room") && err.contains("9014"), "{err}");
    cfg.mempool.data_room = 9014;
    cfg.check().expect("data_room = mtu + 14 fits");
    cfg.mtu = Some(60);
    let err = cfg.check().unwrap_err().to_string();
    assert!(err.contains("at least 68"), "{err}");
    // From TOML, as an appliance's configuration gives it.
    let cfg: DpdkPortConfig = toml::from_str(
        r#"
        device = "0000:3b:00.0"
        mtu = 9000
        mempool = { data_room = 9216 }
        "#,
    )
    .unwrap();
    assert_eq!(cfg.mtu, Some(9000));
    cfg.check().unwrap();
}

/// ESP over jumbo frames: the gateway's stages (the `wirespeed-test-esp` fixture) encrypt an
/// 8900-byte LAN packet into one ESP frame within the 9014-byte limit, and decrypt the peer's
/// jumbo ESP, each in its one mbuf (outer headers in the headroom, trailer in the tailroom).
/// `net_ring0` with two queue pairs: inject on Tx 0 → pipeline on Rx 0 → Tx 1 → collect on Rx 1.
#[test]
fn esp_encrypts_and_decrypts_jumbo_frames_in_one_mbuf() {
    use wirespeed_core::{Pipeline, ShardCtx};
    use wirespeed_stages::esp::AeadAlgorithm;
    use wirespeed_test_esp::{EspGateway, lan_frame, reply_frame};
    const MAC_LAN: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa0];
    const HOST: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf1];
    const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf2];

    let _g = serial();
    let Some(mut port) = port(&VDEVS, "net_ring0", |c| {
        c.queues = 2;
        c.mtu = Some(9000);
        c.mempool.data_room = 9216;
        c.mempool.mbufs = Some(2047);
    }) else {
        return;
    };
    let max = port.info().max_frame;
    assert_eq!(max, 9014);
    let pool = port.mempool();
    let mut gw = EspGateway::new(AeadAlgorithm::Aes256Gcm, HOST, PEER_MAC);
    let (rx0, mut inject) = port.queue_pair(0).unwrap();
    let (mut collect, tx1) = port.queue_pair(1).unwrap();
    let mut pipeline = Pipeline::new(rx0, tx1, gw.stages(MAC_LAN));
    let mut cx = ShardCtx::new(0);

    // Outbound: LAN frames of 8900..8903 bytes (every pad length) leave as ESP frames.
    let clear: Vec<Vec<u8>> = (0..4u8).map(|i| lan_frame(MAC_LAN, 8900 - 42 + usize::from(i), i)).collect();
    assert_eq!(clear[0].len(), 8900);
    let mut batch: Batch<Mbuf> = Batch::new();
    for f in &clear {
        batch.push(Mbuf::from_bytes(&pool, f).unwrap().unwrap()).unwrap();
    }
    assert_eq!(inject.tx_burst(&mut batch), clear.len());
    assert_eq!(pipeline.run_once(&mut cx), clear.len());
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    let mut out: Batch<Mbuf> = Batch::new();
    assert_eq!(collect.rx_burst(&mut out), clear.len());
    for (m, orig) in out.iter_mut().zip(&clear) {
        assert!(
            m.data().len() > orig.len() && m.data().len() <= max,
            "ESP frame of {} bytes",
            m.data().len()
        );
        EspGateway::assert_encrypted(m.data(), PEER_MAC);
        gw.peer_decrypt(m, cx.now);
        assert_eq!(&m.data()[14..], &orig[14..], "inner jumbo packet intact");
    }
    out.clear();

    // Inbound: the peer's jumbo ESP is decrypted and forwarded to the LAN host.
    let replies: Vec<Vec<u8>> =
        (0..4u8).map(|i| reply_frame(MAC_LAN, 8900 - 42 + usize::from(i), i)).collect();
    for r in &replies {
        let mut m = Mbuf::from_bytes(&pool, r).unwrap().unwrap();
        gw.peer_encrypt(&mut m, cx.now);
        assert!(m.data().len() <= max);
        batch.push(m).unwrap();
    }
    assert_eq!(inject.tx_burst(&mut batch), replies.len());
    assert_eq!(pipeline.run_once(&mut cx), replies.len());
    assert_eq!(collect.rx_burst(&mut out), replies.len());
    for (m, r) in out.iter().zip(&replies) {
        EspGateway::assert_decrypted(m.data(), r, HOST);
    }
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
}
