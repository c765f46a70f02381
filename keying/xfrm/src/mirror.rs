//! The mirror: turns XFRM events into the SA set and outbound SPD the data plane should run.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use wirespeed_core::ShardId;
use wirespeed_stages::esp::aead::{ProviderRef, default_provider};
use wirespeed_stages::esp::replay::DEFAULT_WINDOW;
use wirespeed_stages::esp::{
    AeadAlgorithm, DefaultAction, Direction, EspMode, IpPrefix, Lifetime, Limits, PolicyAction, SaConfig,
    SaError, SecurityAssociation, SecurityPolicy, Selector, Spd, UdpEncap,
};
use zeroize::Zeroize;

use crate::msg::{self, Attrs, PolicyMsg, ReplayValue, SaMsg, SaRef, XfrmMsg};
use crate::wire::{
    self, DecodeError, IPPROTO_ESP, LifetimeCfg, Mark, ReplayState, ReplayStateEsn, UsersaId, UsersaInfo,
    XFRM_INF, XfrmSelector,
};

/// Which kernel SAs and policies belong to the data plane. An SA or policy is in scope when
/// its `XFRMA_IF_ID` is one of `if_ids` (non-zero) or its `XFRMA_MARK` is one of `marks`
/// (non-zero mask). Scoped SAs are invisible to kernel traffic as long as no xfrm interface
/// with such an if_id exists and no kernel packet carries such a mark: the kernel then never
/// encrypts with them, and the data plane is the only sender on each key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// strongSwan `if_id_in`/`if_id_out` values reserved for the data plane.
    pub if_ids: Vec<u32>,
    /// Marks (value, mask) reserved for the data plane.
    pub marks: Vec<Mark>,
}

impl Scope {
    /// Whether an object with this if_id and mark belongs to the data plane.
    pub fn admits(&self, if_id: Option<u32>, mark: Option<Mark>) -> bool {
        if_id.is_some_and(|id| id != 0 && self.if_ids.contains(&id))
            || mark.is_some_and(|m| m.m != 0 && self.marks.contains(&m))
    }

    /// Whether the scope admits anything at all.
    pub fn is_empty(&self) -> bool {
        self.if_ids.iter().all(|&i| i == 0) && self.marks.iter().all(|m| m.m == 0)
    }
}

/// How mirrored SAs become [`SaConfig`]s.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    /// What belongs to the data plane.
    pub scope: Scope,
    /// This gateway's addresses: an SA to one of them is inbound, from one of them outbound
    /// (used when the kernel gives no `XFRMA_SA_DIR`).
    pub local_addrs: Vec<IpAddr>,
    /// Shards that may own outbound SAs of reqids not in `reqid_shards`: an SA of `reqid`
    /// goes to `outbound_shards[reqid % len]` (shard 0 when empty), so every SA of one reqid
    /// (one IKE child SA and all its rekeys) is owned by the same shard.
    pub outbound_shards: Vec<ShardId>,
    /// The shard that owns the (not per-CPU) outbound SAs of a reqid. The data plane must
    /// bring that reqid's policy traffic to this shard (a steering rule on the policy's
    /// selector); on other shards it is dropped as `EspNoSa`, never sent in clear.
    pub reqid_shards: BTreeMap<u32, ShardId>,
    /// Per-CPU SAs (`XFRMA_SA_PCPU`, RFC 9611): the SA of CPU `n` is owned by
    /// `pcpu_shards[n % len]` (when empty: `outbound_shards[n % len]`). A policy then has an
    /// SA on each shard that has one; a shard without uses the policy's SA without CPU, if it
    /// owns it.
    pub pcpu_shards: Vec<ShardId>,
    /// AEAD provider of mirrored SAs.
    pub provider: ProviderRef,
    /// Outer TTL of tunnel-mode packets.
    pub outer_ttl: u8,
    /// Outer MTU of outbound SAs.
    pub mtu: Option<u16>,
    /// Fate of packets no mirrored policy matches.
    pub default_action: DefaultAction,
}

impl MirrorConfig {
    /// The shard that owns the outbound SAs of `reqid` without CPU.
    pub fn reqid_shard(&self, reqid: u32) -> ShardId {
        match self.reqid_shards.get(&reqid) {
            Some(&s) => s,
            None => pick(&self.outbound_shards, reqid),
        }
    }

    /// The CPU whose per-CPU SAs `shard` owns (the first that maps onto it), if any.
    pub fn cpu_of_shard(&self, shard: ShardId) -> Option<u32> {
        let map = if self.pcpu_shards.is_empty() { &self.outbound_shards } else { &self.pcpu_shards };
        map.iter().position(|&s| s == shard).and_then(|i| u32::try_from(i).ok())
    }

    /// The shard that owns the per-CPU outbound SA of CPU `cpu`.
    pub fn pcpu_shard(&self, cpu: u32) -> ShardId {
        if self.pcpu_shards.is_empty() {
            pick(&self.outbound_shards, cpu)
        } else {
            pick(&self.pcpu_shards, cpu)
        }
    }

    /// A configuration with `scope` and `local_addrs`, one shard, the default provider, TTL 64,
    /// no MTU, default bypass.
    pub fn new(scope: Scope, local_addrs: Vec<IpAddr>) -> Self {
        Self {
            scope,
            local_addrs,
            outbound_shards: vec![0],
            reqid_shards: BTreeMap::new(),
            pcpu_shards: Vec::new(),
            provider: default_provider(),
            outer_ttl: 64,
            mtu: None,
            default_action: DefaultAction::Bypass,
        }
    }
}

fn pick(shards: &[ShardId], n: u32) -> ShardId {
    if shards.is_empty() { 0 } else { shards[n as usize % shards.len()] }
}

