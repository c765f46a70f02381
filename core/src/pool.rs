//! The pre-allocated buffer pool and its buffer type, [`PoolBuf`].
//!
//! All buffers are allocated once, when the pool is created; after that, taking and returning a
//! buffer never touches the heap. Like a DPDK mempool, the pool is a shared depot plus a
//! per-thread cache: buffers move between a thread's cache and the depot in *magazines* of
//! [`MAGAZINE`] buffers (one atomic queue operation per magazine), so a shard that receives and
//! transmits on the same core allocates and frees without any atomic operation at all.
//!
//! A buffer dropped anywhere (a stage dropping a packet, a test, another shard after a software
//! dispatch) goes back to the pool it came from. Pools live for the rest of the process, like
//! mempools: create them at start-up, not per packet or per connection.
//!
//! Sizing: each thread that touches the pool may hold up to `2 × MAGAZINE` buffers in its cache,
//! so give the pool at least `threads × 2 × MAGAZINE` buffers beyond what is in flight in rings.

use std::cell::RefCell;

use arrayvec::ArrayVec;

use crate::buf::{BufError, BufWindow, PacketBuf};
use crate::meta::PacketMeta;
use crate::sync::BoundedQueue;
use crate::sync::atomic::{AtomicU64, Ordering};

/// Buffers moved between a thread cache and the shared depot at once.
pub const MAGAZINE: usize = 64;
/// Smallest headroom a pool accepts: room for outer Ethernet + IPv6 + UDP + ESP headers and IV.
pub const MIN_HEADROOM: usize = 128;
/// Pools one thread caches for at once; operations on further pools go to the depot directly.
const CACHED_POOLS: usize = 4;

type Storage = Box<[u8]>;
type Magazine = ArrayVec<Storage, MAGAZINE>;

/// Shape of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Number of buffers.
    pub buffers: usize,
    /// Bytes of packet room per buffer, after the headroom (the largest frame plus trailers).
    pub data_room: usize,
    /// Bytes reserved before the packet for encapsulation (at least [`MIN_HEADROOM`]).
    pub headroom: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { buffers: 4096, data_room: 2048, headroom: 256 }
    }
}

/// A pool configuration that cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Headroom below [`MIN_HEADROOM`].
    #[error("pool headroom {headroom} is below the minimum of {min} bytes")]
    HeadroomTooSmall {
        /// Headroom asked for.
        headroom: usize,
        /// The minimum.
        min: usize,
    },
    /// Zero buffers.
    #[error("a pool needs at least one buffer")]
    NoBuffers,
    /// Zero data room or a buffer larger than 16 MiB.
    #[error("buffer size {size} is out of range (1 byte to 16 MiB of data room)")]
    BadBufferSize {
        /// Data room asked for.
        size: usize,
    },
}

/// Counters of a pool, readable from any thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers the pool owns.
    pub capacity: usize,
    /// Buffers in the shared depot now (buffers in thread caches and in flight are not counted).
    pub in_depot: usize,
    /// Times an allocation found the pool empty.
    pub exhausted: u64,
}

struct PoolShared {
    headroom: usize,
    /// A fresh buffer's window: empty, after the full headroom.
    fresh: BufWindow,
    size: usize,
    capacity: usize,
    /// Full magazines.
    depot: BoundedQueue<Magazine>,
    /// Buffers returned one at a time (no cache on the thread) or in partial magazines.
    loose: BoundedQueue<Storage>,
    exhausted: AtomicU64,
}

/// Handle to a pre-allocated buffer pool. `Copy`, `Send` and `Sync`: share it freely.
#[derive(Clone, Copy)]
pub struct BufferPool {
    shared: &'static PoolShared,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("capacity", &self.shared.capacity)
            .field("headroom", &self.shared.headroom)
            .field("size", &self.shared.size)
            .finish()
    }
}

