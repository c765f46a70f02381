//! The 512-bit path ([`super::GcmPath::Avx512`]): each packet in one stitched pass.
//!
//! A packet's data is cut into chunks of sixteen blocks (256 bytes), four 512-bit registers,
//! and each chunk is encrypted (or decrypted) and hashed in the same iteration, from registers:
//! the data is read and written once. The GHASH multiplications of a chunk do not feed the next
//! chunk's AES rounds, so the CPU runs the two side by side (out of order), which is the
//! stitching; holding the ciphertext in registers across the next chunk's rounds instead (the
//! assembly way) measured 8 % slower here, from register spills. Products are summed unreduced
//! (Karatsuba, three carry-less multiplications per block) and reduced once per 32 blocks
//! (aggregated reduction); the running GHASH value is multiplied in at the reduction, so only
//! one multiplication and the reduction are on the chain from one group to the next. The AAD
//! (up to sixteen blocks) and the lengths block join the first and the last reduction group,
//! so a small packet has a single reduction. The key powers `H^1..H^NPOW` are precomputed per
//! key, laid out so that the powers of any run of consecutive blocks are one unaligned 64-byte
//! load (zeros after `H^1` for the lanes past the end of a run).
//!
//! The last chunk (1 to 256 bytes) is read and written with byte-masked loads and stores, so no
//! byte outside the packet is touched and no copy is made; when its last register has a free
//! lane, the tag mask's counter block `J0` rides in it (no separate AES chain for small
//! packets). Everything branches on lengths only.
//!
//! GHASH runs in the POLYVAL representation (RFC 8452 Appendix A) as in `x86.rs`: blocks are
//! byte-reversed, the key powers are shared.

use std::arch::x86_64::*;

use super::x86::{GcmKey, MAX_LEN, bswap, from_bytes, j0_base, lens_block, reduce, to_bytes, xor};
use super::{AeadError, AeadJob};

/// Key powers kept: `H^1..H^NPOW`. A reduction group is at most sixteen AAD blocks, 32 data
/// blocks and the lengths block (49).
pub(super) const NPOW: usize = 52;

/// The per-key tables of the 512-bit path.
#[repr(C, align(64))]
pub(super) struct Tables {
    /// Round keys, each in the four lanes.
    rk: [__m512i; 15],
    /// `hp[i]` = `H^(NPOW - i)` for `i < NPOW`, then four zero blocks: the powers of blocks
    /// that need `H^e, H^(e-1), …` start at `hp[NPOW - e]`.
    hp: [__m128i; NPOW + 4],
    /// Karatsuba's middle factors: `hk[i]` = low ⊕ high half of `hp[i]`, in both halves.
    hk: [__m128i; NPOW + 4],
}

impl Drop for Tables {
    fn drop(&mut self) {
        // Best effort: do not leave the key schedule in freed memory.
        let z = from_bytes([0; 16]);
        for r in self.hp.iter_mut().chain(self.hk.iter_mut()) {
            // SAFETY: `r` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(r, z) };
        }
        // SAFETY: `__m512i` and `[u8; 64]` have the same size; every bit pattern is valid.
        let z4 = unsafe { std::mem::transmute::<[u8; 64], __m512i>([0; 64]) };
        for r in self.rk.iter_mut() {
            // SAFETY: `r` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(r, z4) };
        }
    }
}

impl Tables {
    /// `rk`: the round keys; `pows[i]` = `H^(i+1)` (POLYVAL representation).
    #[target_feature(enable = "avx512f")]
    pub(super) fn new(rk: &[__m128i; 15], pows: &[__m128i; NPOW]) -> Box<Self> {
        let z = _mm_setzero_si128();
        let mut t = Box::new(Self { rk: [_mm512_setzero_si512(); 15], hp: [z; NPOW + 4], hk: [z; NPOW + 4] });
        for (d, s) in t.rk.iter_mut().zip(rk) {
            *d = _mm512_broadcast_i32x4(*s);
        }
        for (i, p) in pows.iter().enumerate() {
            t.hp[NPOW - 1 - i] = *p;
            t.hk[NPOW - 1 - i] = _mm_xor_si128(*p, _mm_shuffle_epi32::<0x4e>(*p));
        }
        t
    }

    /// The powers `H^e, H^(e-1), H^(e-2), H^(e-3)` (zero where the exponent is below 1), with
    /// their Karatsuba middle factors.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn pow(&self, e: usize) -> (__m512i, __m512i) {
        (run4(&self.hp, NPOW - e), run4(&self.hk, NPOW - e))
    }
}

