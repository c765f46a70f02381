//! Dynamic neighbors (issue 20 item 2): a next hop with no static neighbor is resolved by ARP /
//! Neighbor Discovery. The data plane's `Resolving` stage holds the packets and asks; the
//! control plane solicits (rate-limited), learns the answer and ages what it learned; the
//! learned table, published by epoch, releases the held packets in order. Static neighbors win.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use etherparse::{
    ArpOperation, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
    icmpv6::Icmpv6PayloadSlice,
};
use wirespeed_core::backend::mem::{MemConfig, MemHandle, MemPort, MemTx};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{Batch, BufferPool, DropReason, PacketBuf, PoolBuf, PoolConfig, Port, ShardCtx, Stage};
use wirespeed_stages::classify::{Classify, ClassifyConfig};
use wirespeed_stages::control::{ControlConfig, ControlPlane, Solicited, punt_queue, solicited_node};
use wirespeed_stages::forward::{
    FibBuilder, Forward, HoldConfig, HoldCounters, Neighbor, Neighbors, NextHop, ResolveQueue, Resolving,
    resolve_queue,
};

const ME_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x50];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x77];
const ME4: [u8; 4] = [192, 0, 2, 1];
const HOST4: [u8; 4] = [192, 0, 2, 50];

fn pool() -> BufferPool {
    BufferPool::new(PoolConfig { buffers: 1024, ..PoolConfig::default() }).unwrap()
}

/// UDP from 198.51.100.7 to `dst`, TTL 64, payload `id` (to check order).
fn udp4(dst: [u8; 4], id: u32) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, ME_MAC)
        .ipv4([198, 51, 100, 7], dst, 64)
        .udp(4000, 5000)
        .write(&mut f, &id.to_be_bytes())
        .unwrap();
    f
}

fn udp6(dst: Ipv6Addr, id: u32) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, ME_MAC)
        .ipv6("2001:db8:99::7".parse::<Ipv6Addr>().unwrap().octets(), dst.octets(), 64)
        .udp(4000, 5000)
        .write(&mut f, &id.to_be_bytes())
        .unwrap();
    f
}

fn id_of(f: &[u8]) -> u32 {
    let n = f.len();
    u32::from_be_bytes(f[n - 4..].try_into().unwrap())
}

/// A data path: classify then a resolving forward stage over one port, with its tables.
struct Data {
    pool: BufferPool,
    classify: Classify,
    stage: Resolving<PoolBuf>,
    learned: Publisher<Neighbors>,
    table: Neighbors,
    requests: ResolveQueue,
    cx: ShardCtx,
    _fib: Publisher<wirespeed_stages::Fib>,
}

impl Data {
    fn new(b: &FibBuilder, hold: HoldConfig) -> Self {
        let mut fib = Publisher::new(b.build().unwrap());
        let mut learned = Publisher::new(Neighbors::new());
        let requests = resolve_queue(16);
        let fwd = Forward::new(fib.subscribe(), &[ME_MAC]).with_neighbors(learned.subscribe());
        Self {
            pool: pool(),
            classify: Classify::new(ClassifyConfig::default()),
            stage: Resolving::new(fwd, requests.clone(), hold),
            learned,
            table: Neighbors::new(),
            requests,
            cx: ShardCtx::new(0),
            _fib: fib,
        }
    }

    /// Runs `frames` through classify and the stage; returns what left the stage.
    fn run(&mut self, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut batch = Batch::<PoolBuf>::new();
        for f in frames {
            let mut p = self.pool.alloc().unwrap();
            p.copy_from(f).unwrap();
            batch.push(p).ok().unwrap();
        }
        self.classify.process(&mut self.cx, &mut batch);
        self.stage.process(&mut self.cx, &mut batch);
        batch.iter().map(|p| p.data().to_vec()).collect()
    }

    /// Runs the stage on an empty batch when it asks for it (what the gateway's data shard
    /// does between bursts).
    fn service(&mut self) -> Vec<Vec<u8>> {
        if self.stage.needs_service(self.cx.now) { self.run(&[]) } else { Vec::new() }
    }

