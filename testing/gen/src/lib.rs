//! Deterministic generated inputs shared by wirespeed's tests and benchmarks.
//!
//! [`SplitMix`] is the one pseudo-random generator they use: no dependency, and the same
//! sequence for a seed on every machine and every version, so a bench keeps measuring the same
//! input and a test keeps covering the same cases. [`bgp_like_routes`] builds IPv4 route tables
//! shaped like a BGP full table from it.

/// SplitMix64 (Steele, Lea, Flood 2014): a small deterministic generator, not for secrets.
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `n` random IPv4 routes `(address, prefix length, next hop)` shaped like a BGP table: 60 %
/// /24, 35 % /16–/23, 3 % /8–/15, 2 % /25–/32, with next hops below `next_hops` (not 0). The
/// addresses are not masked to their prefix; prefixes may repeat. The same `seed` gives the same
/// table.
pub fn bgp_like_routes(n: usize, seed: u64, next_hops: u32) -> Vec<(u32, u8, u32)> {
    assert!(next_hops > 0, "next_hops must not be 0");
    let mut rng = SplitMix(seed);
    (0..n)
        .map(|_| {
            let x = rng.next_u64();
            let len = match x % 100 {
                0..=59 => 24,
                60..=94 => 16 + (x >> 8) as u8 % 8,
                95..=97 => 8 + (x >> 8) as u8 % 8,
                _ => 25 + (x >> 8) as u8 % 8,
            };
            ((x >> 32) as u32, len, (x >> 16) as u32 % next_hops)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator is SplitMix64: the reference implementation's first outputs for seed 0
    /// (`splitmix64.c` by Sebastiano Vigna).
    #[test]
    fn splitmix_matches_the_reference() {
        let mut r = SplitMix(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn routes_have_the_table_shape() {
        let routes = bgp_like_routes(100_000, 1, 64);
        assert_eq!(routes, bgp_like_routes(100_000, 1, 64));
        let share = |f: &dyn Fn(u8) -> bool| routes.iter().filter(|r| f(r.1)).count() * 100 / routes.len();
        assert!((58..=62).contains(&share(&|l| l == 24)));
        assert!((33..=37).contains(&share(&|l| (16..24).contains(&l))));
        assert!(routes.iter().all(|&(_, l, nh)| (8..=32).contains(&l) && nh < 64));
    }
}
