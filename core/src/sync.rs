//! The concurrency facade: every concurrent structure in `wirespeed-core` imports its atomics,
//! `Arc`, threads and bounded queues from here, never from `std` directly. Internal to wirespeed
//! (hidden from the public documentation).
//!
//! Normally these are `std` atomics and `crossbeam_queue::ArrayQueue`. Under `--cfg loom` they are
//! loom's instrumented versions, so `core/tests/loom.rs` can exhaustively check the control
//! channel, shutdown, stats snapshots and epoch handoff built on top of them. `ArrayQueue` itself is
//! replaced by a small mutex-protected model with the same API: loom checks *our* protocols, and
//! crossbeam's queue is trusted (it has its own model checks upstream).

#[cfg(not(loom))]
pub use std::sync::Arc;
#[cfg(not(loom))]
pub use std::thread;

#[cfg(loom)]
pub use loom::sync::Arc;
#[cfg(loom)]
pub use loom::thread;

/// Atomics: `std::sync::atomic` normally, `loom::sync::atomic` under `cfg(loom)`.
pub mod atomic {
    #[cfg(not(loom))]
    pub use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

    #[cfg(loom)]
    pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};
}

/// Spin-wait hint for polling loops (a yield point under loom).
#[inline]
pub fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

#[cfg(not(loom))]
pub use crossbeam_queue::ArrayQueue as BoundedQueue;

#[cfg(loom)]
pub use loom_queue::BoundedQueue;

#[cfg(loom)]
mod loom_queue {
    use std::collections::VecDeque;

    /// Loom model of `crossbeam_queue::ArrayQueue`: same API, linearizable by a loom mutex.
    #[derive(Debug)]
    pub struct BoundedQueue<T> {
        inner: loom::sync::Mutex<VecDeque<T>>,
        cap: usize,
    }

    impl<T> BoundedQueue<T> {
        /// A queue holding at most `cap` items.
        pub fn new(cap: usize) -> Self {
            assert!(cap > 0, "capacity must be non-zero");
            Self { inner: loom::sync::Mutex::new(VecDeque::with_capacity(cap)), cap }
        }
        /// Pushes, or gives the value back when full.
        pub fn push(&self, value: T) -> Result<(), T> {
            let mut q = self.inner.lock().unwrap();
            if q.len() == self.cap {
                return Err(value);
            }
            q.push_back(value);
            Ok(())
        }
        /// Pops the oldest item.
        pub fn pop(&self) -> Option<T> {
            self.inner.lock().unwrap().pop_front()
        }
        /// Items queued now.
        pub fn len(&self) -> usize {
            self.inner.lock().unwrap().len()
        }
        /// True when nothing is queued.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
        /// Capacity given at construction.
        pub fn capacity(&self) -> usize {
            self.cap
        }
    }
}
