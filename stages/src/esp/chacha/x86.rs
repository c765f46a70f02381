//! The x86-64 kernels of the batch ChaCha20-Poly1305: ChaCha20 on sixteen (AVX-512) or eight
//! (AVX2) blocks at once, *state-transposed*: register `i` holds word `i` of every block, one
//! block per 32-bit lane, so the quarter rounds are plain lane-wise adds, xors and rotates and
//! the blocks of a call may belong to any packets of the batch (each lane has its own nonce and
//! counter). The sixteen words are transposed back to sixteen 64-byte blocks at the end.
//!
//! The batch driver ([`seal_all`], [`open_all`]) runs groups of up to [`GROUP`] packets:
//! 1. the Poly1305 key of every packet of the group (block 0 of each: one kernel call);
//! 2. opening: each packet's tag is computed over the ciphertext and checked (constant time);
//! 3. the data blocks (counter 1, 2, …) of every packet (opening: of every packet whose tag
//!    verified) are queued and generated sixteen at a time whatever the packet boundaries, and
//!    xored into the packets in place;
//! 4. sealing: the tags over the ciphertext.
//!
//! Poly1305: on the AVX-512 path eight packets in the lanes of IFMA vectors (`tags8_ifma`);
//! on the AVX2 path scalar (`poly1305.rs`), two packets at a time so that the CPU overlaps
//! their multiply chains.
//!
//! `unsafe` here: the loads and stores between the lane arrays / keystream buffer and the
//! registers (pointers into arrays of exactly the loaded size), and the calls into
//! `#[target_feature]` functions, which are only made through a [`Kernel`], which exists only
//! when run-time detection found the features.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use zeroize::Zeroize;

use super::poly1305::{Poly1305, aead_tag, le64};
use super::{ChaChaPath, MAX_LEN};
use crate::esp::aead::{AeadError, AeadJob, ICV_LEN, NONCE_LEN};

/// Packets per group (their data stays in L1 between the passes; one kernel call makes all
/// their Poly1305 keys).
const GROUP: usize = 16;
/// The most blocks one kernel call makes.
const LANES: usize = 16;

/// "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// The per-block inputs of a kernel call, one lane per block: counter and the three nonce
/// words (structure of arrays, so each is one vector load).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct Lanes {
    ctr: [u32; LANES],
    n0: [u32; LANES],
    n1: [u32; LANES],
    n2: [u32; LANES],
}

impl Lanes {
    const fn new() -> Self {
        Self { ctr: [0; LANES], n0: [0; LANES], n1: [0; LANES], n2: [0; LANES] }
    }

    #[inline(always)]
    fn set(&mut self, lane: usize, ctr: u32, nonce: &[u32; 3]) {
        self.ctr[lane] = ctr;
        self.n0[lane] = nonce[0];
        self.n1[lane] = nonce[1];
        self.n2[lane] = nonce[2];
    }
}

/// The output of a kernel call: block `i` is lane `i`'s keystream.
#[repr(C, align(64))]
pub(super) struct Keystream([[u8; 64]; LANES]);

impl Drop for Keystream {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A ChaCha20 kernel the CPU has: only made by [`Kernel::new`], after detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Kernel(ChaChaPath);

impl Kernel {
    /// The kernel of `path`, if this CPU runs it.
    pub(super) fn new(path: ChaChaPath) -> Option<Self> {
        path.available().then_some(Kernel(path))
    }

    pub(super) fn path(self) -> ChaChaPath {
        self.0
    }
}

/// The key words (little endian).
pub(super) fn key_words(key: &[u8; 32]) -> [u32; 8] {
    std::array::from_fn(|i| u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]))
}

fn nonce_words(n: &[u8; NONCE_LEN]) -> [u32; 3] {
    std::array::from_fn(|i| u32::from_le_bytes([n[4 * i], n[4 * i + 1], n[4 * i + 2], n[4 * i + 3]]))
}

