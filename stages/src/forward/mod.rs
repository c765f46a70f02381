//! Forwarding: longest-prefix-match routing for IPv4 and IPv6, the neighbor table, TTL / hop
//! limit decrement with an RFC 1624 incremental checksum update, and the MAC rewrite.
//!
//! The routing state is one immutable [`Fib`] (routes + next hops + neighbors) built by a
//! [`FibBuilder`] on the control side and handed to running shards with
//! [`wirespeed_core::epoch`]: each [`Forward`] stage holds a `Subscriber<Fib>` and adopts the
//! newest version at the start of every batch, so a shard never reads a table that is being
//! changed or freed and pays one atomic load per batch, nothing per packet.
//!
//! A data shard's pipeline: classify, punt what is for the appliance itself (the forward stage
//! routes every IP packet it is given by destination, so packets to the appliance must leave
//! the batch before it), then forward.
//!
//! ```
//! use std::net::IpAddr;
//! use wirespeed_core::backend::null::{NullConfig, NullPort};
//! use wirespeed_core::epoch::Publisher;
//! use wirespeed_core::{BufferPool, IpPrefix, Pipeline, PoolBuf, PoolConfig, Port, ShardCtx};
//! use wirespeed_stages::classify::{Classify, ClassifyConfig};
//! use wirespeed_stages::control::{Punt, punt_queue};
//! use wirespeed_stages::forward::{FibBuilder, Forward, NextHop};
//!
//! let gw: IpAddr = "192.0.2.254".parse()?;
//! let mut b = FibBuilder::new();
//! b.route_prefix(IpPrefix::any_v4(), NextHop::Gateway(gw));
//! b.route_prefix("198.51.100.0/24".parse()?, NextHop::Direct);
//! b.neighbor(gw, [0x02, 0, 0, 0, 0, 0xfe], 0);
//! let mut routes = Publisher::new(b.build()?);
//!
//! let pool = BufferPool::new(PoolConfig::default())?;
//! let mut port = NullPort::new(NullConfig { copy: true, ..NullConfig::default() }, pool);
//! let (rx, tx) = port.queue_pair(0)?;
//! let punted = punt_queue::<PoolBuf>(1024); // the control shard reads this
//! let stages = (
//!     Classify::new(ClassifyConfig { own_ipv4: vec!["10.0.1.1".parse()?], ..ClassifyConfig::default() }),
//!     Punt::new(punted.clone()),
//!     Forward::new(routes.subscribe(), &[[0x02, 0, 0, 0, 0, 1]]),
//! );
//! let mut pipeline = Pipeline::new(rx, tx, stages);
//! let mut cx = ShardCtx::new(0);
//! pipeline.run_once(&mut cx);
//! // The null port's frames are UDP to 10.0.1.1, the appliance's own address: all punted.
//! assert_eq!(cx.counters.punted, 32);
//! assert_eq!(punted.len(), 32);
//! // Later, from the control thread: routes.publish(new_builder.build()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Multicast, loopback, link-local and other never-forwarded destinations are dropped before the
//! lookup (RFC 1812 §5.3.7, RFC 4291).
//!
//! Next hops without a static neighbor resolve from learned neighbors
//! ([`Forward::with_neighbors`]); the [`Resolving`] stage holds packets while one is resolved
//! (see [`neigh`]). With [`Forward::with_icmp_errors`], TTL expiry and missing routes are
//! answered with ICMP errors ([`crate::icmp`]) instead of dropped. IPv4 options are forwarded
//! untouched.

pub mod lpm4;
pub mod lpm6;
pub mod neigh;

use std::collections::HashMap;
use std::net::IpAddr;

use arrayvec::ArrayVec;
use wirespeed_core::epoch::Subscriber;
use wirespeed_core::pipeline::MAX_TX_PORTS;
use wirespeed_core::wire::{
    ETHERNET_HEADER_LEN, EthernetFrame, IPV4_HEADER_LEN, IPV6_HEADER_LEN, Ipv4Packet, Ipv6Packet,
};
use wirespeed_core::{
    BATCH_SIZE, Batch, DropReason, IpPrefix, L3Kind, PacketBuf, PacketMeta, ShardCtx, Stage, Verdict,
};

use crate::icmp::{IcmpCounters, IcmpError, IcmpErrors};
pub use lpm4::Dir24_8;
pub use lpm6::{AddrHasher, AddrMap, Lpm6};
pub use neigh::{HoldConfig, HoldCounters, Neighbors, ResolveQueue, Resolving, resolve_queue};

