//! The few IP/UDP header facts ESP needs, parsed and written by hand (fixed offsets, no
//! allocation). Parsing checks lengths once; every later index is within what was checked.

use wirespeed_core::DropReason;

use super::spd::FlowKey;

/// IP protocol number of ESP.
pub const PROTO_ESP: u8 = 50;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// Next header of an IPv4 packet inside ESP.
pub const PROTO_IPV4: u8 = 4;
/// Next header of an IPv6 packet inside ESP.
pub const PROTO_IPV6: u8 = 41;
/// "No next header": an RFC 4303 §2.6 dummy (TFC) packet.
pub const PROTO_NONE: u8 = 59;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86DD;

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
    #[inline]
    pub fn parse(d: &[u8]) -> Result<Self, DropReason> {
        let Some(&first) = d.first() else { return Err(DropReason::Truncated) };
        match first >> 4 {
            4 => Self::parse_v4(d),
            6 => Self::parse_v6(d),
            _ => Err(DropReason::Unsupported),
        }
    }

    #[inline]
    fn parse_v4(d: &[u8]) -> Result<Self, DropReason> {
        if d.len() < 20 {
            return Err(DropReason::Truncated);
        }
        let ihl = (d[0] & 0x0f) as usize * 4;
        let total = u16::from_be_bytes([d[2], d[3]]) as usize;
        if ihl < 20 || total < ihl {
            return Err(DropReason::MalformedIpv4);
        }
        if d.len() < total {
            return Err(DropReason::Truncated);
        }
        let frag = u16::from_be_bytes([d[6], d[7]]);
        let offset = frag & 0x1fff;
        Ok(Self {
            v6: false,
            hdr_len: ihl,
            total_len: total,
            proto: d[9],
            proto_off: 9,
            fragment: frag & 0x2000 != 0 || offset != 0,
            later_fragment: offset != 0,
            tos: d[1],
            src: (u32::from_be_bytes([d[12], d[13], d[14], d[15]]) as u128) << 96,
            dst: (u32::from_be_bytes([d[16], d[17], d[18], d[19]]) as u128) << 96,
        })
    }

    fn parse_v6(d: &[u8]) -> Result<Self, DropReason> {
        if d.len() < 40 {
            return Err(DropReason::Truncated);
        }
        let total = 40 + u16::from_be_bytes([d[4], d[5]]) as usize;
        if d.len() < total {
            return Err(DropReason::Truncated);
        }
        let mut src = [0u8; 16];
        src.copy_from_slice(&d[8..24]);
        let mut dst = [0u8; 16];
        dst.copy_from_slice(&d[24..40]);
        let mut h = Self {
            v6: true,
            hdr_len: 40,
            total_len: total,
            proto: d[6],
            proto_off: 6,
            fragment: false,
            later_fragment: false,
            tos: ((u16::from_be_bytes([d[0], d[1]]) >> 4) & 0xff) as u8,
            src: u128::from_be_bytes(src),
            dst: u128::from_be_bytes(dst),
        };
        // Walk the extension headers that precede ESP / the transport header (bounded).
        for _ in 0..8 {
            let off = h.hdr_len;
            let len = match h.proto {
                0 | 43 | 60 => {
                    if off + 2 > total {
                        return Err(DropReason::MalformedIpv6);
                    }
                    (d[off + 1] as usize + 1) * 8
                }
                44 => {
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
    #[inline]
    pub fn flow_key(&self, d: &[u8]) -> FlowKey {
        let ports = match self.proto {
            6 | 17 | 132 if !self.later_fragment && self.hdr_len + 4 <= self.total_len => {
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
            0x8100 | 0x88a8 => off += 4,
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => return Some(off + 2),
            _ => return None,
        }
    }
    None
}

/// Internet checksum (RFC 1071) of `d`, folded, not complemented, starting from `sum`.
#[inline]
pub fn ones_sum(mut sum: u64, d: &[u8]) -> u64 {
    let mut chunks = d.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (s, carry) = sum.overflowing_add(w);
        sum = s + carry as u64;
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        let (s, carry) = sum.overflowing_add(u16::from_be_bytes([c[0], c[1]]) as u64);
        sum = s + carry as u64;
    }
    if let [b] = rest.remainder() {
        let (s, carry) = sum.overflowing_add((*b as u64) << 8);
        sum = s + carry as u64;
    }
    sum
}

/// Folds a 64-bit one's-complement sum to 16 bits and complements it.
#[inline]
pub fn fold_checksum(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
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
    #[inline]
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
