//! A small parser of exactly the fields RSS and steering need, read from the frame bytes:
//! Ethernet, up to four VLAN tags, IPv4 / IPv6 (with extension headers), TCP/UDP ports,
//! ESP SPI, ESP-in-UDP on port 4500, ICMP type.
//!
//! It never allocates and never panics: every read is a checked slice access, and a header that
//! is cut short just ends the parse with what was found so far (the packet then hashes on fewer
//! fields, as a NIC would). Validating packets is the classify stage's job, not this one's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::hash::{FlowTuple, L4, NATT_PORT, proto};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;

const VLAN_TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
const MAX_VLAN_TAGS: usize = 4;
const MAX_IPV6_EXT: usize = 8;

/// What the parser found in a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// EtherType after any VLAN tags (0 when the Ethernet header is cut short).
    pub ethertype: u16,
    /// Outermost VLAN ID.
    pub vlan: Option<u16>,
    /// DSCP of the IP header (0 without one).
    pub dscp: u8,
    /// The packet is an IP fragment (the transport fields are then not used).
    pub fragment: bool,
    /// UDP port 4500 with the 4-byte zero non-ESP marker: IKE, not ESP (RFC 3948).
    pub non_esp_marker: bool,
    /// Addresses and transport fields, when the IP header is complete.
    pub tuple: Option<FlowTuple>,
}

impl PacketInfo {
    /// Parses an Ethernet frame.
    pub fn parse_ethernet(frame: &[u8]) -> Self {
        let mut info = Self::default();
        let Some(mut ethertype) = be16(frame, 12) else { return info };
        let mut off = 14;
        for _ in 0..MAX_VLAN_TAGS {
            if !VLAN_TPIDS.contains(&ethertype) {
                break;
            }
            let (Some(tci), Some(inner)) = (be16(frame, off), be16(frame, off + 2)) else {
                info.ethertype = ethertype;
                return info;
            };
            if info.vlan.is_none() {
                info.vlan = Some(tci & 0x0fff);
            }
            ethertype = inner;
            off += 4;
        }
        info.ethertype = ethertype;
        info.parse_ip(ethertype, frame.get(off..).unwrap_or(&[]));
        info
    }

    /// Parses a packet that starts at the network header (raw-IP captures, tunnels), whose
    /// EtherType is `ethertype`.
    pub fn parse_l3(ethertype: u16, l3: &[u8]) -> Self {
        let mut info = Self { ethertype, ..Self::default() };
        info.parse_ip(ethertype, l3);
        info
    }

    fn parse_ip(&mut self, ethertype: u16, l3: &[u8]) {
        match ethertype {
            ETHERTYPE_IPV4 => self.parse_ipv4(l3),
            ETHERTYPE_IPV6 => self.parse_ipv6(l3),
            _ => {}
        }
    }

    fn parse_ipv4(&mut self, h: &[u8]) {
        let Some(&vihl) = h.first() else { return };
        let ihl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || ihl < 20 || h.len() < ihl {
            return;
        }
        let (Some(tos), Some(total), Some(frag), Some(&p), Some(src), Some(dst)) =
            (h.get(1), be16(h, 2), be16(h, 6), h.get(9), arr4(h, 12), arr4(h, 16))
        else {
            return;
        };
        self.dscp = tos >> 2;
        // The payload ends at the total length when that is sane, else at the end of the data.
        let end = if usize::from(total) >= ihl { h.len().min(usize::from(total)) } else { h.len() };
        self.fragment = frag & 0x3fff != 0; // MF flag or a fragment offset
        let l4 = if self.fragment { L4::None } else { self.parse_l4(p, h.get(ihl..end).unwrap_or(&[])) };
        self.tuple = Some(FlowTuple {
            src: IpAddr::V4(Ipv4Addr::from(src)),
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            proto: p,
            l4,
        });
    }

