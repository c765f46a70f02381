//! Forwarding: longest-prefix-match routing for IPv4 and IPv6, the neighbor table, TTL / hop
//! limit decrement with an RFC 1624 incremental checksum update, and the MAC rewrite.
//!
//! The routing state is one immutable [`Fib`] (routes + next hops + neighbors) built by a
//! [`FibBuilder`] on the control side and handed to running shards with
//! [`wirespeed_core::epoch`]: each [`Forward`] stage holds a `Subscriber<Fib>` and adopts the
//! newest version at the start of every batch, so a shard never reads a table that is being
//! changed or freed and pays one atomic load per batch, nothing per packet.
//!
//! ```
//! use std::net::IpAddr;
//! use wirespeed_core::epoch::Publisher;
//! use wirespeed_stages::forward::{FibBuilder, Forward, NextHop};
//!
//! let gw: IpAddr = "192.0.2.254".parse()?;
//! let mut b = FibBuilder::new();
//! b.route("0.0.0.0".parse()?, 0, NextHop::Gateway(gw))?;
//! b.route("198.51.100.0".parse()?, 24, NextHop::Direct)?;
//! b.neighbor(gw, [0x02, 0, 0, 0, 0, 0xfe], 1);
//! let mut routes = Publisher::new(b.build()?);
//! let forward = Forward::new(routes.subscribe(), &[[0x02, 0, 0, 0, 0, 1], [0x02, 0, 0, 0, 0, 2]]);
//! // Later, from the control thread: routes.publish(new_builder.build()?);
//! # drop(forward);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Multicast, loopback, link-local and other never-forwarded destinations are dropped before the
//! lookup (RFC 1812 §5.3.7, RFC 4291).
//!
//! Not done here: ICMP Time Exceeded / Destination Unreachable errors (TTL expiry and missing
//! routes are counted drops only), and IPv4 options are forwarded untouched.

pub mod lpm4;
pub mod lpm6;

use std::collections::HashMap;
use std::net::IpAddr;

use arrayvec::ArrayVec;
use wirespeed_core::epoch::Subscriber;
use wirespeed_core::pipeline::MAX_TX_PORTS;
use wirespeed_core::{
    BATCH_SIZE, Batch, DropReason, L3Kind, PacketBuf, PacketMeta, ShardCtx, Stage, Verdict,
};

pub use lpm4::Dir24_8;
pub use lpm6::{AddrHasher, AddrMap, Lpm6};

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
    Unresolved,
    Direct,
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

    /// Adds a route `prefix/len via next_hop` (host bits of `prefix` are ignored). A prefix
    /// added twice keeps the last next hop.
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
                    .map_or(Adjacency::Unresolved, |n| Adjacency::Resolved(*n)),
                NextHop::Gateway(IpAddr::V6(g)) => self
                    .neighbors6
                    .get(&g.to_bits())
                    .map_or(Adjacency::Unresolved, |n| Adjacency::Resolved(*n)),
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
    fn resolve(&self, idx: u32, direct: impl FnOnce() -> Option<Neighbor>) -> Result<Neighbor, DropReason> {
        match self.adj.get(idx as usize) {
            Some(Adjacency::Resolved(n)) => Ok(*n),
            Some(Adjacency::Direct) => direct().ok_or(DropReason::NoNeighbor),
            Some(Adjacency::Unresolved) => Err(DropReason::NoNeighbor),
            None => Err(DropReason::NoRoute),
        }
    }

    /// Where a packet to IPv4 `dst` goes.
    #[inline(always)]
    pub fn lookup_v4(&self, dst: u32) -> Result<Neighbor, DropReason> {
        let idx = self.v4.lookup(dst).ok_or(DropReason::NoRoute)?;
        self.resolve(idx, || self.neighbors4.get(&dst).copied())
    }

    /// Where a packet to IPv6 `dst` goes.
    #[inline(always)]
    pub fn lookup_v6(&self, dst: u128) -> Result<Neighbor, DropReason> {
        let idx = self.v6.lookup(dst).ok_or(DropReason::NoRoute)?;
        self.resolve(idx, || self.neighbors6.get(&dst).copied())
    }

    /// Where a packet to `dst` goes.
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

/// RFC 1624 eqn. 3 incremental update of an Internet checksum `hc` when a 16-bit word of the
/// covered data changes from `old` to `new`: `HC' = ~(~HC + ~m + m')`. Unlike eqn. 2 it never
/// produces the `-0` (0xffff) the RFC warns about.
#[inline(always)]
pub fn checksum_adjust(hc: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!hc) as u32 + (!old) as u32 + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// [`checksum_adjust`] specialised to the TTL decrement, where the changed word (TTL, protocol)
/// drops by exactly 0x0100: `~m + m'` is then the constant 0xfeff (for TTL ≥ 1), so
/// `HC' = ~(~HC + 0xfeff)`, the same sum eqn. 3 computes. The sum is at most 0x1fefe, so one
/// end-around carry folds it.
#[inline(always)]
pub fn ttl_decrement_checksum(hc: u16) -> u16 {
    let sum = (!hc) as u32 + 0xfeff;
    !((sum & 0xffff) + (sum >> 16)) as u16
}

/// [`ttl_decrement_checksum`] on a checksum read and written in native byte order: the same
/// one's-complement sum with the constant byte-swapped (RFC 1071 §2(B)). The sum is at most
/// 0x1fffd, so one end-around carry still folds it.
#[inline(always)]
fn ttl_decrement_checksum_ne(hc_ne: u16) -> u16 {
    let sum = (!hc_ne) as u32 + 0xfeffu16.to_be() as u32;
    !((sum & 0xffff) + (sum >> 16)) as u16
}

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

