//! The control plane: traffic for the appliance itself, answered by a smoltcp [`Interface`].
//!
//! Data shards run a [`Punt`] stage after [`crate::classify::Classify`]: packets classified
//! `Management` or `Control` leave the batch into a bounded [`PuntQueue`] (a full queue is a
//! counted [`DropReason::PuntQueueFull`] drop, never a stall). A control shard runs a
//! [`ControlPlane`]: a smoltcp `Interface` over a `phy::Device` whose receive side is the punt
//! queue and whose transmit side is a port's Tx queue (the management queue). It answers ARP and
//! IPv6 Neighbor Discovery and ICMP/ICMPv6 echo for the appliance's addresses, resets TCP to
//! closed ports, and serves the management endpoint: a TCP port (default 9000) that writes the
//! per-shard counters as text and closes.
//!
//! ```
//! use wirespeed_core::backend::mem::{MemConfig, MemPort};
//! use wirespeed_core::{BufferPool, PoolConfig, Port};
//! use wirespeed_stages::control::{punt_queue, ControlConfig, ControlPlane, Punt};
//!
//! let pool = BufferPool::new(PoolConfig::default())?;
//! let (mut port, _handle) = MemPort::new(MemConfig { queues: 2, ..MemConfig::default() }, pool);
//! let (_mgmt_rx, mgmt_tx) = port.queue_pair(1)?;
//! let queue = punt_queue(1024);
//! let _punt = Punt::new(queue.clone()); // goes into each data shard's pipeline
//! let cfg = ControlConfig {
//!     mac: port.info().mac,
//!     addresses: vec![("192.0.2.1".parse()?, 24)],
//!     ..ControlConfig::default()
//! };
//! let mut control = ControlPlane::new(cfg, queue, mgmt_tx, pool)?;
//! control.set_stats_source(|out: &mut String| out.push_str("shard 0: ...\n"));
//! control.poll(); // call in the control shard's loop (it also implements `Worker`)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Neighbors: the control plane also records who answers ARP / Neighbor Discovery for which
//! address on which port ([`ControlPlane::take_neighbor_changes`]); the application feeds those
//! into its [`crate::forward::FibBuilder`] and publishes a new FIB. What is learned is validated
//! (ICMPv6 checksum, hop limit 255, sane sender addresses on a configured subnet, no unsolicited
//! advertisement for an unknown neighbor), the table and the pending changes are bounded and
//! evict the least recently confirmed neighbor; rejects are counted by reason
//! ([`SnoopCounters`]).
//!
//! Management endpoint under attack: [`ControlConfig::connections`] connections (handshakes
//! included) are open at once. A SYN that finds none listening reclaims the oldest half-open
//! connection; a handshake not completed within [`ControlConfig::handshake_timeout`], and an
//! established connection that makes no progress for [`ControlConfig::idle_timeout`] (a peer
//! advertising a zero window, one that never acknowledges or closes) or outlives
//! [`ControlConfig::connection_lifetime`], is aborted. Refused and reclaimed connections are
//! counted ([`ControlCounters`]). Timers run on the clock given to [`ControlPlane::poll_at`]; as a
//! [`Worker`], on the shard's `ShardCtx::now`.
//!
//! Accounting: every frame taken from the punt queue is answered (counted in Tx), taken by a
//! management connection, or counted as a [`DropReason::ControlIgnored`] drop on the control
//! shard, so for request/response traffic rx == tx + drops there.
//!
//! Resolution: asked for an address ([`ControlPlane::solicit_at`], e.g. by a data shard's
//! [`crate::forward::Resolving`] stage), the control plane sends an ARP request or a Neighbor
//! Solicitation to the solicited-node group, at most one per address per
//! [`ControlConfig::retrans_time`] and [`ControlConfig::solicit_rate`] per second in all; the
//! answer is learned like any other. Learned neighbors age: one not confirmed within
//! [`ControlConfig::reachable_time`] is probed by unicast, and removed after
//! [`ControlConfig::probes`] unanswered probes ([`ControlPlane::take_neighbor_updates`] reports
//! it). These frames of its own are transmitted without a received one, so on a control shard
//! `rx + solicitations == tx + drops`.
//!
//! Limits: VLAN-tagged punted frames are not understood by smoltcp and are dropped by it; IP
//! fragments to the appliance are not reassembled; one control plane answers on one port's Tx
//! queue.