/// Why a routing table could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FibError {
    /// A prefix length beyond the address size.
    #[error("prefix length /{len} exceeds the maximum /{max}")]
    BadPrefixLength {
        /// Length given.
        len: u8,
        /// Longest possible (32 or 128).
        max: u8,
    },
    /// More distinct next hops (or IPv4 second-level groups) than the table can index.
    #[error("more than {max} next hops or table groups")]
    TooManyNextHops {
        /// The limit.
        max: usize,
    },
    /// More output ports than a pipeline has.
    #[error("{ports} port MACs given, a pipeline has at most {max} output ports")]
    TooManyPorts {
        /// Ports given.
        ports: usize,
        /// The limit ([`MAX_TX_PORTS`]).
        max: usize,
    },
}

/// Where a route sends packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// To this router (resolved through the neighbor table when the FIB is built).
    Gateway(IpAddr),
    /// The destination is on a connected link: its own address is looked up in the neighbor
    /// table for every packet.
    Direct,
}

/// A resolved neighbor: where a next hop is and how to address it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Neighbor {
    /// Its MAC address (the new Ethernet destination).
    pub mac: [u8; 6],
    /// The output port it is reached through.
    pub port: u16,
}

#[derive(Clone, Copy, Debug)]
enum Adjacency {
    Resolved(Neighbor),
    /// A gateway with no static neighbor: resolved through the dynamic table, if any.
    Unresolved(IpAddr),
    Direct,
}

/// Where a lookup ends: a neighbor, or the next hop address still to resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// A static neighbor.
    Found(Neighbor),
    /// No static neighbor for this next hop (the destination itself on a connected route, or
    /// the route's gateway): look it up among the learned neighbors, or resolve it.
    Resolve(IpAddr),
}

/// Collects routes and neighbors, then builds an immutable [`Fib`]. Keep one on the control
/// side, change it, and publish a fresh build.
#[derive(Clone, Debug, Default)]
pub struct FibBuilder {
    v4: Vec<(u32, u8, NextHop)>,
    v6: Vec<(u128, u8, NextHop)>,
    neighbors4: AddrMap<u32, Neighbor>,
    neighbors6: AddrMap<u128, Neighbor>,
}

