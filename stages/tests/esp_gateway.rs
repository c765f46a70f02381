//! ESP inside the gateway pipeline, on `mem` ports: classify → ESP → forward, both ways.
//! Outbound: a cleartext frame from the LAN matches the SPD, is encapsulated and routed to the
//! peer by its *outer* address. Inbound: the peer's ESP frame is decapsulated and the inner
//! packet routed to the LAN host. Shows that the ESP stages keep `PacketMeta` right for the stages
//! after them, and how the lead's ipsec-gateway wires them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use wirespeed_core::backend::mem::{MemConfig, MemPort};
use wirespeed_core::backend::null::ipv4_header_checksum;
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{BufferPool, Pipeline, PoolConfig, Port, ShardCtx};
use wirespeed_stages::classify::{Classify, ClassifyConfig, ipv4_header_valid};
use wirespeed_stages::esp::*;
use wirespeed_stages::forward::{FibBuilder, Forward, NextHop};

const MAC_LAN: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa0];
const HOST: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf1];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf2];

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

#[test]
fn gateway_encrypts_lan_traffic_and_decrypts_tunnel_traffic() {
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let peer: IpAddr = "198.51.100.7".parse().unwrap();
    let alg = AeadAlgorithm::Aes256Gcm;
    let k_out = [0x11u8; 36];
    let k_in = [0x22u8; 36];
    // Our side: outbound 0x1001 (to the peer), inbound 0x2001 (from the peer).
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

    let pool = BufferPool::new(PoolConfig { buffers: 512, ..PoolConfig::default() }).unwrap();
    let (mut port, h) =
        MemPort::new(MemConfig { name: "mem0".into(), mac: MAC_LAN, ..MemConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
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
    let mut pipeline = Pipeline::new(rx, tx, stages);
    let mut cx = ShardCtx::new(0);

    // Outbound: LAN host 10.0.1.5 → 10.9.0.9 gets encrypted and sent to the peer.
    let clear = udp_frame(MAC_LAN, [10, 0, 1, 5], [10, 9, 0, 9], 100);
    h.inject(0, &clear).unwrap();
    assert_eq!(pipeline.run_once(&mut cx), 1);
    let out = h.drain_tx(0);
    assert_eq!(out.len(), 1, "{}", cx.counters);
    let f = &out[0];
    assert_eq!(&f[0..6], &PEER_MAC, "routed by the outer destination");
    assert_eq!(f[14 + 9], 50);
    assert!(ipv4_header_valid(&f[14..34]));
    assert_eq!(&f[26..34], &[192, 0, 2, 1, 198, 51, 100, 7]);
    assert_eq!(u32::from_be_bytes(f[34..38].try_into().unwrap()), 0x1001);

    // The peer's view of it: its inbound SA 0x1001 decrypts our packet to the original.
    let peer_in =
        SecurityAssociation::new(&SaConfig::tunnel(0x1001, Direction::Inbound, alg, &k_out, peer, gw))
            .unwrap();
    let mut st = SaState::new(&peer_in);
    let mut pb = pool.alloc().unwrap();
    use wirespeed_core::PacketBuf;
    pb.copy_from(f).unwrap();
    let loc = locate_esp(pb.data(), 14, NAT_T_PORT).unwrap().unwrap();
    decapsulate(&mut pb, 14, &loc, &peer_in, &mut st, cx.now, |_| {}).unwrap();
    assert_eq!(&pb.data()[14..], &clear[14..], "inner packet intact (its TTL is the sender's)");

    // Inbound: the peer sends 10.9.0.9 → 10.0.1.5 in SPI 0x2001; it comes out to the host.
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
    let reply = udp_frame(MAC_LAN, [10, 9, 0, 9], [10, 0, 1, 5], 300);
    let mut rb = pool.alloc().unwrap();
    rb.copy_from(&reply).unwrap();
    encapsulate(&mut rb, 14, &peer_out, &mut st, cx.now, |_| {}).unwrap();
    h.inject(0, rb.data()).unwrap();
    assert_eq!(pipeline.run_once(&mut cx), 1);
    let out = h.drain_tx(0);
    assert_eq!(out.len(), 1, "{}", cx.counters);
    let f = &out[0];
    assert_eq!(&f[0..6], &HOST);
    assert_eq!(f.len(), reply.len());
    assert_eq!(f[14 + 8], 63, "forwarded: TTL decremented");
    assert!(ipv4_header_valid(&f[14..34]));
    assert_eq!(&f[34..], &reply[34..], "payload intact");
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
}
