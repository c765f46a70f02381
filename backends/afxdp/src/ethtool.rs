//! NIC queue, RSS and flow-steering programming through `ioctl(SIOCETHTOOL)`.
//!
//! Every command is built as a byte buffer laid out as in `include/uapi/linux/ethtool.h` (the
//! offsets are named where they are written). Drivers implement different subsets: a refusal is
//! reported item by item ([`HwItem`]), never treated as fatal, and whatever the NIC cannot do is
//! left to the software dispatcher (`wirespeed_core::rss::Dispatcher`).

use std::io;
use std::net::IpAddr;

use wirespeed_core::rss::{Match, PortRange, Reta, SteeringAction, SteeringPlan, SteeringRule};
use wirespeed_core::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, ip_proto};

use crate::sys;

const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETHTOOL_SRXFH: u32 = 0x2a;
const ETHTOOL_SRXCLSRLDEL: u32 = 0x31;
const ETHTOOL_SRXCLSRLINS: u32 = 0x32;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_GRSSH: u32 = 0x46;
const ETHTOOL_SRSSH: u32 = 0x47;

const TCP_V4_FLOW: u32 = 0x01;
const UDP_V4_FLOW: u32 = 0x02;
const TCP_V6_FLOW: u32 = 0x05;
const UDP_V6_FLOW: u32 = 0x06;
/// `RXH_IP_SRC | RXH_IP_DST | RXH_L4_B_0_1 | RXH_L4_B_2_3`: hash the 4-tuple.
const RXH_4TUPLE: u64 = (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7);
/// `ETH_RSS_HASH_TOP`: Toeplitz.
const HASH_TOEPLITZ: u8 = 1;
/// `RXH_XFRM_SYM_XOR`: hash `src ^ dst` so both directions of a flow land on one queue.
const RXH_XFRM_SYM_XOR: u8 = 1;
const RX_CLS_LOC_ANY: u32 = 0xffff_ffff;
const RX_CLS_FLOW_DISC: u64 = u64::MAX;

/// Channel counts of an interface (`ETHTOOL_GCHANNELS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Channels {
    /// Most receive-only channels.
    pub max_rx: u32,
    /// Most transmit-only channels.
    pub max_tx: u32,
    /// Most combined channels.
    pub max_combined: u32,
    /// Receive-only channels now.
    pub rx: u32,
    /// Transmit-only channels now.
    pub tx: u32,
    /// Combined channels now.
    pub combined: u32,
}

impl Channels {
    /// Receive queues in use (combined + receive-only).
    pub fn rx_queues(&self) -> u32 {
        self.combined + self.rx
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

/// Reads the channel counts of `interface`.
pub fn channels(interface: &str) -> io::Result<Channels> {
    let mut b = [0u8; 36];
    put_u32(&mut b, 0, ETHTOOL_GCHANNELS);
    sys::ethtool(interface, &mut b)?;
    Ok(Channels {
        max_rx: u32_at(&b, 4),
        max_tx: u32_at(&b, 8),
        max_combined: u32_at(&b, 16),
        rx: u32_at(&b, 20),
        tx: u32_at(&b, 24),
        combined: u32_at(&b, 32),
    })
}

/// Where one piece of the port's RSS/steering configuration ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placed {
    /// Programmed into the NIC.
    Hardware,
    /// The NIC refused; the software dispatcher does it. The reason is the driver's answer.
    Software(String),
}

/// One line of a [`HwReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwItem {
    /// What (`rss key`, `rss indirection table`, `symmetric hashing`, `rule ssh`, …).
    pub item: String,
    /// Where it runs.
    pub placed: Placed,
}

/// What of a port's RSS configuration and steering plan runs in the NIC, item by item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HwReport {
    /// One entry per item, in the order applied.
    pub items: Vec<HwItem>,
}

impl HwReport {
    fn push(&mut self, item: impl Into<String>, r: io::Result<()>) {
        let placed = match r {
            Ok(()) => Placed::Hardware,
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                Placed::Software("unsupported by this driver".into())
            }
            Err(e) => Placed::Software(e.to_string()),
        };
        self.items.push(HwItem { item: item.into(), placed });
    }

    /// True when `item` runs in hardware.
    pub fn in_hardware(&self, item: &str) -> bool {
        self.items.iter().any(|i| i.item == item && i.placed == Placed::Hardware)
    }

    /// Items left to software.
    pub fn software_items(&self) -> impl Iterator<Item = &HwItem> {
        self.items.iter().filter(|i| i.placed != Placed::Hardware)
    }
}