    fn learn(&mut self, ip: IpAddr, n: Neighbor) {
        self.table.insert(ip, n);
        self.learned.publish(self.table.clone());
    }

    fn requests(&self) -> Vec<IpAddr> {
        std::iter::from_fn(|| self.requests.pop()).collect()
    }
}

fn connected() -> FibBuilder {
    let mut b = FibBuilder::new();
    b.route("192.0.2.0".parse().unwrap(), 24, NextHop::Direct).unwrap();
    b.route("2001:db8::".parse().unwrap(), 64, NextHop::Direct).unwrap();
    b
}

/// A control plane on queue 1 of a mem port, answering for 192.0.2.1/24 and 2001:db8::1/64.
struct Control {
    plane: ControlPlane<PoolBuf, MemTx, BufferPool>,
    handle: MemHandle,
    punt: wirespeed_stages::control::PuntQueue<PoolBuf>,
    pool: BufferPool,
}

fn control(cfg: ControlConfig) -> Control {
    let pool = pool();
    let (mut port, handle) = MemPort::new(MemConfig { queues: 2, mac: ME_MAC, ..MemConfig::default() }, pool);
    let (_rx, tx) = port.queue_pair(1).unwrap();
    let punt = punt_queue(64);
    let cfg = ControlConfig {
        mac: ME_MAC,
        addresses: vec![(IpAddr::from(ME4), 24), ("2001:db8::1".parse().unwrap(), 64)],
        ..cfg
    };
    let plane = ControlPlane::new(cfg, punt.clone(), tx, pool).unwrap();
    Control { plane, handle, punt, pool }
}

impl Control {
    fn sent(&self) -> Vec<Vec<u8>> {
        self.handle.drain_tx(1)
    }

    /// A frame arriving at `ms` milliseconds.
    fn receive(&mut self, frame: &[u8], ms: i64) {
        let mut p = self.pool.alloc().unwrap();
        p.copy_from(frame).unwrap();
        self.punt.push(p).ok().unwrap();
        self.plane.poll_at(smoltcp::time::Instant::from_millis(ms));
    }
}

fn at(ms: i64) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_millis(ms)
}

/// ARP `op` (1 request, 2 reply) from `mac`/`spa` to `tpa`.
fn arp(op: u16, mac: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = ME_MAC.to_vec();
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&ME_MAC);
    f.extend_from_slice(&tpa);
    f.resize(60, 0);
    f
}

/// The ARP request in `f`: (destination MAC, sender MAC, sender IP, target IP).
fn parse_arp_request(f: &[u8]) -> ([u8; 6], [u8; 6], [u8; 4], [u8; 4]) {
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(NetSlice::Arp(a)) = p.net else { panic!("not ARP: {f:02x?}") };
    assert_eq!(a.operation(), ArpOperation::REQUEST);
    let e = a.to_packet().try_eth_ipv4().unwrap();
    assert_eq!(e.sender_mac, ME_MAC);
    (f[0..6].try_into().unwrap(), e.sender_mac, e.sender_ipv4, e.target_ipv4)
}

