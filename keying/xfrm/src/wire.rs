//! The XFRM netlink structures of `include/uapi/linux/xfrm.h`, decoded and encoded by hand.
//!
//! Layouts are those of 64-bit Linux targets (x86_64, aarch64, …: `__u64` aligned to 8 bytes),
//! where `struct xfrm_usersa_info` is 224 bytes. Host-order integers are native-endian (netlink
//! is host order); SPIs and ports are big-endian as in the kernel. Every decoder checks the
//! length first and returns a [`DecodeError`] for short or inconsistent input: no decoder
//! panics, whatever the bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use zeroize::Zeroizing;

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
/// `IPPROTO_ESP`.
pub const IPPROTO_ESP: u8 = 50;

/// `XFRM_MODE_TRANSPORT`.
pub const MODE_TRANSPORT: u8 = 0;
/// `XFRM_MODE_TUNNEL`.
pub const MODE_TUNNEL: u8 = 1;

/// `XFRM_STATE_ESN` in `xfrm_usersa_info.flags`.
pub const STATE_ESN: u8 = 128;

/// `XFRM_POLICY_IN`.
pub const POLICY_IN: u8 = 0;
/// `XFRM_POLICY_OUT`.
pub const POLICY_OUT: u8 = 1;
/// `XFRM_POLICY_FWD`.
pub const POLICY_FWD: u8 = 2;
/// `XFRM_POLICY_ALLOW`.
pub const POLICY_ALLOW: u8 = 0;
/// `XFRM_POLICY_BLOCK`.
pub const POLICY_BLOCK: u8 = 1;
/// `XFRM_POLICY_CPU_ACQUIRE` in `xfrm_userpolicy_info.flags` (Linux 6.13+): the policy wants
/// one SA per CPU (RFC 9611); ACQUIREs for it name the CPU (`XFRMA_SA_PCPU`).
pub const POLICY_CPU_ACQUIRE: u8 = 4;

/// `UDP_ENCAP_ESPINUDP` (RFC 3948).
pub const UDP_ENCAP_ESPINUDP: u16 = 2;

/// `XFRM_INF`: an unlimited byte or packet count.
pub const XFRM_INF: u64 = u64::MAX;

/// `XFRM_MAX_DEPTH`: most templates a policy may have.
pub const MAX_TEMPLATES: usize = 6;

/// `XFRM_AE_RVAL` (the NEWAE carries a replay value).
pub const AE_RVAL: u32 = 2;
/// `XFRM_AE_LVAL` (the NEWAE carries a lifetime value).
pub const AE_LVAL: u32 = 4;

/// Netlink message types of `NETLINK_XFRM`.
pub mod msg_type {
    /// `XFRM_MSG_NEWSA`.
    pub const NEWSA: u16 = 0x10;
    /// `XFRM_MSG_DELSA`.
    pub const DELSA: u16 = 0x11;
    /// `XFRM_MSG_GETSA`.
    pub const GETSA: u16 = 0x12;
    /// `XFRM_MSG_NEWPOLICY`.
    pub const NEWPOLICY: u16 = 0x13;
    /// `XFRM_MSG_DELPOLICY`.
    pub const DELPOLICY: u16 = 0x14;
    /// `XFRM_MSG_GETPOLICY`.
    pub const GETPOLICY: u16 = 0x15;
    /// `XFRM_MSG_ALLOCSPI`.
    pub const ALLOCSPI: u16 = 0x16;
    /// `XFRM_MSG_ACQUIRE`.
    pub const ACQUIRE: u16 = 0x17;
    /// `XFRM_MSG_EXPIRE`.
    pub const EXPIRE: u16 = 0x18;
    /// `XFRM_MSG_UPDPOLICY`.
    pub const UPDPOLICY: u16 = 0x19;
    /// `XFRM_MSG_UPDSA`.
    pub const UPDSA: u16 = 0x1a;
    /// `XFRM_MSG_POLEXPIRE`.
    pub const POLEXPIRE: u16 = 0x1b;
    /// `XFRM_MSG_FLUSHSA`.
    pub const FLUSHSA: u16 = 0x1c;
    /// `XFRM_MSG_FLUSHPOLICY`.
    pub const FLUSHPOLICY: u16 = 0x1d;
    /// `XFRM_MSG_NEWAE`.
    pub const NEWAE: u16 = 0x1e;
    /// `XFRM_MSG_GETAE`.
    pub const GETAE: u16 = 0x1f;
}