    fn parse_ipv6(&mut self, h: &[u8]) {
        let (Some(&b0), Some(&b1), Some(plen), Some(&first_nh), Some(src), Some(dst)) =
            (h.first(), h.get(1), be16(h, 4), h.get(6), arr16(h, 8), arr16(h, 24))
        else {
            return;
        };
        if b0 >> 4 != 6 {
            return;
        }
        self.dscp = ((b0 & 0x0f) << 2) | (b1 >> 6);
        // Jumbograms (payload length 0) and short captures: use what is there.
        let end = if plen == 0 { h.len() } else { h.len().min(40 + usize::from(plen)) };
        let mut nh = first_nh;
        let mut off = 40;
        let mut l4 = L4::None;
        for _ in 0..MAX_IPV6_EXT {
            match nh {
                // Hop-by-hop, routing, destination options: length in 8-byte units, not counting
                // the first 8.
                0 | 43 | 60 => {
                    let (Some(&next), Some(&len)) = (h.get(off), h.get(off + 1)) else {
                        break;
                    };
                    nh = next;
                    off += (usize::from(len) + 1) * 8;
                }
                // AH: length in 4-byte units, not counting the first 8 bytes.
                proto::AH => {
                    let (Some(&next), Some(&len)) = (h.get(off), h.get(off + 1)) else {
                        break;
                    };
                    nh = next;
                    off += (usize::from(len) + 2) * 4;
                }
                44 => {
                    let (Some(&next), Some(fo)) = (h.get(off), be16(h, off + 2)) else {
                        break;
                    };
                    // Offset or M flag: a real fragment. (An atomic fragment is neither.)
                    if fo & 0xfff9 != 0 {
                        self.fragment = true;
                        nh = next;
                        break;
                    }
                    nh = next;
                    off += 8;
                }
                _ => {
                    l4 = self.parse_l4(nh, h.get(off..end).unwrap_or(&[]));
                    break;
                }
            }
        }
        self.tuple = Some(FlowTuple {
            src: IpAddr::V6(Ipv6Addr::from(src)),
            dst: IpAddr::V6(Ipv6Addr::from(dst)),
            proto: nh,
            l4,
        });
    }

    fn parse_l4(&mut self, p: u8, l4: &[u8]) -> L4 {
        match p {
            proto::TCP => match (be16(l4, 0), be16(l4, 2)) {
                (Some(sport), Some(dport)) => L4::Ports { sport, dport },
                _ => L4::None,
            },
            proto::UDP => {
                let (Some(sport), Some(dport)) = (be16(l4, 0), be16(l4, 2)) else {
                    return L4::None;
                };
                if sport == NATT_PORT || dport == NATT_PORT {
                    match be32(l4, 8) {
                        Some(0) => self.non_esp_marker = true,
                        Some(spi) => return L4::UdpEsp { sport, dport, spi },
                        // Shorter payload (e.g. the 1-byte NAT keepalive): plain UDP.
                        None => {}
                    }
                }
                L4::Ports { sport, dport }
            }
            proto::ESP => match be32(l4, 0) {
                Some(spi) => L4::Esp { spi },
                None => L4::None,
            },
            proto::ICMP | proto::ICMPV6 => match (l4.first(), l4.get(1)) {
                (Some(&ty), Some(&code)) => L4::Icmp { ty, code },
                _ => L4::None,
            },
            _ => L4::None,
        }
    }
}

#[inline]
fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*b.get(off..)?.first_chunk::<2>()?))
}

#[inline]
fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*b.get(off..)?.first_chunk::<4>()?))
}

#[inline]
fn arr4(b: &[u8], off: usize) -> Option<[u8; 4]> {
    b.get(off..)?.first_chunk::<4>().copied()
}

#[inline]
fn arr16(b: &[u8], off: usize) -> Option<[u8; 16]> {
    b.get(off..)?.first_chunk::<16>().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + UDP 4500 + ESP header, built by hand from RFC 3948 §2.2's layout.
    fn natt_frame(first_word: u32) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]); // VLAN 42
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = vec![0x45, 0xb8, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let udp_len = 8 + 8u16;
        let total = 20 + udp_len;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&4500u16.to_be_bytes());
        f.extend_from_slice(&4500u16.to_be_bytes());
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&first_word.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1]);
        f
    }

    #[test]
    fn natt_spi_and_marker() {
        let i = PacketInfo::parse_ethernet(&natt_frame(0x1234_5678));
        assert_eq!(i.vlan, Some(42));
        assert_eq!(i.dscp, 0xb8 >> 2);
        assert_eq!(i.tuple.map(|t| t.l4), Some(L4::UdpEsp { sport: 4500, dport: 4500, spi: 0x1234_5678 }));
        let i = PacketInfo::parse_ethernet(&natt_frame(0));
        assert!(i.non_esp_marker);
        assert_eq!(i.tuple.map(|t| t.l4), Some(L4::Ports { sport: 4500, dport: 4500 }));
    }

    #[test]
    fn every_truncation_is_safe() {
        let f = natt_frame(7);
        for n in 0..f.len() {
            let i = PacketInfo::parse_ethernet(&f[..n]);
            // The tuple appears once the whole IPv4 header is there, never before.
            assert_eq!(i.tuple.is_some(), n >= 18 + 20, "at {n}");
        }
    }
}
