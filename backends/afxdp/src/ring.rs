//! The four single-producer/single-consumer rings an AF_XDP socket shares with the kernel.
//!
//! Each ring is a power-of-two array of entries plus a `producer` and a `consumer` index in
//! shared memory (free-running `u32`s, masked on access) and a `flags` word (`XDP_RING_NEED_WAKEUP`).
//! We produce on the fill and Tx rings and consume from the Rx and completion rings. The protocol
//! (Documentation/networking/af_xdp.rst): read the other side's index with acquire ordering, touch
//! only the entries between the two indices that belong to us, publish ours with release
//! ordering. Both sides cache the other's index and re-read it only when the cache says the ring
//! looks full (producer) or empty (consumer).
#![allow(unsafe_code)]

use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::Mmap;

/// One ring mapped from the socket. `E` is `u64` (fill/completion: UMEM addresses) or
/// `libc::xdp_desc` (Rx/Tx).
pub(crate) struct Ring<E> {
    /// Shared with [`RingLevel`] views, so a view never outlives the memory it reads.
    map: Arc<Mmap>,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut E,
    mask: u32,
    size: u32,
    /// Our copy of our own index (producer for Tx/fill, consumer for Rx/completion).
    local: u32,
    /// Our cached view of the other side's index (for a producer ring: consumer + size).
    cached: u32,
    _entry: PhantomData<E>,
}

// SAFETY: a ring is owned by one queue handle and used from one thread at a time; the pointers
// point into `map`, which moves with it. The kernel side synchronises through the atomics.
unsafe impl<E: Send> Send for Ring<E> {}

impl<E: Copy> Ring<E> {
    /// Maps the ring of `size` entries at page offset `pgoff` with the offsets the kernel gave.
    pub(crate) fn map(
        fd: RawFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
        producer: bool,
    ) -> io::Result<Self> {
        let len = off.desc as usize + size as usize * std::mem::size_of::<E>();
        Self::over(Mmap::ring(fd, len, pgoff)?, len, off, size, producer)
    }

    /// A ring over `map` (`len` bytes) laid out as `off` says.
    fn over(
        map: Mmap,
        len: usize,
        off: &libc::xdp_ring_offset,
        size: u32,
        producer: bool,
    ) -> io::Result<Self> {
        debug_assert!(size.is_power_of_two());
        let base = map.ptr().as_ptr();
        for o in [off.producer, off.consumer, off.flags] {
            if o as usize + 4 > len || o % 4 != 0 {
                return Err(io::Error::other(format!("kernel ring offset {o} outside the {len}-byte ring")));
            }
        }
        // SAFETY: the offsets were checked to lie inside the mapping and be 4-byte aligned; the
        // kernel guarantees the descriptor array of `size` entries starts at `off.desc`.
        let (p, c, f, d) = unsafe {
            (
                base.add(off.producer as usize).cast::<AtomicU32>(),
                base.add(off.consumer as usize).cast::<AtomicU32>(),
                base.add(off.flags as usize).cast::<AtomicU32>(),
                base.add(off.desc as usize).cast::<E>(),
            )
        };
        let mut r = Ring {
            map: Arc::new(map),
            producer: p,
            consumer: c,
            flags: f,
            entries: d,
            mask: size - 1,
            size,
            local: 0,
            cached: 0,
            _entry: PhantomData,
        };
        if producer {
            r.local = r.producer().load(Ordering::Relaxed);
            r.cached = r.consumer().load(Ordering::Acquire).wrapping_add(size);
        } else {
            r.local = r.consumer().load(Ordering::Relaxed);
            r.cached = r.producer().load(Ordering::Acquire);
        }
        Ok(r)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into `self.map` (checked in `map`), which lives as long as `self`.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.consumer }
    }

    /// True when the kernel asked to be woken up (`XDP_RING_NEED_WAKEUP`).
    #[inline]
    pub(crate) fn needs_wakeup(&self) -> bool {
        // SAFETY: as for `producer`.
        let f = unsafe { &*self.flags };
        f.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Ring size in entries.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// A read-only view of how many entries of this (producer) ring the kernel has not consumed
    /// yet, for the other half of the queue (the Rx half watches the Tx ring's backlog).
    pub(crate) fn level(&self) -> RingLevel {
        RingLevel { _map: self.map.clone(), producer: self.producer, consumer: self.consumer }
    }

    // ---- producer side (fill, Tx) ----

    /// Entries we produced that the kernel has not consumed yet (always re-reads its index).
    #[inline]
    pub(crate) fn unconsumed(&self) -> u32 {
        self.local.wrapping_sub(self.consumer().load(Ordering::Acquire))
    }

    /// Free slots, at most `want` (re-reads the consumer index only when the cache falls short).
    #[inline]
    pub(crate) fn free(&mut self, want: u32) -> u32 {
        let free = self.cached.wrapping_sub(self.local);
        if free >= want {
            return free;
        }
        self.cached = self.consumer().load(Ordering::Acquire).wrapping_add(self.size);
        self.cached.wrapping_sub(self.local)
    }

    /// Writes entry `i` (0-based from the next free slot). Returns `false` and writes nothing
    /// unless `i` is below the free count [`Ring::free`] last returned: a slot beyond it may
    /// still hold an entry the kernel has not consumed.
    #[inline]
    #[must_use]
    pub(crate) fn write(&mut self, i: u32, e: E) -> bool {
        if i >= self.cached.wrapping_sub(self.local) {
            return false;
        }
        let idx = (self.local.wrapping_add(i) & self.mask) as usize;
        // SAFETY: `idx` is masked into the array of `size` entries inside the mapping; the slot
        // is below the free count (checked above), i.e. between the kernel's consumer index and
        // ours, so the kernel does not read it now.
        unsafe { self.entries.add(idx).write_volatile(e) };
        true
    }

    /// Publishes `n` written entries to the kernel.
    #[inline]
    pub(crate) fn submit(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.producer().store(self.local, Ordering::Release);
    }

    // ---- consumer side (Rx, completion) ----

    /// Entries ready to consume, at most `max`.
    #[inline]
    pub(crate) fn ready(&mut self, max: u32) -> u32 {
        let mut n = self.cached.wrapping_sub(self.local);
        if n == 0 {
            self.cached = self.producer().load(Ordering::Acquire);
            n = self.cached.wrapping_sub(self.local);
        }
        n.min(max)
    }

    /// Reads entry `i` (0-based from the next unread one); `None` unless `i` is below what the
    /// kernel published as of the last [`Ring::ready`] (a slot beyond it may be mid-write).
    #[inline]
    pub(crate) fn read(&self, i: u32) -> Option<E> {
        if i >= self.cached.wrapping_sub(self.local) {
            return None;
        }
        let idx = (self.local.wrapping_add(i) & self.mask) as usize;
        // SAFETY: `idx` is masked into the array; the slot is below the producer index the
        // kernel published (checked above; acquire load in `ready`), and the kernel will not
        // touch it until we release it.
        Some(unsafe { self.entries.add(idx).read_volatile() })
    }

    /// Gives `n` consumed entries back to the kernel.
    #[inline]
    pub(crate) fn release(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.consumer().store(self.local, Ordering::Release);
    }
}