/// Netlink attribute types (`enum xfrm_attr_type_t`).
pub mod attr {
    /// `XFRMA_ALG_AUTH`.
    pub const ALG_AUTH: u16 = 1;
    /// `XFRMA_ALG_CRYPT`.
    pub const ALG_CRYPT: u16 = 2;
    /// `XFRMA_ALG_COMP`.
    pub const ALG_COMP: u16 = 3;
    /// `XFRMA_ENCAP`.
    pub const ENCAP: u16 = 4;
    /// `XFRMA_TMPL`.
    pub const TMPL: u16 = 5;
    /// `XFRMA_SA`.
    pub const SA: u16 = 6;
    /// `XFRMA_POLICY`.
    pub const POLICY: u16 = 7;
    /// `XFRMA_LTIME_VAL`.
    pub const LTIME_VAL: u16 = 9;
    /// `XFRMA_REPLAY_VAL`.
    pub const REPLAY_VAL: u16 = 10;
    /// `XFRMA_LASTUSED`.
    pub const LASTUSED: u16 = 15;
    /// `XFRMA_POLICY_TYPE`.
    pub const POLICY_TYPE: u16 = 16;
    /// `XFRMA_ALG_AEAD`.
    pub const ALG_AEAD: u16 = 18;
    /// `XFRMA_ALG_AUTH_TRUNC`.
    pub const ALG_AUTH_TRUNC: u16 = 20;
    /// `XFRMA_MARK`.
    pub const MARK: u16 = 21;
    /// `XFRMA_REPLAY_ESN_VAL`.
    pub const REPLAY_ESN_VAL: u16 = 23;
    /// `XFRMA_SA_EXTRA_FLAGS`.
    pub const SA_EXTRA_FLAGS: u16 = 24;
    /// `XFRMA_IF_ID`.
    pub const IF_ID: u16 = 31;
    /// `XFRMA_SA_DIR` (Linux 6.10+): 1 inbound, 2 outbound.
    pub const SA_DIR: u16 = 33;
    /// `XFRMA_SA_PCPU` (Linux 6.13+, RFC 9611 per-CPU SAs): the CPU an outbound SA serves
    /// (`u32`).
    pub const SA_PCPU: u16 = 35;
}

/// Netlink multicast groups (`enum xfrm_nlgroups`).
pub mod group {
    /// `XFRMNLGRP_ACQUIRE`.
    pub const ACQUIRE: u32 = 1;
    /// `XFRMNLGRP_EXPIRE`.
    pub const EXPIRE: u32 = 2;
    /// `XFRMNLGRP_SA`.
    pub const SA: u32 = 3;
    /// `XFRMNLGRP_POLICY`.
    pub const POLICY: u32 = 4;
    /// `XFRMNLGRP_AEVENTS`.
    pub const AEVENTS: u32 = 5;
}

/// Bytes that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A structure is shorter than its layout.
    #[error("{what}: {have} bytes, need {need}")]
    Truncated {
        /// The structure.
        what: &'static str,
        /// Its size.
        need: usize,
        /// What there was.
        have: usize,
    },
    /// A netlink message length outside the datagram.
    #[error("netlink message length {len} invalid with {remaining} bytes left")]
    BadMessageLength {
        /// `nlmsg_len`.
        len: u32,
        /// Bytes left in the datagram.
        remaining: usize,
    },
    /// An attribute length outside its message.
    #[error("attribute type {kind}: length {len} invalid with {remaining} bytes left")]
    BadAttrLength {
        /// `rta_type`.
        kind: u16,
        /// `rta_len`.
        len: u16,
        /// Bytes left in the message.
        remaining: usize,
    },
    /// An address family other than `AF_INET`/`AF_INET6` where one is needed.
    #[error("address family {0} is neither AF_INET nor AF_INET6")]
    BadFamily(u16),
    /// An algorithm name that is not NUL-terminated printable ASCII.
    #[error("algorithm name is not NUL-terminated printable ASCII")]
    BadAlgName,
    /// A key longer than its attribute, or not a whole number of bytes.
    #[error("{alg}: key of {bits} bits does not fit an attribute of {have} bytes")]
    BadKeyLength {
        /// The algorithm.
        alg: String,
        /// Declared key length in bits.
        bits: u32,
        /// Attribute payload length.
        have: usize,
    },
    /// More templates than `XFRM_MAX_DEPTH`.
    #[error("{0} templates (at most {MAX_TEMPLATES})")]
    TooManyTemplates(usize),
    /// An ESN replay state whose bitmap length disagrees with its attribute.
    #[error("ESN replay state: bitmap of {bmp_len} words in an attribute of {have} bytes")]
    BadEsnBitmap {
        /// `bmp_len`.
        bmp_len: u32,
        /// Attribute payload length.
        have: usize,
    },
}

