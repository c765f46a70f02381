//! Poly1305 (RFC 8439 §2.5) in radix 2^64: the accumulator is three 64-bit limbs (the top one
//! holds a few bits), the key `r` two limbs, products through `u128`. Each 16-byte block costs
//! four 64×64→128 multiplications and two small ones; there are no tables and no branches on
//! data (only on lengths), and x86-64's `mul` takes data-independent time, so it is constant
//! time. Written here rather than taken from the `poly1305` crate because the batch provider
//! needs to interleave the MACs of two packets (two independent chains in one loop, which the
//! CPU overlaps) and to feed AAD, ciphertext and lengths without copying.

use zeroize::Zeroize;

/// Poly1305 state: accumulator `h`, key `r` (clamped), `s1 = r1 + r1/4` and the final pad.
#[derive(Clone)]
pub(super) struct Poly1305 {
    h: [u64; 3],
    r: [u64; 2],
    s1: u64,
    pad: [u64; 2],
}

impl Drop for Poly1305 {
    fn drop(&mut self) {
        self.h.zeroize();
        self.r.zeroize();
        self.s1.zeroize();
        self.pad.zeroize();
    }
}

#[inline(always)]
pub(super) fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))
}

impl Poly1305 {
    /// The one-time key: `r` ‖ `s` (RFC 8439 §2.5).
    #[inline(always)]
    pub(super) fn new(key: &[u8; 32]) -> Self {
        let (r0, r1) = Self::clamped_r(key);
        Self { h: [0; 3], r: [r0, r1], s1: r1 + (r1 >> 2), pad: [le64(&key[16..]), le64(&key[24..])] }
    }

    /// The tag of an accumulator `h` (radix 2^64, `h < 2^131`) computed elsewhere (the
    /// vector code) with the pad of `key`.
    #[inline(always)]
    pub(super) fn finish_from(h: [u64; 3], key: &[u8; 32]) -> [u8; 16] {
        let mut p = Self::new(key);
        p.h = h;
        p.finish()
    }

    /// The clamped `r` of `key` as (low, high) 64-bit halves.
    #[inline(always)]
    pub(super) fn clamped_r(key: &[u8; 32]) -> (u64, u64) {
        (le64(&key[0..]) & 0x0fff_fffc_0fff_ffff, le64(&key[8..]) & 0x0fff_fffc_0fff_fffc)
    }

    /// Absorbs one block `m0 + 2^64 m1 + 2^128 hibit`.
    #[inline(always)]
    fn block(&mut self, m0: u64, m1: u64, hibit: u64) {
        let [h0, h1, h2] = self.h;
        let [r0, r1] = self.r;
        // h += m
        let (h0, c) = h0.overflowing_add(m0);
        let (h1, c1) = h1.overflowing_add(m1);
        let (h1, c2) = h1.overflowing_add(c as u64);
        let h2 = h2 + c1 as u64 + c2 as u64 + hibit;
        // h *= r (mod 2^130 - 5, partially): 2^128·r1 ≡ (5/4)·r1 = s1 since 4 | r1.
        let d0 = h0 as u128 * r0 as u128 + h1 as u128 * self.s1 as u128;
        let d1 = h0 as u128 * r1 as u128 + h1 as u128 * r0 as u128 + (h2 * self.s1) as u128;
        let d2 = h2 * r0;
        let d1 = d1 + (d0 >> 64);
        let d2 = d2 + (d1 >> 64) as u64;
        // Fold the bits above 2^130 back: 2^130 ≡ 5.
        let c = (d2 >> 2) * 5;
        let (h0, c0) = (d0 as u64).overflowing_add(c);
        let (h1, c1) = (d1 as u64).overflowing_add(c0 as u64);
        self.h = [h0, h1, (d2 & 3) + c1 as u64];
    }