impl std::fmt::Display for HwReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for i in &self.items {
            match &i.placed {
                Placed::Hardware => writeln!(f, "{}: hardware", i.item)?,
                Placed::Software(why) => writeln!(f, "{}: software dispatcher ({why})", i.item)?,
            }
        }
        Ok(())
    }
}

/// Sizes of the device's RSS key and indirection table (`ETHTOOL_GRSSH`).
pub fn rss_sizes(interface: &str) -> io::Result<(u32, u32)> {
    let mut b = [0u8; 24];
    put_u32(&mut b, 0, ETHTOOL_GRSSH);
    sys::ethtool(interface, &mut b)?;
    Ok((u32_at(&b, 12), u32_at(&b, 8)))
}

/// Programs key, indirection table and symmetric mode with one `ETHTOOL_SRSSH`
/// (`struct ethtool_rxfh`: cmd, rss_context, indir_size, key_size, hfunc, input_xfrm, then the
/// table as `u32`s and the key bytes).
fn set_rxfh(
    interface: &str,
    key: Option<&[u8]>,
    reta: Option<&Reta>,
    symmetric: Option<bool>,
) -> io::Result<()> {
    let (key_size, indir_size) = rss_sizes(interface)?;
    if let Some(k) = key
        && k.len() != key_size as usize
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("device key is {key_size} bytes, {} given", k.len()),
        ));
    }
    let n_indir = if reta.is_some() { indir_size as usize } else { 0 };
    let n_key = key.map_or(0, <[u8]>::len);
    let mut b = vec![0u8; 24 + 4 * n_indir + n_key];
    put_u32(&mut b, 0, ETHTOOL_SRSSH);
    put_u32(&mut b, 8, n_indir as u32);
    put_u32(&mut b, 12, n_key as u32);
    b[16] = if key.is_some() { HASH_TOEPLITZ } else { 0 };
    b[17] = match symmetric {
        Some(true) => RXH_XFRM_SYM_XOR,
        Some(false) => 0,
        None => 0xff, // RXH_XFRM_NO_CHANGE
    };
    if let Some(r) = reta {
        // The device table may be larger than ours: repeat ours (same hash → same queue as
        // long as the table sizes are powers of two, which both are).
        let ours = r.entries();
        for i in 0..n_indir {
            put_u32(&mut b, 24 + 4 * i, u32::from(ours[i % ours.len()]));
        }
    }
    if let Some(k) = key {
        b[24 + 4 * n_indir..].copy_from_slice(k);
    }
    sys::ethtool(interface, &mut b)
}

/// An offload [`set_offload`] switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offload {
    /// TCP segmentation offload (`tso`). On a veth it also decides whether frames sent from an
    /// AF_XDP socket may take the peer's NAPI path (and so see its backpressure).
    Tso,
    /// Generic receive offload (`gro`). On a veth it gives the device a NAPI context.
    Gro,
}

/// Switches `offload` on or off (the legacy `ETHTOOL_STSO`/`ETHTOOL_SGRO` commands, which the
/// kernel maps to its feature flags), in the calling thread's network namespace.
pub fn set_offload(interface: &str, offload: Offload, on: bool) -> io::Result<()> {
    let cmd = match offload {
        Offload::Tso => ETHTOOL_STSO,
        Offload::Gro => ETHTOOL_SGRO,
    };
    // struct ethtool_value { u32 cmd; u32 data; }
    let mut b = [0u8; 8];
    put_u32(&mut b, 0, cmd);
    put_u32(&mut b, 4, u32::from(on));
    sys::ethtool(interface, &mut b)
}

/// Whether `offload` is on.
pub fn offload(interface: &str, offload: Offload) -> io::Result<bool> {
    let cmd = match offload {
        Offload::Tso => ETHTOOL_GTSO,
        Offload::Gro => ETHTOOL_GGRO,
    };
    let mut b = [0u8; 8];
    put_u32(&mut b, 0, cmd);
    sys::ethtool(interface, &mut b)?;
    Ok(u32_at(&b, 4) != 0)
}

