//! The security association database as the data path sees it: an immutable [`SaSet`] (SAs +
//! compiled SPD) published to running shards by epoch, and each shard's [`ShardSas`] holding
//! the mutable per-SA state next to its subscription.
//!
//! Add, remove and rekey are all "publish a new set": the control side builds an [`SaSet`] from
//! `Arc<SecurityAssociation>`s (reusing the unchanged ones, so keys are not re-expanded) and
//! calls [`wirespeed_core::epoch::Publisher::publish`]. Each shard adopts it at its next batch
//! boundary ([`ShardSas::refresh`]) and carries over the state (sequence numbers, windows,
//! lifetime counters) of every SA present in both versions, matched by
//! [`SecurityAssociation::uid`]. A shard keeps its old set alive until it adopts the new one, so
//! no packet is ever processed against a freed SA.

use std::sync::Arc;

use wirespeed_core::ShardId;
use wirespeed_core::epoch::Subscriber;

use super::sa::{Direction, SaConfig, SaError, SaState, SecurityAssociation};
use super::spd::{CompiledSelector, DefaultAction, FlowKey, PolicyAction, Spd};

/// An SA set that cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SadError {
    /// Two inbound SAs (or two outbound SAs) share an SPI.
    #[error("duplicate {direction} SPI {spi:#010x}")]
    DuplicateSpi {
        /// "inbound" or "outbound".
        direction: &'static str,
        /// The SPI.
        spi: u32,
    },
    /// The same SA object was listed twice.
    #[error("SA {spi:#010x} (uid {uid}) listed twice")]
    DuplicateSa {
        /// The SPI.
        spi: u32,
        /// Its uid.
        uid: u64,
    },
    /// A policy names an SPI that is not an outbound SA of the set.
    #[error("policy {policy} protects with SPI {spi:#010x}, which is not an outbound SA of the set")]
    UnknownSpi {
        /// Index of the policy.
        policy: usize,
        /// The SPI.
        spi: u32,
    },
    /// A policy names two outbound SAs owned by the same shard.
    #[error("policy {policy} names two SAs for shard {shard}: {a:#010x} and {b:#010x}")]
    ShardConflict {
        /// Index of the policy.
        policy: usize,
        /// The shard.
        shard: ShardId,
        /// First SPI.
        a: u32,
        /// Second SPI.
        b: u32,
    },
    /// A configuration given to [`SaSet::from_configs`] is not a valid SA.
    #[error("SA config {index} (SPI {spi:#010x}): {source}")]
    Config {
        /// Index of the configuration in the slice.
        index: usize,
        /// Its SPI.
        spi: u32,
        /// What is wrong with it.
        source: SaError,
    },
}

const NO_SA: u32 = u32::MAX;

#[derive(Clone, Debug)]
enum CompiledAction {
    Bypass,
    Discard,
    /// SA index per shard (`NO_SA` where the shard has none).
    Protect(Box<[u32]>),
}

#[derive(Clone, Debug)]
struct CompiledPolicy {
    selector: CompiledSelector,
    action: CompiledAction,
}

/// Outcome of the outbound policy lookup for one packet on one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundDecision {
    /// Send in clear.
    Bypass,
    /// Drop (`PolicyDiscard`).
    Discard,
    /// Encrypt with the SA at this index of the set.
    Protect(usize),
    /// A policy says protect, this shard owns none of its SAs, and shard `.0` does (the
    /// lowest-numbered owner): the packet goes there to be encrypted
    /// ([`crate::esp::EspEncrypt::with_handoff`]), or is dropped (`EspNoSa`).
    Elsewhere(ShardId),
    /// A policy says protect, but no shard owns any of its SAs (`EspNoSa`).
    NoSa,
}

/// SAs plus the compiled outbound SPD: one immutable version of the SAD, shared by all shards.
#[derive(Clone, Debug, Default)]
pub struct SaSet {
    /// Sorted by uid (lets shards merge their state in one pass).
    sas: Vec<Arc<SecurityAssociation>>,
    /// `(spi, index)` of inbound SAs, sorted by SPI.
    inbound: Vec<(u32, u32)>,
    policies: Vec<CompiledPolicy>,
    default_discard: bool,
}

