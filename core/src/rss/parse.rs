//! A small parser of exactly the fields RSS and steering need, read from the frame bytes:
//! Ethernet, up to four VLAN tags, IPv4 / IPv6 (with extension headers), TCP/UDP ports,
//! ESP SPI, ESP-in-UDP on port 4500, ICMP type.
//!
//! It never allocates and never panics: every read is a checked slice access, and a header that
//! is cut short just ends the parse with what was found so far (the packet then hashes on fewer
//! fields, as a NIC would). Validating packets is the classify stage's job, not this one's.

use std::net::IpAddr;

use super::hash::{FlowTuple, L4};
/// The EtherTypes steering matches on, re-exported from [`crate::wire`] where they are defined
/// (kept here because steering code and backends name them through this module).
use crate::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::wire::{
    EthernetFrame, IPV6_HEADER_LEN, Ipv4Packet, Ipv6Packet, NAT_T_PORT, VLAN_TAG_LEN, VlanTag, ip_proto,
    is_ipv6_generic_ext, is_vlan_tpid,
};

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

/// The fields of a frame [`PacketInfo::parse_ethernet`]'s fast path accepts (untagged IPv4
/// without options, not a fragment, TCP or UDP but not UDP on port 4500, ports inside the IP
/// payload): what the dispatcher hashes, without building a [`PacketInfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FastV4 {
    /// Source address, host order of the big-endian word.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// TCP or UDP.
    pub proto: u8,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// DSCP.
    pub dscp: u8,
}

impl FastV4 {
    /// The fields, in one bounds check and fixed offsets; `None` when the frame is anything else.
    #[inline(always)]
    pub(crate) fn parse(frame: &[u8]) -> Option<Self> {
        // Ethernet (14) + IPv4 without options (20) + the two ports (4).
        let h = frame.first_chunk::<38>()?;
        if u16::from_be_bytes([h[12], h[13]]) != ETHERTYPE_IPV4 || h[14] != 0x45 {
            return None;
        }
        let total = u16::from_be_bytes([h[16], h[17]]);
        let frag = u16::from_be_bytes([h[20], h[21]]) & 0x3fff;
        let proto = h[23];
        // The payload ends at the total length when it is at least the header length, else at
        // the end of the frame (at least 24 bytes after the Ethernet header here): the ports
        // are inside it unless 20 <= total < 24.
        let ports_inside = !(20..24).contains(&total);
        let sport = u16::from_be_bytes([h[34], h[35]]);
        let dport = u16::from_be_bytes([h[36], h[37]]);
        let natt = proto == ip_proto::UDP && (sport == NAT_T_PORT || dport == NAT_T_PORT);
        if frag != 0 || !(proto == ip_proto::TCP || proto == ip_proto::UDP) || natt || !ports_inside {
            return None;
        }
        Some(Self {
            src: u32::from_be_bytes([h[26], h[27], h[28], h[29]]),
            dst: u32::from_be_bytes([h[30], h[31], h[32], h[33]]),
            proto,
            sport,
            dport,
            dscp: h[15] >> 2,
        })
    }
}

impl PacketInfo {
    /// Parses an Ethernet frame.
    #[inline]
    pub fn parse_ethernet(frame: &[u8]) -> Self {
        match Self::parse_ipv4_ports_fast(frame) {
            Some(info) => info,
            None => Self::parse_ethernet_general(frame),
        }
    }

    /// The common case in one bounds check and fixed offsets: an untagged IPv4 frame without
    /// options (`0x45`), not a fragment, TCP or UDP (but not UDP on port 4500, which may carry
    /// ESP), with its four port bytes inside the IP payload. Gives exactly what
    /// [`Self::parse_ethernet_general`] gives for such a frame (tested against it), `None` for
    /// anything else.
    #[inline(always)]
    fn parse_ipv4_ports_fast(frame: &[u8]) -> Option<Self> {
        let f = FastV4::parse(frame)?;
        Some(Self {
            ethertype: ETHERTYPE_IPV4,
            vlan: None,
            dscp: f.dscp,
            fragment: false,
            non_esp_marker: false,
            tuple: Some(FlowTuple {
                src: IpAddr::V4(f.src.into()),
                dst: IpAddr::V4(f.dst.into()),
                proto: f.proto,
                l4: L4::Ports { sport: f.sport, dport: f.dport },
            }),
        })
    }

