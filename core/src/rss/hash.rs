//! What a packet's RSS hash is computed over: hash types (like a NIC's RSS types), symmetric
//! modes, and the hasher that puts key, mode and types together.
//!
//! Input layouts (network byte order; the 2- and 4-tuple ones are Microsoft's RSS hash inputs,
//! "RSS Hashing Types" in the Windows driver documentation, which NICs implement):
//!
//! | class | input |
//! |---|---|
//! | 2-tuple (any IP, fragments, other protocols) | `src ‖ dst` |
//! | TCP / UDP 4-tuple | `src ‖ dst ‖ sport ‖ dport` |
//! | ESP | `src ‖ dst ‖ SPI` |
//! | NAT-T (UDP 4500, non-zero first word) | `src ‖ dst ‖ SPI` (ports left out, so a NAT rebinding does not move the tunnel) |
//!
//! A packet takes its most specific class whose type is enabled, falling back
//! NAT-T → UDP 4-tuple → 2-tuple, TCP/UDP/ESP → 2-tuple; with no enabled class it has no hash.

use std::net::IpAddr;

use super::RssError;
use super::toeplitz::{MAX_INPUT, SYMMETRIC_KEY, Toeplitz, toeplitz_reference};

// Crate-internal alias of the protocol numbers (the public ones are [`crate::wire::ip_proto`]).
pub(crate) use crate::wire::ip_proto as proto;

/// A set of hash types: which packet classes are hashed over which fields, like NIC RSS types
/// (`ETH_RSS_*`, ethtool `rx-flow-hash`).
///
/// In configuration (serde) a set is a list of names: `["ipv4", "ipv4-tcp", "ipv6-esp"]`, or
/// `["all"]`; see [`HashTypes::NAMES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "Vec<String>", into = "Vec<String>"))]
pub struct HashTypes(u16);

impl HashTypes {
    /// No hashing: every packet goes to the group's first RETA entry.
    pub const NONE: Self = Self(0);
    /// IPv4 `src ‖ dst` (also the fallback of every IPv4 class).
    pub const IPV4: Self = Self(1 << 0);
    /// IPv4 TCP 4-tuple.
    pub const IPV4_TCP: Self = Self(1 << 1);
    /// IPv4 UDP 4-tuple.
    pub const IPV4_UDP: Self = Self(1 << 2);
    /// IPv4 ESP `src ‖ dst ‖ SPI`.
    pub const IPV4_ESP: Self = Self(1 << 3);
    /// IPv4 NAT-T (UDP 4500, non-zero SPI) `src ‖ dst ‖ SPI`.
    pub const IPV4_NATT: Self = Self(1 << 4);
    /// IPv6 `src ‖ dst`.
    pub const IPV6: Self = Self(1 << 5);
    /// IPv6 TCP 4-tuple.
    pub const IPV6_TCP: Self = Self(1 << 6);
    /// IPv6 UDP 4-tuple.
    pub const IPV6_UDP: Self = Self(1 << 7);
    /// IPv6 ESP `src ‖ dst ‖ SPI`.
    pub const IPV6_ESP: Self = Self(1 << 8);
    /// IPv6 NAT-T `src ‖ dst ‖ SPI`.
    pub const IPV6_NATT: Self = Self(1 << 9);
    /// Every type (the default: an IPsec gateway wants tunnels spread by SPI).
    pub const ALL: Self = Self((1 << 10) - 1);

    /// Every single type with its configuration name.
    pub const NAMES: [(&'static str, HashTypes); 10] = [
        ("ipv4", Self::IPV4),
        ("ipv4-tcp", Self::IPV4_TCP),
        ("ipv4-udp", Self::IPV4_UDP),
        ("ipv4-esp", Self::IPV4_ESP),
        ("ipv4-natt", Self::IPV4_NATT),
        ("ipv6", Self::IPV6),
        ("ipv6-tcp", Self::IPV6_TCP),
        ("ipv6-udp", Self::IPV6_UDP),
        ("ipv6-esp", Self::IPV6_ESP),
        ("ipv6-natt", Self::IPV6_NATT),
    ];

    /// The set named by `names` (see [`HashTypes::NAMES`]; `all` is every type).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, RssError> {
        names.iter().try_fold(Self::NONE, |acc, n| {
            let n = n.as_ref();
            if n == "all" {
                return Ok(Self::ALL);
            }
            Self::NAMES
                .iter()
                .find(|(name, _)| *name == n)
                .map(|(_, t)| acc.union(*t))
                .ok_or_else(|| RssError::BadConfig(format!("unknown hash type `{n}`")))
        })
    }

