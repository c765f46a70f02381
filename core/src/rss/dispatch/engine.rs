//! [`SteeringEngine`]: a steering plan and RSS configuration compiled for software — what a
//! packet's queue is — and [`Steer`], the one steering interface for software spreading.

use crate::rss::HashTypes;
use crate::rss::RssError;
use crate::rss::hash::RssHasher;
use crate::rss::hash_batch::{HASH_BATCH, HashBatch};
use crate::rss::parse::{FastV4, PacketInfo};
use crate::rss::reta::Reta;
use crate::rss::steering::{SteeringAction, SteeringPlan};
use crate::sync::Arc;
use crate::wire::ip_proto;

/// Where a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteeringDecision {
    /// To `queue`.
    Queue {
        /// The queue (= owning shard).
        queue: u16,
        /// The RSS hash, when the packet went through an RSS group and a hash type applied.
        hash: Option<u32>,
        /// The default group's RETA entry used (for load counting), when it went there.
        entry: Option<u16>,
        /// The rule that decided, `None` for the default group.
        rule: Option<u16>,
    },
    /// A drop rule matched (rule index).
    Drop {
        /// The rule.
        rule: u16,
    },
}

impl SteeringDecision {
    /// The queue, `None` for a drop.
    pub fn queue(&self) -> Option<u16> {
        match *self {
            Self::Queue { queue, .. } => Some(queue),
            Self::Drop { .. } => None,
        }
    }
}

enum Action {
    Queue(u16),
    Group(Reta),
    Drop,
}

/// A steering plan and RSS configuration compiled for software: what the dispatcher evaluates
/// per packet. The default group's RETA is passed in per call (it changes by epoch); rule
/// groups have their own fixed RETA.
///
/// Packets with no applicable hash type (non-IP, no enabled type) take entry 0 of their group
/// — the convention of the software path; hardware backends document theirs.
pub struct SteeringEngine {
    hasher: RssHasher,
    plan: SteeringPlan,
    actions: Vec<Action>,
    queues: u16,
    /// The default group's initial RETA, for [`Steer`] (static steering without epochs).
    reta: Reta,
}

impl std::fmt::Debug for SteeringEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteeringEngine").field("plan", &self.plan).field("queues", &self.queues).finish()
    }
}

impl SteeringEngine {
    /// Compiles `plan` for a port with `queues` queues.
    pub fn new(hasher: RssHasher, plan: SteeringPlan, queues: u16) -> Result<Self, RssError> {
        plan.validate(queues)?;
        let actions = plan
            .rules
            .iter()
            .map(|r| {
                Ok(match &r.action {
                    SteeringAction::Queue(q) => Action::Queue(*q),
                    SteeringAction::Rss(g) => Action::Group(g.reta()?),
                    SteeringAction::Drop => Action::Drop,
                })
            })
            .collect::<Result<Vec<_>, RssError>>()?;
        let reta = plan.default.reta()?;
        Ok(Self { hasher, plan, actions, queues, reta })
    }

    /// Plain RSS as a NIC with `queues` queues does it: the hash `cfg` describes (key, hash
    /// types, symmetric mode), no steering rules, the default round-robin RETA over queues
    /// `0..queues`. Shorthand for [`SteeringEngine::new`] with
    /// [`SteeringPlan::rss_only`]`(`[`RssGroup::first`]`(queues))`.
    ///
    /// ```
    /// use wirespeed_core::rss::{RssConfig, SteeringEngine, SymmetricMode};
    ///
    /// let engine = SteeringEngine::rss_only(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() }, 2)?;
    /// let reta = engine.default_reta()?;
    /// let mut frame = wirespeed_core::backend::null::udp4_frame(64);
    /// let there = engine.decide_frame(&frame, &reta).queue();
    /// // The reply (addresses and ports swapped) lands on the same queue: symmetric RSS.
    /// let (src, dst) = (frame[26..30].to_vec(), frame[30..34].to_vec());
    /// frame[26..30].copy_from_slice(&dst);
    /// frame[30..34].copy_from_slice(&src);
    /// let (sport, dport) = (frame[34..36].to_vec(), frame[36..38].to_vec());
    /// frame[34..36].copy_from_slice(&dport);
    /// frame[36..38].copy_from_slice(&sport);
    /// assert_eq!(engine.decide_frame(&frame, &reta).queue(), there);
    /// assert!(there.is_some_and(|q| q < 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// [`RssGroup::first`]: crate::rss::RssGroup::first
    pub fn rss_only(cfg: &crate::rss::RssConfig, queues: u16) -> Result<Self, RssError> {
        // Paths spelled out rather than imported: keeps this file's import block as it was.
        let group = crate::rss::RssGroup::first(queues);
        Self::new(RssHasher::new(cfg)?, SteeringPlan::rss_only(group), queues)
    }

