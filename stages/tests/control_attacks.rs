//! The control plane under attack (issue 13): frames go straight into the punt queue, as a data
//! shard's punt stage would put them, and time is driven through the control shard's clock
//! (`ShardCtx::now`), never by sleeping.
//!
//! - a SYN flood plus peers that complete the handshake and then advertise a zero window must
//!   not lock the management port: a legitimate client is served within the idle timeout;
//! - neighbor learning rejects poisoned ARP / Neighbor Discovery by reason, stays bounded and
//!   evicts instead of refusing;
//! - on the control shard every received frame is accounted: rx == tx + drops.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant as StdInstant};

mod smol_client;

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use smol_client::Client;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use wirespeed_core::backend::mem::{MemConfig, MemHandle, MemPort, MemTx};
use wirespeed_core::{
    BufferPool, DropReason, PacketBuf, PacketMeta, PoolBuf, PoolConfig, Port, ShardCtx, Worker,
};
use wirespeed_stages::control::{ControlConfig, ControlPlane, MAX_LEARNED, PuntQueue, punt_queue};
use wirespeed_stages::forward::Neighbor;

const ME_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const ME4: [u8; 4] = [192, 0, 2, 1];
const CLIENT4: [u8; 4] = [192, 0, 2, 99];
const ME6: &str = "2001:db8::1";

struct Rig {
    pool: BufferPool,
    queue: PuntQueue<PoolBuf>,
    handle: MemHandle,
    control: ControlPlane<PoolBuf, MemTx, BufferPool>,
    cx: ShardCtx,
    t0: StdInstant,
}

fn rig() -> Rig {
    let pool = BufferPool::new(PoolConfig { buffers: 2048, ..PoolConfig::default() }).unwrap();
    let (mut port, handle) = MemPort::new(MemConfig { queues: 2, mac: ME_MAC, ..MemConfig::default() }, pool);
    let (_rx1, tx1) = port.queue_pair(1).unwrap();
    let queue = punt_queue(4096);
    let cfg = ControlConfig {
        mac: ME_MAC,
        addresses: vec![(IpAddr::from(ME4), 24), (ME6.parse().unwrap(), 64)],
        ..ControlConfig::default()
    };
    let t0 = StdInstant::now();
    let control = ControlPlane::new(cfg, queue.clone(), tx1, pool).unwrap();
    control_stats(Rig { pool, queue, handle, control, cx: ShardCtx::new(1), t0 })
}

fn control_stats(mut r: Rig) -> Rig {
    r.control.set_stats_source(|out: &mut String| out.push_str("shard 0: stats\n"));
    r.cx.now = r.t0;
    r
}

impl Rig {
    /// A frame punted by a data shard from port 0.
    fn punt(&self, frame: &[u8]) {
        let mut b = self.pool.alloc().expect("pool");
        b.copy_from(frame).unwrap();
        *b.meta_mut() = PacketMeta::received(0, 0);
        assert!(self.queue.push(b).is_ok(), "punt queue full");
    }

    /// One poll of the control shard at its clock, then the clock moves on by `ms`.
    fn poll(&mut self, ms: u64) {
        Worker::poll(&mut self.control, &mut self.cx);
        self.cx.now += Duration::from_millis(ms);
    }

    fn elapsed(&self) -> Duration {
        self.cx.now - self.t0
    }

    fn out(&self) -> Vec<Vec<u8>> {
        self.handle.drain_tx(1)
    }

    /// One poll; every frame the control shard sent goes to each of `peers`.
    fn pump(&mut self, peers: &mut [ZeroWindowPeer]) {
        self.poll(10);
        for f in self.out() {
            peers.iter_mut().for_each(|q| q.on_frame(self, &f));
        }
    }
}

/// RFC 826 request from (`mac`, `spa`) for `tpa`.
fn arp(op: u8, mac: [u8; 6], eth_src: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, op]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f.resize(60, 0);
    f
}

