//! The ESP stages: [`EspEncrypt`] (outbound: SPD lookup → SA → encapsulate) and [`EspDecrypt`]
//! (inbound: ESP or UDP-4500 ESP → SA by SPI → decapsulate).
//!
//! Each stage owns one shard's [`ShardSas`]: it adopts newly published SA sets at the start of
//! a batch and then works on plain references and its own per-SA state, so the per-packet path
//! has no atomic operation, lock or allocation. SA lifecycle events (soft/hard lifetime,
//! sequence overflow) go to the control side over a bounded queue, once per SA and shard.

use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use wirespeed_core::epoch::Subscriber;
use wirespeed_core::queue::SharedQueue;
use wirespeed_core::{BATCH_SIZE, Batch, DropReason, L3Kind, PacketBuf, ShardCtx, ShardId, Stage, Verdict};

use super::aead::AeadJob;
use super::packet::{
    CryptoPlan, DecapPlan, Decapsulated, EncapPlan, InboundEsp, decapsulate_one, finish_decap, finish_encap,
    locate_esp_inline, prepare_decap, prepare_encap,
};
use super::sa::{NAT_T_PORT, SaEvent, SaEventKind, SaState, SecurityAssociation};
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
    /// IPv4 packets (DF clear) fragmented to fit their SA ([`crate::esp::SaConfig::fragment`]).
    pub fragmented: u64,
    /// Fragments those made (each encrypted as its own ESP packet).
    pub fragments: u64,
    /// IPv4 packets (DF clear) that should have been fragmented and were dropped instead:
    /// malformed header or options, no free buffer, or no room for the fragments
    /// ([`FRAG_SPILL`]); counted under the drop reason too.
    pub frag_failed: u64,
    /// Inbound ESP packets whose SPI had no SA, held for it to appear
    /// ([`EspDecrypt::with_unknown_spi_hold`]).
    pub held: u64,
    /// Held packets whose SA appeared in time (decrypted, or dropped for another reason).
    pub hold_resolved: u64,
    /// Held packets dropped as `EspNoSa` because their SA did not appear in time.
    pub hold_expired: u64,
    /// Packets with an unknown SPI dropped at once (`EspNoSa`) because the hold was full.
    pub hold_full: u64,
    /// Packets whose outbound SA another shard owns, handed to that shard to be encrypted
    /// there ([`EspEncrypt::with_handoff`]).
    pub handed_off: u64,
}

/// Fragments an [`EspEncrypt`] stage keeps for the next batch when the current one has no
/// room for them (beyond it, a packet that needs more is dropped, `frag_failed`).
pub const FRAG_SPILL: usize = 8 * BATCH_SIZE;

/// Fragments past the end of the current batch: made this call and still to be encrypted
/// (`Some((SA index, IP header offset))`), or encrypted and waiting for room.
struct Spill<B> {
    q: std::collections::VecDeque<(B, Option<(usize, usize)>)>,
}

/// A type-erased [`Spill`] of the stage's buffer type.
type AnySpill = Option<Box<dyn std::any::Any + Send>>;

/// The hand-off queues of an [`EspEncrypt`] stage, one per shard, of its buffer type.
struct Handoff<B> {
    queues: Vec<SharedQueue<B>>,
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
    /// A `Spill<B>` for the buffer type the stage runs on (made on the first fragmentation,
    /// once: the stage itself is not generic over buffers).
    spill: AnySpill,
    /// Packets in the spill.
    spilled: usize,
    /// A `Handoff<B>` ([`EspEncrypt::with_handoff`]).
    handoff: Option<Box<dyn std::any::Any + Send>>,
}

impl EspEncrypt {
    /// A stage on `sub` (one subscription per shard), Ethernet framing, no event queue.
    pub fn new(sub: Subscriber<SaSet>) -> Self {
        Self { shard: EspShard::new(sub), icmp: None, spill: None, spilled: 0, handoff: None }
    }

