//! Security associations: their configuration (immutable, shared by every shard) and their
//! per-shard mutable state (sequence numbers, replay window, lifetime counters).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wirespeed_core::ShardId;
use zeroize::Zeroize;

use super::aead::{AeadAlgorithm, AeadError, EspAead, ProviderRef, SALT_LEN, default_provider};
use super::replay::{DEFAULT_WINDOW, MAX_WINDOW, ReplayWindow};
use super::spd::{CompiledSelector, FlowKey, Selector};
use super::wire::{OuterTemplate, PROTO_ESP, PROTO_UDP};

/// Default UDP port of RFC 3948 encapsulation (IKE NAT traversal), from [`wirespeed_core::wire`].
pub use wirespeed_core::wire::NAT_T_PORT;

/// How an SA carries packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EspMode {
    /// Tunnel mode: the whole inner IP packet is encrypted behind a new outer header between
    /// this gateway (`local`) and the peer (`remote`), either family, independent of the inner
    /// one. The names are the same for both directions: an outbound SA sends from `local` to
    /// `remote`; an inbound SA accepts packets from `remote` to `local` (others are dropped as
    /// `EspWrongEndpoint`).
    Tunnel {
        /// This gateway's tunnel address: outer source of outbound packets, outer destination
        /// of inbound ones. Unspecified (`0.0.0.0`/`::`) on an inbound SA accepts any.
        local: IpAddr,
        /// The peer's tunnel address: outer destination of outbound packets, outer source of
        /// inbound ones (checked only for ESP not carried in UDP: NAT may rewrite the source of
        /// RFC 3948 packets). Unspecified on an inbound SA accepts any.
        remote: IpAddr,
    },
    /// Transport mode: ESP is inserted after the packet's own IP header (host-to-host).
    Transport,
}

/// RFC 3948 UDP encapsulation (NAT traversal) of an SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpEncap {
    /// UDP source port written on outbound packets.
    pub src_port: u16,
    /// UDP destination port written on outbound packets.
    pub dst_port: u16,
}

impl Default for UdpEncap {
    fn default() -> Self {
        Self { src_port: NAT_T_PORT, dst_port: NAT_T_PORT }
    }
}

/// Which way an SA protects traffic, and (outbound) which shard owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Encrypts. Exactly one shard may use an outbound SA: its sequence numbers are the GCM and
    /// ChaCha20 nonces, and two senders would reuse them. One tunnel that must scale across cores
    /// gets one outbound SA per shard (RFC 9611 per-resource SAs), all named by one policy.
    Outbound {
        /// The shard that owns (and alone uses) the SA.
        shard: ShardId,
    },
    /// Decrypts. Steer each inbound SA to one shard (SPI-based RSS) so its replay window is
    /// complete; a shard receiving another shard's SA still decrypts, but keeps its own window.
    Inbound,
}

/// Limits after which an SA stops being used. `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Packets processed.
    pub packets: Option<u64>,
    /// Bytes of inner (plaintext) packets processed.
    pub bytes: Option<u64>,
    /// Time since the SA was created.
    pub time: Option<Duration>,
}

/// Soft (warn: rekey now) and hard (stop: expired) lifetimes of an SA (RFC 4301 §4.4.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifetime {
    /// Reaching it raises [`SaEventKind::SoftLifetime`] once; the SA keeps working.
    pub soft: Limits,
    /// Reaching it expires the SA: packets are dropped as `EspSaExpired` and
    /// [`SaEventKind::HardLifetime`] is raised once.
    pub hard: Limits,
}

