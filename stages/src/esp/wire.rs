//! The few IP/UDP header facts ESP needs: the IP header summary ESP works from, the outer
//! header template of a tunnel, checksums. Headers are read through the
//! [`wirespeed_core::wire`] views, protocol numbers come from there (re-exported here under the
//! names the ESP code uses), and nothing allocates. Parsing checks lengths once; every later
//! index is within what was checked.

use wirespeed_core::DropReason;
use wirespeed_core::wire::{
    ETHERTYPE_QINQ, ETHERTYPE_VLAN, IPV4_HEADER_LEN, IPV6_HEADER_LEN, Ipv4Packet, Ipv6Packet, ip_proto,
};

use super::spd::FlowKey;

/// The Internet checksum helpers, from [`wirespeed_core::wire::checksum`] (`fold` under the name
/// this module has always used).
pub use wirespeed_core::wire::checksum::{fold as fold_checksum, ones_sum};
/// IP protocol numbers ESP uses, from [`wirespeed_core::wire::ip_proto`]: ESP, UDP, the
/// tunnel-mode next headers IPv4 / IPv6, and "no next header" (an RFC 4303 §2.6 dummy packet).
pub use wirespeed_core::wire::ip_proto::{
    ESP as PROTO_ESP, IPV4 as PROTO_IPV4, IPV6 as PROTO_IPV6, NONE as PROTO_NONE, UDP as PROTO_UDP,
};
/// EtherTypes, from [`wirespeed_core::wire`].
pub use wirespeed_core::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};

/// An IP header as ESP needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpHeader {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// Bytes of IP header: IHL × 4, or 40 + the extension headers walked.
    pub hdr_len: usize,
    /// Packet length claimed by the header (≤ the bytes present).
    pub total_len: usize,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Offset, from the IP header start, of the byte holding `proto` (9 for IPv4; the
    /// next-header byte of the last IPv6 header walked).
    pub proto_off: usize,
    /// The packet is a fragment (first or later).
    pub fragment: bool,
    /// The packet is a non-first fragment (no transport header).
    pub later_fragment: bool,
    /// TOS / traffic class (DSCP ‖ ECN).
    pub tos: u8,
    /// Source address, left-aligned.
    pub src: u128,
    /// Destination address, left-aligned.
    pub dst: u128,
}

impl IpHeader {
    /// Parses the IP header at the start of `d` (which may extend past the packet, e.g. an
    /// Ethernet pad).
    #[inline(always)]
    pub fn parse(d: &[u8]) -> Result<Self, DropReason> {
        let Some(&first) = d.first() else { return Err(DropReason::Truncated) };
        match first >> 4 {
            4 => Self::parse_v4(d),
            6 => Self::parse_v6(d),
            _ => Err(DropReason::Unsupported),
        }
    }

    /// [`IpHeader::parse`] of an IPv4 header (version already checked).
    #[inline(always)]
    pub(crate) fn parse_v4(d: &[u8]) -> Result<Self, DropReason> {
        if d.len() < IPV4_HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        // Checked by hand in this order (not `new_checked`) so the drop reasons stay as they were:
        // a bad IHL or total length is malformed, a short packet truncated.
        let ip = Ipv4Packet::new_unchecked(d);
        let ihl = ip.header_len();
        let total = usize::from(ip.total_len());
        if ihl < IPV4_HEADER_LEN || total < ihl {
            return Err(DropReason::MalformedIpv4);
        }
        if d.len() < total {
            return Err(DropReason::Truncated);
        }
        let offset = ip.frag_offset();
        Ok(Self {
            v6: false,
            hdr_len: ihl,
            total_len: total,
            proto: ip.protocol(),
            proto_off: 9,
            fragment: ip.more_frags() || offset != 0,
            later_fragment: offset != 0,
            tos: ip.tos(),
            src: (ip.src_bits() as u128) << 96,
            dst: (ip.dst_bits() as u128) << 96,
        })
    }