/// Programs the Toeplitz key.
pub fn set_key(interface: &str, key: &[u8]) -> io::Result<()> {
    set_rxfh(interface, Some(key), None, None)
}

/// Programs the indirection table.
pub fn set_reta(interface: &str, reta: &Reta) -> io::Result<()> {
    set_rxfh(interface, None, Some(reta), None)
}

/// Switches symmetric (`src ^ dst`) hashing on or off.
pub fn set_symmetric(interface: &str, on: bool) -> io::Result<()> {
    set_rxfh(interface, None, None, Some(on))
}

/// Hashes the 4-tuple of TCP and UDP over IPv4 and IPv6 (`ETHTOOL_SRXFH`, one per flow type).
pub fn set_hash_4tuple(interface: &str) -> io::Result<()> {
    for flow in [TCP_V4_FLOW, UDP_V4_FLOW, TCP_V6_FLOW, UDP_V6_FLOW] {
        let mut b = [0u8; 192];
        put_u32(&mut b, 0, ETHTOOL_SRXFH);
        put_u32(&mut b, 4, flow);
        b[8..16].copy_from_slice(&RXH_4TUPLE.to_ne_bytes());
        sys::ethtool(interface, &mut b)?;
    }
    Ok(())
}

/// One `struct ethtool_rxnfc` for `ETHTOOL_SRXCLSRLINS`.
type Rxnfc = [u8; 192];

/// The ntuple filters (`struct ethtool_rxnfc` for `ETHTOOL_SRXCLSRLINS`) a rule needs — one per
/// address family it can match: a rule with neither an EtherType nor an address matches TCP or
/// UDP over both IPv4 and IPv6, so it takes two filters — or why the rule has no ntuple form.
/// Layout: cmd@0, flow_type@4, data@8, fs@16 { flow_type@16, h_u@20, h_ext@72, m_u@92 (the
/// masks, laid out as h_u), m_ext@144, ring_cookie@168, location@176 }. `h_u` for IPv4
/// (`ethtool_tcpip4_spec`): ip4src@20, ip4dst@24, psrc@28, pdst@30; for IPv6
/// (`ethtool_tcpip6_spec`): ip6src@20, ip6dst@36, psrc@52, pdst@54.
fn ntuple(rule: &SteeringRule) -> Result<Vec<Rxnfc>, &'static str> {
    let m = &rule.matches;
    let cookie = match &rule.action {
        SteeringAction::Queue(q) => u64::from(*q),
        SteeringAction::Drop => RX_CLS_FLOW_DISC,
        SteeringAction::Rss(_) => return Err("RSS-group actions need RSS contexts, not programmed"),
    };
    let tcp = match m.ip_proto {
        Some(ip_proto::TCP) => true,
        Some(ip_proto::UDP) => false,
        _ => return Err("ntuple rules cover TCP and UDP only"),
    };
    if m.ethertype.is_some_and(|e| e != ETHERTYPE_IPV4 && e != ETHERTYPE_IPV6)
        || m.vlan.is_some()
        || m.spi.is_some()
        || m.icmp_type.is_some()
        || m.non_esp_marker.is_some()
        || m.dscp.is_some()
    {
        return Err("matches fields ntuple filters cannot express");
    }
    let v4_only =
        m.ethertype == Some(ETHERTYPE_IPV4) || [m.src, m.dst].iter().flatten().any(|p| p.addr.is_ipv4());
    let v6_only =
        m.ethertype == Some(ETHERTYPE_IPV6) || [m.src, m.dst].iter().flatten().any(|p| p.addr.is_ipv6());
    if v4_only && v6_only {
        return Err("mixes IPv4 and IPv6");
    }
    let families: &[bool] = match (v4_only, v6_only) {
        (true, _) => &[false],
        (_, true) => &[true],
        _ => &[false, true],
    };
    let mut out = Vec::new();
    for &v6 in families {
        let mut b = [0u8; 192];
        put_u32(&mut b, 0, ETHTOOL_SRXCLSRLINS);
        let flow = match (v6, tcp) {
            (false, true) => TCP_V4_FLOW,
            (false, false) => UDP_V4_FLOW,
            (true, true) => TCP_V6_FLOW,
            (true, false) => UDP_V6_FLOW,
        };
        put_u32(&mut b, 16, flow);
        let (src_off, dst_off, ports_off) = if v6 { (20, 36, 52) } else { (20, 24, 28) };
        for (p, off) in [(m.src, src_off), (m.dst, dst_off)] {
            let Some(p) = p else { continue };
            match p.addr {
                IpAddr::V4(a) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(p.len)).unwrap_or(0);
                    b[off..off + 4].copy_from_slice(&(u32::from(a) & mask).to_be_bytes());
                    b[off + 72..off + 76].copy_from_slice(&mask.to_be_bytes());
                }
                IpAddr::V6(a) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(p.len)).unwrap_or(0);
                    b[off..off + 16].copy_from_slice(&(u128::from(a) & mask).to_be_bytes());
                    b[off + 72..off + 88].copy_from_slice(&mask.to_be_bytes());
                }
            }
        }
        for (r, off) in [(m.src_port, ports_off), (m.dst_port, ports_off + 2)] {
            if let Some(r) = r {
                if r.lo != r.hi {
                    return Err("port ranges have no ntuple form");
                }
                b[off..off + 2].copy_from_slice(&r.lo.to_be_bytes());
                b[off + 72..off + 74].copy_from_slice(&[0xff, 0xff]);
            }
        }
        b[168..176].copy_from_slice(&cookie.to_ne_bytes());
        put_u32(&mut b, 176, RX_CLS_LOC_ANY);
        out.push(b);
    }
    Ok(out)
}