mod device;
mod snoop;
mod solicit;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use wirespeed_core::stats::ShardStats;

use crate::forward::Neighbor;
use wirespeed_core::queue::SharedQueue;
use wirespeed_core::{
    Batch, BufferPool, DropReason, FlowClass, PacketBuf, Poll, PoolBuf, ShardCtx, Stage, TxQueue, Verdict,
    Worker,
};

pub use device::{DeviceCounters, PuntDevice};
pub use snoop::{MAX_CHANGES, MAX_LEARNED, SnoopCounters};
pub use solicit::solicited_node;

/// The queue from data shards to the control shard: a [`SharedQueue`] of packets (clone it for
/// each data shard's [`Punt`]).
pub type PuntQueue<B> = SharedQueue<B>;

/// A punt queue holding at most `capacity` packets (at least one).
pub fn punt_queue<B>(capacity: usize) -> PuntQueue<B> {
    SharedQueue::new(capacity)
}

/// The punt stage: moves `Management` and `Control` packets to the control plane's queue.
#[derive(Debug)]
pub struct Punt<B> {
    queue: PuntQueue<B>,
}

impl<B> Punt<B> {
    /// A punt stage feeding `queue`.
    pub fn new(queue: PuntQueue<B>) -> Self {
        Self { queue }
    }
}

impl<B: PacketBuf> Stage<B> for Punt<B> {
    #[inline]
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        let q = &self.queue;
        batch.apply(
            cx,
            |cx, p| match q.push(p) {
                Ok(()) => cx.counters.punted += 1,
                Err(p) => {
                    drop(p);
                    cx.counters.drop_packet(DropReason::PuntQueueFull);
                }
            },
            |_cx, p| match p.meta().flow_class {
                FlowClass::Management | FlowClass::Control => Verdict::Punt,
                _ => Verdict::Continue,
            },
        );
    }
}

/// Where the control plane gets transmit buffers from.
pub trait TxAlloc<B> {
    /// A fresh buffer, or `None` when none is free.
    fn alloc_tx(&mut self) -> Option<B>;
}

impl TxAlloc<PoolBuf> for BufferPool {
    fn alloc_tx(&mut self) -> Option<PoolBuf> {
        self.alloc()
    }
}

/// What the control plane is and answers for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    /// The appliance's MAC on this port.
    pub mac: [u8; 6],
    /// Own addresses with their subnet prefix length (at most 4).
    pub addresses: Vec<(IpAddr, u8)>,
    /// IPv4 default gateway, for answering hosts off the connected subnets.
    pub gateway_v4: Option<Ipv4Addr>,
    /// IPv6 default gateway.
    pub gateway_v6: Option<Ipv6Addr>,
    /// TCP port of the management endpoint.
    pub management_port: u16,
    /// Management connections open at once, handshakes included: the listener backlog. When
    /// every one is taken and a new SYN arrives, the oldest half-open connection is reclaimed
    /// for it; when all are established, the oldest connection of the source address holding
    /// the most is reclaimed if that source holds at least two more than the new one's source
    /// (per-source fairness), else the SYN is refused (RST) and counted. Each costs
    /// about 17 KiB of socket buffers; the default, 16, lets a legitimate handshake survive
    /// 15 flood SYNs arriving within its round trip (smoltcp has no SYN cookies).
    pub connections: usize,
    /// A connection still in the handshake (SYN received, no ACK) after this long is reclaimed.
    pub handshake_timeout: Duration,
    /// An established connection that makes no progress (nothing acknowledged, nothing
    /// received — e.g. a peer advertising a zero window) for this long is aborted.
    pub idle_timeout: Duration,
    /// Longest a management connection may stay open, whatever it does.
    pub connection_lifetime: Duration,
    /// Largest frame sent or received, Ethernet header included (default 1514). Give it the
    /// port's [`wirespeed_core::PortInfo::max_frame`] so punted jumbo frames are handled;
    /// it is also the MTU smoltcp derives its TCP MSS from.
    pub max_frame: usize,
    /// Seed for smoltcp's TCP initial sequence numbers and ephemeral ports; vary it per boot.
    pub random_seed: u64,
    /// A learned neighbor confirmed (by any ARP / ND frame from it) this recently is trusted;
    /// older, it is probed by unicast ARP request / Neighbor Solicitation.
    pub reachable_time: Duration,
    /// Between solicitations of one address (and between probes of one neighbor).
    pub retrans_time: Duration,
    /// Unanswered probes after which a learned neighbor is removed.
    pub probes: u8,
    /// Most ARP requests / Neighbor Solicitations sent per second (token bucket, the same burst).
    pub solicit_rate: u32,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            mac: [0x02, 0, 0, 0, 0, 1],
            addresses: Vec::new(),
            gateway_v4: None,
            gateway_v6: None,
            management_port: 9000,
            connections: 16,
            handshake_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(60),
            max_frame: 1514,
            random_seed: 0x5eed_0fc0_4740_1d0e,
            reachable_time: Duration::from_secs(30),
            retrans_time: Duration::from_secs(1),
            probes: 3,
            solicit_rate: 100,
        }
    }
}

