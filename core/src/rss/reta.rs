//! The RSS indirection table (RETA): hash → queue.

use super::RssError;

/// Largest RETA wirespeed builds (mlx5 supports 512 entries).
pub const MAX_RETA_SIZE: usize = 512;

/// An indirection table: `queue = entries[hash & (len - 1)]`, `len` a power of two.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "Vec<u16>", into = "Vec<u16>"))]
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

    /// `size` entries assigned round-robin over an explicit queue set (an RSS group).
    pub fn over_queues(size: usize, queues: &[u16]) -> Result<Self, RssError> {
        if queues.is_empty() {
            return Err(RssError::BadConfig("an RSS group needs at least one queue".into()));
        }
        Self::new((0..size).map(|i| queues[i % queues.len()]).collect())
    }

    /// `size` entries shared out in proportion to `weights` (`(queue, weight)`), by largest
    /// remainder, then interleaved so each queue's entries are spread over the table.
    /// Zero weights get no entries.
    pub fn weighted(size: usize, weights: &[(u16, u32)]) -> Result<Self, RssError> {
        let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return Err(RssError::BadConfig("weighted RETA: all weights are zero".into()));
        }
        // Entries per queue: floor of the exact share, then the largest remainders get one more.
        let exact: Vec<(u64, u64)> = weights
            .iter()
            .map(|(_, w)| (u64::from(*w) * size as u64 / total, u64::from(*w) * size as u64 % total))
            .collect();
        let mut counts: Vec<u64> = exact.iter().map(|e| e.0).collect();
        let mut left = size as u64 - counts.iter().sum::<u64>();
        let mut order: Vec<usize> = (0..weights.len()).collect();
        order.sort_by(|a, b| exact[*b].1.cmp(&exact[*a].1).then(a.cmp(b)));
        for i in order {
            if left == 0 {
                break;
            }
            if weights[i].1 > 0 {
                counts[i] += 1;
                left -= 1;
            }
        }
        // Interleave: repeatedly give the next entry to the queue furthest behind its share.
        let mut given = vec![0u64; weights.len()];
        let mut entries = Vec::with_capacity(size);
        for k in 0..size as u64 {
            let pick = (0..weights.len()).filter(|&i| given[i] < counts[i]).max_by(|&a, &b| {
                // Deficit counts[i]*(k+1)/size - given[i], compared without division.
                let da = counts[a] as i128 * (k as i128 + 1) - given[a] as i128 * size as i128;
                let db = counts[b] as i128 * (k as i128 + 1) - given[b] as i128 * size as i128;
                da.cmp(&db).then(b.cmp(&a))
            });
            let Some(i) = pick else { break };
            given[i] += 1;
            entries.push(weights[i].0);
        }
        Self::new(entries)
    }

    /// Points entry `index` at `queue`.
    pub fn set(&mut self, index: usize, queue: u16) -> Result<(), RssError> {
        let len = self.entries.len();
        match self.entries.get_mut(index) {
            Some(e) => {
                *e = queue;
                Ok(())
            }
            None => Err(RssError::BadConfig(format!("RETA entry {index} out of range (size {len})"))),
        }
    }

    /// The distinct queues the table names, ascending.
    pub fn queues(&self) -> Vec<u16> {
        let mut q = self.entries.clone();
        q.sort_unstable();
        q.dedup();
        q
    }

    /// Checks every entry names a queue below `queues`.
    pub fn validate(&self, queues: u16) -> Result<(), RssError> {
        match self.entries.iter().position(|q| *q >= queues) {
            Some(index) => Err(RssError::QueueOutOfRange { index, queue: self.entries[index], queues }),
            None => Ok(()),
        }
    }

    /// Queue for a hash.
    #[inline]
    pub fn queue(&self, hash: u32) -> u16 {
        self.entries[hash as usize & (self.entries.len() - 1)]
    }

    /// Queues of a batch of hashes: `out[i]` = [`Reta::queue`]`(hashes[i])` (up to the shorter
    /// length). The table and its mask are loaded once for the whole batch.
    #[inline]
    pub fn queues_into(&self, hashes: &[u32], out: &mut [u16]) {
        let entries = &self.entries[..];
        let mask = entries.len().wrapping_sub(1);
        for (q, &h) in out.iter_mut().zip(hashes) {
            // The mask keeps the index below the (power-of-two) length; `get` never fails.
            *q = entries.get(h as usize & mask).copied().unwrap_or(0);
        }
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

impl TryFrom<Vec<u16>> for Reta {
    type Error = RssError;
    fn try_from(v: Vec<u16>) -> Result<Self, RssError> {
        Self::new(v)
    }
}

impl From<Reta> for Vec<u16> {
    fn from(r: Reta) -> Vec<u16> {
        r.entries
    }
}