#[test]
fn a_connected_host_is_reached_after_the_gateway_arps_and_held_packets_leave_in_order() {
    let mut d = Data::new(&connected(), HoldConfig::default());
    let mut c = control(ControlConfig::default());
    d.cx.now = Instant::now();

    // Five packets to a host nobody configured: held, one resolution request.
    let first: Vec<_> = (0..5).map(|i| udp4(HOST4, i)).collect();
    assert!(d.run(&first).is_empty(), "nothing leaves before the host is resolved");
    assert_eq!(d.stage.held(), 5);
    let asked = d.requests();
    assert_eq!(asked, vec![IpAddr::from(HOST4)], "one request for the next hop");

    // The control plane sends an ARP request for it, broadcast, from its address on the link.
    assert_eq!(c.plane.solicit_at(asked[0], at(0)), Solicited::Sent);
    let out = c.sent();
    assert_eq!(out.len(), 1);
    assert_eq!(parse_arp_request(&out[0]), ([0xff; 6], ME_MAC, ME4, HOST4));

    // More packets arrive while the request is out: they queue behind.
    assert!(d.run(&[udp4(HOST4, 5), udp4(HOST4, 6)]).is_empty());
    assert_eq!(d.stage.held(), 7);
    assert!(d.requests().is_empty(), "not asked again within the retry interval");

    // The host answers; the control plane learns it; the table is published.
    c.receive(&arp(2, HOST_MAC, HOST4, ME4), 5);
    let updates = c.plane.take_neighbor_updates();
    assert_eq!(updates, vec![(IpAddr::from(HOST4), Some(Neighbor { mac: HOST_MAC, port: 0 }))]);
    for (ip, n) in updates {
        d.learn(ip, n.unwrap());
    }
    // The shard notices without any new packet and releases the seven, in arrival order,
    // routed: MAC rewritten, TTL decremented.
    let released = d.service();
    assert_eq!(released.iter().map(|f| id_of(f)).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    for f in &released {
        assert_eq!(&f[0..6], &HOST_MAC);
        assert_eq!(&f[6..12], &ME_MAC);
        assert_eq!(f[22], 63, "TTL decremented once");
    }
    assert_eq!(d.stage.held(), 0);
    let h = d.stage.counters();
    assert_eq!((h.held, h.released, h.overflow, h.expired, h.requests), (7, 7, 0, 0, 1), "{h:?}");
    // From now on packets go straight through.
    let out = d.run(&[udp4(HOST4, 7)]);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &HOST_MAC);
    assert_eq!(d.cx.counters.total_drops(), 0, "{}", d.cx.counters);
}

#[test]
fn held_packets_go_before_newer_ones_in_the_same_batch() {
    let mut d = Data::new(&connected(), HoldConfig::default());
    d.cx.now = Instant::now();
    assert!(d.run(&[udp4(HOST4, 0), udp4(HOST4, 1)]).is_empty());
    d.learn(HOST4.into(), Neighbor { mac: HOST_MAC, port: 0 });
    // No service in between: the next burst carries newer packets to the same host.
    let out = d.run(&[udp4(HOST4, 2), udp4([192, 0, 2, 51], 99), udp4(HOST4, 3)]);
    let ids: Vec<u32> = out.iter().map(|f| id_of(f)).collect();
    assert_eq!(ids, vec![0, 1, 2, 3], "{ids:?}");
    assert_eq!(d.stage.held(), 1, "192.0.2.51 waits for its own resolution");
}

#[test]
fn a_full_hold_queue_and_unanswered_resolution_are_counted_drops() {
    let hold =
        HoldConfig { capacity: 4, max_hops: 2, timeout: Duration::from_secs(3), ..HoldConfig::default() };
    let mut d = Data::new(&connected(), hold);
    let t0 = Instant::now();
    d.cx.now = t0;
    let frames: Vec<_> = (0..6).map(|i| udp4(HOST4, i)).collect();
    assert!(d.run(&frames).is_empty());
    assert_eq!(d.stage.held(), 4);
    assert_eq!(d.cx.counters.drops_of(DropReason::NeighborQueueFull), 2, "{}", d.cx.counters);
    assert_eq!(DropReason::NeighborQueueFull.name(), "neighbor_queue_full");
    // Nothing answers: after the timeout the held packets are dropped as no_neighbor.
    d.cx.now = t0 + Duration::from_millis(2900);
    d.service();
    assert_eq!(d.stage.held(), 4, "not yet");
    d.cx.now = t0 + Duration::from_secs(3);
    assert!(d.service().is_empty());
    assert_eq!(d.stage.held(), 0);
    assert_eq!(d.cx.counters.drops_of(DropReason::NoNeighbor), 4, "{}", d.cx.counters);
    let h = d.stage.counters();
    assert_eq!((h.held, h.overflow, h.expired), (4, 2, 4), "{h:?}");
    // Received = sent + dropped + held, throughout.
    assert_eq!(d.cx.counters.total_drops(), 6);
    // At most `max_hops` next hops wait at once.
    let out = d.run(&[udp4([192, 0, 2, 60], 0), udp4([192, 0, 2, 61], 0), udp4([192, 0, 2, 62], 0)]);
    assert!(out.is_empty());
    assert_eq!(d.stage.held(), 2);
    assert_eq!(d.cx.counters.drops_of(DropReason::NeighborQueueFull), 3);
    // Stopping drops the rest as shutdown.
    d.stage.drop_held(&mut d.cx);
    assert_eq!(d.cx.counters.drops_of(DropReason::Shutdown), 2);
    // So does the end of input (`Stage::finish`, as a `Pipeline` calls it at the end of a capture).
    assert!(d.run(&[udp4([192, 0, 2, 70], 0)]).is_empty());
    assert_eq!(d.stage.held(), 1);
    Stage::<PoolBuf>::finish(&mut d.stage, &mut d.cx);
    assert_eq!(d.stage.held(), 0);
    assert_eq!(d.cx.counters.drops_of(DropReason::Shutdown), 3, "{}", d.cx.counters);
}

