//! [`SteeringEngine`]: a steering plan and RSS configuration compiled for software — what a
//! packet's queue is — and [`Steer`], the one steering interface for software spreading.

use crate::rss::RssError;
use crate::rss::hash::RssHasher;
use crate::rss::parse::PacketInfo;
use crate::rss::reta::Reta;
use crate::rss::steering::{SteeringAction, SteeringPlan};
use crate::sync::Arc;

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

    /// Parses an Ethernet frame and decides it.
    #[inline]
    pub fn decide_frame(&self, frame: &[u8], reta: &Reta) -> SteeringDecision {
        self.decide(&PacketInfo::parse_ethernet(frame), reta)
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
