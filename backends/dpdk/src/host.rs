//! The host exception path: traffic of the data port that belongs to the host's own daemons
//! (IKE on UDP 500, IKE on UDP 4500 behind the zero non-ESP marker, …) goes to a kernel
//! interface, and what the kernel sends out of that interface leaves by the data port — both
//! directions, as VPP's linux-cp pairs a physical port with a TAP.
//!
//! ```text
//!   data port rx q ──► DpdkRx q ──► host-bound (plan rule in `rules`)  ──► tap tx q ──► kernel `iface`
//!                              ├─► `copy` rules (ARP, ND): a copy to the tap, the original on
//!                              └─► everything else: the shard's batch, unchanged
//!   kernel `iface` ──► tap rx q ──► DpdkRx q ──► data port tx queue `queues + q` (reserved)
//! ```
//!
//! Which packets are host-bound is compiled from the same [`SteeringPlan`] the NIC's `rte_flow`
//! rules and the software dispatcher are compiled from (and the AF_XDP program): a packet goes to
//! the host when the first plan rule it matches is named in [`HostPathConfig::rules`] (a rule
//! `ike@192.0.2.1` of [`SteeringPlan::management_default`] is named by `ike`). ESP-in-UDP on
//! port 4500 matches no IKE rule (its first payload word is an SPI, not the zero marker) and
//! stays in the data plane, as does plain ESP.
//!
//! The kernel side is a `net_tap` virtual device whose kernel interface is named
//! [`HostPathConfig::iface`] and carries the data port's MAC, so the kernel accepts the frames
//! addressed to the port; give it the port's IP addresses (`ip addr add … dev wan0`) and the IKE
//! daemon's sockets receive on it. Each Rx queue `q` of the data port owns tap queue pair `q`
//! and the data port's Tx queue `queues + q` (the port is configured with twice as many Tx
//! queues as Rx queues), so the exception path shares no queue with a shard's own Tx.
//!
//! Bounded and counted: per receive burst at most one burst goes to the tap and at most one
//! burst comes back; what a full ring refuses is freed and counted ([`HostCounters`]; on the
//! shard, host-bound packets the tap refused are the `host_path_full` drop reason). Nothing
//! blocks and nothing is allocated per packet (copies come from the mempool).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};
use wirespeed_core::rss::{PacketInfo, SteeringPlan, SteeringRule};
use wirespeed_core::{Batch, DropReason, PacketBuf, RxQueue, TxQueue};

use crate::error::DpdkError;
use crate::mbuf::Mbuf;
use crate::mempool::Mempool;
use crate::port::{DpdkRx, DpdkTx};

/// The exception path of one data port (`host = { iface = "wan0" }` in a [`crate::DpdkPortConfig`]).
///
/// ```
/// let cfg: wirespeed_dpdk::DpdkPortConfig = toml::from_str(r#"
///     device = "0000:3b:00.0"
///     host = { iface = "wan0" }
/// "#)?;
/// let host = cfg.host.unwrap();
/// assert_eq!(host.rules, ["ike", "ike-natt"]);
/// assert_eq!(host.copy, ["arp", "ipv6-nd"]);
/// assert_eq!(host.devargs(&[2, 0, 0, 0, 0, 1]), "net_tap_wan0,iface=wan0,mac=02:00:00:00:00:01");
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPathConfig {
    /// Name of the kernel interface (the `net_tap` `iface=`), at most 15 bytes.
    pub iface: String,
    /// Steering-plan rules whose packets go to the kernel only (by name; `ike` also names
    /// `ike@<address>`). Default: `ike`, `ike-natt`.
    #[serde(default = "default_rules")]
    pub rules: Vec<String>,
    /// Steering-plan rules whose packets go to the kernel as a copy and stay in the data plane
    /// too (the kernel needs ARP and Neighbor Discovery answers to reach its peers). Default:
    /// `arp`, `ipv6-nd`. A name given here that the plan does not have is ignored.
    #[serde(default = "default_copy")]
    pub copy: Vec<String>,
    /// Rx and Tx descriptors of each tap queue.
    #[serde(default = "default_desc")]
    pub desc: u16,
    /// Devargs of the exception device instead of the default
    /// `net_tap_<iface>,iface=<iface>,mac=<the data port's MAC>` (e.g. another MAC, or
    /// `persist`); its ethdev name is what precedes the first comma. Any ethdev with a kernel
    /// side could be named here (a `virtio_user` port on `/dev/vhost-net`, say), but only
    /// `net_tap` is tested.
    #[serde(default)]
    pub device_args: Option<String>,
}

