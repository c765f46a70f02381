//! Hashing a whole batch of flows at once: the inputs are built into per-length arrays (IPv4
//! 2-tuple / 4-tuple, IPv6 2-tuple / 4-tuple), each array is hashed by one
//! [`Toeplitz::hash_batch`](super::Toeplitz::hash_batch) (carry-less multiplication when the CPU
//! has it), and the hashes are scattered back. Every hash equals [`RssHasher::hash_tuple`]'s.

use std::net::IpAddr;

use super::hash::{FlowTuple, RssHasher, mix, tail};
use crate::batch::BATCH_SIZE;

/// Tuples hashed per round of [`RssHasher::hash_batch`] (longer inputs take several rounds).
pub const HASH_BATCH: usize = BATCH_SIZE;

/// One input length class: inputs and the index of their tuple.
struct Class<const N: usize> {
    inputs: [[u8; N]; HASH_BATCH],
    index: [u8; HASH_BATCH],
    len: usize,
}

impl<const N: usize> Class<N> {
    fn new() -> Self {
        Self { inputs: [[0; N]; HASH_BATCH], index: [0; HASH_BATCH], len: 0 }
    }

    #[inline(always)]
    fn slot(&mut self, i: usize) -> &mut [u8; N] {
        // `len` < HASH_BATCH: at most one input per tuple, at most HASH_BATCH tuples per round.
        let k = self.len.min(HASH_BATCH - 1);
        self.index[k] = i as u8;
        self.len += 1;
        &mut self.inputs[k]
    }

    #[inline(always)]
    fn hash(&mut self, h: &RssHasher, scratch: &mut [u32; HASH_BATCH], out: &mut [Option<u32>]) {
        if self.len == 0 {
            return;
        }
        let n = self.len;
        h.toeplitz().hash_batch(&self.inputs[..n], &mut scratch[..n]);
        for (&i, &v) in self.index[..n].iter().zip(&scratch[..n]) {
            if let Some(o) = out.get_mut(usize::from(i)) {
                *o = Some(v);
            }
        }
        self.len = 0;
    }
}

/// Reusable scratch of [`RssHasher::hash_batch`] (about 3.5 KiB): keep one per dispatcher, so
/// a batch is hashed without zeroing or allocating anything.
pub struct HashScratch {
    v4: Class<12>,
    v4_2: Class<8>,
    v6: Class<36>,
    v6_2: Class<32>,
    out: [u32; HASH_BATCH],
}

impl std::fmt::Debug for HashScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashScratch").finish_non_exhaustive()
    }
}

impl Default for HashScratch {
    fn default() -> Self {
        Self::new()
    }
}

impl HashScratch {
    /// Empty scratch.
    pub fn new() -> Self {
        Self {
            v4: Class::new(),
            v4_2: Class::new(),
            v6: Class::new(),
            v6_2: Class::new(),
            out: [0; HASH_BATCH],
        }
    }
}

impl RssHasher {
    /// Hashes every tuple of `tuples` into the same index of `out` (`None` for a missing tuple
    /// or one no enabled hash type applies to) — the values [`RssHasher::hash_tuple`] gives,
    /// computed a batch at a time: inputs are grouped by length and each group is hashed by one
    /// batch Toeplitz call. Tuples past `out.len()` are ignored.
    ///
    /// ```
    /// use wirespeed_core::rss::{FlowTuple, HashScratch, RssConfig, RssHasher, SymmetricMode};
    ///
    /// let h = RssHasher::new(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() })?;
    /// let a = FlowTuple::udp("10.0.0.1".parse()?, "10.0.0.2".parse()?, 1234, 53);
    /// let b = FlowTuple::tcp("2001:db8::1".parse()?, "2001:db8::2".parse()?, 80, 443);
    /// let mut out = [None; 3];
    /// h.hash_batch(&mut HashScratch::new(), [Some(&a), None, Some(&b)], &mut out);
    /// assert_eq!(out, [h.hash_tuple(&a), None, h.hash_tuple(&b)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hash_batch<'a>(
        &self,
        scratch: &mut HashScratch,
        tuples: impl IntoIterator<Item = Option<&'a FlowTuple>>,
        out: &mut [Option<u32>],
    ) {
        let mut base = 0;
        let mut tuples = tuples.into_iter();
        while base < out.len() {
            let end = (base + HASH_BATCH).min(out.len());
            let round = &mut out[base..end];
            let mut taken = 0;
            // `round` first: zip must not pull a tuple it has no output slot for.
            for (i, (o, t)) in round.iter_mut().zip(&mut tuples).enumerate() {
                taken += 1;
                *o = None;
                let Some(t) = t else { continue };
                self.stage(scratch, i, t);
            }
            let HashScratch { v4, v4_2, v6, v6_2, out: tmp } = scratch;
            v4.hash(self, tmp, round);
            v4_2.hash(self, tmp, round);
            v6.hash(self, tmp, round);
            v6_2.hash(self, tmp, round);
            if taken < end - base {
                break;
            }
            base = end;
        }
    }

    /// Builds tuple `i`'s input into its length class (nothing when it has no hash).
    #[inline(always)]
    fn stage(&self, s: &mut HashScratch, i: usize, t: &FlowTuple) {
        let (mode, types) = (self.mode(), self.types());
        match (t.src, t.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let Some(tl) = tail(t, types, false) else { return };
                let (a, b) = mix(mode, &src.octets(), &dst.octets());
                match tl {
                    Some(x) => {
                        let e = s.v4.slot(i);
                        e[..4].copy_from_slice(&a);
                        e[4..8].copy_from_slice(&b);
                        e[8..].copy_from_slice(&x.bytes(mode));
                    }
                    None => {
                        let e = s.v4_2.slot(i);
                        e[..4].copy_from_slice(&a);
                        e[4..].copy_from_slice(&b);
                    }
                }
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let Some(tl) = tail(t, types, true) else { return };
                let (a, b) = mix(mode, &src.octets(), &dst.octets());
                match tl {
                    Some(x) => {
                        let e = s.v6.slot(i);
                        e[..16].copy_from_slice(&a);
                        e[16..32].copy_from_slice(&b);
                        e[32..].copy_from_slice(&x.bytes(mode));
                    }
                    None => {
                        let e = s.v6_2.slot(i);
                        e[..16].copy_from_slice(&a);
                        e[16..].copy_from_slice(&b);
                    }
                }
            }
            _ => {}
        }
    }
}
