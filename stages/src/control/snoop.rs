//! Neighbor learning for the forwarding table: the control plane sees every ARP and Neighbor
//! Discovery frame punted to it, and records who claims which address on which port, so the
//! application can feed them into a [`crate::forward::FibBuilder`] and publish a new FIB.
//!
//! Only answers that concern the appliance are learned, as smoltcp itself does: ARP requests or
//! replies whose target is one of its addresses (RFC 826 "merge" step), and Neighbor
//! Solicitations / Advertisements with hop limit 255 (RFC 4861 §7.1: anything else was forwarded
//! by a router and is not from the link).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::forward::{AddrMap, Neighbor};

/// Most neighbors remembered; past this, new addresses are ignored (existing ones still update).
pub const MAX_LEARNED: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Snoop {
    own4: Vec<Ipv4Addr>,
    table: AddrMap<IpAddr, Neighbor>,
    changed: Vec<(IpAddr, Neighbor)>,
}

impl Snoop {
    pub(crate) fn new(own: &[(IpAddr, u8)]) -> Self {
        let own4 = own
            .iter()
            .filter_map(|(a, _)| match a {
                IpAddr::V4(v) => Some(*v),
                IpAddr::V6(_) => None,
            })
            .collect();
        Self { own4, ..Self::default() }
    }

    pub(crate) fn learned(&self) -> impl Iterator<Item = (IpAddr, Neighbor)> + '_ {
        self.table.iter().map(|(a, n)| (*a, *n))
    }

    pub(crate) fn take_changes(&mut self) -> Vec<(IpAddr, Neighbor)> {
        std::mem::take(&mut self.changed)
    }

    fn learn(&mut self, ip: IpAddr, mac: [u8; 6], port: u16) {
        // Zero, broadcast and multicast MACs are never a neighbor's.
        if mac == [0; 6] || mac[0] & 1 == 1 {
            return;
        }
        let n = Neighbor { mac, port };
        if self.table.get(&ip) == Some(&n) {
            return;
        }
        if self.table.len() >= MAX_LEARNED && !self.table.contains_key(&ip) {
            return;
        }
        self.table.insert(ip, n);
        self.changed.push((ip, n));
    }

    /// Looks at one punted frame (untagged Ethernet II).
    pub(crate) fn frame(&mut self, f: &[u8], port: u16) {
        let Some(et) = f.get(12..14) else { return };
        match u16::from_be_bytes([et[0], et[1]]) {
            0x0806 => self.arp(&f[14..], port),
            0x86dd => self.nd(&f[14..], port),
            _ => {}
        }
    }

    fn arp(&mut self, a: &[u8], port: u16) {
        // RFC 826, Ethernet (1) / IPv4 (0x0800), hlen 6, plen 4.
        let Some(a) = a.get(..28) else { return };
        if a[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
            return;
        }
        let spa = Ipv4Addr::new(a[14], a[15], a[16], a[17]);
        let tpa = Ipv4Addr::new(a[24], a[25], a[26], a[27]);
        if spa.is_unspecified() || !self.own4.contains(&tpa) {
            return;
        }
        let mut sha = [0u8; 6];
        sha.copy_from_slice(&a[8..14]);
        self.learn(spa.into(), sha, port);
    }

    fn nd(&mut self, ip: &[u8], port: u16) {
        // IPv6 header without extension headers, ICMPv6 (58), hop limit 255.
        let Some(h) = ip.get(..40) else { return };
        if h[0] >> 4 != 6 || h[6] != 58 || h[7] != 255 {
            return;
        }
        let plen = u16::from_be_bytes([h[4], h[5]]) as usize;
        let Some(icmp) = ip.get(40..40 + plen) else { return };
        let Some(&ty) = icmp.first() else { return };
        let mut src = [0u8; 16];
        src.copy_from_slice(&h[8..24]);
        // NS (135): the source link-layer option (1) gives the solicitor's MAC for its source
        // address. NA (136): the target link-layer option (2) gives the target's MAC.
        let (addr, want_opt) = match ty {
            135 => (Ipv6Addr::from(src), 1),
            136 => {
                let Some(t) = icmp.get(8..24) else { return };
                let mut a = [0u8; 16];
                a.copy_from_slice(t);
                (Ipv6Addr::from(a), 2)
            }
            _ => return,
        };
        if addr.is_unspecified() || addr.is_multicast() {
            return;
        }
        // Options start after type, code, checksum, reserved/flags (8) and the target (16).
        let mut opts = icmp.get(24..).unwrap_or(&[]);
        while opts.len() >= 8 {
            let len = opts[1] as usize * 8;
            if len == 0 || len > opts.len() {
                return; // RFC 4861 §4.6: a zero-length option invalidates the message
            }
            if opts[0] == want_opt && len == 8 {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&opts[2..8]);
                self.learn(addr.into(), mac, port);
                return;
            }
            opts = &opts[len..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x42];

    /// Ethernet + IPv6 (hop limit `hl`) + an ICMPv6 NA for `target` with a target link-layer
    /// option (RFC 4861 §4.4); checksum left zero (the snooper does not verify it, smoltcp does).
    fn na(target: Ipv6Addr, hl: u8, opt_len: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        let icmp_len = 24 + 8;
        let mut ip = vec![0x60, 0, 0, 0, 0, icmp_len as u8, 58, hl];
        ip.extend_from_slice(&target.octets());
        ip.extend_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[136, 0, 0, 0, 0x60, 0, 0, 0]);
        f.extend_from_slice(&target.octets());
        f.extend_from_slice(&[2, opt_len]);
        f.extend_from_slice(&MAC);
        f
    }

    #[test]
    fn learns_na_only_from_the_link() {
        let t: Ipv6Addr = "2001:db8::42".parse().unwrap();
        let mut s = Snoop::default();
        s.frame(&na(t, 64, 1), 3);
        s.frame(&na(t, 255, 0), 3);
        assert!(s.take_changes().is_empty(), "routed NA or zero-length option learned");
        s.frame(&na(t, 255, 1), 3);
        assert_eq!(s.take_changes(), vec![(IpAddr::V6(t), Neighbor { mac: MAC, port: 3 })]);
        s.frame(&na(t, 255, 1), 3);
        assert!(s.take_changes().is_empty(), "an unchanged neighbor is not a change");
        for n in 0..20 {
            s.frame(&na(t, 255, 1)[..n], 3);
        }
    }
}