/// Everything needed to build an SA. Keys are given as key material: cipher key ‖ 4-byte salt
/// (RFC 4106 §8.1, RFC 7634 §4), as IKEv2 derives them.
///
/// Built with [`SaConfig::new`] (or [`SaConfig::tunnel`] / [`SaConfig::transport`]) and the
/// `with_*` setters; the fields stay public to read and to assign. The struct is
/// `#[non_exhaustive]`, so new fields are not a breaking change: outside this crate it cannot
/// be written as a struct literal.
///
/// ```
/// use wirespeed_stages::esp::{AeadAlgorithm, Direction, EspMode, SaConfig, UdpEncap};
/// let sa = SaConfig::new(0x100, Direction::Inbound, AeadAlgorithm::Aes128Gcm, &[7; 20], EspMode::Transport)
///     .with_udp_encap(Some(UdpEncap::default()))
///     .with_esn(true)
///     .with_replay_window(1024);
/// assert_eq!((sa.spi, sa.esn, sa.replay_window, sa.outer_ttl), (0x100, true, 1024, 64));
/// ```
///
/// ```compile_fail,E0639
/// use wirespeed_stages::esp::*;
/// let sa = SaConfig {
///     spi: 0x100,
///     direction: Direction::Inbound,
///     algorithm: AeadAlgorithm::Aes128Gcm,
///     provider: default_provider(),
///     keymat: vec![7; 20],
///     mode: EspMode::Transport,
///     udp_encap: None,
///     esn: false,
///     replay_window: 64,
///     lifetime: Lifetime::default(),
///     outer_ttl: 64,
///     mtu: None,
///     mss_clamp: None,
///     fragment: true,
///     selector: None,
///     resume_seq: 0,
/// };
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct SaConfig {
    /// Security parameter index (non-zero; 1–255 are reserved by IANA but accepted).
    pub spi: u32,
    /// Inbound or outbound (with its owner shard).
    pub direction: Direction,
    /// The AEAD.
    pub algorithm: AeadAlgorithm,
    /// Who computes it: any [`crate::esp::aead::AeadProvider`], built in or not
    /// (default [`crate::esp::aead::RustCrypto`]).
    pub provider: ProviderRef,
    /// Key ‖ salt; length [`AeadAlgorithm::keymat_len`].
    pub keymat: Vec<u8>,
    /// Tunnel or transport.
    pub mode: EspMode,
    /// UDP encapsulation (NAT-T) of outbound packets; inbound SAs accept both forms anyway.
    pub udp_encap: Option<UdpEncap>,
    /// Extended (64-bit) sequence numbers (RFC 4303 §2.2.1).
    pub esn: bool,
    /// Anti-replay window in packets (inbound); 0 disables replay protection (not allowed with
    /// ESN, whose high-bit inference needs the window).
    pub replay_window: u32,
    /// Lifetimes.
    pub lifetime: Lifetime,
    /// TTL / hop limit of outer headers built in tunnel mode.
    pub outer_ttl: u8,
    /// Largest outer IP packet (bytes, IP header included) an outbound SA may produce; larger
    /// encapsulations are dropped as `EspMtuExceeded`. `None`: only the 65 535-byte limit of the
    /// IP length field applies (`EspTooBig`).
    pub mtu: Option<u16>,
    /// Clamp the MSS option of TCP SYN segments through this SA to at most this many bytes
    /// (outbound: before encryption; inbound: after decryption), so TCP sessions fit the tunnel
    /// without fragmentation or PMTU discovery. `None`: segments are left alone.
    pub mss_clamp: Option<u16>,
    /// Outbound tunnel SAs with an [`SaConfig::mtu`]: an IPv4 packet with DF clear that does
    /// not fit is fragmented before encryption ([`crate::frag`], RFC 4459 §3), each fragment
    /// its own ESP packet (default true, as Linux does). False: it is dropped as
    /// `EspMtuExceeded`, like one with DF set when ICMP errors are off (a router sends
    /// Fragmentation Needed only for DF set, RFC 1191).
    pub fragment: bool,
    /// Inbound: the traffic selector decrypted packets must match (RFC 4301 §5.2: a peer may
    /// only send what the SA was negotiated for); mismatches are dropped as `PolicyDiscard`.
    /// `None` accepts any inner packet.
    pub selector: Option<Selector>,
    /// Inbound: resume the anti-replay window as if every sequence number up to this one had
    /// been received (0, the default: a fresh window). For an SA that carried traffic before
    /// this data plane (re)started, e.g. the highest sequence number a previous run reported to
    /// the kernel: packets captured before the restart cannot be replayed into it. Outbound SAs
    /// refuse it ([`SaError::ResumedOutbound`]): their last sent number may be beyond any report,
    /// and reusing one would reuse an AEAD nonce.
    pub resume_seq: u64,
}

impl std::fmt::Debug for SaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("SaConfig")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("direction", &self.direction)
            .field("algorithm", &self.algorithm)
            .field("provider", &self.provider.name())
            .field("mode", &self.mode)
            .field("udp_encap", &self.udp_encap)
            .field("esn", &self.esn)
            .field("replay_window", &self.replay_window)
            .field("lifetime", &self.lifetime)
            .field("mtu", &self.mtu)
            .field("mss_clamp", &self.mss_clamp)
            .field("fragment", &self.fragment)
            .field("selector", &self.selector)
            .field("resume_seq", &self.resume_seq)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SaConfig {
    /// Providers compare by [`crate::esp::aead::AeadProvider::name`].
    fn eq(&self, o: &Self) -> bool {
        self.spi == o.spi
            && self.direction == o.direction
            && self.algorithm == o.algorithm
            && self.provider.name() == o.provider.name()
            && self.keymat == o.keymat
            && self.mode == o.mode
            && self.udp_encap == o.udp_encap
            && self.esn == o.esn
            && self.replay_window == o.replay_window
            && self.lifetime == o.lifetime
            && self.outer_ttl == o.outer_ttl
            && self.mtu == o.mtu
            && self.mss_clamp == o.mss_clamp
            && self.fragment == o.fragment
            && self.selector == o.selector
            && self.resume_seq == o.resume_seq
    }
}

