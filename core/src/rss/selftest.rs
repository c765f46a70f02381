//! The RSS hash self-test's findings: the hash a NIC's driver delivered with a packet against
//! wirespeed's software Toeplitz of the same packet, under the port's configuration.
//!
//! Equal hashes mean the software dispatcher (and `rss-inspect`, and source-port picking)
//! chooses the queue the NIC chooses. The backends (DPDK, AF_XDP with `rx_hash`) read the
//! driver's hash their own way and hand it, with the frame, to [`SelfTestReport::record`].

use std::fmt;

use super::{FlowTuple, PacketInfo, RssHasher};

/// One packet whose driver and software hashes differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashMismatch {
    /// The packet's flow.
    pub tuple: FlowTuple,
    /// The hash the driver delivered (the NIC's, or whatever the device calls its RSS hash).
    pub hardware: u32,
    /// wirespeed's hash.
    pub software: u32,
}

/// The self-test's findings: what [`SelfTestReport::record`] made of each packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelfTestReport {
    /// Packets with a driver hash that were compared.
    pub compared: u64,
    /// Of those, equal.
    pub agreed: u64,
    /// Packets without a driver hash (the driver or PMD delivered none, or it was not asked to).
    pub no_hw_hash: u64,
    /// Packets with a driver hash but no tuple the software hashes (not IP, truncated, a
    /// fragment, or a class outside the configured types).
    pub not_hashable: u64,
    /// Mismatches counted.
    pub mismatched: u64,
    /// The first [`SelfTestReport::MAX_MISMATCHES`] mismatches.
    pub mismatches: Vec<HashMismatch>,
}

impl SelfTestReport {
    /// Most mismatches kept in [`SelfTestReport::mismatches`] (all are counted).
    pub const MAX_MISMATCHES: usize = 32;

    /// True when at least one packet was compared and every compared packet agreed.
    pub fn passed(&self) -> bool {
        self.compared > 0 && self.mismatched == 0
    }

    /// Compares one received Ethernet `frame`'s driver hash (`hardware`, `None` when the
    /// driver gave none) with `hasher`'s hash of its flow, and counts the outcome.
    ///
    /// A frame without a flow tuple `hasher` hashes (not IP, truncated, a fragment, a class
    /// outside the configured hash types) counts as [`SelfTestReport::not_hashable`]. Up to
    /// [`SelfTestReport::MAX_MISMATCHES`] mismatches are kept; a later one is only counted (no
    /// allocation then).
    pub fn record(&mut self, hasher: &RssHasher, hardware: Option<u32>, frame: &[u8]) {
        let Some(hw) = hardware else {
            self.no_hw_hash += 1;
            return;
        };
        let info = PacketInfo::parse_ethernet(frame);
        let Some(tuple) = info.tuple.filter(|_| !info.fragment) else {
            self.not_hashable += 1;
            return;
        };
        let Some(sw) = hasher.hash_tuple(&tuple) else {
            self.not_hashable += 1;
            return;
        };
        self.compared += 1;
        if sw == hw {
            self.agreed += 1;
        } else {
            self.mismatched += 1;
            if self.mismatches.len() < Self::MAX_MISMATCHES {
                self.mismatches.push(HashMismatch { tuple, hardware: hw, software: sw });
            }
        }
    }
}

impl fmt::Display for SelfTestReport {
    /// One summary line, then one line per kept mismatch (no trailing newline). "Hardware" is
    /// the hash the driver delivered, as in [`HashMismatch::hardware`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RSS self-test: {} compared, {} agreed, {} mismatched, {} without hardware hash, {} not hashable",
            self.compared, self.agreed, self.mismatched, self.no_hw_hash, self.not_hashable
        )?;
        for m in &self.mismatches {
            write!(
                f,
                "\n  mismatch {} -> {} proto {} {:?}: hardware {:#010x}, software {:#010x}",
                m.tuple.src, m.tuple.dst, m.tuple.proto, m.tuple.l4, m.hardware, m.software
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{L4, RssConfig};
    use super::*;

    /// Ethernet + IPv4 (10.0.0.2 -> 10.0.0.1, `flags_frag` as the flags/fragment-offset word)
    /// + UDP 5000 -> 5001.
    fn udp4(flags_frag: [u8; 2]) -> Vec<u8> {
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&[0x45, 0, 0, 28, 0, 1, flags_frag[0], flags_frag[1], 64, 17, 0, 0]);
        frame.extend_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
        frame.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, 0, 8, 0, 0]);
        frame
    }

    #[test]
    fn counts_each_outcome_and_keeps_the_first_mismatches() {
        let hasher = RssHasher::new(&RssConfig::default()).unwrap();
        let frame = udp4([0, 0]);
        let tuple = PacketInfo::parse_ethernet(&frame).tuple.unwrap();
        assert_eq!(tuple.l4, L4::Ports { sport: 5000, dport: 5001 });
        let toeplitz = hasher.hash_tuple(&tuple).unwrap();

        let mut r = SelfTestReport::default();
        assert!(!r.passed(), "nothing compared is not a pass");
        r.record(&hasher, None, &frame);
        assert_eq!(r.no_hw_hash, 1);
        r.record(&hasher, Some(toeplitz), &frame);
        assert_eq!((r.compared, r.agreed, r.mismatched), (1, 1, 0));
        assert!(r.passed());
        // Not IP (an ARP EtherType), truncated, and a fragment: not hashable.
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        r.record(&hasher, Some(toeplitz), &arp);
        r.record(&hasher, Some(toeplitz), &frame[..20]);
        r.record(&hasher, Some(toeplitz), &udp4([0x20, 0])); // more fragments, offset 0
        assert_eq!(r.not_hashable, 3);
        assert_eq!(r.compared, 1);

        for i in 1..=(SelfTestReport::MAX_MISMATCHES as u32 + 3) {
            r.record(&hasher, Some(toeplitz ^ i), &frame);
        }
        let wrong = SelfTestReport::MAX_MISMATCHES as u64 + 3;
        assert_eq!((r.compared, r.agreed, r.mismatched), (1 + wrong, 1, wrong));
        assert!(!r.passed());
        assert_eq!(r.mismatches.len(), SelfTestReport::MAX_MISMATCHES);
        assert_eq!(r.mismatches[0], HashMismatch { tuple, hardware: toeplitz ^ 1, software: toeplitz });

        let text = r.to_string();
        assert!(text.starts_with(&format!(
            "RSS self-test: {} compared, 1 agreed, {wrong} mismatched, 1 without hardware hash, 3 not hashable\n",
            1 + wrong
        )));
        assert_eq!(text.lines().count(), 1 + SelfTestReport::MAX_MISMATCHES);
        assert!(!text.ends_with('\n'));
        assert!(
            text.contains(&format!(
                "  mismatch 10.0.0.2 -> 10.0.0.1 proto 17 {:?}: hardware {:#010x}, software {toeplitz:#010x}",
                tuple.l4,
                toeplitz ^ 1
            )),
            "{text}"
        );
    }
}