fn need(what: &'static str, b: &[u8], n: usize) -> Result<(), DecodeError> {
    if b.len() < n { Err(DecodeError::Truncated { what, need: n, have: b.len() }) } else { Ok(()) }
}

// Readers at fixed offsets: callers check the length with `need` first, so the slices are in
// range (the `get` + default keeps even a wrong caller from panicking).
fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    b.get(off..off + N).and_then(|s| s.try_into().ok()).unwrap_or([0; N])
}
fn u16_ne(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes(arr(b, off))
}
fn u16_be(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(arr(b, off))
}
fn u32_ne(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(arr(b, off))
}
fn u32_be(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(arr(b, off))
}
fn u64_ne(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(arr(b, off))
}
fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// Appends `n` zero bytes (struct padding).
fn pad(out: &mut Vec<u8>, n: usize) {
    out.resize(out.len() + n, 0);
}

/// An `xfrm_address_t` as an address of `family`.
pub fn to_ip(family: u16, raw: &[u8; 16]) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(*raw))),
        f => Err(DecodeError::BadFamily(f)),
    }
}

/// An address as an `xfrm_address_t` (IPv4 in the first four bytes).
pub fn from_ip(ip: IpAddr) -> [u8; 16] {
    let mut raw = [0u8; 16];
    match ip {
        IpAddr::V4(a) => raw[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => raw = a.octets(),
    }
    raw
}

/// The family constant of an address.
pub fn family_of(ip: IpAddr) -> u16 {
    if ip.is_ipv4() { AF_INET } else { AF_INET6 }
}

/// `struct xfrm_selector` (56 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XfrmSelector {
    /// Destination address.
    pub daddr: [u8; 16],
    /// Source address.
    pub saddr: [u8; 16],
    /// Destination port.
    pub dport: u16,
    /// Destination port mask.
    pub dport_mask: u16,
    /// Source port.
    pub sport: u16,
    /// Source port mask.
    pub sport_mask: u16,
    /// Address family; 0 (`AF_UNSPEC`) is a wildcard selector.
    pub family: u16,
    /// Destination prefix length.
    pub prefixlen_d: u8,
    /// Source prefix length.
    pub prefixlen_s: u8,
    /// IP protocol (0 any).
    pub proto: u8,
    /// Interface index (0 any).
    pub ifindex: i32,
    /// Owner uid.
    pub user: u32,
}

impl XfrmSelector {
    /// Size on the wire.
    pub const SIZE: usize = 56;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_selector", b, Self::SIZE)?;
        Ok(Self {
            daddr: arr(b, 0),
            saddr: arr(b, 16),
            dport: u16_be(b, 32),
            dport_mask: u16_be(b, 34),
            sport: u16_be(b, 36),
            sport_mask: u16_be(b, 38),
            family: u16_ne(b, 40),
            prefixlen_d: u8_at(b, 42),
            prefixlen_s: u8_at(b, 43),
            proto: u8_at(b, 44),
            ifindex: u32_ne(b, 48) as i32,
            user: u32_ne(b, 52),
        })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.daddr);
        out.extend_from_slice(&self.saddr);
        out.extend_from_slice(&self.dport.to_be_bytes());
        out.extend_from_slice(&self.dport_mask.to_be_bytes());
        out.extend_from_slice(&self.sport.to_be_bytes());
        out.extend_from_slice(&self.sport_mask.to_be_bytes());
        out.extend_from_slice(&self.family.to_ne_bytes());
        out.push(self.prefixlen_d);
        out.push(self.prefixlen_s);
        out.push(self.proto);
        pad(out, 3);
        out.extend_from_slice(&self.ifindex.to_ne_bytes());
        out.extend_from_slice(&self.user.to_ne_bytes());
    }
}