fn tcp_frame(
    mac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    win: u16,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac, ME_MAC).ipv4(src, ME4, 64).tcp(sport, 9000, seq, win);
    let b = if syn { b.syn() } else { b };
    let b = match ack {
        Some(a) => b.ack(a),
        None => b,
    };
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    f
}

/// A peer that completes the handshake and then advertises a zero window forever, answering
/// every probe so that the connection never looks dead.
struct ZeroWindowPeer {
    mac: [u8; 6],
    ip: [u8; 4],
    port: u16,
    established: bool,
    reset: bool,
}

impl ZeroWindowPeer {
    fn on_frame(&mut self, rig: &Rig, f: &[u8]) {
        let Ok(p) = SlicedPacket::from_ethernet(f) else { return };
        let Some(TransportSlice::Tcp(t)) = p.transport else { return };
        if t.destination_port() != self.port {
            return;
        }
        if t.rst() {
            self.reset = true;
            self.established = false;
            return;
        }
        // Acknowledge only the SYN, never any data: window 0.
        let ack = if t.syn() { t.sequence_number().wrapping_add(1) } else { t.sequence_number() };
        rig.punt(&tcp_frame(self.mac, self.ip, self.port, 1001, Some(ack), false, 0));
        self.established = true;
    }
}

/// What the legitimate client got from [`legit_client`].
struct Served {
    /// When it started, on the rig's clock.
    start: Duration,
    /// The text it was served (the stats source's).
    text: Vec<u8>,
    /// How long after `start` it had read the whole answer; `None`: never.
    after: Option<Duration>,
    /// Connections it tried.
    attempts: u16,
}

/// The legitimate client: a smoltcp TCP client at `CLIENT4` reading the management port
/// (9000), retrying when refused, as any client would, until served or `limit` has passed
/// since it started; `peers` see every frame the control shard sends meanwhile.
fn legit_client(rig: &mut Rig, peers: &mut [ZeroWindowPeer], limit: Duration) -> Served {
    let start = rig.elapsed();
    let mut client = Client::new(CLIENT_MAC, CLIENT4);
    let mut text = Vec::new();
    let mut attempts = 0u16;
    let mut served_after = None;
    while rig.elapsed() - start < limit {
        let now = Instant::from_micros(rig.elapsed().as_micros() as i64);
        if client.socket().state() == tcp::State::Closed && text.is_empty() {
            attempts += 1;
            client.connect(ME4, 9000, 49152 + attempts);
        }
        client.poll(now);
        for f in client.dev.outbox.drain(..) {
            rig.punt(&f);
        }
        rig.poll(10);
        for f in rig.out() {
            if f[0..6] == CLIENT_MAC || (f[0] & 1 == 1 && f[12..14] == [0x08, 0x06]) {
                client.dev.inbox.push_back(f.clone());
            }
            peers.iter_mut().for_each(|q| q.on_frame(rig, &f));
        }
        if client.read_into(&mut text) {
            served_after = Some(rig.elapsed() - start);
            break;
        }
    }
    client.socket().close();
    Served { start, text, after: served_after, attempts }
}