#[test]
fn resolution_requests_are_rate_limited_in_the_shard_and_the_control_plane() {
    let mut d = Data::new(&connected(), HoldConfig::default());
    let t0 = Instant::now();
    d.cx.now = t0;
    for i in 0..10 {
        d.run(&[udp4(HOST4, i)]);
    }
    assert_eq!(d.requests().len(), 1, "ten packets, one request");
    d.cx.now = t0 + Duration::from_millis(500);
    d.run(&[udp4(HOST4, 10)]);
    d.service();
    assert!(d.requests().is_empty(), "within the retry interval");
    d.cx.now = t0 + Duration::from_millis(1000);
    d.service();
    assert_eq!(d.requests(), vec![IpAddr::from(HOST4)], "asked again after a second");

    // The control plane: one solicitation per address per retransmit time, a rate over all.
    let mut c = control(ControlConfig { solicit_rate: 3, ..ControlConfig::default() });
    let host = IpAddr::from(HOST4);
    assert_eq!(c.plane.solicit_at(host, at(0)), Solicited::Sent);
    assert_eq!(c.plane.solicit_at([192, 0, 2, 51].into(), at(0)), Solicited::Sent);
    assert_eq!(c.plane.solicit_at([192, 0, 2, 52].into(), at(0)), Solicited::Sent);
    assert_eq!(c.plane.solicit_at([192, 0, 2, 53].into(), at(0)), Solicited::Limited, "bucket empty");
    assert_eq!(c.plane.solicit_at([192, 0, 2, 53].into(), at(200)), Solicited::Limited, "0.6 tokens");
    assert_eq!(c.plane.solicit_at([192, 0, 2, 53].into(), at(400)), Solicited::Sent, "a token after 1/3 s");
    assert_eq!(c.plane.solicit_at(host, at(999)), Solicited::Limited, "solicited within a second");
    // Not ours to resolve: off the subnets, or our own address.
    assert_eq!(c.plane.solicit_at([203, 0, 113, 9].into(), at(2000)), Solicited::NotOnLink);
    assert_eq!(c.plane.solicit_at(ME4.into(), at(2000)), Solicited::NotOnLink);
    let k = c.plane.counters();
    assert_eq!((k.solicitations, k.solicit_limited, k.solicit_not_on_link), (4, 3, 2), "{k:?}");
    assert_eq!(c.sent().len(), 4);
}

