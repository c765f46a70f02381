//! The ESP stages: [`EspEncrypt`] (outbound: SPD lookup → SA → encapsulate) and [`EspDecrypt`]
//! (inbound: ESP or UDP-4500 ESP → SA by SPI → decapsulate).
//!
//! Each stage owns one shard's [`ShardSas`]: it adopts newly published SA sets at the start of
//! a batch and then works on plain references and its own per-SA state, so the per-packet path
//! has no atomic operation, lock or allocation. SA lifecycle events (soft/hard lifetime,
//! sequence overflow) go to the control side over a bounded queue, once per SA and shard.

use arrayvec::ArrayVec;
use wirespeed_core::epoch::Subscriber;
use wirespeed_core::queue::SharedQueue;
use wirespeed_core::{BATCH_SIZE, Batch, DropReason, L3Kind, PacketBuf, ShardCtx, ShardId, Stage, Verdict};

use super::aead::AeadJob;
use super::packet::{
    CryptoPlan, DecapPlan, Decapsulated, EncapPlan, InboundEsp, decapsulate_one, finish_decap, finish_encap,
    locate_esp_inline, prepare_decap, prepare_encap,
};
use super::sa::{NAT_T_PORT, SaEvent, SaEventKind, SecurityAssociation};
use super::sad::{OutboundDecision, SaSet, ShardSas};
use super::wire::{IpHeader, ethernet_l3_offset};
use crate::icmp::{IcmpCounters, IcmpError, IcmpErrors};

/// Where the IP header starts in packets that the classifier has not annotated
/// (`meta.l3 == L3Kind::None`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Framing {
    /// Ethernet II frames, with up to two VLAN tags.
    #[default]
    Ethernet,
    /// Bare IP packets (tun devices, tests).
    Ip,
}

/// The queue SA events are sent over: a [`SharedQueue`] (clone it for the control side).
pub type EventQueue = SharedQueue<SaEvent>;

/// Creates an event queue holding up to `capacity` events (at least one).
pub fn event_queue(capacity: usize) -> EventQueue {
    SharedQueue::new(capacity)
}

/// What an ESP stage did, beyond the drops it counts in the shard counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EspStats {
    /// Packets encapsulated.
    pub encrypted: u64,
    /// Packets decapsulated (dummy packets excluded).
    pub decrypted: u64,
    /// Packets a policy let through in clear (or non-ESP packets passed by the decrypt stage).
    pub passed: u64,
    /// Authentic dummy (TFC) packets discarded; counted as `PolicyDiscard` drops as well.
    pub dummy: u64,
    /// SA events delivered to the control side.
    pub events_sent: u64,
    /// SA events lost (queue full or no queue configured).
    pub events_lost: u64,
    /// TCP SYN segments whose MSS option was clamped ([`crate::esp::SaConfig::mss_clamp`]).
    pub mss_clamped: u64,
}

#[inline]
fn l3_offset<B: PacketBuf>(p: &B, framing: Framing) -> Option<usize> {
    let m = p.meta();
    match m.l3 {
        L3Kind::Ipv4 | L3Kind::Ipv6 => Some(m.l3_offset as usize),
        L3Kind::Arp | L3Kind::Other => None,
        L3Kind::None => match framing {
            Framing::Ethernet => ethernet_l3_offset(p.data()),
            Framing::Ip => Some(0),
        },
    }
}

#[inline]
fn raise(events: &Option<EventQueue>, stats: &mut EspStats, ev: SaEvent) {
    match events {
        Some(q) if q.push(ev).is_ok() => stats.events_sent += 1,
        _ => stats.events_lost += 1,
    }
}

/// What both ESP stages hold: the shard's SAs, the framing of unclassified packets, where SA
/// events go, and the counters.
#[derive(Debug)]
struct EspShard {
    sas: ShardSas,
    framing: Framing,
    events: Option<EventQueue>,
    stats: EspStats,
}

impl EspShard {
    fn new(sub: Subscriber<SaSet>) -> Self {
        Self { sas: ShardSas::new(sub), framing: Framing::Ethernet, events: None, stats: EspStats::default() }
    }
}