impl BufferPool {
    /// Allocates every buffer of the pool now. The pool lives until the process exits.
    pub fn new(cfg: PoolConfig) -> Result<Self, PoolError> {
        if cfg.headroom < MIN_HEADROOM {
            return Err(PoolError::HeadroomTooSmall { headroom: cfg.headroom, min: MIN_HEADROOM });
        }
        if cfg.buffers == 0 {
            return Err(PoolError::NoBuffers);
        }
        if cfg.data_room == 0 || cfg.data_room > 16 << 20 {
            return Err(PoolError::BadBufferSize { size: cfg.data_room });
        }
        let size = cfg.headroom + cfg.data_room;
        let fresh = BufWindow::new(cfg.headroom, 0, size).map_err(|_| PoolError::BadBufferSize { size })?;
        let shared = PoolShared {
            headroom: cfg.headroom,
            fresh,
            size,
            capacity: cfg.buffers,
            depot: BoundedQueue::new(cfg.buffers / MAGAZINE + 1),
            loose: BoundedQueue::new(cfg.buffers),
            exhausted: AtomicU64::new(0),
        };
        let mut left = cfg.buffers;
        while left >= MAGAZINE {
            let mut mag = Magazine::new();
            for _ in 0..MAGAZINE {
                mag.push(vec![0u8; size].into_boxed_slice());
            }
            if shared.depot.push(mag).is_err() {
                unreachable!("depot sized for every full magazine");
            }
            left -= MAGAZINE;
        }
        for _ in 0..left {
            if shared.loose.push(vec![0u8; size].into_boxed_slice()).is_err() {
                unreachable!("loose queue sized for every buffer");
            }
        }
        Ok(Self { shared: Box::leak(Box::new(shared)) })
    }

    /// Takes one buffer (empty, headroom reserved, fresh metadata), or `None` when the pool is
    /// exhausted; exhaustion is counted in [`PoolStats::exhausted`] and the caller counts the
    /// drop as [`crate::DropReason::PoolExhausted`].
    #[inline]
    pub fn alloc(&self) -> Option<PoolBuf> {
        let shared = self.shared;
        let storage = match with_cache(|c| c.take(shared)) {
            Some(s) => s?,
            None => shared.take_shared()?,
        };
        Some(self.wrap(storage))
    }