fn default_rules() -> Vec<String> {
    vec!["ike".into(), "ike-natt".into()]
}
fn default_copy() -> Vec<String> {
    vec!["arp".into(), "ipv6-nd".into()]
}
fn default_desc() -> u16 {
    512
}

impl HostPathConfig {
    /// A path to the kernel interface `iface` with the default rules.
    pub fn new(iface: impl Into<String>) -> Self {
        Self {
            iface: iface.into(),
            rules: default_rules(),
            copy: default_copy(),
            desc: default_desc(),
            device_args: None,
        }
    }

    /// The exception device's devargs for a data port whose MAC is `mac`.
    pub fn devargs(&self, mac: &[u8; 6]) -> String {
        if let Some(a) = &self.device_args {
            return a.clone();
        }
        let m = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        format!("net_tap_{},iface={},mac={m}", self.iface, self.iface)
    }

    /// The exception device's ethdev name.
    pub fn device(&self) -> String {
        match &self.device_args {
            Some(a) => a.split(',').next().unwrap_or_default().to_string(),
            None => format!("net_tap_{}", self.iface),
        }
    }

    /// Checks the values that need no device.
    pub fn check(&self) -> Result<(), DpdkError> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.iface.is_empty() || self.iface.len() > 15 || !self.iface.chars().all(ok) {
            return Err(DpdkError::bad(
                "host.iface",
                format!("{:?}", self.iface),
                "1 to 15 characters of [A-Za-z0-9._-] (a Linux interface name)",
            ));
        }
        if self.rules.is_empty() {
            return Err(DpdkError::bad(
                "host.rules",
                "[]",
                "at least one steering-plan rule to send to the host",
            ));
        }
        if self.desc == 0 {
            return Err(DpdkError::bad("host.desc", self.desc, "at least one descriptor"));
        }
        if self.device().is_empty() {
            return Err(DpdkError::bad("host.device_args", "\"\"", "an ethdev name before the first comma"));
        }
        Ok(())
    }
}

/// What the exception path does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostAction {
    /// Stays in the data plane.
    Keep,
    /// Goes to the kernel only.
    Host,
    /// A copy goes to the kernel; the packet stays in the data plane.
    Copy,
}

/// The host-bound part of a [`SteeringPlan`]: its rules up to the last one that sends to the
/// kernel, each with its [`HostAction`]. First match wins, as in the plan.
///
/// A prefilter derived from the rules that send to the kernel answers most data packets
/// without parsing them: an untagged frame whose EtherType, IP protocol and (TCP/UDP)
/// destination port no such rule can match is kept at once. Anything it is unsure of (VLAN
/// tags, IPv6 extension headers, IPv4 fragments, short frames, rules without a protocol) takes
/// the full parse and rule walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFilter {
    rules: Vec<(SteeringRule, HostAction)>,
    pre: Prefilter,
}

/// What the rules that send to the kernel can match, in fields at fixed offsets of an untagged
/// frame.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Prefilter {
    /// Some rule may match any frame: always take the full path.
    off: bool,
    /// Non-IP EtherTypes some rule names (ARP).
    ethertypes: Vec<u16>,
    /// Some rule matches any IP packet.
    any_ip: bool,
    /// IP protocols some rule names.
    protos: [bool; 256],
    /// For TCP (index 0) and UDP (1): some rule names the protocol without a destination port.
    any_port: [bool; 2],
    /// For TCP and UDP: the destination port ranges the rules name.
    ports: [Vec<wirespeed_core::rss::PortRange>; 2],
}

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

