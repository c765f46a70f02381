//! Bounded IPv4 and IPv6 reassembly of packets addressed to the appliance (RFC 791 §3.2, RFC
//! 815, RFC 8200 §4.5; RFC 4301 §5.2 and RFC 4303 §3.4.1: "if required, IP reassembly is performed prior to IPsec
//! processing"): a peer that fragments an ESP packet (or a UDP-encapsulated one) on a path with
//! a smaller MTU sends outer fragments the ESP stage cannot decrypt one by one.
//!
//! [`Reassemble`] runs after [`crate::Classify`] and before the punt and ESP stages. It takes
//! the IPv4 and IPv6 fragments addressed to one of the appliance's own addresses whose protocol
//! is ESP (50) or UDP (17; ESP-in-UDP and IKE share port 4500, and only the first fragment
//! names the port); every other packet, transit fragments included, passes unchanged (a router
//! forwards fragments as fragments). An IPv6 Fragment header may follow Hop-by-Hop, Routing and
//! Destination Options headers (at most 80 bytes of them); an atomic fragment (offset 0, no
//! M flag, RFC 6946) passes as it is.
//!
//! Bounded by construction:
//! - a fixed number of contexts per shard ([`ReasmConfig::contexts`]), each keyed by (family,
//!   source, destination, protocol, identification); a fragment that needs a new context when all are
//!   busy is dropped (`reasm_no_context`);
//! - a context holds its fragments in one packet buffer: the buffer of the first fragment that
//!   arrived, whose payload is moved to its place, later fragments' payloads copied in. No
//!   other memory, no heap allocation per packet; a datagram larger than that buffer holds is
//!   dropped (`reasm_too_big`);
//! - at most [`MAX_FRAGMENTS`] fragments per datagram (`reasm_malformed` beyond);
//! - a deadline set when the context is made, never extended ([`ReasmConfig::timeout`], on the
//!   shard clock [`ShardCtx::now`]); an incomplete datagram is then dropped (`reasm_timeout`,
//!   counting every fragment held).
//!
//! A fragment overlapping another of its datagram discards the whole datagram
//! (`reasm_overlap`, RFC 5722's rule, which closes the overlapping-fragment attacks of RFC
//! 1858 / RFC 3128); an exact duplicate drops only the copy (`reasm_duplicate`). A non-final
//! fragment whose payload is not a multiple of 8, an empty fragment, a fragment past the end
//! the final one set or a second, different end drop the datagram (`reasm_malformed`).
//!
//! The reassembled packet carries the first fragment's link and IP headers. IPv4: its options,
//! a total length covering the whole payload, offset and More Fragments cleared, a new header
//! checksum. IPv6: the extension headers before the Fragment header, which is removed (its Next
//! Header moves to the field that named it), a Payload Length covering them and the payload.
//! Either way it is classified again ([`Classify::classify_packet`]) so the later stages see it
//! like any unfragmented packet (ESP with its SPI, ESP-in-UDP, IKE).

use std::time::{Duration, Instant};

use wirespeed_core::meta::flags;
use wirespeed_core::wire::checksum::checksum;
use wirespeed_core::{Batch, DropReason, L3Kind, PacketBuf, ShardCtx, Stage};

use crate::classify::{Classify, ClassifyConfig};

/// Most fragments one datagram may arrive in (a 1500-byte path needs 2 for a 2 KiB buffer;
/// 8-byte fragments would need 250).
pub const MAX_FRAGMENTS: usize = 64;

/// IP protocol numbers reassembled.
const ESP: u8 = 50;
const UDP: u8 = 17;

/// Longest IPv4 header.
const MAX_IHL: usize = 60;

/// Longest IP header kept: IPv4 with options, or IPv6 with extension headers before the
/// Fragment header (up to 80 bytes of them).
const MAX_IP_HDR: usize = 120;

/// IPv6 extension headers that may come before a Fragment header (RFC 8200 §4.1).
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DEST_OPTS: u8 = 60;

/// Most bytes of link headers before IP (Ethernet, QinQ and a few more tags).
const MAX_L2: usize = 64;