/// The builder and accessor methods both ESP stages share (over their `shard: EspShard`).
macro_rules! esp_stage_common {
    ($stage:ident) => {
        impl $stage {
            /// Sets the framing of unclassified packets.
            pub fn with_framing(mut self, framing: Framing) -> Self {
                self.shard.framing = framing;
                self
            }

            /// Sends SA events to `queue`.
            pub fn with_events(mut self, queue: EventQueue) -> Self {
                self.shard.events = Some(queue);
                self
            }

            /// Counters.
            pub fn stats(&self) -> &EspStats {
                &self.shard.stats
            }

            /// The shard's SAs and their state.
            pub fn sas(&self) -> &ShardSas {
                &self.shard.sas
            }

            /// The shard's SAs and their state, writable (e.g. to resume sequence numbers).
            pub fn sas_mut(&mut self) -> &mut ShardSas {
                &mut self.shard.sas
            }
        }
    };
}

/// Outbound IPsec: for each IP packet, the SPD decides bypass, discard or protect; protected
/// packets are encapsulated with this shard's SA of the policy.
#[derive(Debug)]
pub struct EspEncrypt {
    shard: EspShard,
    icmp: Option<IcmpErrors>,
}

impl EspEncrypt {
    /// A stage on `sub` (one subscription per shard), Ethernet framing, no event queue.
    pub fn new(sub: Subscriber<SaSet>) -> Self {
        Self { shard: EspShard::new(sub), icmp: None }
    }

    /// Answers a packet that does not fit its tunnel SA's MTU (ESP overhead included,
    /// [`SecurityAssociation::inner_mtu`]) with ICMP Fragmentation Needed (IPv4 with DF set)
    /// or ICMPv6 Packet Too Big carrying that MTU, sent back towards its source (give `icmp`
    /// [`IcmpErrors::with_routes`]: the packet was already forwarded). IPv4 without DF is not
    /// fragmented here: it is dropped as `EspMtuExceeded`, as are packets over the rate.
    pub fn with_icmp_errors(mut self, icmp: IcmpErrors) -> Self {
        self.icmp = Some(icmp);
        self
    }

    /// [`EspEncrypt::with_icmp_errors`] on a stage already built.
    pub fn set_icmp_errors(&mut self, icmp: IcmpErrors) {
        self.icmp = Some(icmp);
    }

    /// What the ICMP error generator did (zeros without one).
    pub fn icmp_counters(&self) -> IcmpCounters {
        self.icmp.as_ref().map(|i| i.counters()).unwrap_or_default()
    }
}

esp_stage_common!(EspEncrypt);

impl<B: PacketBuf> Stage<B> for EspEncrypt {
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        let EspShard { sas, framing, events, stats } = &mut self.shard;
        let icmp = &mut self.icmp;
        sas.refresh();
        let (set, states) = sas.parts();
        if !set.has_policies() {
            stats.passed += batch.len() as u64;
            return;
        }
        let shard: ShardId = cx.shard;
        let now = cx.now;
        // Three passes, so that the provider seals the whole batch at once: frame every packet
        // (policy, SA, sequence number, headers), seal all of them (one call per SA), then
        // finish (IPv6 UDP checksum) and apply the verdicts.
        let mut verdicts = [Verdict::Continue; BATCH_SIZE];
        let mut plans: [Option<(usize, EncapPlan)>; BATCH_SIZE] = [None; BATCH_SIZE];
        let mut cx_out = OutboundCx { set, states, shard, now, events, stats, icmp };
        for (k, p) in batch.iter_mut().enumerate() {
            verdicts[k] = (|| {
                let Some(l3) = l3_offset(p, *framing) else {
                    cx_out.stats.passed += 1;
                    return Verdict::Continue;
                };
                let Some(d) = p.data().get(l3..) else { return Verdict::Drop(DropReason::Truncated) };
                // IPv4 on a path of its own: its header stays in registers. Through
                // `IpHeader::parse`, whose IPv6 arm returns in memory, the header was stored
                // field by field and copied with wider loads (store-forwarding stalls).
                if d.first().is_some_and(|b| b >> 4 == 4) {
                    return match IpHeader::parse_v4(d) {
                        Ok(ip) => cx_out.protect(p, l3, ip, &mut plans[k]),
                        Err(r) => Verdict::Drop(r),
                    };
                }
                match IpHeader::parse(d) {
                    Ok(ip) => cx_out.protect(p, l3, ip, &mut plans[k]),
                    Err(DropReason::Unsupported) => {
                        cx_out.stats.passed += 1;
                        Verdict::Continue
                    }
                    Err(r) => Verdict::Drop(r),
                }
            })();
        }
        let OutboundCx { stats, .. } = cx_out;
        let mut ok = [false; BATCH_SIZE];
        crypt_batch(
            set,
            batch.as_mut_slice(),
            |k| plans[k].as_ref().map(|(i, p)| (*i, &p.crypto)),
            &mut ok,
            true,
        );
        for (k, p) in batch.iter_mut().enumerate() {
            if let Some((_, plan)) = &plans[k] {
                if ok[k] {
                    finish_encap(p, plan);
                    stats.encrypted += 1;
                } else {
                    verdicts[k] = Verdict::Drop(DropReason::EspNoRoom);
                }
            }
        }
        apply_verdicts(cx, batch, &verdicts);
    }
}

