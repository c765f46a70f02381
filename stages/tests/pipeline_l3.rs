//! The L3 pipeline end to end on `mem` ports: classify → punt → forward with two output ports
//! (a `Pipeline` with an extra Tx), checking what leaves each port byte by byte.

use std::net::Ipv4Addr;

use wirespeed_core::backend::mem::{MemConfig, MemPort};
use wirespeed_core::backend::null::{ipv4_header_checksum, udp4_frame};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{BufferPool, DropReason, Pipeline, PoolBuf, PoolConfig, Port, ShardCtx};
use wirespeed_stages::classify::{Classify, ClassifyConfig, ipv4_header_valid};
use wirespeed_stages::control::{Punt, punt_queue};
use wirespeed_stages::forward::{FibBuilder, Forward, NextHop};

const MAC0: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa0];
const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa1];
const GW0: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf0];
const HOST1: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf1];

/// The null template (10.0.0.1 -> 10.0.1.1, TTL 64) sent to `dst` with `ttl`.
fn frame_to(dst: [u8; 4], ttl: u8) -> Vec<u8> {
    let mut f = udp4_frame(64);
    f[30..34].copy_from_slice(&dst);
    f[22] = ttl;
    f[24..26].fill(0);
    let c = ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn routes_to_two_ports_and_counts_drops() {
    let pool = BufferPool::new(PoolConfig { buffers: 1024, ..PoolConfig::default() }).unwrap();
    let (mut p0, h0) =
        MemPort::new(MemConfig { name: "mem0".into(), mac: MAC0, ..MemConfig::default() }, pool);
    let (mut p1, h1) =
        MemPort::new(MemConfig { name: "mem1".into(), port_id: 1, mac: MAC1, ..MemConfig::default() }, pool);
    let (rx0, tx0) = p0.queue_pair(0).unwrap();
    let (_rx1, tx1) = p1.queue_pair(0).unwrap();

    let gw = "192.0.2.254".parse().unwrap();
    let mut b = FibBuilder::new();
    b.route("0.0.0.0".parse().unwrap(), 0, NextHop::Gateway(gw)).unwrap();
    b.route("10.0.1.0".parse().unwrap(), 24, NextHop::Direct).unwrap();
    b.neighbor(gw, GW0, 0);
    b.neighbor("10.0.1.1".parse().unwrap(), HOST1, 1);
    let mut fib = Publisher::new(b.build().unwrap());
    let punt = punt_queue::<PoolBuf>(16);
    let classify = Classify::new(ClassifyConfig {
        own_ipv4: vec![Ipv4Addr::new(192, 0, 2, 1)],
        ..ClassifyConfig::default()
    });
    let stages = (classify, Punt::new(punt.clone()), Forward::new(fib.subscribe(), &[MAC0, MAC1]));
    let mut pipeline = Pipeline::new(rx0, tx0, stages);
    assert_eq!(pipeline.add_tx(tx1).ok(), Some(1));
    let mut cx = ShardCtx::new(0);

    h0.inject(0, &frame_to([10, 0, 1, 1], 64)).unwrap(); // connected host on port 1
    h0.inject(0, &frame_to([198, 51, 100, 9], 64)).unwrap(); // default route, port 0
    h0.inject(0, &frame_to([10, 0, 1, 2], 64)).unwrap(); // connected, no neighbor
    h0.inject(0, &frame_to([198, 51, 100, 9], 1)).unwrap(); // TTL expires
    h0.inject(0, &frame_to([192, 0, 2, 1], 64)).unwrap(); // to us: punted
    let mut bad = frame_to([198, 51, 100, 9], 64);
    bad[25] ^= 0xff; // bad header checksum
    h0.inject(0, &bad).unwrap();
    assert_eq!(pipeline.run_once(&mut cx), 6);

    let out1 = h1.drain_tx(0);
    let out0 = h0.drain_tx(0);
    assert_eq!((out0.len(), out1.len()), (1, 1));
    for (f, dst_mac, src_mac) in [(&out1[0], HOST1, MAC1), (&out0[0], GW0, MAC0)] {
        assert_eq!(&f[0..6], &dst_mac);
        assert_eq!(&f[6..12], &src_mac);
        assert_eq!(f[22], 63);
        assert!(ipv4_header_valid(&f[14..34]));
    }
    let c = cx.counters;
    assert_eq!((c.rx_packets, c.tx_packets, c.punted), (6, 2, 1));
    assert_eq!(c.drops_of(DropReason::NoNeighbor), 1);
    assert_eq!(c.drops_of(DropReason::TtlExpired), 1);
    assert_eq!(c.drops_of(DropReason::MalformedIpv4), 1);
    assert_eq!(c.rx_packets, c.tx_packets + c.punted + c.total_drops());
    assert_eq!(punt.len(), 1);
}