impl FibBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route `prefix via next_hop` (host bits of the prefix are ignored). A prefix added
    /// twice keeps the last next hop. Infallible: an [`IpPrefix`] is never longer than its
    /// address.
    pub fn route_prefix(&mut self, prefix: IpPrefix, via: NextHop) -> &mut Self {
        match prefix.addr {
            IpAddr::V4(a) => self.v4.push((a.to_bits(), prefix.len.min(32), via)),
            IpAddr::V6(a) => self.v6.push((a.to_bits(), prefix.len.min(128), via)),
        }
        self
    }

    /// Adds a route `prefix/len via next_hop`: [`FibBuilder::route_prefix`] for an address and
    /// length given apart, refusing a length beyond the address width.
    pub fn route(&mut self, prefix: IpAddr, len: u8, via: NextHop) -> Result<&mut Self, FibError> {
        match prefix {
            IpAddr::V4(a) => {
                if len > 32 {
                    return Err(FibError::BadPrefixLength { len, max: 32 });
                }
                self.v4.push((a.to_bits(), len, via));
            }
            IpAddr::V6(a) => {
                if len > 128 {
                    return Err(FibError::BadPrefixLength { len, max: 128 });
                }
                self.v6.push((a.to_bits(), len, via));
            }
        }
        Ok(self)
    }

    /// Removes every route for exactly `prefix/len`; returns how many were removed.
    pub fn remove_route(&mut self, prefix: IpAddr, len: u8) -> usize {
        match prefix {
            IpAddr::V4(a) => {
                let key = lpm4::mask4(a.to_bits(), len);
                let before = self.v4.len();
                self.v4.retain(|&(p, l, _)| !(l == len && lpm4::mask4(p, l) == key));
                before - self.v4.len()
            }
            IpAddr::V6(a) => {
                let key = a.to_bits() & lpm6::mask6(len);
                let before = self.v6.len();
                self.v6.retain(|&(p, l, _)| !(l == len && p & lpm6::mask6(l) == key));
                before - self.v6.len()
            }
        }
    }

    /// Adds or replaces a neighbor: `ip` is at `mac`, reached through `port`.
    pub fn neighbor(&mut self, ip: IpAddr, mac: [u8; 6], port: u16) -> &mut Self {
        let n = Neighbor { mac, port };
        match ip {
            IpAddr::V4(a) => {
                self.neighbors4.insert(a.to_bits(), n);
            }
            IpAddr::V6(a) => {
                self.neighbors6.insert(a.to_bits(), n);
            }
        }
        self
    }

    /// Removes a neighbor; returns whether it was there.
    pub fn remove_neighbor(&mut self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.neighbors4.remove(&a.to_bits()).is_some(),
            IpAddr::V6(a) => self.neighbors6.remove(&a.to_bits()).is_some(),
        }
    }

    /// Builds the lookup structures. Gateways without a neighbor entry build fine; packets
    /// routed to them are dropped as [`DropReason::NoNeighbor`] until a FIB with the neighbor
    /// is published.
    pub fn build(&self) -> Result<Fib, FibError> {
        let mut adj: Vec<Adjacency> = Vec::new();
        let mut index: HashMap<NextHop, u32> = HashMap::new();
        let mut intern = |via: NextHop| -> Result<u32, FibError> {
            if let Some(&i) = index.get(&via) {
                return Ok(i);
            }
            let a = match via {
                NextHop::Direct => Adjacency::Direct,
                NextHop::Gateway(IpAddr::V4(g)) => self
                    .neighbors4
                    .get(&g.to_bits())
                    .map_or(Adjacency::Unresolved(g.into()), |n| Adjacency::Resolved(*n)),
                NextHop::Gateway(IpAddr::V6(g)) => self
                    .neighbors6
                    .get(&g.to_bits())
                    .map_or(Adjacency::Unresolved(g.into()), |n| Adjacency::Resolved(*n)),
            };
            let i = adj.len() as u32;
            if i > lpm4::MAX_VALUE {
                return Err(FibError::TooManyNextHops { max: lpm4::MAX_VALUE as usize });
            }
            adj.push(a);
            index.insert(via, i);
            Ok(i)
        };
        let mut r4 = Vec::with_capacity(self.v4.len());
        for &(p, l, via) in &self.v4 {
            r4.push((p, l, intern(via)?));
        }
        let mut r6 = Vec::with_capacity(self.v6.len());
        for &(p, l, via) in &self.v6 {
            r6.push((p, l, intern(via)?));
        }
        Ok(Fib {
            v4: Dir24_8::build(&r4)?,
            v6: Lpm6::build(&r6)?,
            adj,
            neighbors4: self.neighbors4.clone(),
            neighbors6: self.neighbors6.clone(),
        })
    }
}

/// The immutable forwarding information base: routes, next hops and neighbors.
#[derive(Clone, Debug)]
pub struct Fib {
    v4: Dir24_8,
    v6: Lpm6,
    adj: Vec<Adjacency>,
    neighbors4: AddrMap<u32, Neighbor>,
    neighbors6: AddrMap<u128, Neighbor>,
}

impl Fib {
    /// A FIB without routes (everything is [`DropReason::NoRoute`]).
    pub fn empty() -> Self {
        // Cannot fail: no routes.
        FibBuilder::new().build().unwrap_or_else(|_| unreachable!("an empty FIB always builds"))
    }

    #[inline(always)]
    fn hop(
        &self,
        idx: u32,
        dst: IpAddr,
        direct: impl FnOnce() -> Option<Neighbor>,
    ) -> Result<Hop, DropReason> {
        match self.adj.get(idx as usize) {
            Some(Adjacency::Resolved(n)) => Ok(Hop::Found(*n)),
            Some(Adjacency::Direct) => Ok(direct().map_or(Hop::Resolve(dst), Hop::Found)),
            Some(Adjacency::Unresolved(g)) => Ok(Hop::Resolve(*g)),
            None => Err(DropReason::NoRoute),
        }
    }

    /// The next hop of IPv4 `dst`: a static neighbor, or the address to resolve.
    #[inline(always)]
    pub fn hop_v4(&self, dst: u32) -> Result<Hop, DropReason> {
        let idx = self.v4.lookup(dst).ok_or(DropReason::NoRoute)?;
        self.hop(idx, IpAddr::V4(dst.into()), || self.neighbors4.get(&dst).copied())
    }

