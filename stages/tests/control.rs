//! End to end on the `mem` backend: frames injected on queue 0 run through a data shard's
//! pipeline (classify → punt → forward); punted ones reach the smoltcp control plane, whose
//! answers leave on queue 1 (the management queue). ARP (RFC 826), ICMP echo (RFC 792), IPv6
//! Neighbor Discovery (RFC 4861) and echo (RFC 4443), and a TCP client — a second smoltcp
//! interface — reading the stats endpoint.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

mod smol_client;

use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder, SlicedPacket, TransportSlice};
use smol_client::Client;
use smoltcp::time::Instant;
use wirespeed_core::backend::mem::{MemConfig, MemHandle, MemPort, MemRx, MemTx};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::stats::ShardStats;
use wirespeed_core::{BufferPool, DropReason, PacketBuf, Pipeline, PoolBuf, PoolConfig, Port, ShardCtx};
use wirespeed_stages::classify::{Classify, ClassifyConfig};
use wirespeed_stages::control::{ControlConfig, ControlPlane, Punt, format_shard_stats, punt_queue};
use wirespeed_stages::forward::{FibBuilder, Forward, Neighbor};

const ME_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const ME4: [u8; 4] = [192, 0, 2, 1];
const CLIENT4: [u8; 4] = [192, 0, 2, 99];
const ME6: &str = "2001:db8::1";
const CLIENT6: &str = "2001:db8::99";

type DataPipeline = Pipeline<MemRx, MemTx, (Classify, Punt<PoolBuf>, Forward)>;

struct Rig {
    handle: MemHandle,
    pipeline: DataPipeline,
    cx: ShardCtx,
    control: ControlPlane<PoolBuf, MemTx, BufferPool>,
    stats: Arc<Mutex<Vec<ShardStats>>>,
    now_ms: i64,
    _fib: Publisher<wirespeed_stages::Fib>,
}

fn rig(punt_capacity: usize) -> Rig {
    let pool = BufferPool::new(PoolConfig { buffers: 1024, ..PoolConfig::default() }).unwrap();
    let (mut port, handle) = MemPort::new(MemConfig { queues: 2, mac: ME_MAC, ..MemConfig::default() }, pool);
    let (rx0, tx0) = port.queue_pair(0).unwrap();
    let (_rx1, tx1) = port.queue_pair(1).unwrap();
    let queue = punt_queue(punt_capacity);
    let me6: Ipv6Addr = ME6.parse().unwrap();
    let cfg = ControlConfig {
        mac: ME_MAC,
        addresses: vec![(IpAddr::from(ME4), 24), (IpAddr::from(me6), 64)],
        ..ControlConfig::default()
    };
    let classify = Classify::new(cfg.classify_config());
    assert_eq!(
        cfg.classify_config(),
        ClassifyConfig {
            own_ipv4: vec![Ipv4Addr::from(ME4)],
            own_ipv6: vec![me6],
            ..ClassifyConfig::default()
        }
    );
    let mut fib = Publisher::new(FibBuilder::new().build().unwrap());
    let forward = Forward::new(fib.subscribe(), &[ME_MAC]);
    let pipeline = Pipeline::new(rx0, tx0, (classify, Punt::new(queue.clone()), forward));
    let mut control = ControlPlane::new(cfg, queue, tx1, pool).unwrap();
    let stats: Arc<Mutex<Vec<ShardStats>>> = Arc::default();
    let s = stats.clone();
    control.set_stats_source(move |out: &mut String| format_shard_stats(&s.lock().unwrap(), out));
    Rig { handle, pipeline, cx: ShardCtx::new(0), control, stats, now_ms: 0, _fib: fib }
}

impl Rig {
    /// One round: the data shard runs a batch, publishes its counters, the control plane polls.
    fn step(&mut self) {
        self.pipeline.run_once(&mut self.cx);
        *self.stats.lock().unwrap() =
            vec![ShardStats { shard: 0, generation: self.now_ms as u64, counters: self.cx.counters }];
        self.now_ms += 10;
        self.control.poll_at(Instant::from_millis(self.now_ms));
    }