impl Prefilter {
    fn new<'a>(rules: impl Iterator<Item = &'a SteeringRule>) -> Prefilter {
        let mut p = Prefilter {
            off: false,
            ethertypes: Vec::new(),
            any_ip: false,
            protos: [false; 256],
            any_port: [false; 2],
            ports: [Vec::new(), Vec::new()],
        };
        for r in rules {
            let m = &r.matches;
            match (m.ethertype, m.ip_proto) {
                (Some(e), _) if e != 0x0800 && e != 0x86dd => p.ethertypes.push(e),
                (None, None) => p.off = true,
                (Some(_), None) => p.any_ip = true,
                (_, Some(proto)) => {
                    p.protos[usize::from(proto)] = true;
                    let i = match proto {
                        PROTO_TCP => 0,
                        PROTO_UDP => 1,
                        _ => continue,
                    };
                    match m.dst_port {
                        Some(range) => p.ports[i].push(range),
                        None => p.any_port[i] = true,
                    }
                }
            }
        }
        p
    }

    /// False when no rule that sends to the kernel can match `f`; true when it may.
    #[inline]
    fn may_match(&self, f: &[u8]) -> bool {
        if self.off {
            return true;
        }
        let Some(et) = f.get(12..14) else { return true };
        let (proto, l4) = match u16::from_be_bytes([et[0], et[1]]) {
            0x0800 => {
                let Some(ip) = f.get(14..34) else { return true };
                let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
                if ip[0] >> 4 != 4 || ip[0] & 0x0f < 5 || frag != 0 {
                    return true;
                }
                (ip[9], 14 + usize::from(ip[0] & 0x0f) * 4)
            }
            0x86dd => {
                let Some(&nh) = f.get(20) else { return true };
                // Extension headers (and anything else the parser walks through): full path.
                if matches!(nh, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140 | 253 | 254) {
                    return true;
                }
                (nh, 54)
            }
            0x8100 | 0x88a8 | 0x9100 => return true,
            e => return self.ethertypes.contains(&e),
        };
        if self.any_ip {
            return true;
        }
        if !self.protos[usize::from(proto)] {
            return false;
        }
        let i = match proto {
            PROTO_TCP => 0,
            PROTO_UDP => 1,
            _ => return true,
        };
        if self.any_port[i] {
            return true;
        }
        let Some(d) = f.get(l4 + 2..l4 + 4) else { return true };
        let dport = u16::from_be_bytes([d[0], d[1]]);
        self.ports[i].iter().any(|r| r.contains(dport))
    }
}

fn named(rule: &str, name: &str) -> bool {
    rule == name || rule.strip_prefix(name).is_some_and(|rest| rest.starts_with('@'))
}

impl HostFilter {
    /// Compiles `plan` with `cfg`'s rule names. Every name in [`HostPathConfig::rules`] must
    /// name at least one rule of the plan (a typo would silently keep IKE from the daemon).
    pub fn compile(plan: &SteeringPlan, cfg: &HostPathConfig) -> Result<HostFilter, DpdkError> {
        for n in &cfg.rules {
            if !plan.rules.iter().any(|r| named(&r.name, n)) {
                let have: Vec<&str> = plan.rules.iter().map(|r| r.name.as_str()).collect();
                return Err(DpdkError::bad(
                    "host.rules",
                    n,
                    format!("the steering plan has no such rule (its rules: {})", have.join(", ")),
                ));
            }
        }
        let mut rules: Vec<(SteeringRule, HostAction)> = plan
            .rules
            .iter()
            .map(|r| {
                let a = if cfg.rules.iter().any(|n| named(&r.name, n)) {
                    HostAction::Host
                } else if cfg.copy.iter().any(|n| named(&r.name, n)) {
                    HostAction::Copy
                } else {
                    HostAction::Keep
                };
                (r.clone(), a)
            })
            .collect();
        // Rules after the last host rule cannot change the answer (Keep either way).
        let last = rules.iter().rposition(|(_, a)| *a != HostAction::Keep).map_or(0, |i| i + 1);
        rules.truncate(last);
        let pre = Prefilter::new(rules.iter().filter(|(_, a)| *a != HostAction::Keep).map(|(r, _)| r));
        Ok(HostFilter { rules, pre })
    }

