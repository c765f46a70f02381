//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// One's-complement sum of `d` as big-endian 16-bit words (an odd last byte is padded with
/// zero), added to `sum`; not folded. Fold with [`fold`].
#[inline]
pub fn ones_sum(mut sum: u64, d: &[u8]) -> u64 {
    let mut chunks = d.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (s, carry) = sum.overflowing_add(w);
        sum = s + carry as u64;
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        let (s, carry) = sum.overflowing_add(u16::from_be_bytes([c[0], c[1]]) as u64);
        sum = s + carry as u64;
    }
    if let [b] = rest.remainder() {
        let (s, carry) = sum.overflowing_add((*b as u64) << 8);
        sum = s + carry as u64;
    }
    sum
}

/// Folds a 64-bit one's-complement sum to 16 bits and complements it: the checksum to store.
#[inline]
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum of `d` (with its checksum field zeroed by the caller).
#[inline]
pub fn checksum(d: &[u8]) -> u16 {
    fold(ones_sum(0, d))
}

/// True when an IPv4 header (checksum included) sums to 0xffff (RFC 1071).
///
/// Summed as 32-bit native-endian words into a 64-bit accumulator and folded (RFC 1071 §2(B)
/// and (C): the one's-complement sum is independent of byte order and of word width), which is a
/// short dependency chain instead of ten 16-bit adds; all-ones is the same in either byte order.
#[inline(always)]
pub fn ipv4_header_valid(hdr: &[u8]) -> bool {
    let mut sum: u64 = 0;
    let mut words = hdr.chunks_exact(4);
    for w in &mut words {
        sum += u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 4];
        w[..rest.len()].copy_from_slice(rest);
        sum += u32::from_ne_bytes(w) as u64;
    }
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    let mut s = (sum & 0xffff) + (sum >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s == 0xffff
}

/// [`ipv4_header_valid`] for the 20-byte header without options (the fast path): summed as
/// 64-bit words, then folded with end-around carries (RFC 1071 §2(B), (C)). A one's-complement
/// sum is zero only when every word is, so the result matches the general version exactly.
#[inline(always)]
pub fn ipv4_header20_valid(h: &[u8; 20]) -> bool {
    let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7, c0, c1, c2, c3] = *h;
    let a = u64::from_ne_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
    let b = u64::from_ne_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
    let c = u32::from_ne_bytes([c0, c1, c2, c3]) as u64;
    // Two 64-bit words and one 32-bit word with end-around carries (at most one each: a sum
    // with its carry added back cannot overflow again).
    let (s, k) = a.overflowing_add(b);
    let s = s + k as u64;
    let (s, k) = s.overflowing_add(c);
    let s = s + k as u64;
    // 64 → 32 bits, likewise.
    let (x, k) = (s as u32).overflowing_add((s >> 32) as u32);
    let x = x + k as u32;
    // 32 → 16 bits, likewise.
    let (y, c) = (x as u16).overflowing_add((x >> 16) as u16);
    y + c as u16 == 0xffff
}

/// RFC 1624 eqn. 3 incremental update of an Internet checksum `hc` when a 16-bit word of the
/// covered data changes from `old` to `new`: `HC' = ~(~HC + ~m + m')`. Unlike eqn. 2 it never
/// produces the `-0` (0xffff) the RFC warns about.
#[inline(always)]
pub fn adjust(hc: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!hc) as u32 + (!old) as u32 + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// [`adjust`] specialised to an IPv4 TTL decrement, where the changed word (TTL, protocol) drops
/// by exactly 0x0100: `~m + m'` is then the constant 0xfeff (for TTL ≥ 1), so
/// `HC' = ~(~HC + 0xfeff)`. The sum is at most 0x1fefe, so one end-around carry folds it.
#[inline(always)]
pub fn ttl_decrement(hc: u16) -> u16 {
    let sum = (!hc) as u32 + 0xfeff;
    !((sum & 0xffff) + (sum >> 16)) as u16
}

/// [`ttl_decrement`] on a checksum read and written in native byte order: the same
/// one's-complement sum with the constant byte-swapped (RFC 1071 §2(B)). The sum is at most
/// 0x1fffd, so one end-around carry still folds it.
#[inline(always)]
pub fn ttl_decrement_ne(hc_ne: u16) -> u16 {
    let sum = (!hc_ne) as u32 + 0xfeffu16.to_be() as u32;
    !((sum & 0xffff) + (sum >> 16)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TTL shortcuts (big-endian and native-endian) give exactly what RFC 1624 eqn. 3
    /// gives, for every checksum value and every TTL that is decremented (2..=255).
    #[test]
    fn ttl_shortcut_equals_rfc1624_eqn3() {
        for hc in 0..=u16::MAX {
            for ttl in 2..=255u8 {
                let proto = ttl.wrapping_mul(37);
                let want = adjust(hc, u16::from_be_bytes([ttl, proto]), u16::from_be_bytes([ttl - 1, proto]));
                assert_eq!(ttl_decrement(hc), want, "hc {hc:#06x} ttl {ttl}");
                if ttl == 2 || ttl == 255 {
                    let ne = u16::from_ne_bytes(hc.to_be_bytes());
                    let got = ttl_decrement_ne(ne).to_ne_bytes();
                    assert_eq!(u16::from_be_bytes(got), want, "native order, hc {hc:#06x}");
                }
            }
        }
    }

    /// RFC 1071 §3's worked example: words 0001 f203 f4f5 f6f7 sum to 0xddf2 (folded).
    #[test]
    fn rfc1071_example() {
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(ones_sum(0, &d)), !0xddf2);
    }

    /// The word-wide header check and [`checksum`] agree with a plain 16-bit RFC 1071 sum on
    /// every length from 0 to 63 bytes, with and without a valid checksum.
    #[test]
    fn sums_match_rfc1071_16bit_reference() {
        let reference = |h: &[u8]| {
            let mut sum: u32 = 0;
            for c in h.chunks(2) {
                sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            sum as u16
        };
        let mut x = 0x1234_5678u32;
        for len in 0..64 {
            for _ in 0..50 {
                let mut h: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                assert_eq!(ipv4_header_valid(&h), reference(&h) == 0xffff, "{h:02x?}");
                assert_eq!(checksum(&h), !reference(&h), "{h:02x?}");
                if len >= 12 {
                    h[10] = 0;
                    h[11] = 0;
                    let c = checksum(&h);
                    h[10..12].copy_from_slice(&c.to_be_bytes());
                    assert!(ipv4_header_valid(&h) && reference(&h) == 0xffff, "{h:02x?}");
                }
            }
        }
    }

    /// The fixed-size 20-byte check agrees with the general one on random headers, on headers
    /// with a correct checksum, and on the all-zero / all-ones edges.
    #[test]
    fn header20_matches_general() {
        let mut x = 0x9e37_79b9u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut cases: Vec<[u8; 20]> = vec![[0; 20], [0xff; 20]];
        for _ in 0..20_000 {
            let mut h = [0u8; 20];
            h.iter_mut().for_each(|b| *b = next() as u8);
            cases.push(h);
            h[10] = 0;
            h[11] = 0;
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            assert!(ipv4_header_valid(&h));
            cases.push(h);
        }
        for h in &cases {
            assert_eq!(ipv4_header20_valid(h), ipv4_header_valid(h), "{h:02x?}");
        }
    }
}