    /// The hasher.
    pub fn hasher(&self) -> &RssHasher {
        &self.hasher
    }

    /// The plan.
    pub fn plan(&self) -> &SteeringPlan {
        &self.plan
    }

    /// Number of queues.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// The default group's initial RETA (publish it, then keep it up to date by epoch).
    pub fn default_reta(&self) -> Result<Reta, RssError> {
        self.plan.default.reta()
    }

    /// Decides a parsed packet; `reta` is the default group's current RETA.
    #[inline]
    pub fn decide(&self, p: &PacketInfo, reta: &Reta) -> SteeringDecision {
        let hash = || p.tuple.as_ref().and_then(|t| self.hasher.hash_tuple(t));
        for (i, (rule, action)) in self.plan.rules.iter().zip(&self.actions).enumerate() {
            if !rule.matches.matches(p) {
                continue;
            }
            let rule = Some(i as u16);
            return match action {
                Action::Queue(q) => SteeringDecision::Queue { queue: *q, hash: None, entry: None, rule },
                Action::Group(g) => {
                    let h = hash();
                    SteeringDecision::Queue { queue: g.queue(h.unwrap_or(0)), hash: h, entry: None, rule }
                }
                Action::Drop => SteeringDecision::Drop { rule: i as u16 },
            };
        }
        let h = hash();
        let entry = reta.index(h.unwrap_or(0));
        SteeringDecision::Queue {
            queue: reta.entries()[entry],
            hash: h,
            entry: Some(entry as u16),
            rule: None,
        }
    }

