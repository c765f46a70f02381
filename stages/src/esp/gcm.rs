//! A batch AES-GCM ([`BatchGcm`]) on AES-NI and PCLMULQDQ: the provider ESP uses for
//! AES-128/256-GCM when the CPU has them ([`crate::esp::aead::fastest_provider`]).
//!
//! Why a separate implementation: one small packet is a latency-bound chain (a 64-byte ESP
//! payload is six dependent AES block chains and a seven-block GHASH), so sealing packets one
//! at a time leaves the AES and carry-less multiply units mostly idle. Here a batch is
//! processed as one stream:
//! - **AES-CTR across packets**: the counter blocks of up to eight packets (the tag mask
//!   `E(K, J0)` of each and its data blocks) are queued eight at a time and encrypted with the
//!   rounds of all eight interleaved, so the AES unit's pipeline stays full whatever the packet
//!   sizes; a long packet fills the queue by itself.
//! - **GHASH aggregated eight blocks per reduction** with precomputed powers `H^1..H^8`
//!   (in the POLYVAL representation of RFC 8452 Appendix A, which avoids bit reflection), and
//!   packets of a group are independent chains the CPU overlaps.
//! - Groups of eight packets keep their data in L1 between the CTR and GHASH passes.
//!
//! Constant time by construction: AES-NI and PCLMULQDQ take data-independent time, there are no
//! tables, and branches and indices depend only on lengths (public). The tag is compared by
//! OR-ing the XOR of all bytes; only the final verdict (public: the packet is dropped or not)
//! is branched on, and a packet whose tag fails is left undecrypted.
//!
//! Correctness: the published vectors (draft-mcgrew-gcm-test-01 through the ESP layer in
//! `tests/esp_vectors.rs`, NIST GCM test cases here) and a proptest comparing seal and open
//! with RustCrypto's `aes-gcm` on random keys, nonces, AAD and lengths, batched and single
//! (`tests/gcm_batch.rs`).
//!
//! `unsafe` is confined to this module: the 16-byte conversions between `__m128i` and byte
//! arrays (every bit pattern is valid for both). The intrinsics themselves are safe inside the
//! `#[target_feature]` functions, which are only entered after run-time CPU detection.
#![allow(unsafe_code)]

use super::aead::{AeadAlgorithm, AeadError, AeadJob, AeadProvider, EspAead, ICV_LEN, NONCE_LEN};

/// The batch AES-GCM provider (AES-128-GCM and AES-256-GCM; needs AES-NI, PCLMULQDQ and
/// SSE4.1, detected at run time — [`BatchGcm::detected`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchGcm;

impl BatchGcm {
    /// True when this CPU can run it.
    pub fn detected() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("aes")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
                && std::arch::is_x86_feature_detected!("sse4.1")
                && std::arch::is_x86_feature_detected!("ssse3")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

impl AeadProvider for BatchGcm {
    fn name(&self) -> &str {
        "batch-gcm"
    }

    fn supports(&self, algorithm: AeadAlgorithm) -> bool {
        algorithm != AeadAlgorithm::ChaCha20Poly1305 && Self::detected()
    }