impl ControlConfig {
    /// The classifier configuration that punts exactly what this control plane answers: its
    /// own addresses and management port (other ports keep their defaults).
    pub fn classify_config(&self) -> crate::classify::ClassifyConfig {
        let mut c = crate::classify::ClassifyConfig {
            management_tcp_port: self.management_port,
            ..crate::classify::ClassifyConfig::default()
        };
        for &(a, _) in &self.addresses {
            match a {
                IpAddr::V4(v) => c.own_ipv4.push(v),
                IpAddr::V6(v) => c.own_ipv6.push(v),
            }
        }
        c
    }
}

/// Why a control plane could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The MAC is multicast or zero (smoltcp needs a unicast one).
    #[error("MAC {mac:02x?} is not a unicast address")]
    BadMac {
        /// The MAC given.
        mac: [u8; 6],
    },
    /// More addresses than the interface holds.
    #[error("{given} addresses given, at most {max} supported")]
    TooManyAddresses {
        /// Addresses given.
        given: usize,
        /// The limit.
        max: usize,
    },
    /// An address or prefix length smoltcp rejects.
    #[error("bad address {addr}/{len}")]
    BadAddress {
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        len: u8,
    },
    /// A default route smoltcp rejects.
    #[error("bad default gateway {0}")]
    BadGateway(IpAddr),
    /// The management TCP port is 0.
    #[error("management_port 0 is not a TCP port")]
    ZeroManagementPort,
}

/// Most own addresses (smoltcp is built with `iface-max-addr-count-4`).
pub const MAX_ADDRESSES: usize = 4;

/// Counters of the control plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControlCounters {
    /// Frames taken from the punt queue and its device counters.
    pub device: DeviceCounters,
    /// Management connections answered with the stats text.
    pub connections_served: u64,
    /// Connection requests (SYN) to the management port refused because every connection was
    /// established.
    pub connections_refused: u64,
    /// Half-open connections reclaimed (handshake timed out, or the slot was needed).
    pub reclaimed_half_open: u64,
    /// Established connections aborted for making no progress or outliving their lifetime.
    pub reclaimed_stalled: u64,
    /// Connections taken from the source holding the most of them so that a source holding
    /// fewer could connect (per-source fairness: a few clients cannot hold every slot).
    pub reclaimed_for_fairness: u64,
    /// Frames smoltcp neither answered nor delivered to a socket (not for the appliance,
    /// unsupported, malformed, or an ARP/ND answer it only learns from); counted on the
    /// control shard as [`DropReason::ControlIgnored`].
    pub ignored: u64,
    /// Neighbor learning: what was learned, evicted and rejected, by reason.
    pub snoop: SnoopCounters,
    /// ARP requests and Neighbor Solicitations sent to resolve an address (probes included).
    pub solicitations: u64,
    /// Solicitations not sent: the address was solicited within the retransmit time, or the
    /// rate limit was reached.
    pub solicit_limited: u64,
    /// Solicitations refused: the address is on none of this interface's subnets, or is ours.
    pub solicit_not_on_link: u64,
}

/// What [`ControlPlane::solicit_at`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solicited {
    /// An ARP request / Neighbor Solicitation was sent (or counted as a Tx drop).
    Sent,
    /// Not sent: solicited within the retransmit time, or over the rate.
    Limited,
    /// Not sent: the address is not on this interface's subnets (or is ours).
    NotOnLink,
}