/// Entries `i..i + 4` of a power table.
#[inline]
#[target_feature(enable = "avx512f")]
fn run4(t: &[__m128i; NPOW + 4], i: usize) -> __m512i {
    let run: &[__m128i; 4] = t[i..][..4].try_into().unwrap_or_else(|_| unreachable!("4 entries"));
    // SAFETY: `run` is 64 readable bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(run.as_ptr().cast()) }
}

/// Bytes `0..n` (at most 64) of a register as a mask.
#[inline(always)]
fn bmask(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// The first `min(64, s.len())` bytes of `s`, zero-extended.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn load(s: &[u8]) -> __m512i {
    if s.len() >= 64 {
        // SAFETY: 64 bytes of `s` are readable; the load is unaligned.
        unsafe { _mm512_loadu_si512(s.as_ptr().cast()) }
    } else {
        // SAFETY: only the bytes selected by the mask, `s.len()` bytes, are read (masked-off
        // bytes are not accessed and cannot fault).
        unsafe { _mm512_maskz_loadu_epi8(bmask(s.len()), s.as_ptr().cast()) }
    }
}

/// Stores the first `min(64, s.len())` bytes of `v` to `s`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn store(s: &mut [u8], v: __m512i) {
    if s.len() >= 64 {
        // SAFETY: 64 bytes of `s` are writable; the store is unaligned.
        unsafe { _mm512_storeu_si512(s.as_mut_ptr().cast(), v) }
    } else {
        // SAFETY: only the `s.len()` bytes selected by the mask are written.
        unsafe { _mm512_mask_storeu_epi8(s.as_mut_ptr().cast(), bmask(s.len()), v) }
    }
}

/// Byte reversal of each block: GHASH blocks ↔ POLYVAL blocks, and counter blocks ↔ their
/// little-endian form (the 32-bit counter in the low dword, where `vpaddd` increments it).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn bswap4(v: __m512i) -> __m512i {
    let m = _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    _mm512_shuffle_epi8(v, m)
}

/// `a, a + 1, a + 2, a + 3` in the low dword of the four lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn lane_ctr(a: i32) -> __m512i {
    _mm512_set_epi32(0, 0, 0, a + 3, 0, 0, 0, a + 2, 0, 0, 0, a + 1, 0, 0, 0, a)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn xor4(a: __m512i, b: __m512i) -> __m512i {
    _mm512_xor_si512(a, b)
}

/// Unreduced GHASH products of a reduction group.
#[derive(Clone, Copy)]
struct Sum {
    lo: __m512i,
    mid: __m512i,
    hi: __m512i,
}

impl Sum {
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn zero() -> Self {
        let z = _mm512_setzero_si512();
        Self { lo: z, mid: z, hi: z }
    }

    /// `+= x · h`, four blocks, Karatsuba (three multiplications; `mid` gets
    /// (x_lo ⊕ x_hi)(h_lo ⊕ h_hi), from which `lo` and `hi` are taken in [`Sum::finish`]).
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn mul_acc(&mut self, x: __m512i, (h, hk): (__m512i, __m512i)) {
        self.lo = xor4(self.lo, _mm512_clmulepi64_epi128::<0x00>(x, h));
        self.hi = xor4(self.hi, _mm512_clmulepi64_epi128::<0x11>(x, h));
        let xk = xor4(x, _mm512_shuffle_epi32::<0x4e>(x));
        self.mid = xor4(self.mid, _mm512_clmulepi64_epi128::<0x00>(xk, hk));
    }

    /// The GHASH value after the group: the four lanes folded, plus `carry` (the value before
    /// the group) times `H^e` (`e`: the power of the group's first block), reduced. Adding the
    /// carry here rather than into the first block keeps the lane folding off the dependency
    /// chain from one group to the next: on it are only one multiplication and the reduction.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,pclmulqdq,sse2")]
    fn finish(self, t: &Tables, carry: Option<__m128i>, e: usize) -> __m128i {
        let (mut lo, mut mk, mut hi) = (fold(self.lo), fold(self.mid), fold(self.hi));
        // No carry before the first group (known from the lengths alone).
        if let Some(c) = carry {
            let (h, hk) = (t.hp[NPOW - e], t.hk[NPOW - e]);
            lo = xor(lo, _mm_clmulepi64_si128::<0x00>(c, h));
            hi = xor(hi, _mm_clmulepi64_si128::<0x11>(c, h));
            let ck = xor(c, _mm_shuffle_epi32::<0x4e>(c));
            mk = xor(mk, _mm_clmulepi64_si128::<0x00>(ck, hk));
        }
        reduce((lo, _mm_ternarylogic_epi64::<0x96>(mk, lo, hi), hi))
    }
}