#[test]
fn ipv6_next_hops_are_resolved_by_neighbor_solicitation() {
    let host: Ipv6Addr = "2001:db8::50".parse().unwrap();
    let mut d = Data::new(&connected(), HoldConfig::default());
    d.cx.now = Instant::now();
    assert!(d.run(&[udp6(host, 0), udp6(host, 1)]).is_empty());
    assert_eq!(d.requests(), vec![IpAddr::V6(host)]);

    let mut c = control(ControlConfig::default());
    assert_eq!(c.plane.solicit_at(host.into(), at(0)), Solicited::Sent);
    let out = c.sent();
    assert_eq!(out.len(), 1);
    let ns = &out[0];
    let group = solicited_node(host);
    assert_eq!(group, "ff02::1:ff00:50".parse::<Ipv6Addr>().unwrap());
    assert_eq!(&ns[0..6], &[0x33, 0x33, 0xff, 0, 0, 0x50], "to the solicited-node group's MAC");
    let p = SlicedPacket::from_ethernet(ns).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!("not IPv6") };
    assert_eq!(ip.header().hop_limit(), 255);
    assert_eq!(ip.header().destination_addr(), group);
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    assert_eq!(ip.header().source_addr(), src);
    let Some(TransportSlice::Icmpv6(icmp)) = p.transport else { panic!("not ICMPv6") };
    assert!(icmp.is_checksum_valid(src.octets(), group.octets()), "checksum");
    assert_eq!(icmp.icmp_type(), Icmpv6Type::NeighborSolicitation);
    let Ok(Icmpv6PayloadSlice::NeighborSolicitation(sol)) = icmp.payload_slice() else { panic!() };
    assert_eq!(sol.target_address(), host);
    assert_eq!(sol.options(), &[1, 1, 2, 0, 0, 0, 0, 1], "source link-layer address option");

    // A solicited advertisement answers it.
    let mut na = Vec::new();
    let mut body = vec![0x60, 0, 0, 0];
    body.extend_from_slice(&host.octets());
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&HOST_MAC);
    PacketBuilder::ethernet2(HOST_MAC, ME_MAC)
        .ipv6(host.octets(), src.octets(), 255)
        .icmpv6(Icmpv6Type::NeighborAdvertisement(etherparse::icmpv6::NeighborAdvertisementHeader {
            router: false,
            solicited: true,
            r#override: true,
        }))
        .write(&mut na, &body[4..])
        .unwrap();
    c.receive(&na, 3);
    let updates = c.plane.take_neighbor_updates();
    assert_eq!(updates, vec![(IpAddr::V6(host), Some(Neighbor { mac: HOST_MAC, port: 0 }))]);
    d.learn(host.into(), Neighbor { mac: HOST_MAC, port: 0 });
    let out = d.service();
    assert_eq!(out.iter().map(|f| id_of(f)).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(&out[0][0..6], &HOST_MAC);
    assert_eq!(out[0][21], 63, "hop limit decremented");
}

#[test]
fn learned_neighbors_are_probed_refreshed_and_aged_out() {
    let mut c = control(ControlConfig {
        reachable_time: Duration::from_secs(30),
        retrans_time: Duration::from_secs(1),
        probes: 3,
        ..ControlConfig::default()
    });
    let host = IpAddr::from(HOST4);
    c.receive(&arp(2, HOST_MAC, HOST4, ME4), 0);
    assert_eq!(c.plane.take_neighbor_updates(), vec![(host, Some(Neighbor { mac: HOST_MAC, port: 0 }))]);
    c.sent();
    // Confirmed recently: left alone.
    c.plane.poll_at(at(29_000));
    assert!(c.sent().is_empty());
    // Past the reachable time: a unicast probe to its MAC.
    c.plane.poll_at(at(30_500));
    let probe = c.sent();
    assert_eq!(probe.len(), 1);
    assert_eq!(parse_arp_request(&probe[0]), (HOST_MAC, ME_MAC, ME4, HOST4));
    // It answers: refreshed, no change to publish, no probe for another 30 s.
    c.receive(&arp(2, HOST_MAC, HOST4, ME4), 30_600);
    assert!(c.plane.take_neighbor_updates().is_empty(), "a refresh is not a change");
    c.plane.poll_at(at(59_000));
    assert!(c.sent().is_empty());
    // Then it goes silent: three probes a second apart, then removed.
    for (i, ms) in [61_000, 62_100, 63_200].into_iter().enumerate() {
        c.plane.poll_at(at(ms));
        assert_eq!(c.sent().len(), 1, "probe {i}");
        c.plane.poll_at(at(ms + 500));
        assert!(c.sent().is_empty(), "one probe per retransmit time");
        assert!(c.plane.take_neighbor_updates().is_empty());
    }
    c.plane.poll_at(at(64_300));
    assert!(c.sent().is_empty());
    assert_eq!(c.plane.take_neighbor_updates(), vec![(host, None)], "aged out");
    assert_eq!(c.plane.learned_neighbors().count(), 0);
    let k = c.plane.counters();
    assert_eq!((k.snoop.probes, k.snoop.expired, k.solicitations), (4, 1, 4), "{k:?}");
}

