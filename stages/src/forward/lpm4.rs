//! IPv4 longest-prefix match: a DIR-24-8 table (Gupta, Lin, McKeown, "Routing lookups in
//! hardware at memory access speeds", INFOCOM 1998), the layout DPDK's `rte_lpm` also uses.
//!
//! `tbl24` has one entry per /24 (16 Mi entries, 64 MiB, allocated zeroed so untouched pages cost
//! nothing). An entry either holds the value of the longest prefix of length ≤ 24 covering that
//! /24, or points to a 256-entry `tbl8` group that resolves the last octet for prefixes longer
//! than /24. A lookup is one or two dependent loads.
//!
//! The table is built once from a full route list (shortest prefixes first, so longer prefixes
//! overwrite what they cover) and then only read; updates publish a new table by epoch. Building
//! 1 M prefixes takes well under a second.

use super::FibError;

const VALID: u32 = 1 << 31;
const GROUP: u32 = 1 << 30;
const PAYLOAD: u32 = GROUP - 1;
/// Largest value a route can carry.
pub const MAX_VALUE: u32 = PAYLOAD;

/// An immutable DIR-24-8 table mapping IPv4 prefixes to `u32` values (≤ [`MAX_VALUE`]).
pub struct Dir24_8 {
    /// Fixed size, so indexing by the top 24 bits of an address needs no bounds check.
    tbl24: Box<[u32; TBL24]>,
    tbl8: Vec<u32>,
    routes: usize,
}

/// Entries of the first-level table: one per /24.
const TBL24: usize = 1 << 24;

/// 64 MiB of `tbl24`, built on the heap (never a temporary on the stack).
fn zeroed_tbl24() -> Box<[u32; TBL24]> {
    match vec![0u32; TBL24].into_boxed_slice().try_into() {
        Ok(t) => t,
        Err(_) => unreachable!("a vector of TBL24 entries converts to an array of TBL24"),
    }
}

impl Clone for Dir24_8 {
    fn clone(&self) -> Self {
        let mut tbl24 = zeroed_tbl24();
        tbl24.copy_from_slice(&self.tbl24[..]);
        Self { tbl24, tbl8: self.tbl8.clone(), routes: self.routes }
    }
}

impl std::fmt::Debug for Dir24_8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dir24_8")
            .field("routes", &self.routes)
            .field("tbl8_groups", &(self.tbl8.len() / 256))
            .finish()
    }
}

impl Dir24_8 {
    /// Builds the table from `(address, prefix length, value)` triples. Host bits below the
    /// prefix length are ignored; for a prefix given twice the last value wins.
    pub fn build(routes: &[(u32, u8, u32)]) -> Result<Self, FibError> {
        let mut sorted: Vec<(u8, u32, u32, usize)> = Vec::with_capacity(routes.len());
        for (i, &(addr, len, value)) in routes.iter().enumerate() {
            if len > 32 {
                return Err(FibError::BadPrefixLength { len, max: 32 });
            }
            if value > MAX_VALUE {
                return Err(FibError::TooManyNextHops { max: MAX_VALUE as usize });
            }
            sorted.push((len, mask4(addr, len), value, i));
        }
        // Shortest first; among equal prefixes, input order (so the last one given wins).
        sorted.sort_unstable_by_key(|&(len, addr, _, i)| (len, addr, i));
        let mut tbl24 = zeroed_tbl24();
        let mut tbl8: Vec<u32> = Vec::new();
        let mut distinct = 0usize;
        let mut prev: Option<(u8, u32)> = None;
        for &(len, addr, value, _) in &sorted {
            if prev != Some((len, addr)) {
                distinct += 1;
                prev = Some((len, addr));
            }
            let entry = VALID | value;
            if len <= 24 {
                let start = (addr >> 8) as usize;
                let n = 1usize << (24 - len);
                // Every entry here is plain: groups are only made by longer prefixes, which
                // come later in the sorted order.
                tbl24[start..start + n].fill(entry);
            } else {
                let i24 = (addr >> 8) as usize;
                let cur = tbl24[i24];
                let group = if cur & GROUP != 0 {
                    (cur & PAYLOAD) as usize
                } else {
                    let g = tbl8.len() / 256;
                    if g as u32 > PAYLOAD {
                        return Err(FibError::TooManyNextHops { max: MAX_VALUE as usize });
                    }
                    // The group starts as the covering shorter route (or no route).
                    tbl8.extend(std::iter::repeat_n(cur, 256));
                    tbl24[i24] = VALID | GROUP | g as u32;
                    g
                };
                let start = group * 256 + (addr & 0xff) as usize;
                let n = 1usize << (32 - len);
                tbl8[start..start + n].fill(entry);
            }
        }
        Ok(Self { tbl24, tbl8, routes: distinct })
    }

    /// The value of the longest prefix containing `addr`.
    #[inline(always)]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        let e = self.tbl24[(addr >> 8) as usize];
        let e = if e & GROUP != 0 {
            let i = ((e & PAYLOAD) as usize) << 8 | (addr & 0xff) as usize;
            // In range by construction; `get` keeps a corrupted table from panicking.
            *self.tbl8.get(i)?
        } else {
            e
        };
        if e & VALID != 0 { Some(e & PAYLOAD) } else { None }
    }

    /// Distinct prefixes in the table.
    pub fn len(&self) -> usize {
        self.routes
    }

    /// True when the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }

    /// Number of 256-entry second-level groups (prefixes longer than /24 need one per /24).
    pub fn groups(&self) -> usize {
        self.tbl8.len() / 256
    }
}

/// `addr` with the bits below `len` cleared.
#[inline]
pub fn mask4(addr: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { addr & (u32::MAX << (32 - len.min(32) as u32)) }
}