    fn exchange(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        self.handle.inject(0, frame).unwrap();
        self.step();
        self.handle.drain_tx(1)
    }
}

/// RFC 826 request: who has `target`, tell CLIENT4 (Ethernet/IPv4, broadcast).
fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&CLIENT4);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

fn arp_reply_to_client(rig: &mut Rig) {
    let out = rig.exchange(&arp_request(ME4));
    assert_eq!(out.len(), 1, "one ARP reply expected, got {out:02x?}");
    let r = &out[0];
    assert_eq!(&r[0..6], &CLIENT_MAC, "unicast to the requester");
    assert_eq!(&r[6..12], &ME_MAC);
    assert_eq!(&r[12..14], &[0x08, 0x06]);
    assert_eq!(&r[20..22], &[0x00, 0x02], "op = reply");
    assert_eq!(&r[22..28], &ME_MAC, "sender hardware address");
    assert_eq!(&r[28..32], &ME4, "sender protocol address");
    assert_eq!(&r[32..38], &CLIENT_MAC);
    assert_eq!(&r[38..42], &CLIENT4);
}

#[test]
fn arp_request_gets_a_reply_and_others_do_not() {
    let mut rig = rig(64);
    arp_reply_to_client(&mut rig);
    // The requester is learned as a neighbor on the port it came in on.
    let learned = rig.control.take_neighbor_changes();
    assert_eq!(learned, vec![(IpAddr::from(CLIENT4), Neighbor { mac: CLIENT_MAC, port: 0 })]);
    // Nobody answers for an address that is not ours, and nothing is learned from it.
    assert!(rig.exchange(&arp_request([192, 0, 2, 77])).is_empty());
    assert!(rig.control.take_neighbor_changes().is_empty());
    assert_eq!(rig.control.learned_neighbors().count(), 1);
    assert_eq!(rig.cx.counters.punted, 2);
    assert_eq!(rig.control.counters().device.received, 2);
}

#[test]
fn ping_gets_an_echo_reply() {
    let mut rig = rig(64);
    arp_reply_to_client(&mut rig);
    let b =
        PacketBuilder::ethernet2(CLIENT_MAC, ME_MAC).ipv4(CLIENT4, ME4, 64).icmpv4_echo_request(0x1234, 7);
    let mut f = Vec::new();
    b.write(&mut f, b"wirespeed ping payload").unwrap();
    let out = rig.exchange(&f);
    assert_eq!(out.len(), 1, "{out:02x?}");
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = p.transport else { panic!("not ICMP: {p:?}") };
    match icmp.icmp_type() {
        Icmpv4Type::EchoReply(e) => assert_eq!((e.id, e.seq), (0x1234, 7)),
        t => panic!("not an echo reply: {t:?}"),
    }
    assert_eq!(icmp.payload(), b"wirespeed ping payload");
    assert_eq!(&out[0][0..6], &CLIENT_MAC);
}