impl SaSet {
    /// An empty set: no SAs, every packet bypasses.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds a set from SA configurations and the outbound SPD: [`SecurityAssociation::new`] on
    /// each configuration, then [`SaSet::new`]. For a first set; to keep unchanged SAs (and
    /// their state) across a rekey, build the next set from [`SaSet::sas`] with [`SaSet::new`].
    ///
    /// ```
    /// use wirespeed_stages::esp::{AeadAlgorithm::Aes128Gcm, Direction, SaConfig, SaSet, SadError, Spd};
    /// let (local, remote) = ("192.0.2.1".parse()?, "198.51.100.7".parse()?);
    /// let out = Direction::Outbound { shard: 0 };
    /// let sa = SaConfig::tunnel(0x1000, out, Aes128Gcm, &[7; 20], local, remote);
    /// let set = SaSet::from_configs(&[sa.clone()], &Spd::new(vec![]))?;
    /// assert_eq!((set.len(), set.sa(0).spi()), (1, 0x1000));
    ///
    /// // A 3-byte key: the error names the configuration.
    /// let bad = SaConfig::tunnel(0x2000, out, Aes128Gcm, &[7; 3], local, remote);
    /// let err = SaSet::from_configs(&[sa, bad], &Spd::new(vec![])).unwrap_err();
    /// assert!(matches!(err, SadError::Config { index: 1, spi: 0x2000, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_configs(configs: &[SaConfig], spd: &Spd) -> Result<Self, SadError> {
        let sas = configs.iter().enumerate().map(|(index, c)| {
            let sa = SecurityAssociation::new(c).map_err(|source| SadError::Config {
                index,
                spi: c.spi,
                source,
            })?;
            Ok(Arc::new(sa))
        });
        Self::new(sas.collect::<Result<Vec<_>, SadError>>()?, spd)
    }

    /// Builds a set from SAs and the outbound SPD, checking SPI uniqueness, that every protect
    /// policy names outbound SAs of the set, and that a policy names at most one SA per shard.
    pub fn new(sas: impl IntoIterator<Item = Arc<SecurityAssociation>>, spd: &Spd) -> Result<Self, SadError> {
        let mut sas: Vec<_> = sas.into_iter().collect();
        sas.sort_by_key(|s| s.uid());
        for w in sas.windows(2) {
            if w[0].uid() == w[1].uid() {
                return Err(SadError::DuplicateSa { spi: w[0].spi(), uid: w[0].uid() });
            }
        }
        let mut inbound = Vec::new();
        let mut outbound = Vec::new();
        for (i, sa) in sas.iter().enumerate() {
            match sa.direction() {
                Direction::Inbound => inbound.push((sa.spi(), i as u32)),
                Direction::Outbound { .. } => outbound.push((sa.spi(), i as u32)),
            }
        }
        inbound.sort_unstable();
        outbound.sort_unstable();
        for (list, direction) in [(&inbound, "inbound"), (&outbound, "outbound")] {
            for w in list.windows(2) {
                if w[0].0 == w[1].0 {
                    return Err(SadError::DuplicateSpi { direction, spi: w[0].0 });
                }
            }
        }
        let mut policies = Vec::with_capacity(spd.policies.len());
        for (pi, p) in spd.policies.iter().enumerate() {
            let action = match &p.action {
                PolicyAction::Bypass => CompiledAction::Bypass,
                PolicyAction::Discard => CompiledAction::Discard,
                PolicyAction::Protect { spis } => {
                    let mut per_shard: Vec<u32> = Vec::new();
                    for &spi in spis {
                        let Ok(pos) = outbound.binary_search_by_key(&spi, |e| e.0) else {
                            return Err(SadError::UnknownSpi { policy: pi, spi });
                        };
                        let idx = outbound[pos].1;
                        let Direction::Outbound { shard } = sas[idx as usize].direction() else {
                            unreachable!("outbound list holds outbound SAs")
                        };
                        if per_shard.len() <= shard {
                            per_shard.resize(shard + 1, NO_SA);
                        }
                        if per_shard[shard] != NO_SA {
                            return Err(SadError::ShardConflict {
                                policy: pi,
                                shard,
                                a: sas[per_shard[shard] as usize].spi(),
                                b: spi,
                            });
                        }
                        per_shard[shard] = idx;
                    }
                    CompiledAction::Protect(per_shard.into_boxed_slice())
                }
            };
            policies.push(CompiledPolicy { selector: CompiledSelector::new(&p.selector), action });
        }
        Ok(Self { sas, inbound, policies, default_discard: spd.default_action == DefaultAction::Discard })
    }

    /// Number of SAs.
    pub fn len(&self) -> usize {
        self.sas.len()
    }

    /// True when there are no SAs.
    pub fn is_empty(&self) -> bool {
        self.sas.is_empty()
    }

    /// The SAs, in uid order (indices used by [`OutboundDecision::Protect`] and
    /// [`SaSet::inbound_index`]).
    pub fn sas(&self) -> &[Arc<SecurityAssociation>] {
        &self.sas
    }

    /// The SA at `index`.
    #[inline]
    pub fn sa(&self, index: usize) -> &SecurityAssociation {
        &self.sas[index]
    }

    /// Index of the inbound SA with `spi`.
    #[inline]
    pub fn inbound_index(&self, spi: u32) -> Option<usize> {
        self.inbound.binary_search_by_key(&spi, |e| e.0).ok().map(|p| self.inbound[p].1 as usize)
    }

    /// True when any outbound policy exists (lets the encrypt stage skip parsing otherwise).
    pub fn has_policies(&self) -> bool {
        !self.policies.is_empty() || self.default_discard
    }

    /// Outbound SPD lookup for `key` on `shard`.
    #[inline]
    pub fn decide_outbound(&self, key: &FlowKey, shard: ShardId) -> OutboundDecision {
        for p in &self.policies {
            if p.selector.matches(key) {
                return match &p.action {
                    CompiledAction::Bypass => OutboundDecision::Bypass,
                    CompiledAction::Discard => OutboundDecision::Discard,
                    CompiledAction::Protect(per_shard) => match per_shard.get(shard) {
                        Some(&i) if i != NO_SA => OutboundDecision::Protect(i as usize),
                        _ => match per_shard.iter().position(|&i| i != NO_SA) {
                            Some(owner) => OutboundDecision::Elsewhere(owner as ShardId),
                            None => OutboundDecision::NoSa,
                        },
                    },
                };
            }
        }
        if self.default_discard { OutboundDecision::Discard } else { OutboundDecision::Bypass }
    }
}