    fn parse_v6(d: &[u8]) -> Result<Self, DropReason> {
        if d.len() < IPV6_HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        let ip = Ipv6Packet::new_unchecked(d);
        let total = IPV6_HEADER_LEN + usize::from(ip.payload_len());
        if d.len() < total {
            return Err(DropReason::Truncated);
        }
        let mut h = Self {
            v6: true,
            hdr_len: IPV6_HEADER_LEN,
            total_len: total,
            proto: ip.next_header(),
            proto_off: 6,
            fragment: false,
            later_fragment: false,
            tos: ip.traffic_class(),
            src: ip.src_bits(),
            dst: ip.dst_bits(),
        };
        // Walk the extension headers that precede ESP / the transport header (bounded).
        for _ in 0..8 {
            let off = h.hdr_len;
            let len = match h.proto {
                ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS => {
                    if off + 2 > total {
                        return Err(DropReason::MalformedIpv6);
                    }
                    (d[off + 1] as usize + 1) * 8
                }
                ip_proto::IPV6_FRAG => {
                    if off + 8 > total {
                        return Err(DropReason::MalformedIpv6);
                    }
                    let fo = u16::from_be_bytes([d[off + 2], d[off + 3]]);
                    h.fragment = true;
                    h.later_fragment = fo & 0xfff8 != 0;
                    8
                }
                _ => return Ok(h),
            };
            if off + len > total {
                return Err(DropReason::MalformedIpv6);
            }
            h.proto = d[off];
            h.proto_off = off;
            h.hdr_len = off + len;
            if h.later_fragment {
                return Ok(h);
            }
        }
        Err(DropReason::MalformedIpv6)
    }

    /// The selector key of the packet whose header this is (`d` starts at the IP header).
    #[inline(always)]
    pub fn flow_key(&self, d: &[u8]) -> FlowKey {
        let ports = match self.proto {
            ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP
                if !self.later_fragment && self.hdr_len + 4 <= self.total_len =>
            {
                let l4 = &d[self.hdr_len..];
                Some((u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]])))
            }
            _ => None,
        };
        FlowKey { v6: self.v6, src: self.src, dst: self.dst, proto: self.proto, ports }
    }
}

/// Finds the IP header of an Ethernet frame: skips up to two VLAN tags. `None` for non-IP.
#[inline]
pub fn ethernet_l3_offset(frame: &[u8]) -> Option<usize> {
    let mut off = 12;
    for _ in 0..3 {
        let et = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
        match et {
            ETHERTYPE_VLAN | ETHERTYPE_QINQ => off += 4,
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => return Some(off + 2),
            _ => return None,
        }
    }
    None
}