/// Why a message was not mirrored. Every refusal is counted ([`MirrorStats::refused`] and by
/// [`Refusal::kind`]) and kept in [`Mirror::recent_refusals`] for the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Undecodable bytes.
    #[error("undecodable XFRM message type {kind:#x}: {source}")]
    Decode {
        /// Message type.
        kind: u16,
        /// Why.
        source: DecodeError,
    },
    /// An outbound SA that kernel traffic could also use: two senders on one key would reuse
    /// nonces. Scope it with an if_id or mark of [`Scope`].
    #[error(
        "SA {spi:#010x} to {daddr}: outbound SA not scoped to the data plane (if_id {if_id:?}, mark {mark:?}); the kernel could encrypt with it too, so it is not mirrored (configure strongSwan if_id_out or a mark)"
    )]
    UnscopedOutbound {
        /// SPI.
        spi: u32,
        /// Destination.
        daddr: IpAddr,
        /// Its if_id.
        if_id: Option<u32>,
        /// Its mark.
        mark: Option<Mark>,
    },
    /// An SA or policy outside the scope (the host's own IPsec): ignored.
    #[error("{what} outside the data plane's scope (if_id {if_id:?}, mark {mark:?})")]
    OutOfScope {
        /// "SA 0x…" or "policy …".
        what: String,
        /// Its if_id.
        if_id: Option<u32>,
        /// Its mark.
        mark: Option<Mark>,
    },
    /// Not ESP.
    #[error("SA {spi:#010x}: protocol {proto} is not ESP")]
    UnsupportedProto {
        /// SPI.
        spi: u32,
        /// Protocol.
        proto: u8,
    },
    /// Not transport or tunnel mode.
    #[error("SA {spi:#010x}: mode {mode} is not transport (0) or tunnel (1)")]
    UnsupportedMode {
        /// SPI.
        spi: u32,
        /// `XFRM_MODE_*`.
        mode: u8,
    },
    /// An algorithm wirespeed does not run.
    #[error(
        "SA {spi:#010x}: algorithm {name} ({key_bits}-bit key material, {icv_bits}-bit ICV) is not supported (rfc4106(gcm(aes)) 128/256 or rfc7539esp(chacha20,poly1305), 128-bit ICV)"
    )]
    UnsupportedAlgorithm {
        /// SPI.
        spi: u32,
        /// Kernel name.
        name: String,
        /// Key material length in bits.
        key_bits: usize,
        /// ICV length in bits.
        icv_bits: u32,
    },
    /// A UDP encapsulation other than RFC 3948.
    #[error("SA {spi:#010x}: UDP encapsulation type {encap_type} is not ESP-in-UDP (2)")]
    UnsupportedEncap {
        /// SPI.
        spi: u32,
        /// `UDP_ENCAP_*`.
        encap_type: u16,
    },
    /// Neither `XFRMA_SA_DIR` nor the local addresses tell the direction.
    #[error(
        "SA {spi:#010x} {saddr} -> {daddr}: direction unknown (neither address is local, no XFRMA_SA_DIR)"
    )]
    UnknownDirection {
        /// SPI.
        spi: u32,
        /// Source.
        saddr: IpAddr,
        /// Destination.
        daddr: IpAddr,
    },
    /// Another mirrored SA of the same direction has this SPI.
    #[error("SA {spi:#010x}: another mirrored {direction} SA has this SPI")]
    DuplicateSpi {
        /// SPI.
        spi: u32,
        /// "inbound" or "outbound".
        direction: &'static str,
    },
    /// An update that would change an SA already in use (its sequence numbers would restart
    /// under the same key); IKE rekeys with new SAs instead.
    #[error("SA {spi:#010x}: update of an active SA refused (sequence numbers would restart under its key)")]
    ActiveSaChanged {
        /// SPI.
        spi: u32,
    },
    /// An outbound SA that already carried packets when the mirror first saw it (the kernel
    /// state shows counters or an outbound sequence number, e.g. after a data-plane restart):
    /// the sequence numbers used since the last report are unknown, so continuing could reuse
    /// nonces. [`crate::Feedback::retire_used`] asks the IKE daemon to rekey it.
    #[error(
        "SA {spi:#010x}: outbound SA already used ({packets} packets, sequence {seq}); not continued under the same key, rekey requested"
    )]
    UsedOutbound {
        /// SPI.
        spi: u32,
        /// Kernel packet counter.
        packets: u64,
        /// Kernel outbound sequence number.
        seq: u64,
        /// How to name it in an EXPIRE.
        sa: SaRef,
    },
    /// An outbound SA that was already in the kernel when the mirror started (its initial
    /// dump): a previous run of this data plane may have sent under its key after its last
    /// counter report (a crash, a kill), so its sequence numbers cannot be trusted even when
    /// the kernel shows none. [`crate::Feedback::retire_used`] asks the IKE daemon to rekey it.
    #[error(
        "SA {spi:#010x}: outbound SA present before this data plane started; maybe used by an earlier run, not continued under the same key, rekey requested"
    )]
    PreexistingOutbound {
        /// SPI.
        spi: u32,
        /// How to name it in an EXPIRE.
        sa: SaRef,
    },
    /// The SA is not a valid wirespeed SA.
    #[error("SA {spi:#010x}: {source}")]
    Invalid {
        /// SPI.
        spi: u32,
        /// Why.
        source: SaError,
    },
    /// An address family that is not IPv4/IPv6.
    #[error("{what}: {source}")]
    BadAddress {
        /// Which object.
        what: String,
        /// Why.
        source: DecodeError,
    },
    /// A selector wirespeed's SPD cannot express (port masks other than 0/0xffff, AF_UNSPEC).
    #[error("{what}: selector not expressible (family {family}, port masks {sport_mask:#x}/{dport_mask:#x})")]
    UnsupportedSelector {
        /// Which object.
        what: String,
        /// Family.
        family: u16,
        /// Source port mask.
        sport_mask: u16,
        /// Destination port mask.
        dport_mask: u16,
    },
    /// A policy template other than ESP (AH, IPComp) that is not optional.
    #[error("policy {index}: template of protocol {proto} is not supported (only ESP)")]
    UnsupportedTemplate {
        /// Policy index.
        index: u32,
        /// Protocol.
        proto: u8,
    },
}

impl Refusal {
    /// A short stable name for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Decode { .. } => "decode",
            Refusal::UnscopedOutbound { .. } => "unscoped_outbound",
            Refusal::OutOfScope { .. } => "out_of_scope",
            Refusal::UnsupportedProto { .. } => "unsupported_proto",
            Refusal::UnsupportedMode { .. } => "unsupported_mode",
            Refusal::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
            Refusal::UnsupportedEncap { .. } => "unsupported_encap",
            Refusal::UnknownDirection { .. } => "unknown_direction",
            Refusal::DuplicateSpi { .. } => "duplicate_spi",
            Refusal::ActiveSaChanged { .. } => "active_sa_changed",
            Refusal::UsedOutbound { .. } => "used_outbound",
            Refusal::PreexistingOutbound { .. } => "preexisting_outbound",
            Refusal::Invalid { .. } => "invalid",
            Refusal::BadAddress { .. } => "bad_address",
            Refusal::UnsupportedSelector { .. } => "unsupported_selector",
            Refusal::UnsupportedTemplate { .. } => "unsupported_template",
        }
    }
}

