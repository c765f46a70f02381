//! Link-layer types of captures and how to find the network header behind each of them.
//!
//! Every supported link type can be normalised into an Ethernet II frame
//! ([`normalize_to_ethernet`]): the pipeline stages only parse Ethernet, so a capture taken on a
//! tunnel, on `any` (Linux cooked) or on loopback is given a synthesised Ethernet header with
//! zero MAC addresses and the EtherType of the payload.

// Crate-internal aliases: `port.rs` names the EtherTypes through this module.
use wirespeed_core::wire::{
    ETHERNET_HEADER_LEN, ETHERTYPE_MIN, EthernetFrame, VLAN_TAG_LEN, VlanTag, is_vlan_tpid,
};
pub(crate) use wirespeed_core::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};

/// Most VLAN tags skipped before giving up (QinQ is two; more is hostile or broken).
const MAX_VLAN_TAGS: usize = 8;
/// Linux `ARPHRD_NETLINK`: the SLL protocol field is then a netlink family, not an EtherType.
const ARPHRD_NETLINK: u16 = 824;

/// A link-layer header type this crate understands (the `LINKTYPE_*` registry of tcpdump.org).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// `LINKTYPE_ETHERNET` (1): Ethernet II / 802.3, possibly VLAN-tagged.
    Ethernet,
    /// `LINKTYPE_RAW` (101), also 12 and 14 (`DLT_RAW` on some platforms): a bare IPv4 or IPv6
    /// packet, told apart by the version nibble.
    Raw,
    /// `LINKTYPE_IPV4` (228): a bare IPv4 packet.
    Ipv4,
    /// `LINKTYPE_IPV6` (229): a bare IPv6 packet.
    Ipv6,
    /// `LINKTYPE_LINUX_SLL` (113): Linux cooked capture v1 (16-byte header, `tcpdump -i any`).
    LinuxSll,
    /// `LINKTYPE_LINUX_SLL2` (276): Linux cooked capture v2 (20-byte header).
    LinuxSll2,
    /// `LINKTYPE_NULL` (0): BSD loopback, a 4-byte address family in the capturing host's
    /// byte order.
    Null,
    /// `LINKTYPE_LOOP` (108): OpenBSD loopback, a 4-byte address family in network byte order.
    Loop,
}

impl LinkType {
    /// The link type of a `LINKTYPE_*` value, or `None` when it is not supported.
    ///
    /// Only the low 16 bits are the link type; classic pcap headers may carry FCS information in
    /// the upper bits, which is ignored here as libpcap does.
    pub fn from_raw(value: u32) -> Option<LinkType> {
        Some(match value & 0xffff {
            1 => LinkType::Ethernet,
            101 | 12 | 14 => LinkType::Raw,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            _ => return None,
        })
    }

    /// The `LINKTYPE_*` value written into file headers (101 for [`LinkType::Raw`]).
    pub fn raw(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Null => 0,
            LinkType::Loop => 108,
        }
    }

    /// Bytes of link header in front of the payload (1 for the bare-IP types: at least the
    /// version nibble must be there).
    pub fn header_len(self) -> usize {
        match self {
            LinkType::Ethernet => ETHERNET_HEADER_LEN,
            LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => 1,
            LinkType::Null | LinkType::Loop => 4,
            LinkType::LinuxSll => 16,
            LinkType::LinuxSll2 => 20,
        }
    }

    /// The registry name (`ETHERNET`, `LINUX_SLL`, ...), for messages.
    pub fn name(self) -> &'static str {
        match self {
            LinkType::Ethernet => "ETHERNET",
            LinkType::Raw => "RAW",
            LinkType::Ipv4 => "IPV4",
            LinkType::Ipv6 => "IPV6",
            LinkType::LinuxSll => "LINUX_SLL",
            LinkType::LinuxSll2 => "LINUX_SLL2",
            LinkType::Null => "NULL",
            LinkType::Loop => "LOOP",
        }
    }
}

impl std::fmt::Display for LinkType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.raw())
    }
}

/// Why a frame could not be normalised into Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// The output has no room for the Ethernet frame.
    #[error("normalised frame needs {needed} bytes, the output has {room}")]
    TooLarge {
        /// Bytes the Ethernet frame needs.
        needed: usize,
        /// Bytes available.
        room: usize,
    },
    /// The frame is shorter than its link header.
    #[error("{link} frame of {len} bytes is shorter than its {needed}-byte link header")]
    Truncated {
        /// Link type of the frame.
        link: LinkType,
        /// Captured length.
        len: usize,
        /// Length of the link header.
        needed: usize,
    },
    /// The link header names no EtherType (unknown address family, raw packet that is neither
    /// IPv4 nor IPv6, non-Ethernet protocol in a cooked header).
    #[error("{link} frame of {len} bytes has no recognisable network protocol")]
    NoEtherType {
        /// Link type of the frame.
        link: LinkType,
        /// Captured length.
        len: usize,
    },
}

