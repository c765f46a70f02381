//! The Toeplitz hash of Microsoft RSS, three ways that must agree bit for bit:
//!
//! * [`toeplitz_reference`]: bit-serial, straight from the definition — for each set bit *i* of
//!   the input (most significant first) XOR the 32-bit window of the key that starts at bit *i*.
//!   Slow and obviously right; tests compare everything else to it.
//! * [`Toeplitz`]: table-driven. The hash is linear over GF(2), so the contribution of input byte
//!   *p* with value *v* is a fixed 32-bit word; a 256-entry table per byte position (built once per
//!   key) turns a 12-byte IPv4 4-tuple into 12 loads and 11 XORs. Inputs are fixed-size arrays,
//!   so the bounds checks vanish and the loop unrolls.
//! * [`Toeplitz::hash_batch`]: many inputs at once, interleaved so independent hashes overlap in
//!   the pipeline; on x86-64 with PCLMULQDQ it uses carry-less multiplication instead
//!   (`super::clmul`, chosen at run time), with the table path as the portable fallback.
//!
//! Bits of the key beyond its end count as zero, so every function is total; configuration
//! ([`super::RssConfig`]) refuses keys shorter than the longest input plus 4 bytes, which is when
//! the result equals what a NIC computes.

/// The Microsoft RSS verification key ("Verifying the RSS Hash Calculation", Windows driver
/// documentation), the default key of most NICs.
pub const MS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0,
    0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42,
    0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The symmetric key of Woo & Park: `6d5a` repeated. With it the hash is 16-bit periodic, so
/// swapping source and destination (address and port fields both 16-bit aligned) gives the
/// same hash.
pub const SYMMETRIC_KEY: [u8; 40] = {
    let mut k = [0u8; 40];
    let mut i = 0;
    while i < 40 {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// Longest hash input: IPv6 4-tuple, `src(16) ‖ dst(16) ‖ sport(2) ‖ dport(2)`.
pub(crate) const MAX_INPUT: usize = 36;

/// Bit-serial Toeplitz hash of `input` under `key` (bits past the key's end are zero).
///
/// This is the reference every faster path is tested against.
pub fn toeplitz_reference(key: &[u8], input: &[u8]) -> u32 {
    let key_bit = |i: usize| -> u32 {
        match key.get(i / 8) {
            Some(b) => u32::from((b >> (7 - i % 8)) & 1),
            None => 0,
        }
    };
    // Initial window: key bits 0..32.
    let mut window: u32 = 0;
    for i in 0..32 {
        window = (window << 1) | key_bit(i);
    }
    let mut hash = 0u32;
    for (byte_idx, byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            // Slide the window one bit: drop the top key bit, take the next one.
            window = (window << 1) | key_bit(byte_idx * 8 + bit + 32);
        }
    }
    hash
}

/// The 32-bit key window starting at bit `bit` (key zero-extended).
fn key_window(key: &[u8], bit: usize) -> u32 {
    let mut w = 0u64;
    // 40 bits cover the window at any bit offset within the first byte.
    let first = bit / 8;
    for j in 0..5 {
        w = (w << 8) | u64::from(key.get(first + j).copied().unwrap_or(0));
    }
    (w >> (8 - bit % 8)) as u32
}

/// A Toeplitz hasher for one key: per-byte-position tables of partial hashes.
///
/// 36 positions × 256 entries × 4 bytes = 36 KiB, built once when the key is set. Cloning copies
/// the tables (control path only).
#[derive(Clone)]
pub struct Toeplitz {
    tables: Box<[[u32; 256]; MAX_INPUT]>,
    key: Vec<u8>,
    /// Bit-reversed-domain key words for the carry-less-multiply path (see `super::clmul`).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) clmul_key: [u64; MAX_INPUT / 4],
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    use_clmul: bool,
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz").field("key_len", &self.key.len()).finish_non_exhaustive()
    }
}

