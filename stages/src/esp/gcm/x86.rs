use std::arch::x86_64::*;

use super::avx512;
use super::{AeadAlgorithm, AeadError, AeadJob, EspAead, GcmPath, ICV_LEN, NONCE_LEN};

/// Packets whose CTR and GHASH passes run together (their data stays in L1).
const GROUP: usize = 8;
/// Counter blocks encrypted together.
const LANES: usize = 8;
/// Largest plaintext: the 32-bit block counter starts at 2 (NIST SP 800-38D: 2^39 - 256 bits).
pub(super) const MAX_LEN: usize = ((1u64 << 32) - 2) as usize * 16;

#[inline(always)]
pub(super) fn to_bytes(v: __m128i) -> [u8; 16] {
    // SAFETY: `__m128i` and `[u8; 16]` have the same size and every bit pattern is valid
    // for both.
    unsafe { std::mem::transmute::<__m128i, [u8; 16]>(v) }
}

#[inline(always)]
fn to_bytes32(v: __m256i) -> [u8; 32] {
    // SAFETY: same size, every bit pattern valid for both.
    unsafe { std::mem::transmute::<__m256i, [u8; 32]>(v) }
}

#[inline(always)]
fn from_bytes32(b: [u8; 32]) -> __m256i {
    // SAFETY: same size, every bit pattern valid for both.
    unsafe { std::mem::transmute::<[u8; 32], __m256i>(b) }
}

#[inline(always)]
pub(super) fn from_bytes(b: [u8; 16]) -> __m128i {
    // SAFETY: as in `to_bytes`.
    unsafe { std::mem::transmute::<[u8; 16], __m128i>(b) }
}

/// An expanded AES-GCM key: round keys and the GHASH key powers.
pub(super) struct GcmKey {
    algorithm: AeadAlgorithm,
    pub(super) rounds: usize,
    rk: [__m128i; 15],
    /// `hpow[i]` = H^(i+1) in the POLYVAL (Montgomery) representation.
    hpow: [__m128i; 8],
    /// The VAES/VPCLMULQDQ path is used (`wide`): round keys in both 128-bit lanes, and
    /// `hpair[j]` = (H^(j+2) in lane 0, H^(j+1) in lane 1).
    wide: bool,
    rk2: [__m256i; 15],
    hpair: [__m256i; 7],
    /// The code path `new` chose.
    path: GcmPath,
    /// The 512-bit path's tables ([`GcmPath::Avx512`]).
    z512: Option<Box<avx512::Tables>>,
}

impl std::fmt::Debug for GcmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchGcm({}, {})", self.algorithm.name(), self.path.name())
    }
}

impl Drop for GcmKey {
    fn drop(&mut self) {
        // Best effort: do not leave the key schedule in freed memory.
        let z = from_bytes([0; 16]);
        for r in self.rk.iter_mut().chain(self.hpow.iter_mut()) {
            // SAFETY: `r` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(r, z) };
        }
        // SAFETY: as in `GcmKey::new`.
        let z2 = unsafe { std::mem::transmute::<[u8; 32], __m256i>([0; 32]) };
        for r in self.rk2.iter_mut().chain(self.hpair.iter_mut()) {
            // SAFETY: `r` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(r, z2) };
        }
    }
}

#[inline]
#[target_feature(enable = "sse2")]
pub(super) fn xor(a: __m128i, b: __m128i) -> __m128i {
    _mm_xor_si128(a, b)
}

#[target_feature(enable = "aes,sse2")]
fn expand128_step<const RCON: i32>(k: __m128i) -> __m128i {
    let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<RCON>(k));
    let k = xor(k, _mm_slli_si128::<4>(k));
    let k = xor(k, _mm_slli_si128::<4>(k));
    let k = xor(k, _mm_slli_si128::<4>(k));
    xor(k, t)
}

/// AES-256: the even step (RotWord/SubWord/Rcon on the previous odd key).
#[target_feature(enable = "aes,sse2")]
fn expand256_even<const RCON: i32>(a: __m128i, b: __m128i) -> __m128i {
    let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<RCON>(b));
    let a = xor(a, _mm_slli_si128::<4>(a));
    let a = xor(a, _mm_slli_si128::<4>(a));
    let a = xor(a, _mm_slli_si128::<4>(a));
    xor(a, t)
}