    /// Takes up to `n` buffers with one cache access, handing each to `sink`; returns how many.
    #[inline]
    pub fn alloc_bulk(&self, n: usize, mut sink: impl FnMut(PoolBuf)) -> usize {
        let shared = self.shared;
        let mut done = 0;
        let cached = with_cache(|c| {
            let Some(lc) = c.slot(shared) else { return false };
            while done < n {
                if lc.bufs.is_empty() {
                    shared.refill(&mut lc.bufs);
                    if lc.bufs.is_empty() {
                        shared.exhausted.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                let k = (n - done).min(lc.bufs.len());
                let from = lc.bufs.len() - k;
                for s in lc.bufs.drain(from..) {
                    sink(self.wrap(s));
                }
                done += k;
            }
            true
        });
        if cached != Some(true) {
            // No usable cache on this thread: straight from the depot.
            while done < n {
                match shared.take_shared() {
                    Some(s) => sink(self.wrap(s)),
                    None => break,
                }
                done += 1;
            }
        }
        done
    }

    /// Fills the free slots of `batch` with buffers taken with one cache access, each built in
    /// place with metadata `meta` and then handed to `fill` where it sits in the batch (so a
    /// 72-byte buffer is never moved); returns how many were added. This is the cheapest way
    /// for an Rx queue to receive into a batch.
    #[inline]
    pub fn alloc_batch<const N: usize>(
        &self,
        batch: &mut crate::batch::Batch<PoolBuf, N>,
        meta: PacketMeta,
        mut fill: impl FnMut(&mut PoolBuf),
    ) -> usize {
        let shared = self.shared;
        let win = shared.fresh;
        let pkts = batch.inner_mut();
        let want = pkts.remaining_capacity();
        let mut done = 0;
        let cached = with_cache(|c| {
            let Some(lc) = c.slot(shared) else { return false };
            while done < want {
                if lc.bufs.is_empty() {
                    shared.refill(&mut lc.bufs);
                    if lc.bufs.is_empty() {
                        shared.exhausted.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                let k = (want - done).min(lc.bufs.len());
                let from = lc.bufs.len() - k;
                for storage in lc.bufs.drain(from..) {
                    // Cannot fail: at most `want` buffers are added.
                    if pkts.try_push(PoolBuf { storage, pool: shared, win, meta }).is_ok()
                        && let Some(b) = pkts.last_mut()
                    {
                        fill(b);
                    }
                }
                done += k;
            }
            true
        });
        if cached != Some(true) {
            // No usable cache on this thread: straight from the depot.
            while done < want {
                let Some(storage) = shared.take_shared() else { break };
                if pkts.try_push(PoolBuf { storage, pool: shared, win, meta }).is_ok()
                    && let Some(b) = pkts.last_mut()
                {
                    fill(b);
                }
                done += 1;
            }
        }
        done
    }

    /// Returns many buffers with one cache access (what Tx queues do after sending).
    #[inline]
    pub fn free_bulk(&self, bufs: impl Iterator<Item = PoolBuf>) {
        let shared = self.shared;
        let mut bufs = bufs;
        with_cache(|c| {
            let Some(lc) = c.slot(shared) else { return };
            for mut b in bufs.by_ref() {
                let s = b.take_storage();
                if std::ptr::eq(b.pool, shared) {
                    if lc.bufs.is_full() {
                        shared.spill(&mut lc.bufs);
                    }
                    lc.bufs.push(s);
                } else {
                    b.pool.put_shared(s);
                }
            }
        });
        // Whatever the cache could not take (no cache on this thread) drops one by one.
        for b in bufs {
            drop(b);
        }
    }

    /// Returns every buffer of `batch` to the pool with one cache access and empties the batch
    /// (the cheapest way for a Tx queue to free what it sent).
    #[inline]
    pub fn free_batch<const N: usize>(&self, batch: &mut crate::batch::Batch<PoolBuf, N>) {
        let shared = self.shared;
        with_cache(|c| {
            let Some(lc) = c.slot(shared) else { return };
            // Make room for the whole batch up front when it fits in one spill (the usual case),
            // so the loop below only pushes.
            if lc.bufs.remaining_capacity() < batch.len() {
                shared.spill(&mut lc.bufs);
            }
            for b in batch.iter_mut() {
                if !std::ptr::eq(b.pool, shared) {
                    continue; // a foreign buffer goes home when the batch is cleared below
                }
                if lc.bufs.is_full() {
                    shared.spill(&mut lc.bufs);
                }
                lc.bufs.push(b.take_storage());
            }
        });
        // Dropped in place, not moved out of the batch: a buffer whose storage went back to the
        // cache above is empty and its `Drop` returns at once; a foreign buffer, or every buffer
        // when this thread has no cache, goes home through its `Drop`.
        batch.clear();
    }

    #[inline]
    fn wrap(&self, storage: Storage) -> PoolBuf {
        PoolBuf { storage, pool: self.shared, win: self.shared.fresh, meta: PacketMeta::default() }
    }

    /// Counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            capacity: self.shared.capacity,
            in_depot: self.shared.depot.len() * MAGAZINE + self.shared.loose.len(),
            exhausted: self.shared.exhausted.load(Ordering::Relaxed),
        }
    }

    /// Headroom of every buffer.
    pub fn headroom(&self) -> usize {
        self.shared.headroom
    }

    /// Data room of every buffer (largest packet with the headroom untouched).
    pub fn data_room(&self) -> usize {
        self.shared.size - self.shared.headroom
    }

    /// Returns this thread's cached buffers of this pool to the shared depot (e.g. before a
    /// thread parks for good, or to make [`PoolStats::in_depot`] exact in tests).
    pub fn flush_thread_cache(&self) {
        let shared = self.shared;
        let _ = CACHES.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                c.flush_pool(shared);
            }
        });
    }
}

impl PoolShared {
    #[cold]
    fn take_shared(&self) -> Option<Storage> {
        let s = self.loose.pop().or_else(|| {
            let mut mag = self.depot.pop()?;
            let s = mag.pop();
            for rest in mag {
                self.put_shared(rest);
            }
            s
        });
        if s.is_none() {
            self.exhausted.fetch_add(1, Ordering::Relaxed);
        }
        s
    }

    #[cold]
    fn put_shared(&self, s: Storage) {
        // The loose queue can hold every buffer of the pool, so this cannot fail.
        let _ = self.loose.push(s);
    }

    /// Refills a thread cache: a full magazine from the depot, else loose buffers.
    fn refill(&self, into: &mut ArrayVec<Storage, { 2 * MAGAZINE }>) {
        if let Some(mag) = self.depot.pop() {
            into.extend(mag);
            return;
        }
        while into.len() < MAGAZINE {
            match self.loose.pop() {
                Some(s) => into.push(s),
                None => break,
            }
        }
    }