macro_rules! rounds {
    ($x:ident, $add:ident, $xor:ident, $rol16:expr, $rol12:expr, $rol8:expr, $rol7:expr) => {{
        macro_rules! qr {
            ($a:literal, $b:literal, $c:literal, $d:literal) => {
                $x[$a] = $add($x[$a], $x[$b]);
                $x[$d] = $rol16($xor($x[$d], $x[$a]));
                $x[$c] = $add($x[$c], $x[$d]);
                $x[$b] = $rol12($xor($x[$b], $x[$c]));
                $x[$a] = $add($x[$a], $x[$b]);
                $x[$d] = $rol8($xor($x[$d], $x[$a]));
                $x[$c] = $add($x[$c], $x[$d]);
                $x[$b] = $rol7($xor($x[$b], $x[$c]));
            };
        }
        for _ in 0..10 {
            qr!(0, 4, 8, 12);
            qr!(1, 5, 9, 13);
            qr!(2, 6, 10, 14);
            qr!(3, 7, 11, 15);
            qr!(0, 5, 10, 15);
            qr!(1, 6, 11, 12);
            qr!(2, 7, 8, 13);
            qr!(3, 4, 9, 14);
        }
    }};
}

/// Sixteen blocks (lanes 0..16) in 512-bit registers.
// Indices address several arrays at once (state word, lane, block): plainer than zips.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f")]
fn blocks16(key: &[u32; 8], l: &Lanes, out: &mut Keystream) {
    // SAFETY: each array is 16 `u32`s = 64 readable bytes; the loads are unaligned.
    let ld = |a: &[u32; LANES]| unsafe { _mm512_loadu_si512(a.as_ptr().cast()) };
    let mut init = [_mm512_setzero_si512(); 16];
    for i in 0..4 {
        init[i] = _mm512_set1_epi32(SIGMA[i] as i32);
    }
    for i in 0..8 {
        init[4 + i] = _mm512_set1_epi32(key[i] as i32);
    }
    init[12] = ld(&l.ctr);
    init[13] = ld(&l.n0);
    init[14] = ld(&l.n1);
    init[15] = ld(&l.n2);
    let mut x = init;
    rounds!(
        x,
        _mm512_add_epi32,
        _mm512_xor_si512,
        _mm512_rol_epi32::<16>,
        _mm512_rol_epi32::<12>,
        _mm512_rol_epi32::<8>,
        _mm512_rol_epi32::<7>
    );
    for i in 0..16 {
        x[i] = _mm512_add_epi32(x[i], init[i]);
    }
    // Transpose: for each group q of four words, a[q][k] holds in its 128-bit lane L the
    // words 4q..4q+4 of block 4L + k.
    let mut a = [[_mm512_setzero_si512(); 4]; 4];
    for q in 0..4 {
        let (x0, x1, x2, x3) = (x[4 * q], x[4 * q + 1], x[4 * q + 2], x[4 * q + 3]);
        let t0 = _mm512_unpacklo_epi32(x0, x1);
        let t1 = _mm512_unpackhi_epi32(x0, x1);
        let t2 = _mm512_unpacklo_epi32(x2, x3);
        let t3 = _mm512_unpackhi_epi32(x2, x3);
        a[q] = [
            _mm512_unpacklo_epi64(t0, t2),
            _mm512_unpackhi_epi64(t0, t2),
            _mm512_unpacklo_epi64(t1, t3),
            _mm512_unpackhi_epi64(t1, t3),
        ];
    }
    // SAFETY: each block is 64 writable bytes; the stores are unaligned.
    let st = |b: &mut [u8; 64], v: __m512i| unsafe { _mm512_storeu_si512(b.as_mut_ptr().cast(), v) };
    for k in 0..4 {
        let e0 = _mm512_shuffle_i32x4::<0x44>(a[0][k], a[1][k]);
        let e1 = _mm512_shuffle_i32x4::<0xee>(a[0][k], a[1][k]);
        let f0 = _mm512_shuffle_i32x4::<0x44>(a[2][k], a[3][k]);
        let f1 = _mm512_shuffle_i32x4::<0xee>(a[2][k], a[3][k]);
        st(&mut out.0[k], _mm512_shuffle_i32x4::<0x88>(e0, f0));
        st(&mut out.0[4 + k], _mm512_shuffle_i32x4::<0xdd>(e0, f0));
        st(&mut out.0[8 + k], _mm512_shuffle_i32x4::<0x88>(e1, f1));
        st(&mut out.0[12 + k], _mm512_shuffle_i32x4::<0xdd>(e1, f1));
    }
}

#[inline(always)]
fn rol256<const L: i32, const R: i32>(v: __m256i) -> __m256i {
    // SAFETY: only inlined into `blocks8`, which enables AVX2.
    unsafe { _mm256_or_si256(_mm256_slli_epi32::<L>(v), _mm256_srli_epi32::<R>(v)) }
}

