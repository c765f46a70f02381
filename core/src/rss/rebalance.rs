//! Load-aware rebalancing of a RETA without moving established flows.
//!
//! The dispatcher (or a NIC's per-queue statistics) counts packets and bytes per RETA entry and
//! remembers when each entry last saw a packet ([`RetaLoad`]). The [`Rebalancer`] moves entries
//! from the hottest queue to the coldest, but only entries that have been idle for at least
//! [`Rebalancer::idle`]: an entry that saw no packet for that long carries no established flow
//! (for flows whose packets are never further apart than the idle interval), so moving it
//! changes no flow's core and reorders no packet. New flows that hash to a moved entry then
//! land on the colder queue. Every move is returned with its reason, for the log; the new RETA
//! is published to the shards by epoch.

use super::RssError;
use super::reta::Reta;

/// Per-RETA-entry load: packets, bytes, and when the entry last saw a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetaLoad {
    packets: Vec<u64>,
    bytes: Vec<u64>,
    last_seen: Vec<Option<u64>>,
}

impl RetaLoad {
    /// Counters for a RETA of `size` entries, all zero and never seen.
    pub fn new(size: usize) -> Self {
        Self { packets: vec![0; size], bytes: vec![0; size], last_seen: vec![None; size] }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True for a zero-entry table.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Counts one packet of `bytes` on `entry` at time `now` (any monotonic unit, the same as
    /// [`Rebalancer::idle`]). Out-of-range entries are ignored.
    #[inline]
    pub fn record(&mut self, entry: usize, bytes: u64, now: u64) {
        if let (Some(p), Some(b), Some(t)) =
            (self.packets.get_mut(entry), self.bytes.get_mut(entry), self.last_seen.get_mut(entry))
        {
            *p += 1;
            *b += bytes;
            *t = Some(now);
        }
    }

    /// Packets per entry.
    pub fn packets(&self) -> &[u64] {
        &self.packets
    }

    /// Bytes per entry.
    pub fn bytes(&self) -> &[u64] {
        &self.bytes
    }

    /// When each entry last saw a packet.
    pub fn last_seen(&self) -> &[Option<u64>] {
        &self.last_seen
    }

    /// Makes `self` a copy of `other`, reusing its buffers (no allocation when the sizes match).
    pub fn copy_from(&mut self, other: &RetaLoad) {
        if self.len() == other.len() {
            self.packets.copy_from_slice(&other.packets);
            self.bytes.copy_from_slice(&other.bytes);
            self.last_seen.copy_from_slice(&other.last_seen);
        } else {
            self.clone_from(other);
        }
    }

    /// Halves packet and byte counts (call once per round for an exponentially decaying
    /// average); last-seen times are kept.
    pub fn decay(&mut self) {
        for v in self.packets.iter_mut().chain(self.bytes.iter_mut()) {
            *v /= 2;
        }
    }

    /// Adds another shard's counts for the same RETA (times: the later wins).
    pub fn merge(&mut self, other: &RetaLoad) -> Result<(), RssError> {
        if other.len() != self.len() {
            return Err(RssError::BadConfig(format!(
                "cannot merge RETA loads of {} and {} entries",
                self.len(),
                other.len()
            )));
        }
        for i in 0..self.len() {
            self.packets[i] += other.packets[i];
            self.bytes[i] += other.bytes[i];
            self.last_seen[i] = self.last_seen[i].max(other.last_seen[i]);
        }
        Ok(())
    }

    /// Load per queue under `reta` (packets, or bytes with `by_bytes`), indexed by queue number
    /// up to the highest queue named.
    pub fn per_queue(&self, reta: &Reta, by_bytes: bool) -> Vec<u64> {
        let nq = reta.entries().iter().max().map_or(0, |m| usize::from(*m) + 1);
        let mut q = vec![0u64; nq];
        let w = if by_bytes { &self.bytes } else { &self.packets };
        for (e, &queue) in reta.entries().iter().enumerate() {
            q[usize::from(queue)] += w.get(e).copied().unwrap_or(0);
        }
        q
    }
}

/// Why an entry moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveReason {
    /// From the hottest queue to the coldest; loads (of the measure used) before the move.
    HotToCold {
        /// Load of the source queue.
        from_load: u64,
        /// Load of the destination queue.
        to_load: u64,
        /// The entry's own load.
        entry_load: u64,
    },
}

/// One RETA change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RebalanceMove {
    /// Entry index.
    pub entry: usize,
    /// Queue it pointed at.
    pub from: u16,
    /// Queue it points at now.
    pub to: u16,
    /// Why.
    pub reason: MoveReason,
}