/// AES-256: the odd step (SubWord only, on the previous even key).
#[target_feature(enable = "aes,sse2")]
fn expand256_odd(a: __m128i, b: __m128i) -> __m128i {
    let t = _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(a));
    let b = xor(b, _mm_slli_si128::<4>(b));
    let b = xor(b, _mm_slli_si128::<4>(b));
    let b = xor(b, _mm_slli_si128::<4>(b));
    xor(b, t)
}

fn load(b: &[u8]) -> __m128i {
    let mut a = [0u8; 16];
    a[..b.len()].copy_from_slice(b);
    from_bytes(a)
}

/// Byte reversal: GHASH blocks ↔ POLYVAL blocks.
#[inline]
#[target_feature(enable = "ssse3")]
pub(super) fn bswap(v: __m128i) -> __m128i {
    _mm_shuffle_epi8(v, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
}

/// Unreduced 256-bit carry-less product accumulation: (lo, mid, hi) += a·b.
#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
fn mul_acc(acc: &mut (__m128i, __m128i, __m128i), a: __m128i, b: __m128i) {
    acc.0 = xor(acc.0, _mm_clmulepi64_si128::<0x00>(a, b));
    acc.1 = xor(acc.1, xor(_mm_clmulepi64_si128::<0x01>(a, b), _mm_clmulepi64_si128::<0x10>(a, b)));
    acc.2 = xor(acc.2, _mm_clmulepi64_si128::<0x11>(a, b));
}

/// POLYVAL's Montgomery reduction of a 256-bit product: returns product · x^-128 mod P.
#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
pub(super) fn reduce(acc: (__m128i, __m128i, __m128i)) -> __m128i {
    let (lo, mid, hi) = acc;
    let lo = xor(lo, _mm_slli_si128::<8>(mid));
    let hi = xor(hi, _mm_srli_si128::<8>(mid));
    // P = x^128 + x^127 + x^126 + x^121 + 1; fold the low half up twice.
    let poly = _mm_set_epi64x(0xc200_0000_0000_0000u64 as i64, 1);
    let t = _mm_clmulepi64_si128::<0x10>(lo, poly);
    let lo = xor(_mm_shuffle_epi32::<0x4e>(lo), t);
    let t = _mm_clmulepi64_si128::<0x10>(lo, poly);
    let lo = xor(_mm_shuffle_epi32::<0x4e>(lo), t);
    xor(hi, lo)
}

#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
fn dot(a: __m128i, b: __m128i) -> __m128i {
    let z = _mm_setzero_si128();
    let mut acc = (z, z, z);
    mul_acc(&mut acc, a, b);
    reduce(acc)
}

/// The nonce ‖ 0^32 block, assembled in registers (building it in a stack array and loading
/// that stalls on store-to-load forwarding).
#[inline]
#[target_feature(enable = "sse2")]
pub(super) fn j0_base(nonce: &[u8; NONCE_LEN]) -> __m128i {
    let lo =
        u64::from_le_bytes([nonce[0], nonce[1], nonce[2], nonce[3], nonce[4], nonce[5], nonce[6], nonce[7]]);
    let hi = u32::from_le_bytes([nonce[8], nonce[9], nonce[10], nonce[11]]);
    _mm_set_epi64x(hi as i64, lo as i64)
}

/// GHASH's lengths block, byte-reversed.
#[inline]
#[target_feature(enable = "sse2")]
pub(super) fn lens_block(aad: &[u8], ct: &[u8]) -> __m128i {
    _mm_set_epi64x((aad.len() as u64 * 8) as i64, (ct.len() as u64 * 8) as i64)
}

/// A full block (`b` has 16 bytes).
#[inline(always)]
fn load16(b: &[u8]) -> __m128i {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    from_bytes(a)
}

/// A partial block (`s` shorter than 16 bytes), zero-padded, assembled in registers from
/// overlapping 8- and 4-byte reads (no copy through memory). Branches on the length only.
#[inline]
#[target_feature(enable = "sse2")]
fn load_partial(s: &[u8]) -> __m128i {
    let n = s.len();
    let le64 = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let le32 = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as u64;
    let (lo, hi) = if n >= 8 {
        let hi = if n == 8 { 0 } else { le64(&s[n - 8..]) >> ((16 - n) * 8) };
        (le64(&s[..8]), hi)
    } else if n >= 4 {
        (le32(&s[..4]) | (le32(&s[n - 4..]) << ((n - 4) * 8)), 0)
    } else {
        (s.iter().enumerate().fold(0u64, |a, (i, &b)| a | (b as u64) << (i * 8)), 0)
    };
    _mm_set_epi64x(hi as i64, lo as i64)
}

/// The GHASH input blocks of a packet, byte-reversed: AAD, ciphertext (each zero-padded),
/// lengths.
struct Blocks<'a> {
    aad: &'a [u8],
    ct: &'a [u8],
    na: usize,
    total: usize,
    i: usize,
    /// The lengths block (byte-reversed: bits of AAD high, bits of ciphertext low), when it
    /// ends the stream. One 16-byte value, so it is stored and loaded whole.
    lens: __m128i,
}