/// Most addresses remembered for the per-address solicitation interval.
const SOLICITED_MEMORY: usize = 1024;

/// Writes the stats text for the management endpoint.
pub type StatsSource = Box<dyn FnMut(&mut String) + Send>;

struct Conn {
    handle: SocketHandle,
    out: Vec<u8>,
    sent: usize,
    served: bool,
    /// When the connection left `Listen`.
    opened: Option<smoltcp::time::Instant>,
    /// Last time it made progress, and what progress looked like then.
    progress_at: smoltcp::time::Instant,
    progress: (usize, usize, u64),
    received: u64,
}

impl Conn {
    fn reset(&mut self) {
        self.served = false;
        self.out.clear();
        self.sent = 0;
        self.opened = None;
        self.received = 0;
        self.progress = (0, 0, 0);
    }
}

/// Most frames taken from the punt queue per poll, so one poll is bounded work.
const FRAMES_PER_POLL: usize = 64;

/// Puts a connection's socket back to listening with fresh smoltcp metadata: a socket set
/// remembers per socket which neighbor it was waiting for and stays silent for a second after
/// a failed resolution, which must not carry over to the next client.
fn relisten(sockets: &mut SocketSet<'static>, c: &mut Conn, port: u16) {
    c.reset();
    #[allow(irrefutable_let_patterns)] // only TCP sockets are enabled here, maybe not downstream
    let smoltcp::socket::Socket::Tcp(mut s) = sockets.remove(c.handle) else {
        unreachable!("the control plane's socket set holds only TCP sockets")
    };
    s.abort();
    // Cannot fail: the socket is closed and the port is not zero (checked at construction).
    let _ = s.listen(port);
    c.handle = sockets.add(s);
}

