//! Classification: parse a frame's headers once and fill [`PacketMeta`] (offsets, 5-tuple or SPI,
//! VLAN, DSCP, flags and the [`FlowClass`](wirespeed_core::FlowClass) every later stage branches on).
//!
//! Two paths give the same answer:
//! - a hand-written **fast path** for the common case — Ethernet II, untagged or with one
//!   802.1Q tag, IPv4 without
//!   options and not fragmented, or IPv6 without extension headers, then TCP/UDP/ICMP/ESP — that
//!   reads fixed offsets and checks every length before it reads;
//! - the **etherparse path** ([`ClassifyConfig::classify_etherparse`]) for everything else:
//!   802.1Q / QinQ tags, IPv4 options and AH, IPv6 extension headers, fragments, ARP. It uses
//!   etherparse's link, VLAN, ARP and IP slicers; the transport layer is ours in both paths (so
//!   both agree on what a malformed TCP/UDP/ICMP/ESP header is).
//!
//! Both end in the same transport-layer code, and a property test checks that they agree.
//!
//! Flow classes (see [`ClassifyConfig`]): ARP and IPv6 Neighbor Discovery are `Management`;
//! anything addressed to one of the appliance's own addresses is `Management` (ICMP echo, SSH,
//! the management TCP port, and any other protocol so the control plane can answer or reset it)
//! except IKE (UDP 500, UDP 4500 with the four-byte zero non-ESP marker, NAT keepalives) and BGP
//! (TCP 179), which are `Control`; IP protocol 50 is `Esp`; UDP 4500 whose first payload word is
//! non-zero is `EspInUdp` (RFC 3948) whatever its destination; everything else is `Data`.
//! Non-IP, non-ARP EtherTypes are `Other` and pass unchanged (the forward stage drops them as
//! `Unsupported`).
//!
//! Malformed or truncated frames are dropped with a [`DropReason`] and counted; nothing panics.

mod parse;

use std::net::{Ipv4Addr, Ipv6Addr};

use wirespeed_core::wire::{IKE_PORT, NAT_T_PORT};
use wirespeed_core::{BATCH_SIZE, Batch, DropReason, PacketBuf, PacketMeta, ShardCtx, Stage};

/// The RFC 1071 header checks, re-exported from [`wirespeed_core::wire::checksum`] where they
/// live (kept here because tests and appliances name them through this module).
pub use wirespeed_core::wire::checksum::{ipv4_header_valid, ipv4_header20_valid};

/// What the classifier needs to know about the appliance: its own addresses and the ports of its
/// control protocols. Plain data; build one at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassifyConfig {
    /// The appliance's own IPv4 addresses.
    pub own_ipv4: Vec<Ipv4Addr>,
    /// The appliance's own IPv6 addresses.
    pub own_ipv6: Vec<Ipv6Addr>,
    /// TCP port of the management endpoint (default 9000).
    pub management_tcp_port: u16,
    /// TCP port of SSH (default 22).
    pub ssh_port: u16,
    /// TCP port of BGP (default 179).
    pub bgp_port: u16,
    /// UDP port of IKE (default 500).
    pub ike_port: u16,
    /// UDP port of NAT traversal, IKE and ESP-in-UDP (default 4500).
    pub nat_t_port: u16,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        Self {
            own_ipv4: Vec::new(),
            own_ipv6: Vec::new(),
            management_tcp_port: 9000,
            ssh_port: 22,
            bgp_port: 179,
            ike_port: IKE_PORT,
            nat_t_port: NAT_T_PORT,
        }
    }
}

/// The classify stage. Construct with [`Classify::new`]; it owns its [`ClassifyConfig`].
#[derive(Clone, Debug, Default)]
pub struct Classify {
    cfg: ClassifyConfig,
}

impl Classify {
    /// A classifier for an appliance described by `cfg`.
    pub fn new(cfg: ClassifyConfig) -> Self {
        Self { cfg }
    }

    /// The configuration.
    pub fn config(&self) -> &ClassifyConfig {
        &self.cfg
    }

