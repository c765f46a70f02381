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
//! into its [`crate::forward::FibBuilder`] and publishes a new FIB (learning from ARP requests and
//! replies addressed to the appliance, and from NS/NA with hop limit 255, RFC 4861 §7.1).
//!
//! Limits: VLAN-tagged punted frames are not understood by smoltcp and are dropped by it; the
//! control plane resolves nothing by itself for transit traffic (a next hop nobody has talked
//! to stays unresolved until configured or learned); IP fragments to the appliance are not
//! reassembled; one control plane answers on one port's Tx queue.

mod device;
mod snoop;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use wirespeed_core::stats::ShardStats;

use crate::forward::Neighbor;
use wirespeed_core::sync::{Arc, BoundedQueue};
use wirespeed_core::{
    Batch, BufferPool, DropReason, FlowClass, PacketBuf, Poll, PoolBuf, ShardCtx, Stage, TxQueue, Verdict,
    Worker,
};

pub use device::{DeviceCounters, PuntDevice};
pub use snoop::MAX_LEARNED;

/// The queue from data shards to the control shard.
pub type PuntQueue<B> = Arc<BoundedQueue<B>>;

/// A punt queue holding at most `capacity` packets.
pub fn punt_queue<B>(capacity: usize) -> PuntQueue<B> {
    Arc::new(BoundedQueue::new(capacity.max(1)))
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
    /// Management connections served at once.
    pub connections: usize,
    /// Largest frame sent or received, Ethernet header included.
    pub max_frame: usize,
    /// Seed for smoltcp's TCP initial sequence numbers and ephemeral ports; vary it per boot.
    pub random_seed: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            mac: [0x02, 0, 0, 0, 0, 1],
            addresses: Vec::new(),
            gateway_v4: None,
            gateway_v6: None,
            management_port: 9000,
            connections: 2,
            max_frame: 1514,
            random_seed: 0x5eed_0fc0_4740_1d0e,
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
}

/// Writes the stats text for the management endpoint.
pub type StatsSource = Box<dyn FnMut(&mut String) + Send>;

struct Conn {
    handle: SocketHandle,
    out: Vec<u8>,
    sent: usize,
    served: bool,
}

/// The control plane: a smoltcp interface over the punt queue and a Tx queue.
pub struct ControlPlane<B: PacketBuf, T: TxQueue<Buf = B>, A: TxAlloc<B>> {
    iface: Interface,
    dev: PuntDevice<B, T, A>,
    sockets: SocketSet<'static>,
    conns: Vec<Conn>,
    port: u16,
    stats: StatsSource,
    served: u64,
    start: std::time::Instant,
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
        if cfg.addresses.len() > MAX_ADDRESSES {
            return Err(ControlError::TooManyAddresses { given: cfg.addresses.len(), max: MAX_ADDRESSES });
        }
        let mut dev = PuntDevice::new(punt, tx, alloc, cfg.max_frame);
        dev.snoop = snoop::Snoop::new(&cfg.addresses);
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
        let conns = (0..cfg.connections.max(1))
            .map(|_| {
                let rx = tcp::SocketBuffer::new(vec![0; 1024]);
                let tx = tcp::SocketBuffer::new(vec![0; 16 * 1024]);
                Conn {
                    handle: sockets.add(tcp::Socket::new(rx, tx)),
                    out: Vec::new(),
                    sent: 0,
                    served: false,
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
            served: 0,
            start,
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

    /// Counters so far.
    pub fn counters(&self) -> ControlCounters {
        ControlCounters { device: self.dev.counters(), connections_served: self.served }
    }

    /// Runs the interface once at the wall-clock time since construction; returns true if any
    /// frame was received or sent.
    pub fn poll(&mut self) -> bool {
        let now = smoltcp::time::Instant::from_micros(self.start.elapsed().as_micros() as i64);
        self.poll_at(now)
    }

    /// Runs the interface once at `now` (monotonic): takes punted frames, answers, serves the
    /// management connections. Returns true if any frame was received or sent.
    pub fn poll_at(&mut self, now: smoltcp::time::Instant) -> bool {
        let before = self.dev.counters();
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        self.serve();
        // Push out what serving queued.
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        let after = self.dev.counters();
        after.received != before.received || after.transmitted != before.transmitted
    }

    fn serve(&mut self) {
        for c in &mut self.conns {
            let s = self.sockets.get_mut::<tcp::Socket<'_>>(c.handle);
            if !s.is_open() {
                // Closed or in TIME-WAIT: take the next connection.
                c.served = false;
                c.out.clear();
                c.sent = 0;
                if s.listen(self.port).is_err() {
                    continue;
                }
            }
            // Requests are not interpreted: whatever the client sends is read and discarded.
            while s.can_recv() {
                if s.recv(|b| (b.len(), ())).is_err() {
                    break;
                }
            }
            if s.may_send() && !c.served {
                let mut text = String::new();
                (self.stats)(&mut text);
                c.out = text.into_bytes();
                c.served = true;
                self.served += 1;
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
        let busy = ControlPlane::poll(self);
        let after = self.dev.counters();
        cx.counters.rx_packets += after.received - before.received;
        cx.counters.rx_bytes += after.received_bytes - before.received_bytes;
        cx.counters.tx_packets += after.transmitted - before.transmitted;
        cx.counters.tx_bytes += after.transmitted_bytes - before.transmitted_bytes;
        cx.counters.drop_packets(DropReason::TxFull, after.tx_dropped - before.tx_dropped);
        if busy { Poll::Busy((after.received - before.received) as usize) } else { Poll::Idle }
    }

    fn drain(&mut self, _cx: &mut ShardCtx) {
        self.dev.flush();
    }
}