    fn new_aead(&self, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn EspAead>, AeadError> {
        if !self.supports(algorithm) {
            return Err(AeadError::Unsupported(algorithm));
        }
        if key.len() != algorithm.key_len() {
            return Err(AeadError::BadKeyLength {
                algorithm,
                expected: algorithm.keymat_len(),
                got: key.len() + super::aead::SALT_LEN,
            });
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `supports` checked the CPU features `GcmKey::new` is compiled for.
            Ok(Box::new(unsafe { x86::GcmKey::new(algorithm, key) }))
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Err(AeadError::Unsupported(algorithm))
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{AeadAlgorithm, AeadError, AeadJob, EspAead, ICV_LEN, NONCE_LEN};

    /// Packets whose CTR and GHASH passes run together (their data stays in L1).
    const GROUP: usize = 8;
    /// Counter blocks encrypted together.
    const LANES: usize = 8;
    /// Largest plaintext: the 32-bit block counter starts at 2 (NIST SP 800-38D: 2^39 - 256 bits).
    const MAX_LEN: usize = ((1u64 << 32) - 2) as usize * 16;

    #[inline(always)]
    fn to_bytes(v: __m128i) -> [u8; 16] {
        // SAFETY: `__m128i` and `[u8; 16]` have the same size and every bit pattern is valid
        // for both.
        unsafe { std::mem::transmute::<__m128i, [u8; 16]>(v) }
    }

    #[inline(always)]
    fn from_bytes(b: [u8; 16]) -> __m128i {
        // SAFETY: as in `to_bytes`.
        unsafe { std::mem::transmute::<[u8; 16], __m128i>(b) }
    }

    /// An expanded AES-GCM key: round keys and the GHASH key powers.
    pub(super) struct GcmKey {
        algorithm: AeadAlgorithm,
        rounds: usize,
        rk: [__m128i; 15],
        /// `hpow[i]` = H^(i+1) in the POLYVAL (Montgomery) representation.
        hpow: [__m128i; 8],
    }

    impl std::fmt::Debug for GcmKey {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "BatchGcm({})", self.algorithm.name())
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
        }
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn xor(a: __m128i, b: __m128i) -> __m128i {
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
    fn bswap(v: __m128i) -> __m128i {
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
    fn reduce(acc: (__m128i, __m128i, __m128i)) -> __m128i {
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

    impl GcmKey {
        /// Expands `key` (16 or 32 bytes, checked by the caller).
        #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
        pub(super) fn new(algorithm: AeadAlgorithm, key: &[u8]) -> Self {
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
            let mut me = Self { algorithm, rounds, rk, hpow: [z; 8] };
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
            me
        }

        #[inline]
        #[target_feature(enable = "aes,sse2")]
        fn encrypt1(&self, b: __m128i) -> __m128i {
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

        /// POLYVAL-domain GHASH of `aad` and `ct` (with the lengths block); still byte-reversed.
        #[inline]
        #[target_feature(enable = "pclmulqdq,sse2,ssse3")]
        fn ghash(&self, aad: &[u8], ct: &[u8]) -> __m128i {
            let na = aad.len().div_ceil(16);
            let nc = ct.len().div_ceil(16);
            let total = na + nc + 1;
            let mut lens = [0u8; 16];
            lens[..8].copy_from_slice(&((aad.len() as u64) * 8).to_be_bytes());
            lens[8..].copy_from_slice(&((ct.len() as u64) * 8).to_be_bytes());
            let block = |i: usize| -> __m128i {
                let raw = if i < na {
                    let s = &aad[i * 16..aad.len().min(i * 16 + 16)];
                    match <[u8; 16]>::try_from(s) {
                        Ok(a) => from_bytes(a),
                        Err(_) => load(s),
                    }
                } else if i < na + nc {
                    let o = (i - na) * 16;
                    let s = &ct[o..ct.len().min(o + 16)];
                    match <[u8; 16]>::try_from(s) {
                        Ok(a) => from_bytes(a),
                        Err(_) => load(s),
                    }
                } else {
                    from_bytes(lens)
                };
                bswap(raw)
            };
            let z = _mm_setzero_si128();
            let mut acc = z;
            let mut i = 0;
            while i < total {
                let k = (total - i).min(8);
                let mut sum = (z, z, z);
                for t in 0..k {
                    let mut x = block(i + t);
                    if t == 0 {
                        x = xor(x, acc);
                    }
                    mul_acc(&mut sum, x, self.hpow[k - 1 - t]);
                }
                acc = reduce(sum);
                i += k;
            }
            acc
        }

        /// CTR over the jobs of one group. `seal`: every job, and `tag_mask[j]` gets E(K, J0).
        /// Open: `ghash[j]` holds each job's GHASH; the tag is checked when its mask is ready and
        /// a job whose tag fails is not decrypted (`ok[j]` false).
        #[inline]
        #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
        fn ctr_group(
            &self,
            jobs: &mut [AeadJob<'_>],
            tag_mask: &mut [__m128i; GROUP],
            ghash: &[__m128i; GROUP],
            ok: &mut [bool; GROUP],
            seal: bool,
        ) {
            // Queue entries: (job, byte offset or usize::MAX for the tag mask).
            let mut blocks = [_mm_setzero_si128(); LANES];
            let mut dest = [(0usize, 0usize); LANES];
            let mut n = 0;
            let mut flush = |blocks: &mut [__m128i; LANES],
                             dest: &[(usize, usize); LANES],
                             n: usize,
                             jobs: &mut [AeadJob<'_>],
                             ok: &mut [bool; GROUP]| {
                self.encrypt8(blocks);
                for (ks, &(j, off)) in blocks.iter().zip(dest).take(n) {
                    if off == usize::MAX {
                        if seal {
                            tag_mask[j] = *ks;
                        } else {
                            let want = to_bytes(xor(*ks, ghash[j]));
                            let diff = want.iter().zip(jobs[j].icv.iter()).fold(0u8, |d, (a, b)| d | (a ^ b));
                            ok[j] = diff == 0;
                        }
                        continue;
                    }
                    if !ok[j] {
                        continue;
                    }
                    let data = &mut jobs[j].data;
                    let end = data.len().min(off + 16);
                    let ks = to_bytes(*ks);
                    match <&mut [u8; 16]>::try_from(&mut data[off..end]) {
                        Ok(d) => *d = (u128::from_ne_bytes(*d) ^ u128::from_ne_bytes(ks)).to_ne_bytes(),
                        Err(_) => {
                            for (d, k) in data[off..end].iter_mut().zip(ks) {
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
                let mut j0 = [0u8; 16];
                j0[..NONCE_LEN].copy_from_slice(&jobs[j].nonce);
                let base = from_bytes(j0);
                let nblocks = len.div_ceil(16);
                for b in 0..=nblocks {
                    // Block 0 is J0 (counter 1, the tag mask); data block i uses counter i + 2.
                    let ctr = (b as u32 + 1).to_be();
                    blocks[n] = _mm_insert_epi32::<3>(base, ctr as i32);
                    dest[n] = (j, if b == 0 { usize::MAX } else { (b - 1) * 16 });
                    n += 1;
                    if n == LANES {
                        flush(&mut blocks, &dest, n, jobs, ok);
                        n = 0;
                    }
                }
            }
            if n > 0 {
                flush(&mut blocks, &dest, n, jobs, ok);
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
                self.ctr_group(group, &mut mask, &[z; GROUP], &mut ok, true);
                for (j, job) in group.iter_mut().enumerate() {
                    if ok[j] {
                        let s = bswap(self.ghash(job.aad, job.data));
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
                    gh[j] = bswap(self.ghash(job.aad, job.data));
                }
                self.ctr_group(group, &mut [z; GROUP], &gh, &mut ok, false);
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
            let mut job = [AeadJob::new(*nonce, aad, data, icv)];
            self.seal_batch(&mut job);
            job[0].result
        }

        fn open(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            data: &mut [u8],
            icv: &[u8; ICV_LEN],
        ) -> Result<(), AeadError> {
            let mut icv = *icv;
            let mut job = [AeadJob::new(*nonce, aad, data, &mut icv)];
            self.open_batch(&mut job);
            job[0].result
        }

        fn seal_batch(&self, jobs: &mut [AeadJob<'_>]) {
            // SAFETY: a `GcmKey` exists only when the CPU features were detected
            // (`BatchGcm::new_aead`).
            unsafe { self.seal_all(jobs) }
        }

        fn open_batch(&self, jobs: &mut [AeadJob<'_>]) {
            // SAFETY: as in `seal_batch`.
            unsafe { self.open_all(jobs) }
        }
    }
}
