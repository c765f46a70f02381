//! ESP round trip on AF_XDP: the ESP gateway stages (classify → ESP decrypt → ESP encrypt →
//! forward) run unchanged on UMEM frames. The peer namespace plays both the LAN host and the
//! remote tunnel end: it sends a cleartext frame, which must come back as ESP that the peer's
//! SA decrypts to the original; then it sends ESP, which must come back decrypted and routed.
#![cfg(target_os = "linux")]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wirespeed_afxdp::peer::{RawSocket, enter_netns};
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig};
use wirespeed_core::backend::null::ipv4_header_checksum;
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{BufferPool, PacketBuf, Pipeline, PoolConfig, Port, ShardCtx};
use wirespeed_stages::classify::{Classify, ClassifyConfig, ipv4_header_valid};
use wirespeed_stages::esp::*;
use wirespeed_stages::forward::{FibBuilder, Forward, NextHop};

fn udp_frame(dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x99, 0x08, 0x00]);
    let total = 28 + payload;
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, ((8 + payload) >> 8) as u8, (8 + payload) as u8, 0, 0]);
    f.extend((0..payload).map(|i| i as u8));
    let c = ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

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

    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let peer: IpAddr = "198.51.100.7".parse().unwrap();
    let alg = AeadAlgorithm::Aes256Gcm;
    let (k_out, k_in) = ([0x11u8; 36], [0x22u8; 36]);
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
    b.neighbor("10.0.1.5".parse().unwrap(), host_mac, 0);
    b.neighbor(peer, peer_mac, 0);
    let mut fib = Publisher::new(b.build().unwrap());

    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    let classify = Classify::new(ClassifyConfig {
        own_ipv4: vec![Ipv4Addr::new(192, 0, 2, 1)],
        ..ClassifyConfig::default()
    });
    let stages = (
        classify,
        EspDecrypt::new(sad.subscribe()),
        EspEncrypt::new(sad.subscribe()),
        Forward::new(fib.subscribe(), &[gw_mac]),
    );
    let mut pipeline = Pipeline::new(rx, tx, stages);
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
    let clear = udp_frame(gw_mac, [10, 0, 1, 5], [10, 9, 0, 9], 200);
    let f = serve(clear.clone()).expect("the encrypted frame came back");
    assert_eq!(&f[0..6], &peer_mac, "routed to the tunnel peer");
    assert_eq!(&f[6..12], &gw_mac);
    assert_eq!(f[14 + 9], 50, "ESP");
    assert!(ipv4_header_valid(&f[14..34]));
    assert_eq!(&f[26..34], &[192, 0, 2, 1, 198, 51, 100, 7]);
    assert_eq!(u32::from_be_bytes(f[34..38].try_into().unwrap()), 0x1001);
    let pool = BufferPool::new(PoolConfig { buffers: 64, ..PoolConfig::default() }).unwrap();
    let peer_in =
        SecurityAssociation::new(&SaConfig::tunnel(0x1001, Direction::Inbound, alg, &k_out, peer, gw))
            .unwrap();
    let mut st = SaState::new(&peer_in);
    let mut pb = pool.alloc().unwrap();
    pb.copy_from(&f).unwrap();
    let loc = locate_esp(pb.data(), 14, NAT_T_PORT).unwrap().unwrap();
    decapsulate(&mut pb, 14, &loc, &peer_in, &mut st, now, |_| {}).unwrap();
    assert_eq!(&pb.data()[14..], &clear[14..], "the peer decrypts the original packet");

    // Inbound: the peer's ESP for 10.9.0.9 → 10.0.1.5 comes back decrypted, TTL one less.
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
    let reply = udp_frame(gw_mac, [10, 9, 0, 9], [10, 0, 1, 5], 300);
    let mut rb = pool.alloc().unwrap();
    rb.copy_from(&reply).unwrap();
    encapsulate(&mut rb, 14, &peer_out, &mut st, now, |_| {}).unwrap();
    rb.data_mut()[0..6].copy_from_slice(&gw_mac);
    rb.data_mut()[6..12].copy_from_slice(&peer_mac);
    let f = serve(rb.data().to_vec()).expect("the decrypted frame came back");
    assert_eq!(&f[0..6], &host_mac);
    assert_eq!(f.len(), reply.len());
    assert_eq!(f[14 + 8], 63, "forwarded: TTL decremented");
    assert!(ipv4_header_valid(&f[14..34]));
    assert_eq!(&f[34..], &reply[34..], "payload intact");
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    assert_eq!(cx.counters.rx_packets, 2);
}