    /// The names of the types in the set.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES.iter().filter(|(_, t)| self.contains(*t)).map(|(n, _)| *n).collect()
    }

    /// Both sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// True when every type of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// True when some IPv6 type is enabled (the input can then be 36 bytes).
    pub const fn has_ipv6(self) -> bool {
        self.0 & 0b11111_00000 != 0
    }
}

impl TryFrom<Vec<String>> for HashTypes {
    type Error = RssError;
    fn try_from(v: Vec<String>) -> Result<Self, RssError> {
        Self::from_names(&v)
    }
}

impl From<HashTypes> for Vec<String> {
    fn from(t: HashTypes) -> Vec<String> {
        t.names().into_iter().map(String::from).collect()
    }
}

impl Default for HashTypes {
    fn default() -> Self {
        Self::ALL
    }
}

/// How the hash is made the same in both directions of a flow.
///
/// Each mode is one that NICs or drivers implement, so the software path can match the hardware:
/// `Key` is Woo & Park's symmetric key ("Scalable TCP Session Monitoring with Symmetric
/// Receive-side Scaling", 2012); `Xor` and `OrXor` are the input transforms of the Linux ethtool
/// `rxfh` interface (`ethtool -X … xfrm symmetric-xor | symmetric-or-xor`, `RXH_XFRM_SYM_XOR` and
/// `RXH_XFRM_SYM_OR_XOR` in `linux/ethtool.h`); `Xor` and `Sort` are DPDK's
/// `RTE_ETH_HASH_FUNCTION_SYMMETRIC_TOEPLITZ` and `…_SYMMETRIC_TOEPLITZ_SORT` (`rte_ethdev.h`).
/// Every mode except `None` gives both directions of a flow the same hash; they differ in which
/// NICs can do them and in how well they spread (`Key` and `Xor` lose entropy: flows whose
/// addresses XOR to the same value collide).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum SymmetricMode {
    /// Plain Toeplitz: the two directions hash differently.
    #[default]
    None,
    /// Plain input, key `6d5a` repeated (Woo & Park); the configured key is replaced by it.
    Key,
    /// `S^D ‖ S^D ‖ sp^dp ‖ sp^dp` (Linux `symmetric-xor`, DPDK `SYMMETRIC_TOEPLITZ`).
    Xor,
    /// `S|D ‖ S^D ‖ sp|dp ‖ sp^dp` (Linux 6.15 `symmetric-or-xor`).
    OrXor,
    /// Smaller address first, then larger; ports sorted independently (DPDK
    /// `SYMMETRIC_TOEPLITZ_SORT`).
    Sort,
}

impl SymmetricMode {
    /// Every mode.
    pub const ALL: [SymmetricMode; 5] = [Self::None, Self::Key, Self::Xor, Self::OrXor, Self::Sort];

    /// The name used in configuration and by `rss-inspect` (`none`, `key`, `xor`, `or-xor`, `sort`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Key => "key",
            Self::Xor => "xor",
            Self::OrXor => "or-xor",
            Self::Sort => "sort",
        }
    }
}

impl std::str::FromStr for SymmetricMode {
    type Err = RssError;
    fn from_str(s: &str) -> Result<Self, RssError> {
        Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            RssError::BadConfig(format!("unknown symmetric mode `{s}` (none|key|xor|or-xor|sort)"))
        })
    }
}

/// Transport fields of a flow, as far as RSS cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    /// No transport fields: an IP fragment, a truncated header, or a protocol RSS does not
    /// look into. Hashes as 2-tuple.
    None,
    /// TCP or UDP ports (which one is in [`FlowTuple::proto`]).
    Ports {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ESP.
    Esp {
        /// Security parameter index.
        spi: u32,
    },
    /// ESP in UDP (RFC 3948): UDP with port 4500 whose first payload word is a non-zero SPI.
    UdpEsp {
        /// UDP source port.
        sport: u16,
        /// UDP destination port.
        dport: u16,
        /// Security parameter index.
        spi: u32,
    },
    /// ICMP / ICMPv6 (hashes as 2-tuple; kept for steering).
    Icmp {
        /// Message type.
        ty: u8,
        /// Code.
        code: u8,
    },
}