    /// Hands a protected packet whose policy's outbound SA another shard owns (no SA of this
    /// shard: [`OutboundDecision::Elsewhere`]) to that shard, through `queues[owner]`, instead of
    /// dropping it as `EspNoSa`: one sender per SA, whichever queue the NIC put the flow on. The
    /// owner runs its encrypt stage (and only that: the packet was already forwarded) on what
    /// its queue holds — in the order each sender queued it — and transmits. `queues` is
    /// indexed by shard and shared by all shards' stages (bounded: a full queue drops the
    /// packet as `DispatchRingFull`). A handed packet is counted as received by its owner
    /// (`handed_off` here, [`flags::HANDED_OFF`] on the packet) and never handed on again (if
    /// the SA moved meanwhile, it is dropped as `EspNoSa`). `B` must be the buffer type the
    /// stage runs on; queues of another type are ignored.
    ///
    /// [`flags::HANDED_OFF`]: wirespeed_core::meta::flags::HANDED_OFF
    pub fn with_handoff<B: PacketBuf + Send + 'static>(mut self, queues: Vec<SharedQueue<B>>) -> Self {
        self.set_handoff(queues);
        self
    }

    /// [`EspEncrypt::with_handoff`] on a stage already built.
    pub fn set_handoff<B: PacketBuf + Send + 'static>(&mut self, queues: Vec<SharedQueue<B>>) {
        self.handoff = Some(Box::new(Handoff { queues }));
    }

    /// Fragments waiting for room (the batch they were made in was full): run the stage on an
    /// empty batch to send them (the gateway's data shards do before receiving more).
    pub fn pending(&self) -> usize {
        self.spilled
    }

    /// Answers a packet that does not fit its tunnel SA's MTU (ESP overhead included,
    /// [`SecurityAssociation::inner_mtu`]) with ICMP Fragmentation Needed (IPv4 with DF set)
    /// or ICMPv6 Packet Too Big carrying that MTU, sent back towards its source (give `icmp`
    /// [`IcmpErrors::with_routes`]: the packet was already forwarded). IPv4 without DF is
    /// fragmented instead ([`crate::esp::SaConfig::fragment`]; with it off, dropped as
    /// `EspMtuExceeded`, as are packets over the rate).
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
        let spill = &mut self.spill;
        let spilled = &mut self.spilled;
        let handoff = self.handoff.as_ref().and_then(|h| h.downcast_ref::<Handoff<B>>());
        sas.refresh();
        let (set, states) = sas.parts();
        if !set.has_policies() {
            stats.passed += batch.len() as u64;
            if *spilled > 0 {
                flush_spill::<B>(spill, spilled, batch);
            }
            return;
        }
        let shard: ShardId = cx.shard;
        let now = cx.now;
        // Three passes, so that the provider seals the whole batch at once: frame every packet
        // (policy, SA, sequence number, headers), seal all of them (one call per SA), then
        // finish (IPv6 UDP checksum) and apply the verdicts.
        let mut verdicts = [Verdict::Continue; BATCH_SIZE];
        let mut plans: [Option<(usize, EncapPlan)>; BATCH_SIZE] = [None; BATCH_SIZE];
        let mut targets: [Option<ShardId>; BATCH_SIZE] = [None; BATCH_SIZE];
        let mut cx_out = OutboundCx {
            set,
            states,
            shard,
            now,
            events,
            stats,
            icmp,
            spill,
            may_hand: handoff.is_some(),
            handing: 0,
        };
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
                        Ok(ip) => cx_out.protect(p, l3, ip, &mut plans[k], &mut targets[k]),
                        Err(r) => Verdict::Drop(r),
                    };
                }
                match IpHeader::parse(d) {
                    Ok(ip) => cx_out.protect(p, l3, ip, &mut plans[k], &mut targets[k]),
                    Err(DropReason::Unsupported) => {
                        cx_out.stats.passed += 1;
                        Verdict::Continue
                    }
                    Err(r) => Verdict::Drop(r),
                }
            })();
        }
        let OutboundCx { stats, states, spill, handing, .. } = cx_out;
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
        match handoff {
            Some(h) if handing > 0 => hand_off_and_apply(cx, batch, &verdicts, &targets, h, stats),
            _ => apply_verdicts(cx, batch, &verdicts),
        }
        if spill.is_some() {
            seal_fragments::<B>(spill, set, states, events, stats, cx);
            flush_spill::<B>(spill, spilled, batch);
        }
    }
}