/// The xor of the four 128-bit lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn fold(v: __m512i) -> __m128i {
    let y = _mm256_xor_si256(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
    _mm_xor_si128(_mm256_castsi256_si128(y), _mm256_extracti128_si256::<1>(y))
}

/// AES-`R` (10 or 14 rounds) of `N` registers of counter blocks, rounds interleaved.
#[inline]
#[target_feature(enable = "avx512f,vaes")]
fn aes<const R: usize, const N: usize>(t: &Tables, mut x: [__m512i; N]) -> [__m512i; N] {
    for v in x.iter_mut() {
        *v = xor4(*v, t.rk[0]);
    }
    for r in 1..R {
        for v in x.iter_mut() {
            *v = _mm512_aesenc_epi128(*v, t.rk[r]);
        }
    }
    for v in x.iter_mut() {
        *v = _mm512_aesenclast_epi128(*v, t.rk[R]);
    }
    x
}

/// Counter blocks of the four registers `ctr` (little-endian form), which move on by 16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn next_counters<const N: usize>(ctr: &mut [__m512i; 4]) -> [__m512i; N] {
    let step = _mm512_set_epi32(0, 0, 0, 16, 0, 0, 0, 16, 0, 0, 0, 16, 0, 0, 0, 16);
    let mut x = [_mm512_setzero_si512(); N];
    for (v, c) in x.iter_mut().zip(ctr.iter_mut()) {
        *v = bswap4(*c);
        *c = _mm512_add_epi32(*c, step);
    }
    x
}

/// The products of a full chunk (four registers, byte-reversed) into its reduction group; `e`
/// is the power of the chunk's first block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2")]
fn chunk_products(t: &Tables, sum: &mut Sum, g: [__m512i; 4], e: usize) {
    for (k, g) in g.into_iter().enumerate() {
        sum.mul_acc(g, t.pow(e - 4 * k));
    }
}

/// GHASH of `s` (no lengths block) onto zero, in groups of sixteen blocks: the AAD when it is
/// longer than sixteen blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3")]
fn absorb(t: &Tables, s: &[u8]) -> Option<__m128i> {
    let mut acc = None;
    for group in s.chunks(256) {
        let m = group.len().div_ceil(16);
        let mut sum = Sum::zero();
        for (k, piece) in group.chunks(64).enumerate() {
            sum.mul_acc(bswap4(load(piece)), t.pow(m - 4 * k));
        }
        acc = Some(sum.finish(t, acc, m));
    }
    acc
}