/// Identity of a kernel SA: what the kernel's own lookup (`xfrm_state_lookup`) compares. The
/// if_id is not part of it: an UPDSA adds it to an ALLOCSPI placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SaKey {
    /// Destination address.
    pub daddr: IpAddr,
    /// SPI.
    pub spi: u32,
    /// Protocol.
    pub proto: u8,
    /// Mark (zero when none).
    pub mark: Mark,
}

/// An SA mirrored into the data plane, with where it came from.
pub struct MirroredSa {
    /// The wirespeed SA (its key material is wiped when this is dropped).
    pub config: SaConfig,
    /// Kernel identity.
    pub key: SaKey,
    /// Source address.
    pub saddr: IpAddr,
    /// Request id (binds it to policy templates).
    pub reqid: u32,
    /// `XFRMA_IF_ID` (0 none).
    pub if_id: u32,
    /// `XFRMA_SA_PCPU`: the CPU this per-CPU SA serves (RFC 9611), mapped onto a shard by
    /// [`MirrorConfig::pcpu_shard`].
    pub pcpu: Option<u32>,
    /// Sequence number of the kernel state. Outbound: the last one sent, always 0 for a
    /// mirrored SA (a used outbound SA is refused, [`Refusal::UsedOutbound`], and so is any
    /// outbound SA of the initial dump, [`Refusal::PreexistingOutbound`]), so numbering
    /// starts at 1. Inbound: the highest one seen, to resume the replay window from
    /// ([`wirespeed_stages::esp::SaState::resume_inbound`]).
    pub seq: u64,
    /// The kernel SA's ESN replay state shape, `(bmp_len, replay_window)`, when it has one
    /// (`XFRMA_REPLAY_ESN_VAL`); `None`: the legacy `struct xfrm_replay_state`. Feedback
    /// reports sequence numbers in this shape ([`MirroredSa::replay_value`]).
    pub kernel_replay_esn: Option<(u32, u32)>,
    /// `curlft.add_time` of the kernel SA: counters pushed back must carry it unchanged (the
    /// kernel's time limits count from it).
    pub kernel_add_time: u64,
    /// The kernel lifetime (use-time limits are enforced by the kernel, from the counters
    /// that [`crate::msg::newae`] pushes).
    pub kernel_lifetime: LifetimeCfg,
    /// Order of installation (larger is newer).
    pub order: u64,
}

impl Drop for MirroredSa {
    fn drop(&mut self) {
        self.config.keymat.zeroize();
    }
}

impl std::fmt::Debug for MirroredSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirroredSa")
            .field("config", &self.config)
            .field("key", &self.key)
            .field("saddr", &self.saddr)
            .field("reqid", &self.reqid)
            .field("pcpu", &self.pcpu)
            .field("seq", &self.seq)
            .field("kernel_replay_esn", &self.kernel_replay_esn)
            .field("order", &self.order)
            .finish()
    }
}

impl MirroredSa {
    /// Whether it encrypts.
    pub fn is_outbound(&self) -> bool {
        matches!(self.config.direction, Direction::Outbound { .. })
    }

    /// The replay value a `NEWAE` reports for this SA having reached `seq` (outbound: the last
    /// sequence number sent; inbound: the highest received), in the kernel SA's shape.
    pub fn replay_value(&self, seq: u64) -> ReplayValue {
        let (hi, lo) = ((seq >> 32) as u32, seq as u32);
        let out = self.is_outbound();
        match self.kernel_replay_esn {
            Some((bmp_len, replay_window)) => ReplayValue::Esn(ReplayStateEsn {
                bmp_len,
                replay_window,
                oseq: if out { lo } else { 0 },
                oseq_hi: if out { hi } else { 0 },
                seq: if out { 0 } else { lo },
                seq_hi: if out { 0 } else { hi },
            }),
            None => ReplayValue::Legacy(ReplayState {
                oseq: if out { lo } else { 0 },
                seq: if out { 0 } else { lo },
                bitmap: 0,
            }),
        }
    }

    /// How feedback messages name it.
    pub fn sa_ref(&self) -> SaRef {
        SaRef {
            id: UsersaId {
                daddr: wire::from_ip(self.key.daddr),
                spi: self.key.spi,
                family: wire::family_of(self.key.daddr),
                proto: self.key.proto,
            },
            saddr: wire::from_ip(self.saddr),
            reqid: self.reqid,
            mark: (self.key.mark.m != 0).then_some(self.key.mark),
        }
    }
}

/// State of one kernel SA in the mirror.
#[derive(Debug)]
pub enum SaEntry {
    /// No keys yet: an ALLOCSPI or ACQUIRE larval SA that an UPDSA will fill.
    Placeholder,
    /// In the data plane.
    Active(Box<MirroredSa>),
    /// Not mirrored, and why.
    Refused(Refusal),
}

#[derive(Debug)]
struct Entry {
    state: SaEntry,
    generation: u64,
}

#[derive(Debug)]
struct PolicyEntry {
    msg: PolicyMsg,
    generation: u64,
}

/// Counters of a [`Mirror`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Messages given to [`Mirror::apply`] (and datagram messages decoded or not).
    pub messages: u64,
    /// Refusals of any kind.
    pub refused: u64,
    /// Refusals by [`Refusal::kind`].
    pub refused_by_kind: BTreeMap<&'static str, u64>,
    /// ACQUIREs the kernel raised (kernel traffic hit a policy without SA).
    pub kernel_acquires: u64,
    /// EXPIREs the kernel raised (time limits run in the kernel).
    pub kernel_expires: u64,
    /// `NLMSG_ERROR`s with a non-zero errno.
    pub netlink_errors: u64,
    /// Deletions of SAs or policies the mirror did not know.
    pub unknown_deletes: u64,
    /// Messages of no interest (GETSA requests, NEWAE, MAPPING…).
    pub ignored: u64,
}