    /// Absorbs `data` zero-padded to a multiple of 16 bytes (the AEAD construction of
    /// RFC 8439 §2.8: every block, the padded last one too, carries the 2^128 bit).
    #[inline(always)]
    pub(super) fn padded(&mut self, data: &[u8]) {
        let mut blocks = data.chunks_exact(16);
        for b in &mut blocks {
            self.block(le64(b), le64(&b[8..]), 1);
        }
        let tail = blocks.remainder();
        if !tail.is_empty() {
            let mut b = [0u8; 16];
            b[..tail.len()].copy_from_slice(tail);
            self.block(le64(&b), le64(&b[8..]), 1);
        }
    }

    /// [`Poly1305::padded`] of two messages of the same length, a multiple of 16 bytes, in one
    /// loop: two independent multiply chains, which the CPU overlaps.
    #[inline(always)]
    pub(super) fn padded2(a: &mut Self, da: &[u8], b: &mut Self, db: &[u8]) {
        for (x, y) in da.chunks_exact(16).zip(db.chunks_exact(16)) {
            a.block(le64(x), le64(&x[8..]), 1);
            b.block(le64(y), le64(&y[8..]), 1);
        }
    }

    /// Absorbs `data` as a plain Poly1305 message (RFC 8439 §2.5: a short last block gets a
    /// 1 byte after it and no 2^128 bit).
    #[cfg(test)]
    pub(super) fn message(&mut self, data: &[u8]) {
        let mut blocks = data.chunks_exact(16);
        for b in &mut blocks {
            self.block(le64(b), le64(&b[8..]), 1);
        }
        let tail = blocks.remainder();
        if !tail.is_empty() {
            let mut b = [0u8; 16];
            b[..tail.len()].copy_from_slice(tail);
            b[tail.len()] = 1;
            self.block(le64(&b), le64(&b[8..]), 0);
        }
    }

    /// Absorbs the AEAD lengths block (AAD length ‖ ciphertext length, 64-bit little endian).
    #[inline(always)]
    pub(super) fn lengths(&mut self, aad: usize, ct: usize) {
        self.block(aad as u64, ct as u64, 1);
    }

    /// The tag: `h mod p` plus `s`, modulo 2^128. Constant time (a mask selects `h` or
    /// `h - p`).
    #[inline(always)]
    pub(super) fn finish(mut self) -> [u8; 16] {
        let [h0, h1, h2] = self.h;
        // Propagate so that h2 < 5 (h < 2p), then subtract p if h ≥ p.
        let c = (h2 >> 2) * 5;
        let (h0, c0) = h0.overflowing_add(c);
        let (h1, c1) = h1.overflowing_add(c0 as u64);
        let h2 = (h2 & 3) + c1 as u64;
        let (g0, c0) = h0.overflowing_add(5);
        let (g1, c1) = h1.overflowing_add(c0 as u64);
        let g2 = h2 + c1 as u64;
        // g ≥ 2^130 exactly when h ≥ p; then h mod p = g - 2^130.
        let take_g = 0u64.wrapping_sub(g2 >> 2);
        let h0 = (g0 & take_g) | (h0 & !take_g);
        let h1 = (g1 & take_g) | (h1 & !take_g);
        let (t0, c) = h0.overflowing_add(self.pad[0]);
        let t1 = h1.wrapping_add(self.pad[1]).wrapping_add(c as u64);
        self.h = [0; 3];
        let mut tag = [0u8; 16];
        tag[..8].copy_from_slice(&t0.to_le_bytes());
        tag[8..].copy_from_slice(&t1.to_le_bytes());
        tag
    }
}

/// The AEAD tag of RFC 8439 §2.8 with the one-time key `key`.
#[inline(always)]
pub(super) fn aead_tag(key: &[u8; 32], aad: &[u8], ct: &[u8]) -> [u8; 16] {
    let mut p = Poly1305::new(key);
    p.padded(aad);
    p.padded(ct);
    p.lengths(aad.len(), ct.len());
    p.finish()
}