/// Installs every filter of one rule, or none: when one is refused, those already installed are
/// deleted again (`ETHTOOL_SRXCLSRLDEL` at the location the driver chose).
fn install_all(interface: &str, filters: Vec<Rxnfc>) -> io::Result<()> {
    let mut done: Vec<u32> = Vec::new();
    for mut b in filters {
        if let Err(e) = sys::ethtool(interface, &mut b) {
            for loc in done {
                let mut del = [0u8; 192];
                put_u32(&mut del, 0, ETHTOOL_SRXCLSRLDEL);
                put_u32(&mut del, 176, loc);
                let _ = sys::ethtool(interface, &mut del);
            }
            return Err(e);
        }
        done.push(u32_at(&b, 176));
    }
    Ok(())
}

/// True when no packet can match both `a` and `b` (different EtherTypes, IP protocols or port
/// ranges, or a non-IP EtherType against a rule that needs an IP protocol).
fn disjoint(a: &Match, b: &Match) -> bool {
    let differ = |x: Option<u16>, y: Option<u16>| x.zip(y).is_some_and(|(x, y)| x != y);
    let not_ip = |m: &Match| m.ethertype.is_some_and(|e| e != ETHERTYPE_IPV4 && e != ETHERTYPE_IPV6);
    let apart = |x: Option<PortRange>, y: Option<PortRange>| {
        x.zip(y).is_some_and(|(x, y)| x.hi < y.lo || y.hi < x.lo)
    };
    differ(a.ethertype, b.ethertype)
        || apart(a.dst_port, b.dst_port)
        || apart(a.src_port, b.src_port)
        || differ(a.ip_proto.map(u16::from), b.ip_proto.map(u16::from))
        || (not_ip(a) && b.ip_proto.is_some())
        || (not_ip(b) && a.ip_proto.is_some())
}

/// Programs a steering plan's rules as ntuple filters where possible; each rule is reported as
/// hardware or software (a rule needing two filters, IPv4 and IPv6, is all or nothing). The
/// plan is first-match, and the NIC sees packets before the software
/// dispatcher: so a rule is only put in hardware when no earlier software rule could match the
/// same packets.
pub fn apply_plan(interface: &str, plan: &SteeringPlan, report: &mut HwReport) -> (usize, usize) {
    let (mut hw, mut sw) = (0, 0);
    let mut in_software: Vec<&SteeringRule> = Vec::new();
    for r in &plan.rules {
        let name = format!("rule {}", r.name);
        let shadowed = in_software.iter().find(|s| !disjoint(&s.matches, &r.matches));
        let res = match (shadowed, ntuple(r)) {
            (Some(s), _) => {
                Err(io::Error::other(format!("kept behind software rule {} (first match wins)", s.name)))
            }
            (None, Ok(filters)) => install_all(interface, filters),
            (None, Err(why)) => Err(io::Error::other(why)),
        };
        if res.is_ok() {
            hw += 1;
        } else {
            sw += 1;
            in_software.push(r);
        }
        report.push(name, res);
    }
    (hw, sw)
}

