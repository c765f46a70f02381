//! Classification: parse a frame's headers once and fill [`PacketMeta`] (offsets, 5-tuple or SPI,
//! VLAN, DSCP, flags and the [`FlowClass`] every later stage branches on).
//!
//! Two paths give the same answer:
//! - a hand-written **fast path** for the common case — Ethernet II, untagged or with one
//!   802.1Q tag, IPv4 without
//!   options and not fragmented, or IPv6 without extension headers, then TCP/UDP/ICMP/ESP — that
//!   reads fixed offsets and checks every length before it reads;
//! - the **etherparse path** ([`ClassifyConfig::classify_etherparse`]) for everything else:
//!   802.1Q / QinQ tags, IPv4 options and AH, IPv6 extension headers, fragments, ARP. It uses
//!   etherparse's link, VLAN, ARP and IP slicers; the transport layer is ours in both paths (so
//!   both agree on what a malformed TCP/UDP/ICMP/ESP header is).
//!
//! Both end in the same transport-layer code, and a property test checks that they agree.
//!
//! Flow classes (see [`ClassifyConfig`]): ARP and IPv6 Neighbor Discovery are `Management`;
//! anything addressed to one of the appliance's own addresses is `Management` (ICMP echo, SSH,
//! the management TCP port, and any other protocol so the control plane can answer or reset it)
//! except IKE (UDP 500, UDP 4500 with the four-byte zero non-ESP marker, NAT keepalives) and BGP
//! (TCP 179), which are `Control`; IP protocol 50 is `Esp`; UDP 4500 whose first payload word is
//! non-zero is `EspInUdp` (RFC 3948) whatever its destination; everything else is `Data`.
//! Non-IP, non-ARP EtherTypes are `Other` and pass unchanged (the forward stage drops them as
//! `Unsupported`).
//!
//! Malformed or truncated frames are dropped with a [`DropReason`] and counted; nothing panics.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{ArpPacketSlice, Ethernet2Slice, Ipv4Slice, Ipv6Slice, SingleVlanSlice};
use wirespeed_core::meta::flags;
use wirespeed_core::{
    BATCH_SIZE, Batch, DropReason, FlowClass, L3Kind, PacketBuf, PacketMeta, ShardCtx, Stage,
};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ) service tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

/// IP protocol numbers the classifier looks into.
pub mod ip_proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ESP.
    pub const ESP: u8 = 50;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// What the classifier needs to know about the appliance: its own addresses and the ports of its
/// control protocols. Plain data; build one at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassifyConfig {
    /// The appliance's own IPv4 addresses.
    pub own_ipv4: Vec<Ipv4Addr>,
    /// The appliance's own IPv6 addresses.
    pub own_ipv6: Vec<Ipv6Addr>,
    /// TCP port of the management endpoint (default 9000).
    pub management_tcp_port: u16,
    /// TCP port of SSH (default 22).
    pub ssh_port: u16,
    /// TCP port of BGP (default 179).
    pub bgp_port: u16,
    /// UDP port of IKE (default 500).
    pub ike_port: u16,
    /// UDP port of NAT traversal, IKE and ESP-in-UDP (default 4500).
    pub nat_t_port: u16,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        Self {
            own_ipv4: Vec::new(),
            own_ipv6: Vec::new(),
            management_tcp_port: 9000,
            ssh_port: 22,
            bgp_port: 179,
            ike_port: 500,
            nat_t_port: 4500,
        }
    }
}

/// The classify stage. Construct with [`Classify::new`]; it owns its [`ClassifyConfig`].
#[derive(Clone, Debug, Default)]
pub struct Classify {
    cfg: ClassifyConfig,
}

impl Classify {
    /// A classifier for an appliance described by `cfg`.
    pub fn new(cfg: ClassifyConfig) -> Self {
        Self { cfg }
    }

    /// The configuration.
    pub fn config(&self) -> &ClassifyConfig {
        &self.cfg
    }