/// Eight blocks (lanes `base..base + 8`) in 256-bit registers.
// Indices address several arrays at once (state word, lane, block): plainer than zips.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2")]
fn blocks8(key: &[u32; 8], l: &Lanes, base: usize, out: &mut Keystream) {
    let ld = |a: &[u32; LANES]| {
        let a: &[u32; 8] = a[base..base + 8].try_into().unwrap_or_else(|_| unreachable!("8 lanes"));
        // SAFETY: `a` is 32 readable bytes; the load is unaligned.
        unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
    };
    let mut init = [_mm256_setzero_si256(); 16];
    for i in 0..4 {
        init[i] = _mm256_set1_epi32(SIGMA[i] as i32);
    }
    for i in 0..8 {
        init[4 + i] = _mm256_set1_epi32(key[i] as i32);
    }
    init[12] = ld(&l.ctr);
    init[13] = ld(&l.n0);
    init[14] = ld(&l.n1);
    init[15] = ld(&l.n2);
    let r16 = _mm256_set_epi8(
        13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2, 13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0,
        3, 2,
    );
    let r8 = _mm256_set_epi8(
        14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1, 0, 3, 14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1,
        0, 3,
    );
    let rol16 = |v| _mm256_shuffle_epi8(v, r16);
    let rol8 = |v| _mm256_shuffle_epi8(v, r8);
    let mut x = init;
    rounds!(x, _mm256_add_epi32, _mm256_xor_si256, rol16, rol256::<12, 20>, rol8, rol256::<7, 25>);
    for i in 0..16 {
        x[i] = _mm256_add_epi32(x[i], init[i]);
    }
    let mut a = [[_mm256_setzero_si256(); 4]; 4];
    for q in 0..4 {
        let (x0, x1, x2, x3) = (x[4 * q], x[4 * q + 1], x[4 * q + 2], x[4 * q + 3]);
        let t0 = _mm256_unpacklo_epi32(x0, x1);
        let t1 = _mm256_unpackhi_epi32(x0, x1);
        let t2 = _mm256_unpacklo_epi32(x2, x3);
        let t3 = _mm256_unpackhi_epi32(x2, x3);
        a[q] = [
            _mm256_unpacklo_epi64(t0, t2),
            _mm256_unpackhi_epi64(t0, t2),
            _mm256_unpacklo_epi64(t1, t3),
            _mm256_unpackhi_epi64(t1, t3),
        ];
    }
    // SAFETY: `b` is 32 writable bytes; the store is unaligned.
    let st = |b: &mut [u8], v: __m256i| unsafe { _mm256_storeu_si256(b[..32].as_mut_ptr().cast(), v) };
    for k in 0..4 {
        // Block 4L + k is a[0][k].L ‖ a[1][k].L ‖ a[2][k].L ‖ a[3][k].L.
        let lo = &mut out.0[base + k];
        st(&mut lo[..32], _mm256_permute2x128_si256::<0x20>(a[0][k], a[1][k]));
        st(&mut lo[32..], _mm256_permute2x128_si256::<0x20>(a[2][k], a[3][k]));
        let hi = &mut out.0[base + 4 + k];
        st(&mut hi[..32], _mm256_permute2x128_si256::<0x31>(a[0][k], a[1][k]));
        st(&mut hi[32..], _mm256_permute2x128_si256::<0x31>(a[2][k], a[3][k]));
    }
}

impl Kernel {
    /// The keystream of lanes `0..n` (`n` ≤ 16) into `out`.
    #[inline(always)]
    pub(super) fn run(self, key: &[u32; 8], l: &Lanes, n: usize, out: &mut Keystream) {
        match self.0 {
            // SAFETY: a `Kernel` of this path exists only when the CPU has AVX-512F, IFMA and
            // AVX2 (`Kernel::new`).
            ChaChaPath::Avx512 if n > 8 => unsafe { blocks16(key, l, out) },
            ChaChaPath::Avx512 | ChaChaPath::Avx2 => {
                // SAFETY: every path needs AVX2 (`Kernel::new`).
                unsafe { blocks8(key, l, 0, out) };
                if n > 8 {
                    // SAFETY: as above.
                    unsafe { blocks8(key, l, 8, out) };
                }
            }
        }
    }
}