/// What [`Mirror::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The desired SA set or SPD changed: publish a new version.
    Changed,
    /// Recorded, nothing to publish.
    Unchanged,
    /// `NLMSG_DONE`: a dump ended.
    DumpDone,
}

const RECENT: usize = 64;

/// Turns XFRM messages into the SA set and outbound SPD of the data plane.
///
/// Feed it a dump (`GETSA`, `GETPOLICY`) and then the multicast events, in order. After each
/// [`Applied::Changed`], [`Mirror::configs`] and [`Mirror::spd`] are the new desired state.
#[derive(Debug)]
pub struct Mirror {
    cfg: MirrorConfig,
    sas: BTreeMap<SaKey, Entry>,
    /// Active SAs by (SPI, outbound): duplicate checks and [`Mirror::find`] in O(1).
    index: HashMap<(u32, bool), SaKey>,
    policies: BTreeMap<(u8, u32), PolicyEntry>,
    order: u64,
    version: u64,
    generation: u64,
    stats: MirrorStats,
    recent: VecDeque<Refusal>,
}

fn ip(what: impl FnOnce() -> String, family: u16, raw: &[u8; 16]) -> Result<IpAddr, Refusal> {
    wire::to_ip(family, raw).map_err(|source| Refusal::BadAddress { what: what(), source })
}

/// A kernel selector as a wirespeed [`Selector`]; `None` for a wildcard.
fn selector(what: impl Fn() -> String, s: &XfrmSelector) -> Result<Option<Selector>, Refusal> {
    let unsupported = || Refusal::UnsupportedSelector {
        what: what(),
        family: s.family,
        sport_mask: s.sport_mask,
        dport_mask: s.dport_mask,
    };
    let ports = |port: u16, mask: u16| match mask {
        0 => Ok((0, u16::MAX)),
        0xffff => Ok((port, port)),
        _ => Err(unsupported()),
    };
    if s.family == 0 {
        return if s.prefixlen_d == 0
            && s.prefixlen_s == 0
            && s.proto == 0
            && s.sport_mask == 0
            && s.dport_mask == 0
        {
            Ok(None)
        } else {
            Err(unsupported())
        };
    }
    let src = ip(&what, s.family, &s.saddr)?;
    let dst = ip(&what, s.family, &s.daddr)?;
    Ok(Some(Selector {
        src: IpPrefix::new(src, s.prefixlen_s),
        dst: IpPrefix::new(dst, s.prefixlen_d),
        proto: (s.proto != 0).then_some(s.proto),
        src_ports: ports(s.sport, s.sport_mask)?,
        dst_ports: ports(s.dport, s.dport_mask)?,
    }))
}

fn limit(v: u64) -> Option<u64> {
    (v != XFRM_INF).then_some(v)
}

fn seconds(v: u64) -> Option<Duration> {
    (v != 0).then(|| Duration::from_secs(v))
}

fn sa_key(id_daddr: IpAddr, spi: u32, proto: u8, attrs: &Attrs) -> SaKey {
    SaKey { daddr: id_daddr, spi, proto, mark: attrs.mark.unwrap_or_default() }
}

