//! Hashing a whole batch of flows at once: the inputs are built into per-length arrays (IPv4
//! 2-tuple / 4-tuple, IPv6 2-tuple / 4-tuple), each array is hashed by one
//! [`Toeplitz::hash_batch`](super::Toeplitz::hash_batch) (carry-less multiplication when the CPU
//! has it), and the hashes are scattered back. Every hash equals [`RssHasher::hash_tuple`]'s.

use std::net::IpAddr;

use super::hash::{FlowTuple, RssHasher, SymmetricMode, Tail, mix, tail};
use crate::batch::BATCH_SIZE;

/// Tuples hashed per round of [`RssHasher::hash_batch`] (longer inputs take several rounds).
pub const HASH_BATCH: usize = BATCH_SIZE;

/// One input length class: inputs and the index of their tuple.
struct Class<const N: usize> {
    inputs: [[u8; N]; HASH_BATCH],
    index: [u8; HASH_BATCH],
    len: usize,
    /// Input `k` belongs to flow `k` for every `k` (the usual one-family batch).
    identity: bool,
}

impl<const N: usize> Class<N> {
    fn new() -> Self {
        Self { inputs: [[0; N]; HASH_BATCH], index: [0; HASH_BATCH], len: 0, identity: true }
    }

    #[inline(always)]
    fn slot(&mut self, i: usize) -> &mut [u8; N] {
        // `len` < HASH_BATCH: `push` refuses a full batch.
        let k = self.len.min(HASH_BATCH - 1);
        self.index[k] = i as u8;
        self.identity &= k == i;
        self.len += 1;
        &mut self.inputs[k]
    }

    /// Hashes the staged inputs into `out[flow]`; returns the bit mask of the flows hashed.
    #[inline(always)]
    fn hash_into(&self, h: &RssHasher, out: &mut [u32; HASH_BATCH]) -> u32 {
        let n = self.len.min(HASH_BATCH);
        if n == 0 {
            return 0;
        }
        if self.identity {
            // Flows 0..n, in order: hash straight into place.
            h.toeplitz().hash_batch(&self.inputs[..n], &mut out[..n]);
            return if n == HASH_BATCH { u32::MAX } else { (1u32 << n) - 1 };
        }
        let mut tmp = [0u32; HASH_BATCH];
        h.toeplitz().hash_batch(&self.inputs[..n], &mut tmp[..n]);
        let mut mask = 0;
        for (&i, &v) in self.index[..n].iter().zip(&tmp[..n]) {
            let i = usize::from(i) % HASH_BATCH;
            out[i] = v;
            mask |= 1 << i;
        }
        mask
    }

    fn clear(&mut self) {
        self.len = 0;
        self.identity = true;
    }
}

/// The Toeplitz inputs of up to [`HASH_BATCH`] flows, grouped by length (about 3.5 KiB; keep
/// one per dispatcher and reuse it, so nothing is zeroed or allocated per batch).
///
/// [`HashBatch::push`] builds a flow's input as the packet is parsed; [`HashBatch::hash_into`]
/// then hashes every group with one batch Toeplitz call.
pub struct HashBatch {
    v4: Class<12>,
    v4_2: Class<8>,
    v6: Class<36>,
    v6_2: Class<32>,
    staged: usize,
}

impl std::fmt::Debug for HashBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashBatch").finish_non_exhaustive()
    }
}

impl Default for HashBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl HashBatch {
    /// Empty.
    pub fn new() -> Self {
        Self { v4: Class::new(), v4_2: Class::new(), v6: Class::new(), v6_2: Class::new(), staged: 0 }
    }

    /// Forgets the staged inputs.
    #[inline]
    pub fn clear(&mut self) {
        self.v4.clear();
        self.v4_2.clear();
        self.v6.clear();
        self.v6_2.clear();
        self.staged = 0;
    }

    /// Inputs staged.
    pub fn len(&self) -> usize {
        self.staged
    }