impl<'a> Blocks<'a> {
    /// The whole input of a packet: `aad`, `ct`, lengths.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn new(aad: &'a [u8], ct: &'a [u8]) -> Self {
        Self::part(aad, ct, true, lens_block(aad, ct))
    }

    /// Part of it: `a` then `b` (each zero-padded), then the lengths block if `with_lens`.
    #[inline]
    fn part(a: &'a [u8], b: &'a [u8], with_lens: bool, lens: __m128i) -> Self {
        let na = a.len().div_ceil(16);
        Self { aad: a, ct: b, na, total: na + b.len().div_ceil(16) + with_lens as usize, i: 0, lens }
    }

    /// The next block (called exactly `total` times).
    #[inline]
    #[target_feature(enable = "sse2,ssse3")]
    fn next(&mut self) -> __m128i {
        let i = self.i;
        self.i += 1;
        let (s, o) = if i < self.na {
            (self.aad, i * 16)
        } else if (i - self.na) * 16 < self.ct.len() {
            (self.ct, (i - self.na) * 16)
        } else {
            return self.lens;
        };
        let b = &s[o..s.len().min(o + 16)];
        bswap(if b.len() == 16 { load16(b) } else { load_partial(b) })
    }
}

/// Streaming GHASH: blocks are multiplied by the key power they need within their chunk of
/// (at most) eight, and each chunk is reduced once.
struct Ghash<'k> {
    key: &'k GcmKey,
    /// The reduced sum of the chunks done, xored into the next block pushed (the first of
    /// its chunk), then zero; after the last block, the result.
    acc: __m128i,
    sum: (__m128i, __m128i, __m128i),
    /// Key power of the next block (counts down to 0 within a chunk); blocks left after
    /// the current chunk.
    p: usize,
    left: usize,
}

impl<'k> Ghash<'k> {
    #[inline]
    #[target_feature(enable = "sse2")]
    fn new(key: &'k GcmKey, total: usize) -> Self {
        let z = _mm_setzero_si128();
        let k = total.min(8);
        Self { key, acc: z, sum: (z, z, z), p: k.wrapping_sub(1), left: total - k }
    }

    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn push(&mut self, x: __m128i) {
        let z = _mm_setzero_si128();
        mul_acc(&mut self.sum, xor(x, self.acc), self.key.hpow[self.p & 7]);
        self.acc = z;
        if self.p == 0 {
            self.acc = reduce(self.sum);
            self.sum = (z, z, z);
            let k = self.left.min(8);
            self.left -= k;
            self.p = k.wrapping_sub(1);
        } else {
            self.p -= 1;
        }
    }
}