/// The fields of a packet the hash and the steering plan look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol of the transport header (after IPv6 extension headers).
    pub proto: u8,
    /// Transport fields.
    pub l4: L4,
}

impl FlowTuple {
    /// A TCP flow.
    pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Self {
        Self { src, dst, proto: proto::TCP, l4: L4::Ports { sport, dport } }
    }

    /// A UDP flow (ESP-in-UDP is recognised by the parser, not here).
    pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Self {
        Self { src, dst, proto: proto::UDP, l4: L4::Ports { sport, dport } }
    }

    /// An ESP flow.
    pub fn esp(src: IpAddr, dst: IpAddr, spi: u32) -> Self {
        Self { src, dst, proto: proto::ESP, l4: L4::Esp { spi } }
    }

    /// Addresses only (protocol `proto`).
    pub fn ip(src: IpAddr, dst: IpAddr, proto: u8) -> Self {
        Self { src, dst, proto, l4: L4::None }
    }

    /// The other direction of the flow (addresses and ports swapped; the SPI stays).
    pub fn reversed(&self) -> Self {
        let l4 = match self.l4 {
            L4::Ports { sport, dport } => L4::Ports { sport: dport, dport: sport },
            L4::UdpEsp { sport, dport, spi } => L4::UdpEsp { sport: dport, dport: sport, spi },
            other => other,
        };
        Self { src: self.dst, dst: self.src, proto: self.proto, l4 }
    }

    /// Source and destination ports when the flow has them.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.l4 {
            L4::Ports { sport, dport } | L4::UdpEsp { sport, dport, .. } => Some((sport, dport)),
            _ => None,
        }
    }

    /// The SPI when the flow is ESP or ESP-in-UDP.
    pub fn spi(&self) -> Option<u32> {
        match self.l4 {
            L4::Esp { spi } | L4::UdpEsp { spi, .. } => Some(spi),
            _ => None,
        }
    }
}

/// A built hash input: at most 36 bytes, inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashInput {
    buf: [u8; MAX_INPUT],
    len: u8,
}

impl HashInput {
    /// The input bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// Builds the input for `t` under `types` and `mode`; `None` when no enabled type applies
    /// (or the addresses are of different families).
    pub fn build(t: &FlowTuple, types: HashTypes, mode: SymmetricMode) -> Option<Self> {
        let mut buf = [0u8; MAX_INPUT];
        let len = match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let tail = tail(t, types, false)?;
                let (a, b) = mix(mode, &s.octets(), &d.octets());
                buf[..4].copy_from_slice(&a);
                buf[4..8].copy_from_slice(&b);
                tail.map_or(8, |x| {
                    buf[8..12].copy_from_slice(&x.bytes(mode));
                    12
                })
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let tail = tail(t, types, true)?;
                let (a, b) = mix(mode, &s.octets(), &d.octets());
                buf[..16].copy_from_slice(&a);
                buf[16..32].copy_from_slice(&b);
                tail.map_or(32, |x| {
                    buf[32..36].copy_from_slice(&x.bytes(mode));
                    36
                })
            }
            _ => return None,
        };
        Some(Self { buf, len })
    }
}

/// What follows the addresses in the input.
#[derive(Clone, Copy)]
pub(super) enum Tail {
    Ports(u16, u16),
    Spi(u32),
}

impl Tail {
    #[inline(always)]
    pub(super) fn bytes(self, mode: SymmetricMode) -> [u8; 4] {
        match self {
            Tail::Spi(spi) => spi.to_be_bytes(),
            Tail::Ports(sp, dp) => {
                let (x, y) = match mode {
                    SymmetricMode::None | SymmetricMode::Key => (sp, dp),
                    SymmetricMode::Xor => (sp ^ dp, sp ^ dp),
                    SymmetricMode::OrXor => (sp | dp, sp ^ dp),
                    SymmetricMode::Sort => (sp.min(dp), sp.max(dp)),
                };
                let (x, y) = (x.to_be_bytes(), y.to_be_bytes());
                [x[0], x[1], y[0], y[1]]
            }
        }
    }
}

