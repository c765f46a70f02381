//! Synthetic traffic for the offline demo: several IPv4 and IPv6 flows, TCP and UDP, with valid
//! headers and checksums, interleaved the way a busy link interleaves them.

use std::net::IpAddr;

/// One synthetic flow.
#[derive(Clone, Debug)]
pub struct Flow {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol: 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Payload bytes per packet.
    pub payload: usize,
    /// Packets in the flow.
    pub packets: usize,
    /// IPv4 TTL / IPv6 hop limit of every packet.
    pub ttl: u8,
}

/// MAC of the host that sends the demo traffic.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x10, 0x01];
/// MAC of the gateway's LAN port (gateway A).
pub const GATEWAY_MAC: [u8; 6] = super::configs::A_LAN_MAC;

/// The demo's flow mix: LAN hosts (10.1.0.0/16, fd00:1::/64) talking to remote sites
/// (10.2.0.0/16, fd00:2::/64) over TCP and UDP, with mixed packet sizes; `packets` scales the
/// tunnelled flows so the capture holds about that many packets (default about 700).
pub fn demo_flows(packets: Option<usize>) -> Vec<Flow> {
    let weight = |i: usize| 40 + 10 * (i % 5);
    let total_weight: usize = (0..12).map(weight).sum();
    let per_flow = |i: usize| match packets {
        Some(n) => (n.saturating_sub(8) * weight(i) / total_weight).max(1),
        None => weight(i),
    };
    let mut flows = Vec::new();
    for i in 0..12u16 {
        let v6 = i % 3 == 2;
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            (
                format!("fd00:1::{:x}", 0x10 + i).parse().unwrap_or(IpAddr::from([0u16; 8])),
                format!("fd00:2::{:x}", 0x20 + i).parse().unwrap_or(IpAddr::from([0u16; 8])),
            )
        } else {
            (IpAddr::from([10, 1, 0, 10 + i as u8]), IpAddr::from([10, 2, (i % 4) as u8, 20 + i as u8]))
        };
        flows.push(Flow {
            src,
            dst,
            proto: if i % 2 == 0 { 6 } else { 17 },
            sport: 40_000 + i * 7,
            dport: [443, 53, 8080, 5001][i as usize % 4],
            payload: [64, 512, 1200, 100][i as usize % 4],
            packets: per_flow(i as usize),
            ttl: 64,
        });
    }
    // Two flows the gateway must refuse: a destination it has no route to, and a traceroute-like
    // probe whose TTL runs out here. Their drops show up under their reasons in the counters.
    flows.push(Flow {
        src: IpAddr::from([10, 1, 0, 99]),
        dst: IpAddr::from([198, 51, 100, 7]),
        proto: 17,
        sport: 33_000,
        dport: 9,
        payload: 32,
        packets: 5,
        ttl: 64,
    });
    flows.push(Flow {
        src: IpAddr::from([10, 1, 0, 98]),
        dst: IpAddr::from([10, 2, 3, 4]),
        proto: 17,
        sport: 33_434,
        dport: 33_435,
        payload: 24,
        packets: 3,
        ttl: 1,
    });
    flows
}

/// Writes every packet of `flows`, interleaved round-robin the way a busy link interleaves
/// them, to a capture at `path` (streamed: nothing is held in memory); returns the count.
pub fn write_capture(flows: &[Flow], path: &std::path::Path) -> Result<u64, wirespeed_pcap::PcapError> {
    let mut w = wirespeed_pcap::PcapWriter::create(path)?;
    let longest = flows.iter().map(|f| f.packets).max().unwrap_or(0);
    let mut t = 1_764_000_000_000_000_000u64;
    let mut n = 0;
    for seq in 0..longest {
        for f in flows.iter().filter(|f| seq < f.packets) {
            w.write_frame(&frame(f, seq as u32), t)?;
            t += 1_000;
            n += 1;
        }
    }
    w.flush()?;
    Ok(n)
}

/// Packet `seq` of `flow` as an Ethernet frame.
pub fn frame(flow: &Flow, seq: u32) -> Vec<u8> {
    let l4_len = if flow.proto == 6 { 20 } else { 8 } + flow.payload;
    let mut l4 = vec![0u8; l4_len];
    l4[0..2].copy_from_slice(&flow.sport.to_be_bytes());
    l4[2..4].copy_from_slice(&flow.dport.to_be_bytes());
    let hdr = if flow.proto == 6 {
        l4[4..8]
            .copy_from_slice(&(1000u32.wrapping_add(seq.wrapping_mul(flow.payload as u32))).to_be_bytes());
        l4[12] = 5 << 4;
        l4[13] = 0x18; // PSH|ACK
        l4[14..16].copy_from_slice(&65535u16.to_be_bytes());
        20
    } else {
        l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        8
    };
    for (i, b) in l4[hdr..].iter_mut().enumerate() {
        *b = (i as u32 + seq) as u8;
    }
    let csum_at = if flow.proto == 6 { 16 } else { 6 };
    let mut f = Vec::with_capacity(14 + 40 + l4_len);
    f.extend_from_slice(&GATEWAY_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    match (flow.src, flow.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = flow.ttl;
            ip[9] = flow.proto;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum(&[&ip]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let mut pseudo = [0u8; 12];
            pseudo[0..4].copy_from_slice(&s.octets());
            pseudo[4..8].copy_from_slice(&d.octets());
            pseudo[9] = flow.proto;
            pseudo[10..12].copy_from_slice(&(l4_len as u16).to_be_bytes());
            let c = l4_checksum(&[&pseudo, &l4]);
            l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            ip[6] = flow.proto;
            ip[7] = flow.ttl;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            let mut pseudo = [0u8; 40];
            pseudo[0..16].copy_from_slice(&s.octets());
            pseudo[16..32].copy_from_slice(&d.octets());
            pseudo[32..36].copy_from_slice(&(l4_len as u32).to_be_bytes());
            pseudo[39] = flow.proto;
            let c = l4_checksum(&[&pseudo, &l4]);
            l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        _ => unreachable!("demo flows never mix address families"),
    }
    f.extend_from_slice(&l4);
    f
}

/// RFC 1071 Internet checksum over concatenated parts (each part of even length except the last).
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for p in parts {
        let mut chunks = p.chunks_exact(2);
        for c in &mut chunks {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        if let [last] = chunks.remainder() {
            sum += (*last as u32) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Transport checksum as written into the header (UDP's zero means "none", so send 0xffff).
fn l4_checksum(parts: &[&[u8]]) -> u16 {
    match checksum(parts) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        for f in demo_flows(None) {
            let fr = frame(&f, 3);
            if fr[12..14] == [0x08, 0x00] {
                assert_eq!(checksum(&[&fr[14..34]]), 0, "IPv4 header verifies");
                let mut pseudo = [0u8; 12];
                pseudo[0..8].copy_from_slice(&fr[26..34]);
                pseudo[9] = fr[23];
                let l4 = &fr[34..];
                pseudo[10..12].copy_from_slice(&(l4.len() as u16).to_be_bytes());
                assert_eq!(checksum(&[&pseudo, l4]), 0, "transport checksum verifies");
            } else {
                assert_eq!(fr[12..14], [0x86, 0xdd]);
                let mut pseudo = [0u8; 40];
                pseudo[0..32].copy_from_slice(&fr[22..54]);
                let l4 = &fr[54..];
                pseudo[32..36].copy_from_slice(&(l4.len() as u32).to_be_bytes());
                pseudo[39] = fr[20];
                assert_eq!(checksum(&[&pseudo, l4]), 0, "transport checksum verifies");
            }
        }
    }
}