#[inline]
fn dont_fragment<B: PacketBuf>(p: &B, l3: usize) -> bool {
    p.data().get(l3 + 6).is_none_or(|b| b & 0x40 != 0)
}

/// Splits the IPv4 packet `p` (IP header at `l3`, DF clear, too big for `sa`, index `i`) into
/// fragments that fit: the others go to the spill (to be encrypted after the batch), `p`
/// becomes the first; returns its new header. Nothing changes on failure (the packet is
/// dropped, `frag_failed`).
#[inline(never)]
fn fragment<B: PacketBuf>(
    spill: &mut AnySpill,
    p: &mut B,
    l3: usize,
    i: usize,
    sa: &SecurityAssociation,
    stats: &mut EspStats,
) -> Result<IpHeader, DropReason> {
    let failed = |stats: &mut EspStats, r| {
        stats.frag_failed += 1;
        Err(r)
    };
    let Some(mtu) = sa.inner_mtu() else { return failed(stats, DropReason::EspMtuExceeded) };
    let plan = match crate::frag::plan_v4(&p.data()[l3..], usize::from(mtu)) {
        Ok(plan) => plan,
        Err(crate::frag::FragError::Malformed) => return failed(stats, DropReason::MalformedIpv4),
        Err(_) => return failed(stats, DropReason::EspMtuExceeded),
    };
    // Made once per stage, on its first fragmentation.
    let s = spill.get_or_insert_with(|| {
        Box::new(Spill::<B> { q: std::collections::VecDeque::with_capacity(FRAG_SPILL) })
    });
    let Some(s) = s.downcast_mut::<Spill<B>>() else { return failed(stats, DropReason::EspMtuExceeded) };
    if s.q.len() + plan.count() - 1 > FRAG_SPILL {
        return failed(stats, DropReason::EspMtuExceeded);
    }
    let made = s.q.len();
    for n in 1..plan.count() {
        let len = l3 + plan.len(n);
        let f = p.alloc_like().and_then(|mut f| f.set_len(len).is_ok().then_some(f));
        let Some(mut f) = f else {
            s.q.truncate(made);
            return failed(stats, DropReason::PoolExhausted);
        };
        let d = f.data_mut();
        d[..l3].copy_from_slice(&p.data()[..l3]);
        plan.write(&p.data()[l3..], n, &mut d[l3..]);
        *f.meta_mut() = *p.meta();
        s.q.push_back((f, Some((i, l3))));
    }
    let len = l3 + plan.first_in_place(&mut p.data_mut()[l3..]);
    // Cannot fail: shorter than it was.
    let _ = p.set_len(len);
    stats.fragmented += 1;
    stats.fragments += plan.count() as u64;
    IpHeader::parse(&p.data()[l3..])
}

/// Encrypts the fragments made in this batch (after the batch's own packets, so sequence
/// numbers follow the order they are sent in), one by one: this is the slow path.
#[inline(never)]
fn seal_fragments<B: PacketBuf>(
    spill: &mut AnySpill,
    set: &SaSet,
    states: &mut [SaState],
    events: &Option<EventQueue>,
    stats: &mut EspStats,
    cx: &mut ShardCtx,
) {
    let Some(s) = spill.as_mut().and_then(|s| s.downcast_mut::<Spill<B>>()) else { return };
    let (shard, now) = (cx.shard, cx.now);
    let mut k = 0;
    while k < s.q.len() {
        let (p, todo) = &mut s.q[k];
        let Some((i, l3)) = todo.take() else {
            k += 1;
            continue;
        };
        let sa = set.sa(i);
        let r = IpHeader::parse(&p.data()[l3..]).and_then(|ip| {
            prepare_encap(p, l3, &ip, sa, &mut states[i], now, None, |kind| {
                raise(events, stats, SaEvent { shard, spi: sa.spi(), uid: sa.uid(), kind })
            })
        });
        let r = r.and_then(|plan| {
            let mut ok = [false; BATCH_SIZE];
            crypt_batch(
                set,
                std::slice::from_mut(p),
                |j| (j == 0).then_some((i, &plan.crypto)),
                &mut ok,
                true,
            );
            if ok[0] {
                finish_encap(p, &plan);
                Ok(())
            } else {
                Err(DropReason::EspNoRoom)
            }
        });
        match r {
            Ok(()) => {
                stats.encrypted += 1;
                k += 1;
            }
            Err(r) => {
                s.q.remove(k);
                cx.counters.drop_packet(r);
            }
        }
    }
}

