//! The classifier's parser: the fast path over [`wirespeed_core::wire`] views, the etherparse
//! path for everything else, and the transport-layer code both share.
//!
//! Split from the stage (`super`) so the stage file holds only configuration and the batch loop.

use etherparse::{ArpPacketSlice, Ethernet2Slice, Ipv4Slice, Ipv6Slice, SingleVlanSlice};
use wirespeed_core::meta::flags;
use wirespeed_core::wire::checksum::ipv4_header_valid;
use wirespeed_core::wire::{
    ETHERNET_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, EspHeader,
    IPV4_HEADER_LEN, IPV6_HEADER_LEN, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, VLAN_TAG_LEN, ip_proto,
    is_vlan_tpid,
};
use wirespeed_core::{DropReason, FlowClass, L3Kind, PacketBuf, PacketMeta};

use super::ClassifyConfig;

/// Destination of the IP header, for "is it for us" tests.
#[derive(Clone, Copy)]
enum Dst {
    V4(u32),
    V6(u128),
}

/// IPv6 next-header values that are extension headers (RFC 8200 §4, RFC 7045), which the fast
/// path leaves to etherparse.
#[inline]
fn is_ipv6_ext(nh: u8) -> bool {
    matches!(nh, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140 | 253 | 254)
}

/// Copies the classifier's fields of `m` into `dst`, one field at a time: a whole-struct copy of
/// a just-written local is done with wide loads of narrow stores, which stalls store forwarding
/// (it cost ~60 % of the stage in a profile).
#[inline(always)]
pub(super) fn store(dst: &mut PacketMeta, m: &PacketMeta) {
    dst.l3_offset = m.l3_offset;
    dst.l4_offset = m.l4_offset;
    dst.l3 = m.l3;
    dst.l4_proto = m.l4_proto;
    dst.src_port = m.src_port;
    dst.dst_port = m.dst_port;
    dst.spi = m.spi;
    dst.vlan = m.vlan;
    dst.flow_class = m.flow_class;
    dst.dscp = m.dscp;
    dst.flags = m.flags;
}

/// Resets the fields the classifier owns, keeping what the backend set (port, queue, RSS hash,
/// hardware flags) and what other stages own (`out_port`, `user`).
#[inline(always)]
pub(super) fn reset(m: &mut PacketMeta) {
    m.l3_offset = 0;
    m.l4_offset = 0;
    m.l3 = L3Kind::None;
    m.l4_proto = 0;
    m.src_port = 0;
    m.dst_port = 0;
    m.spi = 0;
    m.vlan = 0;
    m.flow_class = FlowClass::Unclassified;
    m.dscp = 0;
    m.flags &= !(flags::FRAGMENT | flags::VLAN | flags::IP_OPTIONS);
}

#[inline(always)]
fn is_own(cfg: &ClassifyConfig, dst: Dst) -> bool {
    match dst {
        Dst::V4(a) => cfg.own_ipv4.iter().any(|o| o.to_bits() == a),
        Dst::V6(a) => cfg.own_ipv6.iter().any(|o| o.to_bits() == a),
    }
}

/// The etherparse path for a packet in a buffer, on a copy of its metadata (stored back on
/// success only, like the fast path).
#[inline(never)]
pub(super) fn slow<B: PacketBuf>(cfg: &ClassifyConfig, p: &mut B) -> Result<(), DropReason> {
    let mut m = *p.meta();
    reset(&mut m);
    etherparse(cfg, p.data(), &mut m)?;
    store(p.meta_mut(), &m);
    Ok(())
}

