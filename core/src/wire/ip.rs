//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::{Header, IPV4_HEADER_LEN, IPV6_HEADER_LEN, WireError, need};

/// A view of an IPv4 packet.
///
/// [`new_checked`](Self::new_checked) guarantees the version is 4 and the whole header (IHL × 4
/// bytes, options included) is present. It does not require the total length to fit: a short
/// capture still has a header, and [`payload`](Self::payload) ends at whichever comes first, the
/// total length or the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checking it (accessors then read zeros past its end).
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after checking the version, the IHL and that the header is present.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self { buffer };
        p.check_len()?;
        Ok(p)
    }

    /// Wraps `buffer` when it starts with a complete IPv4 header without options (version 4,
    /// IHL 5: first byte 0x45), `None` otherwise: the fast-path check, one length test and one
    /// compare, for callers that hand anything else to a general parser. A view it returns
    /// passes [`Self::check_len`].
    #[inline(always)]
    pub fn new_without_options(buffer: T) -> Option<Self> {
        match buffer.as_ref().first_chunk::<IPV4_HEADER_LEN>() {
            Some(h) if h[0] == 0x45 => Some(Self { buffer }),
            _ => None,
        }
    }

    /// The checks of [`Self::new_checked`].
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        need(Header::Ipv4, IPV4_HEADER_LEN, len)?;
        if self.version() != 4 {
            return Err(WireError::Malformed { header: Header::Ipv4, field: "version" });
        }
        let hl = self.header_len();
        if hl < IPV4_HEADER_LEN {
            return Err(WireError::Malformed { header: Header::Ipv4, field: "ihl" });
        }
        need(Header::Ipv4, hl, len)
    }

    /// The wrapped buffer.
    #[inline(always)]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The fixed 20-byte part of the header.
    #[inline(always)]
    pub fn fixed_header(&self) -> &[u8; IPV4_HEADER_LEN] {
        self.buffer.as_ref().first_chunk().unwrap_or(&[0; IPV4_HEADER_LEN])
    }

    /// IP version (4 once checked).
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.fixed_header()[0] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.fixed_header()[0] & 0x0f) * 4
    }

    /// Type of service byte (DSCP ‖ ECN).
    #[inline(always)]
    pub fn tos(&self) -> u8 {
        self.fixed_header()[1]
    }

    /// Differentiated services code point.
    #[inline(always)]
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// Total length field (header and payload).
    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        let h = self.fixed_header();
        u16::from_be_bytes([h[2], h[3]])
    }

    /// Identification field.
    #[inline(always)]
    pub fn ident(&self) -> u16 {
        let h = self.fixed_header();
        u16::from_be_bytes([h[4], h[5]])
    }

    /// Flags and fragment offset word.
    #[inline(always)]
    fn frag_word(&self) -> u16 {
        let h = self.fixed_header();
        u16::from_be_bytes([h[6], h[7]])
    }

    /// Don't-fragment flag.
    #[inline(always)]
    pub fn dont_frag(&self) -> bool {
        self.frag_word() & 0x4000 != 0
    }

    /// More-fragments flag.
    #[inline(always)]
    pub fn more_frags(&self) -> bool {
        self.frag_word() & 0x2000 != 0
    }

    /// Fragment offset in 8-byte units.
    #[inline(always)]
    pub fn frag_offset(&self) -> u16 {
        self.frag_word() & 0x1fff
    }

    /// True for any fragment (MF set or a non-zero offset).
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        self.frag_word() & 0x3fff != 0
    }

    /// Time to live.
    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.fixed_header()[8]
    }

    /// Protocol of the payload ([`super::ip_proto`]).
    #[inline(always)]
    pub fn protocol(&self) -> u8 {
        self.fixed_header()[9]
    }

    /// Header checksum field.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        let h = self.fixed_header();
        u16::from_be_bytes([h[10], h[11]])
    }

    /// Source address as a host-order integer.
    #[inline(always)]
    pub fn src_bits(&self) -> u32 {
        let h = self.fixed_header();
        u32::from_be_bytes([h[12], h[13], h[14], h[15]])
    }

    /// Destination address as a host-order integer.
    #[inline(always)]
    pub fn dst_bits(&self) -> u32 {
        let h = self.fixed_header();
        u32::from_be_bytes([h[16], h[17], h[18], h[19]])
    }

    /// Source address.
    #[inline(always)]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.src_bits())
    }

    /// Destination address.
    #[inline(always)]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.dst_bits())
    }

    /// The whole header, options included (empty when the IHL claims more than is present).
    #[inline(always)]
    pub fn header(&self) -> &[u8] {
        self.buffer.as_ref().get(..self.header_len()).unwrap_or(&[])
    }

    /// True when the header checksum verifies (RFC 1071).
    #[inline(always)]
    pub fn verify_checksum(&self) -> bool {
        if self.header_len() == IPV4_HEADER_LEN {
            checksum::ipv4_header20_valid(self.fixed_header())
        } else {
            checksum::ipv4_header_valid(self.header())
        }
    }

    /// The payload: from the end of the header to the total length, or to the end of the
    /// buffer when that comes first (a short capture; a total length below the header length
    /// also reads to the end of the buffer).
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let (hl, total) = (self.header_len(), usize::from(self.total_len()));
        let end = if total >= hl { b.len().min(total) } else { b.len() };
        b.get(hl..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// The fixed 20-byte part of the header, writable (`None` on a short unchecked buffer).
    #[inline(always)]
    pub fn fixed_header_mut(&mut self) -> Option<&mut [u8; IPV4_HEADER_LEN]> {
        self.buffer.as_mut().first_chunk_mut()
    }

    /// Decrements the TTL by one and updates the checksum incrementally (RFC 1624 eqn. 3), in
    /// native byte order (RFC 1071 §2(B)). The caller checks the TTL is above 1 first.
    #[inline(always)]
    pub fn decrement_ttl(&mut self) {
        if let Some(h) = self.fixed_header_mut() {
            let hc = u16::from_ne_bytes([h[10], h[11]]);
            h[8] = h[8].wrapping_sub(1);
            h[10..12].copy_from_slice(&checksum::ttl_decrement_ne(hc).to_ne_bytes());
        }
    }

    /// Recomputes and writes the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        if let Some(h) = self.buffer.as_mut().get_mut(..hl).filter(|h| h.len() >= IPV4_HEADER_LEN) {
            h[10] = 0;
            h[11] = 0;
            let c = checksum::checksum(h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
    }
}

