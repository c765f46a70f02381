//! The security policy database (RFC 4301 §4.4.1): ordered selectors → protect / bypass /
//! discard.
//!
//! Lookup is a first-match scan over compiled selectors (integer prefix compares, no
//! allocation). That is the right structure for the tens of policies a gateway has; a large SPD
//! would want a decision tree, behind the same API.

/// Selectors use the one address-prefix type of wirespeed ([`wirespeed_core::IpPrefix`]).
pub use wirespeed_core::IpPrefix;

/// The prefix as a left-aligned 128-bit integer, its family and mask.
fn compile(p: &IpPrefix) -> CompiledPrefix {
    let (bits, mask) = p.left_aligned();
    CompiledPrefix { v6: p.addr.is_ipv6(), bits: halves(bits), mask: halves(mask) }
}

/// High and low 64 bits.
#[inline(always)]
fn halves(x: u128) -> [u64; 2] {
    [(x >> 64) as u64, x as u64]
}

/// A compiled prefix, as 64-bit halves: the address compared with it was usually written to
/// memory by two 64-bit stores just before (the flow key of a packet), and a 128-bit vector
/// load of it cannot be forwarded from those stores; compared as halves, each load is
/// (measured: 65 % of the samples of `CompiledSelector::matches` in `gateway/decrypt_imix` sat
/// on that one 16-byte load).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CompiledPrefix {
    v6: bool,
    bits: [u64; 2],
    mask: [u64; 2],
}

impl CompiledPrefix {
    #[inline]
    fn matches(&self, v6: bool, addr: u128) -> bool {
        let a = halves(addr);
        self.v6 == v6 && a[0] & self.mask[0] == self.bits[0] && a[1] & self.mask[1] == self.bits[1]
    }
}

/// Which packets a policy applies to. Ports are matched only for TCP, UDP and SCTP first
/// fragments; a selector with port ranges other than "any" never matches packets without ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Source prefix (fixes the address family).
    pub src: IpPrefix,
    /// Destination prefix (same family as `src`).
    pub dst: IpPrefix,
    /// IP protocol, or any.
    pub proto: Option<u8>,
    /// Source port range (inclusive).
    pub src_ports: (u16, u16),
    /// Destination port range (inclusive).
    pub dst_ports: (u16, u16),
}

impl Selector {
    /// Every packet from `src` to `dst`, any protocol and port.
    pub const fn between(src: IpPrefix, dst: IpPrefix) -> Self {
        Self { src, dst, proto: None, src_ports: (0, u16::MAX), dst_ports: (0, u16::MAX) }
    }
}

/// What to do with matching packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyAction {
    /// Send in clear.
    Bypass,
    /// Drop (counted as `PolicyDiscard`).
    Discard,
    /// Encrypt with the outbound SA of the processing shard among these SPIs (one per shard for
    /// a tunnel spread over cores, RFC 9611; a single SPI when one shard handles the tunnel).
    Protect {
        /// Outbound SAs, by SPI.
        spis: Vec<u32>,
    },
}

/// One SPD entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityPolicy {
    /// Matching packets.
    pub selector: Selector,
    /// Their fate.
    pub action: PolicyAction,
}

/// The outbound SPD: policies in priority order (first match wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spd {
    /// The policies, highest priority first.
    pub policies: Vec<SecurityPolicy>,
    /// Fate of packets no policy matches (RFC 4301 says discard; gateways often bypass).
    pub default_action: DefaultAction,
}

/// Action for packets no policy matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultAction {
    /// Pass in clear.
    #[default]
    Bypass,
    /// Drop (`PolicyDiscard`).
    Discard,
}

impl Spd {
    /// An SPD with `policies` and [`DefaultAction::Bypass`].
    pub fn new(policies: Vec<SecurityPolicy>) -> Self {
        Self { policies, default_action: DefaultAction::Bypass }
    }
}

/// The fields of a packet a selector looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// Source address, left-aligned (IPv4 in the top 32 bits).
    pub src: u128,
    /// Destination address, left-aligned.
    pub dst: u128,
    /// IP protocol of the transport header.
    pub proto: u8,
    /// Ports, when the packet has them (TCP/UDP/SCTP, not a later fragment).
    pub ports: Option<(u16, u16)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CompiledSelector {
    src: CompiledPrefix,
    dst: CompiledPrefix,
    proto: Option<u8>,
    src_ports: (u16, u16),
    dst_ports: (u16, u16),
    any_ports: bool,
}

impl CompiledSelector {
    pub(crate) fn new(s: &Selector) -> Self {
        Self {
            src: compile(&s.src),
            dst: compile(&s.dst),
            proto: s.proto,
            src_ports: s.src_ports,
            dst_ports: s.dst_ports,
            any_ports: s.src_ports == (0, u16::MAX) && s.dst_ports == (0, u16::MAX),
        }
    }

    #[inline]
    pub(crate) fn matches(&self, k: &FlowKey) -> bool {
        if !self.src.matches(k.v6, k.src) || !self.dst.matches(k.v6, k.dst) {
            return false;
        }
        if self.proto.is_some_and(|p| p != k.proto) {
            return false;
        }
        if self.any_ports {
            return true;
        }
        match k.ports {
            Some((sp, dp)) => {
                (self.src_ports.0..=self.src_ports.1).contains(&sp)
                    && (self.dst_ports.0..=self.dst_ports.1).contains(&dp)
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: [u8; 4], dst: [u8; 4], proto: u8, ports: Option<(u16, u16)>) -> FlowKey {
        FlowKey {
            v6: false,
            src: (u32::from_be_bytes(src) as u128) << 96,
            dst: (u32::from_be_bytes(dst) as u128) << 96,
            proto,
            ports,
        }
    }

    #[test]
    fn prefixes_protocols_ports() {
        let s = Selector {
            src: IpPrefix::new([10, 0, 0, 0].into(), 8),
            dst: IpPrefix::new([192, 168, 1, 0].into(), 24),
            proto: Some(17),
            src_ports: (0, u16::MAX),
            dst_ports: (53, 53),
        };
        let c = CompiledSelector::new(&s);
        assert!(c.matches(&key([10, 1, 2, 3], [192, 168, 1, 9], 17, Some((999, 53)))));
        assert!(!c.matches(&key([10, 1, 2, 3], [192, 168, 2, 9], 17, Some((999, 53)))));
        assert!(!c.matches(&key([11, 1, 2, 3], [192, 168, 1, 9], 17, Some((999, 53)))));
        assert!(!c.matches(&key([10, 1, 2, 3], [192, 168, 1, 9], 6, Some((999, 53)))));
        assert!(!c.matches(&key([10, 1, 2, 3], [192, 168, 1, 9], 17, Some((999, 54)))));
        assert!(!c.matches(&key([10, 1, 2, 3], [192, 168, 1, 9], 17, None)), "fragment without ports");
        let any = CompiledSelector::new(&Selector::between(IpPrefix::any_v4(), IpPrefix::any_v4()));
        assert!(any.matches(&key([1, 2, 3, 4], [5, 6, 7, 8], 50, None)));
        let mut v6 = key([1, 2, 3, 4], [5, 6, 7, 8], 50, None);
        v6.v6 = true;
        assert!(!any.matches(&v6), "families never mix");
    }
}
