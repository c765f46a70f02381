//! Steering rules compiled to `rte_flow`, rule by rule, with the software dispatcher as the
//! fallback, and a report of where each rule runs.
//!
//! First match wins in a [`SteeringPlan`], so rules go to hardware in order (rule *i* gets
//! rte_flow priority *i*) only up to the first one the PMD refuses or that rte_flow cannot
//! express; that rule and every later one run in the software dispatcher. The dispatcher always
//! runs the whole plan: a rule in hardware only delivers its packets straight to the queue the
//! plan would have chosen anyway, so running it again in software changes nothing.
//!
//! Not expressible here (software): port or ICMP-type ranges, the NAT-T SPI (inside UDP) and the
//! IKE non-ESP marker (both need a match on the UDP payload), a rule on an SPI without
//! `ip_proto = 50`.

use std::net::IpAddr;

use wirespeed_core::rss::{Applied, RssConfig, SteeringAction, SteeringPlan, SteeringRule};
use wirespeed_core::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, ip_proto};

use crate::ffi::{self, FlowHandle, FlowRule};

/// Where a rule runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In the NIC, as this many `rte_flow` rules (two when the rule covers IPv4 and IPv6).
    Hardware {
        /// rte_flow rules created.
        flows: usize,
    },
    /// In the software dispatcher.
    Software {
        /// Why not in hardware.
        why: String,
    },
}

/// One rule's placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulePlacement {
    /// The rule's name.
    pub name: String,
    /// Where it runs.
    pub placement: Placement,
}

/// Where every rule of a plan runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SteeringReport {
    /// Rules in plan order.
    pub rules: Vec<RulePlacement>,
}

impl SteeringReport {
    /// Counts per place.
    pub fn applied(&self) -> Applied {
        let hw = self.rules.iter().filter(|r| matches!(r.placement, Placement::Hardware { .. })).count();
        Applied { in_hardware: hw, in_software: self.rules.len() - hw }
    }

    /// True when some rule runs in software: the Rx shards must run the software dispatcher
    /// (with the whole plan).
    pub fn needs_software_dispatcher(&self) -> bool {
        self.applied().in_software > 0
    }
}

impl std::fmt::Display for SteeringReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for r in &self.rules {
            match &r.placement {
                Placement::Hardware { flows } => {
                    writeln!(f, "rule `{}`: hardware ({flows} rte_flow rule(s))", r.name)?
                }
                Placement::Software { why } => writeln!(f, "rule `{}`: software dispatcher ({why})", r.name)?,
            }
        }
        Ok(())
    }
}

/// Validates and creates the plan's rules in order; returns the report and the flows created.
pub(crate) fn install(
    port: u16,
    plan: &SteeringPlan,
    rss: &RssConfig,
    symmetric: bool,
) -> (SteeringReport, Vec<FlowHandle>) {
    let mut report = SteeringReport::default();
    let mut flows = Vec::new();
    let mut blocked: Option<String> = None;
    for (i, rule) in plan.rules.iter().enumerate() {
        let placement = match &blocked {
            Some(first) => Placement::Software {
                why: format!("after rule `{first}`, which runs in software (first match wins)"),
            },
            None => match place(port, i as u32, rule, rss, symmetric) {
                Ok(mut fl) => {
                    let n = fl.len();
                    flows.append(&mut fl);
                    Placement::Hardware { flows: n }
                }
                Err(why) => {
                    blocked = Some(rule.name.clone());
                    Placement::Software { why }
                }
            },
        };
        report.rules.push(RulePlacement { name: rule.name.clone(), placement });
    }
    (report, flows)
}

/// Compiles, validates and creates one rule (all its rte_flow rules or none).
fn place(
    port: u16,
    priority: u32,
    rule: &SteeringRule,
    rss: &RssConfig,
    symmetric: bool,
) -> Result<Vec<FlowHandle>, String> {
    let queues: Vec<u16> = match &rule.action {
        SteeringAction::Rss(g) => g.reta().map_err(|e| e.to_string())?.entries().to_vec(),
        _ => Vec::new(),
    };
    let mut compiled = compile(rule)?;
    for fr in &mut compiled {
        fr.priority = priority;
        match &rule.action {
            SteeringAction::Queue(q) => {
                fr.action = 0;
                fr.queue = *q;
            }
            SteeringAction::Rss(_) => {
                fr.action = 1;
                fr.n_queues = queues.len() as u16;
                fr.queues = queues.as_ptr();
                fr.rss_types = u32::from(rss.types.bits());
                fr.key = rss.key.as_ptr();
                fr.key_len = rss.key.len() as u8;
                fr.symmetric = u8::from(symmetric);
            }
            SteeringAction::Drop => fr.action = 2,
        }
    }
    for fr in &compiled {
        ffi::flow_validate(port, fr).map_err(|m| format!("rte_flow_validate refused: {m}"))?;
    }
    let mut made = Vec::new();
    for fr in &compiled {
        match ffi::flow_create(port, fr) {
            Ok(h) => made.push(h),
            Err(m) => {
                for h in made {
                    let _ = ffi::flow_destroy(port, h);
                }
                return Err(format!("rte_flow_create failed: {m}"));
            }
        }
    }
    Ok(made)
}