/// `struct xfrm_id` (24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XfrmId {
    /// Destination address.
    pub daddr: [u8; 16],
    /// SPI (host order here, big-endian on the wire).
    pub spi: u32,
    /// IPsec protocol (50 ESP).
    pub proto: u8,
}

impl XfrmId {
    /// Size on the wire.
    pub const SIZE: usize = 24;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_id", b, Self::SIZE)?;
        Ok(Self { daddr: arr(b, 0), spi: u32_be(b, 16), proto: u8_at(b, 20) })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.daddr);
        out.extend_from_slice(&self.spi.to_be_bytes());
        out.push(self.proto);
        pad(out, 3);
    }
}

/// `struct xfrm_lifetime_cfg` (64 bytes). [`XFRM_INF`] and 0 seconds mean no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifetimeCfg {
    /// Soft byte limit.
    pub soft_byte_limit: u64,
    /// Hard byte limit.
    pub hard_byte_limit: u64,
    /// Soft packet limit.
    pub soft_packet_limit: u64,
    /// Hard packet limit.
    pub hard_packet_limit: u64,
    /// Soft limit in seconds after creation.
    pub soft_add_expires_seconds: u64,
    /// Hard limit in seconds after creation.
    pub hard_add_expires_seconds: u64,
    /// Soft limit in seconds after first use.
    pub soft_use_expires_seconds: u64,
    /// Hard limit in seconds after first use.
    pub hard_use_expires_seconds: u64,
}

impl Default for LifetimeCfg {
    fn default() -> Self {
        Self {
            soft_byte_limit: XFRM_INF,
            hard_byte_limit: XFRM_INF,
            soft_packet_limit: XFRM_INF,
            hard_packet_limit: XFRM_INF,
            soft_add_expires_seconds: 0,
            hard_add_expires_seconds: 0,
            soft_use_expires_seconds: 0,
            hard_use_expires_seconds: 0,
        }
    }
}

impl LifetimeCfg {
    /// Size on the wire.
    pub const SIZE: usize = 64;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_lifetime_cfg", b, Self::SIZE)?;
        Ok(Self {
            soft_byte_limit: u64_ne(b, 0),
            hard_byte_limit: u64_ne(b, 8),
            soft_packet_limit: u64_ne(b, 16),
            hard_packet_limit: u64_ne(b, 24),
            soft_add_expires_seconds: u64_ne(b, 32),
            hard_add_expires_seconds: u64_ne(b, 40),
            soft_use_expires_seconds: u64_ne(b, 48),
            hard_use_expires_seconds: u64_ne(b, 56),
        })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        for v in [
            self.soft_byte_limit,
            self.hard_byte_limit,
            self.soft_packet_limit,
            self.hard_packet_limit,
            self.soft_add_expires_seconds,
            self.hard_add_expires_seconds,
            self.soft_use_expires_seconds,
            self.hard_use_expires_seconds,
        ] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
    }
}

/// `struct xfrm_lifetime_cur` (32 bytes): what an SA has processed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifetimeCur {
    /// Bytes.
    pub bytes: u64,
    /// Packets.
    pub packets: u64,
    /// Creation time (seconds since the epoch).
    pub add_time: u64,
    /// First use time (seconds since the epoch; 0 never used).
    pub use_time: u64,
}

impl LifetimeCur {
    /// Size on the wire.
    pub const SIZE: usize = 32;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_lifetime_cur", b, Self::SIZE)?;
        Ok(Self {
            bytes: u64_ne(b, 0),
            packets: u64_ne(b, 8),
            add_time: u64_ne(b, 16),
            use_time: u64_ne(b, 24),
        })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        for v in [self.bytes, self.packets, self.add_time, self.use_time] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
    }
}

/// `struct xfrm_usersa_info` (224 bytes): an SA without its attributes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsersaInfo {
    /// Selector.
    pub sel: XfrmSelector,
    /// Destination, SPI, protocol.
    pub id: XfrmId,
    /// Source address.
    pub saddr: [u8; 16],
    /// Limits.
    pub lft: LifetimeCfg,
    /// Counters.
    pub curlft: LifetimeCur,
    /// `xfrm_stats`: replay window, replay drops, integrity failures.
    pub stats: [u32; 3],
    /// Sequence of the ACQUIRE the SA answers.
    pub seq: u32,
    /// Request id binding the SA to policy templates.
    pub reqid: u32,
    /// Family of `id.daddr` and `saddr`.
    pub family: u16,
    /// `XFRM_MODE_*`.
    pub mode: u8,
    /// Legacy (non-ESN) replay window in packets.
    pub replay_window: u8,
    /// `XFRM_STATE_*` flags.
    pub flags: u8,
}