/// `d ^= ks` (`d` at most 64 bytes). Only called from the `#[target_feature]` drivers below,
/// which all enable AVX2.
#[inline(always)]
fn xor_block(d: &mut [u8], ks: &[u8; 64]) {
    if d.len() == 64 {
        let p = d.as_mut_ptr();
        // SAFETY: `d` is 64 readable and writable bytes and `ks` 64 readable bytes (unaligned
        // accesses); the CPU has AVX2 (every path needs it, `Kernel::new`).
        unsafe {
            let k = ks.as_ptr();
            let a = _mm256_xor_si256(_mm256_loadu_si256(p.cast()), _mm256_loadu_si256(k.cast()));
            let b =
                _mm256_xor_si256(_mm256_loadu_si256(p.add(32).cast()), _mm256_loadu_si256(k.add(32).cast()));
            _mm256_storeu_si256(p.cast(), a);
            _mm256_storeu_si256(p.add(32).cast(), b);
        }
    } else {
        for (d, k) in d.iter_mut().zip(ks) {
            *d ^= k;
        }
    }
}

/// The data blocks of a group, queued across packets and generated sixteen at a time.
struct Queue {
    lanes: Lanes,
    /// (packet of the group, byte offset) of each lane's block.
    dest: [(usize, usize); LANES],
    n: usize,
    ks: Keystream,
}