/// Applies key, table, symmetric mode and 4-tuple hashing, item by item, into `report`.
pub fn apply_rss(interface: &str, key: &[u8], reta: &Reta, symmetric: bool, report: &mut HwReport) {
    report.push("rss hash fields (4-tuple)", set_hash_4tuple(interface));
    report.push("rss key", set_key(interface, key));
    report.push("rss indirection table", set_reta(interface, reta));
    report.push("symmetric hashing (xor)", set_symmetric(interface, symmetric));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_rule_encodes_as_tcp4_ntuple() {
        let rule = SteeringRule {
            name: "ssh".into(),
            matches: Match {
                ip_proto: Some(6),
                dst: Some("192.0.2.1".parse().unwrap()),
                dst_port: Some(PortRange::one(22)),
                ..Match::default()
            },
            action: SteeringAction::Queue(3),
        };
        let filters = ntuple(&rule).unwrap();
        assert_eq!(filters.len(), 1, "an IPv4 address: one IPv4 filter");
        let b = filters[0];
        assert_eq!(u32_at(&b, 0), ETHTOOL_SRXCLSRLINS);
        assert_eq!(u32_at(&b, 16), TCP_V4_FLOW);
        assert_eq!(&b[24..28], &[192, 0, 2, 1]);
        assert_eq!(&b[96..100], &[0xff; 4], "destination mask");
        assert_eq!(&b[30..32], &[0, 22]);
        assert_eq!(&b[102..104], &[0xff, 0xff]);
        assert_eq!(&b[20..24], &[0; 4], "source not matched");
        assert_eq!(u64::from_ne_bytes(b[168..176].try_into().unwrap()), 3);
        let arp = SteeringRule {
            name: "arp".into(),
            matches: Match { ethertype: Some(wirespeed_core::wire::ETHERTYPE_ARP), ..Match::default() },
            action: SteeringAction::Queue(0),
        };
        assert!(ntuple(&arp).is_err());

        // No address, no EtherType: both families, IPv6 ports at their own offsets.
        let any = SteeringRule {
            name: "ssh-any".into(),
            matches: Match { ip_proto: Some(6), dst_port: Some(PortRange::one(22)), ..Match::default() },
            action: SteeringAction::Queue(1),
        };
        let f = ntuple(&any).unwrap();
        assert_eq!((u32_at(&f[0], 16), u32_at(&f[1], 16)), (TCP_V4_FLOW, TCP_V6_FLOW));
        assert_eq!(&f[1][54..56], &[0, 22]);
        assert_eq!(&f[1][126..128], &[0xff, 0xff]);
        let v6 = SteeringRule {
            name: "ike6".into(),
            matches: Match {
                ip_proto: Some(17),
                dst: Some("2001:db8::/32".parse().unwrap()),
                ..Match::default()
            },
            action: SteeringAction::Drop,
        };
        let f = ntuple(&v6).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(u32_at(&f[0], 16), UDP_V6_FLOW);
        assert_eq!(&f[0][36..40], &[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(&f[0][108..112], &[0xff; 4]);
        assert_eq!(&f[0][112..124], &[0; 12], "a /32 masks the first 32 bits only");
        assert_eq!(u64::from_ne_bytes(f[0][168..176].try_into().unwrap()), RX_CLS_FLOW_DISC);
        assert!(disjoint(&arp.matches, &rule.matches), "ARP never matches a TCP rule");
        let tcp_any = Match { ip_proto: Some(6), ..Match::default() };
        assert!(!disjoint(&tcp_any, &rule.matches));
        let udp = Match { ip_proto: Some(17), ..Match::default() };
        assert!(disjoint(&udp, &rule.matches));
    }
}