    /// Decides a batch of parsed packets at once — the dispatcher's path: the plan's rules per
    /// packet, then one batch hash ([`RssHasher::hash_batch`]) for every packet whose decision
    /// needs a hash, then the RETA. `out[i]` is exactly what [`SteeringEngine::decide`] gives
    /// for `infos[i]`; `out` must be at least as long as `infos` (extra packets are not decided).
    ///
    /// ```
    /// use wirespeed_core::rss::{DecideScratch, PacketInfo, RssConfig, RssGroup, RssHasher, SteeringDecision, SteeringEngine, SteeringPlan};
    ///
    /// let engine = SteeringEngine::new(RssHasher::new(&RssConfig::default())?, SteeringPlan::rss_only(RssGroup::first(4)), 4)?;
    /// let reta = engine.default_reta()?;
    /// let infos: Vec<PacketInfo> = (0..40u16)
    ///     .map(|i| {
    ///         let mut f = wirespeed_core::backend::null::udp4_frame(64);
    ///         f[34..36].copy_from_slice(&(1000 + i).to_be_bytes());
    ///         PacketInfo::parse_ethernet(&f)
    ///     })
    ///     .collect();
    /// let mut out = vec![SteeringDecision::Drop { rule: 0 }; infos.len()];
    /// engine.decide_batch(&infos, &reta, &mut DecideScratch::new(), &mut out);
    /// for (p, d) in infos.iter().zip(&out) {
    ///     assert_eq!(*d, engine.decide(p, &reta));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decide_batch(
        &self,
        infos: &[PacketInfo],
        reta: &Reta,
        scratch: &mut DecideScratch,
        out: &mut [SteeringDecision],
    ) {
        for (infos, out) in infos.chunks(HASH_BATCH).zip(out.chunks_mut(HASH_BATCH)) {
            self.decide_round(infos, reta, scratch, out);
        }
    }

    /// Parses and decides a batch of Ethernet frames at once — the dispatcher's path. `out[i]`
    /// is exactly what [`SteeringEngine::decide_batch`] gives for
    /// `PacketInfo::parse_ethernet(frames[i])` (and so what [`SteeringEngine::decide`] gives);
    /// returns how many frames were decided (at most `out.len()`).
    ///
    /// Faster than parsing into [`PacketInfo`]s first: when the plan has no rules, an untagged
    /// IPv4 TCP/UDP frame without options (the common case) goes straight from its header bytes
    /// into the batch hash's input, without a [`PacketInfo`]; every other frame is parsed and
    /// decided as [`SteeringEngine::decide_batch`] does.
    ///
    /// ```
    /// use wirespeed_core::rss::{DecideScratch, PacketInfo, RssConfig, RssGroup, RssHasher, SteeringDecision, SteeringEngine, SteeringPlan};
    ///
    /// let engine = SteeringEngine::new(RssHasher::new(&RssConfig::default())?, SteeringPlan::rss_only(RssGroup::first(4)), 4)?;
    /// let reta = engine.default_reta()?;
    /// let frames: Vec<Vec<u8>> = (0..40u16)
    ///     .map(|i| {
    ///         let mut f = wirespeed_core::backend::null::udp4_frame(64);
    ///         f[34..36].copy_from_slice(&(1000 + i).to_be_bytes());
    ///         f
    ///     })
    ///     .collect();
    /// let mut out = vec![SteeringDecision::Drop { rule: 0 }; frames.len()];
    /// let n = engine.decide_frames(frames.iter().map(|f| f.as_slice()), &reta, &mut DecideScratch::new(), &mut out);
    /// assert_eq!(n, frames.len());
    /// for (f, d) in frames.iter().zip(&out) {
    ///     assert_eq!(*d, engine.decide(&PacketInfo::parse_ethernet(f), &reta));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decide_frames<'a>(
        &self,
        frames: impl IntoIterator<Item = &'a [u8]>,
        reta: &Reta,
        scratch: &mut DecideScratch,
        out: &mut [SteeringDecision],
    ) -> usize {
        let mut frames = frames.into_iter();
        let mut done = 0;
        for out in out.chunks_mut(HASH_BATCH) {
            let s = &mut *scratch;
            s.hash.clear();
            let mut n = 0;
            if self.plan.rules.is_empty() {
                let mode = self.hasher.mode();
                let types = self.hasher.types();
                let (tcp4, udp4) = (types.contains(HashTypes::IPV4_TCP), types.contains(HashTypes::IPV4_UDP));
                // `out` first: zip must not pull a frame it has no slot for.
                for (i, (_, f)) in out.iter().zip(&mut frames).enumerate() {
                    n += 1;
                    s.need[i] = true;
                    s.group[i] = NO_RULE;
                    if let Some(v) = FastV4::parse(f)
                        && (if v.proto == ip_proto::TCP { tcp4 } else { udp4 })
                    {
                        s.hash.push_v4_ports(mode, i, v.src, v.dst, v.sport, v.dport);
                        continue;
                    }
                    if let Some(t) = &PacketInfo::parse_ethernet(f).tuple {
                        s.hash.push(&self.hasher, i, t);
                    }
                }
            } else {
                for (i, (o, f)) in out.iter_mut().zip(&mut frames).enumerate() {
                    n += 1;
                    self.stage_with_rules(i, &PacketInfo::parse_ethernet(f), s, o);
                }
            }
            self.finish_round(reta, s, &mut out[..n]);
            done += n;
            if n < out.len() {
                break;
            }
        }
        done
    }

    #[inline]
    fn decide_round(
        &self,
        infos: &[PacketInfo],
        reta: &Reta,
        s: &mut DecideScratch,
        out: &mut [SteeringDecision],
    ) {
        let n = infos.len().min(out.len()).min(HASH_BATCH);
        let (infos, out) = (&infos[..n], &mut out[..n]);
        // 1. Rules: a queue or drop rule decides without a hash; an RSS rule or the default group
        //    needs one (`group[i]`: the rule, or NO_RULE for the default group), whose input is
        //    staged for the batch hash right away.
        s.hash.clear();
        if self.plan.rules.is_empty() {
            s.need[..n].fill(true);
            s.group[..n].fill(NO_RULE);
            for (i, p) in infos.iter().enumerate() {
                if let Some(t) = &p.tuple {
                    s.hash.push(&self.hasher, i, t);
                }
            }
        } else {
            for (i, (p, o)) in infos.iter().zip(out.iter_mut()).enumerate() {
                self.stage_with_rules(i, p, s, o);
            }
        }
        self.finish_round(reta, s, out);
    }

    /// Step 1 for packet `i` under a plan with rules: the first matching rule decides `o` (queue
    /// or drop, no hash) or names the RSS group; a packet that needs a hash has its input staged.
    #[inline(always)]
    fn stage_with_rules(&self, i: usize, p: &PacketInfo, s: &mut DecideScratch, o: &mut SteeringDecision) {
        s.need[i] = true;
        s.group[i] = NO_RULE;
        for (r, (rule, action)) in self.plan.rules.iter().zip(&self.actions).enumerate() {
            if !rule.matches.matches(p) {
                continue;
            }
            let rule = Some(r as u16);
            match action {
                Action::Queue(q) => {
                    *o = SteeringDecision::Queue { queue: *q, hash: None, entry: None, rule };
                    s.need[i] = false;
                }
                Action::Drop => {
                    *o = SteeringDecision::Drop { rule: r as u16 };
                    s.need[i] = false;
                }
                Action::Group(_) => s.group[i] = r as u16,
            }
            break;
        }
        if s.need[i]
            && let Some(t) = &p.tuple
        {
            s.hash.push(&self.hasher, i, t);
        }
    }

    /// Steps 2 and 3 of a round of `out.len()` packets: one batch hash per input length, then
    /// the RETA (the default group's, or the rule group's) for every packet that needs it.
    #[inline(always)]
    fn finish_round(&self, reta: &Reta, s: &mut DecideScratch, out: &mut [SteeringDecision]) {
        let n = out.len().min(HASH_BATCH);
        let hashed = s.hash.hash_into(&self.hasher, &mut s.hashes);
        let decided = out.iter_mut().zip(&s.need[..n]).zip(s.hashes.iter().zip(&s.group[..n]));
        for (i, ((o, &need), (&hash, &group))) in decided.enumerate() {
            if !need {
                continue;
            }
            let h = (hashed & (1 << i) != 0).then_some(hash);
            *o = match group {
                NO_RULE => {
                    let entry = reta.index(h.unwrap_or(0));
                    SteeringDecision::Queue {
                        queue: reta.entries()[entry],
                        hash: h,
                        entry: Some(entry as u16),
                        rule: None,
                    }
                }
                r => match self.actions.get(usize::from(r)) {
                    Some(Action::Group(g)) => SteeringDecision::Queue {
                        queue: g.queue(h.unwrap_or(0)),
                        hash: h,
                        entry: None,
                        rule: Some(r),
                    },
                    // Unreachable: `group` only names group rules.
                    _ => SteeringDecision::Drop { rule: r },
                },
            };
        }
    }

    /// Parses an Ethernet frame and decides it.
    #[inline]
    pub fn decide_frame(&self, frame: &[u8], reta: &Reta) -> SteeringDecision {
        self.decide(&PacketInfo::parse_ethernet(frame), reta)
    }
}