impl Eq for SaConfig {}

impl SaConfig {
    /// An SA in `mode` with the defaults: RustCrypto provider, no NAT-T, no ESN, a
    /// [`DEFAULT_WINDOW`] replay window, unlimited lifetime, outer TTL 64, no MTU, no MSS
    /// clamp, fragmentation on, no selector. Change them with the `with_*` setters.
    pub fn new(
        spi: u32,
        direction: Direction,
        algorithm: AeadAlgorithm,
        keymat: &[u8],
        mode: EspMode,
    ) -> Self {
        Self {
            spi,
            direction,
            algorithm,
            provider: default_provider(),
            keymat: keymat.to_vec(),
            mode,
            udp_encap: None,
            esn: false,
            replay_window: DEFAULT_WINDOW,
            lifetime: Lifetime::default(),
            outer_ttl: 64,
            mtu: None,
            mss_clamp: None,
            fragment: true,
            selector: None,
            resume_seq: 0,
        }
    }

    /// A tunnel-mode SA between this gateway (`local`) and the peer (`remote`) — the same
    /// order for inbound and outbound SAs — with the defaults of [`SaConfig::new`].
    pub fn tunnel(
        spi: u32,
        direction: Direction,
        algorithm: AeadAlgorithm,
        keymat: &[u8],
        local: IpAddr,
        remote: IpAddr,
    ) -> Self {
        Self::new(spi, direction, algorithm, keymat, EspMode::Tunnel { local, remote })
    }

    /// A transport-mode SA with the defaults of [`SaConfig::new`].
    pub fn transport(spi: u32, direction: Direction, algorithm: AeadAlgorithm, keymat: &[u8]) -> Self {
        Self::new(spi, direction, algorithm, keymat, EspMode::Transport)
    }

    /// Sets [`SaConfig::provider`] (builder style, as the other `with_*`).
    pub fn with_provider(mut self, provider: ProviderRef) -> Self {
        self.provider = provider;
        self
    }

    /// Sets [`SaConfig::udp_encap`].
    pub fn with_udp_encap(mut self, udp_encap: Option<UdpEncap>) -> Self {
        self.udp_encap = udp_encap;
        self
    }

    /// Sets [`SaConfig::esn`].
    pub fn with_esn(mut self, esn: bool) -> Self {
        self.esn = esn;
        self
    }

    /// Sets [`SaConfig::replay_window`].
    pub fn with_replay_window(mut self, packets: u32) -> Self {
        self.replay_window = packets;
        self
    }

    /// Sets [`SaConfig::lifetime`].
    pub fn with_lifetime(mut self, lifetime: Lifetime) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Sets [`SaConfig::outer_ttl`].
    pub fn with_outer_ttl(mut self, ttl: u8) -> Self {
        self.outer_ttl = ttl;
        self
    }

    /// Sets [`SaConfig::mtu`].
    pub fn with_mtu(mut self, mtu: Option<u16>) -> Self {
        self.mtu = mtu;
        self
    }

    /// Sets [`SaConfig::mss_clamp`].
    pub fn with_mss_clamp(mut self, mss: Option<u16>) -> Self {
        self.mss_clamp = mss;
        self
    }

    /// Sets [`SaConfig::fragment`].
    pub fn with_fragment(mut self, fragment: bool) -> Self {
        self.fragment = fragment;
        self
    }

    /// Sets [`SaConfig::selector`].
    pub fn with_selector(mut self, selector: Option<Selector>) -> Self {
        self.selector = selector;
        self
    }

    /// Sets [`SaConfig::resume_seq`].
    pub fn with_resume_seq(mut self, resume_seq: u64) -> Self {
        self.resume_seq = resume_seq;
        self
    }
}

impl Drop for SaConfig {
    /// Wipes the key material (`zeroize`: not optimised away).
    fn drop(&mut self) {
        self.keymat.zeroize();
    }
}