/// One packet's stitched CTR + GHASH pass over `data` (sealed if `SEAL`, else opened: GHASH of
/// the ciphertext as read). `base` is nonce ‖ 0^32. Returns the GHASH of AAD, ciphertext and
/// lengths (POLYVAL domain, still byte-reversed).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq,avx2,sse4.1,ssse3,sse2")]
fn pass<const R: usize, const SEAL: bool>(
    t: &Tables,
    base: __m128i,
    aad: &[u8],
    data: &mut [u8],
) -> (__m128i, __m128i) {
    let len = data.len();
    let j0 = _mm_insert_epi32::<3>(base, 1u32.to_be() as i32);
    let lens = lens_block(aad, data);
    let nb = len.div_ceil(16);
    let nch = nb.div_ceil(16);
    // Blocks of the last chunk (1..=16; 0 when there is no data).
    let m = nb - 16 * nch.saturating_sub(1);
    let mut sum = Sum::zero();
    // The GHASH value before the next group.
    let mut carry = None;
    // Reduction groups: pairs of full chunks (32 blocks), then the last chunk with the lengths
    // block and, when the full chunks are odd in number, the last full chunk before it.
    let full_chunks = nch.saturating_sub(1);
    let paired = full_chunks - full_chunks % 2;
    let last_group = if full_chunks % 2 == 1 { 16 + m + 1 } else { m + 1 };
    // The power of the first block of the current group.
    let mut first = if paired > 0 { 32 } else { last_group };
    let na = aad.len().div_ceil(16);
    if na > 16 {
        carry = absorb(t, aad);
    } else if na > 0 {
        // The AAD opens the first group: AAD, chunk 0, and the lengths if chunk 0 is the last.
        first += na;
        for (k, piece) in aad.chunks(64).enumerate() {
            sum.mul_acc(bswap4(load(piece)), t.pow(first - 4 * k));
        }
    }
    if nch == 0 {
        sum.mul_acc(_mm512_zextsi128_si512(lens), t.pow(1));
        return (sum.finish(t, carry, first), encrypt1::<R>(t, j0));
    }
    let rev = _mm512_broadcast_i32x4(bswap(base));
    // Data block i has counter i + 2.
    let mut ctr = [
        _mm512_add_epi32(rev, lane_ctr(2)),
        _mm512_add_epi32(rev, lane_ctr(6)),
        _mm512_add_epi32(rev, lane_ctr(10)),
        _mm512_add_epi32(rev, lane_ctr(14)),
    ];
    let (full, last) = data.split_at_mut(256 * (nch - 1));
    for (ci, chunk) in full.chunks_exact_mut(256).enumerate() {
        // The power of the chunk's first block.
        let e = if ci >= paired {
            16 + m + 1
        } else if ci % 2 == 0 {
            32
        } else {
            16
        };
        let x = next_counters::<4>(&mut ctr);
        let mut g = [_mm512_setzero_si512(); 4];
        if SEAL {
            // The GHASH of this chunk is not on the path of the next chunk's AES: the CPU
            // overlaps the two (out of order) without holding the ciphertext across rounds.
            let ks = aes::<R, 4>(t, x);
            for (k, (piece, ks)) in chunk.chunks_exact_mut(64).zip(ks).enumerate() {
                let c = xor4(ks, load(piece));
                store(piece, c);
                g[k] = bswap4(c);
            }
            chunk_products(t, &mut sum, g, e);
        } else {
            let mut c = [_mm512_setzero_si512(); 4];
            for (k, piece) in chunk.chunks_exact(64).enumerate() {
                c[k] = load(piece);
                g[k] = bswap4(c[k]);
            }
            chunk_products(t, &mut sum, g, e);
            let ks = aes::<R, 4>(t, x);
            for (k, (piece, ks)) in chunk.chunks_exact_mut(64).zip(ks).enumerate() {
                store(piece, xor4(ks, c[k]));
            }
        }
        if e == 16 {
            // The end of a pair: one reduction per 32 blocks.
            carry = Some(std::mem::replace(&mut sum, Sum::zero()).finish(t, carry, first));
            first = if ci + 1 < paired { 32 } else { last_group };
        }
    }
    match m.div_ceil(4) {
        1 => last_chunk::<R, SEAL, 1>(t, &mut sum, (carry, first), &mut ctr, last, m, lens, j0),
        2 => last_chunk::<R, SEAL, 2>(t, &mut sum, (carry, first), &mut ctr, last, m, lens, j0),
        3 => last_chunk::<R, SEAL, 3>(t, &mut sum, (carry, first), &mut ctr, last, m, lens, j0),
        _ => last_chunk::<R, SEAL, 4>(t, &mut sum, (carry, first), &mut ctr, last, m, lens, j0),
    }
}

/// The last chunk (`m` blocks, `N` = ⌈m/4⌉ registers, `data` 1..=256 bytes) and its GHASH
/// group, which ends with the lengths block.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq,avx2,sse4.1,ssse3,sse2")]
fn last_chunk<const R: usize, const SEAL: bool, const N: usize>(
    t: &Tables,
    sum: &mut Sum,
    (carry, first): (Option<__m128i>, usize),
    ctr: &mut [__m512i; 4],
    data: &mut [u8],
    m: usize,
    lens: __m128i,
    j0: __m128i,
) -> (__m128i, __m128i) {
    let mut x = next_counters::<N>(ctr);
    // J0 (the tag mask's counter block) takes block m's lane when the last register has room.
    let packed = !m.is_multiple_of(4);
    if packed {
        x[N - 1] = _mm512_mask_broadcast_i32x4(x[N - 1], 0xf << (4 * (m % 4)), j0);
    }
    let ks = aes::<R, N>(t, x);
    let mask = if packed {
        let l = (m % 4) as i64 * 2;
        _mm512_castsi512_si128(_mm512_permutexvar_epi64(
            _mm512_set_epi64(0, 0, 0, 0, 0, 0, l + 1, l),
            ks[N - 1],
        ))
    } else {
        encrypt1::<R>(t, j0)
    };
    let mut g = [_mm512_setzero_si512(); N];
    for (k, (piece, ks)) in data.chunks_mut(64).zip(ks).enumerate() {
        let d = load(piece);
        let out = xor4(ks, d);
        store(piece, out);
        // The ciphertext, zero past the end of the data.
        g[k] = bswap4(if SEAL { _mm512_maskz_mov_epi8(bmask(piece.len()), out) } else { d });
    }
    // The lengths block is block m of the group (power H^1): in the last register when it has
    // room, else alone.
    if !m.is_multiple_of(4) {
        g[N - 1] = _mm512_mask_broadcast_i32x4(g[N - 1], 0xf << (4 * (m % 4)), lens);
    }
    for (k, g) in g.into_iter().enumerate() {
        sum.mul_acc(g, t.pow(m + 1 - 4 * k));
    }
    if m.is_multiple_of(4) {
        sum.mul_acc(_mm512_zextsi128_si512(lens), t.pow(1));
    }
    (sum.finish(t, carry, first), mask)
}

