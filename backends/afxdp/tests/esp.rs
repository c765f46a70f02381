//! ESP round trip on AF_XDP: the ESP gateway stages (classify → ESP decrypt → ESP encrypt →
//! forward) run unchanged on UMEM frames. The peer namespace plays both the LAN host and the
//! remote tunnel end: it sends a cleartext frame, which must come back as ESP that the peer's
//! SA decrypts to the original; then it sends ESP, which must come back decrypted and routed.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use wirespeed_afxdp::peer::{RawSocket, enter_netns};
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig};
use wirespeed_core::{BufferPool, PacketBuf, Pipeline, PoolConfig, Port, ShardCtx};
use wirespeed_stages::esp::AeadAlgorithm;
use wirespeed_test_esp::{EspGateway, lan_frame, reply_frame};

/// Sends `frame` from the peer and returns the first frame that comes back.
fn exchange(ns: &str, dev: &str, frame: Vec<u8>) -> Option<Vec<u8>> {
    let (ns, dev) = (ns.to_string(), dev.to_string());
    std::thread::spawn(move || {
        enter_netns(&ns).unwrap();
        let s = RawSocket::open(&dev).unwrap();
        assert!(s.send(&frame).unwrap());
        let mut buf = vec![0u8; 4096];
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Some(n) = s.recv(&mut buf, 50).unwrap() {
                return Some(buf[..n].to_vec());
            }
        }
        None
    })
    .join()
    .unwrap()
}

#[test]
fn esp_round_trip_through_the_gateway_stages() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let (gw_mac, peer_mac) = (veth.local_mac(), veth.peer_mac());
    // The LAN host and the tunnel peer both sit behind the peer end of the veth.
    let host_mac = peer_mac;

    let mut gw = EspGateway::new(AeadAlgorithm::Aes256Gcm, host_mac, peer_mac);
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut pipeline = Pipeline::new(rx, tx, gw.stages(gw_mac));
    let mut cx = ShardCtx::new(0);
    let now = cx.now;
    let mut serve = |frame: Vec<u8>| {
        let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
        let peer_thread = std::thread::spawn(move || exchange(&ns, &dev, frame));
        while !peer_thread.is_finished() {
            pipeline.run_once(&mut cx);
        }
        peer_thread.join().unwrap()
    };

    // Outbound: 10.0.1.5 → 10.9.0.9 leaves as ESP to the peer.
    let clear = lan_frame(gw_mac, 200, 0);
    let f = serve(clear.clone()).expect("the encrypted frame came back");
    EspGateway::assert_encrypted(&f, peer_mac);
    assert_eq!(&f[6..12], &gw_mac);
    let pool = BufferPool::new(PoolConfig { buffers: 64, ..PoolConfig::default() }).unwrap();
    let mut pb = pool.alloc().unwrap();
    pb.copy_from(&f).unwrap();
    gw.peer_decrypt(&mut pb, now);
    assert_eq!(&pb.data()[14..], &clear[14..], "the peer decrypts the original packet");

    // Inbound: the peer's ESP for 10.9.0.9 → 10.0.1.5 comes back decrypted, TTL one less.
    let reply = reply_frame(gw_mac, 300, 0);
    let mut rb = pool.alloc().unwrap();
    rb.copy_from(&reply).unwrap();
    gw.peer_encrypt(&mut rb, now);
    rb.data_mut()[0..6].copy_from_slice(&gw_mac);
    rb.data_mut()[6..12].copy_from_slice(&peer_mac);
    let f = serve(rb.data().to_vec()).expect("the decrypted frame came back");
    EspGateway::assert_decrypted(&f, &reply, host_mac);
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    assert_eq!(cx.counters.rx_packets, 2);
}