/// What the encrypt stage's per-packet policy step works with.
struct OutboundCx<'a> {
    set: &'a SaSet,
    states: &'a mut [super::sa::SaState],
    shard: ShardId,
    now: std::time::Instant,
    events: &'a Option<EventQueue>,
    stats: &'a mut EspStats,
    icmp: &'a mut Option<IcmpErrors>,
}

impl OutboundCx<'_> {
    /// SPD decision for the packet whose IP header `ip` is at `l3`, and for protected packets
    /// the encapsulation up to the seal (its plan goes to `plan`).
    #[inline(always)]
    fn protect<B: PacketBuf>(
        &mut self,
        p: &mut B,
        l3: usize,
        ip: IpHeader,
        plan: &mut Option<(usize, EncapPlan)>,
    ) -> Verdict {
        let Self { set, states, shard, now, events, stats, icmp } = self;
        let (shard, now) = (*shard, *now);
        let d = &p.data()[l3..];
        match set.decide_outbound(&ip.flow_key(d), shard) {
            OutboundDecision::Bypass => {
                stats.passed += 1;
                Verdict::Continue
            }
            OutboundDecision::Discard => Verdict::Drop(DropReason::PolicyDiscard),
            OutboundDecision::NoSa => Verdict::Drop(DropReason::EspNoSa),
            OutboundDecision::Protect(i) => {
                let sa = set.sa(i);
                if let Some(mss) = sa.mss_clamp()
                    && crate::mss::clamp(&mut p.data_mut()[l3..], mss)
                {
                    stats.mss_clamped += 1;
                }
                let r = prepare_encap(p, l3, &ip, sa, &mut states[i], now, None, |kind| {
                    raise(events, stats, SaEvent { shard, spi: sa.spi(), uid: sa.uid(), kind })
                });
                match r {
                    Ok(pl) => {
                        *plan = Some((i, pl));
                        Verdict::Continue
                    }
                    Err(DropReason::EspMtuExceeded) => too_big(icmp, p, l3, &ip, sa, now),
                    Err(r) => Verdict::Drop(r),
                }
            }
        }
    }
}

/// The ICMP error for a packet that does not fit its SA, or its drop.
#[inline(never)]
fn too_big<B: PacketBuf>(
    icmp: &mut Option<IcmpErrors>,
    p: &mut B,
    l3: usize,
    ip: &IpHeader,
    sa: &SecurityAssociation,
    now: std::time::Instant,
) -> Verdict {
    let drop = Verdict::Drop(DropReason::EspMtuExceeded);
    let (Some(icmp), Some(mtu)) = (icmp.as_mut(), sa.inner_mtu()) else { return drop };
    // IPv4 without DF may be fragmented by a router; this one does not: dropped, counted.
    let df = p.data().get(l3 + 6).is_some_and(|b| b & 0x40 != 0);
    if !ip.v6 && !df {
        return drop;
    }
    match icmp.reply(p, l3, IcmpError::TooBig { mtu }, now) {
        Some(port) => Verdict::Forward { port },
        None => drop,
    }
}