    fn spill(&self, from: &mut ArrayVec<Storage, { 2 * MAGAZINE }>) {
        let mut mag = Magazine::new();
        while !mag.is_full() {
            match from.pop() {
                Some(s) => mag.push(s),
                None => break,
            }
        }
        if mag.is_full() {
            if let Err(mag) = self.depot.push(mag) {
                mag.into_iter().for_each(|s| self.put_shared(s));
            }
        } else {
            mag.into_iter().for_each(|s| self.put_shared(s));
        }
    }
}

struct LocalCache {
    pool: &'static PoolShared,
    bufs: ArrayVec<Storage, { 2 * MAGAZINE }>,
}

struct ThreadCaches {
    slots: ArrayVec<LocalCache, CACHED_POOLS>,
}

impl ThreadCaches {
    #[inline]
    fn slot(&mut self, pool: &'static PoolShared) -> Option<&mut LocalCache> {
        if let Some(i) = self.slots.iter().position(|c| std::ptr::eq(c.pool, pool)) {
            return Some(&mut self.slots[i]);
        }
        if self.slots.is_full() {
            return None;
        }
        self.slots.push(LocalCache { pool, bufs: ArrayVec::new_const() });
        self.slots.last_mut()
    }

    #[inline]
    fn take(&mut self, pool: &'static PoolShared) -> Option<Storage> {
        let Some(c) = self.slot(pool) else { return pool.take_shared() };
        if let Some(s) = c.bufs.pop() {
            return Some(s);
        }
        pool.refill(&mut c.bufs);
        let s = c.bufs.pop();
        if s.is_none() {
            pool.exhausted.fetch_add(1, Ordering::Relaxed);
        }
        s
    }

    #[inline]
    fn put(&mut self, pool: &'static PoolShared, s: Storage) {
        let Some(c) = self.slot(pool) else { return pool.put_shared(s) };
        if c.bufs.is_full() {
            pool.spill(&mut c.bufs);
        }
        c.bufs.push(s);
    }

    fn flush_pool(&mut self, pool: &'static PoolShared) {
        if let Some(i) = self.slots.iter().position(|c| std::ptr::eq(c.pool, pool)) {
            let c = self.slots.swap_remove(i);
            c.bufs.into_iter().for_each(|s| pool.put_shared(s));
        }
    }
}

impl Drop for ThreadCaches {
    fn drop(&mut self) {
        for c in self.slots.drain(..) {
            let pool = c.pool;
            c.bufs.into_iter().for_each(|s| pool.put_shared(s));
        }
    }
}

thread_local! {
    static CACHES: RefCell<ThreadCaches> = const {
        RefCell::new(ThreadCaches { slots: ArrayVec::new_const() })
    };
}

/// Runs `f` on this thread's cache and returns `Some`, or returns `None` without running it when
/// there is no usable cache (thread exiting, re-entry); callers then use the depot directly.
#[inline]
fn with_cache<R>(f: impl FnOnce(&mut ThreadCaches) -> R) -> Option<R> {
    CACHES
        .try_with(|c| match c.try_borrow_mut() {
            Ok(mut c) => Some(f(&mut c)),
            Err(_) => None,
        })
        .ok()
        .flatten()
}

/// A buffer from a [`BufferPool`]. Dropping it returns it to its pool.
pub struct PoolBuf {
    storage: Storage,
    pool: &'static PoolShared,
    /// Where the packet sits in `storage` (`head + len <= storage.len()`).
    win: BufWindow,
    meta: PacketMeta,
}

impl std::fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuf")
            .field("head", &self.win.headroom())
            .field("len", &self.win.len())
            .field("meta", &self.meta)
            .finish()
    }
}

impl PoolBuf {
    /// Replaces the packet with the `L` bytes of `bytes` (keeps the headroom where it is): a
    /// fixed-size copy the compiler does with a few vector moves instead of a `memcpy` call.
    #[inline]
    pub fn copy_from_array<const L: usize>(&mut self, bytes: &[u8; L]) -> Result<(), BufError> {
        // Checked (and the error made) by the window first; the copy then always has room.
        self.win.set_len(L, self.storage.len())?;
        if let Some(dst) = self.storage.get_mut(self.win.range()).and_then(|d| d.first_chunk_mut::<L>()) {
            *dst = *bytes;
        }
        Ok(())
    }

