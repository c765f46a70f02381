//! ICMP and ICMPv6 errors from the data plane: Time Exceeded (TTL / hop limit), Destination
//! Unreachable (no route), and Fragmentation Needed / Packet Too Big carrying the MTU a packet
//! must fit (RFC 792, RFC 1191, RFC 1812 §4.3, RFC 4443, RFC 4301 §8.1 / RFC 4459 for tunnels).
//!
//! An error is built in place from the packet that caused it, so it costs no allocation: the
//! original IP packet (as much as fits 576 bytes for ICMP, the IPv6 minimum MTU of 1280 for
//! ICMPv6) moves behind a new IP and ICMP header addressed to the original source, from the
//! appliance's address on the port the packet came in by, and the frame goes back out that port
//! to the MAC it came from (the previous hop). The packet is then transmitted instead of
//! dropped; [`IcmpCounters`] say how many of each were sent.
//!
//! No error is sent about an ICMP error, a non-initial IPv4 fragment, a packet from an address
//! that is not a unicast host's (unspecified, loopback, multicast, broadcast), or to a multicast
//! or broadcast destination (RFC 1812 §4.3.2.7, RFC 4443 §2.4(e)); nor without a source address
//! for the port, nor beyond the per-stage token bucket ([`IcmpConfig::rate`]): those packets are
//! dropped as they would be without ICMP errors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use arrayvec::ArrayVec;
use wirespeed_core::PacketBuf;
use wirespeed_core::epoch::Subscriber;

use crate::forward::{Fib, Hop, Neighbors};
use wirespeed_core::pipeline::MAX_TX_PORTS;
use wirespeed_core::wire::checksum::{fold, ones_sum};
use wirespeed_core::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, ip_proto};

/// Which error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    /// TTL / hop limit exceeded in transit (ICMP 11/0, ICMPv6 3/0).
    TimeExceeded,
    /// No route to the destination (ICMP 3/0 net unreachable, ICMPv6 1/0).
    NoRoute,
    /// Does not fit: ICMP 3/4 Fragmentation Needed (IPv4 with DF) or ICMPv6 2/0 Packet Too Big,
    /// with the largest packet that fits.
    TooBig {
        /// The MTU to report (bytes of IP packet).
        mtu: u16,
    },
}

/// Where ICMP errors come from and how many may be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcmpConfig {
    /// Per port: the appliance's IPv4 and IPv6 addresses errors are sent from (`None`: no
    /// error of that family from that port).
    pub sources: Vec<(Option<Ipv4Addr>, Option<Ipv6Addr>)>,
    /// Per port: the appliance's MAC there (the new Ethernet source).
    pub macs: Vec<[u8; 6]>,
    /// Errors per second per stage (token bucket with the same burst); 0 sends none.
    pub rate: u32,
}

impl Default for IcmpConfig {
    /// No source addresses (so no errors until some are given) and 100 errors per second, the
    /// rate `ipsec-gateway` uses by default. Build on it with `..IcmpConfig::default()` so that
    /// fields added later do not break the construction:
    ///
    /// ```
    /// use wirespeed_core::epoch::Publisher;
    /// use wirespeed_stages::icmp::{IcmpConfig, IcmpErrors};
    /// use wirespeed_stages::{FibBuilder, Forward};
    ///
    /// let mac = [2, 0, 0, 0, 0, 1];
    /// let cfg = IcmpConfig { sources: vec![(Some("192.0.2.1".parse()?), None)], macs: vec![mac], ..IcmpConfig::default() };
    /// assert_eq!(cfg.rate, 100);
    /// let mut fib = Publisher::new(FibBuilder::new().build()?);
    /// let forward = Forward::new(fib.subscribe(), &[mac]).with_icmp_errors(IcmpErrors::new(&cfg));
    /// assert_eq!(forward.icmp_counters().unreachable, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn default() -> Self {
        Self { sources: Vec::new(), macs: Vec::new(), rate: 100 }
    }
}