/// The fast path: the classifier's fields of the metadata (the others default; `flags` keeps
/// the bits of `flags_in` the classifier does not own), or `None` when the frame is not the
/// simple case (the caller falls back to etherparse). The L3 offset is a constant per L2 layout
/// (one copy of the IP code each), and every header is read through a checked view, so each
/// header costs one length check and no per-byte bounds checks.
#[inline(always)]
pub(super) fn fast(cfg: &ClassifyConfig, f: &[u8], flags_in: u16) -> Option<Result<PacketMeta, DropReason>> {
    let mut m = PacketMeta {
        flags: flags_in & !(flags::FRAGMENT | flags::VLAN | flags::IP_OPTIONS),
        ..PacketMeta::default()
    };
    let eth = f.first_chunk::<ETHERNET_HEADER_LEN>()?;
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    // Untagged IPv4 first: the common case takes one compare.
    if ethertype == ETHERTYPE_IPV4 {
        return fast_ipv4::<ETHERNET_HEADER_LEN>(cfg, f, m);
    }
    const TAGGED: usize = ETHERNET_HEADER_LEN + VLAN_TAG_LEN;
    match ethertype {
        ETHERTYPE_IPV6 => fast_ipv6::<ETHERNET_HEADER_LEN>(cfg, f, m),
        // One 802.1Q tag is common enough to stay on the fast path; QinQ goes to etherparse.
        ETHERTYPE_VLAN => {
            let tagged = f.first_chunk::<TAGGED>()?;
            let tci = u16::from_be_bytes([tagged[14], tagged[15]]);
            m.vlan = tci & 0x0fff;
            m.flags |= flags::VLAN;
            match u16::from_be_bytes([tagged[16], tagged[17]]) {
                ETHERTYPE_IPV4 => fast_ipv4::<TAGGED>(cfg, f, m),
                ETHERTYPE_IPV6 => fast_ipv6::<TAGGED>(cfg, f, m),
                _ => None,
            }
        }
        _ => None,
    }
}

/// IPv4 without options, not fragmented, at frame offset `L3`.
#[inline(always)]
fn fast_ipv4<const L3: usize>(
    cfg: &ClassifyConfig,
    f: &[u8],
    mut m: PacketMeta,
) -> Option<Result<PacketMeta, DropReason>> {
    // The view is over exactly the 20-byte header, so every accessor is a constant offset into
    // an array (no length checks left); the payload is sliced from the frame once the total
    // length is known to fit. Anything unusual (bad version, options, short, fragment): `None`,
    // and etherparse says which.
    let ip = Ipv4Packet::new_without_options(f.get(L3..)?.first_chunk::<IPV4_HEADER_LEN>()?)?;
    // Summed before the other fields are read: the sum loads the header as three words, and
    // the field reads below then come from those registers (the other order made the compiler
    // rebuild the words from the byte loads, ~10 instructions more).
    let checksum_ok = ip.verify_checksum();
    let total = usize::from(ip.total_len());
    if total < IPV4_HEADER_LEN || total > f.len() - L3 {
        return None;
    }
    if ip.is_fragment() {
        return None;
    }
    if !checksum_ok {
        return Some(Err(DropReason::MalformedIpv4));
    }
    m.l3 = L3Kind::Ipv4;
    m.l3_offset = L3 as u16;
    m.dscp = ip.dscp();
    let dst = Dst::V4(ip.dst_bits());
    let l4 = f.get(L3 + IPV4_HEADER_LEN..L3 + total)?;
    let r = transport(cfg, ip.protocol(), l4, (L3 + IPV4_HEADER_LEN) as u16, dst, false, &mut m);
    Some(r.map(|()| m))
}

/// IPv6 without extension headers at frame offset `L3`.
#[inline(always)]
fn fast_ipv6<const L3: usize>(
    cfg: &ClassifyConfig,
    f: &[u8],
    mut m: PacketMeta,
) -> Option<Result<PacketMeta, DropReason>> {
    let ip = Ipv6Packet::new_checked(f.get(L3..)?).ok()?;
    let plen = usize::from(ip.payload_len());
    let nh = ip.next_header();
    // Payload length 0 is a jumbogram / BIG TCP frame: etherparse decides.
    if is_ipv6_ext(nh) || plen == 0 || IPV6_HEADER_LEN + plen > f.len() - L3 {
        return None;
    }
    m.l3 = L3Kind::Ipv6;
    m.l3_offset = L3 as u16;
    m.dscp = ip.dscp();
    let dst = Dst::V6(ip.dst_bits());
    let r = transport(cfg, nh, ip.payload(), (L3 + IPV6_HEADER_LEN) as u16, dst, false, &mut m);
    Some(r.map(|()| m))
}