#[test]
fn static_neighbors_win_over_learned_ones() {
    let gw: IpAddr = "192.0.2.254".parse().unwrap();
    let mut b = connected();
    b.route("10.0.0.0".parse().unwrap(), 8, NextHop::Gateway(gw)).unwrap();
    b.neighbor(HOST4.into(), [0x02, 0, 0, 0, 0, 0xaa], 0);
    let mut d = Data::new(&b, HoldConfig::default());
    d.cx.now = Instant::now();
    // The wire claims otherwise for the static host; the gateway is only learned.
    d.learn(HOST4.into(), Neighbor { mac: [0x02, 0, 0, 0, 0, 0xbb], port: 0 });
    d.learn(gw, Neighbor { mac: [0x02, 0, 0, 0, 0, 0xfe], port: 0 });
    let out = d.run(&[udp4(HOST4, 0), udp4([10, 1, 2, 3], 1)]);
    assert_eq!(out.len(), 2);
    assert_eq!(&out[0][0..6], &[0x02, 0, 0, 0, 0, 0xaa], "static wins");
    assert_eq!(&out[1][0..6], &[0x02, 0, 0, 0, 0, 0xfe], "a route's gateway resolves from the learned table");
    assert!(d.requests().is_empty());
    // The plain forward stage without a learned table still drops misses as no_neighbor.
    let mut fib = Publisher::new(connected().build().unwrap());
    let mut plain = Forward::new(fib.subscribe(), &[ME_MAC]);
    let mut batch = Batch::<PoolBuf>::new();
    let mut p = d.pool.alloc().unwrap();
    p.copy_from(&udp4(HOST4, 0)).unwrap();
    batch.push(p).ok().unwrap();
    let mut cx = ShardCtx::new(0);
    d.classify.process(&mut cx, &mut batch);
    plain.process(&mut cx, &mut batch);
    assert_eq!(cx.counters.drops_of(DropReason::NoNeighbor), 1);
}

/// A `Pipeline` services `Resolving` on polls that receive nothing: held packets leave once
/// their next hop is published (or are dropped at their timeout), and the end of the input is
/// reported only when nothing is held any more.
#[test]
fn a_pipeline_releases_held_packets_without_new_input_and_finishes_after_them() {
    use wirespeed_core::runtime::{Poll, Worker};

    for answered in [true, false] {
        let (pipeline, router, mut learned, requests) = held_behind_a_router(20);
        let mut pipeline = pipeline.with_report(|s| s.get::<Resolving<PoolBuf>>().map(|r| r.counters()));
        let mut cx = ShardCtx::new(0);
        let t0 = Instant::now();
        cx.now = t0;
        assert_eq!(pipeline.poll(&mut cx), Poll::Busy(20));
        assert_eq!((cx.counters.tx_packets, requests.pop()), (0, Some(router)), "all held, resolution asked");
        // The input has ended, but 20 packets are held: not finished.
        assert_eq!(pipeline.poll(&mut cx), Poll::Idle);
        assert_eq!(pipeline.stages().held(), 20);
        if answered {
            let mut table = Neighbors::new();
            table.insert(router, Neighbor { mac: [2, 0, 0, 0, 0, 0xfe], port: 0 });
            learned.publish(table);
            // Nothing received: the held packets leave, and with them the end of input is reached.
            assert_eq!(pipeline.poll(&mut cx), Poll::Finished);
            assert_eq!(cx.counters.tx_packets, 20, "released without new input: {}", cx.counters);
        } else {
            cx.now = t0 + Duration::from_millis(2999);
            assert_eq!(pipeline.poll(&mut cx), Poll::Idle);
            assert_eq!(pipeline.stages().held(), 20, "not yet");
            cx.now = t0 + HoldConfig::default().timeout;
            assert_eq!(pipeline.poll(&mut cx), Poll::Finished);
            assert_eq!(cx.counters.drops_of(DropReason::NoNeighbor), 20, "{}", cx.counters);
        }
        assert_eq!(pipeline.stages().held(), 0);
        assert_eq!(pipeline.poll(&mut cx), Poll::Finished, "answered: {answered}");
        assert_eq!(cx.counters.drops_of(DropReason::Shutdown), 0);
        assert_eq!(cx.counters.rx_packets, cx.counters.tx_packets + cx.counters.total_drops());
        let hold =
            pipeline.report().unwrap().downcast_ref::<Option<HoldCounters>>().copied().flatten().unwrap();
        assert_eq!(
            (hold.held, hold.released, hold.expired),
            if answered { (20, 20, 0) } else { (20, 0, 20) }
        );
    }
}

