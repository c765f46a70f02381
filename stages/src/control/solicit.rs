//! The frames the control plane sends on its own to resolve next hops: ARP requests (RFC 826)
//! and Neighbor Solicitations (RFC 4861 §4.3, §7.2.2), broadcast / multicast to find a neighbor,
//! unicast to its known MAC to confirm it is still there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wirespeed_core::wire::{ETHERTYPE_ARP, ETHERTYPE_IPV6, ip_proto};

use super::snoop::icmpv6_checksum;

/// Length of an ARP request frame (padded to the Ethernet minimum, FCS excluded).
pub(crate) const ARP_LEN: usize = 60;
/// Length of a Neighbor Solicitation with a source link-layer address option.
pub(crate) const NS_LEN: usize = 14 + 40 + 32;

/// The length of the solicitation for `target` (ARP or NS by family).
pub(crate) fn len(target: IpAddr) -> usize {
    if target.is_ipv4() { ARP_LEN } else { NS_LEN }
}

/// Writes the ARP request `who has target? tell src` from `mac`, to `dst_mac` (broadcast to
/// find, the neighbor's own MAC to confirm).
pub(crate) fn arp_request(f: &mut [u8], mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, target: Ipv4Addr) {
    f[..ARP_LEN].fill(0);
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // Ethernet (1), IPv4, hlen 6, plen 4, request (1).
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&src.octets());
    // Target hardware address unknown: zero.
    f[38..42].copy_from_slice(&target.octets());
}

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1), where a Neighbor Solicitation
/// for `a` is sent.
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]))
}

/// Writes a Neighbor Solicitation for `target` from `src` / `mac`: to the solicited-node
/// multicast group when `unicast` is `None`, else to `target` at that MAC.
pub(crate) fn neighbor_solicitation(
    f: &mut [u8],
    mac: [u8; 6],
    src: Ipv6Addr,
    target: Ipv6Addr,
    unicast: Option<[u8; 6]>,
) {
    let f = &mut f[..NS_LEN];
    f.fill(0);
    let dst = match unicast {
        Some(_) => target,
        None => solicited_node(target),
    };
    let dst_mac = unicast.unwrap_or_else(|| {
        let o = dst.octets();
        [0x33, 0x33, o[12], o[13], o[14], o[15]]
    });
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let ip = &mut f[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = ip_proto::ICMPV6;
    ip[7] = 255; // RFC 4861 §7.1.1: receivers drop anything else
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let (hdr, icmp) = f.split_at_mut(54);
    icmp[0] = 135;
    icmp[8..24].copy_from_slice(&target.octets());
    // Source link-layer address option (type 1, 8 bytes).
    icmp[24] = 1;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&mac);
    let c = icmpv6_checksum(&hdr[22..38], &hdr[38..54], icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
}
