//! The steering plan: ordered match rules → action, plus the default RSS group.
//!
//! A plan is data (serde-able; TOML in the gateway's configuration). Backends compile it to what
//! their hardware has — DPDK `rte_flow`, ethtool ntuple rules and RSS contexts — and
//! [`super::dispatch::SteeringEngine`] compiles it to the software dispatcher, which must choose
//! the same queue for every packet. The first rule that matches decides; a packet no rule
//! matches is hashed into the default group.

use std::net::IpAddr;

use super::RssError;
use super::hash::{L4, proto};
use super::parse::PacketInfo;
use super::reta::{MAX_RETA_SIZE, Reta};
use crate::wire::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::wire::{IKE_PORT, NAT_T_PORT};

use crate::wire::IpPrefix;

/// An inclusive range of port numbers (or ICMP types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PortRange {
    /// Lowest value.
    pub lo: u16,
    /// Highest value.
    pub hi: u16,
}

impl PortRange {
    /// A single value.
    pub const fn one(v: u16) -> Self {
        Self { lo: v, hi: v }
    }

    /// True when `v` is inside.
    pub const fn contains(&self, v: u16) -> bool {
        self.lo <= v && v <= self.hi
    }
}

/// What a rule matches. Every field given must match; fields left `None` match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Match {
    /// EtherType after VLAN tags (0x0806 ARP, 0x0800 IPv4, 0x86dd IPv6).
    pub ethertype: Option<u16>,
    /// IP protocol / IPv6 next header of the transport header.
    pub ip_proto: Option<u8>,
    /// Source prefix.
    pub src: Option<IpPrefix>,
    /// Destination prefix.
    pub dst: Option<IpPrefix>,
    /// TCP/UDP source port (packets without ports do not match).
    pub src_port: Option<PortRange>,
    /// TCP/UDP destination port.
    pub dst_port: Option<PortRange>,
    /// DSCP.
    pub dscp: Option<u8>,
    /// Outermost VLAN ID (untagged packets do not match).
    pub vlan: Option<u16>,
    /// ESP SPI (ESP or ESP-in-UDP).
    pub spi: Option<u32>,
    /// ICMP / ICMPv6 type range.
    pub icmp_type: Option<PortRange>,
    /// UDP 4500 carrying IKE (the zero non-ESP marker) rather than ESP.
    pub non_esp_marker: Option<bool>,
}

impl Match {
    /// True when `p` matches every field given.
    pub fn matches(&self, p: &PacketInfo) -> bool {
        let t = p.tuple.as_ref();
        let ports = t.and_then(|t| t.ports());
        let opt = |want: Option<bool>, have: bool| want.is_none_or(|w| w == have);
        self.ethertype.is_none_or(|e| e == p.ethertype)
            && self.ip_proto.is_none_or(|pr| t.is_some_and(|t| t.proto == pr))
            && self.src.is_none_or(|pf| t.is_some_and(|t| pf.contains(&t.src)))
            && self.dst.is_none_or(|pf| t.is_some_and(|t| pf.contains(&t.dst)))
            && self.src_port.is_none_or(|r| ports.is_some_and(|(s, _)| r.contains(s)))
            && self.dst_port.is_none_or(|r| ports.is_some_and(|(_, d)| r.contains(d)))
            && self.dscp.is_none_or(|d| t.is_some() && p.dscp == d)
            && self.vlan.is_none_or(|v| p.vlan == Some(v))
            && self.spi.is_none_or(|s| t.and_then(|t| t.spi()) == Some(s))
            && self.icmp_type.is_none_or(|r| {
                t.is_some_and(|t| matches!(t.l4, L4::Icmp { ty, .. } if r.contains(u16::from(ty))))
            })
            && opt(self.non_esp_marker, p.non_esp_marker)
    }
}

/// A set of queues that share traffic by RSS: RETA of `reta_size` entries, round-robin over
/// `queues`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RssGroup {
    /// Queues of the group.
    pub queues: Vec<u16>,
    /// RETA size (power of two, ≤ 512); 128 by default.
    #[cfg_attr(feature = "serde", serde(default = "default_reta_size"))]
    pub reta_size: usize,
}

#[cfg(feature = "serde")]
fn default_reta_size() -> usize {
    128
}

impl RssGroup {
    /// A group over `queues` with a 128-entry RETA.
    pub fn new(queues: Vec<u16>) -> Self {
        Self { queues, reta_size: 128 }
    }

    /// Queues `0..n`.
    pub fn first(n: u16) -> Self {
        Self::new((0..n).collect())
    }

    /// The group's initial RETA (round-robin over its queues).
    pub fn reta(&self) -> Result<Reta, RssError> {
        Reta::over_queues(self.reta_size, &self.queues)
    }
}

/// What a matching rule does.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum SteeringAction {
    /// Deliver to one queue.
    Queue(u16),
    /// Spread over a group by RSS.
    Rss(RssGroup),
    /// Drop (counted as [`crate::DropReason::SteeringDrop`]).
    Drop,
}