#[test]
fn syn_flood_and_zero_window_peers_do_not_lock_out_the_management_port() {
    let mut rig = rig();
    let defaults = ControlConfig::default();
    let backlog = defaults.connections;

    // 200 SYNs from spoofed on-link sources that never answer ARP: all stay half-open.
    for i in 0..200u16 {
        let src = [192, 0, 2, 100 + (i % 100) as u8];
        rig.punt(&tcp_frame([0x02, 0, 0, 0, 1, i as u8], src, 1024 + i, 7, None, true, 1024));
        if i % 20 == 19 {
            rig.poll(10);
        }
    }
    rig.poll(10);
    rig.out();

    // More zero-window peers than the backlog: each resolves, connects and stalls.
    let mut peers: Vec<ZeroWindowPeer> = (0..backlog as u8 + 2)
        .map(|i| ZeroWindowPeer {
            mac: [0x02, 0, 0, 0, 2, i],
            ip: [192, 0, 2, 10 + i],
            port: 40000 + u16::from(i),
            established: false,
            reset: false,
        })
        .collect();
    for i in 0..peers.len() {
        let (mac, ip, port) = (peers[i].mac, peers[i].ip, peers[i].port);
        rig.punt(&arp(1, mac, mac, ip, ME4));
        rig.poll(10);
        rig.punt(&tcp_frame(mac, ip, port, 1000, None, true, 0));
        rig.pump(&mut peers);
    }
    for _ in 0..150 {
        rig.pump(&mut peers);
    }
    let c = rig.control.counters();
    assert_eq!(peers.iter().filter(|p| p.established).count(), backlog, "{c:?}");
    assert!(c.connections_refused >= 2, "SYNs beyond the backlog are refused and counted: {c:?}");
    assert!(c.reclaimed_half_open >= 190, "the flood's half-open connections were reclaimed: {c:?}");

    // Now the legitimate client; it retries when refused, as any client would.
    let Served { start, text, after: served_after, attempts } =
        legit_client(&mut rig, &mut peers, defaults.idle_timeout + Duration::from_secs(5));
    // Every stalled peer is reclaimed by then or shortly after (they connected over ~0.2 s).
    while rig.elapsed() - start < defaults.idle_timeout + Duration::from_secs(2) {
        rig.pump(&mut peers);
    }
    let c = rig.control.counters();
    let served_after =
        served_after.unwrap_or_else(|| panic!("client never served after {attempts} attempts: {c:?}"));
    println!("served after {served_after:?}, {attempts} attempts: {c:?}");
    assert_eq!(text, b"shard 0: stats\n");
    assert!(served_after <= defaults.idle_timeout + Duration::from_secs(1), "served after {served_after:?}");
    assert!(attempts >= 2, "the client was refused while the stalled peers held every slot");
    assert!(c.reclaimed_stalled >= backlog as u64, "every zero-window peer was aborted: {c:?}");
    // The aborts send RST when smoltcp still knows the peer's MAC (its neighbor cache is small,
    // and an abort does not wait for ARP), so only some peers see one: best effort.
    assert!(peers.iter().any(|p| p.reset), "aborted peers get RST");
    assert!(c.connections_served > backlog as u64);
}

/// A half-open connection alone is reclaimed after the handshake timeout, even with free slots.
#[test]
fn half_open_connection_times_out() {
    let mut rig = rig();
    rig.punt(&tcp_frame([0x02, 0, 0, 0, 1, 1], [192, 0, 2, 200], 5555, 7, None, true, 1024));
    let timeout = ControlConfig::default().handshake_timeout;
    while rig.elapsed() <= timeout + Duration::from_millis(100) {
        rig.poll(100);
    }
    assert_eq!(rig.control.counters().reclaimed_half_open, 1);
}

// ---------------------------------------------------------------------------------------------
// Neighbor learning (issue 13 item 2)

const S_FLAG: u8 = 0x40;
const O_FLAG: u8 = 0x20;

/// RFC 4861 §4.4 Neighbor Advertisement for `target` from `target` to all-nodes, with flags and
/// a target link-layer option for `mac`; checksum computed by etherparse.
fn na(target: Ipv6Addr, mac: [u8; 6], flags: u8, hop_limit: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(target.octets(), "ff02::1".parse::<Ipv6Addr>().unwrap().octets(), hop_limit)
        .icmpv6_raw(136, 0, [flags, 0, 0, 0]);
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&mac);
    let mut f = Vec::new();
    b.write(&mut f, &body).unwrap();
    f
}

impl Rig {
    /// Punts every frame, polling whenever the punt queue fills up, then until it is empty.
    fn feed(&mut self, frames: impl IntoIterator<Item = Vec<u8>>) {
        for f in frames {
            if self.queue.len() >= 2048 {
                self.drain();
            }
            self.punt(&f);
        }
        self.drain();
    }

    fn drain(&mut self) {
        while !self.queue.is_empty() {
            self.poll(1);
        }
        self.poll(1);
        self.out();
    }