impl Mirror {
    /// An empty mirror.
    pub fn new(cfg: MirrorConfig) -> Self {
        Self {
            cfg,
            sas: BTreeMap::new(),
            index: HashMap::new(),
            policies: BTreeMap::new(),
            order: 0,
            version: 0,
            generation: 0,
            stats: MirrorStats::default(),
            recent: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MirrorConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &MirrorStats {
        &self.stats
    }

    /// Incremented on every change of the desired state.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The last refusals (at most 64), oldest first, for the log.
    pub fn recent_refusals(&self) -> impl Iterator<Item = &Refusal> {
        self.recent.iter()
    }

    /// Takes the refusals recorded since the last call (for the log).
    pub fn drain_refusals(&mut self) -> impl Iterator<Item = Refusal> + '_ {
        self.recent.drain(..)
    }

    fn refuse(&mut self, r: Refusal) -> Refusal {
        self.stats.refused += 1;
        *self.stats.refused_by_kind.entry(r.kind()).or_default() += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(r.clone());
        r
    }

    /// Every SA the mirror knows, by kernel identity.
    pub fn entries(&self) -> impl Iterator<Item = (&SaKey, &SaEntry)> {
        self.sas.iter().map(|(k, e)| (k, &e.state))
    }

    /// The SAs in the data plane.
    pub fn active(&self) -> impl Iterator<Item = &MirroredSa> {
        self.sas.values().filter_map(|e| match &e.state {
            SaEntry::Active(sa) => Some(&**sa),
            _ => None,
        })
    }

    /// The active SA with this SPI and direction.
    pub fn find(&self, spi: u32, outbound: bool) -> Option<&MirroredSa> {
        match &self.sas.get(self.index.get(&(spi, outbound))?)?.state {
            SaEntry::Active(sa) => Some(sa),
            _ => None,
        }
    }

    /// Number of placeholders (SPIs allocated, keys not yet installed).
    pub fn placeholders(&self) -> usize {
        self.sas.values().filter(|e| matches!(e.state, SaEntry::Placeholder)).count()
    }

    /// The mirrored policies (in scope), by (direction, index).
    pub fn policies(&self) -> impl Iterator<Item = &PolicyMsg> {
        self.policies.values().map(|p| &p.msg)
    }

    /// The SA configurations of the data plane (keys copied: drop them when built).
    pub fn configs(&self) -> Vec<SaConfig> {
        self.active().map(|sa| sa.config.clone()).collect()
    }

    /// Decodes and applies every message of a datagram; returns whether anything changed and
    /// whether a dump ended. Undecodable messages are refused and counted; the rest of the
    /// datagram after a framing error is dropped with it.
    pub fn apply_datagram(&mut self, buf: &[u8]) -> (bool, bool) {
        let (mut changed, mut done) = (false, false);
        for item in msg::messages(buf) {
            match item {
                Err(source) => {
                    self.stats.messages += 1;
                    self.refuse(Refusal::Decode { kind: 0, source });
                }
                Ok((h, payload)) => match XfrmMsg::decode(h.kind, payload) {
                    Err(source) => {
                        self.stats.messages += 1;
                        self.refuse(Refusal::Decode { kind: h.kind, source });
                    }
                    Ok(m) => match self.apply(&m) {
                        Ok(Applied::Changed) => changed = true,
                        Ok(Applied::DumpDone) => done = true,
                        Ok(Applied::Unchanged) | Err(_) => {}
                    },
                },
            }
        }
        (changed, done)
    }

    /// Retires every active outbound SA: call once, when the initial dump has been applied
    /// ([`crate::Follower`] does). Such an SA was installed before this data plane started, so
    /// an earlier run may have sent under its key after its last counter report; continuing
    /// from the kernel's sequence number could reuse AES-GCM/ChaCha20 nonces. Each becomes a
    /// [`Refusal::PreexistingOutbound`], and [`crate::Feedback::retire_used`] has the daemon
    /// rekey it. Inbound SAs stay. Returns [`Applied::Changed`] when any was retired.
    pub fn retire_preexisting_outbound(&mut self) -> Applied {
        let keys: Vec<SaKey> = self
            .sas
            .iter()
            .filter_map(|(k, e)| match &e.state {
                SaEntry::Active(sa) if sa.is_outbound() => Some(*k),
                _ => None,
            })
            .collect();
        for k in &keys {
            let Some(Entry { state: SaEntry::Active(sa), generation }) = self.sas.get(k) else { continue };
            let (spi, sa_ref, generation) = (sa.key.spi, sa.sa_ref(), *generation);
            let r = self.refuse(Refusal::PreexistingOutbound { spi, sa: sa_ref });
            self.put(*k, Entry { state: SaEntry::Refused(r), generation });
        }
        self.changed_if(!keys.is_empty())
    }

    /// Starts a resynchronisation (after a multicast overflow, `ENOBUFS`): dump again, apply the
    /// dump, then [`Mirror::end_resync`] drops what the dump did not contain.
    pub fn begin_resync(&mut self) {
        self.generation += 1;
    }

    /// Ends a resynchronisation: forgets SAs and policies not seen since [`Mirror::begin_resync`].
    pub fn end_resync(&mut self) -> Applied {
        let g = self.generation;
        let lost_active =
            self.sas.values().any(|e| e.generation < g && matches!(e.state, SaEntry::Active(_)));
        self.sas.retain(|_, e| e.generation >= g);
        self.reindex();
        let policies = self.policies.len();
        self.policies.retain(|_, p| p.generation >= g);
        self.changed_if(lost_active || policies != self.policies.len())
    }

    /// Applies one message.
    pub fn apply(&mut self, m: &XfrmMsg) -> Result<Applied, Refusal> {
        self.stats.messages += 1;
        match m {
            XfrmMsg::NewSa(sa) | XfrmMsg::UpdSa(sa) => self.upsert_sa(sa),
            XfrmMsg::AllocSpi { sa, .. } => self.upsert_sa(sa),
            XfrmMsg::DelSa { id, attrs } => {
                let daddr = ip(|| format!("SA {:#010x}", id.spi), id.family, &id.daddr)?;
                Ok(self.remove_sa(&sa_key(daddr, id.spi, id.proto, attrs)))
            }
            XfrmMsg::Expire { sa, hard } => {
                self.stats.kernel_expires += 1;
                if !hard {
                    return Ok(Applied::Unchanged);
                }
                // A hard expiry deletes the kernel SA without a DELSA notification.
                let info = &sa.info;
                let daddr = ip(|| format!("SA {:#010x}", info.id.spi), info.family, &info.id.daddr)?;
                Ok(self.remove_sa(&sa_key(daddr, info.id.spi, info.id.proto, &sa.attrs)))
            }
            XfrmMsg::FlushSa { proto } => {
                let all = *proto == 0 || *proto == 255;
                let active =
                    |m: &Self| m.sas.values().filter(|e| matches!(e.state, SaEntry::Active(_))).count();
                let before = active(self);
                self.sas.retain(|k, _| !(all || k.proto == *proto));
                self.reindex();
                Ok(self.changed_if(active(self) != before))
            }
            XfrmMsg::NewPolicy(p) | XfrmMsg::UpdPolicy(p) => self.upsert_policy(p),
            XfrmMsg::DelPolicy { id, attrs } => {
                let key = if id.index != 0 {
                    Some((id.dir, id.index))
                } else {
                    self.policies
                        .iter()
                        .find(|(_, p)| {
                            p.msg.info.sel == id.sel
                                && p.msg.info.dir == id.dir
                                && p.msg.attrs.mark == attrs.mark
                                && p.msg.attrs.if_id == attrs.if_id
                        })
                        .map(|(k, _)| *k)
                };
                match key.and_then(|k| self.policies.remove(&k)) {
                    Some(_) => Ok(self.changed_if(true)),
                    None => {
                        self.stats.unknown_deletes += 1;
                        Ok(Applied::Unchanged)
                    }
                }
            }
            XfrmMsg::PolExpire { policy, hard } => {
                if *hard && self.policies.remove(&(policy.info.dir, policy.info.index)).is_some() {
                    return Ok(self.changed_if(true));
                }
                Ok(Applied::Unchanged)
            }
            XfrmMsg::FlushPolicy { policy_type } => {
                if policy_type.unwrap_or(0) != 0 {
                    return Ok(Applied::Unchanged);
                }
                let had = !self.policies.is_empty();
                self.policies.clear();
                Ok(self.changed_if(had))
            }
            XfrmMsg::Acquire { .. } => {
                self.stats.kernel_acquires += 1;
                Ok(Applied::Unchanged)
            }
            XfrmMsg::Done => Ok(Applied::DumpDone),
            XfrmMsg::Error { errno, .. } => {
                if *errno != 0 {
                    self.stats.netlink_errors += 1;
                }
                Ok(Applied::Unchanged)
            }
            XfrmMsg::NewAe { .. } | XfrmMsg::Other { .. } => {
                self.stats.ignored += 1;
                Ok(Applied::Unchanged)
            }
        }
    }

    /// Inserts an entry, keeping the index of active SAs.
    fn put(&mut self, key: SaKey, e: Entry) -> Option<Entry> {
        if let SaEntry::Active(sa) = &e.state {
            self.index.insert((sa.key.spi, sa.is_outbound()), key);
        }
        let prev = self.sas.insert(key, e);
        self.unindex(&key, prev.as_ref());
        prev
    }

    /// Removes an entry, keeping the index of active SAs.
    fn take(&mut self, key: &SaKey) -> Option<Entry> {
        let prev = self.sas.remove(key);
        self.unindex(key, prev.as_ref());
        prev
    }

    /// Drops the index entry of a replaced or removed active SA, unless `key` is active again.
    fn unindex(&mut self, key: &SaKey, prev: Option<&Entry>) {
        if let Some(Entry { state: SaEntry::Active(old), .. }) = prev {
            let still = matches!(self.sas.get(key), Some(Entry { state: SaEntry::Active(n), .. }) if n.is_outbound() == old.is_outbound());
            if !still && self.index.get(&(old.key.spi, old.is_outbound())) == Some(key) {
                self.index.remove(&(old.key.spi, old.is_outbound()));
            }
        }
    }

    fn reindex(&mut self) {
        self.index = self
            .sas
            .iter()
            .filter_map(|(k, e)| match &e.state {
                SaEntry::Active(sa) => Some(((sa.key.spi, sa.is_outbound()), *k)),
                _ => None,
            })
            .collect();
    }

    fn changed_if(&mut self, changed: bool) -> Applied {
        if changed {
            self.version += 1;
            Applied::Changed
        } else {
            Applied::Unchanged
        }
    }

    fn remove_sa(&mut self, key: &SaKey) -> Applied {
        match self.take(key) {
            Some(Entry { state: SaEntry::Active(_), .. }) => self.changed_if(true),
            Some(_) => Applied::Unchanged,
            None => {
                self.stats.unknown_deletes += 1;
                Applied::Unchanged
            }
        }
    }

    fn upsert_sa(&mut self, sa: &SaMsg) -> Result<Applied, Refusal> {
        let info = &sa.info;
        let spi = info.id.spi;
        let daddr = match ip(|| format!("SA {spi:#010x}"), info.family, &info.id.daddr) {
            Ok(a) => a,
            Err(r) => return Err(self.refuse(r)),
        };
        let key = sa_key(daddr, spi, info.id.proto, &sa.attrs);
        let generation = self.generation;
        let is_placeholder = sa.attrs.aead.is_none() && sa.attrs.crypt.is_none() && sa.attrs.auth.is_none();
        if is_placeholder {
            // An SPI reservation (ALLOCSPI) or an ACQUIRE larval state: no keys yet.
            let prev = self.put(key, Entry { state: SaEntry::Placeholder, generation });
            return Ok(self.changed_if(matches!(prev, Some(Entry { state: SaEntry::Active(_), .. }))));
        }
        let converted = self.convert(&key, sa);
        match converted {
            Ok(mut new) => {
                if let Some(e @ Entry { state: SaEntry::Refused(Refusal::PreexistingOutbound { .. }), .. }) =
                    self.sas.get_mut(&key)
                {
                    // Seen again in a resync dump: it stays retired until the daemon deletes it.
                    e.generation = generation;
                    return Ok(Applied::Unchanged);
                }
                if let Some(Entry { state: SaEntry::Active(old), .. }) = self.sas.get_mut(&key) {
                    // Seen again (a dump during resync, or an idempotent UPDSA). Its sequence
                    // numbers moved on (our own NEWAE reports): not a change of the SA.
                    new.config.resume_seq = old.config.resume_seq;
                    if old.config == new.config {
                        if let Some(e) = self.sas.get_mut(&key) {
                            e.generation = generation;
                        }
                        return Ok(Applied::Unchanged);
                    }
                    return Err(self.refuse(Refusal::ActiveSaChanged { spi }));
                }
                let outbound = new.is_outbound();
                if outbound && (new.seq > 0 || info.curlft.packets > 0) {
                    // Someone (this data plane before a restart, reporting through NEWAE, or the
                    // kernel) already sent under this key, maybe beyond what the kernel state
                    // says: continuing could reuse sequence numbers, i.e. GCM/ChaCha nonces.
                    let r = self.refuse(Refusal::UsedOutbound {
                        spi,
                        packets: info.curlft.packets,
                        seq: new.seq,
                        sa: new.sa_ref(),
                    });
                    self.put(key, Entry { state: SaEntry::Refused(r.clone()), generation });
                    return Err(r);
                }
                if self.index.get(&(spi, outbound)).is_some_and(|k| *k != key) {
                    let r = self.refuse(Refusal::DuplicateSpi {
                        spi,
                        direction: if outbound { "outbound" } else { "inbound" },
                    });
                    self.put(key, Entry { state: SaEntry::Refused(r.clone()), generation });
                    return Err(r);
                }
                self.order += 1;
                let mut new = new;
                new.order = self.order;
                self.put(key, Entry { state: SaEntry::Active(Box::new(new)), generation });
                Ok(self.changed_if(true))
            }
            Err(r) => {
                let r = self.refuse(r);
                let prev = self.put(key, Entry { state: SaEntry::Refused(r.clone()), generation });
                if matches!(prev, Some(Entry { state: SaEntry::Active(_), .. })) {
                    self.version += 1;
                }
                Err(r)
            }
        }
    }

    /// Converts a kernel SA into a wirespeed one, enforcing the scope rule.
    fn convert(&self, key: &SaKey, sa: &SaMsg) -> Result<MirroredSa, Refusal> {
        let info: &UsersaInfo = &sa.info;
        let a = &sa.attrs;
        let spi = info.id.spi;
        if info.id.proto != IPPROTO_ESP {
            return Err(Refusal::UnsupportedProto { spi, proto: info.id.proto });
        }
        let saddr = ip(|| format!("SA {spi:#010x}"), info.family, &info.saddr)?;
        let daddr = key.daddr;
        let outbound = match a.sa_dir {
            Some(1) => false,
            Some(2) => true,
            _ if self.cfg.local_addrs.contains(&daddr) => false,
            _ if self.cfg.local_addrs.contains(&saddr) => true,
            _ => return Err(Refusal::UnknownDirection { spi, saddr, daddr }),
        };
        if !self.cfg.scope.admits(a.if_id, a.mark) {
            return Err(if outbound {
                Refusal::UnscopedOutbound { spi, daddr, if_id: a.if_id, mark: a.mark }
            } else {
                Refusal::OutOfScope { what: format!("inbound SA {spi:#010x}"), if_id: a.if_id, mark: a.mark }
            });
        }
        if let Some(name) = a.crypt.as_ref().or(a.auth.as_ref()).or(a.comp.as_ref()) {
            return Err(Refusal::UnsupportedAlgorithm { spi, name: name.clone(), key_bits: 0, icv_bits: 0 });
        }
        let aead = a.aead.as_ref().ok_or(Refusal::UnsupportedAlgorithm {
            spi,
            name: String::from("(none)"),
            key_bits: 0,
            icv_bits: 0,
        })?;
        let algorithm = match (aead.name.as_str(), aead.key.len(), aead.icv_bits) {
            ("rfc4106(gcm(aes))", 20, 128) => AeadAlgorithm::Aes128Gcm,
            ("rfc4106(gcm(aes))", 36, 128) => AeadAlgorithm::Aes256Gcm,
            ("rfc7539esp(chacha20,poly1305)", 36, 128) => AeadAlgorithm::ChaCha20Poly1305,
            _ => {
                return Err(Refusal::UnsupportedAlgorithm {
                    spi,
                    name: aead.name.clone(),
                    key_bits: aead.key.len() * 8,
                    icv_bits: aead.icv_bits,
                });
            }
        };
        let mode = match info.mode {
            wire::MODE_TRANSPORT => EspMode::Transport,
            wire::MODE_TUNNEL if outbound => EspMode::Tunnel { local: saddr, remote: daddr },
            wire::MODE_TUNNEL => EspMode::Tunnel { local: daddr, remote: saddr },
            mode => return Err(Refusal::UnsupportedMode { spi, mode }),
        };
        let udp_encap = match a.encap {
            None => None,
            Some(e) if e.encap_type == wire::UDP_ENCAP_ESPINUDP => {
                // The kernel's sport/dport are those of packets this SA sends (outbound) or
                // receives (inbound); wirespeed's are those it writes.
                if outbound {
                    Some(UdpEncap { src_port: e.sport, dst_port: e.dport })
                } else {
                    Some(UdpEncap { src_port: e.dport, dst_port: e.sport })
                }
            }
            Some(e) => return Err(Refusal::UnsupportedEncap { spi, encap_type: e.encap_type }),
        };
        let esn = info.flags & wire::STATE_ESN != 0;
        let mut replay_window = match a.replay_esn {
            Some(r) => r.replay_window,
            None => u32::from(info.replay_window),
        };
        if outbound && esn && replay_window == 0 {
            // The window is an inbound notion; wirespeed wants one on every ESN SA.
            replay_window = DEFAULT_WINDOW;
        }
        let seq = match (a.replay_esn, a.replay) {
            (Some(r), _) if outbound => u64::from(r.oseq_hi) << 32 | u64::from(r.oseq),
            (Some(r), _) => u64::from(r.seq_hi) << 32 | u64::from(r.seq),
            (None, Some(r)) if outbound => u64::from(r.oseq),
            (None, Some(r)) => u64::from(r.seq),
            (None, None) => 0,
        };
        let lft = &info.lft;
        let lifetime = Lifetime {
            soft: Limits {
                packets: limit(lft.soft_packet_limit),
                bytes: limit(lft.soft_byte_limit),
                time: seconds(lft.soft_add_expires_seconds),
            },
            hard: Limits {
                packets: limit(lft.hard_packet_limit),
                bytes: limit(lft.hard_byte_limit),
                time: seconds(lft.hard_add_expires_seconds),
            },
        };
        let sel = if outbound { None } else { selector(|| format!("SA {spi:#010x}"), &info.sel)? };
        let direction = if outbound {
            let shard = match a.pcpu {
                Some(cpu) => self.cfg.pcpu_shard(cpu),
                None => self.cfg.reqid_shard(info.reqid),
            };
            Direction::Outbound { shard }
        } else {
            Direction::Inbound
        };
        let config = SaConfig::new(spi, direction, algorithm, &aead.key, mode)
            .with_provider(self.cfg.provider.clone())
            .with_udp_encap(udp_encap)
            .with_esn(esn)
            .with_replay_window(replay_window)
            .with_lifetime(lifetime)
            .with_outer_ttl(self.cfg.outer_ttl)
            .with_mtu(if outbound { self.cfg.mtu } else { None })
            .with_selector(sel)
            // An inbound SA a previous run of this data plane used resumes its window where
            // that run's last report left it (an outbound one is refused below instead).
            .with_resume_seq(if outbound { 0 } else { seq });
        let mut out = MirroredSa {
            config,
            key: *key,
            saddr,
            reqid: info.reqid,
            if_id: a.if_id.unwrap_or(0),
            pcpu: a.pcpu,
            seq,
            kernel_replay_esn: a.replay_esn.map(|r| (r.bmp_len, r.replay_window)),
            kernel_add_time: info.curlft.add_time,
            kernel_lifetime: *lft,
            order: 0,
        };
        if let Err(source) = SecurityAssociation::new(&out.config) {
            out.config.keymat.zeroize();
            return Err(Refusal::Invalid { spi, source });
        }
        Ok(out)
    }

    fn upsert_policy(&mut self, p: &PolicyMsg) -> Result<Applied, Refusal> {
        let index = p.info.index;
        if !self.cfg.scope.admits(p.attrs.if_id, p.attrs.mark) {
            return Err(self.refuse(Refusal::OutOfScope {
                what: format!("policy {index} (dir {})", p.info.dir),
                if_id: p.attrs.if_id,
                mark: p.attrs.mark,
            }));
        }
        if p.attrs.policy_type.unwrap_or(0) != 0 {
            // Sub policies (MIPv6) are not ours.
            self.stats.ignored += 1;
            return Ok(Applied::Unchanged);
        }
        if let Some(t) = p.attrs.templates.iter().find(|t| t.id.proto != IPPROTO_ESP && t.optional == 0) {
            return Err(self.refuse(Refusal::UnsupportedTemplate { index, proto: t.id.proto }));
        }
        if let Err(r) = selector(|| format!("policy {index}"), &p.info.sel) {
            return Err(self.refuse(r));
        }
        if p.info.sel.family == 0 {
            return Err(self.refuse(Refusal::UnsupportedSelector {
                what: format!("policy {index}"),
                family: 0,
                sport_mask: p.info.sel.sport_mask,
                dport_mask: p.info.sel.dport_mask,
            }));
        }
        let generation = self.generation;
        let key = (p.info.dir, index);
        match self.policies.get_mut(&key) {
            Some(e) if e.msg == *p => {
                e.generation = generation;
                Ok(Applied::Unchanged)
            }
            _ => {
                self.policies.insert(key, PolicyEntry { msg: p.clone(), generation });
                Ok(self.changed_if(true))
            }
        }
    }

    fn candidates<'a>(&'a self, p: &PolicyMsg) -> impl Iterator<Item = &'a MirroredSa> + 'a {
        let t = p.attrs.templates.iter().find(|t| t.id.proto == IPPROTO_ESP).cloned();
        let (if_id, mark) = (p.attrs.if_id.unwrap_or(0), p.attrs.mark.unwrap_or_default());
        let tdst =
            t.as_ref().and_then(|t| wire::to_ip(t.family, &t.id.daddr).ok()).filter(|a| !a.is_unspecified());
        let tsrc =
            t.as_ref().and_then(|t| wire::to_ip(t.family, &t.saddr).ok()).filter(|a| !a.is_unspecified());
        self.active().filter(move |sa| {
            let Some(t) = &t else { return false };
            sa.is_outbound()
                && (t.reqid == 0 || sa.reqid == t.reqid)
                && sa.if_id == if_id
                && sa.key.mark == mark
                && (t.mode != wire::MODE_TUNNEL
                    || (tdst.is_none_or(|d| d == sa.key.daddr) && tsrc.is_none_or(|s| s == sa.saddr)))
                && (t.mode == wire::MODE_TUNNEL) == matches!(sa.config.mode, EspMode::Tunnel { .. })
        })
    }