impl UsersaInfo {
    /// Size on the wire.
    pub const SIZE: usize = 224;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_usersa_info", b, Self::SIZE)?;
        Ok(Self {
            sel: XfrmSelector::parse(b)?,
            id: XfrmId::parse(&b[56..])?,
            saddr: arr(b, 80),
            lft: LifetimeCfg::parse(&b[96..])?,
            curlft: LifetimeCur::parse(&b[160..])?,
            stats: [u32_ne(b, 192), u32_ne(b, 196), u32_ne(b, 200)],
            seq: u32_ne(b, 204),
            reqid: u32_ne(b, 208),
            family: u16_ne(b, 212),
            mode: u8_at(b, 214),
            replay_window: u8_at(b, 215),
            flags: u8_at(b, 216),
        })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.sel.write(out);
        self.id.write(out);
        out.extend_from_slice(&self.saddr);
        self.lft.write(out);
        self.curlft.write(out);
        for s in self.stats {
            out.extend_from_slice(&s.to_ne_bytes());
        }
        out.extend_from_slice(&self.seq.to_ne_bytes());
        out.extend_from_slice(&self.reqid.to_ne_bytes());
        out.extend_from_slice(&self.family.to_ne_bytes());
        out.push(self.mode);
        out.push(self.replay_window);
        out.push(self.flags);
        pad(out, 7);
    }
}

/// `struct xfrm_usersa_id` (24 bytes): names an SA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsersaId {
    /// Destination address.
    pub daddr: [u8; 16],
    /// SPI.
    pub spi: u32,
    /// Address family.
    pub family: u16,
    /// IPsec protocol.
    pub proto: u8,
}

impl UsersaId {
    /// Size on the wire.
    pub const SIZE: usize = 24;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_usersa_id", b, Self::SIZE)?;
        Ok(Self { daddr: arr(b, 0), spi: u32_be(b, 16), family: u16_ne(b, 20), proto: u8_at(b, 22) })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.daddr);
        out.extend_from_slice(&self.spi.to_be_bytes());
        out.extend_from_slice(&self.family.to_ne_bytes());
        out.push(self.proto);
        pad(out, 1);
    }
}

/// `struct xfrm_aevent_id` (48 bytes): header of NEWAE/GETAE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AeventId {
    /// The SA.
    pub sa_id: UsersaId,
    /// Its source address.
    pub saddr: [u8; 16],
    /// `XFRM_AE_*` flags.
    pub flags: u32,
    /// Its reqid.
    pub reqid: u32,
}

impl AeventId {
    /// Size on the wire.
    pub const SIZE: usize = 48;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_aevent_id", b, Self::SIZE)?;
        Ok(Self { sa_id: UsersaId::parse(b)?, saddr: arr(b, 24), flags: u32_ne(b, 40), reqid: u32_ne(b, 44) })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.sa_id.write(out);
        out.extend_from_slice(&self.saddr);
        out.extend_from_slice(&self.flags.to_ne_bytes());
        out.extend_from_slice(&self.reqid.to_ne_bytes());
    }
}

/// `struct xfrm_userpolicy_info` (168 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserpolicyInfo {
    /// Selector.
    pub sel: XfrmSelector,
    /// Limits.
    pub lft: LifetimeCfg,
    /// Counters.
    pub curlft: LifetimeCur,
    /// Priority: lower is tried first.
    pub priority: u32,
    /// Kernel-assigned index (its low 3 bits are the direction).
    pub index: u32,
    /// `XFRM_POLICY_IN/OUT/FWD`.
    pub dir: u8,
    /// `XFRM_POLICY_ALLOW/BLOCK`.
    pub action: u8,
    /// `XFRM_POLICY_LOCALOK/ICMP`.
    pub flags: u8,
    /// `XFRM_SHARE_*`.
    pub share: u8,
}