impl GcmKey {
    /// Expands `key` (16 or 32 bytes, checked by the caller).
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
    /// `path` must be available on this CPU ([`GcmPath::available`]).
    pub(super) fn new(algorithm: AeadAlgorithm, key: &[u8], path: GcmPath) -> Self {
        let z = _mm_setzero_si128();
        let mut rk = [z; 15];
        let rounds = if key.len() == 16 {
            let mut k = load(key);
            rk[0] = k;
            macro_rules! step {
                ($i:expr, $r:expr) => {
                    k = expand128_step::<$r>(k);
                    rk[$i] = k;
                };
            }
            step!(1, 0x01);
            step!(2, 0x02);
            step!(3, 0x04);
            step!(4, 0x08);
            step!(5, 0x10);
            step!(6, 0x20);
            step!(7, 0x40);
            step!(8, 0x80);
            step!(9, 0x1b);
            step!(10, 0x36);
            10
        } else {
            let mut a = load(&key[..16]);
            let mut b = load(&key[16..32]);
            rk[0] = a;
            rk[1] = b;
            macro_rules! step {
                ($i:expr, $r:expr) => {
                    a = expand256_even::<$r>(a, b);
                    rk[$i] = a;
                    b = expand256_odd(a, b);
                    rk[$i + 1] = b;
                };
            }
            step!(2, 0x01);
            step!(4, 0x02);
            step!(6, 0x04);
            step!(8, 0x08);
            step!(10, 0x10);
            step!(12, 0x20);
            rk[14] = expand256_even::<0x40>(a, b);
            14
        };
        // SAFETY: `__m256i` and `[u8; 32]` have the same size; every bit pattern is valid.
        let z2 = unsafe { std::mem::transmute::<[u8; 32], __m256i>([0; 32]) };
        let mut me = Self {
            algorithm,
            rounds,
            rk,
            hpow: [z; 8],
            wide: false,
            rk2: [z2; 15],
            hpair: [z2; 7],
            path,
            z512: None,
        };
        // H = E(K, 0); the POLYVAL key is mulX(ByteReverse(H)) (RFC 8452 Appendix A).
        let h = bswap(me.encrypt1(z));
        let carry = _mm_srai_epi32::<31>(_mm_shuffle_epi32::<0xff>(h));
        let shifted = _mm_or_si128(_mm_slli_epi64::<1>(h), _mm_srli_epi64::<63>(_mm_slli_si128::<8>(h)));
        let poly = _mm_set_epi64x(0xc200_0000_0000_0000u64 as i64, 1);
        let h = xor(shifted, _mm_and_si128(carry, poly));
        me.hpow[0] = h;
        for i in 1..8 {
            me.hpow[i] = dot(me.hpow[i - 1], h);
        }
        match path {
            GcmPath::AesNi => {}
            // SAFETY: the caller checked that the path's CPU features (a superset of AVX2) are
            // available.
            GcmPath::Vaes256 => unsafe { me.widen() },
            GcmPath::Avx512 => {
                let mut pows = [z; avx512::NPOW];
                pows[0] = h;
                for i in 1..avx512::NPOW {
                    pows[i] = dot(pows[i - 1], h);
                }
                // SAFETY: as above (AVX-512F is part of the path).
                me.z512 = Some(unsafe { avx512::Tables::new(&me.rk, &pows) });
                for p in pows.iter_mut() {
                    // SAFETY: `p` is a valid, aligned, exclusive reference.
                    unsafe { std::ptr::write_volatile(p, z) };
                }
            }
        }
        me
    }

    /// Fills the 256-bit tables and turns the wide path on.
    #[target_feature(enable = "avx2")]
    fn widen(&mut self) {
        self.wide = true;
        for i in 0..15 {
            self.rk2[i] = _mm256_set_m128i(self.rk[i], self.rk[i]);
        }
        for j in 0..7 {
            self.hpair[j] = _mm256_set_m128i(self.hpow[j], self.hpow[j + 1]);
        }
    }

    /// Eight blocks with VAES, two per instruction.
    #[target_feature(enable = "vaes,avx2,aes,sse2")]
    fn encrypt8_wide(&self, b: &mut [__m128i; LANES]) {
        // The blocks were stored 16 bytes at a time: load them 16 bytes at a time too (a
        // 32-byte load of two 16-byte stores misses store-to-load forwarding and stalls).
        // SAFETY: each reference is valid and aligned; volatile only keeps the loads apart.
        let l = |i: usize| unsafe { std::ptr::read_volatile(&b[i]) };
        let mut y = [
            _mm256_set_m128i(l(1), l(0)),
            _mm256_set_m128i(l(3), l(2)),
            _mm256_set_m128i(l(5), l(4)),
            _mm256_set_m128i(l(7), l(6)),
        ];
        for x in y.iter_mut() {
            *x = _mm256_xor_si256(*x, self.rk2[0]);
        }
        for r in &self.rk2[1..self.rounds] {
            for x in y.iter_mut() {
                *x = _mm256_aesenc_epi128(*x, *r);
            }
        }
        let last = self.rk2[self.rounds];
        for (i, x) in y.iter().enumerate() {
            let x = _mm256_aesenclast_epi128(*x, last);
            b[2 * i] = _mm256_castsi256_si128(x);
            b[2 * i + 1] = _mm256_extracti128_si256::<1>(x);
        }
    }

