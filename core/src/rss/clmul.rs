//! Toeplitz by carry-less multiplication (x86-64 PCLMULQDQ + SSSE3 + SSE4.1), for batches.
//!
//! Why it works: number the input bits `x_i` and key bits `k_m` most significant first. Take a
//! 32-bit chunk `c` of the input and put its bits *reversed* into a word `X` (`x_{32c+i}` at bit
//! `i`; bit-reversing every byte and reading the chunk little-endian does exactly that), and put
//! the 64 key bits starting at bit `32c` into a word `K` the natural way (`k_{32c}` at bit 63).
//! In the carry-less product `X ⊗ K`, bit `63 - j` is `⊕_i x_{32c+i} · k_{32c+i+j}` — the
//! chunk's share of hash bit `j`. So the hash is bits 32..64 of `⊕_c X_c ⊗ K_c`; shifting every
//! `X_c` left by 32 moves it to bits 64..96, the low dword of the high qword, where one `pextrd`
//! reads it. An IPv4 4-tuple is 3 multiplications; IPv6 9.
//!
//! Two paths: a 128-bit one for any input length (PCLMULQDQ + SSSE3 + SSE4.1, one input at a
//! time), and for IPv4 4-tuples (12 bytes, also `src ‖ dst ‖ SPI`) a 256-bit one (AVX2 +
//! VPCLMULQDQ, eight inputs per step, two per multiply) that works in the mirrored domain:
//! input chunks in natural bit order, key words bit-reversed, one bit reversal of eight results
//! at the end — cheaper than reversing every input byte.
//!
//! This is the only module of wirespeed-core with `unsafe`: vector loads and stores, and the
//! calls into `#[target_feature]` functions, each guarded by a run-time feature check
//! ([`available`], `wide_available`) made on entry to [`hash_batch`].
#![allow(unsafe_code)]

/// True when this CPU has what the CLMUL path needs (checked once, then cached by std).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("pclmulqdq")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Hashes `inputs` (each `N` bytes, `N % 4 == 0`, `N ≤ 36`) into `out` with the per-chunk key
/// words `keys` (see [`super::Toeplitz`]). Falls back to nothing if the CPU lacks the features —
/// callers check [`available`] first; here it is re-checked so this function is safe on its own.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn hash_batch<const N: usize>(keys: &[u64; 9], inputs: &[[u8; N]], out: &mut [u32]) {
    if !available() || !N.is_multiple_of(4) || N > 36 {
        return;
    }
    let n = inputs.len().min(out.len());
    let mut done = 0;
    if N == 12 && n >= 8 && wide_available() {
        // SAFETY: avx2, pclmulqdq and vpclmulqdq were just detected by `wide_available`.
        done = unsafe { x86::hash_batch_12_wide(keys, inputs.as_flattened(), &mut out[..n]) };
    }
    // SAFETY: the required CPU features (pclmulqdq, ssse3, sse4.1) were just detected above.
    unsafe { x86::hash_batch::<N>(keys, &inputs[done..n], &mut out[done..n]) }
}

