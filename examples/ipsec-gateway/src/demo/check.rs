//! The peer checks: what must come out of gateway B's LAN side (every inner packet of every
//! tunnelled flow, byte-identical except for TTL / hop limit and the IPv4 header checksum, in
//! order per flow) and what must be in the ESP capture between the gateways.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use wirespeed_pcap::CaptureReader;

use super::configs;
use super::traffic::{self, Flow};

/// One flow's outcome at B's LAN side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowResult {
    /// Packets that should arrive.
    pub expected: u64,
    /// Packets that arrived and matched the next expected packet.
    pub matched: u64,
    /// Packets of the flow that arrived but differ from the next expected one.
    pub mismatched: u64,
    /// First difference seen, for the report.
    pub first_mismatch: Option<String>,
}

/// Outcome of the check.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Per tunnelled flow, keyed by its description.
    pub flows: BTreeMap<String, FlowResult>,
    /// Frames at B's LAN side that belong to no tunnelled flow.
    pub strays: u64,
}

impl Verdict {
    /// True when every flow arrived complete and identical and nothing else arrived.
    pub fn ok(&self) -> bool {
        self.strays == 0 && self.flows.values().all(|f| f.matched == f.expected && f.mismatched == 0)
    }
}

/// True when the flow crosses the tunnel (routed at A, TTL enough for two hops).
pub fn tunnelled(f: &Flow) -> bool {
    let routed = match f.dst {
        IpAddr::V4(a) => a.octets()[..2] == [10, 2],
        IpAddr::V6(a) => a.segments()[..4] == [0xfd00, 2, 0, 0],
    };
    routed && f.ttl > 2
}

fn describe(f: &Flow) -> String {
    let proto = if f.proto == 6 { "tcp" } else { "udp" };
    match f.src {
        IpAddr::V4(_) => format!("{proto} {}:{} -> {}:{}", f.src, f.sport, f.dst, f.dport),
        IpAddr::V6(_) => format!("{proto} [{}]:{} -> [{}]:{}", f.src, f.sport, f.dst, f.dport),
    }
}

/// The IP packet with TTL / hop limit and the IPv4 header checksum zeroed: what must be
/// identical after two gateways.
fn normalised(ip: &[u8]) -> Vec<u8> {
    let mut v = ip.to_vec();
    match v.first().map(|b| b >> 4) {
        Some(4) if v.len() >= 20 => {
            v[8] = 0;
            v[10] = 0;
            v[11] = 0;
        }
        Some(6) if v.len() >= 40 => v[7] = 0,
        _ => {}
    }
    v
}

/// Flow key of an IP packet: (src, dst, proto, sport, dport).
fn key_of(ip: &[u8]) -> Option<(IpAddr, IpAddr, u8, u16, u16)> {
    let (src, dst, proto, l4) = match ip.first()? >> 4 {
        4 => {
            let ihl = (ip.first()? & 0xf) as usize * 4;
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), *ip.get(9)?, ip.get(ihl..)?)
        }
        6 => {
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), *ip.get(6)?, ip.get(40..)?)
        }
        _ => return None,
    };
    let port = |i: usize| Some(u16::from_be_bytes([*l4.get(i)?, *l4.get(i + 1)?]));
    Some((src, dst, proto, port(0)?, port(2)?))
}

/// Checks B's LAN output capture against the flows.
pub fn lan_output(flows: &[Flow], path: &Path) -> Result<Verdict, String> {
    let mut r = CaptureReader::open(path).map_err(|e| e.to_string())?;
    let frames = std::iter::from_fn(move || r.next_frame().map(|f| f.map(|f| f.data.to_vec())));
    lan_frames(flows, frames.map(|f| f.map_err(|e| e.to_string())))
}

/// Checks frames that left B's LAN side (in order) against the flows.
pub fn lan_frames(
    flows: &[Flow],
    frames: impl Iterator<Item = Result<Vec<u8>, String>>,
) -> Result<Verdict, String> {
    let mut v = Verdict::default();
    let mut by_key = BTreeMap::new();
    for (i, f) in flows.iter().enumerate().filter(|(_, f)| tunnelled(f)) {
        by_key.insert((f.src, f.dst, f.proto, f.sport, f.dport), (i, 0u32));
        v.flows.insert(describe(f), FlowResult { expected: f.packets as u64, ..FlowResult::default() });
    }
    for frame in frames {
        let frame = frame?;
        let d = &frame[..];
        let Some(ip) = d.get(14..) else {
            v.strays += 1;
            continue;
        };
        let Some((fi, seq)) = key_of(ip).and_then(|k| by_key.get_mut(&k)) else {
            v.strays += 1;
            continue;
        };
        let f = &flows[*fi];
        let res = v.flows.get_mut(&describe(f)).ok_or("flow table out of step")?;
        if *seq as usize >= f.packets {
            res.mismatched += 1;
            res.first_mismatch.get_or_insert_with(|| "more packets than were sent".into());
            continue;
        }
        let want = traffic::frame(f, *seq);
        let mac_ok = d[0..6] == configs::B_LAN_ROUTER_MAC && d[6..12] == configs::B_LAN_MAC;
        if normalised(&want[14..]) == normalised(ip) && mac_ok {
            res.matched += 1;
        } else {
            res.mismatched += 1;
            res.first_mismatch.get_or_insert_with(|| {
                if !mac_ok {
                    format!("packet {seq}: Ethernet addresses are not B's LAN MAC -> LAN router")
                } else {
                    let at = want[14..].iter().zip(ip).position(|(a, b)| a != b);
                    format!(
                        "packet {seq}: {} bytes sent, {} arrived, first difference at byte {at:?}",
                        want.len() - 14,
                        ip.len()
                    )
                }
            });
        }
        *seq += 1;
    }
    Ok(v)
}

/// Counts the ESP frames between the gateways and checks each is ESP from A's WAN address to
/// B's; returns the count per SPI.
pub fn esp_capture(path: &Path) -> Result<BTreeMap<u32, u64>, String> {
    let mut per_spi = BTreeMap::new();
    let a: std::net::Ipv4Addr = configs::A_WAN.parse().map_err(|_| "bad literal")?;
    let b: std::net::Ipv4Addr = configs::B_WAN.parse().map_err(|_| "bad literal")?;
    let mut r = CaptureReader::open(path).map_err(|e| e.to_string())?;
    let mut n = 0u64;
    while let Some(frame) = r.next_frame() {
        let d = frame.map_err(|e| e.to_string())?.data;
        let ok = d.len() >= 42
            && d[12..14] == [8, 0]
            && d[23] == 50
            && d[26..30] == a.octets()
            && d[30..34] == b.octets()
            && traffic::checksum(&[&d[14..34]]) == 0;
        if !ok {
            return Err(format!("{}: frame {n} is not ESP from {a} to {b}", path.display()));
        }
        *per_spi.entry(u32::from_be_bytes([d[34], d[35], d[36], d[37]])).or_insert(0) += 1;
        n += 1;
    }
    Ok(per_spi)
}
