//! The RSS hash self-test on AF_XDP: the driver's hash (delivered with `rx_hash = true`, see
//! [`crate::AttachReport::rx_hash`]) against wirespeed's software Toeplitz, packet by packet.
//!
//! Equal hashes mean the software dispatcher picks the queue the NIC picks. A NIC hashing with
//! the port's key agrees; a device whose "RSS hash" is something else — veth reports the
//! kernel's software flow hash (`skb_get_hash`, a seeded jhash), not a Toeplitz hash — is
//! reported as mismatching, which is the honest answer: the software cannot predict it.

use wirespeed_core::PacketBuf;
use wirespeed_core::meta::flags::HW_RSS;
use wirespeed_core::rss::RssHasher;
// The report and mismatch types live in `wirespeed_core::rss` (shared with the DPDK backend);
// re-exported here so their old paths keep working.
pub use wirespeed_core::rss::{HashMismatch, SelfTestReport};

/// Most mismatches kept for the report (all are counted): [`SelfTestReport::MAX_MISMATCHES`].
pub const MAX_MISMATCHES: usize = SelfTestReport::MAX_MISMATCHES;

/// Compares driver hashes with software ones.
#[derive(Clone, Debug)]
pub struct HashSelfTest {
    hasher: RssHasher,
    report: SelfTestReport,
}

impl HashSelfTest {
    /// A self-test against `hasher` (the port's RSS configuration).
    pub fn new(hasher: RssHasher) -> Self {
        Self { hasher, report: SelfTestReport::default() }
    }

    /// Checks one received packet: its driver hash (`PacketMeta::rss_hash` with the `HW_RSS`
    /// flag) against the software hash of its flow ([`SelfTestReport::record`]).
    pub fn observe<B: PacketBuf>(&mut self, pkt: &B) {
        let meta = pkt.meta();
        let hw = meta.rss_hash.filter(|_| meta.flags & HW_RSS != 0);
        self.report.record(&self.hasher, hw, pkt.data());
    }

    /// The findings so far.
    pub fn report(&self) -> &SelfTestReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wirespeed_core::rss::{PacketInfo, RssConfig};
    use wirespeed_core::{BufferPool, PoolConfig};

    #[test]
    fn agrees_with_a_toeplitz_hash_and_reports_anything_else() {
        let hasher = RssHasher::new(&RssConfig::default()).unwrap();
        let pool = BufferPool::new(PoolConfig { buffers: 4, ..PoolConfig::default() }).unwrap();
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&[0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1]);
        frame.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, 0, 8, 0, 0]);
        let tuple = PacketInfo::parse_ethernet(&frame).tuple.unwrap();
        let toeplitz = hasher.hash_tuple(&tuple).unwrap();
        let mut t = HashSelfTest::new(hasher);
        let mut p = pool.alloc().unwrap();
        p.copy_from(&frame).unwrap();
        t.observe(&p);
        assert_eq!(t.report().no_hw_hash, 1, "no HW_RSS flag: not the driver's");
        p.meta_mut().rss_hash = Some(toeplitz);
        p.meta_mut().flags |= HW_RSS;
        t.observe(&p);
        p.meta_mut().rss_hash = Some(toeplitz ^ 1);
        t.observe(&p);
        let r = t.report();
        assert_eq!((r.compared, r.agreed, r.mismatched), (2, 1, 1));
        assert!(!r.passed());
        assert!(r.to_string().contains("1 mismatched"), "{r}");
    }
}