/// Classifies with etherparse (no fast path) into `m`, whose classifier fields the caller reset.
#[inline(never)]
pub(super) fn etherparse(cfg: &ClassifyConfig, f: &[u8], m: &mut PacketMeta) -> Result<(), DropReason> {
    let base = f.as_ptr() as usize;
    let off = |s: &[u8]| (s.as_ptr() as usize - base) as u16;
    let eth = Ethernet2Slice::from_slice_without_fcs(f).map_err(|_| DropReason::Truncated)?;
    let mut ethertype = eth.ether_type().0;
    let mut rest = eth.payload_slice();
    // 802.1Q / 802.1ad / legacy 0x9100 QinQ tags, outermost first (etherparse keeps at most
    // three link extensions; so do we).
    let mut tags = 0;
    while is_vlan_tpid(ethertype) {
        if tags == 3 {
            return Err(DropReason::MalformedL2);
        }
        let v = SingleVlanSlice::from_slice(rest).map_err(|_| DropReason::Truncated)?;
        if tags == 0 {
            m.vlan = v.vlan_identifier().value();
            m.flags |= flags::VLAN;
        }
        tags += 1;
        ethertype = v.ether_type().0;
        rest = v.payload_slice();
    }
    m.l3_offset = off(rest);
    match ethertype {
        ETHERTYPE_ARP => {
            ArpPacketSlice::from_slice(rest).map_err(|_| DropReason::Truncated)?;
            m.l3 = L3Kind::Arp;
            m.l4_offset = m.l3_offset;
            m.flow_class = FlowClass::Management;
            Ok(())
        }
        ETHERTYPE_IPV4 => {
            // A packet that is all there (total length within the frame) with a corrupt
            // header is `MalformedIpv4`, as the fast path says, before etherparse parses an
            // AH extension: one cut short must not make it `Truncated` (found by the fuzz
            // suite, tests/fuzz.rs).
            if let Some(h) = rest.get(..20)
                && h[0] >> 4 == 4
                && let Some(h) = rest.get(..usize::from(h[0] & 0x0f) * 4)
                && h.len() >= 20
                && (h.len()..=rest.len()).contains(&usize::from(u16::from_be_bytes([h[2], h[3]])))
                && !ipv4_header_valid(h)
            {
                return Err(DropReason::MalformedIpv4);
            }
            let ip = Ipv4Slice::from_slice(rest).map_err(|e| match e {
                etherparse::err::ipv4::SliceError::Len(_) => DropReason::Truncated,
                _ => DropReason::MalformedIpv4,
            })?;
            let h = ip.header();
            if !ipv4_header_valid(h.slice()) {
                return Err(DropReason::MalformedIpv4);
            }
            m.l3 = L3Kind::Ipv4;
            m.dscp = h.dcp().value();
            if h.slice().len() > IPV4_HEADER_LEN || !ip.extensions().is_empty() {
                m.flags |= flags::IP_OPTIONS;
            }
            let pl = ip.payload();
            let dst = Dst::V4(u32::from_be_bytes(h.destination()));
            transport(cfg, pl.ip_number.0, pl.payload, off(pl.payload), dst, pl.fragmented, m)
        }
        ETHERTYPE_IPV6 => {
            let ip = Ipv6Slice::from_slice(rest).map_err(|e| match e {
                etherparse::err::ipv6::SliceError::Len(_) => DropReason::Truncated,
                _ => DropReason::MalformedIpv6,
            })?;
            let h = ip.header();
            m.l3 = L3Kind::Ipv6;
            m.dscp = h.traffic_class() >> 2;
            if !ip.extensions().is_empty() {
                m.flags |= flags::IP_OPTIONS;
            }
            let pl = ip.payload();
            let dst = Dst::V6(u128::from_be_bytes(h.destination()));
            transport(cfg, pl.ip_number.0, pl.payload, off(pl.payload), dst, pl.fragmented, m)
        }
        _ => {
            m.l3 = L3Kind::Other;
            m.flow_class = FlowClass::Other;
            Ok(())
        }
    }
}