/// What the errors generator did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpCounters {
    /// Time Exceeded sent.
    pub time_exceeded: u64,
    /// Destination Unreachable (no route) sent.
    pub unreachable: u64,
    /// Fragmentation Needed / Packet Too Big sent.
    pub too_big: u64,
    /// Not sent: over the rate.
    pub rate_limited: u64,
    /// Not sent: about an ICMP error, a fragment, a non-unicast source or destination, no source
    /// address for the port, or no room in the buffer.
    pub suppressed: u64,
}

/// Builds ICMP errors in place, rate-limited (one per stage and shard).
#[derive(Debug)]
pub struct IcmpErrors {
    /// Routes errors back to their destination (for packets already rewritten by forwarding).
    routes: Option<(Subscriber<Fib>, Option<Subscriber<Neighbors>>)>,
    sources: ArrayVec<(Option<Ipv4Addr>, Option<Ipv6Addr>), MAX_TX_PORTS>,
    macs: ArrayVec<[u8; 6], MAX_TX_PORTS>,
    /// Tokens in millionths, refilled `rate` per second up to `rate`.
    tokens: u64,
    rate: u64,
    filled: Option<Instant>,
    counters: IcmpCounters,
}

/// Largest ICMP error (IPv4 total length, RFC 1812 §4.3.2.3).
const MAX_V4: usize = 576;
/// Largest ICMPv6 error (the IPv6 minimum MTU, RFC 4443 §2.4(c)).
const MAX_V6: usize = 1280;

impl IcmpErrors {
    /// A generator for `cfg`.
    pub fn new(cfg: &IcmpConfig) -> Self {
        let rate = u64::from(cfg.rate);
        Self {
            routes: None,
            sources: cfg.sources.iter().copied().take(MAX_TX_PORTS).collect(),
            macs: cfg.macs.iter().copied().take(MAX_TX_PORTS).collect(),
            tokens: rate * 1_000_000,
            rate,
            filled: None,
            counters: IcmpCounters::default(),
        }
    }

    /// Sends errors where the routing table says their destination (the packet's source) is,
    /// from the appliance's address on that port, instead of back to the frame's Ethernet
    /// source: for stages after [`crate::forward::Forward`], which rewrote the MACs. An error
    /// whose destination has no route or neighbor is not sent.
    pub fn with_routes(mut self, fib: Subscriber<Fib>, learned: Option<Subscriber<Neighbors>>) -> Self {
        self.routes = Some((fib, learned));
        self
    }

    /// Counters so far.
    pub fn counters(&self) -> IcmpCounters {
        self.counters
    }

    fn take_token(&mut self, now: Instant) -> bool {
        if let Some(t) = self.filled {
            let us = u64::try_from(now.saturating_duration_since(t).as_micros()).unwrap_or(u64::MAX);
            self.tokens = self.tokens.saturating_add(us.saturating_mul(self.rate)).min(self.rate * 1_000_000);
        }
        self.filled = Some(now);
        if self.tokens >= 1_000_000 {
            self.tokens -= 1_000_000;
            true
        } else {
            false
        }
    }