/// The class of `t` under `types`: `None` = no hash, `Some(None)` = 2-tuple, else the tail.
#[inline(always)]
pub(super) fn tail(t: &FlowTuple, types: HashTypes, v6: bool) -> Option<Option<Tail>> {
    let ty = |v4t: HashTypes, v6t: HashTypes| types.contains(if v6 { v6t } else { v4t });
    let tcp = t.proto == proto::TCP;
    let udp = t.proto == proto::UDP;
    Some(match t.l4 {
        L4::Ports { sport, dport } if tcp && ty(HashTypes::IPV4_TCP, HashTypes::IPV6_TCP) => {
            Some(Tail::Ports(sport, dport))
        }
        L4::Ports { sport, dport } if udp && ty(HashTypes::IPV4_UDP, HashTypes::IPV6_UDP) => {
            Some(Tail::Ports(sport, dport))
        }
        L4::Esp { spi } if ty(HashTypes::IPV4_ESP, HashTypes::IPV6_ESP) => Some(Tail::Spi(spi)),
        L4::UdpEsp { spi, .. } if ty(HashTypes::IPV4_NATT, HashTypes::IPV6_NATT) => Some(Tail::Spi(spi)),
        L4::UdpEsp { sport, dport, .. } if ty(HashTypes::IPV4_UDP, HashTypes::IPV6_UDP) => {
            Some(Tail::Ports(sport, dport))
        }
        _ if ty(HashTypes::IPV4, HashTypes::IPV6) => None,
        _ => return None,
    })
}

/// The two address fields of the input under `mode`.
#[inline]
pub(super) fn mix<const A: usize>(mode: SymmetricMode, s: &[u8; A], d: &[u8; A]) -> ([u8; A], [u8; A]) {
    match mode {
        SymmetricMode::None | SymmetricMode::Key => (*s, *d),
        SymmetricMode::Xor => {
            let x = std::array::from_fn(|i| s[i] ^ d[i]);
            (x, x)
        }
        SymmetricMode::OrXor => (std::array::from_fn(|i| s[i] | d[i]), std::array::from_fn(|i| s[i] ^ d[i])),
        SymmetricMode::Sort => {
            if s <= d {
                (*s, *d)
            } else {
                (*d, *s)
            }
        }
    }
}

/// Key, symmetric mode and hash types of a port (configuration; serde-able:
/// `key = "ms"` / `"6d5a"` / hex, `mode = "sort"`, `types = ["all"]`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RssConfig {
    /// Toeplitz key (40 bytes on most NICs; at least the longest input + 4).
    #[cfg_attr(feature = "serde", serde(with = "key_text"))]
    pub key: Vec<u8>,
    /// Symmetric mode.
    pub mode: SymmetricMode,
    /// Hash types.
    pub types: HashTypes,
}

/// Parses a key written `ms` (the Microsoft key), `6d5a` (the symmetric key) or as hex bytes
/// (optionally `0x`-prefixed, `:`/`-` separated).
pub fn parse_key(s: &str) -> Result<Vec<u8>, RssError> {
    match s {
        "ms" => return Ok(super::toeplitz::MS_KEY.to_vec()),
        "6d5a" => return Ok(SYMMETRIC_KEY.to_vec()),
        _ => {}
    }
    let hex: Vec<u8> = s.trim_start_matches("0x").bytes().filter(|c| *c != b':' && *c != b'-').collect();
    let bad = || RssError::BadConfig(format!("key `{s}`: expected ms, 6d5a or an even number of hex digits"));
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return Err(bad());
    }
    hex.chunks(2)
        .map(|p| std::str::from_utf8(p).ok().and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)
}

#[cfg(feature = "serde")]
mod key_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(key: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_key(&text).map_err(serde::de::Error::custom)
    }
}

impl Default for RssConfig {
    /// Microsoft key, no symmetry, every hash type.
    fn default() -> Self {
        Self { key: super::toeplitz::MS_KEY.to_vec(), mode: SymmetricMode::None, types: HashTypes::ALL }
    }
}

/// A port's RSS hash function, built from an [`RssConfig`]: tables for the key plus mode and
/// types. Built once on the control path; hashing allocates nothing.
#[derive(Clone, Debug)]
pub struct RssHasher {
    toeplitz: Toeplitz,
    mode: SymmetricMode,
    types: HashTypes,
}