    /// The filter of [`SteeringPlan::management_default`] without own addresses (port-based
    /// rules, any destination): what a port uses until [`crate::DpdkPort::set_host_plan`].
    pub fn default_for(cfg: &HostPathConfig) -> Result<HostFilter, DpdkError> {
        let plan = SteeringPlan::management_default(0, wirespeed_core::rss::RssGroup::first(1), &[]);
        Self::compile(&plan, cfg)
    }

    /// What to do with `frame` (an Ethernet frame). Parses the headers once and walks the rules;
    /// no allocation.
    #[inline]
    pub fn decide(&self, frame: &[u8]) -> HostAction {
        if self.rules.is_empty() || !self.pre.may_match(frame) {
            return HostAction::Keep;
        }
        self.decide_parsed(frame)
    }

    /// [`HostFilter::decide`] without the prefilter: always the full parse and rule walk.
    pub fn decide_parsed(&self, frame: &[u8]) -> HostAction {
        let info = PacketInfo::parse_ethernet(frame);
        self.rules.iter().find(|(r, _)| r.matches.matches(&info)).map_or(HostAction::Keep, |(_, a)| *a)
    }

    /// The rules kept and their actions (first match wins).
    pub fn rules(&self) -> impl Iterator<Item = (&str, HostAction)> {
        self.rules.iter().map(|(r, a)| (r.name.as_str(), *a))
    }
}

/// Counters of a port's exception path (all its queues).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCounters {
    /// Packets handed to the kernel interface (copies included).
    pub to_host: u64,
    /// Their bytes.
    pub to_host_bytes: u64,
    /// Of `to_host`, copies of packets that also stayed in the data plane.
    pub copies: u64,
    /// Host-bound packets the tap's Tx ring refused (dropped; `host_path_full` on the shard).
    pub to_host_full: u64,
    /// Copies not made: the mempool was empty.
    pub copy_no_mbuf: u64,
    /// Packets the kernel sent that left by the data port.
    pub from_host: u64,
    /// Their bytes.
    pub from_host_bytes: u64,
    /// Packets the kernel sent that the data port's Tx ring refused (dropped).
    pub from_host_full: u64,
}

/// A reader of a port's exception-path counters that outlives the port (the queues hold the
/// counters too): for metrics once the port's queues are handed to shards.
#[derive(Clone, Debug)]
pub struct HostCountersHandle {
    pub(crate) stats: Vec<Arc<HostStats>>,
}

impl HostCountersHandle {
    /// The counters summed over the port's queues (relaxed reads: each value is exact, the set
    /// is not a snapshot of one instant).
    pub fn read(&self) -> HostCounters {
        let mut c = HostCounters::default();
        for s in &self.stats {
            s.add_to(&mut c);
        }
        c
    }
}

/// One queue's counters, shared between the queue (writer) and the port (reader).
#[derive(Debug, Default)]
pub(crate) struct HostStats {
    to_host: AtomicU64,
    to_host_bytes: AtomicU64,
    copies: AtomicU64,
    to_host_full: AtomicU64,
    copy_no_mbuf: AtomicU64,
    from_host: AtomicU64,
    from_host_bytes: AtomicU64,
    from_host_full: AtomicU64,
}

impl HostStats {
    pub(crate) fn add_to(&self, c: &mut HostCounters) {
        c.to_host += self.to_host.load(Relaxed);
        c.to_host_bytes += self.to_host_bytes.load(Relaxed);
        c.copies += self.copies.load(Relaxed);
        c.to_host_full += self.to_host_full.load(Relaxed);
        c.copy_no_mbuf += self.copy_no_mbuf.load(Relaxed);
        c.from_host += self.from_host.load(Relaxed);
        c.from_host_bytes += self.from_host_bytes.load(Relaxed);
        c.from_host_full += self.from_host_full.load(Relaxed);
    }
}

/// Name of the drop reason of host-bound packets the tap's Tx ring refused.
pub const HOST_PATH_FULL: &str = "host_path_full";