/// The catch-all RSS rule that makes the PMD hash symmetrically (`xor` mode) over `queues`.
pub(crate) fn symmetric_rss(port: u16, queues: &[u16], rss: &RssConfig) -> Result<FlowHandle, String> {
    let fr = FlowRule {
        action: 1,
        n_queues: queues.len() as u16,
        queues: queues.as_ptr(),
        rss_types: u32::from(rss.types.bits()),
        key: rss.key.as_ptr(),
        key_len: rss.key.len() as u8,
        symmetric: 1,
        // Lowest priority the API has room for: steering rules go before it.
        priority: 0xffff,
        ..FlowRule::default()
    };
    ffi::flow_validate(port, &fr)
        .map_err(|m| format!("rte_flow_validate refused the symmetric RSS action: {m}"))?;
    ffi::flow_create(port, &fr)
        .map_err(|m| format!("rte_flow_create of the symmetric RSS action failed: {m}"))
}

/// A rule's match as rte_flow patterns: one, or one per IP version when the rule needs IP
/// fields but does not say which version. `Err` says what rte_flow cannot express.
fn compile(rule: &SteeringRule) -> Result<Vec<FlowRule>, String> {
    let m = &rule.matches;
    if m.non_esp_marker.is_some() {
        return Err("the non-ESP marker is in the UDP payload; no rte_flow item used for it".into());
    }
    let mut base = FlowRule::default();
    let family = |p: Option<&IpAddr>| p.map(|a| if a.is_ipv4() { 4u8 } else { 6u8 });
    let fams: Vec<u8> = [family(m.src.as_ref().map(|p| &p.addr)), family(m.dst.as_ref().map(|p| &p.addr))]
        .into_iter()
        .flatten()
        .collect();
    if fams.len() == 2 && fams[0] != fams[1] {
        return Err("source and destination prefixes of different address families".into());
    }
    let mut version = fams.first().copied().unwrap_or(0);
    match m.ethertype {
        Some(ETHERTYPE_IPV4) if version == 6 => return Err("IPv4 EtherType with IPv6 prefixes".into()),
        Some(ETHERTYPE_IPV6) if version == 4 => return Err("IPv6 EtherType with IPv4 prefixes".into()),
        Some(ETHERTYPE_IPV4) => version = 4,
        Some(ETHERTYPE_IPV6) => version = 6,
        Some(e) => {
            base.has_ethertype = 1;
            base.ethertype = e;
        }
        None => {}
    }
    let needs_ip =
        m.ip_proto.is_some() || m.src.is_some() || m.dst.is_some() || m.dscp.is_some() || m.spi.is_some();
    if base.has_ethertype == 1 && needs_ip {
        return Err(format!("EtherType {:#06x} is not IP but the rule matches IP fields", base.ethertype));
    }
    if let Some(v) = m.vlan {
        base.has_vlan = 1;
        base.vlan = v;
    }
    if let Some(p) = m.ip_proto {
        base.has_proto = 1;
        base.proto = p;
        base.l4 =
            if matches!(p, ip_proto::ICMP | ip_proto::TCP | ip_proto::UDP | ip_proto::ESP | ip_proto::ICMPV6)
            {
                p
            } else {
                0
            };
    }
    let single = |r: &wirespeed_core::rss::PortRange, what: &str| {
        if r.lo == r.hi {
            Ok(r.lo)
        } else {
            Err(format!("{what} range {}-{} (rte_flow ranges are not used)", r.lo, r.hi))
        }
    };
    if m.src_port.is_some() || m.dst_port.is_some() {
        if !matches!(m.ip_proto, Some(ip_proto::TCP | ip_proto::UDP)) {
            return Err("ports without ip_proto TCP or UDP".into());
        }
        if let Some(r) = &m.src_port {
            base.has_sport = 1;
            base.sport = single(r, "source port")?;
        }
        if let Some(r) = &m.dst_port {
            base.has_dport = 1;
            base.dport = single(r, "destination port")?;
        }
    }
    if let Some(spi) = m.spi {
        if m.ip_proto != Some(ip_proto::ESP) {
            return Err("SPI without ip_proto 50 also matches NAT-T (SPI inside UDP)".into());
        }
        base.has_spi = 1;
        base.spi = spi;
    }
    if let Some(r) = &m.icmp_type {
        if !matches!(m.ip_proto, Some(ip_proto::ICMP | ip_proto::ICMPV6)) {
            return Err("ICMP type without ip_proto ICMP or ICMPv6".into());
        }
        base.has_icmp_type = 1;
        base.icmp_type =
            u8::try_from(single(r, "ICMP type")?).map_err(|_| "ICMP type above 255".to_string())?;
    }
    if let Some(d) = m.dscp {
        base.has_dscp = 1;
        base.dscp = d;
    }
    let fill = |fr: &mut FlowRule, v: u8| {
        fr.ip_version = v;
        if let Some(p) = &m.src {
            fr.has_src = 1;
            (fr.src, fr.src_mask) = addr_mask(&p.addr, p.len);
        }
        if let Some(p) = &m.dst {
            fr.has_dst = 1;
            (fr.dst, fr.dst_mask) = addr_mask(&p.addr, p.len);
        }
    };
    if version == 0 && needs_ip {
        let (mut a, mut b) = (base, base);
        fill(&mut a, 4);
        fill(&mut b, 6);
        return Ok(vec![a, b]);
    }
    if version != 0 {
        fill(&mut base, version);
    }
    Ok(vec![base])
}