fn to_duration(d: Duration) -> smoltcp::time::Duration {
    smoltcp::time::Duration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The control plane: a smoltcp interface over the punt queue and a Tx queue.
pub struct ControlPlane<B: PacketBuf, T: TxQueue<Buf = B>, A: TxAlloc<B>> {
    iface: Interface,
    dev: PuntDevice<B, T, A>,
    sockets: SocketSet<'static>,
    conns: Vec<Conn>,
    port: u16,
    stats: StatsSource,
    counters: ControlCounters,
    handshake_timeout: smoltcp::time::Duration,
    idle_timeout: smoltcp::time::Duration,
    lifetime: smoltcp::time::Duration,
    start: std::time::Instant,
    mac: [u8; 6],
    aging: snoop::Aging,
    /// Token bucket of solicitations: tokens (in millionths) and when it was last filled.
    tokens: u64,
    filled: i64,
    rate: u64,
    /// When each address was last solicited (bounded by [`SOLICITED_MEMORY`]).
    solicited: std::collections::HashMap<IpAddr, i64>,
    next_aging: i64,
    probe_list: Vec<(IpAddr, Neighbor)>,
}

fn to_smol(a: IpAddr) -> IpAddress {
    match a {
        IpAddr::V4(v) => IpAddress::Ipv4(v),
        IpAddr::V6(v) => IpAddress::Ipv6(v),
    }
}

impl<B: PacketBuf, T: TxQueue<Buf = B>, A: TxAlloc<B>> ControlPlane<B, T, A> {
    /// A control plane receiving from `punt`, transmitting on `tx` with buffers from `alloc`.
    pub fn new(cfg: ControlConfig, punt: PuntQueue<B>, tx: T, alloc: A) -> Result<Self, ControlError> {
        let mac = EthernetAddress(cfg.mac);
        if !mac.is_unicast() {
            return Err(ControlError::BadMac { mac: cfg.mac });
        }
        if cfg.management_port == 0 {
            return Err(ControlError::ZeroManagementPort);
        }
        if cfg.addresses.len() > MAX_ADDRESSES {
            return Err(ControlError::TooManyAddresses { given: cfg.addresses.len(), max: MAX_ADDRESSES });
        }
        let mut dev = PuntDevice::new(punt, tx, alloc, cfg.max_frame);
        dev.snoop = snoop::Snoop::new(&cfg.addresses);
        dev.mgmt_port = cfg.management_port;
        let mut icfg = Config::new(HardwareAddress::Ethernet(mac));
        icfg.random_seed = cfg.random_seed;
        let start = std::time::Instant::now();
        let mut iface = Interface::new(icfg, &mut dev, smoltcp::time::Instant::ZERO);
        let mut bad = None;
        for &(addr, len) in &cfg.addresses {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if len > max {
                return Err(ControlError::BadAddress { addr, len });
            }
            iface.update_ip_addrs(|addrs| {
                if addrs.push(IpCidr::new(to_smol(addr), len)).is_err() {
                    bad = Some((addr, len));
                }
            });
        }
        if let Some((addr, len)) = bad {
            return Err(ControlError::BadAddress { addr, len });
        }
        if let Some(gw) = cfg.gateway_v4 {
            iface.routes_mut().add_default_ipv4_route(gw).map_err(|_| ControlError::BadGateway(gw.into()))?;
        }
        if let Some(gw) = cfg.gateway_v6 {
            iface.routes_mut().add_default_ipv6_route(gw).map_err(|_| ControlError::BadGateway(gw.into()))?;
        }
        let mut sockets = SocketSet::new(Vec::new());
        let idle_timeout = to_duration(cfg.idle_timeout);
        let conns = (0..cfg.connections.max(1))
            .map(|_| {
                let rx = tcp::SocketBuffer::new(vec![0; 1024]);
                let tx = tcp::SocketBuffer::new(vec![0; 16 * 1024]);
                let mut s = tcp::Socket::new(rx, tx);
                // smoltcp's own timers are the backstop for peers that vanish: keep-alive probes
                // an idle connection, and the timeout aborts one whose peer stays silent.
                s.set_timeout(Some(idle_timeout * 2));
                s.set_keep_alive(Some(idle_timeout / 2));
                Conn {
                    handle: sockets.add(s),
                    out: Vec::new(),
                    sent: 0,
                    served: false,
                    opened: None,
                    progress_at: smoltcp::time::Instant::ZERO,
                    progress: (0, 0, 0),
                    received: 0,
                }
            })
            .collect();
        Ok(Self {
            iface,
            dev,
            sockets,
            conns,
            port: cfg.management_port,
            stats: Box::new(|out: &mut String| out.push_str("no stats source\n")),
            counters: ControlCounters::default(),
            handshake_timeout: to_duration(cfg.handshake_timeout),
            idle_timeout,
            lifetime: to_duration(cfg.connection_lifetime),
            start,
            mac: cfg.mac,
            aging: snoop::Aging {
                reachable: to_duration(cfg.reachable_time).total_micros() as i64,
                retrans: to_duration(cfg.retrans_time).total_micros() as i64,
                probes: cfg.probes,
            },
            tokens: u64::from(cfg.solicit_rate.max(1)) * 1_000_000,
            filled: 0,
            rate: u64::from(cfg.solicit_rate.max(1)),
            solicited: std::collections::HashMap::new(),
            next_aging: 0,
            probe_list: Vec::new(),
        })
    }

    /// Sets what the management endpoint writes (e.g. a closure over the runtime's shard stats
    /// formatted with [`format_shard_stats`]).
    pub fn set_stats_source(&mut self, f: impl FnMut(&mut String) + Send + 'static) {
        self.stats = Box::new(f);
    }

    /// Neighbors learned from ARP and Neighbor Discovery so far (address → MAC and the port the
    /// frame came in on); see the `snoop` rules in the module docs.
    pub fn learned_neighbors(&self) -> impl Iterator<Item = (IpAddr, Neighbor)> + '_ {
        self.dev.snoop.learned()
    }

    /// Neighbors learned or changed since the last call. Feed them into the FIB builder
    /// (`builder.neighbor(ip, n.mac, n.port)`) and publish a new FIB when this is not empty.
    pub fn take_neighbor_changes(&mut self) -> Vec<(IpAddr, Neighbor)> {
        self.dev.snoop.take_changes()
    }

    /// Neighbors learned, changed or removed (aged out) since the last call, oldest change
    /// first, one per address (`None`: removed). Apply them to the learned-neighbor table
    /// ([`crate::forward::Neighbors`]) and publish it. Drains the same changes as
    /// [`ControlPlane::take_neighbor_changes`].
    pub fn take_neighbor_updates(&mut self) -> Vec<(IpAddr, Option<Neighbor>)> {
        self.dev.snoop.take_updates()
    }

    /// True when `ip` is on one of this interface's subnets (or IPv6 link-local) and not one of
    /// its own addresses: an address this control plane resolves.
    pub fn on_link(&self, ip: IpAddr) -> bool {
        self.dev.snoop.on_link(ip)
    }

    /// Sends an ARP request (IPv4) or Neighbor Solicitation (IPv6, to the solicited-node
    /// group) for `ip` at `now`, unless it is not on link, was solicited within
    /// [`ControlConfig::retrans_time`], or the [`ControlConfig::solicit_rate`] is reached. The
    /// answer is learned like any other ([`ControlPlane::take_neighbor_updates`]).
    pub fn solicit_at(&mut self, ip: IpAddr, now: smoltcp::time::Instant) -> Solicited {
        if !self.dev.snoop.on_link(ip) {
            self.counters.solicit_not_on_link += 1;
            return Solicited::NotOnLink;
        }
        let now = now.total_micros();
        if self.solicited.get(&ip).is_some_and(|&t| now - t < self.aging.retrans) {
            self.counters.solicit_limited += 1;
            return Solicited::Limited;
        }
        if self.solicited.len() >= SOLICITED_MEMORY {
            let retrans = self.aging.retrans;
            self.solicited.retain(|_, t| now - *t < retrans);
        }
        if self.solicited.len() >= SOLICITED_MEMORY || !self.take_token(now) {
            self.counters.solicit_limited += 1;
            return Solicited::Limited;
        }
        self.solicited.insert(ip, now);
        self.send_solicitation(ip, None);
        Solicited::Sent
    }

    /// [`ControlPlane::solicit_at`] on the wall clock.
    pub fn solicit(&mut self, ip: IpAddr) -> Solicited {
        let now = self.time_at(std::time::Instant::now());
        self.solicit_at(ip, now)
    }

    fn take_token(&mut self, now: i64) -> bool {
        let cap = self.rate * 1_000_000;
        let elapsed = u64::try_from(now - self.filled).unwrap_or(0);
        self.tokens = (self.tokens + elapsed.saturating_mul(self.rate)).min(cap);
        self.filled = now;
        if self.tokens >= 1_000_000 {
            self.tokens -= 1_000_000;
            true
        } else {
            false
        }
    }

    /// Sends an ARP request / Neighbor Solicitation for `ip`: broadcast / multicast, or to
    /// `unicast` (a probe of a known neighbor).
    fn send_solicitation(&mut self, ip: IpAddr, unicast: Option<[u8; 6]>) {
        use smoltcp::phy::{Device, TxToken};
        let Some(src) = self.dev.snoop.source_for(ip) else { return };
        let mac = self.mac;
        let Some(tx) = self.dev.transmit(smoltcp::time::Instant::ZERO) else { return };
        tx.consume(solicit::len(ip), |f| match (src, ip) {
            (IpAddr::V4(s), IpAddr::V4(t)) => {
                solicit::arp_request(f, mac, unicast.unwrap_or([0xff; 6]), s, t)
            }
            (IpAddr::V6(s), IpAddr::V6(t)) => solicit::neighbor_solicitation(f, mac, s, t, unicast),
            _ => {}
        });
        self.counters.solicitations += 1;
    }

    /// Probes learned neighbors not confirmed within the reachable time, removes those that
    /// stopped answering (checked every 100 ms).
    fn age_neighbors(&mut self, now: smoltcp::time::Instant) {
        let now = now.total_micros();
        if now < self.next_aging {
            return;
        }
        self.next_aging = now + 100_000;
        let mut probes = std::mem::take(&mut self.probe_list);
        self.dev.snoop.age(now, self.aging, &mut probes);
        for (ip, n) in probes.drain(..) {
            if self.take_token(now) {
                self.send_solicitation(ip, Some(n.mac));
            } else {
                self.counters.solicit_limited += 1;
            }
        }
        self.probe_list = probes;
    }

    /// Counters so far.
    pub fn counters(&self) -> ControlCounters {
        ControlCounters { device: self.dev.counters(), snoop: self.dev.snoop.counters(), ..self.counters }
    }

    /// The smoltcp time of `at` (the control plane's clock starts at construction).
    pub fn time_at(&self, at: std::time::Instant) -> smoltcp::time::Instant {
        let since = at.saturating_duration_since(self.start);
        smoltcp::time::Instant::from_micros(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }

    /// Runs the interface once at the wall-clock time since construction; returns true if any
    /// frame was received or sent.
    pub fn poll(&mut self) -> bool {
        let now = self.time_at(std::time::Instant::now());
        self.poll_at(now)
    }

    /// Runs the interface once at `now` (monotonic): takes up to 64 punted frames, answers,
    /// serves and reclaims the management connections. Returns true if any frame was received
    /// or sent.
    pub fn poll_at(&mut self, now: smoltcp::time::Instant) -> bool {
        let before = self.dev.counters();
        self.iface.poll_maintenance(now);
        self.age_neighbors(now);
        for _ in 0..FRAMES_PER_POLL {
            let Some(seen) = self.dev.prefetch() else { break };
            self.keep_listening(now, seen.tcp);
            if self.iface.poll_ingress_single(now, &mut self.dev, &mut self.sockets)
                == PollIngressSingleResult::None
            {
                break;
            }
            self.account_frame();
        }
        self.serve(now);
        // Push out what serving queued (bounded: one pass per socket at most each time).
        for _ in 0..=self.conns.len() {
            if self.iface.poll_egress(now, &mut self.dev, &mut self.sockets)
                == smoltcp::iface::PollResult::None
            {
                break;
            }
        }
        self.keep_listening(now, None);
        let after = self.dev.counters();
        after.received != before.received || after.transmitted != before.transmitted
    }

    /// Puts closed connections back to listening; when `incoming` (the next frame) is a new
    /// connection request and no connection is listening, reclaims the oldest half-open one
    /// for it.
    fn keep_listening(&mut self, now: smoltcp::time::Instant, incoming: Option<(IpEndpoint, bool)>) {
        let mut listening = false;
        let mut oldest_half_open: Option<(smoltcp::time::Instant, usize)> = None;
        for (i, c) in self.conns.iter_mut().enumerate() {
            if !self.sockets.get::<tcp::Socket<'_>>(c.handle).is_open() {
                // Closed or in TIME-WAIT: take the next connection.
                relisten(&mut self.sockets, c, self.port);
            }
            let s = self.sockets.get::<tcp::Socket<'_>>(c.handle);
            match s.state() {
                tcp::State::Listen => listening = true,
                tcp::State::SynReceived => {
                    let at = *c.opened.get_or_insert(now);
                    if oldest_half_open.is_none_or(|(t, _)| at < t) {
                        oldest_half_open = Some((at, i));
                    }
                }
                _ => {}
            }
        }
        let Some((from, true)) = incoming else { return };
        let known = self
            .conns
            .iter()
            .any(|c| self.sockets.get::<tcp::Socket<'_>>(c.handle).remote_endpoint() == Some(from));
        if listening || known {
            return;
        }
        if let Some((_, i)) = oldest_half_open {
            relisten(&mut self.sockets, &mut self.conns[i], self.port);
            self.counters.reclaimed_half_open += 1;
            return;
        }
        if let Some(i) = self.unfair_slot(from.addr) {
            relisten(&mut self.sockets, &mut self.conns[i], self.port);
            self.counters.reclaimed_for_fairness += 1;
        }
    }

    /// Every slot is established and `newcomer` asks for one: the oldest connection of the
    /// source holding the most slots, if it holds at least two and two more than `newcomer`.
    fn unfair_slot(&self, newcomer: IpAddress) -> Option<usize> {
        let sources: Vec<(usize, Option<IpAddress>, Option<smoltcp::time::Instant>)> = self
            .conns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let s = self.sockets.get::<tcp::Socket<'_>>(c.handle);
                (i, s.remote_endpoint().map(|e| e.addr), c.opened)
            })
            .collect();
        let count = |a: IpAddress| sources.iter().filter(|(_, s, _)| *s == Some(a)).count();
        let (heaviest, most) =
            sources.iter().filter_map(|(_, s, _)| *s).map(|a| (a, count(a))).max_by_key(|(_, n)| *n)?;
        if most < 2 || most < count(newcomer) + 2 {
            return None;
        }
        sources
            .iter()
            .filter(|(_, s, _)| *s == Some(heaviest))
            .min_by_key(|(_, _, opened)| *opened)
            .map(|(i, _, _)| *i)
    }

    /// Accounts for the frame smoltcp just took: refused connection requests, and frames that
    /// ended without an answer or a socket.
    fn account_frame(&mut self) {
        let seen = self.dev.frame_seen();
        if !seen.received {
            return;
        }
        let taken = seen.tcp.is_some_and(|(from, _)| {
            self.conns
                .iter()
                .any(|c| self.sockets.get::<tcp::Socket<'_>>(c.handle).remote_endpoint() == Some(from))
        });
        if let Some((_, true)) = seen.tcp
            && !taken
        {
            self.counters.connections_refused += 1;
        }
        if !seen.replied && !taken {
            self.counters.ignored += 1;
        }
    }

    fn serve(&mut self, now: smoltcp::time::Instant) {
        for c in &mut self.conns {
            let s = self.sockets.get_mut::<tcp::Socket<'_>>(c.handle);
            if !s.is_open() || s.state() == tcp::State::Listen {
                continue;
            }
            let opened = *c.opened.get_or_insert(now);
            if s.state() == tcp::State::SynReceived {
                if now >= opened + self.handshake_timeout {
                    s.abort();
                    c.reset();
                    self.counters.reclaimed_half_open += 1;
                }
                continue;
            }
            // Requests are not interpreted: whatever the client sends is read and discarded.
            while s.can_recv() {
                match s.recv(|b| (b.len(), b.len())) {
                    Ok(n) => c.received += n as u64,
                    Err(_) => break,
                }
            }
            if s.may_send() && !c.served {
                let mut text = String::new();
                (self.stats)(&mut text);
                c.out = text.into_bytes();
                c.served = true;
                self.counters.connections_served += 1;
            }
            if c.served
                && c.sent < c.out.len()
                && s.can_send()
                && let Ok(n) = s.send_slice(&c.out[c.sent..])
            {
                c.sent += n;
            }
            if c.served && c.sent == c.out.len() && s.may_send() {
                s.close();
            }
            // Progress: more of the text queued or acknowledged, or anything received. A peer
            // that advertises a zero window, or never acknowledges nor closes, makes none.
            let mark = (c.sent, c.sent - s.send_queue().min(c.sent), c.received);
            if c.opened == Some(now) || mark != c.progress {
                c.progress = mark;
                c.progress_at = now;
            }
            if now >= c.progress_at + self.idle_timeout || now >= opened + self.lifetime {
                s.abort();
                c.reset();
                self.counters.reclaimed_stalled += 1;
            }
        }
    }
}