    /// Every frame: VLAN tags, IPv4 with options, IPv6 extension headers, fragments, ESP.
    fn parse_ethernet_general(frame: &[u8]) -> Self {
        let mut info = Self::default();
        let Ok(eth) = EthernetFrame::new_checked(frame) else { return info };
        let mut ethertype = eth.ethertype();
        let mut rest = eth.payload();
        for _ in 0..MAX_VLAN_TAGS {
            if !is_vlan_tpid(ethertype) {
                break;
            }
            let Ok(tag) = VlanTag::new_checked(rest) else {
                info.ethertype = ethertype;
                return info;
            };
            if info.vlan.is_none() {
                info.vlan = Some(tag.vid());
            }
            ethertype = tag.ethertype();
            rest = rest.get(VLAN_TAG_LEN..).unwrap_or(&[]);
        }
        info.ethertype = ethertype;
        info.parse_ip(ethertype, rest);
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
        let Ok(ip) = Ipv4Packet::new_checked(h) else { return };
        self.dscp = ip.dscp();
        self.fragment = ip.is_fragment();
        let p = ip.protocol();
        // The payload ends at the total length when that is sane, else at the end of the data.
        let l4 = if self.fragment { L4::None } else { self.parse_l4(p, ip.payload()) };
        self.tuple =
            Some(FlowTuple { src: IpAddr::V4(ip.src_addr()), dst: IpAddr::V4(ip.dst_addr()), proto: p, l4 });
    }