    /// Classifies one packet in place: fills its metadata, or says why it must be dropped.
    #[inline]
    pub fn classify_packet<B: PacketBuf>(&self, p: &mut B) -> Result<(), DropReason> {
        match parse::fast(&self.cfg, p.data(), p.meta().flags) {
            Some(Ok(m)) => {
                parse::store(p.meta_mut(), &m);
                Ok(())
            }
            Some(Err(r)) => Err(r),
            None => parse::slow(&self.cfg, p),
        }
    }
}

impl<B: PacketBuf> Stage<B> for Classify {
    #[inline]
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        // A plain loop the compiler inlines whole (no per-packet closure call); packets to drop
        // are marked and removed afterwards, which is rare.
        let cfg = &self.cfg;
        let mut drops = [None; BATCH_SIZE];
        let mut any = false;
        for (p, d) in batch.iter_mut().zip(drops.iter_mut()) {
            // The fast path builds its result in registers and stores it once; only frames it
            // does not handle take the etherparse path (which works on a copy in memory).
            let r = match parse::fast(cfg, p.data(), p.meta().flags) {
                Some(Ok(m)) => {
                    parse::store(p.meta_mut(), &m);
                    continue;
                }
                Some(Err(r)) => r,
                None => match parse::slow(cfg, p) {
                    Ok(()) => continue,
                    Err(r) => r,
                },
            };
            *d = Some(r);
            any = true;
        }
        if any {
            batch.remove_marked(cx, &drops);
        }
    }
}

impl ClassifyConfig {
    /// Classifies `frame` (starting at the Ethernet header) into `meta`: the fast path when it
    /// applies, etherparse otherwise. On error `meta`'s classifier fields are unspecified.
    #[inline]
    pub fn classify(&self, frame: &[u8], meta: &mut PacketMeta) -> Result<(), DropReason> {
        match parse::fast(self, frame, meta.flags) {
            Some(Ok(m)) => {
                parse::store(meta, &m);
                Ok(())
            }
            Some(Err(r)) => Err(r),
            None => {
                parse::reset(meta);
                parse::etherparse(self, frame, meta)
            }
        }
    }

    /// Classifies `frame` with etherparse only (no fast path). The result is the same as
    /// [`ClassifyConfig::classify`]; exposed so tests and tools can compare the two paths.
    pub fn classify_etherparse(&self, frame: &[u8], meta: &mut PacketMeta) -> Result<(), DropReason> {
        parse::reset(meta);
        parse::etherparse(self, frame, meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wirespeed_core::backend::null::udp4_frame;
    use wirespeed_core::{FlowClass, L3Kind};

    fn cfg() -> ClassifyConfig {
        ClassifyConfig {
            own_ipv4: vec![Ipv4Addr::new(10, 0, 1, 1)],
            own_ipv6: vec!["2001:db8::1".parse().unwrap()],
            ..ClassifyConfig::default()
        }
    }

    #[test]
    fn template_udp_to_self_is_management_and_fast_equals_slow() {
        let f = udp4_frame(64);
        let c = cfg();
        let mut a = PacketMeta::default();
        let mut b = PacketMeta::default();
        c.classify(&f, &mut a).unwrap();
        c.classify_etherparse(&f, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.l3, a.l3_offset, a.l4_offset, a.l4_proto), (L3Kind::Ipv4, 14, 34, 17));
        assert_eq!((a.src_port, a.dst_port), (1024, 2048));
        assert_eq!(a.flow_class, FlowClass::Management);
        let mut d = PacketMeta::default();
        ClassifyConfig::default().classify(&f, &mut d).unwrap();
        assert_eq!(d.flow_class, FlowClass::Data);
    }

    #[test]
    fn bad_ipv4_checksum_is_dropped() {
        let mut f = udp4_frame(64);
        f[24] ^= 1;
        let mut m = PacketMeta::default();
        assert_eq!(cfg().classify(&f, &mut m), Err(DropReason::MalformedIpv4));
        assert_eq!(cfg().classify_etherparse(&f, &mut m), Err(DropReason::MalformedIpv4));
    }

    #[test]
    fn truncated_is_dropped_not_panicking() {
        let f = udp4_frame(64);
        for n in 0..f.len() {
            let mut m = PacketMeta::default();
            let r = cfg().classify(&f[..n], &mut m);
            assert!(r.is_err(), "prefix of {n} bytes accepted: {m:?}");
        }
    }
}