/// Recomputes the IPv4 header checksum of `hdr` (the whole header, options included).
#[inline]
pub fn set_ipv4_checksum(hdr: &mut [u8]) {
    hdr[10] = 0;
    hdr[11] = 0;
    let c = fold_checksum(ones_sum(0, hdr));
    hdr[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The outer IP header of a tunnel-mode SA, prepared once when the SA is created: addresses,
/// protocol and TTL are fixed, and the IPv4 checksum of those fixed fields is pre-summed, so a
/// packet only adds TOS, length and identification (RFC 1624 style incremental sum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterTemplate {
    hdr: [u8; 40],
    v6: bool,
    /// One's-complement sum of the IPv4 header with TOS, length, id and checksum zero.
    base: u32,
}

impl OuterTemplate {
    /// The template for packets from `src` to `dst` (same family) carrying `proto`.
    pub fn new(src: std::net::IpAddr, dst: std::net::IpAddr, proto: u8, ttl: u8) -> Self {
        use std::net::IpAddr;
        let mut hdr = [0u8; 40];
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                hdr[0] = 0x45;
                hdr[8] = ttl;
                hdr[9] = proto;
                hdr[12..16].copy_from_slice(&s.octets());
                hdr[16..20].copy_from_slice(&d.octets());
                let mut base = ones_sum(0, &hdr[..20]);
                while base > 0xffff {
                    base = (base & 0xffff) + (base >> 16);
                }
                let base = base as u32;
                Self { hdr, v6: false, base }
            }
            (s, d) => {
                let v6 = |a: IpAddr| match a {
                    IpAddr::V6(a) => a.octets(),
                    IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                };
                hdr[0] = 0x60;
                hdr[6] = proto;
                hdr[7] = ttl;
                hdr[8..24].copy_from_slice(&v6(s));
                hdr[24..40].copy_from_slice(&v6(d));
                Self { hdr, v6: true, base: 0 }
            }
        }
    }

    /// IPv6 (else IPv4).
    #[inline]
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// Header length: 20 or 40.
    #[inline]
    pub fn len(&self) -> usize {
        if self.v6 { 40 } else { 20 }
    }

    /// Always false (a header has bytes); here for `len`'s sake.
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the header for a packet of `ip_len` bytes (header included) with `tos`
    /// (DSCP ‖ ECN, copied from the inner packet) and IPv4 identification `id`. The caller
    /// checks that `ip_len` fits the length field (at most 65 535, or 65 575 for IPv6, whose
    /// payload length excludes the fixed header); a larger value is truncated, never a panic.
    #[inline(always)]
    pub fn write(&self, h: &mut [u8], tos: u8, ip_len: usize, id: u16) {
        if self.v6 {
            h[..40].copy_from_slice(&self.hdr);
            let w = (6u32 << 28) | ((tos as u32) << 20);
            h[0..4].copy_from_slice(&w.to_be_bytes());
            h[4..6].copy_from_slice(&(ip_len.saturating_sub(40) as u16).to_be_bytes());
        } else {
            let ip_len = ip_len as u16;
            h[..20].copy_from_slice(&self.hdr[..20]);
            h[1] = tos;
            h[2..4].copy_from_slice(&ip_len.to_be_bytes());
            h[4..6].copy_from_slice(&id.to_be_bytes());
            let mut sum = self.base + tos as u32 + ip_len as u32 + id as u32;
            sum = (sum & 0xffff) + (sum >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        }
    }
}

/// UDP checksum over IPv6 (mandatory there): `ip` is the 40-byte IPv6 header, `udp` the UDP
/// header and payload with a zero checksum field. Returns the value to store.
pub fn udp6_checksum(ip: &[u8], udp: &[u8]) -> u16 {
    let mut sum = ones_sum(0, &ip[8..40]);
    sum += udp.len() as u64;
    sum += PROTO_UDP as u64;
    let c = fold_checksum(ones_sum(sum, udp));
    if c == 0 { 0xffff } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_checksum_of_a_known_header() {
        // The inner packet of RFC 7634 Appendix A: 45000054 a6f20000 4001 e778 c6336405 c0000205.
        let mut h = [
            0x45, 0x00, 0x00, 0x54, 0xa6, 0xf2, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00, 0xc6, 0x33, 0x64, 0x05,
            0xc0, 0x00, 0x02, 0x05,
        ];
        set_ipv4_checksum(&mut h);
        assert_eq!(&h[10..12], &[0xe7, 0x78]);
    }

    #[test]
    fn outer_template_checksum_matches_a_full_recompute() {
        let t = OuterTemplate::new([255, 254, 253, 252].into(), [251, 250, 249, 248].into(), PROTO_ESP, 255);
        for (tos, len, id) in
            [(0u8, 20u16, 0u16), (0xff, 0xffff, 0xffff), (0xb8, 1500, 0x8001), (3, 77, 65535)]
        {
            let mut h = [0u8; 20];
            t.write(&mut h, tos, len as usize, id);
            let mut r = h;
            set_ipv4_checksum(&mut r);
            assert_eq!(h, r, "tos {tos} len {len} id {id}");
        }
    }

    #[test]
    fn ethernet_offsets() {
        let mut f = [0u8; 64];
        f[12] = 0x08;
        assert_eq!(ethernet_l3_offset(&f), Some(14));
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        f[16..18].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(ethernet_l3_offset(&f), Some(18));
        f[16..18].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(ethernet_l3_offset(&f), None, "ARP");
        assert_eq!(ethernet_l3_offset(&f[..13]), None, "truncated");
    }
}