impl Toeplitz {
    /// Builds the tables for `key` (any length; bits past its end count as zero).
    pub fn new(key: &[u8]) -> Self {
        let mut tables: Box<[[u32; 256]; MAX_INPUT]> = Box::new([[0u32; 256]; MAX_INPUT]);
        for (pos, table) in tables.iter_mut().enumerate() {
            // Contribution of each single bit of this byte, then every byte value by linearity.
            let mut bit_words = [0u32; 8];
            for (b, w) in bit_words.iter_mut().enumerate() {
                // Bit b of the byte (b = 0 is the MSB) is input bit pos*8 + b.
                *w = key_window(key, pos * 8 + b);
            }
            for v in 1..256usize {
                let low = v & v.wrapping_neg(); // lowest set bit
                let b = 7 - low.trailing_zeros() as usize;
                table[v] = table[v ^ low] ^ bit_words[b];
            }
        }
        // For the CLMUL path: the 64 key bits starting at each 32-bit input chunk.
        let mut clmul_key = [0u64; MAX_INPUT / 4];
        for (c, k) in clmul_key.iter_mut().enumerate() {
            let hi = key_window(key, c * 32) as u64;
            let lo = key_window(key, c * 32 + 32) as u64;
            *k = (hi << 32) | lo;
        }
        Self { tables, key: key.to_vec(), clmul_key, use_clmul: super::clmul::available() }
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Hash of a fixed-size input (`N ≤ 36`, checked at compile time): `N` table loads.
    #[inline(always)]
    pub fn hash_fixed<const N: usize>(&self, input: &[u8; N]) -> u32 {
        const { assert!(N <= MAX_INPUT, "Toeplitz input longer than 36 bytes") };
        let t = &*self.tables;
        let mut h = 0u32;
        let mut i = 0;
        while i < N {
            h ^= t[i][input[i] as usize];
            i += 1;
        }
        h
    }

    /// Hash of an input of any length up to 36 bytes (longer input: only the first 36 bytes
    /// count — configuration never builds such input).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        let mut h = 0u32;
        for (t, &b) in self.tables.iter().zip(input) {
            h ^= t[b as usize];
        }
        h
    }

    /// IPv4 4-tuple (`src ‖ dst ‖ sport ‖ dport`, 12 bytes), also IPv4 `src ‖ dst ‖ SPI`.
    #[inline]
    pub fn hash_ipv4_4tuple(&self, input: &[u8; 12]) -> u32 {
        self.hash_fixed(input)
    }

    /// IPv6 4-tuple (`src ‖ dst ‖ sport ‖ dport`, 36 bytes).
    #[inline]
    pub fn hash_ipv6_4tuple(&self, input: &[u8; 36]) -> u32 {
        self.hash_fixed(input)
    }

    /// Hashes every input into `out` (`out.len()` ≥ `inputs.len()`; extra outputs untouched).
    ///
    /// Uses carry-less multiplication when the CPU has it (decided once, in [`Toeplitz::new`]),
    /// otherwise four interleaved table-driven hashes per step.
    #[inline]
    pub fn hash_batch<const N: usize>(&self, inputs: &[[u8; N]], out: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        if self.use_clmul && N.is_multiple_of(4) {
            super::clmul::hash_batch(&self.clmul_key, inputs, out);
            return;
        }
        self.hash_batch_tables(inputs, out);
    }

    /// [`Toeplitz::hash_batch`] by tables only (the portable path; public for tests and benches).
    #[inline]
    pub fn hash_batch_tables<const N: usize>(&self, inputs: &[[u8; N]], out: &mut [u32]) {
        let n = inputs.len().min(out.len());
        let (inputs, out) = (&inputs[..n], &mut out[..n]);
        let mut ic = inputs.chunks_exact(4);
        let mut oc = out.chunks_exact_mut(4);
        for (i, o) in (&mut ic).zip(&mut oc) {
            let t = &*self.tables;
            let (mut a, mut b, mut c, mut d) = (0u32, 0u32, 0u32, 0u32);
            for p in 0..N {
                a ^= t[p][i[0][p] as usize];
                b ^= t[p][i[1][p] as usize];
                c ^= t[p][i[2][p] as usize];
                d ^= t[p][i[3][p] as usize];
            }
            o[0] = a;
            o[1] = b;
            o[2] = c;
            o[3] = d;
        }
        for (i, o) in ic.remainder().iter().zip(oc.into_remainder()) {
            *o = self.hash_fixed(i);
        }
    }

    /// [`Toeplitz::hash_batch`] by carry-less multiplication, when the CPU has it; `false` (and
    /// `out` untouched) otherwise. Public for tests and benches.
    pub fn hash_batch_clmul<const N: usize>(&self, inputs: &[[u8; N]], out: &mut [u32]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if super::clmul::available() && N.is_multiple_of(4) {
            super::clmul::hash_batch(&self.clmul_key, inputs, out);
            return true;
        }
        let _ = (inputs, out);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_window_matches_bits() {
        assert_eq!(key_window(&MS_KEY, 0), 0x6d5a56da);
        assert_eq!(key_window(&MS_KEY, 8), 0x5a56da25);
        assert_eq!(key_window(&MS_KEY, 4), 0xd5a56da2);
        // Past the end: zero-extended.
        assert_eq!(key_window(&MS_KEY, 320), 0);
        assert_eq!(key_window(&MS_KEY, 312), 0xfa00_0000);
    }

    #[test]
    fn symmetric_key_is_6d5a() {
        assert_eq!(&SYMMETRIC_KEY[..4], &[0x6d, 0x5a, 0x6d, 0x5a]);
    }
}