/// One shard's view of the SAD: its epoch subscription and the state of every SA in the set it
/// uses, index-aligned with [`SaSet::sas`].
#[derive(Debug)]
pub struct ShardSas {
    sub: Subscriber<SaSet>,
    states: Vec<SaState>,
}

impl ShardSas {
    /// Starts from the subscriber's current set with fresh state for each SA.
    pub fn new(sub: Subscriber<SaSet>) -> Self {
        let states = sub.sas().iter().map(|sa| SaState::new(sa)).collect();
        Self { sub, states }
    }

    /// Adopts a newly published set, if any, carrying over the state of SAs present in both
    /// (matched by uid). Call at batch boundaries; allocates only when a new set arrived.
    pub fn refresh(&mut self) -> bool {
        if !self.sub.refresh() {
            return false;
        }
        let set = self.sub.get();
        let mut old = std::mem::take(&mut self.states).into_iter().peekable();
        let mut states = Vec::with_capacity(set.sas.len());
        for sa in &set.sas {
            while old.peek().is_some_and(|s| s.uid() < sa.uid()) {
                old.next();
            }
            match old.peek() {
                Some(s) if s.uid() == sa.uid() => states.push(old.next().expect("peeked")),
                _ => states.push(SaState::new(sa)),
            }
        }
        self.states = states;
        true
    }

    /// The set in use.
    #[inline]
    pub fn set(&self) -> &SaSet {
        self.sub.get()
    }

    /// Version of the set in use.
    pub fn version(&self) -> u64 {
        self.sub.version()
    }

    /// The set and the mutable states, index-aligned.
    #[inline]
    pub fn parts(&mut self) -> (&SaSet, &mut [SaState]) {
        (self.sub.get(), &mut self.states)
    }

    /// State of the SA with `uid`, if it is in the set.
    pub fn state_of(&self, uid: u64) -> Option<&SaState> {
        self.states.iter().find(|s| s.uid() == uid)
    }

    /// Mutable state of the SA with `uid`, if it is in the set.
    pub fn state_of_mut(&mut self, uid: u64) -> Option<&mut SaState> {
        self.states.iter_mut().find(|s| s.uid() == uid)
    }
}