impl UserpolicyInfo {
    /// Size on the wire.
    pub const SIZE: usize = 168;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_userpolicy_info", b, Self::SIZE)?;
        Ok(Self {
            sel: XfrmSelector::parse(b)?,
            lft: LifetimeCfg::parse(&b[56..])?,
            curlft: LifetimeCur::parse(&b[120..])?,
            priority: u32_ne(b, 152),
            index: u32_ne(b, 156),
            dir: u8_at(b, 160),
            action: u8_at(b, 161),
            flags: u8_at(b, 162),
            share: u8_at(b, 163),
        })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.sel.write(out);
        self.lft.write(out);
        self.curlft.write(out);
        out.extend_from_slice(&self.priority.to_ne_bytes());
        out.extend_from_slice(&self.index.to_ne_bytes());
        out.extend_from_slice(&[self.dir, self.action, self.flags, self.share]);
        pad(out, 4);
    }
}

/// `struct xfrm_userpolicy_id` (64 bytes): names a policy (by index, or by selector and
/// direction when the index is 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserpolicyId {
    /// Selector.
    pub sel: XfrmSelector,
    /// Index.
    pub index: u32,
    /// Direction.
    pub dir: u8,
}

impl UserpolicyId {
    /// Size on the wire.
    pub const SIZE: usize = 64;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_userpolicy_id", b, Self::SIZE)?;
        Ok(Self { sel: XfrmSelector::parse(b)?, index: u32_ne(b, 56), dir: u8_at(b, 60) })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.sel.write(out);
        out.extend_from_slice(&self.index.to_ne_bytes());
        out.push(self.dir);
        pad(out, 3);
    }
}

/// `struct xfrm_user_tmpl` (64 bytes): one transform a policy asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserTmpl {
    /// Destination, SPI (usually 0), protocol.
    pub id: XfrmId,
    /// Family of the addresses.
    pub family: u16,
    /// Source address (tunnel mode).
    pub saddr: [u8; 16],
    /// Request id the SA must carry (0 any).
    pub reqid: u32,
    /// `XFRM_MODE_*`.
    pub mode: u8,
    /// `XFRM_SHARE_*`.
    pub share: u8,
    /// Whether the transform may be absent.
    pub optional: u8,
    /// Allowed authentication algorithms (bitmap).
    pub aalgos: u32,
    /// Allowed encryption algorithms (bitmap).
    pub ealgos: u32,
    /// Allowed compression algorithms (bitmap).
    pub calgos: u32,
}

impl UserTmpl {
    /// Size on the wire.
    pub const SIZE: usize = 64;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_user_tmpl", b, Self::SIZE)?;
        Ok(Self {
            id: XfrmId::parse(b)?,
            family: u16_ne(b, 24),
            saddr: arr(b, 28),
            reqid: u32_ne(b, 44),
            mode: u8_at(b, 48),
            share: u8_at(b, 49),
            optional: u8_at(b, 50),
            aalgos: u32_ne(b, 52),
            ealgos: u32_ne(b, 56),
            calgos: u32_ne(b, 60),
        })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.id.write(out);
        out.extend_from_slice(&self.family.to_ne_bytes());
        pad(out, 2);
        out.extend_from_slice(&self.saddr);
        out.extend_from_slice(&self.reqid.to_ne_bytes());
        out.extend_from_slice(&[self.mode, self.share, self.optional]);
        pad(out, 1);
        for v in [self.aalgos, self.ealgos, self.calgos] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
    }
}

/// `struct xfrm_encap_tmpl` (24 bytes): UDP encapsulation of an SA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncapTmpl {
    /// `UDP_ENCAP_*`.
    pub encap_type: u16,
    /// UDP source port.
    pub sport: u16,
    /// UDP destination port.
    pub dport: u16,
    /// Original address (NAT-OA).
    pub oa: [u8; 16],
}

impl EncapTmpl {
    /// Size on the wire.
    pub const SIZE: usize = 24;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_encap_tmpl", b, Self::SIZE)?;
        Ok(Self { encap_type: u16_ne(b, 0), sport: u16_be(b, 2), dport: u16_be(b, 4), oa: arr(b, 8) })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encap_type.to_ne_bytes());
        out.extend_from_slice(&self.sport.to_be_bytes());
        out.extend_from_slice(&self.dport.to_be_bytes());
        pad(out, 2);
        out.extend_from_slice(&self.oa);
    }
}