/// A view of an IPv6 packet's fixed header.
///
/// [`new_checked`](Self::new_checked) guarantees the version is 6 and the 40-byte header is
/// present. Extension headers are not walked here; [`payload`](Self::payload) is what follows
/// the fixed header, up to the payload length or the end of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` without checking it (accessors then read zeros past its end).
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after checking the version and that the fixed header is present.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self { buffer };
        p.check_len()?;
        Ok(p)
    }

    /// The checks of [`Self::new_checked`].
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), WireError> {
        need(Header::Ipv6, IPV6_HEADER_LEN, self.buffer.as_ref().len())?;
        if self.version() != 6 {
            return Err(WireError::Malformed { header: Header::Ipv6, field: "version" });
        }
        Ok(())
    }

    /// The wrapped buffer.
    #[inline(always)]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The 40-byte fixed header.
    #[inline(always)]
    pub fn fixed_header(&self) -> &[u8; IPV6_HEADER_LEN] {
        self.buffer.as_ref().first_chunk().unwrap_or(&[0; IPV6_HEADER_LEN])
    }

    /// IP version (6 once checked).
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.fixed_header()[0] >> 4
    }

    /// Traffic class (DSCP ‖ ECN).
    #[inline(always)]
    pub fn traffic_class(&self) -> u8 {
        let h = self.fixed_header();
        ((u16::from_be_bytes([h[0], h[1]]) >> 4) & 0xff) as u8
    }

    /// Differentiated services code point.
    #[inline(always)]
    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    /// Flow label.
    #[inline(always)]
    pub fn flow_label(&self) -> u32 {
        let h = self.fixed_header();
        u32::from_be_bytes([0, h[1] & 0x0f, h[2], h[3]])
    }

    /// Payload length field (0 for a jumbogram, RFC 2675).
    #[inline(always)]
    pub fn payload_len(&self) -> u16 {
        let h = self.fixed_header();
        u16::from_be_bytes([h[4], h[5]])
    }

    /// Next header: the first extension header or the upper-layer protocol.
    #[inline(always)]
    pub fn next_header(&self) -> u8 {
        self.fixed_header()[6]
    }

    /// Hop limit.
    #[inline(always)]
    pub fn hop_limit(&self) -> u8 {
        self.fixed_header()[7]
    }

    /// Source address as an integer.
    #[inline(always)]
    pub fn src_bits(&self) -> u128 {
        let h = self.fixed_header();
        let (_, s) = h.split_at(8);
        u128::from_be_bytes(*s.first_chunk::<16>().unwrap_or(&[0; 16]))
    }

    /// Destination address as an integer.
    #[inline(always)]
    pub fn dst_bits(&self) -> u128 {
        let (_, d) = self.fixed_header().split_last_chunk::<16>().unwrap_or((&[], &[0; 16]));
        u128::from_be_bytes(*d)
    }

    /// Source address.
    #[inline(always)]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from_bits(self.src_bits())
    }

    /// Destination address.
    #[inline(always)]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from_bits(self.dst_bits())
    }

    /// Bytes after the fixed header: up to the payload length, or to the end of the buffer when
    /// that comes first or the length is 0 (jumbogram).
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let plen = usize::from(self.payload_len());
        let end = if plen == 0 { b.len() } else { b.len().min(IPV6_HEADER_LEN + plen) };
        b.get(IPV6_HEADER_LEN..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// The fixed header, writable (`None` on a short unchecked buffer).
    #[inline(always)]
    pub fn fixed_header_mut(&mut self) -> Option<&mut [u8; IPV6_HEADER_LEN]> {
        self.buffer.as_mut().first_chunk_mut()
    }

    /// Writes the hop limit (IPv6 has no header checksum, RFC 8200 §3).
    #[inline(always)]
    pub fn set_hop_limit(&mut self, hops: u8) {
        if let Some(h) = self.fixed_header_mut() {
            h[7] = hops;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inner packet of RFC 7634 Appendix A (an ICMP echo, checksum 0xe778).
    const RFC7634_INNER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x54, 0xa6, 0xf2, 0x00, 0x00, 0x40, 0x01, 0xe7, 0x78, 0xc6, 0x33, 0x64, 0x05, 0xc0,
        0x00, 0x02, 0x05,
    ];

    #[test]
    fn ipv4_fields_of_a_published_header() {
        let ip = Ipv4Packet::new_checked(&RFC7634_INNER[..]).unwrap();
        assert_eq!((ip.version(), ip.header_len(), ip.total_len()), (4, 20, 0x54));
        assert_eq!((ip.ttl(), ip.protocol(), ip.checksum()), (64, 1, 0xe778));
        assert_eq!(ip.src_addr(), Ipv4Addr::new(198, 51, 100, 5));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(192, 0, 2, 5));
        assert!(ip.verify_checksum());
        assert!(!ip.is_fragment());
        let mut h = RFC7634_INNER;
        h[10] = 0;
        Ipv4Packet::new_unchecked(&mut h[..]).fill_checksum();
        assert_eq!(h, RFC7634_INNER);
        let mut p = Ipv4Packet::new_unchecked(&mut h[..]);
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
    }

    #[test]
    fn ipv4_checks_refuse_bad_headers_and_every_truncation() {
        for n in 0..20 {
            assert!(matches!(
                Ipv4Packet::new_checked(&RFC7634_INNER[..n]),
                Err(WireError::Truncated { needed: 20, .. })
            ));
        }
        let mut h = RFC7634_INNER;
        h[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&h[..]),
            Err(WireError::Malformed { header: Header::Ipv4, field: "version" })
        );
        h[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&h[..]),
            Err(WireError::Malformed { header: Header::Ipv4, field: "ihl" })
        );
        h[0] = 0x46; // one option word that is not there
        assert!(matches!(Ipv4Packet::new_checked(&h[..]), Err(WireError::Truncated { needed: 24, .. })));
        assert!(Ipv4Packet::new_without_options(&h[..]).is_none(), "options");
        assert!(Ipv4Packet::new_without_options(&RFC7634_INNER[..]).is_some_and(|p| p.check_len().is_ok()));
        assert!(Ipv4Packet::new_without_options(&RFC7634_INNER[..19]).is_none());
        // Unchecked views of short buffers read zeros instead of panicking.
        let p = Ipv4Packet::new_unchecked(&RFC7634_INNER[..3]);
        assert_eq!((p.ttl(), p.dst_bits(), p.payload()), (0, 0, &[][..]));
    }

    #[test]
    fn ipv6_fields() {
        let mut h = [0u8; 48];
        h[0..4].copy_from_slice(&[0x6b, 0x81, 0x23, 0x45]); // TC 0xb8, flow label 0x12345
        h[4..6].copy_from_slice(&8u16.to_be_bytes());
        h[6] = 17;
        h[7] = 64;
        h[8] = 0x20;
        h[23] = 1;
        h[24] = 0x20;
        h[39] = 2;
        let ip = Ipv6Packet::new_checked(&h[..]).unwrap();
        assert_eq!((ip.traffic_class(), ip.dscp(), ip.flow_label()), (0xb8, 46, 0x12345));
        assert_eq!((ip.payload_len(), ip.next_header(), ip.hop_limit()), (8, 17, 64));
        assert_eq!(ip.src_bits(), 0x20 << 120 | 1);
        assert_eq!(ip.dst_addr(), Ipv6Addr::from_bits(0x20 << 120 | 2));
        assert_eq!(ip.payload().len(), 8);
        assert!(Ipv6Packet::new_checked(&h[..39]).is_err());
        h[0] = 0x4b;
        assert!(Ipv6Packet::new_checked(&h[..]).is_err());
    }
}