/// Moves encrypted fragments from the spill into the batch while it has room.
#[inline]
fn flush_spill<B: PacketBuf>(spill: &mut AnySpill, spilled: &mut usize, batch: &mut Batch<B>) {
    let Some(s) = spill.as_mut().and_then(|s| s.downcast_mut::<Spill<B>>()) else { return };
    while batch.remaining() > 0 && s.q.front().is_some_and(|(_, todo)| todo.is_none()) {
        let Some((p, _)) = s.q.pop_front() else { break };
        // Cannot fail: the batch has room.
        let _ = batch.push(p);
    }
    *spilled = s.q.len();
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
    spill: &'a mut AnySpill,
    /// Hand-off queues are configured ([`EspEncrypt::with_handoff`]).
    may_hand: bool,
    /// Packets of the batch to hand to another shard (`Punt` verdicts).
    handing: usize,
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
        target: &mut Option<ShardId>,
    ) -> Verdict {
        let Self { set, states, shard, now, events, stats, icmp, spill, may_hand, handing } = self;
        let (shard, now) = (*shard, *now);
        let d = &p.data()[l3..];
        match set.decide_outbound(&ip.flow_key(d), shard) {
            OutboundDecision::Bypass => {
                stats.passed += 1;
                Verdict::Continue
            }
            OutboundDecision::Discard => Verdict::Drop(DropReason::PolicyDiscard),
            OutboundDecision::Elsewhere(owner)
                if *may_hand && p.meta().flags & wirespeed_core::meta::flags::HANDED_OFF == 0 =>
            {
                *target = Some(owner);
                *handing += 1;
                Verdict::Punt
            }
            OutboundDecision::Elsewhere(_) | OutboundDecision::NoSa => Verdict::Drop(DropReason::EspNoSa),
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
                    Err(DropReason::EspMtuExceeded)
                        if !ip.v6 && sa.fragments() && sa.inner_mtu().is_some() && !dont_fragment(p, l3) =>
                    {
                        let r = fragment(spill, p, l3, i, sa, stats).and_then(|ip| {
                            prepare_encap(p, l3, &ip, sa, &mut states[i], now, None, |kind| {
                                raise(events, stats, SaEvent { shard, spi: sa.spi(), uid: sa.uid(), kind })
                            })
                        });
                        match r {
                            Ok(pl) => {
                                *plan = Some((i, pl));
                                Verdict::Continue
                            }
                            Err(r) => Verdict::Drop(r),
                        }
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

/// [`apply_verdicts`] for a batch where some packets (`Punt`) go to shard `targets[k]` through
/// `handoff`: each verdict is paired with its packet by index.
#[inline(never)]
fn hand_off_and_apply<B: PacketBuf>(
    cx: &mut ShardCtx,
    batch: &mut Batch<B>,
    verdicts: &[Verdict; BATCH_SIZE],
    targets: &[Option<ShardId>; BATCH_SIZE],
    handoff: &Handoff<B>,
    stats: &mut EspStats,
) {
    let pkts: ArrayVec<B, BATCH_SIZE> = batch.drain(..).collect();
    for (k, mut p) in pkts.into_iter().enumerate() {
        match verdicts[k] {
            Verdict::Continue => {
                // Cannot fail: fewer than were taken out.
                let _ = batch.push(p);
            }
            Verdict::Forward { port } => {
                p.meta_mut().out_port = port;
                let _ = batch.push(p);
            }
            Verdict::Drop(r) => cx.counters.drop_packet(r),
            Verdict::Punt => {
                let Some(q) = targets[k].and_then(|t| handoff.queues.get(t)) else {
                    cx.counters.drop_packet(DropReason::EspNoSa);
                    continue;
                };
                let len = p.len() as u64;
                p.meta_mut().flags |= wirespeed_core::meta::flags::HANDED_OFF;
                match q.push(p) {
                    Ok(()) => {
                        stats.handed_off += 1;
                        cx.counters.hand_off(len);
                    }
                    Err(p) => {
                        drop(p);
                        cx.counters.drop_packet(DropReason::DispatchRingFull);
                    }
                }
            }
        }
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
///
/// Optionally ([`EspDecrypt::with_unknown_spi_hold`]) ESP packets whose SPI has no SA yet are
/// held for a short while instead of dropped: an IKE daemon installs a rekeyed inbound SA and
/// answers its peer, which may send on the new SPI before the SA set reaches the shards.
#[derive(Debug)]
pub struct EspDecrypt {
    shard: EspShard,
    nat_t_port: u16,
    hold: SpiHold,
}

/// Most packets [`EspDecrypt::with_unknown_spi_hold`] accepts to hold.
pub const MAX_SPI_HOLD_PACKETS: usize = 4096;

/// Longest [`EspDecrypt::with_unknown_spi_hold`] accepts to hold a packet.
pub const MAX_SPI_HOLD_TIME: Duration = Duration::from_secs(1);

/// Packets with an unknown SPI held until their SA appears (bounded in number and time).
struct SpiHold {
    /// Packets held at most (0: no hold).
    cap: usize,
    /// How long a packet waits for its SA.
    ttl: Duration,
    /// A `HeldQ<B>` for the stage's buffer type (made on the first held packet, once, with
    /// room for `cap` packets).
    q: AnySpill,
    /// Packets in `q`.
    len: usize,
    /// Of those, the decrypted ones waiting for room in a batch.
    ready: usize,
    /// The SA set version the unresolved packets were last looked up in.
    version: u64,
    /// The earliest deadline of an unresolved packet.
    next_due: Option<Instant>,
}

impl std::fmt::Debug for SpiHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiHold")
            .field("cap", &self.cap)
            .field("ttl", &self.ttl)
            .field("len", &self.len)
            .field("ready", &self.ready)
            .finish()
    }
}

/// Held packets in arrival order: `Some(deadline)` while the SPI is unknown, `None` once
/// decrypted and waiting for room in a batch.
struct HeldQ<B> {
    q: std::collections::VecDeque<(B, Option<Instant>)>,
}

impl EspDecrypt {
    /// A stage on `sub`, Ethernet framing, NAT-T on UDP port 4500, no event queue, no hold.
    pub fn new(sub: Subscriber<SaSet>) -> Self {
        let hold =
            SpiHold { cap: 0, ttl: Duration::ZERO, q: None, len: 0, ready: 0, version: 0, next_due: None };
        Self { shard: EspShard::new(sub), nat_t_port: NAT_T_PORT, hold }
    }

    /// Sets the UDP port recognised as RFC 3948 encapsulation.
    pub fn with_nat_t_port(mut self, port: u16) -> Self {
        self.nat_t_port = port;
        self
    }

    /// Holds up to `packets` ESP packets (at most [`MAX_SPI_HOLD_PACKETS`]) whose SPI has no SA
    /// for up to `wait` (at most [`MAX_SPI_HOLD_TIME`]; the shard clock, `ShardCtx::now`)
    /// instead of dropping them: when a newly published SA set resolves their SPI they are
    /// decrypted, in arrival order and ahead of the batch being processed, and go on (at the
    /// front of the batch while it has room; the rest at the next call). Those whose SA does
    /// not appear in time are dropped as `EspNoSa`, as are packets arriving when the hold is
    /// full. `packets == 0` or a zero `wait` turns the hold off (the default): unknown SPIs
    /// are dropped at once.
    ///
    /// The hold is made (once, `packets` slots) on the first packet held; with nothing held
    /// the stage costs one branch more per batch. Held packets leave without new input through
    /// [`Stage::needs_service`] / [`Stage::service`], and are dropped as `Shutdown` by
    /// [`Stage::finish`] or [`EspDecrypt::drop_held`].
    pub fn with_unknown_spi_hold(mut self, packets: usize, wait: Duration) -> Self {
        let packets = packets.min(MAX_SPI_HOLD_PACKETS);
        let wait = wait.min(MAX_SPI_HOLD_TIME);
        let off = packets == 0 || wait.is_zero();
        self.hold.cap = if off { 0 } else { packets };
        self.hold.ttl = if off { Duration::ZERO } else { wait };
        self
    }

    /// Packets held now (waiting for their SA, or decrypted and waiting for room).
    pub fn held(&self) -> usize {
        self.hold.len
    }

    /// True when held packets should be looked at now even if no packet arrives (a new SA
    /// set, a deadline passed, decrypted packets waiting): run the stage on an empty batch
    /// then and send what it releases. Adopts a newly published SA set.
    pub fn needs_service(&mut self, now: Instant) -> bool {
        if self.hold.len == 0 {
            return false;
        }
        self.shard.sas.refresh();
        self.hold.ready > 0
            || self.shard.sas.version() != self.hold.version
            || self.hold.next_due.is_some_and(|t| now >= t)
    }

    /// Drops every held packet as [`DropReason::Shutdown`] (when the shard stops).
    pub fn drop_held(&mut self, cx: &mut ShardCtx) {
        cx.counters.drop_packets(DropReason::Shutdown, self.hold.len as u64);
        // Dropping the queue gives the buffers back.
        self.hold.q = None;
        self.hold.len = 0;
        self.hold.ready = 0;
        self.hold.next_due = None;
    }
}

esp_stage_common!(EspDecrypt);

impl<B: PacketBuf> Stage<B> for EspDecrypt {
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        self.shard.sas.refresh();
        if self.hold.len == 0 {
            let hold = if self.hold.cap > 0 { Some(&mut self.hold) } else { None };
            decrypt_batch(&mut self.shard, self.nat_t_port, hold, cx, batch);
        } else {
            process_holding(&mut self.shard, self.nat_t_port, &mut self.hold, cx, batch);
        }
    }

    /// End of input: the packets still held are dropped as [`DropReason::Shutdown`].
    fn finish(&mut self, cx: &mut ShardCtx) {
        self.drop_held(cx);
    }

    fn held(&self) -> usize {
        EspDecrypt::held(self)
    }

    fn needs_service(&mut self, now: Instant) -> bool {
        EspDecrypt::needs_service(self, now)
    }

    /// Releases the held packets whose SA appeared (decrypted) into `batch`, drops those that
    /// timed out, and decrypts what `batch` holds.
    fn service(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        self.process(cx, batch);
    }
}

/// Decrypts `batch` (the SA set already refreshed). With `hold`, packets whose SPI has no SA
/// are held (or dropped when the hold is full) instead of dropped.
#[inline(always)]
fn decrypt_batch<B: PacketBuf>(
    shard: &mut EspShard,
    port: u16,
    mut hold: Option<&mut SpiHold>,
    cx: &mut ShardCtx,
    batch: &mut Batch<B>,
) {
    let holding = hold.is_some();
    let mut verdicts = [Verdict::Continue; BATCH_SIZE];
    {
        let EspShard { sas, framing, events, stats } = shard;
        let (set, states) = sas.parts();
        let shard = cx.shard;
        let now = cx.now;
        // Check every packet (SPI, endpoints, lifetime, replay, lengths), open all of them (one
        // provider call per SA), then finish each in order (window, trailer, header move).
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
                            // `Punt` marks a packet to hold (the stage punts nothing else).
                            return if holding { Verdict::Punt } else { Verdict::Drop(DropReason::EspNoSa) };
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
        if !holding {
            apply_verdicts(cx, batch, &verdicts);
            return;
        }
    }
    let stats = &mut shard.stats;
    let mut k = 0;
    batch.apply(
        cx,
        |cx, p| match hold.as_deref_mut() {
            Some(h) => hold_packet(h, stats, cx, p),
            None => cx.counters.drop_packet(DropReason::EspNoSa),
        },
        |_, _| {
            let v = verdicts[k];
            k += 1;
            v
        },
    );
    if let Some(h) = hold {
        // Every packet held so far was looked up in this version.
        h.version = shard.sas.version();
    }
}

/// Puts `p` (its SPI has no SA) on hold, or drops it as `EspNoSa` when the hold is full.
#[inline(never)]
fn hold_packet<B: PacketBuf>(h: &mut SpiHold, stats: &mut EspStats, cx: &mut ShardCtx, p: B) {
    if h.len >= h.cap {
        stats.hold_full += 1;
        return cx.counters.drop_packet(DropReason::EspNoSa);
    }
    let cap = h.cap;
    // Made once per stage, on its first held packet, with room for all it may hold.
    let q =
        h.q.get_or_insert_with(|| Box::new(HeldQ::<B> { q: std::collections::VecDeque::with_capacity(cap) }));
    let Some(q) = q.downcast_mut::<HeldQ<B>>() else { return cx.counters.drop_packet(DropReason::EspNoSa) };
    let due = cx.now + h.ttl;
    q.q.push_back((p, Some(due)));
    h.len += 1;
    stats.held += 1;
    h.next_due = Some(h.next_due.map_or(due, |t| t.min(due)));
}

/// The stage's `process` while packets are held: looks the held packets up again when the SA
/// set changed or a deadline passed (decrypting those whose SA appeared, before the batch's
/// packets, dropping those that timed out), decrypts the batch, then puts the decrypted held
/// packets at the front of the batch while it has room.
#[inline(never)]
fn process_holding<B: PacketBuf>(
    shard: &mut EspShard,
    port: u16,
    h: &mut SpiHold,
    cx: &mut ShardCtx,
    batch: &mut Batch<B>,
) {
    if shard.sas.version() != h.version || h.next_due.is_some_and(|t| cx.now >= t) {
        retry_held::<B>(shard, port, h, cx);
    }
    decrypt_batch(shard, port, Some(&mut *h), cx, batch);
    release_ready(h, batch);
}

/// The SPI of the ESP packet `p`, if it is one.
fn spi_of<B: PacketBuf>(p: &B, framing: Framing, port: u16) -> Option<u32> {
    let l3 = l3_offset(p, framing)?;
    locate_esp_inline(p.data(), l3, port).ok().flatten().map(|loc| loc.spi)
}

/// Decrypts the held packets whose SPI resolves now (in arrival order; they stay held,
/// decrypted, until a batch has room), drops those past their deadline as `EspNoSa`.
#[inline(never)]
fn retry_held<B: PacketBuf>(shard: &mut EspShard, port: u16, h: &mut SpiHold, cx: &mut ShardCtx) {
    let now = cx.now;
    h.version = shard.sas.version();
    h.next_due = None;
    let SpiHold { q, len, ready, next_due, .. } = h;
    let Some(q) = q.as_mut().and_then(|q| q.downcast_mut::<HeldQ<B>>()) else { return };
    let mut found: Batch<B> = Batch::new();
    let n = q.q.len();
    for j in 0..n {
        let Some((p, due)) = q.q.pop_front() else { break };
        if let Some(t) = due {
            if spi_of(&p, shard.framing, port).is_some_and(|spi| shard.sas.set().inbound_index(spi).is_some())
            {
                // Cannot fail: `found` is decrypted whenever it fills up.
                let _ = found.push(p);
            } else if now >= t {
                *len -= 1;
                shard.stats.hold_expired += 1;
                cx.counters.drop_packet(DropReason::EspNoSa);
            } else {
                q.q.push_back((p, Some(t)));
                *next_due = Some(next_due.map_or(t, |d: Instant| d.min(t)));
            }
        } else {
            q.q.push_back((p, None));
        }
        if found.is_full() || (j + 1 == n && !found.is_empty()) {
            let taken = found.len();
            shard.stats.hold_resolved += taken as u64;
            decrypt_batch(shard, port, None, cx, &mut found);
            *len -= taken - found.len();
            *ready += found.len();
            for p in found.drain(..) {
                q.q.push_back((p, None));
            }
        }
    }
}

/// Moves the decrypted held packets into `batch` while it has room, ahead of its packets
/// (they arrived first).
#[inline(never)]
fn release_ready<B: PacketBuf>(h: &mut SpiHold, batch: &mut Batch<B>) {
    if h.ready == 0 || batch.remaining() == 0 {
        return;
    }
    let Some(q) = h.q.as_mut().and_then(|q| q.downcast_mut::<HeldQ<B>>()) else { return };
    let mut released = 0;
    for _ in 0..q.q.len() {
        let Some((p, due)) = q.q.pop_front() else { break };
        if due.is_none() && batch.remaining() > 0 {
            // Cannot fail: the batch has room.
            let _ = batch.push(p);
            released += 1;
        } else {
            q.q.push_back((p, due));
        }
    }
    h.ready -= released;
    h.len -= released;
    batch.as_mut_slice().rotate_right(released);
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