/// A stop while packets are held (their next hop never answered): `drain` ends the input for the
/// stages, so the held packets are counted as `shutdown` drops, not freed uncounted.
#[test]
fn a_stopped_pipeline_counts_the_packets_it_still_holds() {
    use wirespeed_core::runtime::{Poll, Worker};

    let (mut pipeline, _router, _learned, _requests) = held_behind_a_router(12);
    let mut cx = ShardCtx::new(0);
    cx.now = Instant::now();
    assert_eq!(pipeline.poll(&mut cx), Poll::Busy(12));
    assert_eq!(pipeline.stages().held(), 12);
    pipeline.drain(&mut cx);
    assert_eq!(pipeline.stages().held(), 0);
    assert_eq!(cx.counters.drops_of(DropReason::Shutdown), 12, "{}", cx.counters);
    assert_eq!(cx.counters.rx_packets, cx.counters.tx_packets + cx.counters.total_drops());
    // A second drain (or a poll after it) counts nothing twice.
    pipeline.drain(&mut cx);
    assert_eq!(cx.counters.drops_of(DropReason::Shutdown), 12);
}

type HeldPipeline = wirespeed_core::Pipeline<
    wirespeed_core::backend::null::NullRx,
    wirespeed_core::backend::null::NullTx,
    (Classify, Resolving<PoolBuf>),
>;

/// A pipeline whose `n` input packets all wait for the default route's next hop, which nobody
/// has answered yet: the pipeline, that next hop, the learned-neighbor table to answer in, and
/// the stage's resolution requests.
fn held_behind_a_router(
    n: u64,
) -> (HeldPipeline, IpAddr, Publisher<Neighbors>, wirespeed_stages::forward::ResolveQueue) {
    use wirespeed_core::backend::null::{NullConfig, NullPort};
    let router: IpAddr = "192.0.2.254".parse().unwrap();
    let mut b = FibBuilder::new();
    b.route("0.0.0.0".parse().unwrap(), 0, NextHop::Gateway(router)).unwrap();
    let mut fib = Publisher::new(b.build().unwrap());
    let mut learned = Publisher::new(Neighbors::new());
    let requests = resolve_queue(16);
    let fwd = Forward::new(fib.subscribe(), &[ME_MAC]).with_neighbors(learned.subscribe());
    let stages = (
        Classify::new(ClassifyConfig::default()),
        Resolving::new(fwd, requests.clone(), HoldConfig::default()),
    );
    let cfg = NullConfig { copy: true, limit: Some(n), ..NullConfig::default() };
    let mut port = NullPort::new(cfg, pool());
    let (rx, tx) = port.queue_pair(0).unwrap();
    (wirespeed_core::Pipeline::new(rx, tx, stages), router, learned, requests)
}