    /// The active outbound SA a policy's ESP template resolves to (the newest), if any.
    pub fn resolve(&self, p: &PolicyMsg) -> Option<&MirroredSa> {
        self.candidates(p).max_by_key(|sa| sa.order)
    }

    /// The outbound SAs that serve a policy, at most one per shard, in shard order: on each
    /// shard the newest per-CPU SA it owns, else the newest SA without CPU if that shard owns
    /// it. During a rekey the old SA stays installed (inbound packets under it still decrypt)
    /// but the policy moves to the new one at once; as both are owned by the reqid's shard
    /// ([`MirrorConfig::reqid_shard`]), no shard loses its SA in between.
    pub fn resolve_shards(&self, p: &PolicyMsg) -> Vec<&MirroredSa> {
        let mut per_shard: BTreeMap<ShardId, &MirroredSa> = BTreeMap::new();
        let mut fallback: Option<&MirroredSa> = None;
        for sa in self.candidates(p) {
            if sa.pcpu.is_none() {
                if fallback.is_none_or(|f| sa.order > f.order) {
                    fallback = Some(sa);
                }
                continue;
            }
            let Direction::Outbound { shard } = sa.config.direction else { continue };
            match per_shard.get(&shard) {
                Some(cur) if cur.order > sa.order => {}
                _ => {
                    per_shard.insert(shard, sa);
                }
            }
        }
        if let Some(f) = fallback
            && let Direction::Outbound { shard } = f.config.direction
        {
            per_shard.entry(shard).or_insert(f);
        }
        per_shard.into_values().collect()
    }