/// A process-local fingerprint of the cipher key in `keymat` (key ‖ salt; the salt is left
/// out, so two SAs that differ only in salt still count as sharing a key): SipHash under a
/// random key drawn once per process. It lets the control plane detect key reuse — the same
/// key installed twice restarts sequence numbers, hence GCM/ChaCha20 nonces, under it —
/// without keeping the key itself. Equal keys give equal fingerprints; different keys collide
/// with probability about 2^-64 (a false refusal, never a missed one).
pub fn key_fingerprint(algorithm: AeadAlgorithm, keymat: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    let key = &keymat[..keymat.len().saturating_sub(SALT_LEN)];
    let mut h = SEED.get_or_init(std::collections::hash_map::RandomState::new).build_hasher();
    h.write_u8(algorithm.key_len() as u8);
    h.write(key);
    h.finish()
}

/// A configuration that cannot be made into an SA.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaError {
    /// SPI 0 is reserved (RFC 4303 §2.1).
    #[error("SPI 0 is reserved")]
    ZeroSpi,
    /// The AEAD refused the key.
    #[error("SA {spi:#010x}: {source}")]
    Aead {
        /// The SA.
        spi: u32,
        /// Why.
        source: AeadError,
    },
    /// ESN needs the replay window to infer the high bits.
    #[error("SA {spi:#010x}: ESN needs a replay window (got 0)")]
    EsnWithoutWindow {
        /// The SA.
        spi: u32,
    },
    /// Tunnel endpoints of different address families.
    #[error("SA {spi:#010x}: tunnel endpoints local {local} and remote {remote} are of different families")]
    MixedTunnelFamilies {
        /// The SA.
        spi: u32,
        /// This gateway's address.
        local: IpAddr,
        /// The peer's address.
        remote: IpAddr,
    },
    /// An outer MTU too small for any ESP packet.
    #[error("SA {spi:#010x}: MTU {mtu} is too small (minimum {min})")]
    MtuTooSmall {
        /// The SA.
        spi: u32,
        /// MTU asked for.
        mtu: u16,
        /// The minimum.
        min: u16,
    },
    /// Window over [`MAX_WINDOW`].
    #[error("SA {spi:#010x}: replay window {window} exceeds {max}")]
    WindowTooLarge {
        /// The SA.
        spi: u32,
        /// Window asked for.
        window: u32,
        /// The maximum.
        max: u32,
    },
    /// [`SaConfig::resume_seq`] on an outbound SA.
    #[error(
        "SA {spi:#010x}: an outbound SA cannot resume at sequence number {seq} (its last sent number \
         may be beyond it, and reusing one reuses an AEAD nonce): rekey instead"
    )]
    ResumedOutbound {
        /// The SA.
        spi: u32,
        /// The sequence number asked for.
        seq: u64,
    },
}

/// A time limit as an instant: reached when `now.saturating_duration_since(created) >= limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deadline {
    /// No limit (or one beyond the clock's range).
    Never,
    /// A zero limit: reached even by an instant taken before the SA was created.
    Always,
    /// Reached from this instant on.
    At(Instant),
}

impl Deadline {
    fn new(created: Instant, limit: Option<Duration>) -> Self {
        match limit {
            None => Deadline::Never,
            Some(t) if t.is_zero() => Deadline::Always,
            Some(t) => created.checked_add(t).map_or(Deadline::Never, Deadline::At),
        }
    }

    #[inline]
    fn reached(self, now: Instant) -> bool {
        match self {
            Deadline::Never => false,
            Deadline::Always => true,
            Deadline::At(d) => now >= d,
        }
    }
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// An SA ready for the data path: configuration plus expanded key. Immutable and shared (in an
/// `Arc`) by every SA set that contains it; per-shard mutable state lives in [`SaState`].
#[derive(Debug)]
pub struct SecurityAssociation {
    uid: u64,
    spi: u32,
    direction: Direction,
    mode: EspMode,
    udp_encap: Option<UdpEncap>,
    esn: bool,
    replay_window: u32,
    /// Inbound: the window starts with every sequence number up to this one received.
    resume_seq: u64,
    lifetime: Lifetime,
    /// No soft or hard limit at all: [`SaState::admit`] only checks the status.
    unlimited: bool,
    /// `created` plus the soft and hard time limits, so that the per-packet check is one
    /// comparison.
    soft_deadline: Deadline,
    hard_deadline: Deadline,
    outer_ttl: u8,
    /// Largest outer IP packet; `usize::MAX` without an MTU.
    mtu: usize,
    mss_clamp: Option<u16>,
    fragment: bool,
    salt: [u8; SALT_LEN],
    cipher: Box<dyn EspAead>,
    created: Instant,
    selector: Option<CompiledSelector>,
    outer: Option<OuterTemplate>,
    /// Tunnel mode: `local` and `remote` as the inbound endpoint check compares them.
    endpoints: Option<(AddrMatch, AddrMatch)>,
    key_fingerprint: u64,
}

/// A tunnel endpoint address prepared for the per-packet comparison with a parsed header's
/// left-aligned address bits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AddrMatch {
    any: bool,
    v6: bool,
    bits: u128,
}

