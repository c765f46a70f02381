//! TCP MSS clamping (what VPN gateways offer as "MSS clamp"): lowers the Maximum Segment Size
//! option of SYN segments (RFC 9293 §3.7.1) so both ends send segments that fit a tunnel
//! without fragmentation or path MTU discovery, with an RFC 1624 incremental checksum update.
//!
//! An ESP SA clamps its own traffic ([`crate::esp::SaConfig::mss_clamp`]); anywhere else in a
//! pipeline (a plain router, a link with a smaller MTU) the [`MssClamp`] stage does it, after
//! [`crate::Classify`]:
//!
//! ```
//! use wirespeed_core::backend::null::{NullConfig, NullPort};
//! use wirespeed_core::{BufferPool, Pipeline, PoolConfig, Port, ShardCtx};
//! use wirespeed_stages::mss::MssClamp;
//! use wirespeed_stages::{Classify, ClassifyConfig};
//!
//! let pool = BufferPool::new(PoolConfig::default())?;
//! let mut port = NullPort::new(NullConfig { copy: true, ..NullConfig::default() }, pool);
//! let (rx, tx) = port.queue_pair(0)?;
//! let stages = (Classify::new(ClassifyConfig::default()), MssClamp::new(1360));
//! let mut pipeline = Pipeline::new(rx, tx, stages);
//! let mut cx = ShardCtx::new(0);
//! pipeline.run_once(&mut cx);
//! // The null port's frames are UDP: nothing to clamp, all forwarded untouched.
//! let clamp = pipeline.stage::<MssClamp>().expect("in the pipeline");
//! assert_eq!((clamp.mss(), clamp.clamped()), (1360, 0));
//! assert_eq!(cx.counters.tx_packets, 32);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use wirespeed_core::wire::checksum::adjust;
use wirespeed_core::wire::ip_proto;
use wirespeed_core::{Batch, L3Kind, PacketBuf, ShardCtx, Stage};

/// A stage that clamps the MSS option of the TCP SYN segments passing through it to at most
/// [`MssClamp::mss`] bytes ([`clamp`] on every classified IPv4 / IPv6 packet; the rest is left
/// alone). It never drops a packet. Place it after [`crate::Classify`], which fills the
/// metadata it reads, and after [`crate::Forward`] / [`crate::Resolving`] when they send ICMP
/// errors, so that an error quotes the packet as it arrived, not as clamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MssClamp {
    mss: u16,
    clamped: u64,
}

impl MssClamp {
    /// Clamps to `mss` bytes (e.g. the path MTU minus 40 for IPv4, minus 60 for IPv6).
    pub fn new(mss: u16) -> Self {
        Self { mss, clamped: 0 }
    }

    /// The MSS segments are clamped to.
    pub fn mss(&self) -> u16 {
        self.mss
    }

    /// SYN segments whose MSS option was lowered so far.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }
}

impl<B: PacketBuf> Stage<B> for MssClamp {
    #[inline]
    fn process(&mut self, _cx: &mut ShardCtx, batch: &mut Batch<B>) {
        for p in batch.iter_mut() {
            let (kind, l3) = (p.meta().l3, usize::from(p.meta().l3_offset));
            if matches!(kind, L3Kind::Ipv4 | L3Kind::Ipv6)
                && let Some(ip) = p.data_mut().get_mut(l3..)
            {
                self.clamped += u64::from(clamp(ip, self.mss));
            }
        }
    }
}

/// Clamps the MSS option of the TCP SYN in the IP packet `ip` (IPv4, or IPv6 with TCP right
/// after the fixed header) to `mss`; true when it was lowered. Anything else (not TCP, not a
/// SYN, a non-initial fragment, no MSS option, malformed options, an MSS already small enough)
/// is left untouched.
pub fn clamp(ip: &mut [u8], mss: u16) -> bool {
    let (l4, end) = match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let Some(h) = ip.get(..20) else { return false };
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let frag = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
            if h[9] != ip_proto::TCP || frag != 0 || ihl < 20 {
                return false;
            }
            (ihl, usize::from(u16::from_be_bytes([h[2], h[3]])))
        }
        Some(6) => {
            let Some(h) = ip.get(..40) else { return false };
            if h[6] != ip_proto::TCP {
                return false;
            }
            (40, 40 + usize::from(u16::from_be_bytes([h[4], h[5]])))
        }
        _ => return false,
    };
    let Some(tcp) = ip.get_mut(l4..end) else { return false };
    let Some(h) = tcp.get(..20) else { return false };
    let doff = usize::from(h[12] >> 4) * 4;
    if h[13] & 0x02 == 0 || doff < 20 || doff > tcp.len() {
        return false;
    }
    // Walk the options (kind, length, value), RFC 9293 §3.2.
    let mut i = 20;
    while i < doff {
        match tcp[i] {
            0 => return false,
            1 => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1) else { return false };
                let len = usize::from(len);
                if len < 2 || i + len > doff {
                    return false;
                }
                if kind == 2 && len == 4 {
                    let old = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if old <= mss {
                        return false;
                    }
                    tcp[i + 2..i + 4].copy_from_slice(&mss.to_be_bytes());
                    // The checksum sums 16-bit words from the header start: a value at an odd
                    // offset straddles two words, which is the byte-swapped sum (RFC 1071).
                    let (o, n) =
                        if (i + 2) % 2 == 0 { (old, mss) } else { (old.swap_bytes(), mss.swap_bytes()) };
                    let c = u16::from_be_bytes([tcp[16], tcp[17]]);
                    tcp[16..18].copy_from_slice(&adjust(c, o, n).to_be_bytes());
                    return true;
                }
                i += len;
            }
        }
    }
    false
}