/// One block, AES-`R`.
#[inline]
#[target_feature(enable = "avx512f,aes")]
fn encrypt1<const R: usize>(t: &Tables, b: __m128i) -> __m128i {
    let mut s = xor(b, _mm512_castsi512_si128(t.rk[0]));
    for r in 1..R {
        s = _mm_aesenc_si128(s, _mm512_castsi512_si128(t.rk[r]));
    }
    _mm_aesenclast_si128(s, _mm512_castsi512_si128(t.rk[R]))
}

/// CTR over `data` alone (counters from 2): undoes a decryption whose tag failed.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,aes,avx2,sse4.1,ssse3,sse2")]
fn ctr_only<const R: usize>(t: &Tables, base: __m128i, data: &mut [u8]) {
    let rev = _mm512_broadcast_i32x4(bswap(base));
    let mut ctr = [
        _mm512_add_epi32(rev, lane_ctr(2)),
        _mm512_add_epi32(rev, lane_ctr(6)),
        _mm512_add_epi32(rev, lane_ctr(10)),
        _mm512_add_epi32(rev, lane_ctr(14)),
    ];
    for chunk in data.chunks_mut(256) {
        let ks = aes::<R, 4>(t, next_counters::<4>(&mut ctr));
        for (piece, ks) in chunk.chunks_mut(64).zip(ks) {
            store(piece, xor4(ks, load(piece)));
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq,avx2,sse4.1,ssse3,sse2")]
fn seal_one<const R: usize>(t: &Tables, job: &mut AeadJob<'_>) {
    if job.data.len() > MAX_LEN {
        job.result = Err(AeadError::Rejected);
        return;
    }
    let (s, mask) = pass::<R, true>(t, j0_base(&job.nonce), job.aad, job.data);
    *job.icv = to_bytes(xor(bswap(s), mask));
    job.result = Ok(());
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq,avx2,sse4.1,ssse3,sse2")]
fn open_one<const R: usize>(t: &Tables, job: &mut AeadJob<'_>) {
    if job.data.len() > MAX_LEN {
        job.result = Err(AeadError::AuthFailed);
        return;
    }
    let base = j0_base(&job.nonce);
    let (s, mask) = pass::<R, false>(t, base, job.aad, job.data);
    let diff = xor(xor(bswap(s), mask), from_bytes(*job.icv));
    // Only the verdict (public: the packet is dropped or not) is branched on.
    if _mm_testz_si128(diff, diff) == 1 {
        job.result = Ok(());
    } else {
        ctr_only::<R>(t, base, job.data);
        job.result = Err(AeadError::AuthFailed);
    }
}

/// Seals every job (the CPU features of the path were detected: `t` exists).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq,avx2,sse4.1,ssse3,sse2")]
pub(super) fn seal_all(key: &GcmKey, t: &Tables, jobs: &mut [AeadJob<'_>]) {
    if key.rounds == 10 {
        for job in jobs {
            seal_one::<10>(t, job);
        }
    } else {
        for job in jobs {
            seal_one::<14>(t, job);
        }
    }
}

/// Opens every job; a job whose tag fails keeps its ciphertext.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq,avx2,sse4.1,ssse3,sse2")]
pub(super) fn open_all(key: &GcmKey, t: &Tables, jobs: &mut [AeadJob<'_>]) {
    if key.rounds == 10 {
        for job in jobs {
            open_one::<10>(t, job);
        }
    } else {
        for job in jobs {
            open_one::<14>(t, job);
        }
    }
}