impl AddrMatch {
    fn new(a: IpAddr) -> Self {
        let (v6, bits) = match a {
            IpAddr::V4(a) => (false, (u32::from(a) as u128) << 96),
            IpAddr::V6(a) => (true, u128::from(a)),
        };
        Self { any: a.is_unspecified(), v6, bits }
    }

    /// True when the address is unspecified (accepts any) or equals `bits` of family `v6`.
    #[inline(always)]
    pub(crate) fn admits(&self, v6: bool, bits: u128) -> bool {
        self.any || (self.v6 == v6 && self.bits == bits)
    }
}

impl Drop for SecurityAssociation {
    /// Wipes the salt; the expanded key is wiped by the cipher's own `Drop` (the RustCrypto
    /// ciphers with their `zeroize` feature, the built-in AES-GCM key schedule explicitly).
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

impl SecurityAssociation {
    /// Validates `cfg` and expands its key.
    pub fn new(cfg: &SaConfig) -> Result<Self, SaError> {
        let spi = cfg.spi;
        if spi == 0 {
            return Err(SaError::ZeroSpi);
        }
        if cfg.esn && cfg.replay_window == 0 {
            return Err(SaError::EsnWithoutWindow { spi });
        }
        if cfg.replay_window > MAX_WINDOW {
            return Err(SaError::WindowTooLarge { spi, window: cfg.replay_window, max: MAX_WINDOW });
        }
        if cfg.resume_seq > 0 && matches!(cfg.direction, Direction::Outbound { .. }) {
            return Err(SaError::ResumedOutbound { spi, seq: cfg.resume_seq });
        }
        if let EspMode::Tunnel { local, remote } = cfg.mode
            && local.is_ipv6() != remote.is_ipv6()
        {
            return Err(SaError::MixedTunnelFamilies { spi, local, remote });
        }
        // IPv6 minimum link MTU (RFC 8200 §5); smaller is a configuration error.
        const MIN_MTU: u16 = 1280;
        if let Some(mtu) = cfg.mtu
            && mtu < MIN_MTU
        {
            return Err(SaError::MtuTooSmall { spi, mtu, min: MIN_MTU });
        }
        let want = cfg.algorithm.keymat_len();
        if cfg.keymat.len() != want {
            return Err(SaError::Aead {
                spi,
                source: AeadError::BadKeyLength {
                    algorithm: cfg.algorithm,
                    expected: want,
                    got: cfg.keymat.len(),
                },
            });
        }
        let (key, salt) = cfg.keymat.split_at(want - SALT_LEN);
        if !cfg.provider.supports(cfg.algorithm) {
            return Err(SaError::Aead { spi, source: AeadError::Unsupported(cfg.algorithm) });
        }
        let cipher =
            cfg.provider.new_aead(cfg.algorithm, key).map_err(|source| SaError::Aead { spi, source })?;
        let mut s = [0u8; SALT_LEN];
        s.copy_from_slice(salt);
        let created = Instant::now();
        Ok(Self {
            key_fingerprint: key_fingerprint(cfg.algorithm, &cfg.keymat),
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            spi,
            direction: cfg.direction,
            mode: cfg.mode,
            udp_encap: cfg.udp_encap,
            esn: cfg.esn,
            replay_window: cfg.replay_window,
            resume_seq: cfg.resume_seq,
            lifetime: cfg.lifetime,
            unlimited: cfg.lifetime == Lifetime::default(),
            soft_deadline: Deadline::new(created, cfg.lifetime.soft.time),
            hard_deadline: Deadline::new(created, cfg.lifetime.hard.time),
            outer_ttl: cfg.outer_ttl,
            mtu: cfg.mtu.map_or(usize::MAX, usize::from),
            mss_clamp: cfg.mss_clamp,
            fragment: cfg.fragment,
            salt: s,
            cipher,
            created,
            selector: cfg.selector.as_ref().map(CompiledSelector::new),
            outer: match cfg.mode {
                EspMode::Tunnel { local, remote } => {
                    let proto = if cfg.udp_encap.is_some() { PROTO_UDP } else { PROTO_ESP };
                    Some(OuterTemplate::new(local, remote, proto, cfg.outer_ttl))
                }
                EspMode::Transport => None,
            },
            endpoints: match cfg.mode {
                EspMode::Tunnel { local, remote } => Some((AddrMatch::new(local), AddrMatch::new(remote))),
                EspMode::Transport => None,
            },
        })
    }