    /// Outbound policies with ESP templates that no active SA serves: the data plane drops
    /// their packets (`EspNoSa`) and should raise [`crate::msg::acquire`] for them.
    pub fn unresolved(&self) -> Vec<&PolicyMsg> {
        self.outbound_policies()
            .filter(|p| p.info.action == wire::POLICY_ALLOW && !p.attrs.templates.is_empty())
            .filter(|p| self.resolve(p).is_none())
            .collect()
    }

    /// Per-CPU SAs to ask for: for each outbound policy that wants one SA per CPU
    /// ([`wire::POLICY_CPU_ACQUIRE`]) and already has an SA, each data shard
    /// ([`MirrorConfig::outbound_shards`]) without a per-CPU SA of its own, with the CPU whose
    /// SAs it owns ([`MirrorConfig::cpu_of_shard`]). (A policy without any SA is in
    /// [`Mirror::unresolved`]: its first SA is the one without CPU.)
    pub fn per_cpu_missing(&self) -> Vec<(&PolicyMsg, ShardId, u32)> {
        let mut shards = self.cfg.outbound_shards.clone();
        if shards.is_empty() {
            shards.push(0);
        }
        shards.sort_unstable();
        shards.dedup();
        let mut out = Vec::new();
        for p in self.outbound_policies() {
            if p.info.action != wire::POLICY_ALLOW
                || p.attrs.templates.is_empty()
                || p.info.flags & wire::POLICY_CPU_ACQUIRE == 0
            {
                continue;
            }
            let served = self.resolve_shards(p);
            if served.is_empty() {
                continue;
            }
            for &shard in &shards {
                let own = served.iter().any(|sa| {
                    sa.pcpu.is_some()
                        && matches!(sa.config.direction, Direction::Outbound { shard: s } if s == shard)
                });
                if !own && let Some(cpu) = self.cfg.cpu_of_shard(shard) {
                    out.push((p, shard, cpu));
                }
            }
        }
        out
    }