    /// True when nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stages the input of flow `i` (`i` < [`HASH_BATCH`], each `i` at most once between
    /// clears) under `hasher`'s types and symmetric mode; `false` (nothing staged) when no
    /// enabled hash type applies, the families differ, `i` is out of range or the batch is full.
    // Always inlined: in the dispatcher's loop the hasher's mode and types are then read once
    // per batch, not once per packet behind a call (a profile had the call at ~40 % of
    // `decide_batch`).
    #[inline(always)]
    pub fn push(&mut self, hasher: &RssHasher, i: usize, t: &FlowTuple) -> bool {
        if i >= HASH_BATCH || self.staged >= HASH_BATCH {
            return false;
        }
        let (mode, types) = (hasher.mode(), hasher.types());
        match (&t.src, &t.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let Some(tl) = tail(t, types, false) else { return false };
                // Big-endian words order like the address bytes, so `sort` is a min/max.
                let (a, b) = mix_v4(mode, src.to_bits(), dst.to_bits());
                match tl {
                    Some(x) => {
                        let e = self.v4.slot(i);
                        e[..4].copy_from_slice(&a.to_be_bytes());
                        e[4..8].copy_from_slice(&b.to_be_bytes());
                        e[8..].copy_from_slice(&x.bytes(mode));
                    }
                    None => {
                        let e = self.v4_2.slot(i);
                        e[..4].copy_from_slice(&a.to_be_bytes());
                        e[4..].copy_from_slice(&b.to_be_bytes());
                    }
                }
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let Some(tl) = tail(t, types, true) else { return false };
                let (a, b) = mix(mode, &src.octets(), &dst.octets());
                match tl {
                    Some(x) => {
                        let e = self.v6.slot(i);
                        e[..16].copy_from_slice(&a);
                        e[16..32].copy_from_slice(&b);
                        e[32..].copy_from_slice(&x.bytes(mode));
                    }
                    None => {
                        let e = self.v6_2.slot(i);
                        e[..16].copy_from_slice(&a);
                        e[16..].copy_from_slice(&b);
                    }
                }
            }
            _ => return false,
        }
        self.staged += 1;
        true
    }

    /// Stages flow `i`'s IPv4 4-tuple input (addresses as big-endian words, ports): the bytes
    /// [`HashBatch::push`] builds for a TCP/UDP IPv4 tuple whose 4-tuple hash type is enabled —
    /// the caller checked that. Returns false (nothing staged) when `i` is out of range or the
    /// batch is full.
    #[inline(always)]
    pub(crate) fn push_v4_ports(
        &mut self,
        mode: SymmetricMode,
        i: usize,
        src: u32,
        dst: u32,
        sport: u16,
        dport: u16,
    ) -> bool {
        if i >= HASH_BATCH || self.staged >= HASH_BATCH {
            return false;
        }
        let (a, b) = mix_v4(mode, src, dst);
        let e = self.v4.slot(i);
        e[..4].copy_from_slice(&a.to_be_bytes());
        e[4..8].copy_from_slice(&b.to_be_bytes());
        e[8..].copy_from_slice(&Tail::Ports(sport, dport).bytes(mode));
        self.staged += 1;
        true
    }

    /// Hashes every staged input with one batch Toeplitz call per length group and writes flow
    /// `i`'s hash to `out[i]`; returns the bit mask of the flows hashed (bit `i` set: `out[i]`
    /// is flow `i`'s hash; other entries are left as they are). The inputs stay staged.
    #[inline]
    pub fn hash_into(&self, hasher: &RssHasher, out: &mut [u32; HASH_BATCH]) -> u32 {
        self.v4.hash_into(hasher, out)
            | self.v4_2.hash_into(hasher, out)
            | self.v6.hash_into(hasher, out)
            | self.v6_2.hash_into(hasher, out)
    }
}

/// The two IPv4 address words of the input under `mode` (as [`mix`] on the bytes).
#[inline(always)]
fn mix_v4(mode: SymmetricMode, s: u32, d: u32) -> (u32, u32) {
    match mode {
        SymmetricMode::None | SymmetricMode::Key => (s, d),
        SymmetricMode::Xor => (s ^ d, s ^ d),
        SymmetricMode::OrXor => (s | d, s ^ d),
        SymmetricMode::Sort => (s.min(d), s.max(d)),
    }
}

impl RssHasher {
    /// Hashes every tuple of `tuples` into the same index of `out` (`None` for a missing tuple
    /// or one no enabled hash type applies to) — the values [`RssHasher::hash_tuple`] gives,
    /// computed a batch at a time: inputs are grouped by length and each group is hashed by one
    /// batch Toeplitz call. Tuples past `out.len()` are ignored.
    ///
    /// ```
    /// use wirespeed_core::rss::{FlowTuple, HashBatch, RssConfig, RssHasher, SymmetricMode};
    ///
    /// let h = RssHasher::new(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() })?;
    /// let a = FlowTuple::udp("10.0.0.1".parse()?, "10.0.0.2".parse()?, 1234, 53);
    /// let b = FlowTuple::tcp("2001:db8::1".parse()?, "2001:db8::2".parse()?, 80, 443);
    /// let mut out = [None; 3];
    /// h.hash_batch(&mut HashBatch::new(), [Some(&a), None, Some(&b)], &mut out);
    /// assert_eq!(out, [h.hash_tuple(&a), None, h.hash_tuple(&b)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hash_batch<'a>(
        &self,
        scratch: &mut HashBatch,
        tuples: impl IntoIterator<Item = Option<&'a FlowTuple>>,
        out: &mut [Option<u32>],
    ) {
        let mut base = 0;
        let mut tuples = tuples.into_iter();
        while base < out.len() {
            let end = (base + HASH_BATCH).min(out.len());
            let round = &mut out[base..end];
            let mut taken = 0;
            scratch.clear();
            // `round` first: zip must not pull a tuple it has no output slot for.
            for (i, (o, t)) in round.iter_mut().zip(&mut tuples).enumerate() {
                taken += 1;
                *o = None;
                if let Some(t) = t {
                    scratch.push(self, i, t);
                }
            }
            let mut hashes = [0u32; HASH_BATCH];
            let mask = scratch.hash_into(self, &mut hashes);
            for (i, o) in round.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *o = Some(hashes[i]);
                }
            }
            scratch.clear();
            if taken < end - base {
                break;
            }
            base = end;
        }
    }
}