/// Sizes of the reassembly table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReasmConfig {
    /// Datagrams being reassembled at once per shard (default 32, [`ReasmConfig::CONTEXTS`]).
    pub contexts: usize,
    /// How long a datagram may take to arrive whole, from its first fragment (default 2 s,
    /// [`ReasmConfig::TIMEOUT`]).
    pub timeout: Duration,
}

impl ReasmConfig {
    /// Allowed numbers of contexts.
    pub const CONTEXTS: std::ops::RangeInclusive<usize> = 1..=1024;
    /// Allowed timeouts.
    pub const TIMEOUT: std::ops::RangeInclusive<Duration> =
        Duration::from_millis(100)..=Duration::from_secs(30);

    /// Checks the sizes against [`ReasmConfig::CONTEXTS`] and [`ReasmConfig::TIMEOUT`].
    pub fn validate(&self) -> Result<(), ReasmConfigError> {
        if !Self::CONTEXTS.contains(&self.contexts) {
            return Err(ReasmConfigError::Contexts(self.contexts));
        }
        if !Self::TIMEOUT.contains(&self.timeout) {
            return Err(ReasmConfigError::Timeout(self.timeout));
        }
        Ok(())
    }
}

impl Default for ReasmConfig {
    fn default() -> Self {
        Self { contexts: 32, timeout: Duration::from_secs(2) }
    }
}

/// A [`ReasmConfig`] out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReasmConfigError {
    /// Contexts outside [`ReasmConfig::CONTEXTS`].
    #[error("reassembly contexts {0} outside 1..=1024")]
    Contexts(usize),
    /// Timeout outside [`ReasmConfig::TIMEOUT`].
    #[error("reassembly timeout {0:?} outside 100 ms..=30 s")]
    Timeout(Duration),
}

/// What a [`Reassemble`] stage did (its drops are in the shard's drop counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasmStats {
    /// Fragments taken into a context.
    pub fragments: u64,
    /// Datagrams reassembled and passed on.
    pub reassembled: u64,
    /// Contexts in use now.
    pub active: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    /// IPv4 addresses in the first four bytes.
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    id: u32,
    v6: bool,
}

/// One datagram being reassembled.
struct Context<B> {
    key: Key,
    /// Holds the payload: payload byte `o` at `buf.data()[reserve + o]`.
    buf: B,
    reserve: usize,
    /// Largest `reserve + end` the buffer can hold (its length plus tailroom when taken).
    capacity: usize,
    /// The first fragment's link and IP headers (`hdr_len == 0`: not arrived yet), and the
    /// offset of the IP header in them.
    hdr: [u8; MAX_L2 + MAX_IP_HDR],
    hdr_len: usize,
    l3: usize,
    /// IPv6: where (in `hdr`) the Next Header field that named the Fragment header is.
    nh_pos: usize,
    /// Payload ranges held, `[start, end)`, pairwise disjoint.
    ranges: [(u32, u32); MAX_FRAGMENTS],
    n: usize,
    /// Payload bytes held (the sum of the ranges).
    held: usize,
    /// The datagram's payload length, once the final fragment arrived.
    end: Option<usize>,
    deadline: Instant,
}

/// The fields of one IPv4 or IPv6 fragment, checked against its bytes.
struct Frag {
    key: Key,
    l3: usize,
    /// Headers kept in front of the reassembled payload: link and IPv4 header, or link, IPv6
    /// header and the extension headers before the Fragment header.
    keep: usize,
    /// Where this fragment's payload starts (`keep`, or after the Fragment header).
    data: usize,
    /// IPv6: the Next Header field naming the Fragment header.
    nh_pos: usize,
    /// Largest payload end the length field can express.
    limit: usize,
    off: usize,
    len: usize,
    more: bool,
}

/// Why a fragment did not join a context.
enum Outcome<B> {
    /// Held (or, for a duplicate, dropped alone and counted).
    Absorbed,
    /// The datagram is whole: this buffer replaces the fragment in the batch.
    Done(B),
}