    fn outbound_policies(&self) -> impl Iterator<Item = &PolicyMsg> {
        let mut v: Vec<&PolicyMsg> =
            self.policies.values().map(|p| &p.msg).filter(|p| p.info.dir == wire::POLICY_OUT).collect();
        v.sort_by_key(|p| (p.info.priority, p.info.index));
        v.into_iter()
    }

    /// The outbound SPD: mirrored `dir out` policies by kernel priority (lower first). A
    /// protect policy names the SAs that serve it, one per shard at most
    /// ([`Mirror::resolve_shards`]), or no SA (its packets are dropped as `EspNoSa`, never
    /// sent in clear).
    pub fn spd(&self) -> Spd {
        let policies = self
            .outbound_policies()
            .filter_map(|p| {
                let sel = selector(String::new, &p.info.sel).ok().flatten()?;
                let action = if p.info.action == wire::POLICY_BLOCK {
                    PolicyAction::Discard
                } else if p.attrs.templates.is_empty() {
                    PolicyAction::Bypass
                } else {
                    PolicyAction::Protect {
                        spis: self.resolve_shards(p).iter().map(|sa| sa.key.spi).collect(),
                    }
                };
                Some(SecurityPolicy { selector: sel, action })
            })
            .collect();
        Spd { policies, default_action: self.cfg.default_action }
    }
}