    /// Tunnel mode: the `local` and `remote` addresses prepared for the endpoint check.
    #[inline]
    pub(crate) fn endpoints(&self) -> Option<&(AddrMatch, AddrMatch)> {
        self.endpoints.as_ref()
    }

    /// [`key_fingerprint`] of the SA's cipher key (key reuse checks without the key).
    pub fn key_fingerprint(&self) -> u64 {
        self.key_fingerprint
    }
    /// Process-unique identity (SAs with the same SPI from two rekeys differ).
    pub fn uid(&self) -> u64 {
        self.uid
    }
    /// The SPI.
    pub fn spi(&self) -> u32 {
        self.spi
    }
    /// Direction.
    pub fn direction(&self) -> Direction {
        self.direction
    }
    /// Mode.
    pub fn mode(&self) -> EspMode {
        self.mode
    }
    /// UDP encapsulation of outbound packets.
    pub fn udp_encap(&self) -> Option<UdpEncap> {
        self.udp_encap
    }
    /// ESN on.
    pub fn esn(&self) -> bool {
        self.esn
    }
    /// Replay window (0: off).
    pub fn replay_window(&self) -> u32 {
        self.replay_window
    }
    /// Lifetimes.
    pub fn lifetime(&self) -> Lifetime {
        self.lifetime
    }
    /// Outer TTL / hop limit.
    pub fn outer_ttl(&self) -> u8 {
        self.outer_ttl
    }
    /// The salt (nonce prefix).
    pub(crate) fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }
    /// The AEAD (made by the SA's provider).
    pub fn cipher(&self) -> &dyn EspAead {
        &*self.cipher
    }
    /// Largest outer IP packet this SA produces, when configured.
    pub fn mtu(&self) -> Option<u16> {
        u16::try_from(self.mtu).ok()
    }
    /// The MSS clamp of TCP SYN segments through this SA ([`SaConfig::mss_clamp`]).
    #[inline]
    pub fn mss_clamp(&self) -> Option<u16> {
        self.mss_clamp
    }
    /// True when IPv4 packets with DF clear that do not fit are fragmented
    /// ([`SaConfig::fragment`]).
    #[inline]
    pub fn fragments(&self) -> bool {
        self.fragment
    }
    #[inline]
    pub(crate) fn mtu_limit(&self) -> usize {
        self.mtu
    }
    /// The largest inner packet (bytes, IP header included) a tunnel-mode SA carries within
    /// its [`SaConfig::mtu`]: the MTU less the outer IP header, UDP encapsulation, ESP header,
    /// IV, ICV and the minimum trailer, padding rounded (RFC 4301 §8.1, RFC 4459). `None` for
    /// transport mode or without an MTU.
    pub fn inner_mtu(&self) -> Option<u16> {
        use super::aead::{ICV_LEN, IV_LEN};
        use super::packet::{ESP_HDR_LEN, UDP_HDR_LEN};
        if !matches!(self.mode(), EspMode::Tunnel { .. }) {
            return None;
        }
        let mtu = usize::from(self.mtu()?);
        let udp = if self.udp_encap().is_some() { UDP_HDR_LEN } else { 0 };
        let outer = self.outer_template().map_or(20, |t| t.len()) + udp + ESP_HDR_LEN + IV_LEN;
        // payload + pad + 2 is a multiple of 4 and at most mtu - outer - ICV.
        let room = mtu.checked_sub(outer + ICV_LEN)? & !3;
        u16::try_from(room.checked_sub(2)?).ok()
    }
    /// True when the decapsulated packet with `key` is allowed by the SA's selector.
    #[inline]
    pub(crate) fn admits_inner(&self, key: &FlowKey) -> bool {
        self.selector.as_ref().is_none_or(|s| s.matches(key))
    }
    /// The prepared outer header (tunnel mode).
    #[inline]
    pub(crate) fn outer_template(&self) -> Option<&OuterTemplate> {
        self.outer.as_ref()
    }
    /// Creation time (time lifetimes count from it).
    pub fn created(&self) -> Instant {
        self.created
    }
}