    #[inline]
    fn take_storage(&mut self) -> Storage {
        std::mem::take(&mut self.storage)
    }

    /// Empties the packet, restores the full headroom and resets the metadata.
    #[inline]
    pub fn reset(&mut self) {
        self.win = self.pool.fresh;
        self.meta = PacketMeta::default();
    }

    /// Total bytes of the buffer (headroom + data room).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.storage.len()
    }
}

impl Drop for PoolBuf {
    // Small enough to inline everywhere: a buffer already handed back (by `free_batch`) costs a
    // load and a branch, so dropping a whole batch in place stays a tight loop.
    #[inline(always)]
    fn drop(&mut self) {
        if !self.storage.is_empty() {
            self.give_back();
        }
    }
}

impl PoolBuf {
    /// Returns the storage to the pool (the `Drop` of a buffer still holding it).
    #[inline(never)]
    fn give_back(&mut self) {
        let s = self.take_storage();
        let pool = self.pool;
        let mut s = Some(s);
        with_cache(|c| {
            if let Some(s) = s.take() {
                c.put(pool, s);
            }
        });
        if let Some(s) = s {
            pool.put_shared(s);
        }
    }
}

impl PacketBuf for PoolBuf {
    #[inline]
    fn alloc_like(&self) -> Option<Self> {
        BufferPool { shared: self.pool }.alloc()
    }

    #[inline]
    fn len(&self) -> usize {
        self.win.len()
    }