/// The exception path of one data Rx queue: tap queue pair `q`, the data port's reserved Tx
/// queue, the compiled filter, and two burst-sized staging batches (allocated once, with the
/// queue).
pub(crate) struct HostQueue {
    pub(crate) filter: Arc<HostFilter>,
    pub(crate) tap_rx: DpdkRx,
    pub(crate) tap_tx: DpdkTx,
    /// The data port and its reserved Tx queue for what the kernel sends.
    pub(crate) data_port: u16,
    pub(crate) data_txq: u16,
    pub(crate) pool: Mempool,
    pub(crate) stats: Arc<HostStats>,
    pub(crate) full_reason: DropReason,
    /// Host-bound packets the tap refused, not yet reported through `take_drops`.
    pub(crate) pending_full: u64,
    pub(crate) staged: Batch<Mbuf>,
    pub(crate) to_host: Batch<Mbuf>,
}

impl HostQueue {
    /// Sorts a received burst (`staged`) into `out` (data plane) and the tap (host), in order.
    #[inline]
    pub(crate) fn sort(&mut self, out: &mut Batch<Mbuf>) {
        for p in self.staged.drain(..) {
            match self.filter.decide(p.data()) {
                HostAction::Keep => {
                    let _ = out.push(p);
                }
                HostAction::Host => {
                    if let Err(p) = self.to_host.push(p) {
                        // Cannot happen (the burst is at most a batch), but never lose count.
                        drop(p);
                        self.pending_full += 1;
                        self.stats.to_host_full.fetch_add(1, Relaxed);
                    }
                }
                HostAction::Copy => {
                    match Mbuf::from_bytes(&self.pool, p.data()) {
                        Ok(Some(c)) => {
                            if self.to_host.push(c).is_ok() {
                                self.stats.copies.fetch_add(1, Relaxed);
                            }
                        }
                        _ => {
                            self.stats.copy_no_mbuf.fetch_add(1, Relaxed);
                        }
                    }
                    let _ = out.push(p);
                }
            }
        }
        if !self.to_host.is_empty() {
            let bytes = self.to_host.bytes();
            let n = self.to_host.len();
            let sent = self.tap_tx.tx_burst(&mut self.to_host);
            let left = (n - sent) as u64;
            let left_bytes = self.to_host.bytes();
            self.to_host.clear();
            self.stats.to_host.fetch_add(sent as u64, Relaxed);
            self.stats.to_host_bytes.fetch_add(bytes - left_bytes, Relaxed);
            if left > 0 {
                self.pending_full += left;
                self.stats.to_host_full.fetch_add(left, Relaxed);
            }
        }
    }

    /// Moves one burst the kernel sent out of the tap to the data port's reserved Tx queue.
    #[inline]
    pub(crate) fn forward_from_host(&mut self) -> usize {
        let n = self.tap_rx.rx_burst(&mut self.to_host);
        // Multi-segment frames the tap could not hand over are already freed; count them.
        if let Some((_, c)) = self.tap_rx.take_drops() {
            self.stats.from_host_full.fetch_add(c, Relaxed);
        }
        if n == 0 {
            return 0;
        }
        let bytes = self.to_host.bytes();
        let sent = crate::mbuf::tx_burst(self.data_port, self.data_txq, &mut self.to_host);
        let left_bytes = self.to_host.bytes();
        let left = self.to_host.len() as u64;
        self.to_host.clear();
        self.stats.from_host.fetch_add(sent as u64, Relaxed);
        self.stats.from_host_bytes.fetch_add(bytes - left_bytes, Relaxed);
        if left > 0 {
            self.stats.from_host_full.fetch_add(left, Relaxed);
        }
        n
    }