#[test]
fn ipv6_neighbor_solicitation_and_ping6() {
    let mut rig = rig(64);
    let me6: Ipv6Addr = ME6.parse().unwrap();
    let client6: Ipv6Addr = CLIENT6.parse().unwrap();
    // RFC 4861 §4.3 NS for ME6 to its solicited-node group ff02::1:ff00:1, with the
    // source link-layer address option (type 1, length 1).
    let b = PacketBuilder::ethernet2(CLIENT_MAC, [0x33, 0x33, 0xff, 0x00, 0x00, 0x01])
        .ipv6(client6.octets(), "ff02::1:ff00:1".parse::<Ipv6Addr>().unwrap().octets(), 255)
        .icmpv6_raw(135, 0, [0; 4]);
    let mut body = me6.octets().to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&CLIENT_MAC);
    let mut f = Vec::new();
    b.write(&mut f, &body).unwrap();
    let out = rig.exchange(&f);
    assert_eq!(out.len(), 1, "one neighbor advertisement expected: {out:02x?}");
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Icmpv6(icmp)) = p.transport else { panic!("not ICMPv6: {p:?}") };
    assert_eq!(icmp.type_u8(), 136, "neighbor advertisement");
    assert_eq!(&icmp.payload()[..16], &me6.octets(), "target address");
    assert_eq!(
        rig.control.take_neighbor_changes(),
        vec![(IpAddr::from(client6), Neighbor { mac: CLIENT_MAC, port: 0 })],
        "the solicitor is learned from its source link-layer option"
    );

    let b = PacketBuilder::ethernet2(CLIENT_MAC, ME_MAC)
        .ipv6(client6.octets(), me6.octets(), 64)
        .icmpv6_echo_request(9, 1);
    let mut f = Vec::new();
    b.write(&mut f, b"ping6").unwrap();
    let out = rig.exchange(&f);
    assert_eq!(out.len(), 1, "{out:02x?}");
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Icmpv6(icmp)) = p.transport else { panic!("not ICMPv6") };
    assert!(matches!(icmp.icmp_type(), Icmpv6Type::EchoReply(e) if e.id == 9 && e.seq == 1));
}

#[test]
fn full_punt_queue_is_a_counted_drop() {
    let mut rig = rig(2);
    for _ in 0..5 {
        rig.handle.inject(0, &arp_request(ME4)).unwrap();
    }
    rig.pipeline.run_once(&mut rig.cx);
    assert_eq!(rig.cx.counters.punted, 2);
    assert_eq!(rig.cx.counters.drops_of(DropReason::PuntQueueFull), 3);
}

/// One poll of the client at the rig's clock: it receives what the control plane sent on
/// queue 1, and what it sends is injected on queue 0.
fn client_poll(client: &mut Client, rig: &Rig) {
    while let Some(b) = rig.handle.take_tx(1) {
        client.dev.inbox.push_back(b.data().to_vec());
    }
    client.poll(Instant::from_millis(rig.now_ms));
    for f in client.dev.outbox.drain(..) {
        rig.handle.inject(0, &f).unwrap();
    }
}

#[test]
fn tcp_client_reads_the_stats() {
    let mut rig = rig(64);
    // The client's frames go in on queue 0; what the control plane sends on queue 1 reaches it.
    let mut client = Client::new(CLIENT_MAC, CLIENT4);
    client.connect(ME4, 9000, 49152);
    let mut text = Vec::new();
    let mut closed = false;
    for _ in 0..500 {
        client_poll(&mut client, &rig);
        rig.step();
        client_poll(&mut client, &rig);
        if client.read_into(&mut text) {
            client.socket().close();
            closed = true;
            break;
        }
    }
    let text = String::from_utf8(text).unwrap();
    assert!(closed, "the server did not finish; got {text:?}");
    assert!(text.starts_with("shard 0 gen "), "{text:?}");
    assert!(text.contains("rx ") && text.contains("punted "), "{text:?}");
    assert_eq!(rig.control.counters().connections_served, 1);
    // Everything the client sent went through the data shard's punt stage.
    assert!(rig.cx.counters.punted >= 3, "{}", rig.cx.counters);
}

#[test]
fn control_plane_as_a_worker_counts_its_traffic() {
    use wirespeed_core::{Poll, Worker};
    let mut rig = rig(64);
    rig.handle.inject(0, &arp_request(ME4)).unwrap();
    rig.pipeline.run_once(&mut rig.cx);
    let mut ccx = ShardCtx::new(1);
    assert!(matches!(Worker::poll(&mut rig.control, &mut ccx), Poll::Busy(1)));
    assert_eq!((ccx.counters.rx_packets, ccx.counters.tx_packets), (1, 1));
    assert_eq!(ccx.counters.rx_bytes, 60);
    assert!(matches!(Worker::poll(&mut rig.control, &mut ccx), Poll::Idle));
    assert_eq!(rig.handle.drain_tx(1).len(), 1);
}