/// Seals (`seal`) or opens every packet that has a plan (`plan(k)`: SA index and crypto plan of
/// packet `k`), one provider call per SA, and sets `ok[k]` for those that succeeded. No
/// allocation: the jobs live in a fixed array on the stack.
#[inline]
fn crypt_batch<'p, B: PacketBuf>(
    set: &SaSet,
    pkts: &mut [B],
    plan: impl Fn(usize) -> Option<(usize, &'p CryptoPlan)>,
    ok: &mut [bool; BATCH_SIZE],
    seal: bool,
) {
    // Jobs are grouped by SA (order within an SA does not matter: the jobs are independent).
    // Usual case: the packets of an SA are already contiguous in batch order (one SA per
    // batch, or runs of one), and the jobs are built in one pass without sorting.
    let mut jobs: ArrayVec<AeadJob<'_>, BATCH_SIZE> = ArrayVec::new();
    let mut owner: ArrayVec<(usize, usize), BATCH_SIZE> = ArrayVec::new();
    let mut grouped = true;
    let mut last = usize::MAX;
    let mut seen = 0u64;
    for k in 0..pkts.len() {
        if let Some((i, _)) = plan(k)
            && i != last
        {
            // An SA seen before, after another one: not contiguous. (Indices are folded
            // modulo 64; a collision only sends the batch down the sorting path.)
            let bit = 1u64 << (i % 64);
            if seen & bit != 0 {
                grouped = false;
                break;
            }
            seen |= bit;
            last = i;
        }
    }
    if grouped {
        for (k, p) in pkts.iter_mut().enumerate() {
            let Some((i, c)) = plan(k) else { continue };
            if let Some((data, icv)) = c.split(p.data_mut()) {
                jobs.push(AeadJob::new(c.nonce, c.aad(), data, icv));
                owner.push((i, k));
            }
        }
    } else {
        let mut order: ArrayVec<(usize, usize), BATCH_SIZE> =
            (0..pkts.len()).filter_map(|k| plan(k).map(|(i, _)| (i, k))).collect();
        order.sort_unstable();
        let mut refs: ArrayVec<Option<&mut B>, BATCH_SIZE> = pkts.iter_mut().map(Some).collect();
        for &(i, k) in &order {
            let (Some(p), Some((_, c))) = (refs[k].take(), plan(k)) else { continue };
            if let Some((data, icv)) = c.split(p.data_mut()) {
                jobs.push(AeadJob::new(c.nonce, c.aad(), data, icv));
                owner.push((i, k));
            }
        }
    }
    let mut start = 0;
    while start < jobs.len() {
        let sa = owner[start].0;
        let end = start + owner[start..].iter().take_while(|o| o.0 == sa).count();
        let cipher = set.sa(sa).cipher();
        if seal {
            cipher.seal_batch(&mut jobs[start..end]);
        } else {
            cipher.open_batch(&mut jobs[start..end]);
        }
        start = end;
    }
    for (j, &(_, k)) in jobs.iter().zip(&owner) {
        ok[k] = j.result.is_ok();
    }
}

/// Applies verdicts decided earlier, in batch order.
#[inline]
fn apply_verdicts<B: PacketBuf>(cx: &mut ShardCtx, batch: &mut Batch<B>, verdicts: &[Verdict; BATCH_SIZE]) {
    let mut k = 0;
    batch.apply(
        cx,
        |cx, _| cx.counters.drop_packet(DropReason::Unsupported),
        |_, _| {
            let v = verdicts[k];
            k += 1;
            v
        },
    );
}

/// Inbound IPsec: ESP (IP protocol 50) and RFC 3948 UDP-encapsulated ESP are looked up by SPI
/// (and, for tunnel SAs, checked against the SA's `local`/`remote` endpoints: a mismatch is
/// `EspWrongEndpoint`, not `EspNoSa`) and decapsulated; all other
/// packets, IKE and NAT keepalives included, pass through untouched.
#[derive(Debug)]
pub struct EspDecrypt {
    shard: EspShard,
    nat_t_port: u16,
}

impl EspDecrypt {
    /// A stage on `sub`, Ethernet framing, NAT-T on UDP port 4500, no event queue.
    pub fn new(sub: Subscriber<SaSet>) -> Self {
        Self { shard: EspShard::new(sub), nat_t_port: NAT_T_PORT }
    }

    /// Sets the UDP port recognised as RFC 3948 encapsulation.
    pub fn with_nat_t_port(mut self, port: u16) -> Self {
        self.nat_t_port = port;
        self
    }
}

esp_stage_common!(EspDecrypt);