    pub(crate) fn take_drops(&mut self) -> Option<(DropReason, u64)> {
        if self.pending_full == 0 {
            return None;
        }
        Some((self.full_reason, std::mem::take(&mut self.pending_full)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        let total = (28 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[198, 51, 100, 2, 192, 0, 2, 1]);
        f.extend_from_slice(&4500u16.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn management_plan_sends_ike_to_the_host_and_keeps_esp() {
        let own = ["192.0.2.1".parse().unwrap()];
        let plan = SteeringPlan::management_default(1, wirespeed_core::rss::RssGroup::first(1), &own);
        let f = HostFilter::compile(&plan, &HostPathConfig::new("wan0")).unwrap();
        let ike: Vec<u8> = [0u8; 28].iter().copied().chain([0x21, 0x20, 0x22, 0x08]).collect();
        assert_eq!(f.decide(&udp(500, &ike)), HostAction::Host);
        let mut natt = vec![0, 0, 0, 0];
        natt.extend_from_slice(&ike);
        assert_eq!(f.decide(&udp(4500, &natt)), HostAction::Host, "non-ESP marker");
        assert_eq!(
            f.decide(&udp(4500, &[0, 0, 0x10, 0x01, 0, 0, 0, 1, 9, 9])),
            HostAction::Keep,
            "ESP-in-UDP"
        );
        let mut esp = udp(500, &[0, 0, 0x10, 0x01, 0, 0, 0, 1]);
        esp[23] = 50; // IP protocol ESP
        assert_eq!(f.decide(&esp), HostAction::Keep, "plain ESP");
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(f.decide(&arp), HostAction::Copy);
        // To another address: not the host's.
        let mut other = udp(500, &ike);
        other[33] = 9;
        assert_eq!(f.decide(&other), HostAction::Keep);
        assert_eq!(f.decide(&[]), HostAction::Keep, "a runt is the data plane's to drop");
        // Rules after the last host rule are not kept.
        assert!(f.rules().all(|(n, _)| !n.starts_with("bgp") && !n.starts_with("ssh")));
    }

    /// Frames of every shape the prefilter reads: tags, IPv4 options and fragments, IPv6
    /// extension headers, the management protocols and ports, own and other destinations,
    /// zero and non-zero first payload words, cut at every length.
    fn shapes() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let macs = [2u8, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        for tagged in [false, true] {
            let l2 = |et: u16| {
                let mut f = macs.to_vec();
                if tagged {
                    f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
                }
                f.extend_from_slice(&et.to_be_bytes());
                f
            };
            let mut arp = l2(0x0806);
            arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
            arp.extend_from_slice(&[0; 20]);
            out.push(arp);
            let mut lldp = l2(0x88cc);
            lldp.extend_from_slice(&[0; 40]);
            out.push(lldp);
            for proto in [1u8, 6, 17, 47, 50, 58] {
                for (sport, dport) in
                    [(500, 500), (4500, 4500), (1234, 22), (179, 1234), (1234, 179), (53, 53), (1, 9000)]
                {
                    for word in [[0u8; 4], [0, 0, 0x10, 1]] {
                        for own in [true, false] {
                            let mut l4 = Vec::new();
                            l4.extend_from_slice(&u16::to_be_bytes(sport));
                            l4.extend_from_slice(&u16::to_be_bytes(dport));
                            l4.extend_from_slice(&[0, 16, 0, 0]);
                            l4.extend_from_slice(&word);
                            l4.extend_from_slice(&[9; 24]);
                            for (ihl, frag) in [(5u8, 0u16), (6, 0), (5, 0x2000), (5, 0x0010)] {
                                let mut f = l2(0x0800);
                                let total = (usize::from(ihl) * 4 + l4.len()) as u16;
                                f.extend_from_slice(&[0x40 | ihl, 0]);
                                f.extend_from_slice(&total.to_be_bytes());
                                f.extend_from_slice(&[0, 1]);
                                f.extend_from_slice(&frag.to_be_bytes());
                                f.extend_from_slice(&[64, proto, 0, 0, 198, 51, 100, 2]);
                                f.extend_from_slice(if own { &[192, 0, 2, 1] } else { &[192, 0, 2, 9] });
                                f.extend(std::iter::repeat_n(1u8, usize::from(ihl - 5) * 4));
                                f.extend_from_slice(&l4);
                                out.push(f);
                            }
                            for hop_by_hop in [false, true] {
                                let mut f = l2(0x86dd);
                                let ext = if hop_by_hop { 8 } else { 0 };
                                f.extend_from_slice(&[0x60, 0, 0, 0]);
                                f.extend_from_slice(&((ext + l4.len()) as u16).to_be_bytes());
                                f.extend_from_slice(&[if hop_by_hop { 0 } else { proto }, 64]);
                                f.extend_from_slice(&[
                                    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
                                ]);
                                f.extend_from_slice(&[
                                    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                ]);
                                f.push(if own { 1 } else { 9 });
                                if hop_by_hop {
                                    f.extend_from_slice(&[proto, 0, 1, 4, 0, 0, 0, 0]);
                                }
                                let mut l4 = l4.clone();
                                if proto == 58 {
                                    l4[0] = 135; // Neighbor Solicitation
                                }
                                f.extend_from_slice(&l4);
                                out.push(f);
                            }
                        }
                    }
                }
            }
        }
        let whole = out.clone();
        for f in whole {
            for cut in [0, 6, 13, 14, 20, 30, 34, 36, 38, 40, 42, 46, 54, 56, 58, 62] {
                if cut < f.len() {
                    out.push(f[..cut].to_vec());
                }
            }
        }
        out
    }

    #[test]
    fn the_prefilter_never_changes_a_decision() {
        use wirespeed_core::rss::{Match, PortRange, RssGroup, SteeringAction};
        let own: [std::net::IpAddr; 2] = ["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let mut custom = SteeringPlan::management_default(0, RssGroup::first(1), &own);
        let q = SteeringAction::Queue(0);
        let rule =
            |name: &str, matches: Match| SteeringRule { name: name.into(), matches, action: q.clone() };
        custom.rules.insert(0, rule("tagged", Match { vlan: Some(7), ..Match::default() }));
        custom.rules.push(rule(
            "anything-to-9",
            Match { dst: Some("192.0.2.9/32".parse().unwrap()), ..Match::default() },
        ));
        custom.rules.push(rule("gre", Match { ip_proto: Some(47), ..Match::default() }));
        custom.rules.push(rule(
            "udp-high",
            Match { ip_proto: Some(17), src_port: Some(PortRange { lo: 1, hi: 100 }), ..Match::default() },
        ));
        let with = |rules: &[&str], copy: &[&str]| HostPathConfig {
            rules: rules.iter().map(|s| s.to_string()).collect(),
            copy: copy.iter().map(|s| s.to_string()).collect(),
            ..HostPathConfig::new("wan0")
        };
        let cases = [
            (
                SteeringPlan::management_default(0, RssGroup::first(1), &own),
                with(&["ike", "ike-natt"], &["arp", "ipv6-nd"]),
            ),
            (
                SteeringPlan::management_default(0, RssGroup::first(1), &[]),
                with(&["ike", "ike-natt"], &["arp", "ipv6-nd"]),
            ),
            (
                SteeringPlan::management_default(0, RssGroup::first(1), &own),
                with(&["ike", "ssh", "bgp-reply"], &["icmp", "icmpv6"]),
            ),
            (custom.clone(), with(&["ike-natt", "gre"], &["tagged"])),
            (custom.clone(), with(&["anything-to-9"], &[])),
            (custom, with(&["udp-high", "bgp"], &["arp"])),
        ];
        let frames = shapes();
        assert!(frames.len() > 30_000, "{}", frames.len());
        for (plan, cfg) in cases {
            let f = HostFilter::compile(&plan, &cfg).unwrap();
            let mut seen = [0usize; 3];
            for frame in &frames {
                let (fast, full) = (f.decide(frame), f.decide_parsed(frame));
                assert_eq!(fast, full, "{:?} {:?}: {frame:02x?}", cfg.rules, cfg.copy);
                seen[fast as usize] += 1;
            }
            assert!(seen[1] > 0, "{:?}: some frames go to the host", cfg.rules);
            assert!(seen[0] > 0, "{:?}: some frames stay", cfg.rules);
        }
    }

    #[test]
    fn unknown_rule_names_are_refused_with_the_plans_rules() {
        let plan = SteeringPlan::management_default(0, wirespeed_core::rss::RssGroup::first(1), &[]);
        let cfg = HostPathConfig { rules: vec!["ikev2".into()], ..HostPathConfig::new("wan0") };
        let e = HostFilter::compile(&plan, &cfg).unwrap_err().to_string();
        assert!(e.contains("host.rules") && e.contains("ikev2") && e.contains("ike-natt"), "{e}");
        let cfg = HostPathConfig { iface: "a-name-longer-than-15".into(), ..HostPathConfig::new("x") };
        assert!(cfg.check().is_err());
        assert!(HostPathConfig::new("wan0").check().is_ok());
        assert!(toml::from_str::<HostPathConfig>("iface = \"x\"\nrule = []").is_err(), "unknown field");
    }
}