/// True when the 256-bit path (AVX2 + VPCLMULQDQ, eight IPv4 hashes per step, two per
/// multiply) can run.
#[cfg(target_arch = "x86_64")]
pub fn wide_available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
        && std::arch::is_x86_feature_detected!("vpclmulqdq")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Per 16-byte block `b` of the input: key words for chunks (4b, 4b+2) and (4b+1, 4b+3).
    struct BlockKeys {
        even: __m128i,
        odd: __m128i,
    }

    #[target_feature(enable = "pclmulqdq,ssse3,sse4.1")]
    fn block_keys(keys: &[u64; 9], b: usize) -> BlockKeys {
        let k = |c: usize| keys.get(c).copied().unwrap_or(0) as i64;
        BlockKeys {
            even: _mm_set_epi64x(k(4 * b + 2), k(4 * b)),
            odd: _mm_set_epi64x(k(4 * b + 3), k(4 * b + 1)),
        }
    }

    /// Reverses the bits of every byte (nibble lookups).
    #[target_feature(enable = "pclmulqdq,ssse3,sse4.1")]
    #[inline]
    fn rev_bytes(v: __m128i) -> __m128i {
        // rev(n) for a low nibble n, placed in the high nibble; and for a high nibble, in the low.
        let lo_tab = _mm_setr_epi8(
            0x00,
            0x80u8 as i8,
            0x40,
            0xc0u8 as i8,
            0x20,
            0xa0u8 as i8,
            0x60,
            0xe0u8 as i8,
            0x10,
            0x90u8 as i8,
            0x50,
            0xd0u8 as i8,
            0x30,
            0xb0u8 as i8,
            0x70,
            0xf0u8 as i8,
        );
        let hi_tab = _mm_setr_epi8(
            0x00, 0x08, 0x04, 0x0c, 0x02, 0x0a, 0x06, 0x0e, 0x01, 0x09, 0x05, 0x0d, 0x03, 0x0b, 0x07, 0x0f,
        );
        let m = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(v, m);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), m);
        _mm_or_si128(_mm_shuffle_epi8(lo_tab, lo), _mm_shuffle_epi8(hi_tab, hi))
    }

    /// The contribution of one 16-byte block (already bit-reversed per byte), `live` chunks of it
    /// real input (1..=4), as a 128-bit partial product.
    #[target_feature(enable = "pclmulqdq,ssse3,sse4.1")]
    #[inline]
    fn block(v: __m128i, k: &BlockKeys, live: usize) -> __m128i {
        // Chunks 0 and 2 of the block, each moved to the high dword of its qword.
        let even = _mm_slli_epi64::<32>(v);
        // Chunks 1 and 3 are already there; clear the low dwords.
        let odd = _mm_and_si128(v, _mm_set_epi32(-1, 0, -1, 0));
        let mut acc = _mm_clmulepi64_si128::<0x00>(even, k.even);
        if live > 1 {
            acc = _mm_xor_si128(acc, _mm_clmulepi64_si128::<0x00>(odd, k.odd));
        }
        if live > 2 {
            acc = _mm_xor_si128(acc, _mm_clmulepi64_si128::<0x11>(even, k.even));
        }
        if live > 3 {
            acc = _mm_xor_si128(acc, _mm_clmulepi64_si128::<0x11>(odd, k.odd));
        }
        acc
    }

    /// IPv4 4-tuples (12 bytes), eight at a time, three carry-less multiplications each.
    ///
    /// Lane 0 of each 256-bit register holds input `k`, lane 1 input `k + 4`. Lane 0 reads 16
    /// bytes from its input's start (safe: input `k + 4` follows); lane 1 reads the 16 bytes
    /// *ending* at its input's end (safe: input `k + 3` precedes), so its chunks sit 4 bytes
    /// higher — the per-lane byte shuffles absorb that. This path works in the mirrored domain
    /// (see the module docs): chunks in natural order (the shuffles also byte-swap them), key
    /// words bit-reversed and shifted left by one, so the hashes come out bit-reversed in
    /// dword 2 of each lane and one reversal of eight results at the end puts them right.
    /// Returns how many inputs were hashed (a multiple of 8); the caller does the rest.
    #[target_feature(enable = "avx2,pclmulqdq,vpclmulqdq")]
    pub(super) fn hash_batch_12_wide(keys: &[u64; 9], flat: &[u8], out: &mut [u32]) -> usize {
        let n = (flat.len() / 12).min(out.len());
        let groups = n / 8;
        let r = |c: usize| (keys[c].reverse_bits() << 1) as i64;
        // _mm256_set_epi64x takes (lane1.q1, lane1.q0, lane0.q1, lane0.q0).
        let k02 = _mm256_set_epi64x(r(2), r(0), r(2), r(0));
        let k1 = _mm256_set_epi64x(0, r(1), 0, r(1));
        // Chunk 0 → high dword of qword 0, chunk 2 → high dword of qword 1, byte-swapped.
        let z = -128i8; // shuffle index with the top bit set: a zero byte
        let ctl02 = _mm256_setr_epi8(
            z, z, z, z, 3, 2, 1, 0, z, z, z, z, 11, 10, 9, 8, // lane 0: input at bytes 0..12
            z, z, z, z, 7, 6, 5, 4, z, z, z, z, 15, 14, 13, 12, // lane 1: input at bytes 4..16
        );
        // Chunk 1 → high dword of qword 0.
        let ctl1 = _mm256_setr_epi8(
            z, z, z, z, 7, 6, 5, 4, z, z, z, z, z, z, z, z, //
            z, z, z, z, 11, 10, 9, 8, z, z, z, z, z, z, z, z,
        );
        let pair = |g: usize, k: usize| -> __m256i {
            let a = 12 * (8 * g + k);
            let b = 12 * (8 * g + k + 4) - 4;
            // SAFETY: input `k + 4` of the group exists, so `a + 16 <= 12 * (8g + k + 4) + 4
            // <= flat.len()`; `b + 16 = 12 * (8g + k + 5) <= 12 * n <= flat.len()` and
            // `b >= 44`. Unaligned loads; AVX is enabled on this function.
            let v = unsafe { _mm256_loadu2_m128i(flat.as_ptr().add(b).cast(), flat.as_ptr().add(a).cast()) };
            let x02 = _mm256_shuffle_epi8(v, ctl02);
            let x1 = _mm256_shuffle_epi8(v, ctl1);
            // Two inputs per multiply: VPCLMULQDQ works on both 128-bit lanes at once.
            let p0 = _mm256_clmulepi64_epi128::<0x00>(x02, k02);
            let p2 = _mm256_clmulepi64_epi128::<0x11>(x02, k02);
            let p1 = _mm256_clmulepi64_epi128::<0x00>(x1, k1);
            _mm256_xor_si256(_mm256_xor_si256(p0, p1), p2)
        };
        // Bit reversal of each dword: bytes swapped, then bits of each byte by nibble lookups.
        let bswap = _mm256_setr_epi8(
            3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, //
            3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12,
        );
        let lo_tab = _mm256_setr_epi8(
            0x00,
            0x80u8 as i8,
            0x40,
            0xc0u8 as i8,
            0x20,
            0xa0u8 as i8,
            0x60,
            0xe0u8 as i8,
            0x10,
            0x90u8 as i8,
            0x50,
            0xd0u8 as i8,
            0x30,
            0xb0u8 as i8,
            0x70,
            0xf0u8 as i8,
            0x00,
            0x80u8 as i8,
            0x40,
            0xc0u8 as i8,
            0x20,
            0xa0u8 as i8,
            0x60,
            0xe0u8 as i8,
            0x10,
            0x90u8 as i8,
            0x50,
            0xd0u8 as i8,
            0x30,
            0xb0u8 as i8,
            0x70,
            0xf0u8 as i8,
        );
        let hi_tab = _mm256_setr_epi8(
            0x00, 0x08, 0x04, 0x0c, 0x02, 0x0a, 0x06, 0x0e, 0x01, 0x09, 0x05, 0x0d, 0x03, 0x0b, 0x07, 0x0f,
            0x00, 0x08, 0x04, 0x0c, 0x02, 0x0a, 0x06, 0x0e, 0x01, 0x09, 0x05, 0x0d, 0x03, 0x0b, 0x07, 0x0f,
        );
        let nib = _mm256_set1_epi8(0x0f);
        for (g, o) in out.chunks_exact_mut(8).take(groups).enumerate() {
            // Hash of input k is dword 2 of lane 0 of pair k; of input k + 4, of lane 1.
            let (a0, a1, a2, a3) = (pair(g, 0), pair(g, 1), pair(g, 2), pair(g, 3));
            let u01 = _mm256_unpackhi_epi32(a0, a1); // lanes: [h0 h1 . .] [h4 h5 . .]
            let u23 = _mm256_unpackhi_epi32(a2, a3); // lanes: [h2 h3 . .] [h6 h7 . .]
            let h = _mm256_unpacklo_epi64(u01, u23); // lanes: [h0 h1 h2 h3] [h4 h5 h6 h7]
            let h = _mm256_shuffle_epi8(h, bswap);
            let lo = _mm256_and_si256(h, nib);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(h), nib);
            let h = _mm256_or_si256(_mm256_shuffle_epi8(lo_tab, lo), _mm256_shuffle_epi8(hi_tab, hi));
            let mut tmp = [0u32; 8];
            // SAFETY: `tmp` is 32 bytes; unaligned store.
            unsafe { _mm256_storeu_si256(tmp.as_mut_ptr().cast(), h) };
            o.copy_from_slice(&tmp);
        }
        groups * 8
    }

    #[target_feature(enable = "pclmulqdq,ssse3,sse4.1")]
    pub(super) fn hash_batch<const N: usize>(keys: &[u64; 9], inputs: &[[u8; N]], out: &mut [u32]) {
        let blocks = N.div_ceil(16);
        // Up to 3 blocks (36 bytes); keys hoisted out of the loop.
        let bk = [block_keys(keys, 0), block_keys(keys, 1), block_keys(keys, 2)];
        let flat = inputs.as_flattened();
        let n = inputs.len().min(out.len());
        for (t, o) in out.iter_mut().enumerate().take(n) {
            let base = t * N;
            let mut acc = _mm_setzero_si128();
            for (b, k) in bk.iter().enumerate().take(blocks) {
                let start = base + 16 * b;
                let live_bytes = (N - 16 * b).min(16);
                let v = if start + 16 <= flat.len() {
                    // SAFETY: `start + 16 <= flat.len()`, so the 16 bytes read are inside `flat`;
                    // `_mm_loadu_si128` has no alignment requirement. SSE2 is baseline on x86-64.
                    unsafe { _mm_loadu_si128(flat.as_ptr().add(start).cast()) }
                } else {
                    // The last input's tail: copy into a zero-padded block.
                    let mut tmp = [0u8; 16];
                    let end = (start + 16).min(base + N);
                    tmp[..end - start].copy_from_slice(&flat[start..end]);
                    // SAFETY: `tmp` is 16 bytes; unaligned load.
                    unsafe { _mm_loadu_si128(tmp.as_ptr().cast()) }
                };
                acc = _mm_xor_si128(acc, block(rev_bytes(v), k, live_bytes / 4));
            }
            *o = _mm_extract_epi32::<2>(acc) as u32;
        }
    }
}