    /// The next hop of IPv6 `dst`: a static neighbor, or the address to resolve.
    #[inline(always)]
    pub fn hop_v6(&self, dst: u128) -> Result<Hop, DropReason> {
        let idx = self.v6.lookup(dst).ok_or(DropReason::NoRoute)?;
        self.hop(idx, IpAddr::V6(dst.into()), || self.neighbors6.get(&dst).copied())
    }

    /// Where a packet to IPv4 `dst` goes (static neighbors only).
    #[inline(always)]
    pub fn lookup_v4(&self, dst: u32) -> Result<Neighbor, DropReason> {
        match self.hop_v4(dst)? {
            Hop::Found(n) => Ok(n),
            Hop::Resolve(_) => Err(DropReason::NoNeighbor),
        }
    }

    /// Where a packet to IPv6 `dst` goes (static neighbors only).
    #[inline(always)]
    pub fn lookup_v6(&self, dst: u128) -> Result<Neighbor, DropReason> {
        match self.hop_v6(dst)? {
            Hop::Found(n) => Ok(n),
            Hop::Resolve(_) => Err(DropReason::NoNeighbor),
        }
    }

    /// Where a packet to `dst` goes (static neighbors only).
    pub fn lookup(&self, dst: IpAddr) -> Result<Neighbor, DropReason> {
        match dst {
            IpAddr::V4(a) => self.lookup_v4(a.to_bits()),
            IpAddr::V6(a) => self.lookup_v6(a.to_bits()),
        }
    }

    /// The IPv4 table.
    pub fn ipv4(&self) -> &Dir24_8 {
        &self.v4
    }

    /// The IPv6 table.
    pub fn ipv6(&self) -> &Lpm6 {
        &self.v6
    }
}

/// The RFC 1624 checksum updates, re-exported from [`wirespeed_core::wire::checksum`] where
/// they live (under the names this module has always used).
pub use wirespeed_core::wire::checksum::{
    adjust as checksum_adjust, ttl_decrement as ttl_decrement_checksum,
};

/// Destinations a router never forwards by unicast route (RFC 1812 §5.3.7, §5.3.5.1): multicast
/// (no multicast routing here) is `Unsupported`; 0/8, loopback 127/8 and the limited broadcast
/// are `NoRoute`.
#[inline(always)]
fn check_v4(dst: u32) -> Result<(), DropReason> {
    // First octet 1..=223 except 127: ordinary unicast, decided with two compares.
    let first = dst >> 24;
    if first.wrapping_sub(1) < 223 && first != 127 {
        return Ok(());
    }
    match first {
        224..=239 => Err(DropReason::Unsupported),
        0 | 127 => Err(DropReason::NoRoute),
        _ if dst == u32::MAX => Err(DropReason::NoRoute),
        _ => Ok(()),
    }
}

/// IPv6 destinations never forwarded (RFC 4291 §2.5, §2.7): multicast is `Unsupported`;
/// unspecified, loopback and link-local unicast (fe80::/10) are `NoRoute`.
#[inline(always)]
fn check_v6(dst: u128) -> Result<(), DropReason> {
    if dst >> 120 == 0xff {
        Err(DropReason::Unsupported)
    } else if dst <= 1 || dst >> 118 == 0xfe80 >> 6 {
        Err(DropReason::NoRoute)
    } else {
        Ok(())
    }
}

/// Why [`Forward`] could not route a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    /// A counted drop.
    Drop(DropReason),
    /// The next hop (this address) has no neighbor yet: hold the packet and resolve it.
    Unresolved(IpAddr),
}

impl From<DropReason> for Miss {
    #[inline(always)]
    fn from(r: DropReason) -> Self {
        Miss::Drop(r)
    }
}

/// The forward stage: route lookup, TTL / hop limit, checksum, MAC rewrite, output port.
///
/// Expects classified packets ([`crate::classify::Classify`] before it) and a punt stage
/// ([`crate::control::Punt`]) between them for traffic to the appliance itself: it routes
/// whatever IPv4/IPv6 packet it is given by destination, and drops other packets as
/// [`DropReason::Unsupported`]. The [module example](self) shows the three in one pipeline.
///
/// Next hops resolve from the FIB's static neighbors first, then (with
/// [`Forward::with_neighbors`]) from the learned [`Neighbors`] table; a next hop in neither is
/// a [`DropReason::NoNeighbor`] drop here, or held and resolved by the [`Resolving`] stage.
#[derive(Debug)]
pub struct Forward {
    fib: Subscriber<Fib>,
    learned: Option<Subscriber<Neighbors>>,
    port_macs: ArrayVec<[u8; 6], MAX_TX_PORTS>,
    icmp: Option<IcmpErrors>,
}