/// `Control` when the packet is for the appliance, `Data` otherwise.
#[inline(always)]
fn control_if(own: bool) -> FlowClass {
    if own { FlowClass::Control } else { FlowClass::Data }
}

/// Transport layer, shared by both paths. `l4` is exactly the IP payload (no Ethernet padding),
/// starting at frame offset `l4_off`. A header the views refuse is `MalformedL4` (an ESP header
/// `EspMalformed`) whatever the exact defect.
#[inline(always)]
fn transport(
    cfg: &ClassifyConfig,
    proto: u8,
    l4: &[u8],
    l4_off: u16,
    dst: Dst,
    fragment: bool,
    m: &mut PacketMeta,
) -> Result<(), DropReason> {
    m.l4_offset = l4_off;
    m.l4_proto = proto;
    let own = is_own(cfg, dst);
    if fragment {
        // Only the 2-tuple is meaningful; the control plane reassembles what is ours.
        m.flags |= flags::FRAGMENT;
        m.flow_class = if proto == ip_proto::ESP {
            FlowClass::Esp
        } else if own {
            FlowClass::Management
        } else {
            FlowClass::Data
        };
        return Ok(());
    }
    m.flow_class = match proto {
        ip_proto::TCP => {
            let tcp = TcpPacket::new_checked(l4).map_err(|_| DropReason::MalformedL4)?;
            let (sp, dp) = (tcp.src_port(), tcp.dst_port());
            m.src_port = sp;
            m.dst_port = dp;
            if !own {
                FlowClass::Data
            } else if dp == cfg.bgp_port || sp == cfg.bgp_port {
                FlowClass::Control
            } else {
                FlowClass::Management
            }
        }
        ip_proto::UDP => {
            let udp = UdpPacket::new_checked(l4).map_err(|_| DropReason::MalformedL4)?;
            let (sp, dp) = (udp.src_port(), udp.dst_port());
            m.src_port = sp;
            m.dst_port = dp;
            let payload = udp.payload();
            if dp == cfg.nat_t_port || sp == cfg.nat_t_port {
                // RFC 3948 §2: a zero first word is the non-ESP marker (IKE), a single 0xff
                // byte a NAT keepalive, anything else an ESP header (SPI, sequence).
                match EspHeader::new_checked(payload) {
                    Ok(esp) if esp.spi() == 0 => control_if(own),
                    Ok(esp) => {
                        m.spi = esp.spi();
                        FlowClass::EspInUdp
                    }
                    Err(_) if payload == [0xff] => control_if(own),
                    // A marker shorter than an ESP header is still the non-ESP marker.
                    Err(_) if payload.first_chunk::<4>() == Some(&[0; 4]) => control_if(own),
                    Err(_) if own => return Err(DropReason::EspMalformed),
                    Err(_) => FlowClass::Data,
                }
            } else if !own {
                FlowClass::Data
            } else if dp == cfg.ike_port {
                FlowClass::Control
            } else {
                FlowClass::Management
            }
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            // Every ICMP (RFC 792) and ICMPv6 (RFC 4443) message has an 8-byte header.
            let Some(&ty) = l4.first() else { return Err(DropReason::MalformedL4) };
            if l4.len() < 8 {
                return Err(DropReason::MalformedL4);
            }
            // RFC 4861 §4: Router/Neighbor Solicitation/Advertisement and Redirect go to the
            // control plane whatever the destination (solicited-node multicast).
            if own || (proto == ip_proto::ICMPV6 && (133..=137).contains(&ty)) {
                FlowClass::Management
            } else {
                FlowClass::Data
            }
        }
        ip_proto::ESP => {
            // RFC 4303 §2.1: SPI 0 is reserved and never sent.
            match EspHeader::new_checked(l4) {
                Ok(esp) if esp.spi() != 0 => {
                    m.spi = esp.spi();
                    FlowClass::Esp
                }
                _ => return Err(DropReason::EspMalformed),
            }
        }
        _ => {
            if own {
                FlowClass::Management
            } else {
                FlowClass::Data
            }
        }
    };
    Ok(())
}