/// How full a producer ring is, as seen from outside its owner: both indices read from the
/// shared memory. Keeps the ring's mapping alive.
pub(crate) struct RingLevel {
    _map: Arc<Mmap>,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
}

// SAFETY: the pointers point into `_map`, which this value keeps alive; both are only loaded
// atomically, which is sound from any thread.
unsafe impl Send for RingLevel {}
// SAFETY: as above: shared access is atomic loads only.
unsafe impl Sync for RingLevel {}

impl RingLevel {
    /// Entries produced and not yet consumed by the kernel.
    #[inline]
    pub(crate) fn unconsumed(&self) -> u32 {
        // SAFETY: both pointers point into the mapping `_map` keeps alive (checked in
        // `Ring::map`); the words are only accessed atomically.
        let (p, c) = unsafe { (&*self.producer, &*self.consumer) };
        p.load(Ordering::Acquire).wrapping_sub(c.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring of `size` `u64` entries in anonymous memory, as the kernel lays one out.
    fn ring(size: u32, producer: bool) -> Ring<u64> {
        let off = libc::xdp_ring_offset { producer: 0, consumer: 4, flags: 8, desc: 64 };
        let len = 64 + size as usize * 8;
        Ring::over(Mmap::anonymous(len).unwrap(), len, &off, size, producer).unwrap()
    }

    #[test]
    fn write_refuses_slots_beyond_the_free_count() {
        let mut r = ring(4, true);
        assert_eq!(r.free(2), 4);
        assert!(r.write(3, 7));
        assert!(!r.write(4, 8), "slot 4 wraps onto slot 0, which is not free");
        r.submit(4);
        assert_eq!(r.free(1), 0, "the kernel consumed nothing");
        assert!(!r.write(0, 9));
        // The kernel consumes two entries.
        r.consumer().store(2, Ordering::Release);
        assert_eq!(r.free(1), 2);
        assert!(r.write(1, 10) && !r.write(2, 11));
    }

    #[test]
    fn read_refuses_slots_the_kernel_has_not_published() {
        let mut r = ring(4, false);
        assert_eq!(r.ready(4), 0);
        assert_eq!(r.read(0), None);
        // The kernel publishes two entries.
        // SAFETY: the test plays the kernel, writing slots it has not yet published.
        unsafe { r.entries.write(5) };
        unsafe { r.entries.add(1).write(6) };
        r.producer().store(2, Ordering::Release);
        assert_eq!(r.ready(4), 2);
        assert_eq!((r.read(0), r.read(1), r.read(2)), (Some(5), Some(6), None));
        r.release(2);
        assert_eq!(r.read(0), None);
    }
}