    fn learned(&self, ip: IpAddr) -> Option<Neighbor> {
        self.control.learned_neighbors().find(|(a, _)| *a == ip).map(|(_, n)| n)
    }
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn na_with_a_bad_checksum_or_hop_limit_is_not_learned() {
    let mut rig = rig();
    let t = v6("2001:db8::42");
    let mut bad = na(t, [0x02, 0, 0, 0, 0, 0x42], S_FLAG | O_FLAG, 255);
    let n = bad.len();
    bad[n - 1] ^= 0x01; // the MAC in the option no longer matches the checksum
    rig.feed([bad, na(t, [0x02, 0, 0, 0, 0, 0x42], S_FLAG | O_FLAG, 64)]);
    let s = rig.control.counters().snoop;
    assert_eq!((s.bad_checksum, s.bad_hop_limit, s.learned), (1, 1, 0), "{s:?}");
    assert!(rig.control.take_neighbor_changes().is_empty());
    rig.feed([na(t, [0x02, 0, 0, 0, 0, 0x42], S_FLAG | O_FLAG, 255)]);
    assert_eq!(rig.learned(t.into()), Some(Neighbor { mac: [0x02, 0, 0, 0, 0, 0x42], port: 0 }));
}

#[test]
fn unsolicited_or_off_subnet_na_is_not_learned() {
    let mut rig = rig();
    let (mac, mac2) = ([0x02, 0, 0, 0, 0, 0x42], [0x02, 0, 0, 0, 0, 0x66]);
    let t = v6("2001:db8::42");
    rig.feed([
        na(t, mac, O_FLAG, 255),                           // unsolicited, unknown target
        na(v6("2001:db9::42"), mac, S_FLAG | O_FLAG, 255), // not on a configured subnet
        na(v6(ME6), mac, S_FLAG | O_FLAG, 255),            // claims our own address
        na(v6("ff02::1"), mac, S_FLAG | O_FLAG, 255),      // multicast target
    ]);
    let s = rig.control.counters().snoop;
    assert_eq!((s.unsolicited, s.off_subnet, s.bad_sender, s.malformed, s.learned), (1, 1, 1, 1, 0), "{s:?}");
    assert_eq!(rig.control.learned_neighbors().count(), 0);
    // Link-local targets are on-link by definition (RFC 4861 §5.1).
    rig.feed([na(v6("fe80::42"), mac, S_FLAG | O_FLAG, 255), na(t, mac, S_FLAG | O_FLAG, 255)]);
    assert_eq!(rig.control.learned_neighbors().count(), 2);
    // A known neighbor: an unsolicited advertisement without Override does not move it; with
    // Override it does (RFC 4861 §7.2.5).
    rig.feed([na(t, mac2, 0, 255)]);
    assert_eq!(rig.learned(t.into()).unwrap().mac, mac);
    rig.feed([na(t, mac2, O_FLAG, 255)]);
    assert_eq!(rig.learned(t.into()).unwrap().mac, mac2);
}

#[test]
fn arp_with_own_broadcast_or_multicast_sender_is_not_learned() {
    let mut rig = rig();
    let mac = [0x02, 0, 0, 0, 0, 0x42];
    rig.feed([
        arp(1, mac, mac, ME4, ME4),                  // our own address
        arp(1, mac, mac, [255, 255, 255, 255], ME4), // limited broadcast
        arp(1, mac, mac, [192, 0, 2, 255], ME4),     // the subnet's broadcast
        arp(1, mac, mac, [224, 0, 0, 1], ME4),       // multicast
        arp(1, mac, mac, [127, 0, 0, 1], ME4),       // loopback
        arp(2, [0x01, 0, 0x5e, 0, 0, 1], [0x01, 0, 0x5e, 0, 0, 1], [192, 0, 2, 7], ME4), // multicast MAC
        arp(1, mac, [0x02, 0, 0, 0, 0, 0x43], [192, 0, 2, 8], ME4), // sender MAC is not the frame's
        arp(1, mac, mac, [10, 9, 9, 9], ME4),        // off every configured subnet
        arp(1, mac, mac, [192, 0, 2, 9], [192, 0, 2, 77]), // not for us
    ]);
    let s = rig.control.counters().snoop;
    assert_eq!((s.bad_sender, s.off_subnet, s.not_for_us, s.learned), (7, 1, 1, 0), "{s:?}");
    assert_eq!(rig.control.learned_neighbors().count(), 0);
    rig.feed([arp(1, mac, mac, [192, 0, 2, 9], ME4)]);
    assert_eq!(rig.learned(IpAddr::from([192, 0, 2, 9])), Some(Neighbor { mac, port: 0 }));
}

/// 10 000 bogus neighbors fill the table; the least recently confirmed ones are evicted, so a
/// legitimate neighbor arriving afterwards is still learned (on the old code it was refused).
#[test]
fn neighbor_flood_evicts_instead_of_refusing() {
    let mut rig = rig();
    let legit_old = v6("2001:db8::1:1");
    rig.feed([na(legit_old, [0x02, 0, 0, 0, 0, 0x01], S_FLAG | O_FLAG, 255)]);
    rig.feed((0..10_000u32).map(|i| {
        let t = Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_00aa_0000u128 + u128::from(i));
        na(t, [0x02, 0xbb, 0, 0, (i >> 8) as u8, i as u8], S_FLAG | O_FLAG, 255)
    }));
    let s = rig.control.counters().snoop;
    assert_eq!(rig.control.learned_neighbors().count(), MAX_LEARNED);
    assert_eq!(s.evicted, 10_001 - MAX_LEARNED as u64, "{s:?}");
    assert!(rig.learned(legit_old.into()).is_none(), "the oldest entry went first");
    let changes = rig.control.take_neighbor_changes();
    assert_eq!(changes.len(), MAX_LEARNED, "pending changes are bounded by the table");
    let legit = v6("2001:db8::2:2");
    rig.feed([na(legit, [0x02, 0, 0, 0, 0, 0x02], S_FLAG | O_FLAG, 255)]);
    assert_eq!(
        rig.control.take_neighbor_changes(),
        vec![(IpAddr::V6(legit), Neighbor { mac: [0x02, 0, 0, 0, 0, 0x02], port: 0 })]
    );
}