    fn parse_ipv6(&mut self, h: &[u8]) {
        let Ok(ip) = Ipv6Packet::new_checked(h) else { return };
        self.dscp = ip.dscp();
        // Jumbograms (payload length 0) and short captures: use what is there. Offsets below
        // are from the start of the fixed header.
        let end = IPV6_HEADER_LEN + ip.payload().len();
        let mut nh = ip.next_header();
        let mut off = IPV6_HEADER_LEN;
        let mut l4 = L4::None;
        for _ in 0..MAX_IPV6_EXT {
            match nh {
                // Hop-by-hop, routing, destination options: length in 8-byte units, not counting
                // the first 8.
                n if is_ipv6_generic_ext(n) => {
                    let Some(&[next, len]) = h.get(off..).and_then(|e| e.first_chunk::<2>()) else {
                        break;
                    };
                    nh = next;
                    off += (usize::from(len) + 1) * 8;
                }
                // AH: length in 4-byte units, not counting the first 8 bytes.
                ip_proto::AH => {
                    let Some(&[next, len]) = h.get(off..).and_then(|e| e.first_chunk::<2>()) else {
                        break;
                    };
                    nh = next;
                    off += (usize::from(len) + 2) * 4;
                }
                ip_proto::IPV6_FRAG => {
                    let Some(&[next, _, fo0, fo1]) = h.get(off..).and_then(|e| e.first_chunk::<4>()) else {
                        break;
                    };
                    // Offset or M flag: a real fragment. (An atomic fragment is neither.)
                    if u16::from_be_bytes([fo0, fo1]) & 0xfff9 != 0 {
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
        self.tuple =
            Some(FlowTuple { src: IpAddr::V6(ip.src_addr()), dst: IpAddr::V6(ip.dst_addr()), proto: nh, l4 });
    }

    /// Transport fields. Deliberately lenient (like a NIC): the ports need only their four
    /// bytes, not a whole valid header; validating is the classify stage's job.
    fn parse_l4(&mut self, p: u8, l4: &[u8]) -> L4 {
        match p {
            ip_proto::TCP => match ports(l4) {
                Some((sport, dport)) => L4::Ports { sport, dport },
                None => L4::None,
            },
            ip_proto::UDP => {
                let Some((sport, dport)) = ports(l4) else {
                    return L4::None;
                };
                if sport == NAT_T_PORT || dport == NAT_T_PORT {
                    match be32(l4, 8) {
                        Some(0) => self.non_esp_marker = true,
                        Some(spi) => return L4::UdpEsp { sport, dport, spi },
                        // Shorter payload (e.g. the 1-byte NAT keepalive): plain UDP.
                        None => {}
                    }
                }
                L4::Ports { sport, dport }
            }
            ip_proto::ESP => match be32(l4, 0) {
                Some(spi) => L4::Esp { spi },
                None => L4::None,
            },
            ip_proto::ICMP | ip_proto::ICMPV6 => match l4.first_chunk::<2>() {
                Some(&[ty, code]) => L4::Icmp { ty, code },
                _ => L4::None,
            },
            _ => L4::None,
        }
    }
}

/// Source and destination port: the first four bytes of a TCP or UDP header.
#[inline]
fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    let &[a, b, c, d] = l4.first_chunk::<4>()?;
    Some((u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])))
}

#[inline]
fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*b.get(off..)?.first_chunk::<4>()?))
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

    /// Ethernet + IPv4 (no options) + UDP, 64 bytes.
    fn udp4(sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(&[0x45, 0x28, 0, 50, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 1, 1]);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 30, 0, 0]);
        f.extend_from_slice(&[0x11; 22]);
        f
    }

    #[test]
    fn fast_path_takes_plain_ipv4_tcp_udp() {
        let f = udp4(1024, 53);
        let i = PacketInfo::parse_ipv4_ports_fast(&f).expect("plain IPv4/UDP takes the fast path");
        assert_eq!(i, PacketInfo::parse_ethernet_general(&f));
        assert_eq!(i.dscp, 0x28 >> 2);
        assert_eq!(i.tuple.map(|t| t.l4), Some(L4::Ports { sport: 1024, dport: 53 }));
        let mut tcp = f.clone();
        tcp[23] = ip_proto::TCP;
        assert!(PacketInfo::parse_ipv4_ports_fast(&tcp).is_some());
        // Everything else is left to the general parser.
        for g in [
            udp4(4500, 53),
            udp4(53, 4500),
            natt_frame(7),
            f[..37].to_vec(),
            {
                let mut x = f.clone();
                x[14] = 0x46;
                x
            },
            {
                let mut x = f.clone();
                x[21] = 1;
                x
            },
            {
                let mut x = f.clone();
                x[20] = 0x20;
                x
            },
            {
                let mut x = f.clone();
                x[23] = ip_proto::ESP;
                x
            },
            {
                let mut x = f.clone();
                x[17] = 22;
                x
            },
            {
                let mut x = f.clone();
                x[13] = 0xdd;
                x
            },
        ] {
            assert!(PacketInfo::parse_ipv4_ports_fast(&g).is_none(), "{g:02x?}");
        }
    }

    /// The fast path changes no result: on frames around its boundaries (every byte it reads
    /// set to interesting or random values, every length from 0 to 80) `parse_ethernet` equals
    /// the general parser, field for field.
    #[test]
    fn fast_path_equals_general_parser() {
        // SplitMix64: deterministic, the same cases every run.
        let mut rng = wirespeed_test_gen::SplitMix(7);
        // Values each header byte the fast path reads is tried with, besides random ones.
        let interesting: [(usize, &[u8]); 8] = [
            (12, &[0x08, 0x81, 0x86]),
            (13, &[0x00, 0xdd, 0x06]),
            (14, &[0x45, 0x46, 0x44, 0x65, 0x4f]),
            (17, &[0, 19, 20, 21, 23, 24, 25, 50, 255]),
            (20, &[0, 0x20, 0x40, 0x60, 0x1f]),
            (21, &[0, 1, 0xff]),
            (23, &[ip_proto::UDP, ip_proto::TCP, ip_proto::ESP, ip_proto::ICMP, 0]),
            (35, &[0x94, 53, 0]),
        ];
        let mut checked = 0;
        for round in 0..20_000 {
            let mut f = udp4(1024, 53);
            for &(at, vals) in &interesting {
                if rng.next_u64().is_multiple_of(3) {
                    f[at] = vals[(rng.next_u64() % vals.len() as u64) as usize];
                }
            }
            if rng.next_u64().is_multiple_of(4) {
                // Port 4500 (0x1194) on either side.
                let at = if rng.next_u64().is_multiple_of(2) { 34 } else { 36 };
                f[at..at + 2].copy_from_slice(&4500u16.to_be_bytes());
            }
            for _ in 0..(rng.next_u64() % 3) {
                let at = (rng.next_u64() % f.len() as u64) as usize;
                f[at] = rng.next_u64() as u8;
            }
            let len = if round % 2 == 0 { f.len() } else { (rng.next_u64() % (f.len() as u64 + 1)) as usize };
            let frame = &f[..len];
            assert_eq!(
                PacketInfo::parse_ethernet(frame),
                PacketInfo::parse_ethernet_general(frame),
                "{frame:02x?}"
            );
            checked += usize::from(PacketInfo::parse_ipv4_ports_fast(frame).is_some());
        }
        assert!(checked > 1_000, "the fast path was taken only {checked} times");
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