    /// Turns `p` (whose IP header is at `l3`, untouched by forwarding) into `err` for its
    /// source, to go back out the port it came in by; returns that port, or `None` (nothing
    /// changed: drop the packet as usual).
    pub fn reply<B: PacketBuf>(&mut self, p: &mut B, l3: usize, err: IcmpError, now: Instant) -> Option<u16> {
        let mut next = None;
        let port = match &mut self.routes {
            None => p.meta().rx_port,
            Some((fib, learned)) => {
                fib.refresh();
                let src = original_source(p.data(), l3)?;
                let hop = match src {
                    IpAddr::V4(a) => fib.hop_v4(a.to_bits()),
                    IpAddr::V6(a) => fib.hop_v6(a.to_bits()),
                };
                let n = match hop {
                    Ok(Hop::Found(n)) => Some(n),
                    Ok(Hop::Resolve(ip)) => learned.as_mut().and_then(|l| {
                        l.refresh();
                        l.get().get(ip)
                    }),
                    Err(_) => None,
                };
                let Some(n) = n else {
                    self.counters.suppressed += 1;
                    return None;
                };
                next = Some(n.mac);
                n.port
            }
        };
        let Some(&(src4, src6)) = self.sources.get(usize::from(port)) else {
            self.counters.suppressed += 1;
            return None;
        };
        let Some(&mac) = self.macs.get(usize::from(port)) else {
            self.counters.suppressed += 1;
            return None;
        };
        let v = p.data().get(l3).map(|b| b >> 4);
        let allowed = match v {
            Some(4) => src4.is_some() && self.check_v4(p.data(), l3),
            Some(6) => src6.is_some() && self.check_v6(p.data(), l3),
            _ => false,
        };
        if !allowed {
            self.counters.suppressed += 1;
            return None;
        }
        if !self.take_token(now) {
            self.counters.rate_limited += 1;
            return None;
        }
        let built = match (v, src4, src6) {
            (Some(4), Some(s), _) => build_v4(p, l3, mac, next, s, err),
            (_, _, Some(s)) => build_v6(p, l3, mac, next, s, err),
            _ => false,
        };
        if !built {
            self.counters.suppressed += 1;
            return None;
        }
        match err {
            IcmpError::TimeExceeded => self.counters.time_exceeded += 1,
            IcmpError::NoRoute => self.counters.unreachable += 1,
            IcmpError::TooBig { .. } => self.counters.too_big += 1,
        }
        p.meta_mut().out_port = port;
        Some(port)
    }

    /// RFC 1812 §4.3.2.7: not about an ICMP error, a non-initial fragment, a non-unicast source
    /// or a multicast / broadcast destination.
    fn check_v4(&self, f: &[u8], l3: usize) -> bool {
        let Some(h) = f.get(l3..l3 + 20) else { return false };
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
        let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
        let frag_off = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
        let bad_src = src.is_unspecified() || src.is_loopback() || src.is_multicast() || src.is_broadcast();
        if bad_src || dst.is_multicast() || dst.is_broadcast() || frag_off != 0 || ihl < 20 {
            return false;
        }
        if h[9] == ip_proto::ICMP {
            // Only errors about queries (echo and the like), never about errors.
            let ty = f.get(l3 + ihl).copied().unwrap_or(3);
            return !matches!(ty, 3 | 4 | 5 | 11 | 12);
        }
        true
    }

    /// RFC 4443 §2.4(e): not about an ICMPv6 error, nor from a non-unicast source, nor to a
    /// multicast destination.
    fn check_v6(&self, f: &[u8], l3: usize) -> bool {
        let Some(h) = f.get(l3..l3 + 40) else { return false };
        let src = v6_at(&h[8..24]);
        let dst = v6_at(&h[24..40]);
        if src.is_unspecified() || src.is_loopback() || src.is_multicast() || dst.is_multicast() {
            return false;
        }
        if h[6] == ip_proto::ICMPV6 {
            let ty = f.get(l3 + 40).copied().unwrap_or(1);
            return ty >= 128;
        }
        true
    }
}

fn v6_at(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

/// Moves the original IP packet (at most `max_quote` bytes of it) behind `hdr` bytes of new
/// headers at the frame start; returns the quote length, or `None` without room.
fn make_room<B: PacketBuf>(
    p: &mut B,
    l3: usize,
    ip_len: usize,
    hdr: usize,
    max_quote: usize,
) -> Option<usize> {
    let avail = p.len().checked_sub(l3)?;
    let quote = ip_len.min(avail).min(max_quote);
    let new_len = hdr + quote;
    if new_len > p.len() + p.tailroom() {
        return None;
    }
    if new_len > p.len() {
        p.set_len(new_len).ok()?;
    }
    p.data_mut().copy_within(l3..l3 + quote, hdr);
    p.set_len(new_len).ok()?;
    Some(quote)
}

/// The source address of the IP packet at `l3`.
fn original_source(f: &[u8], l3: usize) -> Option<IpAddr> {
    match f.get(l3)? >> 4 {
        4 => {
            let h = f.get(l3..l3 + 20)?;
            Some(IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])))
        }
        6 => Some(IpAddr::V6(v6_at(f.get(l3 + 8..l3 + 24)?))),
        _ => None,
    }
}