/// One rule: a name (for logs and counters), a match and an action.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SteeringRule {
    /// Name.
    pub name: String,
    /// What it matches.
    #[cfg_attr(feature = "serde", serde(rename = "match", default))]
    pub matches: Match,
    /// What it does.
    pub action: SteeringAction,
}

/// Ordered rules and the default RSS group.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SteeringPlan {
    /// Rules, first match wins.
    #[cfg_attr(feature = "serde", serde(default))]
    pub rules: Vec<SteeringRule>,
    /// Where everything else goes.
    pub default: RssGroup,
}

/// What a backend could program of a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Rules programmed into the device.
    pub in_hardware: usize,
    /// Rules the device could not take, left to the software dispatcher.
    pub in_software: usize,
}

impl SteeringPlan {
    /// Everything into one RSS group, no rules.
    pub fn rss_only(default: RssGroup) -> Self {
        Self { rules: Vec::new(), default }
    }

    /// The default appliance plan: management and control traffic to `mgmt_queue`, everything
    /// else spread over `data` by RSS.
    ///
    /// Management/control means: ARP; IPv6 neighbor discovery (ICMPv6 133–137); ICMP/ICMPv6,
    /// SSH (TCP 22), BGP (TCP 179 either side), IKE (UDP 500) and IKE on UDP 4500 (the zero
    /// non-ESP marker) addressed to one of `own` addresses. With no `own` addresses given, the
    /// port-based rules match any destination.
    pub fn management_default(mgmt_queue: u16, data: RssGroup, own: &[IpAddr]) -> Self {
        let to_mgmt = SteeringAction::Queue(mgmt_queue);
        let mut rules = vec![
            SteeringRule {
                name: "arp".into(),
                matches: Match { ethertype: Some(ETHERTYPE_ARP), ..Match::default() },
                action: to_mgmt.clone(),
            },
            SteeringRule {
                name: "ipv6-nd".into(),
                matches: Match {
                    ethertype: Some(ETHERTYPE_IPV6),
                    ip_proto: Some(proto::ICMPV6),
                    icmp_type: Some(PortRange { lo: 133, hi: 137 }),
                    ..Match::default()
                },
                action: to_mgmt.clone(),
            },
        ];
        let dsts: Vec<Option<IpPrefix>> =
            if own.is_empty() { vec![None] } else { own.iter().map(|a| Some(IpPrefix::host(*a))).collect() };
        for dst in dsts {
            let suffix = dst.map(|d| format!("@{}", d.addr)).unwrap_or_default();
            let m = |ethertype: Option<u16>, ip_proto: u8| Match {
                ethertype,
                ip_proto: Some(ip_proto),
                dst,
                ..Match::default()
            };
            let mut add = |name: &str, matches: Match| {
                rules.push(SteeringRule { name: format!("{name}{suffix}"), matches, action: to_mgmt.clone() })
            };
            match dst.map(|d| d.addr) {
                Some(IpAddr::V4(_)) => add("icmp", m(Some(ETHERTYPE_IPV4), proto::ICMP)),
                Some(IpAddr::V6(_)) => add("icmpv6", m(Some(ETHERTYPE_IPV6), proto::ICMPV6)),
                None => {}
            }
            add("ike", Match { dst_port: Some(PortRange::one(IKE_PORT)), ..m(None, proto::UDP) });
            add(
                "ike-natt",
                Match {
                    dst_port: Some(PortRange::one(NAT_T_PORT)),
                    non_esp_marker: Some(true),
                    ..m(None, proto::UDP)
                },
            );
            add("ssh", Match { dst_port: Some(PortRange::one(22)), ..m(None, proto::TCP) });
            add("bgp", Match { dst_port: Some(PortRange::one(179)), ..m(None, proto::TCP) });
            add("bgp-reply", Match { src_port: Some(PortRange::one(179)), ..m(None, proto::TCP) });
        }
        Self { rules, default: data }
    }

    /// Checks every queue is below `queues` and every group is usable.
    pub fn validate(&self, queues: u16) -> Result<(), RssError> {
        let check_q = |q: u16, index: usize| {
            if q >= queues { Err(RssError::QueueOutOfRange { index, queue: q, queues }) } else { Ok(()) }
        };
        let check_group = |g: &RssGroup, index: usize| -> Result<(), RssError> {
            if g.queues.is_empty() {
                return Err(RssError::BadConfig(format!("rule {index}: RSS group has no queues")));
            }
            if g.reta_size == 0 || !g.reta_size.is_power_of_two() || g.reta_size > MAX_RETA_SIZE {
                return Err(RssError::BadRetaSize { size: g.reta_size, max: MAX_RETA_SIZE });
            }
            g.queues.iter().try_for_each(|q| check_q(*q, index))
        };
        for (i, r) in self.rules.iter().enumerate() {
            match &r.action {
                SteeringAction::Queue(q) => check_q(*q, i)?,
                SteeringAction::Rss(g) => check_group(g, i)?,
                SteeringAction::Drop => {}
            }
        }
        check_group(&self.default, self.rules.len())
    }

    /// Index of the first rule matching `p`.
    pub fn first_match(&self, p: &PacketInfo) -> Option<usize> {
        self.rules.iter().position(|r| r.matches.matches(p))
    }
}
