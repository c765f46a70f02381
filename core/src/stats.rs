//! Per-shard counters and the lock-free snapshot through which other threads read them.
//!
//! The shard increments plain `u64`s in its [`ShardCtx`] (no atomics per packet) and, every few
//! batches, copies them into its [`StatsCell`] under a sequence lock. Readers retry until they
//! see an even, unchanged sequence number, so a snapshot is always one consistent instant of the
//! shard (e.g. `rx_packets == tx_packets + drops` holds in it for a forwarding pipeline).

use std::time::Instant;

use crate::sync::atomic::{AtomicU64, Ordering, fence};
use crate::verdict::DropReason;

/// Index of a shard (0-based, dense): an index into the runtime's shards, hence `usize`.
///
/// Queue ids are `u16` ([`crate::Port::queue_pair`], [`crate::PacketMeta::rx_queue`]) because
/// that is what NICs and DPDK use (`uint16_t` queue ids). A shard is not a queue — a shard may own
/// several queues, or none (a dispatcher consumer) — so the two types stay apart; the usual
/// one-queue-per-shard layout converts with `u16::try_from(shard)`, which fails only beyond
/// 65 536 shards.
pub type ShardId = usize;

/// Counters of one shard, owned and written by it alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardCounters {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Packets punted to the control plane.
    pub punted: u64,
    /// Packets handed to another shard (software dispatch).
    pub handed_off: u64,
    /// Drops, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
}

impl Default for ShardCounters {
    fn default() -> Self {
        Self {
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            punted: 0,
            handed_off: 0,
            drops: [0; DropReason::COUNT],
        }
    }
}

impl ShardCounters {
    /// Counts one dropped packet.
    #[inline]
    pub fn drop_packet(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }

    /// A received packet of `bytes` bytes handed to another shard, which counts it as received
    /// when it takes it: it leaves this shard's `rx_packets`/`rx_bytes` for `handed_off`, so the
    /// shards' totals count each packet once.
    #[inline]
    pub fn hand_off(&mut self, bytes: u64) {
        self.handed_off += 1;
        self.rx_packets = self.rx_packets.saturating_sub(1);
        self.rx_bytes = self.rx_bytes.saturating_sub(bytes);
    }

    /// Counts `n` dropped packets.
    #[inline]
    pub fn drop_packets(&mut self, reason: DropReason, n: u64) {
        self.drops[reason.index()] += n;
    }

    /// Drops under one reason.
    #[inline]
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Drops under every reason.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another shard's counters (for totals).
    pub fn accumulate(&mut self, o: &ShardCounters) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.punted += o.punted;
        self.handed_off += o.handed_off;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
    }

    /// `(reason, count)` for every reason with a non-zero count.
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.drops[r.index()])).filter(|(_, n)| *n > 0)
    }

    fn to_words(self) -> [u64; WORDS] {
        let mut w = [0u64; WORDS];
        w[0] = self.rx_packets;
        w[1] = self.rx_bytes;
        w[2] = self.tx_packets;
        w[3] = self.tx_bytes;
        w[4] = self.punted;
        w[5] = self.handed_off;
        w[6..].copy_from_slice(&self.drops);
        w
    }

    fn from_words(w: &[u64; WORDS]) -> Self {
        let mut drops = [0u64; DropReason::COUNT];
        drops.copy_from_slice(&w[6..]);
        Self {
            rx_packets: w[0],
            rx_bytes: w[1],
            tx_packets: w[2],
            tx_bytes: w[3],
            punted: w[4],
            handed_off: w[5],
            drops,
        }
    }
}

impl std::fmt::Display for ShardCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rx {} pkts / {} B, tx {} pkts / {} B, punted {}, handed off {}, dropped {}",
            self.rx_packets,
            self.rx_bytes,
            self.tx_packets,
            self.tx_bytes,
            self.punted,
            self.handed_off,
            self.total_drops()
        )?;
        for (r, n) in self.nonzero_drops() {
            write!(f, " [{}={}]", r.name(), n)?;
        }
        Ok(())
    }
}

const WORDS: usize = 6 + DropReason::COUNT;

/// What a shard passes to every stage: its identity, its counters and a coarse clock.
#[derive(Debug)]
pub struct ShardCtx {
    /// This shard.
    pub shard: ShardId,
    /// This shard's counters.
    pub counters: ShardCounters,
    /// Time of the current batch (read once per batch, not per packet).
    pub now: Instant,
}

impl ShardCtx {
    /// Context for `shard`, counters at zero.
    pub fn new(shard: ShardId) -> Self {
        Self { shard, counters: ShardCounters::default(), now: Instant::now() }
    }
}

/// A consistent snapshot of a shard's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// The shard.
    pub shard: ShardId,
    /// How many times the shard has published (0: never).
    pub generation: u64,
    /// The counters.
    pub counters: ShardCounters,
}

/// Single-writer, many-reader sequence lock over `N` words of atomics.
///
/// The writer bumps the sequence to odd, stores the words, and bumps it to even; a reader
/// retries until it saw the same even sequence before and after reading the words. All words are
/// atomics, so there is no data race even while a read overlaps a write; the fences give the
/// ordering the protocol needs (Boehm, "Can seqlocks get along with programming language memory
/// models?", 2012).
#[derive(Debug)]
// Public for `core/tests/loom.rs` only; integrators read counters through `StatsCell`.
#[doc(hidden)]
pub struct SeqLock<const N: usize> {
    seq: AtomicU64,
    words: [AtomicU64; N],
}

impl<const N: usize> Default for SeqLock<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> SeqLock<N> {
    /// All zero, generation 0.
    pub fn new() -> Self {
        Self { seq: AtomicU64::new(0), words: std::array::from_fn(|_| AtomicU64::new(0)) }
    }

    /// Publishes `w`. Only one thread may ever write (single writer).
    pub fn write(&self, w: &[u64; N]) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (a, v) in self.words.iter().zip(w) {
            a.store(*v, Ordering::Relaxed);
        }
        self.seq.store(s + 2, Ordering::Release);
    }

    /// Reads a consistent copy and the number of writes before it.
    pub fn read(&self) -> (u64, [u64; N]) {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let mut w = [0u64; N];
                for (v, a) in w.iter_mut().zip(self.words.iter()) {
                    *v = a.load(Ordering::Relaxed);
                }
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == s1 {
                    return (s1 / 2, w);
                }
            }
            crate::sync::spin_hint();
        }
    }
}

/// Single-writer, many-reader cell of [`ShardCounters`]: a sequence lock over their words.
#[derive(Debug, Default)]
pub struct StatsCell {
    lock: SeqLock<WORDS>,
}

impl StatsCell {
    /// All zero.
    pub fn new() -> Self {
        Self { lock: SeqLock::new() }
    }

    /// Publishes `c`. Only the owning shard may call this (single writer).
    pub fn publish(&self, c: &ShardCounters) {
        self.lock.write(&c.to_words());
    }

    /// Reads a consistent snapshot; returns it with its generation (publishes so far).
    pub fn read(&self) -> (u64, ShardCounters) {
        let (g, w) = self.lock.read();
        (g, ShardCounters::from_words(&w))
    }
}