fn addr_mask(a: &IpAddr, len: u8) -> ([u8; 16], [u8; 16]) {
    let mut addr = [0u8; 16];
    let mut mask = [0u8; 16];
    let bytes: Vec<u8> = match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    addr[..bytes.len()].copy_from_slice(&bytes);
    for i in 0..usize::from(len).min(bytes.len() * 8) {
        mask[i / 8] |= 0x80 >> (i % 8);
    }
    (addr, mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wirespeed_core::rss::{Match, PortRange, RssGroup};

    fn rule(m: Match) -> SteeringRule {
        SteeringRule { name: "t".into(), matches: m, action: SteeringAction::Queue(0) }
    }

    #[test]
    fn compiles_what_rte_flow_can_express_and_says_why_not() {
        let plan = SteeringPlan::management_default(0, RssGroup::first(2), &["192.0.2.1".parse().unwrap()]);
        let placed: Vec<_> = plan.rules.iter().map(|r| (r.name.clone(), compile(r))).collect();
        let arp = &placed[0].1.as_ref().unwrap()[0];
        assert_eq!(
            (arp.has_ethertype, arp.ethertype, arp.ip_version),
            (1, wirespeed_core::wire::ETHERTYPE_ARP, 0)
        );
        // ND matches ICMPv6 types 133..=137: a range.
        assert!(placed[1].1.as_ref().unwrap_err().contains("ICMP type range 133-137"));
        let (_, ike) = placed.iter().find(|(n, _)| n.starts_with("ike@")).unwrap();
        let ike = &ike.as_ref().unwrap()[0];
        assert_eq!((ike.ip_version, ike.l4, ike.dport, ike.has_dst), (4, 17, 500, 1));
        assert_eq!(&ike.dst[..4], &[192, 0, 2, 1]);
        assert_eq!(&ike.dst_mask[..5], &[255, 255, 255, 255, 0]);
        let (_, natt) = placed.iter().find(|(n, _)| n.starts_with("ike-natt")).unwrap();
        assert!(natt.as_ref().unwrap_err().contains("non-ESP marker"));
        // Protocol without address family: one pattern per IP version.
        let both = compile(&rule(Match {
            ip_proto: Some(6),
            dst_port: Some(PortRange::one(22)),
            ..Match::default()
        }))
        .unwrap();
        assert_eq!(both.iter().map(|f| f.ip_version).collect::<Vec<_>>(), vec![4, 6]);
        let esp =
            compile(&rule(Match { ip_proto: Some(50), spi: Some(0x1001), ..Match::default() })).unwrap();
        assert_eq!((esp[0].l4, esp[0].has_spi, esp[0].spi), (50, 1, 0x1001));
        assert!(compile(&rule(Match { spi: Some(1), ..Match::default() })).unwrap_err().contains("NAT-T"));
        let pfx = compile(&rule(Match { src: Some("2001:db8::/33".parse().unwrap()), ..Match::default() }))
            .unwrap();
        assert_eq!(pfx[0].ip_version, 6);
        assert_eq!(&pfx[0].src_mask[..5], &[255, 255, 255, 255, 0x80]);
    }
}