#[inline]
fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

#[inline]
fn address_family(af: u32) -> Option<u16> {
    // AF_INET is 2 everywhere; AF_INET6 differs per OS: Linux 10, NetBSD/OpenBSD/BSD/OS 24,
    // FreeBSD/DragonFly 28, Darwin 30.
    match af {
        2 => Some(ETHERTYPE_IPV4),
        10 | 24 | 28 | 30 => Some(ETHERTYPE_IPV6),
        _ => None,
    }
}

#[inline]
fn ip_version(data: &[u8]) -> Option<u16> {
    match data.first()? >> 4 {
        4 => Some(ETHERTYPE_IPV4),
        6 => Some(ETHERTYPE_IPV6),
        _ => None,
    }
}

/// The EtherType of the link payload and where the payload starts, before any VLAN tag is
/// skipped. For Ethernet this is the outer EtherType at offset 14.
#[inline]
fn link_payload(link: LinkType, data: &[u8]) -> Option<(u16, usize)> {
    match link {
        LinkType::Ethernet => Some((EthernetFrame::new_checked(data).ok()?.ethertype(), ETHERNET_HEADER_LEN)),
        LinkType::Raw => Some((ip_version(data)?, 0)),
        LinkType::Ipv4 => (!data.is_empty()).then_some((ETHERTYPE_IPV4, 0)),
        LinkType::Ipv6 => (!data.is_empty()).then_some((ETHERTYPE_IPV6, 0)),
        LinkType::Null => {
            let b = data.get(..4)?;
            let mut af = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            // Host byte order of the capturing machine: address families are small, so a value
            // with its high half set was written big-endian.
            if af & 0xffff_0000 != 0 {
                af = af.swap_bytes();
            }
            Some((address_family(af)?, 4))
        }
        LinkType::Loop => {
            let b = data.get(..4)?;
            Some((address_family(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))?, 4))
        }
        LinkType::LinuxSll => {
            // packet type, ARPHRD type, address length, 8 address bytes, protocol.
            let hatype = be16(data, 2)?;
            let proto = be16(data, 14)?;
            (hatype != ARPHRD_NETLINK && proto >= ETHERTYPE_MIN).then_some((proto, 16))
        }
        LinkType::LinuxSll2 => {
            // protocol, reserved, interface index, ARPHRD type, packet type, address length, 8
            // address bytes.
            let proto = be16(data, 0)?;
            let hatype = be16(data, 8)?;
            if data.len() < 20 {
                return None;
            }
            (hatype != ARPHRD_NETLINK && proto >= ETHERTYPE_MIN).then_some((proto, 20))
        }
    }
}

/// Skips 802.1Q / 802.1ad (and the pre-standard 0x9100) tags starting at `off`, then an LLC/SNAP
/// header with a zero OUI when the EtherType field is an 802.3 length.
#[inline]
fn skip_tags(data: &[u8], mut ethertype: u16, mut off: usize) -> Option<(u16, usize)> {
    let mut tags = 0;
    while is_vlan_tpid(ethertype) {
        if tags == MAX_VLAN_TAGS {
            return None;
        }
        ethertype = VlanTag::new_checked(data.get(off..)?).ok()?.ethertype();
        off += VLAN_TAG_LEN;
        tags += 1;
    }
    if ethertype < ETHERTYPE_MIN {
        // 802.3 length field: only RFC 1042 SNAP encapsulation carries an EtherType.
        let llc = data.get(off..off + 8)?;
        if llc[..6] != [0xaa, 0xaa, 0x03, 0, 0, 0] {
            return None;
        }
        ethertype = u16::from_be_bytes([llc[6], llc[7]]);
        off += 8;
        if ethertype < ETHERTYPE_MIN {
            return None;
        }
    }
    Some((ethertype, off))
}

/// EtherType of the network header and its offset in `data`, for a frame of link type `link`;
/// VLAN tags and SNAP headers are skipped. `None` when the frame is too short or carries no
/// EtherType-identified protocol.
#[inline]
pub fn network_header(link: LinkType, data: &[u8]) -> Option<(u16, usize)> {
    let (ethertype, off) = link_payload(link, data)?;
    match link {
        LinkType::Ethernet | LinkType::LinuxSll | LinkType::LinuxSll2 => skip_tags(data, ethertype, off),
        _ => Some((ethertype, off)),
    }
}

/// Length the frame has once normalised into Ethernet by [`normalize_to_ethernet`].
#[inline]
pub fn ethernet_len(link: LinkType, data: &[u8]) -> Result<usize, NormalizeError> {
    if link == LinkType::Ethernet {
        return Ok(data.len());
    }
    let (_, off) = payload_or_error(link, data)?;
    Ok(ETHERNET_HEADER_LEN + data.len() - off)
}