impl Forward {
    /// A forward stage reading routes from `fib`; `port_macs[i]` is the source MAC written on
    /// packets leaving by output port `i` (at most [`MAX_TX_PORTS`]; extra ones are ignored).
    pub fn new(fib: Subscriber<Fib>, port_macs: &[[u8; 6]]) -> Self {
        let port_macs = port_macs.iter().copied().take(MAX_TX_PORTS).collect();
        Self { fib, learned: None, port_macs, icmp: None }
    }

    /// Answers packets whose TTL / hop limit runs out with ICMP Time Exceeded, and packets
    /// without a route with Destination Unreachable, as [`crate::icmp`] describes (rate-limited;
    /// beyond the rate, or when no error may be sent, they are dropped as before).
    pub fn with_icmp_errors(mut self, icmp: IcmpErrors) -> Self {
        self.icmp = Some(icmp);
        self
    }

    /// What the ICMP error generator did (zeros without one).
    pub fn icmp_counters(&self) -> IcmpCounters {
        self.icmp.as_ref().map(|i| i.counters()).unwrap_or_default()
    }

    /// Turns a packet dropped for `r` into the ICMP error that reports it, if there is one and
    /// it may be sent; true when the packet now leaves as that error.
    #[inline(never)]
    pub(crate) fn icmp_error<B: PacketBuf>(
        &mut self,
        p: &mut B,
        r: DropReason,
        now: std::time::Instant,
    ) -> bool {
        let err = match r {
            DropReason::TtlExpired => IcmpError::TimeExceeded,
            DropReason::NoRoute => IcmpError::NoRoute,
            _ => return false,
        };
        let Some(icmp) = &mut self.icmp else { return false };
        let l3 = usize::from(p.meta().l3_offset);
        icmp.reply(p, l3, err, now).is_some()
    }

    /// Also resolves next hops from the learned neighbors `learned` (published by the control
    /// side, see [`Neighbors`]); static neighbors in the FIB still win.
    pub fn with_neighbors(mut self, learned: Subscriber<Neighbors>) -> Self {
        self.learned = Some(learned);
        self
    }

    /// The FIB version in use.
    pub fn fib_version(&self) -> u64 {
        self.fib.version()
    }

    /// The learned-neighbor table version in use (0 without one).
    pub fn neighbors_version(&self) -> u64 {
        self.learned.as_ref().map_or(0, |l| l.version())
    }

    /// Adopts the newest published FIB and neighbor table, if any (the stage does this at every
    /// batch); true if either changed.
    pub fn refresh(&mut self) -> bool {
        let f = self.fib.refresh();
        let n = self.learned.as_mut().is_some_and(|l| l.refresh());
        f | n
    }

    /// Forwards one classified frame in place (rewrites TTL, checksum and MACs) and returns the
    /// verdict: `Forward { port }` or a counted `Drop`.
    #[inline(always)]
    pub fn forward_frame(&self, frame: &mut [u8], meta: &PacketMeta) -> Verdict {
        match self.route(frame, meta.l3, meta.l3_offset) {
            Ok(port) => Verdict::Forward { port },
            Err(Miss::Drop(r)) => Verdict::Drop(r),
            Err(Miss::Unresolved(_)) => Verdict::Drop(DropReason::NoNeighbor),
        }
    }

    #[inline(always)]
    fn neighbor(&self, hop: Hop) -> Result<Neighbor, Miss> {
        match hop {
            Hop::Found(n) => Ok(n),
            Hop::Resolve(ip) => match &self.learned {
                Some(l) => l.get().get(ip).ok_or(Miss::Unresolved(ip)),
                None => Err(Miss::Unresolved(ip)),
            },
        }
    }