impl RssHasher {
    /// Checks `cfg` and builds the tables.
    ///
    /// In [`SymmetricMode::Key`] the key is replaced by `6d5a` repeated (same length).
    pub fn new(cfg: &RssConfig) -> Result<Self, RssError> {
        let need = if cfg.types.has_ipv6() { 36 + 4 } else { 12 + 4 };
        if cfg.key.len() < need {
            return Err(RssError::BadKey {
                len: cfg.key.len(),
                why: if cfg.types.has_ipv6() {
                    "IPv6 hash types need at least 40 bytes (36-byte input + 4)"
                } else {
                    "IPv4 hash types need at least 16 bytes (12-byte input + 4)"
                },
            });
        }
        let key: Vec<u8> = match cfg.mode {
            SymmetricMode::Key => (0..cfg.key.len()).map(|i| SYMMETRIC_KEY[i % 2]).collect(),
            _ => cfg.key.clone(),
        };
        Ok(Self { toeplitz: Toeplitz::new(&key), mode: cfg.mode, types: cfg.types })
    }

    /// The key in use (after the `key` mode's replacement).
    pub fn key(&self) -> &[u8] {
        self.toeplitz.key()
    }

    /// The symmetric mode.
    pub fn mode(&self) -> SymmetricMode {
        self.mode
    }

    /// The hash types.
    pub fn types(&self) -> HashTypes {
        self.types
    }

    /// The Toeplitz tables.
    pub fn toeplitz(&self) -> &Toeplitz {
        &self.toeplitz
    }

    /// The hash of a flow, `None` when no enabled hash type applies.
    #[inline]
    pub fn hash_tuple(&self, t: &FlowTuple) -> Option<u32> {
        // Fixed-size arrays per family, so the table lookups unroll without bounds checks.
        let tb = &self.toeplitz;
        match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let tail = tail(t, self.types, false)?;
                let (a, b) = mix(self.mode, &s.octets(), &d.octets());
                let mut buf = [0u8; 12];
                buf[..4].copy_from_slice(&a);
                buf[4..8].copy_from_slice(&b);
                Some(match tail {
                    Some(x) => {
                        buf[8..].copy_from_slice(&x.bytes(self.mode));
                        tb.hash_fixed(&buf)
                    }
                    None => tb.hash_fixed(first::<8, 12>(&buf)),
                })
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let tail = tail(t, self.types, true)?;
                let (a, b) = mix(self.mode, &s.octets(), &d.octets());
                let mut buf = [0u8; 36];
                buf[..16].copy_from_slice(&a);
                buf[16..32].copy_from_slice(&b);
                Some(match tail {
                    Some(x) => {
                        buf[32..].copy_from_slice(&x.bytes(self.mode));
                        tb.hash_fixed(&buf)
                    }
                    None => tb.hash_fixed(first::<32, 36>(&buf)),
                })
            }
            _ => None,
        }
    }

    /// The hash of a built input (fixed-size table path for each input length).
    #[inline]
    pub fn hash_input(&self, input: &HashInput) -> u32 {
        let b = &input.buf;
        let t = &self.toeplitz;
        match input.len {
            8 => t.hash_fixed(first::<8, MAX_INPUT>(b)),
            12 => t.hash_fixed(first::<12, MAX_INPUT>(b)),
            32 => t.hash_fixed(first::<32, MAX_INPUT>(b)),
            36 => t.hash_fixed(b),
            n => t.hash(&b[..n as usize]),
        }
    }

    /// Same as [`RssHasher::hash_tuple`] with the bit-serial reference Toeplitz (tests).
    pub fn hash_tuple_reference(&self, t: &FlowTuple) -> Option<u32> {
        let input = HashInput::build(t, self.types, self.mode)?;
        Some(toeplitz_reference(self.toeplitz.key(), input.as_bytes()))
    }
}

#[inline(always)]
fn first<const N: usize, const M: usize>(b: &[u8; M]) -> &[u8; N] {
    const { assert!(N <= M) };
    // Cannot fail: N ≤ M (checked at compile time above).
    b.first_chunk::<N>().unwrap_or(&[0; N])
}