#[inline]
fn payload_or_error(link: LinkType, data: &[u8]) -> Result<(u16, usize), NormalizeError> {
    link_payload(link, data).ok_or_else(|| {
        let (len, needed) = (data.len(), link.header_len());
        if len < needed {
            NormalizeError::Truncated { link, len, needed }
        } else {
            NormalizeError::NoEtherType { link, len }
        }
    })
}

/// Writes `data` (a frame of link type `link`) into `out` as an Ethernet II frame and returns
/// its length. Ethernet frames are copied as they are; any other link header is replaced by
/// zero destination and source MACs and the payload's EtherType (VLAN tags carried in a Linux
/// cooked capture's payload stay in place, after the EtherType 0x8100 they belong to).
#[inline]
pub fn normalize_to_ethernet(link: LinkType, data: &[u8], out: &mut [u8]) -> Result<usize, NormalizeError> {
    if link == LinkType::Ethernet {
        let room = out.len();
        let dst = out.get_mut(..data.len()).ok_or(NormalizeError::TooLarge { needed: data.len(), room })?;
        dst.copy_from_slice(data);
        return Ok(data.len());
    }
    let (ethertype, off) = payload_or_error(link, data)?;
    let payload = &data[off..];
    let needed = ETHERNET_HEADER_LEN + payload.len();
    let room = out.len();
    let dst = out.get_mut(..needed).ok_or(NormalizeError::TooLarge { needed, room })?;
    dst[..12].fill(0);
    dst[12..14].copy_from_slice(&ethertype.to_be_bytes());
    dst[14..].copy_from_slice(payload);
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal IPv4 header (RFC 791 layout, 20 bytes, UDP) — only the version nibble matters
    /// to this module.
    const IPV4: [u8; 20] = [0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    /// First bytes of an IPv6 header (RFC 8200: version 6).
    const IPV6: [u8; 8] = [0x60, 0, 0, 0, 0, 0, 17, 64];

    fn eth(ethertype: &[u8], rest: &[u8]) -> Vec<u8> {
        let mut v = vec![0xff; 6];
        v.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        v.extend_from_slice(ethertype);
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn raw_values_round_trip() {
        for lt in [
            LinkType::Ethernet,
            LinkType::Raw,
            LinkType::Ipv4,
            LinkType::Ipv6,
            LinkType::LinuxSll,
            LinkType::LinuxSll2,
            LinkType::Null,
            LinkType::Loop,
        ] {
            assert_eq!(LinkType::from_raw(lt.raw()), Some(lt));
        }
        assert_eq!(LinkType::from_raw(12), Some(LinkType::Raw));
        assert_eq!(LinkType::from_raw(14), Some(LinkType::Raw));
        // FCS bits in the upper half of a classic header's link type are ignored.
        assert_eq!(LinkType::from_raw(0x3000_0001), Some(LinkType::Ethernet));
        assert_eq!(LinkType::from_raw(127), None); // radiotap
        assert_eq!(LinkType::from_raw(9), None); // PPP
    }

    #[test]
    fn ethernet_plain_vlan_qinq_snap() {
        let f = eth(&[0x08, 0x00], &IPV4);
        assert_eq!(network_header(LinkType::Ethernet, &f), Some((ETHERTYPE_IPV4, 14)));
        let f = eth(&[0x81, 0x00, 0x00, 0x0a, 0x86, 0xdd], &IPV6);
        assert_eq!(network_header(LinkType::Ethernet, &f), Some((ETHERTYPE_IPV6, 18)));
        let f = eth(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00], &IPV4);
        assert_eq!(network_header(LinkType::Ethernet, &f), Some((ETHERTYPE_IPV4, 22)));
        // 802.3 length + LLC/SNAP (RFC 1042) carrying IPv4.
        let f = eth(&[0x00, 0x1c, 0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00], &IPV4);
        assert_eq!(network_header(LinkType::Ethernet, &f), Some((ETHERTYPE_IPV4, 22)));
        // 802.3 + STP LLC: no EtherType.
        let f = eth(&[0x00, 0x26, 0x42, 0x42, 0x03, 0, 0, 0, 0, 0], &[]);
        assert_eq!(network_header(LinkType::Ethernet, &f), None);
        // Cut inside a tag, too short, too many tags.
        let f = eth(&[0x81, 0x00, 0x00], &[]);
        assert_eq!(network_header(LinkType::Ethernet, &f), None);
        assert_eq!(network_header(LinkType::Ethernet, &[0; 13]), None);
        let f = eth(&[0x81, 0x00, 0, 1].repeat(9), &IPV4);
        assert_eq!(network_header(LinkType::Ethernet, &f), None);
    }

    #[test]
    fn bare_ip_types() {
        assert_eq!(network_header(LinkType::Raw, &IPV4), Some((ETHERTYPE_IPV4, 0)));
        assert_eq!(network_header(LinkType::Raw, &IPV6), Some((ETHERTYPE_IPV6, 0)));
        assert_eq!(network_header(LinkType::Raw, &[0x55]), None);
        assert_eq!(network_header(LinkType::Raw, &[]), None);
        assert_eq!(network_header(LinkType::Ipv4, &IPV4), Some((ETHERTYPE_IPV4, 0)));
        assert_eq!(network_header(LinkType::Ipv6, &IPV6), Some((ETHERTYPE_IPV6, 0)));
        assert_eq!(network_header(LinkType::Ipv6, &[]), None);
    }

    #[test]
    fn loopback_address_families() {
        for (af, want) in
            [(2u32, ETHERTYPE_IPV4), (24, ETHERTYPE_IPV6), (28, ETHERTYPE_IPV6), (30, ETHERTYPE_IPV6)]
        {
            for hdr in [af.to_le_bytes(), af.to_be_bytes()] {
                let f = [&hdr[..], &IPV4].concat();
                assert_eq!(network_header(LinkType::Null, &f), Some((want, 4)), "af {af}");
            }
            let f = [&af.to_be_bytes()[..], &IPV4].concat();
            assert_eq!(network_header(LinkType::Loop, &f), Some((want, 4)));
        }
        assert_eq!(network_header(LinkType::Null, &[7, 0, 0, 0, 0x45]), None);
        assert_eq!(network_header(LinkType::Loop, &[0, 0, 2]), None);
    }

    #[test]
    fn linux_cooked() {
        // SLL: outgoing (4), ARPHRD_ETHER (1), 6-byte address, padding, 802.1Q then IPv4.
        let mut f = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x81, 0x00, 0x00, 0x05, 0x08, 0x00];
        f.extend_from_slice(&IPV4);
        assert_eq!(network_header(LinkType::LinuxSll, &f), Some((ETHERTYPE_IPV4, 20)));
        let mut out = [0u8; 64];
        let n = normalize_to_ethernet(LinkType::LinuxSll, &f, &mut out).unwrap();
        assert_eq!(n, 14 + 4 + 20);
        assert_eq!(&out[12..18], &[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        assert_eq!(network_header(LinkType::Ethernet, &out[..n]), Some((ETHERTYPE_IPV4, 18)));
        // Netlink (ARPHRD 824) and an 802.2 protocol value carry no EtherType.
        let nl = [0, 4, 3, 0x38, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(network_header(LinkType::LinuxSll, &nl), None);
        let llc = [0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0x42, 0x42];
        assert_eq!(network_header(LinkType::LinuxSll, &llc), None);
        // SLL2: protocol IPv6, reserved, ifindex 1, ARPHRD_ETHER, host, 6-byte address.
        let mut f = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
        f.extend_from_slice(&IPV6);
        assert_eq!(network_header(LinkType::LinuxSll2, &f), Some((ETHERTYPE_IPV6, 20)));
        assert_eq!(network_header(LinkType::LinuxSll2, &f[..19]), None);
    }

    #[test]
    fn normalise_each_type() {
        let mut out = [0u8; 64];
        let n = normalize_to_ethernet(LinkType::Raw, &IPV4, &mut out).unwrap();
        assert_eq!(&out[..n], &[&[0u8; 12][..], &[0x08, 0x00], &IPV4].concat()[..]);
        assert_eq!(ethernet_len(LinkType::Raw, &IPV4), Ok(n));
        let lo = [&30u32.to_le_bytes()[..], &IPV6].concat();
        let n = normalize_to_ethernet(LinkType::Null, &lo, &mut out).unwrap();
        assert_eq!(&out[..n], &[&[0u8; 12][..], &[0x86, 0xdd], &IPV6].concat()[..]);
        let e = eth(&[0x08, 0x00], &IPV4);
        let n = normalize_to_ethernet(LinkType::Ethernet, &e, &mut out).unwrap();
        assert_eq!(&out[..n], &e[..]);
        let mut small = [0u8; 20];
        assert_eq!(
            normalize_to_ethernet(LinkType::Ipv4, &IPV4, &mut small),
            Err(NormalizeError::TooLarge { needed: 34, room: 20 })
        );
        assert_eq!(
            normalize_to_ethernet(LinkType::Raw, &[0x12, 0x34], &mut out),
            Err(NormalizeError::NoEtherType { link: LinkType::Raw, len: 2 })
        );
        assert_eq!(
            ethernet_len(LinkType::LinuxSll, &[0; 10]),
            Err(NormalizeError::Truncated { link: LinkType::LinuxSll, len: 10, needed: 16 })
        );
    }
}