const NO_RULE: u16 = u16::MAX;

/// Reusable scratch of [`SteeringEngine::decide_batch`] (a few KiB; keep one per dispatcher).
pub struct DecideScratch {
    hash: HashBatch,
    hashes: [u32; HASH_BATCH],
    need: [bool; HASH_BATCH],
    group: [u16; HASH_BATCH],
}

impl std::fmt::Debug for DecideScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecideScratch").finish_non_exhaustive()
    }
}

impl Default for DecideScratch {
    fn default() -> Self {
        Self::new()
    }
}

impl DecideScratch {
    /// Empty scratch.
    pub fn new() -> Self {
        Self {
            hash: HashBatch::new(),
            hashes: [0; HASH_BATCH],
            need: [false; HASH_BATCH],
            group: [NO_RULE; HASH_BATCH],
        }
    }
}

/// Chooses the queue of an Ethernet frame (`None`: drop it). The one steering path for
/// everything that spreads packets in software: [`SteeringEngine`] implements it with its plan,
/// Toeplitz key, symmetric mode and initial RETA — the same choice the [`super::Dispatcher`] and a
/// NIC make — and so does any `Fn(&[u8]) -> u16`. Backends that spread one input over several
/// queues (the pcap port's `spread_input`) take a `Steer`.
pub trait Steer: Send + Sync {
    /// The queue of `frame`, or `None` to drop it.
    fn queue(&self, frame: &[u8]) -> Option<u16>;
}

impl Steer for SteeringEngine {
    #[inline]
    fn queue(&self, frame: &[u8]) -> Option<u16> {
        self.decide_frame(frame, &self.reta).queue()
    }
}

impl<F: Fn(&[u8]) -> u16 + Send + Sync> Steer for F {
    #[inline]
    fn queue(&self, frame: &[u8]) -> Option<u16> {
        Some(self(frame))
    }
}

impl<S: Steer + ?Sized> Steer for Arc<S> {
    #[inline]
    fn queue(&self, frame: &[u8]) -> Option<u16> {
        (**self).queue(frame)
    }
}
