//! Properties of the `wire` views on arbitrary bytes: constructors and accessors never panic,
//! a checked view's slices stay inside the buffer, and `new_checked` accepts exactly the buffers
//! its documentation describes (compared with a direct reading of RFC 791 / 8200 / 768 / 9293).

use proptest::prelude::*;
use wirespeed_core::wire::{
    EspHeader, EthernetFrame, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, VlanTag, WireError,
};

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

proptest! {
    #[test]
    fn views_are_total(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        let b = &bytes[..];
        // Unchecked views over anything: every accessor returns, slices are inside the buffer.
        let ip = Ipv4Packet::new_unchecked(b);
        let _ = (ip.version(), ip.header_len(), ip.ttl(), ip.protocol(), ip.src_addr(), ip.dst_addr());
        prop_assert!(ip.payload().len() <= b.len() && ip.header().len() <= b.len());
        let _ = ip.verify_checksum();
        let ip6 = Ipv6Packet::new_unchecked(b);
        let _ = (ip6.traffic_class(), ip6.flow_label(), ip6.next_header(), ip6.src_addr(), ip6.dst_addr());
        prop_assert!(ip6.payload().len() <= b.len());
        let u = UdpPacket::new_unchecked(b);
        prop_assert!(u.payload().len() <= b.len());
        let t = TcpPacket::new_unchecked(b);
        let _ = (t.src_port(), t.dst_port(), t.header_len(), t.flags());
        let e = EspHeader::new_unchecked(b);
        let _ = (e.spi(), e.seq(), e.payload());
        let eth = EthernetFrame::new_unchecked(b);
        let _ = (eth.dst_addr(), eth.src_addr(), eth.ethertype(), eth.payload());
        let _ = VlanTag::new_checked(b).map(|v| (v.vid(), v.pcp(), v.ethertype()));
        let mut copy = bytes.clone();
        Ipv4Packet::new_unchecked(&mut copy[..]).fill_checksum();
        Ipv4Packet::new_unchecked(&mut copy[..]).decrement_ttl();
    }

    #[test]
    fn ipv4_check_matches_rfc791(bytes in prop::collection::vec(any::<u8>(), 0..80), first in any::<u8>()) {
        let mut b = bytes;
        if let Some(x) = b.first_mut() {
            *x = first;
        }
        let want = b.len() >= 20 && b[0] >> 4 == 4 && usize::from(b[0] & 15) * 4 >= 20
            && b.len() >= usize::from(b[0] & 15) * 4;
        let got = Ipv4Packet::new_checked(&b[..]);
        prop_assert_eq!(got.is_ok(), want);
        if let Ok(ip) = got {
            let (hl, total) = (ip.header_len(), be16(&b, 2));
            let end = if total >= hl { b.len().min(total) } else { b.len() };
            prop_assert_eq!(ip.payload(), &b[hl..end]);
            prop_assert_eq!(ip.header(), &b[..hl]);
        }
        let simple = Ipv4Packet::new_without_options(&b[..]);
        prop_assert_eq!(simple.is_some(), b.len() >= 20 && b[0] == 0x45);
    }

    #[test]
    fn l4_checks_match_the_rfcs(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let b = &bytes[..];
        let udp_ok = b.len() >= 8 && be16(b, 4) >= 8 && be16(b, 4) <= b.len();
        prop_assert_eq!(UdpPacket::new_checked(b).is_ok(), udp_ok);
        if let Ok(u) = UdpPacket::new_checked(b) {
            prop_assert_eq!(u.payload(), &b[8..be16(b, 4)]);
        }
        let tcp_ok = b.len() >= 20 && usize::from(b[12] >> 4) * 4 >= 20 && usize::from(b[12] >> 4) * 4 <= b.len();
        prop_assert_eq!(TcpPacket::new_checked(b).is_ok(), tcp_ok);
        prop_assert_eq!(Ipv6Packet::new_checked(b).is_ok(), b.len() >= 40 && b[0] >> 4 == 6);
        prop_assert_eq!(EspHeader::new_checked(b).is_ok(), b.len() >= 8);
        if let Err(WireError::Truncated { needed, got, .. }) = EthernetFrame::new_checked(b) {
            prop_assert_eq!((needed, got), (14, b.len()));
        }
    }
}