/// The reassembly stage: see the [module documentation](self).
pub struct Reassemble<B> {
    classify: Classify,
    cfg: ReasmConfig,
    slots: Vec<Option<Context<B>>>,
    /// No context expires before this (the earliest deadline, or earlier).
    next_deadline: Option<Instant>,
    stats: ReasmStats,
}

impl<B: PacketBuf> Reassemble<B> {
    /// A stage that reassembles fragments to the addresses of `classify` (which it also uses to
    /// classify the reassembled packets), with `cfg`'s table sizes. All memory is taken here.
    pub fn new(classify: ClassifyConfig, cfg: ReasmConfig) -> Result<Self, ReasmConfigError> {
        cfg.validate()?;
        Ok(Self {
            classify: Classify::new(classify),
            cfg,
            slots: (0..cfg.contexts).map(|_| None).collect(),
            next_deadline: None,
            stats: ReasmStats::default(),
        })
    }

    /// A stage that reassembles nothing: every packet passes unchanged (an appliance whose
    /// configuration turns reassembly off keeps the same pipeline type).
    pub fn disabled() -> Self {
        Self {
            classify: Classify::default(),
            cfg: ReasmConfig::default(),
            slots: Vec::new(),
            next_deadline: None,
            stats: ReasmStats::default(),
        }
    }

    /// True unless made by [`Reassemble::disabled`].
    pub fn enabled(&self) -> bool {
        !self.slots.is_empty()
    }

    /// What the stage did so far.
    pub fn stats(&self) -> ReasmStats {
        self.stats
    }

    /// The table sizes.
    pub fn config(&self) -> ReasmConfig {
        self.cfg
    }

    /// The fragment `p` is one to reassemble: IPv4 or IPv6, a fragment, ESP or UDP, to an own address.
    fn parse(&self, p: &B) -> Option<Frag> {
        let m = p.meta();
        if !m.has(flags::FRAGMENT) || !matches!(m.l4_proto, ESP | UDP) {
            return None;
        }
        let l3 = usize::from(m.l3_offset);
        if l3 > MAX_L2 {
            return None;
        }
        match m.l3 {
            L3Kind::Ipv4 => self.parse_v4(p.data(), l3),
            L3Kind::Ipv6 => self.parse_v6(p.data(), l3),
            _ => None,
        }
    }