    /// [`GcmKey::ghash`] with VPCLMULQDQ: blocks are multiplied two per instruction.
    #[target_feature(enable = "vpclmulqdq,avx2,pclmulqdq,sse2,ssse3")]
    fn ghash_wide(&self, aad: &[u8], ct: &[u8]) -> __m128i {
        let z = _mm_setzero_si128();
        if ct.len() < 16 * LANES {
            return self.absorb_wide(z, Blocks::new(aad, ct));
        }
        // Long packets: AAD, then eight ciphertext blocks at a time straight from memory,
        // then the rest with the lengths.
        let lens = lens_block(aad, ct);
        let mut acc = self.absorb_wide(z, Blocks::part(aad, &[], false, lens));
        let mut chunks = ct.chunks_exact(16 * LANES);
        for c in &mut chunks {
            acc = self.absorb8_wide(acc, c);
        }
        self.absorb_wide(acc, Blocks::part(&[], chunks.remainder(), true, lens))
    }

    /// GHASH of eight full blocks (`c`: 128 bytes) onto `acc`.
    #[inline]
    #[target_feature(enable = "vpclmulqdq,avx2,pclmulqdq,sse2,ssse3")]
    fn absorb8_wide(&self, acc: __m128i, c: &[u8]) -> __m128i {
        let z2 = _mm256_setzero_si256();
        let (mut lo, mut mid, mut hi) = (z2, z2, z2);
        for (p, pair) in c.chunks_exact(32).enumerate() {
            let a = bswap(load16(&pair[..16]));
            let a = if p == 0 { xor(a, acc) } else { a };
            let x = _mm256_set_m128i(bswap(load16(&pair[16..])), a);
            // Blocks 2p, 2p + 1 take H^(8-2p), H^(7-2p): hpair[6 - 2p].
            let h = self.hpair[(6 - 2 * p) % 7];
            lo = _mm256_xor_si256(lo, _mm256_clmulepi64_epi128::<0x00>(x, h));
            mid = _mm256_xor_si256(
                mid,
                _mm256_xor_si256(
                    _mm256_clmulepi64_epi128::<0x01>(x, h),
                    _mm256_clmulepi64_epi128::<0x10>(x, h),
                ),
            );
            hi = _mm256_xor_si256(hi, _mm256_clmulepi64_epi128::<0x11>(x, h));
        }
        let fold = |v: __m256i| xor(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        reduce((fold(lo), fold(mid), fold(hi)))
    }

    /// GHASH of the blocks of `src` onto `acc`, in chunks of up to eight.
    #[inline]
    #[target_feature(enable = "vpclmulqdq,avx2,pclmulqdq,sse2,ssse3")]
    fn absorb_wide(&self, mut acc: __m128i, mut src: Blocks<'_>) -> __m128i {
        let mut left = src.total;
        let z = _mm_setzero_si128();
        let z2 = _mm256_setzero_si256();
        while left > 0 {
            let k = left.min(8);
            left -= k;
            let mut sum = (z, z, z);
            let mut t = 0;
            if k % 2 == 1 {
                mul_acc(&mut sum, xor(src.next(), acc), self.hpow[k - 1]);
                t = 1;
            }
            let (mut lo, mut mid, mut hi) = (z2, z2, z2);
            while t < k {
                let mut a = src.next();
                if t == 0 {
                    a = xor(a, acc);
                }
                let x = _mm256_set_m128i(src.next(), a);
                // (H^(k-t), H^(k-t-1)) is hpair[k - t - 2].
                let h = self.hpair[(k - t - 2) % 7];
                lo = _mm256_xor_si256(lo, _mm256_clmulepi64_epi128::<0x00>(x, h));
                mid = _mm256_xor_si256(
                    mid,
                    _mm256_xor_si256(
                        _mm256_clmulepi64_epi128::<0x01>(x, h),
                        _mm256_clmulepi64_epi128::<0x10>(x, h),
                    ),
                );
                hi = _mm256_xor_si256(hi, _mm256_clmulepi64_epi128::<0x11>(x, h));
                t += 2;
            }
            let fold = |v: __m256i| xor(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            acc = reduce((xor(sum.0, fold(lo)), xor(sum.1, fold(mid)), xor(sum.2, fold(hi))));
        }
        acc
    }

    #[inline]
    #[target_feature(enable = "aes,sse2")]
    pub(super) fn encrypt1(&self, b: __m128i) -> __m128i {
        let mut s = xor(b, self.rk[0]);
        for r in &self.rk[1..self.rounds] {
            s = _mm_aesenc_si128(s, *r);
        }
        _mm_aesenclast_si128(s, self.rk[self.rounds])
    }

    /// Eight blocks, rounds interleaved.
    #[inline]
    #[target_feature(enable = "aes,sse2")]
    fn encrypt8(&self, b: &mut [__m128i; LANES]) {
        for x in b.iter_mut() {
            *x = xor(*x, self.rk[0]);
        }
        for r in &self.rk[1..self.rounds] {
            for x in b.iter_mut() {
                *x = _mm_aesenc_si128(*x, *r);
            }
        }
        let last = self.rk[self.rounds];
        for x in b.iter_mut() {
            *x = _mm_aesenclast_si128(*x, last);
        }
    }

    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2,ssse3")]
    fn ghash_any(&self, aad: &[u8], ct: &[u8]) -> __m128i {
        if self.wide {
            // SAFETY: `wide` is set only when VPCLMULQDQ and AVX2 were detected (`new`).
            unsafe { self.ghash_wide(aad, ct) }
        } else {
            self.ghash(aad, ct)
        }
    }

    /// POLYVAL-domain GHASH of `aad` and `ct` (with the lengths block); still byte-reversed.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2,ssse3")]
    fn ghash(&self, aad: &[u8], ct: &[u8]) -> __m128i {
        let total = aad.len().div_ceil(16) + ct.len().div_ceil(16) + 1;
        let mut g = Ghash::new(self, total);
        let mut blocks = aad.chunks_exact(16);
        for b in &mut blocks {
            g.push(bswap(load16(b)));
        }
        if !blocks.remainder().is_empty() {
            g.push(bswap(load_partial(blocks.remainder())));
        }
        let mut blocks = ct.chunks_exact(16);
        for b in &mut blocks {
            g.push(bswap(load16(b)));
        }
        if !blocks.remainder().is_empty() {
            g.push(bswap(load_partial(blocks.remainder())));
        }
        // The lengths block, byte-reversed: len(C) in bits in the low half, len(A) high.
        g.push(_mm_set_epi64x((aad.len() as u64 * 8) as i64, (ct.len() as u64 * 8) as i64));
        g.acc
    }
    /// CTR over the jobs of one group. `SEAL`: every job, and `tag_mask[j]` gets E(K, J0).
    /// Open: `ghash[j]` holds each job's GHASH; the tag is checked when its mask is ready and
    /// a job whose tag fails is not decrypted (`ok[j]` false).
    #[inline]
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
    fn ctr_group<const SEAL: bool>(
        &self,
        jobs: &mut [AeadJob<'_>],
        tag_mask: &mut [__m128i; GROUP],
        ghash: &[__m128i; GROUP],
        ok: &mut [bool; GROUP],
    ) {
        // Queue entries: counter blocks, and (job, byte offset or `TAG` for the tag mask).
        const TAG: usize = usize::MAX;
        let mut blocks = [_mm_setzero_si128(); LANES];
        let mut dest = [(0usize, 0usize); LANES];
        let mut n = 0;
        let mut flush = |blocks: &mut [__m128i; LANES],
                         dest: &[(usize, usize); LANES],
                         n: usize,
                         jobs: &mut [AeadJob<'_>],
                         ok: &mut [bool; GROUP]| {
            if self.wide {
                // SAFETY: `wide` is set only when VAES and AVX2 were detected (`new`).
                unsafe { self.encrypt8_wide(blocks) }
            } else {
                self.encrypt8(blocks)
            }
            for (&ks, &(j, off)) in blocks[..n].iter().zip(&dest[..n]) {
                if off == TAG {
                    if SEAL {
                        tag_mask[j] = ks;
                    } else {
                        let want = to_bytes(xor(ks, ghash[j]));
                        let diff = want.iter().zip(jobs[j].icv.iter()).fold(0u8, |d, (a, b)| d | (a ^ b));
                        ok[j] = diff == 0;
                    }
                    continue;
                }
                // Sealing queues only jobs that are processed (`ok` is true for all).
                if !SEAL && !ok[j] {
                    continue;
                }
                let data = &mut *jobs[j].data;
                match data.get_mut(off..off + 16) {
                    Some(d) => {
                        let d: &mut [u8; 16] = d.try_into().unwrap_or_else(|_| unreachable!("16-byte range"));
                        *d = to_bytes(xor(from_bytes(*d), ks));
                    }
                    None => {
                        for (d, k) in data[off..].iter_mut().zip(to_bytes(ks)) {
                            *d ^= k;
                        }
                    }
                }
            }
        };
        for j in 0..jobs.len() {
            let len = jobs[j].data.len();
            if len > MAX_LEN {
                continue;
            }
            let base = j0_base(&jobs[j].nonce);
            let nblocks = len.div_ceil(16);
            // Block 0 is J0 (counter 1, the tag mask); data block i uses counter i + 2.
            blocks[n] = _mm_insert_epi32::<3>(base, 1u32.to_be() as i32);
            dest[n] = (j, TAG);
            n += 1;
            if n == LANES {
                flush(&mut blocks, &dest, n, jobs, ok);
                n = 0;
            }
            // Runs of eight full blocks of a long packet are done in place, without the
            // queue; the last (up to eight) blocks go through the queue, interleaved with
            // the other packets.
            let runs = len / (16 * LANES);
            let mut b = 1;
            if runs > 0 {
                if !SEAL && n > 0 {
                    // The tag must be checked before anything is decrypted.
                    flush(&mut blocks, &dest, n, jobs, ok);
                    n = 0;
                }
                if ok[j] {
                    self.ctr_runs(base, &mut jobs[j].data[..runs * 16 * LANES]);
                }
                b += runs * LANES;
            }
            while b <= nblocks {
                blocks[n] = _mm_insert_epi32::<3>(base, (b as u32 + 1).to_be() as i32);
                dest[n] = (j, (b - 1) * 16);
                n += 1;
                if n == LANES {
                    flush(&mut blocks, &dest, n, jobs, ok);
                    n = 0;
                }
                b += 1;
            }
        }
        if n > 0 {
            flush(&mut blocks, &dest, n, jobs, ok);
        }
    }

    /// CTR over `data` (a multiple of 128 bytes: data blocks 0.. of a packet whose J0 is
    /// `base`), eight blocks at a time.
    #[inline]
    #[target_feature(enable = "aes,sse2,sse4.1")]
    fn ctr_runs(&self, base: __m128i, data: &mut [u8]) {
        if self.wide {
            // SAFETY: `wide` is set only when VAES and AVX2 were detected (`new`).
            return unsafe { self.ctr_runs_wide(base, data) };
        }
        let mut ctr = 2u32;
        for chunk in data.chunks_exact_mut(16 * LANES) {
            let mut ks = [base; LANES];
            for k in ks.iter_mut() {
                *k = _mm_insert_epi32::<3>(base, ctr.to_be() as i32);
                ctr = ctr.wrapping_add(1);
            }
            if self.wide {
                // SAFETY: `wide` is set only when VAES and AVX2 were detected (`new`).
                unsafe { self.encrypt8_wide(&mut ks) }
            } else {
                self.encrypt8(&mut ks)
            }
            for (d, k) in chunk.chunks_exact_mut(16).zip(ks) {
                let d: &mut [u8; 16] = d.try_into().unwrap_or_else(|_| unreachable!("16-byte chunk"));
                *d = (u128::from_ne_bytes(*d) ^ u128::from_ne_bytes(to_bytes(k))).to_ne_bytes();
            }
        }
    }

    /// [`GcmKey::ctr_runs`] with VAES, counters built in registers.
    #[target_feature(enable = "vaes,avx2,aes,sse2")]
    fn ctr_runs_wide(&self, base: __m128i, data: &mut [u8]) {
        let base = _mm256_set_m128i(base, base);
        let mut ctr = 2u32;
        for chunk in data.chunks_exact_mut(16 * LANES) {
            let mut y = [base; 4];
            for x in y.iter_mut() {
                *x = _mm256_insert_epi32::<3>(*x, ctr.to_be() as i32);
                *x = _mm256_insert_epi32::<7>(*x, ctr.wrapping_add(1).to_be() as i32);
                ctr = ctr.wrapping_add(2);
                *x = _mm256_xor_si256(*x, self.rk2[0]);
            }
            for r in &self.rk2[1..self.rounds] {
                for x in y.iter_mut() {
                    *x = _mm256_aesenc_epi128(*x, *r);
                }
            }
            let last = self.rk2[self.rounds];
            for (d, x) in chunk.chunks_exact_mut(32).zip(y) {
                let d: &mut [u8; 32] = d.try_into().unwrap_or_else(|_| unreachable!("32-byte chunk"));
                let v = _mm256_xor_si256(_mm256_aesenclast_epi128(x, last), from_bytes32(*d));
                *d = to_bytes32(v);
            }
        }
    }

    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
    fn seal_all(&self, jobs: &mut [AeadJob<'_>]) {
        let z = _mm_setzero_si128();
        for group in jobs.chunks_mut(GROUP) {
            let mut ok = [true; GROUP];
            for (j, job) in group.iter_mut().enumerate() {
                if job.data.len() > MAX_LEN {
                    job.result = Err(AeadError::Rejected);
                    ok[j] = false;
                }
            }
            let mut mask = [z; GROUP];
            self.ctr_group::<true>(group, &mut mask, &[z; GROUP], &mut ok);
            for (j, job) in group.iter_mut().enumerate() {
                if ok[j] {
                    let s = bswap(self.ghash_any(job.aad, job.data));
                    *job.icv = to_bytes(xor(s, mask[j]));
                    job.result = Ok(());
                }
            }
        }
    }

    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
    fn open_all(&self, jobs: &mut [AeadJob<'_>]) {
        let z = _mm_setzero_si128();
        for group in jobs.chunks_mut(GROUP) {
            let mut gh = [z; GROUP];
            let mut ok = [false; GROUP];
            for (j, job) in group.iter().enumerate() {
                gh[j] = bswap(self.ghash_any(job.aad, job.data));
            }
            self.ctr_group::<false>(group, &mut [z; GROUP], &gh, &mut ok);
            for (j, job) in group.iter_mut().enumerate() {
                job.result =
                    if ok[j] && job.data.len() <= MAX_LEN { Ok(()) } else { Err(AeadError::AuthFailed) };
            }
        }
    }
}

impl EspAead for GcmKey {
    fn algorithm(&self) -> AeadAlgorithm {
        self.algorithm
    }

    fn provider_name(&self) -> &str {
        "batch-gcm"
    }

    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &mut [u8; ICV_LEN],
    ) -> Result<(), AeadError> {
        crate::esp::aead::seal_one(self, nonce, aad, data, icv)
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &[u8; ICV_LEN],
    ) -> Result<(), AeadError> {
        crate::esp::aead::open_one(self, nonce, aad, data, icv)
    }

    fn seal_batch(&self, jobs: &mut [AeadJob<'_>]) {
        if let Some(t) = &self.z512 {
            // SAFETY: the tables exist only when the CPU has the 512-bit path (`new`).
            return unsafe { avx512::seal_all(self, t, jobs) };
        }
        // SAFETY: a `GcmKey` exists only when the CPU features were detected
        // (`BatchGcm::new_aead`).
        unsafe { self.seal_all(jobs) }
    }

    fn open_batch(&self, jobs: &mut [AeadJob<'_>]) {
        if let Some(t) = &self.z512 {
            // SAFETY: as in `seal_batch`.
            return unsafe { avx512::open_all(self, t, jobs) };
        }
        // SAFETY: as in `seal_batch`.
        unsafe { self.open_all(jobs) }
    }
}
