//! The start-up self-test: the NIC's RSS hash equals wirespeed's software Toeplitz.
//!
//! For every received packet that carries the NIC's hash (`RTE_MBUF_F_RX_RSS_HASH`), the
//! software hash of its tuple under the port's effective configuration
//! ([`crate::HwRss::hasher`]) must be the same number. That is what makes the software
//! dispatcher (and `rss-inspect`, and source-port picking) choose the queue the NIC chooses.

use std::fmt;

use wirespeed_core::PacketBuf;
use wirespeed_core::rss::{FlowTuple, L4, PacketInfo, RssHasher};

use crate::eal::Eal;
use crate::ffi;
use crate::mbuf::Mbuf;

/// Most mismatches kept for the report (all are counted).
pub const MAX_MISMATCHES: usize = 32;

/// One packet whose hardware and software hashes differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashMismatch {
    /// The packet's flow.
    pub tuple: FlowTuple,
    /// The NIC's hash.
    pub hardware: u32,
    /// wirespeed's hash.
    pub software: u32,
}

/// Compares hardware hashes with software ones, packet by packet.
#[derive(Clone, Debug)]
pub struct HashSelfTest {
    hasher: RssHasher,
    report: SelfTestReport,
}

/// The self-test's findings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelfTestReport {
    /// Packets with a hardware hash that were compared.
    pub compared: u64,
    /// Of those, equal.
    pub agreed: u64,
    /// Packets without a hardware hash (the PMD did not deliver one).
    pub no_hw_hash: u64,
    /// Packets with a hardware hash but no tuple the software hashes (not IP, truncated, or a
    /// class outside the configured types).
    pub not_hashable: u64,
    /// Mismatches counted.
    pub mismatched: u64,
    /// The first [`MAX_MISMATCHES`] mismatches.
    pub mismatches: Vec<HashMismatch>,
}

impl SelfTestReport {
    /// True when at least one packet was compared and every compared packet agreed.
    pub fn passed(&self) -> bool {
        self.compared > 0 && self.mismatched == 0
    }
}

impl fmt::Display for SelfTestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "RSS self-test: {} compared, {} agreed, {} mismatched, {} without hardware hash, {} not hashable",
            self.compared, self.agreed, self.mismatched, self.no_hw_hash, self.not_hashable
        )?;
        for m in &self.mismatches {
            writeln!(
                f,
                "  mismatch {} -> {} proto {} {:?}: hardware {:#010x}, software {:#010x}",
                m.tuple.src, m.tuple.dst, m.tuple.proto, m.tuple.l4, m.hardware, m.software
            )?;
        }
        Ok(())
    }
}

impl HashSelfTest {
    /// A self-test against `hasher` (the port's [`crate::HwRss::hasher`]).
    pub fn new(hasher: RssHasher) -> Self {
        Self { hasher, report: SelfTestReport::default() }
    }

    /// Checks one packet.
    pub fn observe(&mut self, pkt: &Mbuf) {
        let r = &mut self.report;
        let Some(hw) = pkt.hw_rss_hash() else {
            r.no_hw_hash += 1;
            return;
        };
        let info = PacketInfo::parse_ethernet(pkt.data());
        let Some(tuple) = info.tuple.filter(|_| !info.fragment) else {
            r.not_hashable += 1;
            return;
        };
        let Some(sw) = self.hasher.hash_tuple(&tuple) else {
            r.not_hashable += 1;
            return;
        };
        r.compared += 1;
        if sw == hw {
            r.agreed += 1;
        } else {
            r.mismatched += 1;
            if r.mismatches.len() < MAX_MISMATCHES {
                r.mismatches.push(HashMismatch { tuple, hardware: hw, software: sw });
            }
        }
    }

    /// Checks every packet of a batch.
    pub fn observe_all<'a>(&mut self, pkts: impl IntoIterator<Item = &'a Mbuf>) {
        for p in pkts {
            self.observe(p);
        }
    }

    /// The findings so far.
    pub fn report(&self) -> &SelfTestReport {
        &self.report
    }
}

/// DPDK's own software Toeplitz (`rte_softrss`) of `tuple` under `key`, built the way DPDK
/// applications build it (`rte_ipv4_tuple` / `rte_ipv6_tuple` in CPU order, ports as
/// `sport << 16 | dport`, the SPI in the `sctp_tag` word). Plain (non-symmetric) hashing;
/// `with_l4 = false` hashes the 2-tuple. `None` without DPDK or across address families.
pub fn rte_softrss(eal: &Eal, tuple: &FlowTuple, with_l4: bool, key: &[u8; 40]) -> Option<u32> {
    let _ = eal;
    if cfg!(wirespeed_dpdk_absent) {
        return None;
    }
    let l4 = if !with_l4 {
        None
    } else {
        match tuple.l4 {
            L4::Ports { sport, dport } => Some(u32::from(sport) << 16 | u32::from(dport)),
            L4::Esp { spi } | L4::UdpEsp { spi, .. } => Some(spi),
            _ => None,
        }
    };
    match (tuple.src, tuple.dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            Some(ffi::softrss_v4(s.into(), d.into(), l4, key))
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            Some(ffi::softrss_v6(&s.octets(), &d.octets(), l4, key))
        }
        _ => None,
    }
}
