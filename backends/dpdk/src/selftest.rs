//! The start-up self-test: the NIC's RSS hash equals wirespeed's software Toeplitz.
//!
//! For every received packet that carries the NIC's hash (`RTE_MBUF_F_RX_RSS_HASH`), the
//! software hash of its tuple under the port's effective configuration
//! ([`crate::HwRss::hasher`]) must be the same number. That is what makes the software
//! dispatcher (and `rss-inspect`, and source-port picking) choose the queue the NIC chooses.

use wirespeed_core::PacketBuf;
use wirespeed_core::rss::{FlowTuple, L4, RssHasher};
// The report and mismatch types live in `wirespeed_core::rss` (shared with the AF_XDP backend);
// re-exported here so their old paths keep working.
pub use wirespeed_core::rss::{HashMismatch, SelfTestReport};

use crate::eal::Eal;
use crate::ffi;
use crate::mbuf::Mbuf;

/// Most mismatches kept for the report (all are counted): [`SelfTestReport::MAX_MISMATCHES`].
pub const MAX_MISMATCHES: usize = SelfTestReport::MAX_MISMATCHES;

/// Compares hardware hashes with software ones, packet by packet.
#[derive(Clone, Debug)]
pub struct HashSelfTest {
    hasher: RssHasher,
    report: SelfTestReport,
}

impl HashSelfTest {
    /// A self-test against `hasher` (the port's [`crate::HwRss::hasher`]).
    pub fn new(hasher: RssHasher) -> Self {
        Self { hasher, report: SelfTestReport::default() }
    }

    /// Checks one packet: the NIC's hash in the mbuf ([`Mbuf::hw_rss_hash`]) against the
    /// software hash of its flow ([`SelfTestReport::record`]).
    pub fn observe(&mut self, pkt: &Mbuf) {
        self.report.record(&self.hasher, pkt.hw_rss_hash(), pkt.data());
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