impl<B: PacketBuf> Stage<B> for EspDecrypt {
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        let port = self.nat_t_port;
        let EspShard { sas, framing, events, stats } = &mut self.shard;
        sas.refresh();
        let (set, states) = sas.parts();
        let shard = cx.shard;
        let now = cx.now;
        // Check every packet (SPI, endpoints, lifetime, replay, lengths), open all of them (one
        // provider call per SA), then finish each in order (window, trailer, header move).
        let mut verdicts = [Verdict::Continue; BATCH_SIZE];
        let mut plans: [Option<(usize, usize, DecapPlan)>; BATCH_SIZE] = [None; BATCH_SIZE];
        let mut last: Option<(u32, usize, &SecurityAssociation)> = None;
        for (k, p) in batch.iter_mut().enumerate() {
            verdicts[k] = (|| {
                let Some(l3) = l3_offset(p, *framing) else {
                    stats.passed += 1;
                    return Verdict::Continue;
                };
                let loc = match locate_esp_inline(p.data(), l3, port) {
                    Ok(Some(loc)) => loc,
                    Ok(None) => {
                        stats.passed += 1;
                        return Verdict::Continue;
                    }
                    Err(r) => return Verdict::Drop(r),
                };
                // Packets of a batch mostly share their SA: the previous packet's SA is reused
                // without the SPI search and the pointer chase to it (a load chain per packet).
                let (i, sa) = match last {
                    Some((spi, i, sa)) if spi == loc.spi => (i, sa),
                    _ => {
                        let Some(i) = set.inbound_index(loc.spi) else {
                            return Verdict::Drop(DropReason::EspNoSa);
                        };
                        let sa = set.sa(i);
                        last = Some((loc.spi, i, sa));
                        (i, sa)
                    }
                };
                if !endpoints_match(sa, &loc) {
                    return Verdict::Drop(DropReason::EspWrongEndpoint);
                }
                let ev = |kind: SaEventKind| {
                    raise(events, stats, SaEvent { shard, spi: sa.spi(), uid: sa.uid(), kind })
                };
                if sa.esn() {
                    // The ESN high bits are inferred from the window as left by the previous
                    // packet of the SA (RFC 4303 Appendix A), so ESN packets are done one by
                    // one, in order.
                    let v = decap_verdict(decapsulate_one(p, l3, &loc, sa, &mut states[i], now, ev), stats);
                    clamp_inner(p, l3, sa, v, stats);
                    return v;
                }
                match prepare_decap(p, &loc, sa, &mut states[i], now, ev) {
                    Ok(plan) => {
                        plans[k] = Some((i, l3, plan));
                        Verdict::Continue
                    }
                    Err(r) => Verdict::Drop(r),
                }
            })();
        }
        let mut ok = [false; BATCH_SIZE];
        crypt_batch(
            set,
            batch.as_mut_slice(),
            |k| plans[k].as_ref().map(|(i, _, p)| (*i, &p.crypto)),
            &mut ok,
            false,
        );
        for (k, p) in batch.iter_mut().enumerate() {
            let Some((i, l3, plan)) = &plans[k] else { continue };
            let sa = set.sa(*i);
            let r = finish_decap(p, *l3, plan, ok[k], sa, &mut states[*i], now, |kind: SaEventKind| {
                raise(events, stats, SaEvent { shard, spi: sa.spi(), uid: sa.uid(), kind })
            });
            verdicts[k] = decap_verdict(r, stats);
            clamp_inner(p, *l3, sa, verdicts[k], stats);
        }
        apply_verdicts(cx, batch, &verdicts);
    }
}

/// Clamps the MSS of a decrypted TCP SYN when its SA says so.
#[inline]
fn clamp_inner<B: PacketBuf>(
    p: &mut B,
    l3: usize,
    sa: &SecurityAssociation,
    v: Verdict,
    stats: &mut EspStats,
) {
    if let (Some(mss), Verdict::Continue) = (sa.mss_clamp(), v)
        && let Some(ip) = p.data_mut().get_mut(l3..)
        && crate::mss::clamp(ip, mss)
    {
        stats.mss_clamped += 1;
    }
}

#[inline]
fn decap_verdict(r: Result<Decapsulated, DropReason>, stats: &mut EspStats) -> Verdict {
    match r {
        Ok(Decapsulated::Packet) => {
            stats.decrypted += 1;
            Verdict::Continue
        }
        Ok(Decapsulated::Dummy) => {
            stats.dummy += 1;
            Verdict::Drop(DropReason::PolicyDiscard)
        }
        Err(r) => Verdict::Drop(r),
    }
}

/// An inbound tunnel SA accepts packets to its `local` address, and (ESP not in UDP, whose
/// source NAT may rewrite) from its `remote` address; an unspecified address accepts any.
#[inline]
fn endpoints_match(sa: &SecurityAssociation, loc: &InboundEsp) -> bool {
    let Some((local, remote)) = sa.endpoints() else { return true };
    local.admits(loc.v6, loc.dst) && (loc.udp || remote.admits(loc.v6, loc.src))
}