    /// Classifies one packet in place: fills its metadata, or says why it must be dropped.
    #[inline]
    pub fn classify_packet<B: PacketBuf>(&self, p: &mut B) -> Result<(), DropReason> {
        match self.cfg.fast(p.data(), p.meta().flags) {
            Some(Ok(m)) => {
                store(p.meta_mut(), &m);
                Ok(())
            }
            Some(Err(r)) => Err(r),
            None => self.cfg.classify_slow(p),
        }
    }
}

/// Copies the classifier's fields of `m` into `dst`, one field at a time: a whole-struct copy of
/// a just-written local is done with wide loads of narrow stores, which stalls store forwarding
/// (it cost ~60 % of the stage in a profile).
#[inline(always)]
fn store(dst: &mut PacketMeta, m: &PacketMeta) {
    dst.l3_offset = m.l3_offset;
    dst.l4_offset = m.l4_offset;
    dst.l3 = m.l3;
    dst.l4_proto = m.l4_proto;
    dst.src_port = m.src_port;
    dst.dst_port = m.dst_port;
    dst.spi = m.spi;
    dst.vlan = m.vlan;
    dst.flow_class = m.flow_class;
    dst.dscp = m.dscp;
    dst.flags = m.flags;
}

impl<B: PacketBuf> Stage<B> for Classify {
    #[inline]
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        // A plain loop the compiler inlines whole (no per-packet closure call); packets to drop
        // are marked and removed afterwards, which is rare.
        let cfg = &self.cfg;
        let mut drops = [None; BATCH_SIZE];
        let mut any = false;
        for (p, d) in batch.iter_mut().zip(drops.iter_mut()) {
            // The fast path builds its result in registers and stores it once; only frames it
            // does not handle take the etherparse path (which works on a copy in memory).
            let r = match cfg.fast(p.data(), p.meta().flags) {
                Some(Ok(m)) => {
                    store(p.meta_mut(), &m);
                    continue;
                }
                Some(Err(r)) => r,
                None => match cfg.classify_slow(p) {
                    Ok(()) => continue,
                    Err(r) => r,
                },
            };
            *d = Some(r);
            any = true;
        }
        if any {
            remove_marked(cx, batch, &drops);
        }
    }
}

/// Removes the packets whose slot in `drops` holds a reason, counting each (order kept).
#[inline(never)]
pub(crate) fn remove_marked<B: PacketBuf>(
    cx: &mut ShardCtx,
    batch: &mut Batch<B>,
    drops: &[Option<DropReason>; BATCH_SIZE],
) {
    let mut i = 0;
    // `retain` visits every packet once, in order.
    batch.retain(|_| {
        let d = drops[i];
        i += 1;
        match d {
            Some(r) => {
                cx.counters.drop_packet(r);
                false
            }
            None => true,
        }
    });
}

#[inline(always)]
fn be32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// RFC 1071 sum of an IPv4 header; a correct header (checksum included) sums to 0xffff.
///
/// Summed as 32-bit native-endian words into a 64-bit accumulator and folded (RFC 1071 §2(B)
/// and (C): the one's-complement sum is independent of byte order and of word width), which is a
/// short dependency chain instead of ten 16-bit adds; all-ones is the same in either byte order.
#[inline(always)]
pub fn ipv4_header_valid(hdr: &[u8]) -> bool {
    let mut sum: u64 = 0;
    let mut words = hdr.chunks_exact(4);
    for w in &mut words {
        sum += u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 4];
        w[..rest.len()].copy_from_slice(rest);
        sum += u32::from_ne_bytes(w) as u64;
    }
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    let mut s = (sum & 0xffff) + (sum >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s == 0xffff
}