/// `struct xfrm_replay_state` (12 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayState {
    /// Last outbound sequence number.
    pub oseq: u32,
    /// Highest inbound sequence number.
    pub seq: u32,
    /// Window bitmap.
    pub bitmap: u32,
}

impl ReplayState {
    /// Size on the wire.
    pub const SIZE: usize = 12;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_replay_state", b, Self::SIZE)?;
        Ok(Self { oseq: u32_ne(b, 0), seq: u32_ne(b, 4), bitmap: u32_ne(b, 8) })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        for v in [self.oseq, self.seq, self.bitmap] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
    }
}

/// `struct xfrm_replay_state_esn` (24 bytes + `bmp_len` words of bitmap, not kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStateEsn {
    /// Bitmap length in 32-bit words.
    pub bmp_len: u32,
    /// Low 32 bits of the last outbound sequence number.
    pub oseq: u32,
    /// Low 32 bits of the highest inbound sequence number.
    pub seq: u32,
    /// High 32 bits of `oseq`.
    pub oseq_hi: u32,
    /// High 32 bits of `seq`.
    pub seq_hi: u32,
    /// Window in packets.
    pub replay_window: u32,
}

impl ReplayStateEsn {
    /// Size of the fixed part.
    pub const SIZE: usize = 24;
    /// Largest bitmap accepted (words): the kernel's limit (`XFRMA_REPLAY_ESN_MAX` 4096 bytes).
    pub const MAX_BMP_LEN: u32 = 4096 / 4;

    /// Decodes, checking that the attribute holds the declared bitmap.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_replay_state_esn", b, Self::SIZE)?;
        let bmp_len = u32_ne(b, 0);
        if bmp_len > Self::MAX_BMP_LEN || b.len() < Self::SIZE + bmp_len as usize * 4 {
            return Err(DecodeError::BadEsnBitmap { bmp_len, have: b.len() });
        }
        Ok(Self {
            bmp_len,
            oseq: u32_ne(b, 4),
            seq: u32_ne(b, 8),
            oseq_hi: u32_ne(b, 12),
            seq_hi: u32_ne(b, 16),
            replay_window: u32_ne(b, 20),
        })
    }

    /// Encodes, with a zero bitmap of `bmp_len` words.
    pub fn write(&self, out: &mut Vec<u8>) {
        for v in [self.bmp_len, self.oseq, self.seq, self.oseq_hi, self.seq_hi, self.replay_window] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        pad(out, self.bmp_len.min(Self::MAX_BMP_LEN) as usize * 4);
    }
}

/// `struct xfrm_mark`: a packet mark value and mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mark {
    /// Value.
    pub v: u32,
    /// Mask.
    pub m: u32,
}

impl Mark {
    /// Size on the wire.
    pub const SIZE: usize = 8;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_mark", b, Self::SIZE)?;
        Ok(Self { v: u32_ne(b, 0), m: u32_ne(b, 4) })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.v.to_ne_bytes());
        out.extend_from_slice(&self.m.to_ne_bytes());
    }
}

/// `struct xfrm_algo_aead`: an AEAD and its key (zeroized when dropped).
#[derive(Clone, PartialEq, Eq)]
pub struct AlgoAead {
    /// Kernel name, e.g. `rfc4106(gcm(aes))`.
    pub name: String,
    /// Key material (cipher key ‖ salt).
    pub key: Zeroizing<Vec<u8>>,
    /// ICV length in bits.
    pub icv_bits: u32,
}

impl std::fmt::Debug for AlgoAead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("AlgoAead")
            .field("name", &self.name)
            .field("key_bits", &(self.key.len() * 8))
            .field("icv_bits", &self.icv_bits)
            .finish()
    }
}

/// Length of the name field of the `xfrm_algo*` structures.
pub const ALG_NAME_LEN: usize = 64;

fn alg_name(b: &[u8]) -> Result<String, DecodeError> {
    let field = b.get(..ALG_NAME_LEN).ok_or(DecodeError::BadAlgName)?;
    let end = field.iter().position(|&c| c == 0).ok_or(DecodeError::BadAlgName)?;
    let name = &field[..end];
    if name.iter().all(|c| c.is_ascii_graphic()) {
        Ok(String::from_utf8_lossy(name).into_owned())
    } else {
        Err(DecodeError::BadAlgName)
    }
}