/// A neighbor flipping its MAC while nobody drains the change list is one pending change,
/// the latest (on the old code every flip was kept: 300 000 flips took 13.6 MB).
#[test]
fn change_list_is_bounded_when_nobody_drains_it() {
    let mut rig = rig();
    let t = v6("2001:db8::42");
    rig.feed(
        (0..20_000u32).map(|i| na(t, [0x02, 0xcc, 0, 0, (i >> 8) as u8, i as u8], S_FLAG | O_FLAG, 255)),
    );
    let last = 19_999u32;
    assert_eq!(rig.control.counters().snoop.learned, 20_000);
    let changes = rig.control.take_neighbor_changes();
    assert_eq!(changes.len(), 1, "one pending change per address");
    assert_eq!(
        changes,
        vec![(IpAddr::V6(t), Neighbor { mac: [0x02, 0xcc, 0, 0, (last >> 8) as u8, last as u8], port: 0 })]
    );
}

// ---------------------------------------------------------------------------------------------
// Control shard accounting (issue 13 item 5)

/// Every frame the control shard receives is answered (tx) or dropped with a reason; frames
/// smoltcp ignores are `ControlIgnored` drops (on the old code they vanished uncounted).
#[test]
fn control_shard_counters_balance() {
    let mut rig = rig();
    let client = [0x02, 0, 0, 0, 0, 0x42];
    let ping = |dst: [u8; 4]| {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(client, ME_MAC)
            .ipv4(CLIENT4, dst, 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut f, b"x")
            .unwrap();
        f
    };
    let mut udp = Vec::new();
    PacketBuilder::ethernet2(client, ME_MAC)
        .ipv4(CLIENT4, ME4, 64)
        .udp(5000, 5353)
        .write(&mut udp, b"q")
        .unwrap();
    let mut bad_na = na(v6("2001:db8::42"), client, S_FLAG | O_FLAG, 255);
    let n = bad_na.len();
    bad_na[n - 1] ^= 1;
    let mut vlan = arp(1, client, client, CLIENT4, ME4);
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    let mut other_ethertype = ping(ME4);
    other_ethertype[12..14].copy_from_slice(&[0x88, 0xb5]);
    let answered = [
        arp(1, client, client, CLIENT4, ME4), // ARP reply
        ping(ME4),                            // echo reply
        tcp_frame(client, CLIENT4, 3333, 1, None, true, 1024)[..].to_vec(), // SYN to 9000: SYN-ACK
        udp,                                  // port unreachable
    ];
    let ignored = [
        arp(1, client, client, CLIENT4, [192, 0, 2, 77]), // ARP for someone else
        arp(2, client, client, CLIENT4, ME4),             // ARP reply nobody asked for: learned only
        ping([192, 0, 2, 77]),                            // IP for someone else
        bad_na,                                           // bad checksum
        vlan,                                             // VLAN-tagged
        other_ethertype,                                  // not IP
        ping(ME4)[..20].to_vec(),                         // truncated
        vec![0u8; 1],                                     // runt
    ];
    for f in answered.iter().chain(&ignored) {
        rig.punt(f);
    }
    rig.poll(10);
    let c = rig.cx.counters;
    assert_eq!(c.rx_packets, (answered.len() + ignored.len()) as u64, "{c}");
    assert_eq!(c.drops_of(DropReason::ControlIgnored), ignored.len() as u64, "{c}");
    assert_eq!(c.rx_packets, c.tx_packets + c.total_drops(), "rx == tx + drops: {c}");
    assert_eq!(rig.control.counters().ignored, ignored.len() as u64);
}