/// [`ipv4_header_valid`] for the 20-byte header without options (the fast path): summed as
/// 64-bit words, then folded with end-around carries (RFC 1071 §2(B), (C)). A
/// one's-complement sum is zero only when every word is, so the result matches the general
/// version exactly.
#[inline(always)]
pub fn ipv4_header20_valid(h: &[u8; 20]) -> bool {
    let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7, c0, c1, c2, c3] = *h;
    let a = u64::from_ne_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
    let b = u64::from_ne_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
    let c = u32::from_ne_bytes([c0, c1, c2, c3]) as u64;
    // Two 64-bit words and one 32-bit word with end-around carries (at most one each: a sum
    // with its carry added back cannot overflow again).
    let (s, k) = a.overflowing_add(b);
    let s = s + k as u64;
    let (s, k) = s.overflowing_add(c);
    let s = s + k as u64;
    // 64 → 32 bits, likewise.
    let (x, k) = (s as u32).overflowing_add((s >> 32) as u32);
    let x = x + k as u32;
    // 32 → 16 bits, likewise.
    let (y, c) = (x as u16).overflowing_add((x >> 16) as u16);
    y + c as u16 == 0xffff
}

/// Destination of the IP header, for "is it for us" tests.
#[derive(Clone, Copy)]
enum Dst {
    V4(u32),
    V6(u128),
}

/// IPv6 next-header values that are extension headers (RFC 8200 §4, RFC 7045), which the fast
/// path leaves to etherparse.
#[inline]
fn is_ipv6_ext(nh: u8) -> bool {
    matches!(nh, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140 | 253 | 254)
}

/// Resets the fields the classifier owns, keeping what the backend set (port, queue, RSS hash,
/// hardware flags) and what other stages own (`out_port`, `user`).
#[inline(always)]
fn reset(m: &mut PacketMeta) {
    m.l3_offset = 0;
    m.l4_offset = 0;
    m.l3 = L3Kind::None;
    m.l4_proto = 0;
    m.src_port = 0;
    m.dst_port = 0;
    m.spi = 0;
    m.vlan = 0;
    m.flow_class = FlowClass::Unclassified;
    m.dscp = 0;
    m.flags &= !(flags::FRAGMENT | flags::VLAN | flags::IP_OPTIONS);
}

impl ClassifyConfig {
    #[inline(always)]
    fn is_own(&self, dst: Dst) -> bool {
        match dst {
            Dst::V4(a) => self.own_ipv4.iter().any(|o| o.to_bits() == a),
            Dst::V6(a) => self.own_ipv6.iter().any(|o| o.to_bits() == a),
        }
    }

    /// Classifies `frame` (starting at the Ethernet header) into `meta`: the fast path when it
    /// applies, etherparse otherwise. On error `meta`'s classifier fields are unspecified.
    #[inline]
    pub fn classify(&self, frame: &[u8], meta: &mut PacketMeta) -> Result<(), DropReason> {
        match self.fast(frame, meta.flags) {
            Some(Ok(m)) => {
                store(meta, &m);
                Ok(())
            }
            Some(Err(r)) => Err(r),
            None => {
                reset(meta);
                self.classify_etherparse_inner(frame, meta)
            }
        }
    }

    /// The etherparse path for a packet in a buffer, on a copy of its metadata (stored back on
    /// success only, like the fast path).
    #[inline(never)]
    fn classify_slow<B: PacketBuf>(&self, p: &mut B) -> Result<(), DropReason> {
        let mut m = *p.meta();
        reset(&mut m);
        self.classify_etherparse_inner(p.data(), &mut m)?;
        store(p.meta_mut(), &m);
        Ok(())
    }