/// What happened to an SA that the control side must act on (rekey, delete).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaEventKind {
    /// The soft lifetime was reached: negotiate a replacement.
    SoftLifetime,
    /// The hard lifetime was reached: the SA is expired on this shard.
    HardLifetime,
    /// The outbound sequence number is exhausted: the SA is unusable on this shard.
    SeqOverflow,
}

/// An event raised by a shard about one SA, sent over a bounded queue to the control side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SaEvent {
    /// The shard that raised it.
    pub shard: ShardId,
    /// The SA's SPI.
    pub spi: u32,
    /// The SA's [`SecurityAssociation::uid`].
    pub uid: u64,
    /// What happened.
    pub kind: SaEventKind,
}

/// Lifecycle of an SA on one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaStatus {
    /// In use.
    Live,
    /// Soft lifetime reached (still in use; event raised).
    SoftExpired,
    /// Hard lifetime reached or sequence numbers exhausted: every packet is dropped.
    Expired,
}

/// One shard's mutable state of one SA. Owned by the shard's stage; never shared, so updating it
/// costs no atomic operation.
#[derive(Clone, Debug)]
pub struct SaState {
    uid: u64,
    /// Outbound: last sequence number sent (0: none yet).
    seq: u64,
    replay: Option<ReplayWindow>,
    packets: u64,
    bytes: u64,
    /// The shard's clock ([`wirespeed_core::ShardCtx::now`]) at the last packet counted.
    last_use: Option<Instant>,
    status: SaStatus,
    ip_id: u16,
}

impl SaState {
    /// Fresh state for `sa`: sequence numbers from 1 (outbound); an empty window, or one
    /// resumed at [`SaConfig::resume_seq`] (inbound).
    pub fn new(sa: &SecurityAssociation) -> Self {
        let replay = match sa.direction {
            Direction::Inbound if sa.replay_window > 0 => {
                Some(ReplayWindow::resumed(sa.replay_window, sa.resume_seq))
            }
            _ => None,
        };
        Self {
            uid: sa.uid,
            seq: 0,
            replay,
            packets: 0,
            bytes: 0,
            last_use: None,
            status: SaStatus::Live,
            ip_id: 0,
        }
    }

    /// The SA this state belongs to.
    pub fn uid(&self) -> u64 {
        self.uid
    }
    /// Last sequence number sent (outbound) or highest authenticated (inbound).
    pub fn seq(&self) -> u64 {
        match &self.replay {
            Some(r) => r.top(),
            None => self.seq,
        }
    }
    /// Packets processed on this shard.
    pub fn packets(&self) -> u64 {
        self.packets
    }
    /// Inner bytes processed on this shard.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// When this shard last counted a packet of the SA (its coarse loop clock, so up to a few
    /// batches early); `None` before the first.
    pub fn last_use(&self) -> Option<Instant> {
        self.last_use
    }
    /// Lifecycle status.
    pub fn status(&self) -> SaStatus {
        self.status
    }
    /// Sets the last-sent sequence number (outbound), e.g. to resume after a restart or to test
    /// overflow handling. The next packet uses `seq + 1`.
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Resumes an inbound SA's window as if `top` had been the highest sequence number
    /// authenticated (after a restart, or when an SA moves between shards; also lets tests
    /// start ESN SAs high in the sequence space). No effect without a window.
    pub fn resume_inbound(&mut self, top: u64) {
        if let Some(w) = &mut self.replay {
            *w = ReplayWindow::new(w.window());
            if top > 0 {
                w.update(top);
            }
        }
    }

