//! Neighbor learning for the forwarding table: the control plane sees every ARP and Neighbor
//! Discovery frame punted to it, and records who claims which address on which port, so the
//! application can feed them into a [`crate::forward::FibBuilder`] and publish a new FIB.
//!
//! The wire is untrusted, so a frame is learned from only when all of these hold (anything else
//! is a counted reject, by reason, in [`SnoopCounters`]):
//!
//! - ARP (RFC 826): Ethernet/IPv4 with the right lengths; the target is one of the appliance's
//!   addresses (the "merge" step smoltcp also does); the sender MAC is unicast and the one the
//!   Ethernet frame came from; the sender address is not ours, not unspecified, broadcast,
//!   multicast, loopback or a subnet's broadcast address, and lies on a configured subnet.
//! - Neighbor Discovery (RFC 4861 §7.1): ICMPv6 right after the IPv6 header, hop limit 255
//!   (anything less was forwarded by a router and is not from the link), a valid ICMPv6
//!   checksum (RFC 4443 §2.3), code 0, well-formed options (a zero-length option invalidates
//!   the message). A Neighbor Solicitation teaches its source (from the source link-layer
//!   option) when it asks for one of our addresses; a Neighbor Advertisement teaches its target
//!   (from the target link-layer option), but an unsolicited one (S flag clear) only updates a
//!   neighbor already known, as RFC 4861 §7.2.5 says, and without the Override flag it does not
//!   change a known MAC. The address learned is not ours, not unspecified or multicast, and is
//!   link-local or on a configured subnet.
//!
//! Every structure is bounded: the table holds [`MAX_LEARNED`] neighbors and, when full, evicts
//! the least recently confirmed one (so a flood can displace, but never lock out, legitimate
//! neighbors); pending changes are kept per address (a neighbor flipping its MAC 300 000 times
//! is one pending change), so they never outnumber the table. The table is keyed by addresses
//! the wire chose, so it uses the standard library's keyed (SipHash) hasher.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wirespeed_core::wire::{ETHERTYPE_ARP, ETHERTYPE_IPV6, ip_proto};

use crate::forward::Neighbor;

/// Most neighbors remembered; past this the least recently confirmed one is evicted.
pub const MAX_LEARNED: usize = 4096;

/// Most pending neighbor changes (one per address, and only for addresses in the table).
pub const MAX_CHANGES: usize = MAX_LEARNED;

/// What neighbor learning did with the ARP and Neighbor Discovery frames it saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnoopCounters {
    /// Neighbors learned or changed.
    pub learned: u64,
    /// Neighbors evicted (least recently confirmed) to make room for a new one.
    pub evicted: u64,
    /// ARP or ND not concerning the appliance (target not one of its addresses): not learned.
    pub not_for_us: u64,
    /// Rejected: truncated or malformed (lengths, hardware/protocol type, ICMPv6 code, options).
    pub malformed: u64,
    /// Rejected: ICMPv6 checksum did not verify.
    pub bad_checksum: u64,
    /// Rejected: Neighbor Discovery with a hop limit other than 255.
    pub bad_hop_limit: u64,
    /// Rejected: sender or target address (or MAC) is ours, unspecified, broadcast, multicast
    /// or loopback, or the ARP sender MAC is not the frame's source.
    pub bad_sender: u64,
    /// Rejected: the address is on none of the configured subnets (nor link-local).
    pub off_subnet: u64,
    /// Rejected: an unsolicited advertisement for an unknown neighbor, or one without the
    /// Override flag that would change a known MAC.
    pub unsolicited: u64,
    /// Neighbors removed because they stopped answering (aged out after the probes).
    pub expired: u64,
    /// Unicast probes sent to neighbors not confirmed within the reachable time.
    pub probes: u64,
}

/// Why a frame taught nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reject {
    NotForUs,
    Malformed,
    BadChecksum,
    BadHopLimit,
    BadSender,
    OffSubnet,
    Unsolicited,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    n: Neighbor,
    /// When it was last confirmed (a logical clock), its key in `lru`.
    tick: u64,
    /// When it was last confirmed (microseconds of the control plane's clock).
    at: i64,
    /// Probes sent since, and when the last one was.
    probes: u8,
    probed_at: i64,
}

/// How learned neighbors age (all in microseconds of the control plane's clock).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Aging {
    /// Confirmed this recently: trusted without a probe.
    pub(crate) reachable: i64,
    /// Between probes.
    pub(crate) retrans: i64,
    /// Unanswered probes before the neighbor is removed.
    pub(crate) probes: u8,
}