impl Queue {
    #[inline(always)]
    fn flush(&mut self, k: Kernel, key: &[u32; 8], jobs: &mut [AeadJob<'_>]) {
        k.run(key, &self.lanes, self.n, &mut self.ks);
        for (&(j, off), ks) in self.dest[..self.n].iter().zip(&self.ks.0) {
            let data = &mut *jobs[j].data;
            let end = data.len().min(off + 64);
            xor_block(&mut data[off..end], ks);
        }
        self.n = 0;
    }
}

/// Steps 1 and 3 for a group; `keys` gets each packet's Poly1305 key, `todo[j]` says whether
/// packet `j`'s data is transformed (step 2 runs between them: `between`).
#[inline(always)]
fn group(
    k: Kernel,
    key: &[u32; 8],
    jobs: &mut [AeadJob<'_>],
    todo: &mut [bool; GROUP],
    keys: &mut [[u8; 32]; GROUP],
    between: impl FnOnce(&mut [AeadJob<'_>], &[[u8; 32]; GROUP], &mut [bool; GROUP]),
) {
    let mut q = Queue { lanes: Lanes::new(), dest: [(0, 0); LANES], n: 0, ks: Keystream([[0; 64]; LANES]) };
    let mut nonces = [[0u32; 3]; GROUP];
    for (j, job) in jobs.iter().enumerate() {
        nonces[j] = nonce_words(&job.nonce);
        q.lanes.set(j, 0, &nonces[j]);
    }
    k.run(key, &q.lanes, jobs.len(), &mut q.ks);
    for (d, s) in keys.iter_mut().zip(&q.ks.0) {
        d.copy_from_slice(&s[..32]);
    }
    between(jobs, keys, todo);
    for j in 0..jobs.len() {
        if !todo[j] {
            continue;
        }
        let len = jobs[j].data.len();
        let mut off = 0;
        let mut ctr = 1u32;
        while off < len {
            q.lanes.set(q.n, ctr, &nonces[j]);
            q.dest[q.n] = (j, off);
            q.n += 1;
            if q.n == LANES {
                q.flush(k, key, jobs);
            }
            off += 64;
            ctr = ctr.wrapping_add(1);
        }
    }
    if q.n > 0 {
        q.flush(k, key, jobs);
    }
}

/// The tags of packets `a` and `b` (two chains in one loop, overlapped by the CPU).
#[inline(always)]
fn tags2(ka: &[u8; 32], a: &AeadJob<'_>, kb: &[u8; 32], b: &AeadJob<'_>) -> ([u8; 16], [u8; 16]) {
    let (mut pa, mut pb) = (Poly1305::new(ka), Poly1305::new(kb));
    pa.padded(a.aad);
    pb.padded(b.aad);
    let (da, db) = (&*a.data, &*b.data);
    let common = da.len().min(db.len()) & !15;
    Poly1305::padded2(&mut pa, &da[..common], &mut pb, &db[..common]);
    pa.padded(&da[common..]);
    pb.padded(&db[common..]);
    pa.lengths(a.aad.len(), da.len());
    pb.lengths(b.aad.len(), db.len());
    (pa.finish(), pb.finish())
}

/// One packet's Poly1305 input (RFC 8439 §2.8): AAD and ciphertext, each zero-padded to
/// 16 bytes, then the lengths block.
struct Stream<'a> {
    aad: &'a [u8],
    ct: &'a [u8],
    na: usize,
    nc: usize,
}

impl<'a> Stream<'a> {
    fn new(aad: &'a [u8], ct: &'a [u8]) -> Self {
        Self { aad, ct, na: aad.len().div_ceil(16), nc: ct.len().div_ceil(16) }
    }

    /// Blocks in the stream.
    fn blocks(&self) -> usize {
        self.na + self.nc + 1
    }

    /// Block `s` as two little-endian words (branches on lengths only).
    #[inline(always)]
    fn block(&self, s: usize) -> (u64, u64) {
        #[inline(always)]
        fn padded(x: &[u8], i: usize) -> (u64, u64) {
            let b = &x[16 * i..];
            if b.len() >= 16 {
                (le64(b), le64(&b[8..]))
            } else {
                let mut t = [0u8; 16];
                t[..b.len()].copy_from_slice(b);
                (le64(&t), le64(&t[8..]))
            }
        }
        if s >= self.na {
            let c = s - self.na;
            if c < self.nc { padded(self.ct, c) } else { (self.aad.len() as u64, self.ct.len() as u64) }
        } else {
            padded(self.aad, s)
        }
    }
}

/// Poly1305 of up to eight packets at once, one per 64-bit lane of 512-bit registers, in radix
/// 2^44 with the 52-bit multiply-adds of AVX-512 IFMA: `h = h0 + 2^44 h1 + 2^88 h2`, and the
/// products past 2^130 fold back with 2^132 ≡ 20. Each lane's packet is an independent
/// chain; a lane whose packet has ended keeps its value (masked). `idx` are the packets (at
/// most eight), their tags go to `out`.
#[target_feature(enable = "avx512f,avx512ifma")]
fn tags8_ifma(jobs: &[AeadJob<'_>], idx: &[usize], keys: &[[u8; 32]; GROUP], out: &mut [[u8; 16]; GROUP]) {
    const M44: u64 = (1 << 44) - 1;
    let streams: [Option<Stream<'_>>; 8] =
        std::array::from_fn(|l| idx.get(l).map(|&j| Stream::new(jobs[j].aad, jobs[j].data)));
    let (mut r0, mut r1, mut r2) = ([0u64; 8], [0u64; 8], [0u64; 8]);
    let mut total = [0usize; 8];
    for (l, &j) in idx.iter().enumerate() {
        let (lo, hi) = Poly1305::clamped_r(&keys[j]);
        r0[l] = lo & M44;
        r1[l] = (lo >> 44 | hi << 20) & M44;
        r2[l] = hi >> 24;
        total[l] = streams[l].as_ref().map_or(0, Stream::blocks);
    }
    // SAFETY: each array is 8 `u64`s = 64 readable bytes; unaligned loads.
    let ld = |a: &[u64; 8]| unsafe { _mm512_loadu_si512(a.as_ptr().cast()) };
    let (vr0, vr1, vr2) = (ld(&r0), ld(&r1), ld(&r2));
    let (vs1, vs2) = (ld(&r1.map(|r| r * 20)), ld(&r2.map(|r| r * 20)));
    let m44 = _mm512_set1_epi64(M44 as i64);
    let m42 = _mm512_set1_epi64(((1u64 << 42) - 1) as i64);
    let hibit = _mm512_set1_epi64(1 << 40);
    let z = _mm512_setzero_si512();
    let (mut h0, mut h1, mut h2) = (z, z, z);
    // One block per lane: `$vlo`, `$vhi` the block's two little-endian words in each lane.
    macro_rules! step {
        ($vlo:expr, $vhi:expr, $active:expr) => {{
            let (vlo, vhi) = ($vlo, $vhi);
            let m0 = _mm512_and_si512(vlo, m44);
            let m1 = _mm512_and_si512(
                _mm512_or_si512(_mm512_srli_epi64::<44>(vlo), _mm512_slli_epi64::<20>(vhi)),
                m44,
            );
            let m2 = _mm512_or_si512(_mm512_srli_epi64::<24>(vhi), hibit);
            let t0 = _mm512_add_epi64(h0, m0);
            let t1 = _mm512_add_epi64(h1, m1);
            let t2 = _mm512_add_epi64(h2, m2);
            // d0 = t0 r0 + 20 (t1 r2 + t2 r1), d1 = t0 r1 + t1 r0 + 20 t2 r2, d2 = t0 r2 + t1 r1 + t2 r0,
            // each as low 52 bits (l) plus high part (h, weight 2^52).
            let l0 = _mm512_madd52lo_epu64(
                _mm512_madd52lo_epu64(_mm512_madd52lo_epu64(z, t0, vr0), t1, vs2),
                t2,
                vs1,
            );
            let g0 = _mm512_madd52hi_epu64(
                _mm512_madd52hi_epu64(_mm512_madd52hi_epu64(z, t0, vr0), t1, vs2),
                t2,
                vs1,
            );
            let l1 = _mm512_madd52lo_epu64(
                _mm512_madd52lo_epu64(_mm512_madd52lo_epu64(z, t0, vr1), t1, vr0),
                t2,
                vs2,
            );
            let g1 = _mm512_madd52hi_epu64(
                _mm512_madd52hi_epu64(_mm512_madd52hi_epu64(z, t0, vr1), t1, vr0),
                t2,
                vs2,
            );
            let l2 = _mm512_madd52lo_epu64(
                _mm512_madd52lo_epu64(_mm512_madd52lo_epu64(z, t0, vr2), t1, vr1),
                t2,
                vr0,
            );
            let g2 = _mm512_madd52hi_epu64(
                _mm512_madd52hi_epu64(_mm512_madd52hi_epu64(z, t0, vr2), t1, vr1),
                t2,
                vr0,
            );
            // Carries: limb i's bits past 44 (42 for the top) and its high part (2^52 = 2^8 · 2^44).
            let c = _mm512_add_epi64(_mm512_srli_epi64::<44>(l0), _mm512_slli_epi64::<8>(g0));
            let n0 = _mm512_and_si512(l0, m44);
            let l1 = _mm512_add_epi64(l1, c);
            let c = _mm512_add_epi64(_mm512_srli_epi64::<44>(l1), _mm512_slli_epi64::<8>(g1));
            let n1 = _mm512_and_si512(l1, m44);
            let l2 = _mm512_add_epi64(l2, c);
            let c = _mm512_add_epi64(_mm512_srli_epi64::<42>(l2), _mm512_slli_epi64::<10>(g2));
            let n2 = _mm512_and_si512(l2, m42);
            // 2^130 ≡ 5.
            let n0 = _mm512_add_epi64(n0, _mm512_add_epi64(c, _mm512_slli_epi64::<2>(c)));
            let n1 = _mm512_add_epi64(n1, _mm512_srli_epi64::<44>(n0));
            let n0 = _mm512_and_si512(n0, m44);
            h0 = _mm512_mask_mov_epi64(h0, $active, n0);
            h1 = _mm512_mask_mov_epi64(h1, $active, n1);
            h2 = _mm512_mask_mov_epi64(h2, $active, n2);
        }};
    }
    let steps = total.iter().copied().max().unwrap_or(0);
    let present = ((1u16 << idx.len()) - 1) as u8;
    let (mut lo, mut hi) = ([0u64; 8], [0u64; 8]);
    let mut s = 0;
    while s < steps {
        // Fast path: four full ciphertext blocks in every lane, loaded 64 bytes per lane and
        // transposed in registers (8×8 words) rather than assembled through memory.
        let four = |st: &Option<Stream<'_>>| {
            st.as_ref().is_none_or(|st| s >= st.na && (s - st.na + 4) * 16 <= st.ct.len())
        };
        if streams.iter().all(four) {
            let r: [__m512i; 8] = std::array::from_fn(|l| match &streams[l] {
                Some(st) => {
                    let b = &st.ct[(s - st.na) * 16..][..64];
                    // SAFETY: `b` is 64 readable bytes; unaligned load.
                    unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
                }
                None => z,
            });
            let u: [__m512i; 8] = std::array::from_fn(|i| {
                if i % 2 == 0 {
                    _mm512_unpacklo_epi64(r[i & !1], r[i | 1])
                } else {
                    _mm512_unpackhi_epi64(r[i & !1], r[i | 1])
                }
            });
            let mut c = [z; 8];
            for p in 0..2 {
                let e0 = _mm512_shuffle_i64x2::<0x44>(u[p], u[2 + p]);
                let e1 = _mm512_shuffle_i64x2::<0xee>(u[p], u[2 + p]);
                let f0 = _mm512_shuffle_i64x2::<0x44>(u[4 + p], u[6 + p]);
                let f1 = _mm512_shuffle_i64x2::<0xee>(u[4 + p], u[6 + p]);
                c[p] = _mm512_shuffle_i64x2::<0x88>(e0, f0);
                c[2 + p] = _mm512_shuffle_i64x2::<0xdd>(e0, f0);
                c[4 + p] = _mm512_shuffle_i64x2::<0x88>(e1, f1);
                c[6 + p] = _mm512_shuffle_i64x2::<0xdd>(e1, f1);
            }
            step!(c[0], c[1], present);
            step!(c[2], c[3], present);
            step!(c[4], c[5], present);
            step!(c[6], c[7], present);
            s += 4;
            continue;
        }
        let mut active = 0u8;
        for (l, st) in streams.iter().enumerate() {
            if let Some(st) = st
                && s < total[l]
            {
                (lo[l], hi[l]) = st.block(s);
                active |= 1 << l;
            }
        }
        step!(ld(&lo), ld(&hi), active);
        s += 1;
    }
    let (mut a0, mut a1, mut a2) = ([0u64; 8], [0u64; 8], [0u64; 8]);
    // SAFETY: each array is 64 writable bytes; unaligned stores.
    unsafe {
        _mm512_storeu_si512(a0.as_mut_ptr().cast(), h0);
        _mm512_storeu_si512(a1.as_mut_ptr().cast(), h1);
        _mm512_storeu_si512(a2.as_mut_ptr().cast(), h2);
    }
    for (l, &j) in idx.iter().enumerate() {
        // To radix 2^64: h0 < 2^44, h1 < 2^45, h2 < 2^42.
        let (v, c) = (a0[l] as u128 + ((a1[l] as u128) << 44))
            .overflowing_add(((a2[l] & ((1 << 40) - 1)) as u128) << 88);
        let top = (a2[l] >> 40) + c as u64;
        out[j] = Poly1305::finish_from([v as u64, (v >> 64) as u64, top], &keys[j]);
    }
    lo.zeroize();
    hi.zeroize();
    // The key `r` (secret); the accumulators `a*` hold the unpadded tags (secret until sent).
    for x in [&mut r0, &mut r1, &mut r2, &mut a0, &mut a1, &mut a2] {
        x.zeroize();
    }
}

/// The tag of every job of `jobs` whose `want[j]` is set, into `out[j]`: eight packets at a
/// time in IFMA vectors on the AVX-512 path, else two at a time in scalar code.
#[inline(always)]
fn tags(
    k: Kernel,
    jobs: &[AeadJob<'_>],
    keys: &[[u8; 32]; GROUP],
    want: &[bool; GROUP],
    out: &mut [[u8; 16]; GROUP],
) {
    if k.0 == ChaChaPath::Avx512 {
        let mut idx = [0usize; GROUP];
        let mut n = 0;
        for (j, _) in want[..jobs.len()].iter().enumerate().filter(|w| *w.1) {
            idx[n] = j;
            n += 1;
        }
        for chunk in idx[..n].chunks(8) {
            // SAFETY: a `Kernel` of this path exists only when the CPU has AVX-512F and IFMA.
            unsafe { tags8_ifma(jobs, chunk, keys, out) };
        }
        return;
    }
    let mut pending: Option<usize> = None;
    for j in 0..jobs.len() {
        if !want[j] {
            continue;
        }
        match pending.take() {
            None => pending = Some(j),
            Some(i) => (out[i], out[j]) = tags2(&keys[i], &jobs[i], &keys[j], &jobs[j]),
        }
    }
    if let Some(i) = pending {
        out[i] = aead_tag(&keys[i], jobs[i].aad, jobs[i].data);
    }
}

/// Constant-time equality of two tags.
#[inline(always)]
fn tag_eq(a: &[u8; ICV_LEN], b: &[u8; ICV_LEN]) -> bool {
    let d = u128::from_ne_bytes(*a) ^ u128::from_ne_bytes(*b);
    std::hint::black_box(d) == 0
}

#[inline(always)]
fn seal_impl(k: Kernel, key: &[u32; 8], jobs: &mut [AeadJob<'_>]) {
    for chunk in jobs.chunks_mut(GROUP) {
        let mut todo = [false; GROUP];
        for (j, job) in chunk.iter_mut().enumerate() {
            todo[j] = job.data.len() <= MAX_LEN;
            if !todo[j] {
                job.result = Err(AeadError::Rejected);
            }
        }
        let mut keys = [[0u8; 32]; GROUP];
        group(k, key, chunk, &mut todo, &mut keys, |_, _, _| {});
        let mut out = [[0u8; 16]; GROUP];
        tags(k, chunk, &keys, &todo, &mut out);
        keys.zeroize();
        for (j, job) in chunk.iter_mut().enumerate() {
            if todo[j] {
                *job.icv = out[j];
                job.result = Ok(());
            }
        }
    }
}

#[inline(always)]
fn open_impl(k: Kernel, key: &[u32; 8], jobs: &mut [AeadJob<'_>]) {
    for chunk in jobs.chunks_mut(GROUP) {
        let mut todo = [false; GROUP];
        for (j, job) in chunk.iter().enumerate() {
            todo[j] = job.data.len() <= MAX_LEN;
        }
        let mut keys = [[0u8; 32]; GROUP];
        group(k, key, chunk, &mut todo, &mut keys, |jobs, keys, todo| {
            let mut out = [[0u8; 16]; GROUP];
            tags(k, jobs, keys, todo, &mut out);
            for (j, job) in jobs.iter().enumerate() {
                // Only the verdict (public: the packet is dropped or not) is branched on.
                todo[j] = todo[j] && tag_eq(&out[j], job.icv);
            }
        });
        keys.zeroize();
        for (j, job) in chunk.iter_mut().enumerate() {
            job.result = if todo[j] { Ok(()) } else { Err(AeadError::AuthFailed) };
        }
    }
}

/// Seals every job with the AVX-512 kernel.
#[target_feature(enable = "avx512f,avx512ifma,avx2")]
fn seal_512(k: Kernel, key: &[u32; 8], jobs: &mut [AeadJob<'_>]) {
    seal_impl(k, key, jobs)
}

/// Opens every job with the AVX-512 kernel.
#[target_feature(enable = "avx512f,avx512ifma,avx2")]
fn open_512(k: Kernel, key: &[u32; 8], jobs: &mut [AeadJob<'_>]) {
    open_impl(k, key, jobs)
}

/// Seals every job with the AVX2 kernel.
#[target_feature(enable = "avx2")]
fn seal_256(k: Kernel, key: &[u32; 8], jobs: &mut [AeadJob<'_>]) {
    seal_impl(k, key, jobs)
}

/// Opens every job with the AVX2 kernel.
#[target_feature(enable = "avx2")]
fn open_256(k: Kernel, key: &[u32; 8], jobs: &mut [AeadJob<'_>]) {
    open_impl(k, key, jobs)
}

/// Seals every job (sets each `result`).
pub(super) fn seal_all(k: Kernel, key: &[u32; 8], jobs: &mut [AeadJob<'_>]) {
    match k.0 {
        // SAFETY: a `Kernel` of this path exists only when the CPU has its features.
        ChaChaPath::Avx512 => unsafe { seal_512(k, key, jobs) },
        // SAFETY: as above.
        ChaChaPath::Avx2 => unsafe { seal_256(k, key, jobs) },
    }
}

/// Opens every job (sets each `result`); a packet whose tag fails is left as it came.
pub(super) fn open_all(k: Kernel, key: &[u32; 8], jobs: &mut [AeadJob<'_>]) {
    match k.0 {
        // SAFETY: a `Kernel` of this path exists only when the CPU has its features.
        ChaChaPath::Avx512 => unsafe { open_512(k, key, jobs) },
        // SAFETY: as above.
        ChaChaPath::Avx2 => unsafe { open_256(k, key, jobs) },
    }
}

/// The raw ChaCha20 block function (RFC 8439 §2.3) through the kernel, for tests: the 64-byte
/// keystream blocks `counter..counter + n` (`n` ≤ 16) under `nonce`.
#[cfg(test)]
pub(super) fn keystream(
    k: Kernel,
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    counter: u32,
    n: usize,
) -> Vec<[u8; 64]> {
    let mut l = Lanes::new();
    let nw = nonce_words(nonce);
    for i in 0..n {
        l.set(i, counter.wrapping_add(i as u32), &nw);
    }
    let mut out = Keystream([[0; 64]; LANES]);
    k.run(&key_words(key), &l, n, &mut out);
    out.0[..n].to_vec()
}