    fn parse_v4(&self, d: &[u8], l3: usize) -> Option<Frag> {
        let h = d.get(l3..l3 + 20)?;
        let dst = [h[16], h[17], h[18], h[19]];
        if !self.classify.config().own_ipv4.iter().any(|a| a.octets() == dst) {
            return None;
        }
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        // The classifier checked these; checked again so no index below can fail.
        if h[0] >> 4 != 4 || ihl < 20 || total < ihl || l3 + total > d.len() {
            return None;
        }
        let fo = u16::from_be_bytes([h[6], h[7]]);
        let v4 = |a: &[u8]| {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a[..4]);
            o
        };
        Some(Frag {
            key: Key {
                src: v4(&h[12..16]),
                dst: v4(&h[16..20]),
                proto: h[9],
                id: u32::from(u16::from_be_bytes([h[4], h[5]])),
                v6: false,
            },
            l3,
            keep: l3 + ihl,
            data: l3 + ihl,
            nh_pos: 0,
            limit: usize::from(u16::MAX) - ihl,
            off: usize::from(fo & 0x1fff) * 8,
            len: total - ihl,
            more: fo & 0x2000 != 0,
        })
    }

    /// IPv6 (RFC 8200 §4.5): the Fragment header after at most Hop-by-Hop, Routing and
    /// Destination Options headers (up to 80 bytes of them); anything else is not ours.
    fn parse_v6(&self, d: &[u8], l3: usize) -> Option<Frag> {
        let h = d.get(l3..l3 + 40)?;
        let dst: [u8; 16] = h[24..40].try_into().ok()?;
        if h[0] >> 4 != 6 || !self.classify.config().own_ipv6.iter().any(|a| a.octets() == dst) {
            return None;
        }
        let end = l3 + 40 + usize::from(u16::from_be_bytes([h[4], h[5]]));
        if end > d.len() {
            return None;
        }
        let (mut nh, mut nh_pos, mut at) = (h[6], l3 + 6, l3 + 40);
        while nh != FRAGMENT {
            if !matches!(nh, HOP_BY_HOP | ROUTING | DEST_OPTS) || at + 8 > end {
                return None;
            }
            let len = (usize::from(d[at + 1]) + 1) * 8;
            (nh, nh_pos, at) = (d[at], at, at + len);
            if at - l3 > MAX_IP_HDR {
                return None;
            }
        }
        let fh = d.get(at..at + 8).filter(|_| at + 8 <= end)?;
        let fo = u16::from_be_bytes([fh[2], fh[3]]);
        let (off, more) = (usize::from(fo & 0xfff8), fo & 1 != 0);
        // An atomic fragment (RFC 6946) is a whole packet: not ours to hold.
        if off == 0 && !more {
            return None;
        }
        Some(Frag {
            key: Key {
                src: h[8..24].try_into().ok()?,
                dst,
                proto: fh[0],
                id: u32::from_be_bytes([fh[4], fh[5], fh[6], fh[7]]),
                v6: true,
            },
            l3,
            keep: at,
            data: at + 8,
            nh_pos,
            // The Payload Length covers the extension headers kept.
            limit: usize::from(u16::MAX) - (at - l3 - 40),
            off,
            len: end - (at + 8),
            more,
        })
    }

    /// True when a context has reached its deadline at `now`: call [`Reassemble::expire`]
    /// (which [`Stage::process`] also does) so its buffer goes back without waiting for traffic.
    pub fn needs_service(&self, now: Instant) -> bool {
        self.stats.active > 0 && self.next_deadline.is_some_and(|d| d <= now)
    }

    /// Drops every context past its deadline at `cx.now`, counting its fragments
    /// (`reasm_timeout`).
    pub fn expire(&mut self, cx: &mut ShardCtx) {
        if !self.needs_service(cx.now) {
            return;
        }
        let mut next = None::<Instant>;
        for slot in &mut self.slots {
            match slot.as_ref().map(|c| c.deadline) {
                Some(d) if d <= cx.now => {
                    if let Some(c) = slot.take() {
                        cx.counters.drop_packets(DropReason::ReasmTimeout, c.n as u64);
                        self.stats.active -= 1;
                    }
                }
                Some(d) => next = Some(next.map_or(d, |n| n.min(d))),
                None => {}
            }
        }
        self.next_deadline = next;
    }

    /// Drops every context (the input ended or the shard stops), counting its fragments
    /// (`shutdown`).
    pub fn drop_held(&mut self, cx: &mut ShardCtx) {
        for slot in &mut self.slots {
            if let Some(c) = slot.take() {
                cx.counters.drop_packets(DropReason::Shutdown, c.n as u64);
            }
        }
        self.stats.active = 0;
        self.next_deadline = None;
    }

    /// Discards the datagram in `i`, counting its fragments and the one that broke it.
    fn discard(&mut self, cx: &mut ShardCtx, i: usize, reason: DropReason) {
        if let Some(c) = self.slots[i].take() {
            self.stats.active -= 1;
            cx.counters.drop_packets(reason, c.n as u64 + 1);
        }
    }

    /// Takes fragment `p`: held, completed, or dropped (counted; `Err` carries no packet).
    fn take(&mut self, cx: &mut ShardCtx, mut p: B, f: &Frag) -> Result<Outcome<B>, ()> {
        let drop1 = |cx: &mut ShardCtx, r| {
            cx.counters.drop_packet(r);
            Err(())
        };
        if f.len == 0 || (f.more && !f.len.is_multiple_of(8)) {
            return drop1(cx, DropReason::ReasmMalformed);
        }
        // The reassembled total length must fit 16 bits.
        if f.off + f.len > f.limit {
            return drop1(cx, DropReason::ReasmTooBig);
        }
        let (start, end) = (f.off as u32, (f.off + f.len) as u32);
        let Some(i) = self.slots.iter().position(|s| s.as_ref().is_some_and(|c| c.key == f.key)) else {
            return self.open(cx, p, f);
        };
        let Some(c) = self.slots[i].as_mut() else { return drop1(cx, DropReason::ReasmMalformed) };
        if c.ranges[..c.n].contains(&(start, end)) {
            return drop1(cx, DropReason::ReasmDuplicate);
        }
        if c.ranges[..c.n].iter().any(|&(s, e)| s < end && start < e) {
            self.discard(cx, i, DropReason::ReasmOverlap);
            return Err(());
        }
        let inconsistent = match c.end {
            Some(e) => f.off + f.len > e || (!f.more && f.off + f.len != e),
            None => !f.more && c.ranges[..c.n].iter().any(|&(_, e)| e > end),
        };
        let header_misfit = f.off == 0 && f.keep > c.reserve;
        if inconsistent || header_misfit || c.n == MAX_FRAGMENTS {
            self.discard(cx, i, DropReason::ReasmMalformed);
            return Err(());
        }
        if c.reserve + f.off + f.len > c.capacity {
            self.discard(cx, i, DropReason::ReasmTooBig);
            return Err(());
        }
        let at = c.reserve + f.off;
        if c.buf.len() < at + f.len && c.buf.set_len(at + f.len).is_err() {
            self.discard(cx, i, DropReason::ReasmTooBig);
            return Err(());
        }
        let src = f.data;
        c.buf.data_mut()[at..at + f.len].copy_from_slice(&p.data()[src..src + f.len]);
        if f.off == 0 {
            c.hdr[..f.keep].copy_from_slice(&p.data()[..f.keep]);
            (c.hdr_len, c.l3, c.nh_pos) = (f.keep, f.l3, f.nh_pos);
        }
        if !f.more {
            c.end = Some(f.off + f.len);
        }
        c.ranges[c.n] = (start, end);
        c.n += 1;
        c.held += f.len;
        self.stats.fragments += 1;
        // Disjoint ranges inside [0, end) whose lengths sum to `end` cover it.
        if c.hdr_len == 0 || c.end != Some(c.held) {
            return Ok(Outcome::Absorbed);
        }
        // `p` goes back to its pool; the context's buffer becomes the packet.
        let Ok(whole) = self.finish_slot(i) else { return drop1(cx, DropReason::ReasmMalformed) };
        drop(std::mem::replace(&mut p, whole));
        match self.classify.classify_packet(&mut p) {
            Ok(()) => {
                self.stats.reassembled += 1;
                Ok(Outcome::Done(p))
            }
            Err(r) => drop1(cx, r),
        }
    }

    /// Makes a context for the first fragment of a datagram to arrive, keeping its buffer.
    fn open(&mut self, cx: &mut ShardCtx, mut p: B, f: &Frag) -> Result<Outcome<B>, ()> {
        let Some(i) = self.slots.iter().position(Option::is_none) else {
            cx.counters.drop_packet(DropReason::ReasmNoContext);
            return Err(());
        };
        // IPv4: room for the longest header; IPv6: for this fragment's unfragmentable part,
        // which every fragment repeats (RFC 8200 §4.5).
        let reserve = if f.key.v6 { f.keep } else { f.l3 + MAX_IHL };
        let capacity = p.len() + p.tailroom();
        let (src, at) = (f.data, reserve + f.off);
        // Long enough for the payload where it is and where it goes.
        if at + f.len > capacity || p.set_len((at + f.len).max(src + f.len)).is_err() {
            cx.counters.drop_packet(DropReason::ReasmTooBig);
            return Err(());
        }
        let mut hdr = [0u8; MAX_L2 + MAX_IP_HDR];
        let hdr_len = if f.off == 0 {
            hdr[..f.keep].copy_from_slice(&p.data()[..f.keep]);
            f.keep
        } else {
            0
        };
        // Rightwards, or (IPv6 first fragment) 8 bytes left over the Fragment header: the
        // headers before `keep` are not touched.
        p.data_mut().copy_within(src..src + f.len, at);
        let deadline = cx.now + self.cfg.timeout;
        let mut ranges = [(0, 0); MAX_FRAGMENTS];
        ranges[0] = (f.off as u32, (f.off + f.len) as u32);
        self.slots[i] = Some(Context {
            key: f.key,
            buf: p,
            reserve,
            capacity,
            hdr,
            hdr_len,
            l3: f.l3,
            nh_pos: f.nh_pos,
            ranges,
            n: 1,
            held: f.len,
            end: (!f.more).then_some(f.off + f.len),
            deadline,
        });
        self.next_deadline = Some(self.next_deadline.map_or(deadline, |n| n.min(deadline)));
        self.stats.active += 1;
        self.stats.fragments += 1;
        Ok(Outcome::Absorbed)
    }

    /// Turns the whole datagram in slot `i` into a packet: headers before the payload, then
    /// IPv4 total length, offset, flags and checksum, or IPv6 Next Header and Payload Length.
    fn finish_slot(&mut self, i: usize) -> Result<B, ()> {
        let c = self.slots[i].take().ok_or(())?;
        self.stats.active -= 1;
        let Context { mut buf, key, reserve, hdr, hdr_len, l3, nh_pos, end, .. } = c;
        let end = end.ok_or(())?;
        let start = reserve - hdr_len;
        buf.data_mut()[start..reserve].copy_from_slice(&hdr[..hdr_len]);
        buf.trim_front(start).map_err(|_| ())?;
        buf.set_len(hdr_len + end).map_err(|_| ())?;
        let d = buf.data_mut();
        // Checked when the fragments were taken: the lengths fit 16 bits.
        if key.v6 {
            // The Fragment header is gone: its Next Header moves to the field that named it,
            // and the Payload Length covers the extension headers kept and the payload.
            d[nh_pos] = key.proto;
            let len = (hdr_len - l3 - 40 + end) as u16;
            d[l3 + 4..l3 + 6].copy_from_slice(&len.to_be_bytes());
        } else {
            let ip = &mut d[l3..hdr_len];
            let total = (hdr_len - l3 + end) as u16;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            // Keep DF and the reserved bit; clear More Fragments and the offset.
            ip[6] &= 0xc0;
            ip[7] = 0;
            ip[10..12].fill(0);
            let sum = checksum(ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        let m = buf.meta_mut();
        m.flags &= !flags::FRAGMENT;
        Ok(buf)
    }
}

impl<B: PacketBuf> Stage<B> for Reassemble<B> {
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        self.expire(cx);
        // Fast path: no fragment in the batch (or reassembly off).
        if self.slots.is_empty() || !batch.iter().any(|p| p.meta().has(flags::FRAGMENT)) {
            return;
        }
        let mut input: Batch<B> = Batch::new();
        batch.move_into(&mut input);
        for p in input.drain(..) {
            let Some(f) = self.parse(&p) else {
                // Cannot fail: `batch` was emptied into `input`, which has the same capacity.
                let _ = batch.push(p);
                continue;
            };
            if let Ok(Outcome::Done(whole)) = self.take(cx, p, &f) {
                let _ = batch.push(whole);
            }
        }
    }

    /// Nothing more will come: the incomplete datagrams are dropped (`shutdown`).
    fn finish(&mut self, cx: &mut ShardCtx) {
        self.drop_held(cx);
    }

    // `held` stays 0: a fragment held can only leave with the rest of its datagram, which
    // cannot come once the input has ended, so the end of input is not delayed for it (`finish`
    // drops it, counted).

    /// A datagram's deadline passed: [`Reassemble::expire`] on an empty poll.
    fn needs_service(&mut self, now: Instant) -> bool {
        Reassemble::needs_service(self, now)
    }

    /// Drops the expired datagrams, then processes what `batch` holds.
    fn service(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        self.expire(cx);
        if !batch.is_empty() {
            self.process(cx, batch);
        }
    }
}