/// Moves idle RETA entries from hot to cold queues.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rebalancer {
    /// How long an entry must have seen no packet before it may move (unit of the load clock).
    pub idle: u64,
    /// Most moves per round.
    pub max_moves: usize,
    /// Stop when max/mean queue load is at most this (e.g. 1.05).
    pub target: f64,
    /// Balance bytes instead of packets.
    pub by_bytes: bool,
}

impl Default for Rebalancer {
    fn default() -> Self {
        Self { idle: 100_000_000, max_moves: 8, target: 1.05, by_bytes: false }
    }
}

/// Max over mean of `loads` (1.0 for a perfectly even spread; 1.0 when all are zero).
pub fn imbalance(loads: &[u64]) -> f64 {
    let sum: u64 = loads.iter().sum();
    if loads.is_empty() || sum == 0 {
        return 1.0;
    }
    let mean = sum as f64 / loads.len() as f64;
    loads.iter().copied().max().unwrap_or(0) as f64 / mean
}

impl Rebalancer {
    /// One round: moves idle entries of `reta` from the hottest to the coldest of `queues`
    /// (the queues of the group, so an empty queue can receive entries) while that reduces the
    /// gap and the imbalance is above [`Rebalancer::target`]. Returns the moves made (empty
    /// when nothing needed or could move).
    pub fn rebalance(
        &self,
        reta: &mut Reta,
        queues: &[u16],
        load: &RetaLoad,
        now: u64,
    ) -> Vec<RebalanceMove> {
        let mut moves = Vec::new();
        if queues.is_empty() || load.len() != reta.len() {
            return moves;
        }
        let w = if self.by_bytes { load.bytes() } else { load.packets() };
        let qload = |reta: &Reta, q: u16| -> u64 {
            reta.entries().iter().zip(w).filter(|(e, _)| **e == q).map(|(_, l)| *l).sum()
        };
        let mut moved = vec![false; reta.len()];
        while moves.len() < self.max_moves {
            let loads: Vec<u64> = queues.iter().map(|q| qload(reta, *q)).collect();
            if imbalance(&loads) <= self.target {
                break;
            }
            let (Some(hot), Some(cold)) = (
                (0..queues.len()).max_by_key(|&i| (loads[i], std::cmp::Reverse(i))),
                (0..queues.len()).min_by_key(|&i| (loads[i], i)),
            ) else {
                break;
            };
            let gap = loads[hot] - loads[cold];
            // The idle entry of the hot queue whose load comes closest to half the gap without
            // reaching the full gap (so the move strictly narrows it).
            let best = reta
                .entries()
                .iter()
                .enumerate()
                .filter(|(e, q)| **q == queues[hot] && !moved[*e])
                .filter(|(e, _)| w[*e] > 0 && w[*e] < gap)
                .filter(|(e, _)| load.last_seen()[*e].is_none_or(|t| now.saturating_sub(t) >= self.idle))
                .min_by_key(|(e, _)| (w[*e].abs_diff(gap / 2), *e))
                .map(|(e, _)| e);
            let Some(entry) = best else { break };
            let (from, to) = (queues[hot], queues[cold]);
            if reta.set(entry, to).is_err() {
                break;
            }
            moved[entry] = true;
            moves.push(RebalanceMove {
                entry,
                from,
                to,
                reason: MoveReason::HotToCold {
                    from_load: loads[hot],
                    to_load: loads[cold],
                    entry_load: w[entry],
                },
            });
        }
        moves
    }
}
