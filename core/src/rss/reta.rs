//! The RSS indirection table (RETA): hash → queue.

use super::RssError;

/// Largest RETA wirespeed builds (mlx5 supports 512 entries).
pub const MAX_RETA_SIZE: usize = 512;

/// An indirection table: `queue = entries[hash & (len - 1)]`, `len` a power of two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reta {
    entries: Vec<u16>,
}

impl Reta {
    /// A table from explicit entries.
    pub fn new(entries: Vec<u16>) -> Result<Self, RssError> {
        let size = entries.len();
        if size == 0 || !size.is_power_of_two() || size > MAX_RETA_SIZE {
            return Err(RssError::BadRetaSize { size, max: MAX_RETA_SIZE });
        }
        Ok(Self { entries })
    }

    /// `size` entries assigned to queues `0..queues` round-robin (what NICs default to).
    pub fn round_robin(size: usize, queues: u16) -> Result<Self, RssError> {
        let q = queues.max(1);
        Self::new((0..size).map(|i| (i % q as usize) as u16).collect())
    }

    /// Queue for a hash.
    #[inline]
    pub fn queue(&self, hash: u32) -> u16 {
        self.entries[hash as usize & (self.entries.len() - 1)]
    }

    /// Entry index for a hash.
    #[inline]
    pub fn index(&self, hash: u32) -> usize {
        hash as usize & (self.entries.len() - 1)
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never true (a RETA has at least one entry); for clippy's `len_without_is_empty`.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries.
    pub fn entries(&self) -> &[u16] {
        &self.entries
    }
}
