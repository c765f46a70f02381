//! The wire layer: protocol constants and checked, zero-copy views of the headers wirespeed's
//! fast paths read, in one place.
//!
//! Every hand-written parser in wirespeed (RSS's tuple parser, the classify fast path, the
//! forward stage, the ESP stages, the pcap backend's link-layer code) reads headers through these
//! views and names protocol numbers with these constants; etherparse stays for the slow,
//! everything-else path of the classifier.
//!
//! The views follow smoltcp's pattern: a view wraps any `T: AsRef<[u8]>` (a slice, a buffer, a
//! `Vec`), [`new_checked`](Ipv4Packet::new_checked) checks the lengths once, and the accessors
//! then read fixed offsets. Accessors cannot panic, even on a view built with `new_unchecked`
//! over a short buffer: the fixed part of a header is read through a fixed-size array view, and a
//! buffer shorter than that reads as zeros (so always call `new_checked` on untrusted bytes).
//! Nothing here allocates.
//!
//! ```
//! use wirespeed_core::wire::{ETHERTYPE_IPV4, EthernetFrame, Ipv4Packet, UdpPacket, ip_proto};
//!
//! let frame = wirespeed_core::backend::null::udp4_frame(64);
//! let eth = EthernetFrame::new_checked(&frame[..])?;
//! assert_eq!(eth.ethertype(), ETHERTYPE_IPV4);
//! let ip = Ipv4Packet::new_checked(eth.payload())?;
//! assert!(ip.verify_checksum());
//! assert_eq!(ip.protocol(), ip_proto::UDP);
//! let udp = UdpPacket::new_checked(ip.payload())?;
//! assert_eq!((udp.src_port(), udp.dst_port()), (1024, 2048));
//! # Ok::<(), wirespeed_core::wire::WireError>(())
//! ```

pub mod checksum;
mod ethernet;
mod ip;
mod l4;
mod prefix;

pub use ethernet::{EthernetFrame, VlanTag};
pub use ip::{Ipv4Packet, Ipv6Packet};
pub use l4::{EspHeader, TcpPacket, UdpPacket};
pub use prefix::{IpPrefix, PrefixError};

use crate::verdict::DropReason;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType (TPID) of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType (TPID) of an 802.1ad (QinQ) service tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// The pre-standard QinQ TPID some switches still send.
pub const ETHERTYPE_QINQ_LEGACY: u16 = 0x9100;
/// Every TPID that introduces a VLAN tag.
pub const VLAN_TPIDS: [u16; 3] = [ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_LEGACY];
/// Smallest value of the Ethernet type/length field that is an EtherType (below it is an
/// IEEE 802.3 length).
pub const ETHERTYPE_MIN: u16 = 0x0600;

/// Length of an Ethernet II header without tags.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Length of one VLAN tag.
pub const VLAN_TAG_LEN: usize = 4;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// Length of a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;
/// Length of an ESP header (SPI and sequence number, RFC 4303 §2).
pub const ESP_HEADER_LEN: usize = 8;

/// UDP port of IKE (RFC 7296 §2).
pub const IKE_PORT: u16 = 500;
/// UDP port of NAT traversal: IKE with the non-ESP marker and ESP-in-UDP (RFC 3948).
pub const NAT_T_PORT: u16 = 4500;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers"), also IPv6 next-header values.
pub mod ip_proto {
    /// IPv6 hop-by-hop options (RFC 8200 §4.3).
    pub const HOPOPT: u8 = 0;
    /// ICMP (RFC 792).
    pub const ICMP: u8 = 1;
    /// IPv4 in IP, as an ESP next header in tunnel mode.
    pub const IPV4: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 in IP, as an ESP next header in tunnel mode.
    pub const IPV6: u8 = 41;
    /// IPv6 routing header (RFC 8200 §4.4).
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 fragment header (RFC 8200 §4.5).
    pub const IPV6_FRAG: u8 = 44;
    /// ESP (RFC 4303).
    pub const ESP: u8 = 50;
    /// AH (RFC 4302).
    pub const AH: u8 = 51;
    /// ICMPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// No next header (RFC 8200 §4.7); an ESP dummy (TFC) packet (RFC 4303 §2.6).
    pub const NONE: u8 = 59;
    /// IPv6 destination options (RFC 8200 §4.6).
    pub const IPV6_OPTS: u8 = 60;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// True when `ethertype` is a VLAN TPID ([`VLAN_TPIDS`]).
#[inline(always)]
pub const fn is_vlan_tpid(ethertype: u16) -> bool {
    matches!(ethertype, ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_LEGACY)
}

/// IPv6 extension headers that carry the 2-byte "next header, length in 8-octet units" prefix
/// and can be skipped generically (hop-by-hop, routing, destination options; RFC 8200 §4).
#[inline(always)]
pub const fn is_ipv6_generic_ext(nh: u8) -> bool {
    matches!(nh, ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS)
}

/// Which header a [`WireError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Header {
    /// Ethernet II (with its VLAN tags).
    Ethernet,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// ESP.
    Esp,
}

impl std::fmt::Display for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Header::Ethernet => "Ethernet",
            Header::Ipv4 => "IPv4",
            Header::Ipv6 => "IPv6",
            Header::Udp => "UDP",
            Header::Tcp => "TCP",
            Header::Esp => "ESP",
        })
    }
}

/// Why a view refused a buffer. `Copy` and allocation-free, so the hot path can return it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header needs.
    #[error("{header} header needs {needed} bytes, {got} present")]
    Truncated {
        /// The header.
        header: Header,
        /// Bytes it needs.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// A header field has an impossible value.
    #[error("{header} header: bad {field}")]
    Malformed {
        /// The header.
        header: Header,
        /// The field (`version`, `ihl`, `data offset`, `length`).
        field: &'static str,
    },
}

impl From<WireError> for DropReason {
    /// The drop reason of a packet whose header a view refused.
    fn from(e: WireError) -> DropReason {
        match e {
            WireError::Truncated { .. } => DropReason::Truncated,
            WireError::Malformed { header, .. } => match header {
                Header::Ethernet => DropReason::MalformedL2,
                Header::Ipv4 => DropReason::MalformedIpv4,
                Header::Ipv6 => DropReason::MalformedIpv6,
                Header::Udp | Header::Tcp => DropReason::MalformedL4,
                Header::Esp => DropReason::EspMalformed,
            },
        }
    }
}

#[inline(always)]
pub(crate) fn need(header: Header, needed: usize, got: usize) -> Result<(), WireError> {
    if got < needed { Err(WireError::Truncated { header, needed, got }) } else { Ok(()) }
}