#[derive(Debug, Default)]
pub(crate) struct Snoop {
    own: Vec<IpAddr>,
    subnets: Vec<(IpAddr, u8)>,
    table: HashMap<IpAddr, Entry>,
    /// Entries by last confirmation, oldest first.
    lru: BTreeMap<u64, IpAddr>,
    tick: u64,
    /// Pending changes: address → change number; `changes` orders them (`None`: removed).
    pending: HashMap<IpAddr, u64>,
    changes: BTreeMap<u64, (IpAddr, Option<Neighbor>)>,
    counters: SnoopCounters,
    /// The clock of the frame being looked at (microseconds).
    now: i64,
}

fn prefix_match(a: IpAddr, net: IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The ICMPv6 checksum of `icmp` (checksum field included) under the IPv6 pseudo-header
/// (RFC 8200 §8.1): 0 when it verifies.
pub(crate) fn icmpv6_checksum(src: &[u8], dst: &[u8], icmp: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(src);
    add(dst);
    add(&(icmp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Snoop {
    pub(crate) fn new(own: &[(IpAddr, u8)]) -> Self {
        Self { own: own.iter().map(|&(a, _)| a).collect(), subnets: own.to_vec(), ..Self::default() }
    }

    pub(crate) fn learned(&self) -> impl Iterator<Item = (IpAddr, Neighbor)> + '_ {
        self.table.iter().map(|(a, e)| (*a, e.n))
    }

    pub(crate) fn counters(&self) -> SnoopCounters {
        self.counters
    }

    pub(crate) fn take_changes(&mut self) -> Vec<(IpAddr, Neighbor)> {
        self.take_updates().into_iter().filter_map(|(a, n)| Some((a, n?))).collect()
    }

    pub(crate) fn take_updates(&mut self) -> Vec<(IpAddr, Option<Neighbor>)> {
        self.pending.clear();
        std::mem::take(&mut self.changes).into_values().collect()
    }

    /// True when `ip` is on a configured subnet (or IPv6 link-local) and not ours: an address
    /// the appliance may resolve.
    pub(crate) fn on_link(&self, ip: IpAddr) -> bool {
        self.check_addr(ip).is_ok()
    }

    /// The own address to speak from towards `ip` (one on the same subnet, else the first of
    /// the same family).
    pub(crate) fn source_for(&self, ip: IpAddr) -> Option<IpAddr> {
        self.subnets
            .iter()
            .find(|&&(n, len)| prefix_match(ip, n, len))
            .or_else(|| self.subnets.iter().find(|(n, _)| n.is_ipv4() == ip.is_ipv4()))
            .map(|&(n, _)| n)
    }

    /// Ages the table at `now`: neighbors not confirmed within the reachable time are probed
    /// (their address and MAC pushed to `probe`), and removed after `probes` unanswered ones.
    pub(crate) fn age(&mut self, now: i64, a: Aging, probe: &mut Vec<(IpAddr, Neighbor)>) {
        let mut gone = Vec::new();
        for (ip, e) in &mut self.table {
            if now - e.at < a.reachable || (e.probes > 0 && now - e.probed_at < a.retrans) {
                continue;
            }
            if e.probes >= a.probes {
                gone.push(*ip);
            } else {
                e.probes += 1;
                e.probed_at = now;
                probe.push((*ip, e.n));
                self.counters.probes += 1;
            }
        }
        for ip in gone {
            if let Some(e) = self.table.remove(&ip) {
                self.lru.remove(&e.tick);
            }
            self.tick += 1;
            if let Some(seq) = self.pending.insert(ip, self.tick) {
                self.changes.remove(&seq);
            }
            self.changes.insert(self.tick, (ip, None));
            self.counters.expired += 1;
        }
    }

    fn reject(&mut self, r: Reject) {
        let c = &mut self.counters;
        *match r {
            Reject::NotForUs => &mut c.not_for_us,
            Reject::Malformed => &mut c.malformed,
            Reject::BadChecksum => &mut c.bad_checksum,
            Reject::BadHopLimit => &mut c.bad_hop_limit,
            Reject::BadSender => &mut c.bad_sender,
            Reject::OffSubnet => &mut c.off_subnet,
            Reject::Unsolicited => &mut c.unsolicited,
        } += 1;
    }

    /// Sender-address sanity shared by ARP and ND: not ours, not a special address, on-link.
    fn check_addr(&self, ip: IpAddr) -> Result<(), Reject> {
        let special = match ip {
            IpAddr::V4(v) => v.is_unspecified() || v.is_broadcast() || v.is_multicast() || v.is_loopback(),
            IpAddr::V6(v) => v.is_unspecified() || v.is_multicast() || v.is_loopback(),
        };
        if special || self.own.contains(&ip) {
            return Err(Reject::BadSender);
        }
        if let IpAddr::V4(v) = ip {
            // The directed broadcast address of a configured subnet is nobody's.
            let is_bcast = self.subnets.iter().any(|&(n, len)| {
                len <= 30 && prefix_match(ip, n, len) && {
                    let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                    u32::from(v) & host == host
                }
            });
            if is_bcast {
                return Err(Reject::BadSender);
            }
        }
        let link_local = matches!(ip, IpAddr::V6(v) if v.segments()[0] & 0xffc0 == 0xfe80);
        if link_local || self.subnets.iter().any(|&(n, len)| prefix_match(ip, n, len)) {
            Ok(())
        } else {
            Err(Reject::OffSubnet)
        }
    }

    /// Records `ip` at `mac`; `create` false only updates a neighbor already known.
    fn learn(
        &mut self,
        ip: IpAddr,
        mac: [u8; 6],
        port: u16,
        create: bool,
        may_change: bool,
    ) -> Result<(), Reject> {
        // Zero, broadcast and multicast MACs are never a neighbor's.
        if mac == [0; 6] || mac[0] & 1 == 1 {
            return Err(Reject::BadSender);
        }
        self.check_addr(ip)?;
        let n = Neighbor { mac, port };
        self.tick += 1;
        let tick = self.tick;
        match self.table.get_mut(&ip) {
            Some(e) => {
                if e.n != n && !may_change {
                    return Err(Reject::Unsolicited);
                }
                self.lru.remove(&e.tick);
                self.lru.insert(tick, ip);
                e.tick = tick;
                e.at = self.now;
                e.probes = 0;
                if e.n == n {
                    return Ok(());
                }
                e.n = n;
            }
            None => {
                if !create {
                    return Err(Reject::Unsolicited);
                }
                if self.table.len() >= MAX_LEARNED
                    && let Some((_, old)) = self.lru.pop_first()
                {
                    self.table.remove(&old);
                    if let Some(seq) = self.pending.remove(&old) {
                        self.changes.remove(&seq);
                    }
                    self.counters.evicted += 1;
                }
                self.table.insert(ip, Entry { n, tick, at: self.now, probes: 0, probed_at: 0 });
                self.lru.insert(tick, ip);
            }
        }
        // One pending change per address: the latest wins, in the order of its last change.
        if let Some(seq) = self.pending.insert(ip, tick) {
            self.changes.remove(&seq);
        }
        self.changes.insert(tick, (ip, Some(n)));
        debug_assert!(self.changes.len() <= MAX_CHANGES);
        self.counters.learned += 1;
        Ok(())
    }

    /// Looks at one punted frame (untagged Ethernet II) received at `now` (microseconds).
    pub(crate) fn frame(&mut self, f: &[u8], port: u16, now: i64) {
        self.now = now;
        let Some(et) = f.get(12..14) else { return };
        let r = match u16::from_be_bytes([et[0], et[1]]) {
            ETHERTYPE_ARP => self.arp(f, port),
            ETHERTYPE_IPV6 => self.nd(&f[14..], port),
            _ => Ok(()),
        };
        if let Err(r) = r {
            self.reject(r);
        }
    }

    fn arp(&mut self, f: &[u8], port: u16) -> Result<(), Reject> {
        // RFC 826, Ethernet (1) / IPv4 (0x0800), hlen 6, plen 4.
        let a = f.get(14..42).ok_or(Reject::Malformed)?;
        if a[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
            return Err(Reject::Malformed);
        }
        let spa = Ipv4Addr::new(a[14], a[15], a[16], a[17]);
        let tpa = Ipv4Addr::new(a[24], a[25], a[26], a[27]);
        if !self.own.contains(&IpAddr::V4(tpa)) {
            return Err(Reject::NotForUs);
        }
        if a[8..14] != f[6..12] {
            return Err(Reject::BadSender);
        }
        let mut sha = [0u8; 6];
        sha.copy_from_slice(&a[8..14]);
        self.learn(spa.into(), sha, port, true, true)
    }

    fn nd(&mut self, ip: &[u8], port: u16) -> Result<(), Reject> {
        // IPv6 header without extension headers, ICMPv6 (58).
        let Some(h) = ip.get(..40) else { return Ok(()) };
        if h[0] >> 4 != 6 || h[6] != ip_proto::ICMPV6 {
            return Ok(());
        }
        let plen = u16::from_be_bytes([h[4], h[5]]) as usize;
        let icmp = ip.get(40..40 + plen).ok_or(Reject::Malformed)?;
        let ty = *icmp.first().ok_or(Reject::Malformed)?;
        if ty != 135 && ty != 136 {
            return Ok(());
        }
        if h[7] != 255 {
            return Err(Reject::BadHopLimit);
        }
        if icmp.len() < 24 || icmp[1] != 0 {
            return Err(Reject::Malformed);
        }
        if icmpv6_checksum(&h[8..24], &h[24..40], icmp) != 0 {
            return Err(Reject::BadChecksum);
        }
        let addr = |b: &[u8]| {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Ipv6Addr::from(a)
        };
        let target = addr(&icmp[8..24]);
        // NS (135): the source link-layer option (1) gives the solicitor's MAC for its source
        // address. NA (136): the target link-layer option (2) gives the target's MAC.
        let (learn, want_opt, create, may_change) = match ty {
            135 => {
                if !self.own.contains(&IpAddr::V6(target)) {
                    return Err(Reject::NotForUs);
                }
                let src = addr(&h[8..24]);
                if src.is_unspecified() {
                    return Ok(()); // duplicate address detection: nobody to learn
                }
                (src, 1, true, true)
            }
            _ => {
                if target.is_multicast() {
                    return Err(Reject::Malformed); // RFC 4861 §7.1.2
                }
                let solicited = icmp[4] & 0x40 != 0;
                let overrides = icmp[4] & 0x20 != 0;
                (target, 2, solicited, overrides)
            }
        };
        // Options start after type, code, checksum, reserved/flags (8) and the target (16).
        let mut opts = &icmp[24..];
        let mut mac = None;
        while !opts.is_empty() {
            let len = usize::from(*opts.get(1).ok_or(Reject::Malformed)?) * 8;
            if len == 0 || len > opts.len() {
                return Err(Reject::Malformed); // RFC 4861 §4.6: a zero-length option invalidates the message
            }
            if opts[0] == want_opt && len == 8 {
                let mut m = [0u8; 6];
                m.copy_from_slice(&opts[2..8]);
                mac = Some(m);
            }
            opts = &opts[len..];
        }
        match mac {
            Some(mac) => self.learn(learn.into(), mac, port, create, may_change),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x42];

    /// Ethernet + IPv6 (hop limit `hl`) + an ICMPv6 NA for `target` with flags `flags` and a
    /// target link-layer option (RFC 4861 §4.4), checksum filled in.
    pub(crate) fn na(target: Ipv6Addr, hl: u8, opt_len: u8, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        let icmp_len = 24 + 8;
        let mut ip = vec![0x60, 0, 0, 0, 0, icmp_len as u8, 58, hl];
        ip.extend_from_slice(&target.octets());
        ip.extend_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&ip);
        let mut icmp = vec![136, 0, 0, 0, flags, 0, 0, 0];
        icmp.extend_from_slice(&target.octets());
        icmp.extend_from_slice(&[2, opt_len]);
        icmp.extend_from_slice(&MAC);
        let c = icmpv6_checksum(&f[22..38], &f[38..54], &icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&icmp);
        f
    }

    fn snoop() -> Snoop {
        Snoop::new(&[("2001:db8::1".parse().unwrap(), 64), ("192.0.2.1".parse().unwrap(), 24)])
    }

    #[test]
    fn learns_na_only_from_the_link() {
        let t: Ipv6Addr = "2001:db8::42".parse().unwrap();
        let mut s = snoop();
        s.frame(&na(t, 64, 1, 0x60), 3, 0);
        s.frame(&na(t, 255, 0, 0x60), 3, 0);
        assert!(s.take_changes().is_empty(), "routed NA or zero-length option learned");
        assert_eq!((s.counters.bad_hop_limit, s.counters.malformed), (1, 1));
        s.frame(&na(t, 255, 1, 0x60), 3, 0);
        assert_eq!(s.take_changes(), vec![(IpAddr::V6(t), Neighbor { mac: MAC, port: 3 })]);
        s.frame(&na(t, 255, 1, 0x60), 3, 0);
        assert!(s.take_changes().is_empty(), "an unchanged neighbor is not a change");
        for n in 0..20 {
            s.frame(&na(t, 255, 1, 0x60)[..n], 3, 0);
        }
    }

    #[test]
    fn checksum_matches_a_known_packet() {
        // A verified NA: the checksum computed over the packet, including it, is 0.
        let f = na("2001:db8::42".parse().unwrap(), 255, 1, 0x60);
        assert_eq!(icmpv6_checksum(&f[22..38], &f[38..54], &f[54..]), 0);
    }
}