    /// The next hop address a classified frame's route leaves to neighbor resolution (no static
    /// neighbor), whether or not it is learned yet; `None` for a static neighbor or a drop.
    /// Reads only.
    pub(crate) fn pending_hop(&self, f: &[u8], kind: L3Kind, l3_offset: u16) -> Option<IpAddr> {
        let l3 = f.get(usize::from(l3_offset)..)?;
        let hop = match kind {
            L3Kind::Ipv4 => {
                let h = l3.first_chunk::<IPV4_HEADER_LEN>()?;
                self.fib.get().hop_v4(u32::from_be_bytes([h[16], h[17], h[18], h[19]])).ok()?
            }
            L3Kind::Ipv6 => {
                let h = l3.first_chunk::<IPV6_HEADER_LEN>()?;
                let mut a = [0u8; 16];
                a.copy_from_slice(&h[24..40]);
                self.fib.get().hop_v6(u128::from_be_bytes(a)).ok()?
            }
            _ => return None,
        };
        match hop {
            Hop::Resolve(ip) => Some(ip),
            Hop::Found(_) => None,
        }
    }

    /// Routes one frame; `Err(Miss::Unresolved)` leaves the frame untouched.
    #[inline(always)]
    pub(crate) fn route(&self, f: &mut [u8], kind: L3Kind, l3_offset: u16) -> Result<u16, Miss> {
        // Views over exactly the fixed headers (the classifier validated them), so every access
        // is a constant offset into an array: one length check per header.
        let l3 = f.get_mut(usize::from(l3_offset)..).ok_or(DropReason::Truncated)?;
        let nb = match kind {
            L3Kind::Ipv4 => {
                let h = l3.first_chunk_mut::<IPV4_HEADER_LEN>().ok_or(DropReason::Truncated)?;
                let mut ip = Ipv4Packet::new_unchecked(h);
                // Destinations a router never forwards first (RFC 1812 §5.3.7): a host's
                // link-local multicast (IGMP reports, TTL 1) is not a TTL expiry and gets no
                // Time Exceeded.
                let dst = ip.dst_bits();
                check_v4(dst)?;
                if ip.ttl() <= 1 {
                    return Err(DropReason::TtlExpired.into());
                }
                let nb = self.neighbor(self.fib.get().hop_v4(dst)?)?;
                ip.decrement_ttl();
                nb
            }
            L3Kind::Ipv6 => {
                let h = l3.first_chunk_mut::<IPV6_HEADER_LEN>().ok_or(DropReason::Truncated)?;
                let mut ip = Ipv6Packet::new_unchecked(h);
                let hops = ip.hop_limit();
                let dst = ip.dst_bits();
                check_v6(dst)?;
                if hops <= 1 {
                    return Err(DropReason::TtlExpired.into());
                }
                let nb = self.neighbor(self.fib.get().hop_v6(dst)?)?;
                // No IPv6 header checksum (RFC 8200 §3).
                ip.set_hop_limit(hops - 1);
                nb
            }
            _ => return Err(DropReason::Unsupported.into()),
        };
        let src = self.port_macs.get(nb.port as usize).ok_or(DropReason::NoRoute)?;
        let eth = f.first_chunk_mut::<ETHERNET_HEADER_LEN>().ok_or(DropReason::Truncated)?;
        let mut eth = EthernetFrame::new_unchecked(eth);
        eth.set_dst_addr(nb.mac);
        eth.set_src_addr(*src);
        Ok(nb.port)
    }
}

impl<B: PacketBuf> Stage<B> for Forward {
    #[inline]
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        self.refresh();
        let mut drops = [None; BATCH_SIZE];
        let mut any = false;
        let now = cx.now;
        for (p, d) in batch.iter_mut().zip(drops.iter_mut()) {
            let (kind, off) = (p.meta().l3, p.meta().l3_offset);
            match self.route(p.data_mut(), kind, off) {
                Ok(port) => p.meta_mut().out_port = port,
                Err(Miss::Drop(r)) if self.icmp.is_some() && self.icmp_error(p, r, now) => {}
                Err(m) => {
                    *d = Some(match m {
                        Miss::Drop(r) => r,
                        Miss::Unresolved(_) => DropReason::NoNeighbor,
                    });
                    any = true;
                }
            }
        }
        if any {
            batch.remove_marked(cx, &drops);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unicast shortcut agrees with the full rule on every first octet.
    #[test]
    fn check_v4_shortcut_matches_rule() {
        for first in 0..=255u32 {
            for low in [0u32, 1, 0x00ff_ffff, 0x0012_3456] {
                let dst = first << 24 | low;
                let want = match first {
                    224..=239 => Err(DropReason::Unsupported),
                    0 | 127 => Err(DropReason::NoRoute),
                    _ if dst == u32::MAX => Err(DropReason::NoRoute),
                    _ => Ok(()),
                };
                assert_eq!(check_v4(dst), want, "{dst:#010x}");
            }
        }
    }
}
