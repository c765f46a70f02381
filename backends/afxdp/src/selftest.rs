//! The RSS hash self-test on AF_XDP: the driver's hash (delivered with `rx_hash = true`, see
//! [`crate::AttachReport::rx_hash`]) against wirespeed's software Toeplitz, packet by packet.
//!
//! Equal hashes mean the software dispatcher picks the queue the NIC picks. A NIC hashing with
//! the port's key agrees; a device whose "RSS hash" is something else — veth reports the
//! kernel's software flow hash (`skb_get_hash`, a seeded jhash), not a Toeplitz hash — is
//! reported as mismatching, which is the honest answer: the software cannot predict it.

use std::fmt;

use wirespeed_core::PacketBuf;
use wirespeed_core::meta::flags::HW_RSS;
use wirespeed_core::rss::{FlowTuple, PacketInfo, RssHasher};

/// Most mismatches kept for the report (all are counted).
pub const MAX_MISMATCHES: usize = 32;

/// One packet whose driver and software hashes differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashMismatch {
    /// The packet's flow.
    pub tuple: FlowTuple,
    /// The driver's hash.
    pub hardware: u32,
    /// wirespeed's hash.
    pub software: u32,
}

/// The self-test's findings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelfTestReport {
    /// Packets with a driver hash that were compared.
    pub compared: u64,
    /// Of those, equal.
    pub agreed: u64,
    /// Packets without a driver hash (`rx_hash` off or unavailable, or the driver gave none).
    pub no_hw_hash: u64,
    /// Packets with a driver hash but no tuple the software hashes (not IP, truncated, a
    /// fragment, or a class outside the configured types).
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
        write!(
            f,
            "RSS self-test: {} compared, {} agreed, {} mismatched, {} without driver hash, {} not hashable",
            self.compared, self.agreed, self.mismatched, self.no_hw_hash, self.not_hashable
        )?;
        for m in &self.mismatches {
            write!(
                f,
                "\n  mismatch {} -> {} proto {} {:?}: driver {:#010x}, software {:#010x}",
                m.tuple.src, m.tuple.dst, m.tuple.proto, m.tuple.l4, m.hardware, m.software
            )?;
        }
        Ok(())
    }
}

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

    /// Checks one received packet.
    pub fn observe<B: PacketBuf>(&mut self, pkt: &B) {
        let r = &mut self.report;
        let meta = pkt.meta();
        let Some(hw) = meta.rss_hash.filter(|_| meta.flags & HW_RSS != 0) else {
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

    /// The findings so far.
    pub fn report(&self) -> &SelfTestReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wirespeed_core::rss::RssConfig;
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