    pub(crate) fn replay(&self) -> Option<&ReplayWindow> {
        self.replay.as_ref()
    }
    pub(crate) fn replay_mut(&mut self) -> Option<&mut ReplayWindow> {
        self.replay.as_mut()
    }
    pub(crate) fn next_ip_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1);
        self.ip_id
    }

    /// Checks the hard lifetime before a packet (time, and counts already reached). Raises the
    /// event once, on the transition.
    #[inline(always)]
    pub(crate) fn admit(
        &mut self,
        sa: &SecurityAssociation,
        now: Instant,
        event: impl FnMut(SaEventKind),
    ) -> bool {
        // Per packet, twice on the inbound path: the common case (a live SA without lifetime
        // limits) stays inline, the limit checks are a call.
        if self.status == SaStatus::Expired {
            return false;
        }
        if sa.unlimited {
            return true;
        }
        self.admit_limited(sa, now, event)
    }

    #[inline(never)]
    fn admit_limited(
        &mut self,
        sa: &SecurityAssociation,
        now: Instant,
        mut event: impl FnMut(SaEventKind),
    ) -> bool {
        let hard = &sa.lifetime.hard;
        let expired = sa.hard_deadline.reached(now)
            || hard.packets.is_some_and(|p| self.packets >= p)
            || hard.bytes.is_some_and(|b| self.bytes >= b);
        if expired {
            self.status = SaStatus::Expired;
            event(SaEventKind::HardLifetime);
            return false;
        }
        if self.status == SaStatus::Live {
            let soft = &sa.lifetime.soft;
            if sa.soft_deadline.reached(now)
                || soft.packets.is_some_and(|p| self.packets >= p)
                || soft.bytes.is_some_and(|b| self.bytes >= b)
            {
                self.status = SaStatus::SoftExpired;
                event(SaEventKind::SoftLifetime);
            }
        }
        true
    }

    /// Next outbound sequence number, or `None` (and the SA expires, raising the event) when
    /// it would wrap: 2^32 - 1 is the last without ESN, 2^64 - 1 with (RFC 4303 §3.3.3).
    #[inline(always)]
    pub(crate) fn next_seq(
        &mut self,
        sa: &SecurityAssociation,
        event: impl FnMut(SaEventKind),
    ) -> Option<u64> {
        let limit = if sa.esn { u64::MAX } else { u32::MAX as u64 };
        if self.seq >= limit {
            self.seq_exhausted(event);
            return None;
        }
        self.seq += 1;
        Some(self.seq)
    }

    #[cold]
    #[inline(never)]
    fn seq_exhausted(&mut self, mut event: impl FnMut(SaEventKind)) {
        if self.status != SaStatus::Expired {
            self.status = SaStatus::Expired;
            event(SaEventKind::SeqOverflow);
        }
    }

    /// Counts a processed packet of `inner_bytes` at `now`.
    #[inline]
    pub(crate) fn account(&mut self, inner_bytes: usize, now: Instant) {
        self.packets += 1;
        self.bytes += inner_bytes as u64;
        self.last_use = Some(now);
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;
    use crate::esp::IpPrefix;

    #[test]
    fn the_builder_sets_every_field() {
        let selector = Selector::between(IpPrefix::any_v4(), IpPrefix::any_v4());
        let lifetime =
            Lifetime { soft: Limits { packets: Some(5), ..Limits::default() }, ..Lifetime::default() };
        let mode = EspMode::Tunnel { local: [192, 0, 2, 1].into(), remote: [192, 0, 2, 2].into() };
        let provider = default_provider();
        let built =
            SaConfig::new(7, Direction::Outbound { shard: 3 }, AeadAlgorithm::Aes256Gcm, &[9; 36], mode)
                .with_provider(provider.clone())
                .with_udp_encap(Some(UdpEncap { src_port: 4501, dst_port: 4502 }))
                .with_esn(true)
                .with_replay_window(512)
                .with_lifetime(lifetime)
                .with_outer_ttl(17)
                .with_mtu(Some(1400))
                .with_mss_clamp(Some(1300))
                .with_fragment(false)
                .with_selector(Some(selector))
                .with_resume_seq(77);
        let literal = SaConfig {
            spi: 7,
            direction: Direction::Outbound { shard: 3 },
            algorithm: AeadAlgorithm::Aes256Gcm,
            provider,
            keymat: vec![9; 36],
            mode,
            udp_encap: Some(UdpEncap { src_port: 4501, dst_port: 4502 }),
            esn: true,
            replay_window: 512,
            lifetime,
            outer_ttl: 17,
            mtu: Some(1400),
            mss_clamp: Some(1300),
            fragment: false,
            selector: Some(selector),
            resume_seq: 77,
        };
        assert_eq!(built, literal);
        // The shorthand constructors are `new` with their mode.
        let t = SaConfig::tunnel(
            7,
            Direction::Inbound,
            AeadAlgorithm::Aes128Gcm,
            &[1; 20],
            [1u8; 4].into(),
            [2u8; 4].into(),
        );
        let n = SaConfig::new(
            7,
            Direction::Inbound,
            AeadAlgorithm::Aes128Gcm,
            &[1; 20],
            EspMode::Tunnel { local: [1u8; 4].into(), remote: [2u8; 4].into() },
        );
        assert_eq!(t, n);
        assert_eq!(
            SaConfig::transport(7, Direction::Inbound, AeadAlgorithm::Aes128Gcm, &[1; 20]).mode,
            EspMode::Transport
        );
    }
}