fn build_v4<B: PacketBuf>(
    p: &mut B,
    l3: usize,
    mac: [u8; 6],
    to: Option<[u8; 6]>,
    src: Ipv4Addr,
    err: IcmpError,
) -> bool {
    let mut prev = [0u8; 6];
    prev.copy_from_slice(&p.data()[6..12]);
    let prev = to.unwrap_or(prev);
    let ip_len = usize::from(u16::from_be_bytes([p.data()[l3 + 2], p.data()[l3 + 3]]));
    let Some(quote) = make_room(p, l3, ip_len, 14 + 28, MAX_V4 - 28) else { return false };
    let (ty, code, rest) = match err {
        IcmpError::TimeExceeded => (11, 0, [0; 4]),
        IcmpError::NoRoute => (3, 0, [0; 4]),
        IcmpError::TooBig { mtu } => {
            let m = mtu.to_be_bytes();
            (3, 4, [0, 0, m[0], m[1]])
        }
    };
    let f = p.data_mut();
    let mut dst = [0u8; 4];
    dst.copy_from_slice(&f[42 + 12..42 + 16]);
    f[0..6].copy_from_slice(&prev);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let total = (28 + quote) as u16;
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[0x45, 0xc0, 0, 0, 0, 0, 0, 0, 64, ip_proto::ICMP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst);
    let c = fold(ones_sum(0, ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut f[34..];
    icmp[0] = ty;
    icmp[1] = code;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&rest);
    let c = fold(ones_sum(0, icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    p.meta_mut().l3_offset = 14;
    true
}

fn build_v6<B: PacketBuf>(
    p: &mut B,
    l3: usize,
    mac: [u8; 6],
    to: Option<[u8; 6]>,
    src: Ipv6Addr,
    err: IcmpError,
) -> bool {
    let mut prev = [0u8; 6];
    prev.copy_from_slice(&p.data()[6..12]);
    let prev = to.unwrap_or(prev);
    let ip_len = 40 + usize::from(u16::from_be_bytes([p.data()[l3 + 4], p.data()[l3 + 5]]));
    let Some(quote) = make_room(p, l3, ip_len, 14 + 48, MAX_V6 - 48) else { return false };
    let (ty, code, rest) = match err {
        IcmpError::TimeExceeded => (3, 0, [0; 4]),
        IcmpError::NoRoute => (1, 0, [0; 4]),
        IcmpError::TooBig { mtu } => (2, 0, u32::from(mtu).to_be_bytes()),
    };
    let f = p.data_mut();
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&f[62 + 8..62 + 24]);
    f[0..6].copy_from_slice(&prev);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let plen = (8 + quote) as u16;
    let ip = &mut f[14..54];
    ip.fill(0);
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&plen.to_be_bytes());
    ip[6] = ip_proto::ICMPV6;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst);
    let (hdr, icmp) = f.split_at_mut(54);
    icmp[0] = ty;
    icmp[1] = code;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&rest);
    // RFC 8200 §8.1 pseudo-header: source, destination, upper-layer length, next header.
    let mut sum = ones_sum(0, &hdr[22..54]);
    sum = ones_sum(sum, &u32::from(plen).to_be_bytes());
    sum = ones_sum(sum, &[0, 0, 0, ip_proto::ICMPV6]);
    let c = fold(ones_sum(sum, icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    p.meta_mut().l3_offset = 14;
    true
}
