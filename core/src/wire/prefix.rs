//! Address prefixes, the one type used by steering rules, security policies and routes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a prefix was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// The length exceeds the address width.
    #[error("prefix length /{len} too long for {addr} (at most /{max})")]
    TooLong {
        /// Address given.
        addr: IpAddr,
        /// Length given.
        len: u8,
        /// Width of the address family (32 or 128).
        max: u8,
    },
    /// The text is not `address/length` or a bare address.
    #[error("`{0}` is not an address prefix (like 10.0.0.0/8 or 2001:db8::/32)")]
    Syntax(String),
}

/// An address prefix, written `10.0.0.0/8` or `2001:db8::/32` (a bare address is a host
/// prefix). Host bits of `addr` are kept as given and ignored by [`IpPrefix::contains`].
///
/// [`IpPrefix::new`] is `const` and clamps the length to the address width (so prefixes can be
/// constants); [`IpPrefix::checked`] and parsing refuse a length that is too long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "String", into = "String"))]
pub struct IpPrefix {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
}

impl IpPrefix {
    /// `addr/len`, with `len` clamped to the width of the address (32 or 128).
    pub const fn new(addr: IpAddr, len: u8) -> Self {
        let max = Self::width(&addr);
        Self { addr, len: if len > max { max } else { len } }
    }

    /// `addr/len`, refusing a length beyond the address width.
    pub fn checked(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = Self::width(&addr);
        if len > max {
            return Err(PrefixError::TooLong { addr, len, max });
        }
        Ok(Self { addr, len })
    }

    /// The host prefix of `addr` (/32 or /128).
    pub const fn host(addr: IpAddr) -> Self {
        Self { addr, len: Self::width(&addr) }
    }

    /// Every IPv4 address (`0.0.0.0/0`).
    pub const fn any_v4() -> Self {
        Self { addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), len: 0 }
    }

    /// Every IPv6 address (`::/0`).
    pub const fn any_v6() -> Self {
        Self { addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED), len: 0 }
    }

    const fn width(addr: &IpAddr) -> u8 {
        match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    /// The address as a left-aligned 128-bit integer (IPv4 in the top 32 bits) and the mask of
    /// the prefix in the same alignment: `a` is inside when `a & mask == bits & mask`.
    pub const fn left_aligned(&self) -> (u128, u128) {
        let (bits, width) = match self.addr {
            IpAddr::V4(a) => ((a.to_bits() as u128) << 96, 32u8),
            IpAddr::V6(a) => (a.to_bits(), 128u8),
        };
        let len = if self.len > width { width } else { self.len } as u32;
        let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
        (bits & mask, mask)
    }

    /// True when `a` is inside the prefix (never across address families).
    pub fn contains(&self, a: &IpAddr) -> bool {
        if self.addr.is_ipv4() != a.is_ipv4() {
            return false;
        }
        let (bits, mask) = self.left_aligned();
        let a = match a {
            IpAddr::V4(a) => (a.to_bits() as u128) << 96,
            IpAddr::V6(a) => a.to_bits(),
        };
        a & mask == bits
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl std::str::FromStr for IpPrefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, PrefixError> {
        let bad = || PrefixError::Syntax(s.to_owned());
        match s.split_once('/') {
            Some((a, l)) => Self::checked(a.parse().map_err(|_| bad())?, l.parse().map_err(|_| bad())?),
            None => Ok(Self::host(s.parse().map_err(|_| bad())?)),
        }
    }
}

impl TryFrom<String> for IpPrefix {
    type Error = PrefixError;
    fn try_from(s: String) -> Result<Self, PrefixError> {
        s.parse()
    }
}

impl From<IpPrefix> for String {
    fn from(p: IpPrefix) -> String {
        p.to_string()
    }
}

impl From<IpAddr> for IpPrefix {
    /// The host prefix of the address.
    fn from(a: IpAddr) -> Self {
        Self::host(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_contain_clamp() {
        let p: IpPrefix = "10.1.0.0/16".parse().unwrap();
        assert!(p.contains(&"10.1.255.3".parse().unwrap()));
        assert!(!p.contains(&"10.2.0.0".parse().unwrap()));
        assert!(!p.contains(&"::a01:0".parse().unwrap()), "never across families");
        assert!(IpPrefix::any_v6().contains(&"2001:db8::1".parse().unwrap()));
        assert!(!IpPrefix::any_v4().contains(&"2001:db8::1".parse().unwrap()));
        assert_eq!("192.0.2.1".parse::<IpPrefix>().unwrap().len, 32);
        assert!(matches!("10.0.0.0/33".parse::<IpPrefix>(), Err(PrefixError::TooLong { max: 32, .. })));
        assert!(matches!("10.0.0/8".parse::<IpPrefix>(), Err(PrefixError::Syntax(_))));
        assert_eq!(IpPrefix::new("10.0.0.0".parse().unwrap(), 40).len, 32);
        assert_eq!(p.to_string(), "10.1.0.0/16");
    }
}