/// Formats shard snapshots one per line: `shard N gen G: <counters>`.
pub fn format_shard_stats(stats: &[ShardStats], out: &mut String) {
    for s in stats {
        let _ = writeln!(out, "shard {} gen {}: {}", s.shard, s.generation, s.counters);
    }
}

impl<B, T, A> Worker for ControlPlane<B, T, A>
where
    B: PacketBuf,
    T: TxQueue<Buf = B> + 'static,
    A: TxAlloc<B> + 'static,
{
    fn poll(&mut self, cx: &mut ShardCtx) -> Poll {
        let before = self.dev.counters();
        let ignored = self.counters.ignored;
        // The shard's clock drives smoltcp's timers (handshake, idle, retransmission).
        let now = self.time_at(cx.now);
        let busy = self.poll_at(now);
        let after = self.dev.counters();
        cx.counters.rx_packets += after.received - before.received;
        cx.counters.rx_bytes += after.received_bytes - before.received_bytes;
        cx.counters.tx_packets += after.transmitted - before.transmitted;
        cx.counters.tx_bytes += after.transmitted_bytes - before.transmitted_bytes;
        cx.counters.drop_packets(DropReason::TxFull, after.tx_dropped - before.tx_dropped);
        cx.counters.drop_packets(DropReason::ControlIgnored, self.counters.ignored - ignored);
        if busy { Poll::Busy((after.received - before.received) as usize) } else { Poll::Idle }
    }

    fn drain(&mut self, _cx: &mut ShardCtx) {
        self.dev.flush();
    }
}
