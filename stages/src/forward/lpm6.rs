//! IPv6 longest-prefix match: one hash table per prefix length present, probed from the longest
//! length to the shortest. Real IPv6 tables use few distinct lengths (mostly /32–/48 and /64,
//! /128 for hosts), so a lookup is a handful of probes of a small open-addressing table; the
//! tables are rebuilt and published whole, like the IPv4 one.
//!
//! Keys are the masked addresses; the hash is a multiply-xor mix (not keyed): the keys are routes
//! chosen by the operator, and a lookup of an attacker's address probes each table once whatever
//! it is, so there is no collision chain for an attacker to lengthen.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::FibError;

/// A fast non-cryptographic hasher for integer keys (addresses) the control plane chose.
#[derive(Clone, Copy, Default, Debug)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // Final avalanche (the `fmix64` of MurmurHash3), so the high bits hashbrown uses for
        // its control bytes depend on every input bit.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }
}

/// `HashMap` with [`AddrHasher`].
pub type AddrMap<K, V> = HashMap<K, V, BuildHasherDefault<AddrHasher>>;

/// An immutable IPv6 prefix table mapping prefixes to `u32` values.
#[derive(Clone, Debug, Default)]
pub struct Lpm6 {
    /// `(length, mask, table)`, longest length first.
    levels: Vec<(u8, u128, AddrMap<u128, u32>)>,
    routes: usize,
}

impl Lpm6 {
    /// Builds the table from `(address, prefix length, value)` triples. Host bits are ignored;
    /// for a prefix given twice the last value wins.
    pub fn build(routes: &[(u128, u8, u32)]) -> Result<Self, FibError> {
        let mut by_len: Vec<AddrMap<u128, u32>> = (0..=128).map(|_| AddrMap::default()).collect();
        for &(addr, len, value) in routes {
            if len > 128 {
                return Err(FibError::BadPrefixLength { len, max: 128 });
            }
            by_len[len as usize].insert(addr & mask6(len), value);
        }
        let mut levels = Vec::new();
        let mut n = 0;
        for (len, mut table) in by_len.into_iter().enumerate().rev() {
            if !table.is_empty() {
                n += table.len();
                table.shrink_to_fit();
                levels.push((len as u8, mask6(len as u8), table));
            }
        }
        Ok(Self { levels, routes: n })
    }

    /// The value of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: u128) -> Option<u32> {
        self.levels.iter().find_map(|(_, mask, t)| t.get(&(addr & mask)).copied())
    }

    /// Distinct prefixes in the table.
    pub fn len(&self) -> usize {
        self.routes
    }

    /// True when the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }

    /// Distinct prefix lengths (the worst-case number of probes per lookup).
    pub fn lengths(&self) -> usize {
        self.levels.len()
    }
}

/// Mask keeping the top `len` bits of an IPv6 address.
#[inline]
pub fn mask6(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - len.min(128) as u32) }
}