/// The forward stage: route lookup, TTL / hop limit, checksum, MAC rewrite, output port.
///
/// Expects classified packets ([`crate::classify::Classify`] before it) and a punt stage before
/// it for traffic to the appliance itself: it routes whatever IPv4/IPv6 packet it is given by
/// destination, and drops other packets as [`DropReason::Unsupported`].
#[derive(Debug)]
pub struct Forward {
    fib: Subscriber<Fib>,
    port_macs: ArrayVec<[u8; 6], MAX_TX_PORTS>,
}

impl Forward {
    /// A forward stage reading routes from `fib`; `port_macs[i]` is the source MAC written on
    /// packets leaving by output port `i` (at most [`MAX_TX_PORTS`]; extra ones are ignored).
    pub fn new(fib: Subscriber<Fib>, port_macs: &[[u8; 6]]) -> Self {
        let port_macs = port_macs.iter().copied().take(MAX_TX_PORTS).collect();
        Self { fib, port_macs }
    }

    /// The FIB version in use.
    pub fn fib_version(&self) -> u64 {
        self.fib.version()
    }

    /// Adopts the newest published FIB, if any (the stage does this at every batch).
    pub fn refresh(&mut self) -> bool {
        self.fib.refresh()
    }

    /// Forwards one classified frame in place (rewrites TTL, checksum and MACs) and returns the
    /// verdict: `Forward { port }` or a counted `Drop`.
    #[inline(always)]
    pub fn forward_frame(&self, frame: &mut [u8], meta: &PacketMeta) -> Verdict {
        match self.route(frame, meta.l3, meta.l3_offset) {
            Ok(port) => Verdict::Forward { port },
            Err(r) => Verdict::Drop(r),
        }
    }

    #[inline(always)]
    fn route(&self, f: &mut [u8], kind: L3Kind, l3_offset: u16) -> Result<u16, DropReason> {
        let l3 = l3_offset as usize;
        let nb = match kind {
            L3Kind::Ipv4 => {
                // One length check: the range end, then a view whose size is known.
                let h: &mut [u8; 20] =
                    f.get_mut(l3..l3 + 20).and_then(|h| h.try_into().ok()).ok_or(DropReason::Truncated)?;
                let ttl = h[8];
                if ttl <= 1 {
                    return Err(DropReason::TtlExpired);
                }
                let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
                check_v4(dst)?;
                let nb = self.fib.lookup_v4(dst)?;
                // Native byte order: the one's-complement sum does not care (RFC 1071 §2(B)),
                // and it saves two byte swaps.
                let hc = u16::from_ne_bytes([h[10], h[11]]);
                h[8] = ttl - 1;
                h[10..12].copy_from_slice(&ttl_decrement_checksum_ne(hc).to_ne_bytes());
                nb
            }
            L3Kind::Ipv6 => {
                let h = f.get_mut(l3..l3 + 40).ok_or(DropReason::Truncated)?;
                if h[7] <= 1 {
                    return Err(DropReason::TtlExpired);
                }
                let mut d = [0u8; 16];
                d.copy_from_slice(&h[24..40]);
                let dst = u128::from_be_bytes(d);
                check_v6(dst)?;
                let nb = self.fib.lookup_v6(dst)?;
                // No IPv6 header checksum (RFC 8200 §3).
                h[7] -= 1;
                nb
            }
            _ => return Err(DropReason::Unsupported),
        };
        let src = self.port_macs.get(nb.port as usize).ok_or(DropReason::NoRoute)?;
        let eth = f.get_mut(0..12).ok_or(DropReason::Truncated)?;
        eth[0..6].copy_from_slice(&nb.mac);
        eth[6..12].copy_from_slice(src);
        Ok(nb.port)
    }
}

impl<B: PacketBuf> Stage<B> for Forward {
    #[inline]
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        self.fib.refresh();
        let mut drops = [None; BATCH_SIZE];
        let mut any = false;
        for (p, d) in batch.iter_mut().zip(drops.iter_mut()) {
            let (kind, off) = (p.meta().l3, p.meta().l3_offset);
            match self.route(p.data_mut(), kind, off) {
                Ok(port) => p.meta_mut().out_port = port,
                Err(r) => {
                    *d = Some(r);
                    any = true;
                }
            }
        }
        if any {
            crate::classify::remove_marked(cx, batch, &drops);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TTL shortcut (big-endian and native-endian forms) gives exactly what RFC 1624 eqn. 3
    /// gives, for every checksum value and every TTL that is decremented (2..=255).
    #[test]
    fn ttl_shortcut_equals_rfc1624_eqn3() {
        for hc in 0..=u16::MAX {
            for ttl in 2..=255u8 {
                let proto = ttl.wrapping_mul(37); // vary the low byte of the word too
                let old = u16::from_be_bytes([ttl, proto]);
                let new = u16::from_be_bytes([ttl - 1, proto]);
                let want = checksum_adjust(hc, old, new);
                assert_eq!(ttl_decrement_checksum(hc), want, "hc {hc:#06x} ttl {ttl}");
                if ttl == 2 || ttl == 255 {
                    let ne = u16::from_ne_bytes(hc.to_be_bytes());
                    let got = ttl_decrement_checksum_ne(ne).to_ne_bytes();
                    assert_eq!(u16::from_be_bytes(got), want, "native order, hc {hc:#06x}");
                }
            }
        }
    }

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