// ---------------------------------------------------------------------------------------------
// Per-source fairness of the management endpoint (issue 19)
// ---------------------------------------------------------------------------------------------

/// Issue 19: one source holding every management slot with slow connections (here: zero-window
/// peers on 16 ports of one address) locked everyone else out until they were reclaimed (the
/// idle timeout; for connections that trickle, the whole connection lifetime). With per-source
/// fairness another source's client takes the oldest of them at once.
#[test]
fn one_source_holding_every_slot_does_not_lock_out_another() {
    let mut rig = rig();
    let defaults = ControlConfig::default();
    let backlog = defaults.connections;
    let (mac, ip) = ([0x02, 0, 0, 0, 3, 1], [192, 0, 2, 10]);
    let mut peers: Vec<ZeroWindowPeer> = (0..backlog as u16)
        .map(|i| ZeroWindowPeer { mac, ip, port: 41000 + i, established: false, reset: false })
        .collect();
    rig.punt(&arp(1, mac, mac, ip, ME4));
    rig.poll(10);
    for i in 0..peers.len() {
        rig.punt(&tcp_frame(mac, ip, peers[i].port, 1000, None, true, 0));
        rig.pump(&mut peers);
    }
    for _ in 0..20 {
        rig.pump(&mut peers);
    }
    assert_eq!(peers.iter().filter(|p| p.established).count(), backlog, "{:?}", rig.control.counters());
    // The same source asking for one more is refused: it already holds every slot.
    rig.punt(&tcp_frame(mac, ip, 42000, 1000, None, true, 0));
    rig.poll(10);
    rig.out();
    assert!(rig.control.counters().connections_refused >= 1, "{:?}", rig.control.counters());

    // The legitimate client from another address.
    let Served { start: _, text, after: served_after, attempts } =
        legit_client(&mut rig, &mut peers, defaults.idle_timeout + Duration::from_secs(5));
    let c = rig.control.counters();
    let served_after =
        served_after.unwrap_or_else(|| panic!("client never served after {attempts} attempts: {c:?}"));
    assert_eq!(text, b"shard 0: stats\n");
    assert!(
        served_after < Duration::from_secs(2),
        "served after {served_after:?} ({attempts} attempts): {c:?}"
    );
    assert!(c.reclaimed_for_fairness >= 1, "{c:?}");
    assert_eq!(c.reclaimed_stalled, 0, "served before any idle timeout: {c:?}");
}