    /// The fast path: the classifier's fields of the metadata (the others default; `flags` keeps
    /// the bits of `flags_in` the classifier does not own), or `None` when the frame is not the
    /// simple case (the caller falls back to etherparse). Every header is read through a
    /// fixed-size array view at a constant offset (one copy of the IP code per L2 layout), so
    /// each header costs one length check and no per-byte bounds checks.
    #[inline(always)]
    fn fast(&self, f: &[u8], flags_in: u16) -> Option<Result<PacketMeta, DropReason>> {
        let mut m = PacketMeta {
            flags: flags_in & !(flags::FRAGMENT | flags::VLAN | flags::IP_OPTIONS),
            ..PacketMeta::default()
        };
        let eth = f.first_chunk::<14>()?;
        let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
        // Untagged IPv4 first: the common case takes one compare.
        if ethertype == ETHERTYPE_IPV4 {
            return self.fast_ipv4::<14>(f, m);
        }
        match ethertype {
            ETHERTYPE_IPV6 => self.fast_ipv6::<14>(f, m),
            // One 802.1Q tag is common enough to stay on the fast path; QinQ goes to etherparse.
            ETHERTYPE_VLAN => {
                let tagged = f.first_chunk::<18>()?;
                let tci = u16::from_be_bytes([tagged[14], tagged[15]]);
                m.vlan = tci & 0x0fff;
                m.flags |= flags::VLAN;
                match u16::from_be_bytes([tagged[16], tagged[17]]) {
                    ETHERTYPE_IPV4 => self.fast_ipv4::<18>(f, m),
                    ETHERTYPE_IPV6 => self.fast_ipv6::<18>(f, m),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// IPv4 without options, not fragmented, at frame offset `L3`.
    #[inline(always)]
    fn fast_ipv4<const L3: usize>(
        &self,
        f: &[u8],
        mut m: PacketMeta,
    ) -> Option<Result<PacketMeta, DropReason>> {
        let hdr: &[u8; 20] = f.get(L3..L3 + 20)?.try_into().ok()?;
        if hdr[0] != 0x45 {
            return None; // options, or not version 4: etherparse says which
        }
        let total = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
        if total < 20 || L3 + total > f.len() {
            return None;
        }
        if u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3fff != 0 {
            return None; // fragment
        }
        if !ipv4_header20_valid(hdr) {
            return Some(Err(DropReason::MalformedIpv4));
        }
        m.l3 = L3Kind::Ipv4;
        m.l3_offset = L3 as u16;
        m.dscp = hdr[1] >> 2;
        let dst = Dst::V4(u32::from_be_bytes([hdr[16], hdr[17], hdr[18], hdr[19]]));
        let l4 = f.get(L3 + 20..L3 + total)?;
        let r = self.transport(hdr[9], l4, (L3 + 20) as u16, dst, false, &mut m);
        Some(r.map(|()| m))
    }

    /// IPv6 without extension headers at frame offset `L3`.
    #[inline(always)]
    fn fast_ipv6<const L3: usize>(
        &self,
        f: &[u8],
        mut m: PacketMeta,
    ) -> Option<Result<PacketMeta, DropReason>> {
        let hdr: &[u8; 40] = f.get(L3..L3 + 40)?.try_into().ok()?;
        if hdr[0] >> 4 != 6 {
            return None;
        }
        let plen = u16::from_be_bytes([hdr[4], hdr[5]]) as usize;
        let nh = hdr[6];
        // Payload length 0 is a jumbogram / BIG TCP frame: etherparse decides.
        if is_ipv6_ext(nh) || plen == 0 || L3 + 40 + plen > f.len() {
            return None;
        }
        m.l3 = L3Kind::Ipv6;
        m.l3_offset = L3 as u16;
        m.dscp = (u16::from_be_bytes([hdr[0], hdr[1]]) >> 6) as u8 & 0x3f;
        let (_, d) = hdr.split_last_chunk::<16>()?;
        let dst = Dst::V6(u128::from_be_bytes(*d));
        let l4 = f.get(L3 + 40..L3 + 40 + plen)?;
        let r = self.transport(nh, l4, (L3 + 40) as u16, dst, false, &mut m);
        Some(r.map(|()| m))
    }

    /// Classifies `frame` with etherparse only (no fast path). The result is the same as
    /// [`ClassifyConfig::classify`]; exposed so tests and tools can compare the two paths.
    pub fn classify_etherparse(&self, frame: &[u8], meta: &mut PacketMeta) -> Result<(), DropReason> {
        reset(meta);
        self.classify_etherparse_inner(frame, meta)
    }

    #[inline(never)]
    fn classify_etherparse_inner(&self, f: &[u8], m: &mut PacketMeta) -> Result<(), DropReason> {
        let base = f.as_ptr() as usize;
        let off = |s: &[u8]| (s.as_ptr() as usize - base) as u16;
        let eth = Ethernet2Slice::from_slice_without_fcs(f).map_err(|_| DropReason::Truncated)?;
        let mut ethertype = eth.ether_type().0;
        let mut rest = eth.payload_slice();
        // 802.1Q / 802.1ad / legacy 0x9100 QinQ tags, outermost first (etherparse keeps at most
        // three link extensions; so do we).
        let mut tags = 0;
        while matches!(ethertype, ETHERTYPE_VLAN | ETHERTYPE_QINQ | 0x9100) {
            if tags == 3 {
                return Err(DropReason::MalformedL2);
            }
            let v = SingleVlanSlice::from_slice(rest).map_err(|_| DropReason::Truncated)?;
            if tags == 0 {
                m.vlan = v.vlan_identifier().value();
                m.flags |= flags::VLAN;
            }
            tags += 1;
            ethertype = v.ether_type().0;
            rest = v.payload_slice();
        }
        m.l3_offset = off(rest);
        match ethertype {
            ETHERTYPE_ARP => {
                ArpPacketSlice::from_slice(rest).map_err(|_| DropReason::Truncated)?;
                m.l3 = L3Kind::Arp;
                m.l4_offset = m.l3_offset;
                m.flow_class = FlowClass::Management;
                Ok(())
            }
            ETHERTYPE_IPV4 => {
                // A packet that is all there (total length within the frame) with a corrupt
                // header is `MalformedIpv4`, as the fast path says, before etherparse parses an
                // AH extension: one cut short must not make it `Truncated` (found by the fuzz
                // suite, tests/fuzz.rs).
                if let Some(h) = rest.get(..20)
                    && h[0] >> 4 == 4
                    && let Some(h) = rest.get(..usize::from(h[0] & 0x0f) * 4)
                    && h.len() >= 20
                    && (h.len()..=rest.len()).contains(&usize::from(u16::from_be_bytes([h[2], h[3]])))
                    && !ipv4_header_valid(h)
                {
                    return Err(DropReason::MalformedIpv4);
                }
                let ip = Ipv4Slice::from_slice(rest).map_err(|e| match e {
                    etherparse::err::ipv4::SliceError::Len(_) => DropReason::Truncated,
                    _ => DropReason::MalformedIpv4,
                })?;
                let h = ip.header();
                if !ipv4_header_valid(h.slice()) {
                    return Err(DropReason::MalformedIpv4);
                }
                m.l3 = L3Kind::Ipv4;
                m.dscp = h.dcp().value();
                if h.slice().len() > 20 || !ip.extensions().is_empty() {
                    m.flags |= flags::IP_OPTIONS;
                }
                let pl = ip.payload();
                let dst = Dst::V4(u32::from_be_bytes(h.destination()));
                self.transport(pl.ip_number.0, pl.payload, off(pl.payload), dst, pl.fragmented, m)
            }
            ETHERTYPE_IPV6 => {
                let ip = Ipv6Slice::from_slice(rest).map_err(|e| match e {
                    etherparse::err::ipv6::SliceError::Len(_) => DropReason::Truncated,
                    _ => DropReason::MalformedIpv6,
                })?;
                let h = ip.header();
                m.l3 = L3Kind::Ipv6;
                m.dscp = h.traffic_class() >> 2;
                if !ip.extensions().is_empty() {
                    m.flags |= flags::IP_OPTIONS;
                }
                let pl = ip.payload();
                let dst = Dst::V6(u128::from_be_bytes(h.destination()));
                self.transport(pl.ip_number.0, pl.payload, off(pl.payload), dst, pl.fragmented, m)
            }
            _ => {
                m.l3 = L3Kind::Other;
                m.flow_class = FlowClass::Other;
                Ok(())
            }
        }
    }

    /// Transport layer, shared by both paths. `l4` is exactly the IP payload (no Ethernet
    /// padding), starting at frame offset `l4_off`.
    #[inline(always)]
    fn transport(
        &self,
        proto: u8,
        l4: &[u8],
        l4_off: u16,
        dst: Dst,
        fragment: bool,
        m: &mut PacketMeta,
    ) -> Result<(), DropReason> {
        m.l4_offset = l4_off;
        m.l4_proto = proto;
        let own = self.is_own(dst);
        if fragment {
            // Only the 2-tuple is meaningful; the control plane reassembles what is ours.
            m.flags |= flags::FRAGMENT;
            m.flow_class = if proto == ip_proto::ESP {
                FlowClass::Esp
            } else if own {
                FlowClass::Management
            } else {
                FlowClass::Data
            };
            return Ok(());
        }
        m.flow_class = match proto {
            ip_proto::TCP => {
                let Some(h) = l4.first_chunk::<13>() else {
                    return Err(DropReason::MalformedL4);
                };
                let (sp, dp) = (u16::from_be_bytes([h[0], h[1]]), u16::from_be_bytes([h[2], h[3]]));
                let hlen = (h[12] >> 4) as usize * 4;
                if hlen < 20 || hlen > l4.len() {
                    return Err(DropReason::MalformedL4);
                }
                m.src_port = sp;
                m.dst_port = dp;
                if !own {
                    FlowClass::Data
                } else if dp == self.bgp_port || sp == self.bgp_port {
                    FlowClass::Control
                } else {
                    FlowClass::Management
                }
            }
            ip_proto::UDP => {
                let Some(h) = l4.first_chunk::<6>() else {
                    return Err(DropReason::MalformedL4);
                };
                let (sp, dp) = (u16::from_be_bytes([h[0], h[1]]), u16::from_be_bytes([h[2], h[3]]));
                let ulen = u16::from_be_bytes([h[4], h[5]]) as usize;
                if ulen < 8 || ulen > l4.len() {
                    return Err(DropReason::MalformedL4);
                }
                m.src_port = sp;
                m.dst_port = dp;
                let payload = &l4[8..ulen];
                if dp == self.nat_t_port || sp == self.nat_t_port {
                    // RFC 3948 §2: a zero first word is the non-ESP marker (IKE), a single 0xff
                    // byte a NAT keepalive, anything else an ESP header (SPI, sequence).
                    match be32(payload, 0) {
                        Some(0) => {
                            if own {
                                FlowClass::Control
                            } else {
                                FlowClass::Data
                            }
                        }
                        Some(spi) if payload.len() >= 8 => {
                            m.spi = spi;
                            FlowClass::EspInUdp
                        }
                        _ if payload == [0xff] => {
                            if own {
                                FlowClass::Control
                            } else {
                                FlowClass::Data
                            }
                        }
                        _ if own => return Err(DropReason::EspMalformed),
                        _ => FlowClass::Data,
                    }
                } else if !own {
                    FlowClass::Data
                } else if dp == self.ike_port {
                    FlowClass::Control
                } else {
                    FlowClass::Management
                }
            }
            ip_proto::ICMP | ip_proto::ICMPV6 => {
                // Every ICMP (RFC 792) and ICMPv6 (RFC 4443) message has an 8-byte header.
                let Some(&ty) = l4.first() else { return Err(DropReason::MalformedL4) };
                if l4.len() < 8 {
                    return Err(DropReason::MalformedL4);
                }
                // RFC 4861 §4: Router/Neighbor Solicitation/Advertisement and Redirect go to
                // the control plane whatever the destination (solicited-node multicast).
                if own || (proto == ip_proto::ICMPV6 && (133..=137).contains(&ty)) {
                    FlowClass::Management
                } else {
                    FlowClass::Data
                }
            }
            ip_proto::ESP => {
                // RFC 4303 §2.1: SPI 0 is reserved and never sent.
                match be32(l4, 0) {
                    Some(spi) if spi != 0 && l4.len() >= 8 => {
                        m.spi = spi;
                        FlowClass::Esp
                    }
                    _ => return Err(DropReason::EspMalformed),
                }
            }
            _ => {
                if own {
                    FlowClass::Management
                } else {
                    FlowClass::Data
                }
            }
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wirespeed_core::backend::null::udp4_frame;

    fn cfg() -> ClassifyConfig {
        ClassifyConfig {
            own_ipv4: vec![Ipv4Addr::new(10, 0, 1, 1)],
            own_ipv6: vec!["2001:db8::1".parse().unwrap()],
            ..ClassifyConfig::default()
        }
    }

    #[test]
    fn template_udp_to_self_is_management_and_fast_equals_slow() {
        let f = udp4_frame(64);
        let c = cfg();
        let mut a = PacketMeta::default();
        let mut b = PacketMeta::default();
        c.classify(&f, &mut a).unwrap();
        c.classify_etherparse(&f, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.l3, a.l3_offset, a.l4_offset, a.l4_proto), (L3Kind::Ipv4, 14, 34, 17));
        assert_eq!((a.src_port, a.dst_port), (1024, 2048));
        assert_eq!(a.flow_class, FlowClass::Management);
        let mut d = PacketMeta::default();
        ClassifyConfig::default().classify(&f, &mut d).unwrap();
        assert_eq!(d.flow_class, FlowClass::Data);
    }

    #[test]
    fn bad_ipv4_checksum_is_dropped() {
        let mut f = udp4_frame(64);
        f[24] ^= 1;
        let mut m = PacketMeta::default();
        assert_eq!(cfg().classify(&f, &mut m), Err(DropReason::MalformedIpv4));
        assert_eq!(cfg().classify_etherparse(&f, &mut m), Err(DropReason::MalformedIpv4));
    }

    /// The word-wide sum agrees with the 16-bit RFC 1071 reference on every length and on
    /// headers with and without a valid checksum.
    #[test]
    fn header_sum_matches_rfc1071_reference() {
        let reference = |h: &[u8]| {
            let mut sum: u32 = 0;
            for c in h.chunks(2) {
                sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            sum == 0xffff
        };
        let mut x = 0x1234_5678u32;
        for len in 0..64 {
            for _ in 0..50 {
                let mut h: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                assert_eq!(ipv4_header_valid(&h), reference(&h), "{h:02x?}");
                if len >= 12 {
                    h[10] = 0;
                    h[11] = 0;
                    let c = wirespeed_core::backend::null::ipv4_header_checksum(&h);
                    h[10..12].copy_from_slice(&c.to_be_bytes());
                    assert!(ipv4_header_valid(&h) && reference(&h), "{h:02x?}");
                }
            }
        }
    }

    /// The fixed-size 20-byte sum agrees with the general one (and so with the RFC 1071
    /// reference above) on random headers, correct checksums, and the all-zero / all-ones edges.
    #[test]
    fn header20_sum_matches_general_sum() {
        let mut x = 0x9e37_79b9u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut cases: Vec<[u8; 20]> = vec![[0; 20], [0xff; 20]];
        for _ in 0..20_000 {
            let mut h = [0u8; 20];
            h.iter_mut().for_each(|b| *b = next() as u8);
            cases.push(h);
            h[10] = 0;
            h[11] = 0;
            let c = wirespeed_core::backend::null::ipv4_header_checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            cases.push(h);
        }
        for h in &cases {
            assert_eq!(ipv4_header20_valid(h), ipv4_header_valid(h), "{h:02x?}");
        }
    }

    #[test]
    fn truncated_is_dropped_not_panicking() {
        let f = udp4_frame(64);
        for n in 0..f.len() {
            let mut m = PacketMeta::default();
            let r = cfg().classify(&f[..n], &mut m);
            assert!(r.is_err(), "prefix of {n} bytes accepted: {m:?}");
        }
    }
}