/// A key of `bits` bits after a `header`-byte prefix of `b`.
fn alg_key(name: &str, b: &[u8], header: usize, bits: u32) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
    let bad = || DecodeError::BadKeyLength { alg: name.to_owned(), bits, have: b.len() };
    if !bits.is_multiple_of(8) {
        return Err(bad());
    }
    let len = (bits / 8) as usize;
    let key = b.get(header..header + len).ok_or_else(bad)?;
    Ok(Zeroizing::new(key.to_vec()))
}

impl AlgoAead {
    /// Size of the fixed part.
    pub const SIZE: usize = 72;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_algo_aead", b, Self::SIZE)?;
        let name = alg_name(b)?;
        let bits = u32_ne(b, 64);
        let key = alg_key(&name, b, Self::SIZE, bits)?;
        Ok(Self { name, key, icv_bits: u32_ne(b, 68) })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        write_name(out, &self.name);
        out.extend_from_slice(&((self.key.len() * 8) as u32).to_ne_bytes());
        out.extend_from_slice(&self.icv_bits.to_ne_bytes());
        out.extend_from_slice(&self.key);
    }
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    let mut field = [0u8; ALG_NAME_LEN];
    let n = name.len().min(ALG_NAME_LEN - 1);
    field[..n].copy_from_slice(&name.as_bytes()[..n]);
    out.extend_from_slice(&field);
}

/// The name of a non-AEAD algorithm (`struct xfrm_algo` or `xfrm_algo_auth`); its key is
/// checked for length and wiped at once: wirespeed only runs AEADs.
pub fn parse_algo_name(b: &[u8], header: usize) -> Result<String, DecodeError> {
    need("xfrm_algo", b, header)?;
    let name = alg_name(b)?;
    let bits = u32_ne(b, ALG_NAME_LEN);
    drop(alg_key(&name, b, header, bits)?);
    Ok(name)
}

/// Size of `struct xfrm_algo` (name, key length).
pub const ALGO_SIZE: usize = 68;
/// Size of `struct xfrm_algo_auth` (name, key length, truncation length).
pub const ALGO_AUTH_SIZE: usize = 72;

/// Writes `struct xfrm_algo` with `key` (fixtures and tests).
pub fn write_algo(out: &mut Vec<u8>, name: &str, key: &[u8]) {
    write_name(out, name);
    out.extend_from_slice(&((key.len() * 8) as u32).to_ne_bytes());
    out.extend_from_slice(key);
}

/// `struct xfrm_user_acquire` (280 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserAcquire {
    /// SA destination, SPI, protocol wanted.
    pub id: XfrmId,
    /// SA source wanted.
    pub saddr: [u8; 16],
    /// The flow that triggered it.
    pub sel: XfrmSelector,
    /// The policy that asked for an SA.
    pub policy: UserpolicyInfo,
    /// Allowed authentication algorithms.
    pub aalgos: u32,
    /// Allowed encryption algorithms.
    pub ealgos: u32,
    /// Allowed compression algorithms.
    pub calgos: u32,
    /// Sequence number the answering SA will carry.
    pub seq: u32,
}

impl UserAcquire {
    /// Size on the wire.
    pub const SIZE: usize = 280;

    /// Decodes.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_user_acquire", b, Self::SIZE)?;
        Ok(Self {
            id: XfrmId::parse(b)?,
            saddr: arr(b, 24),
            sel: XfrmSelector::parse(&b[40..])?,
            policy: UserpolicyInfo::parse(&b[96..])?,
            aalgos: u32_ne(b, 264),
            ealgos: u32_ne(b, 268),
            calgos: u32_ne(b, 272),
            seq: u32_ne(b, 276),
        })
    }

    /// Encodes.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.id.write(out);
        out.extend_from_slice(&self.saddr);
        self.sel.write(out);
        self.policy.write(out);
        for v in [self.aalgos, self.ealgos, self.calgos, self.seq] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
    }
}

/// Size of `struct xfrm_user_expire` (usersa_info, `hard`, padding).
pub const USER_EXPIRE_SIZE: usize = 232;
/// Size of `struct xfrm_userspi_info` (usersa_info, min, max).
pub const USERSPI_INFO_SIZE: usize = 232;
/// Size of `struct nlmsghdr`.
pub const NLMSG_HDR: usize = 16;

/// Rounds up to the 4-byte netlink alignment.
pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}