    #[inline]
    fn data(&self) -> &[u8] {
        &self.storage[self.win.range()]
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.win.range()]
    }

    #[inline]
    fn headroom(&self) -> usize {
        self.win.headroom()
    }

    #[inline]
    fn tailroom(&self) -> usize {
        self.win.tailroom(self.storage.len())
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        let front = self.win.prepend(n)?;
        Ok(&mut self.storage[front])
    }

    #[inline]
    fn trim_front(&mut self, n: usize) -> Result<(), BufError> {
        self.win.trim_front(n)
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> Result<(), BufError> {
        self.win.set_len(len, self.storage.len())
    }

    #[inline]
    fn meta(&self) -> &PacketMeta {
        &self.meta
    }

    #[inline]
    fn meta_mut(&mut self) -> &mut PacketMeta {
        &mut self.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(buffers: usize) -> BufferPool {
        BufferPool::new(PoolConfig { buffers, data_room: 256, headroom: 128 }).unwrap()
    }

    #[test]
    fn rejects_bad_config() {
        let e = BufferPool::new(PoolConfig { headroom: 64, ..PoolConfig::default() }).unwrap_err();
        assert_eq!(e, PoolError::HeadroomTooSmall { headroom: 64, min: 128 });
        assert_eq!(
            BufferPool::new(PoolConfig { buffers: 0, ..PoolConfig::default() }).unwrap_err(),
            PoolError::NoBuffers
        );
    }

    #[test]
    fn headroom_tailroom_arithmetic() {
        let pool = small(8);
        let mut b = pool.alloc().unwrap();
        assert_eq!((b.len(), b.headroom(), b.tailroom()), (0, 128, 256));
        b.copy_from(&[1, 2, 3, 4]).unwrap();
        b.prepend(2).unwrap().copy_from_slice(&[9, 8]);
        assert_eq!(b.data(), &[9, 8, 1, 2, 3, 4]);
        assert_eq!(b.headroom(), 126);
        b.trim_front(3).unwrap();
        assert_eq!(b.data(), &[2, 3, 4]);
        b.extend(2).unwrap().copy_from_slice(&[5, 6]);
        assert_eq!(b.data(), &[2, 3, 4, 5, 6]);
        assert_eq!(b.prepend(1000).unwrap_err(), BufError::NoHeadroom { needed: 1000, available: 129 });
        assert!(matches!(b.set_len(10_000), Err(BufError::NoTailroom { .. })));
        assert_eq!(b.trim_front(6).unwrap_err(), BufError::TooShort { trim: 6, len: 5 });
    }

    #[test]
    fn exhaustion_is_counted_and_drop_returns() {
        let pool = small(100);
        let mut held: Vec<PoolBuf> = (0..100).map(|_| pool.alloc().unwrap()).collect();
        assert!(pool.alloc().is_none());
        assert_eq!(pool.stats().exhausted, 1);
        held.truncate(10);
        assert!(pool.alloc().is_some());
        drop(held);
        pool.flush_thread_cache();
        assert_eq!(pool.stats().in_depot, 100);
    }

    #[test]
    fn buffers_cross_threads_and_come_home() {
        let pool = small(512);
        let bufs: Vec<PoolBuf> = (0..300).map(|_| pool.alloc().unwrap()).collect();
        std::thread::spawn(move || drop(bufs)).join().unwrap();
        pool.flush_thread_cache();
        // The other thread's cache was flushed when it exited.
        assert_eq!(pool.stats().in_depot, 512);
        let again: Vec<PoolBuf> = (0..512).map(|_| pool.alloc().unwrap()).collect();
        assert_eq!(again.len(), 512);
    }

    #[test]
    fn copy_from_array_fills_or_reports_no_tailroom() {
        let pool = small(4);
        let mut b = pool.alloc().unwrap();
        let frame: [u8; 64] = std::array::from_fn(|i| i as u8);
        b.copy_from_array(&frame).unwrap();
        assert_eq!(b.data(), &frame[..]);
        assert_eq!(b.headroom(), 128);
        let big = [0u8; 300];
        assert_eq!(b.copy_from_array(&big).unwrap_err(), BufError::NoTailroom { wanted: 300, capacity: 256 });
        assert_eq!(b.data(), &frame[..], "a failed copy leaves the packet alone");
    }

    #[test]
    fn alloc_batch_fills_free_slots_in_place_and_free_batch_returns_all() {
        let pool = small(70);
        let mut batch: crate::batch::Batch<PoolBuf, 32> = crate::batch::Batch::new();
        let meta = PacketMeta { rx_port: 3, rx_queue: 1, ..PacketMeta::default() };
        let mut seen = 0;
        assert_eq!(
            pool.alloc_batch(&mut batch, meta, |b| {
                seen += 1;
                b.set_len(60).unwrap();
            }),
            32
        );
        assert_eq!(seen, 32);
        assert!(batch.iter().all(|b| b.len() == 60 && *b.meta() == meta && b.headroom() == 128));
        // Only the free slots are filled.
        drop(batch.pop());
        assert_eq!(pool.alloc_batch(&mut batch, meta, |_| {}), 1);
        // Exhaustion stops early and is counted.
        let mut other: crate::batch::Batch<PoolBuf, 32> = crate::batch::Batch::new();
        let mut third: crate::batch::Batch<PoolBuf, 32> = crate::batch::Batch::new();
        assert_eq!(pool.alloc_batch(&mut other, meta, |_| {}), 32);
        assert_eq!(pool.alloc_batch(&mut third, meta, |_| {}), 70 - 64);
        assert!(pool.stats().exhausted >= 1);
        pool.free_batch(&mut batch);
        pool.free_batch(&mut other);
        pool.free_batch(&mut third);
        assert!(batch.is_empty() && other.is_empty() && third.is_empty());
        pool.flush_thread_cache();
        assert_eq!(pool.stats().in_depot, 70);
    }

    #[test]
    fn free_batch_sends_foreign_buffers_home() {
        let a = small(64);
        let b = small(64);
        let mut batch: crate::batch::Batch<PoolBuf, 32> = crate::batch::Batch::new();
        for i in 0..8 {
            let buf = if i % 2 == 0 { a.alloc() } else { b.alloc() };
            batch.push(buf.unwrap()).unwrap();
        }
        a.free_batch(&mut batch);
        assert!(batch.is_empty());
        a.flush_thread_cache();
        b.flush_thread_cache();
        assert_eq!((a.stats().in_depot, b.stats().in_depot), (64, 64));
    }

    #[test]
    fn bulk_paths() {
        let pool = small(256);
        let mut v = Vec::new();
        assert_eq!(pool.alloc_bulk(200, |b| v.push(b)), 200);
        assert_eq!(pool.alloc_bulk(100, |b| v.push(b)), 56);
        pool.free_bulk(v.drain(..));
        pool.flush_thread_cache();
        assert_eq!(pool.stats().in_depot, 256);
    }
}
