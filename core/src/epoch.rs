//! Epoch handoff of read-mostly tables (routes, SA sets, RETA) to running shards.
//!
//! The control side [`Publisher::publish`]es a new version; each shard's [`Subscriber`] picks it
//! up at its next batch boundary with [`Subscriber::refresh`] (one atomic load when there is
//! nothing new), and from then on reads it through a plain reference — no atomics or locks per
//! packet. The version a shard replaced goes back to the publisher, which frees it on the
//! control thread ([`Publisher::reclaim`]), so no shard ever pays for a deallocation and no packet
//! can be processed against a freed table: a shard holds its version until it adopts the next.
//! [`Publisher::adopted_by_all`] tells when every shard has moved to a version (e.g. before the
//! keys of an old SA are wiped).

use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{Arc, BoundedQueue};

/// A published value and its version (1 for the initial value).
#[derive(Debug)]
pub struct Versioned<T> {
    /// Monotonic version.
    pub version: u64,
    /// The value.
    pub value: T,
}

#[derive(Debug)]
struct Slot<T> {
    inbox: BoundedQueue<Arc<Versioned<T>>>,
    retired: BoundedQueue<Arc<Versioned<T>>>,
    adopted: AtomicU64,
}

/// The control side. Not `Clone`: one publisher per table.
#[derive(Debug)]
pub struct Publisher<T> {
    current: Arc<Versioned<T>>,
    slots: Vec<Arc<Slot<T>>>,
}

/// A shard's view of the table.
#[derive(Debug)]
pub struct Subscriber<T> {
    current: Arc<Versioned<T>>,
    slot: Arc<Slot<T>>,
}

const RETIRED_CAPACITY: usize = 8;

impl<T> Publisher<T> {
    /// A publisher whose first version (1) is `initial`.
    pub fn new(initial: T) -> Self {
        Self { current: Arc::new(Versioned { version: 1, value: initial }), slots: Vec::new() }
    }

    /// A new subscriber, starting at the current version. Create one per shard at set-up.
    pub fn subscribe(&mut self) -> Subscriber<T> {
        let slot = Arc::new(Slot {
            inbox: BoundedQueue::new(1),
            retired: BoundedQueue::new(RETIRED_CAPACITY),
            adopted: AtomicU64::new(self.current.version),
        });
        self.slots.push(slot.clone());
        Subscriber { current: self.current.clone(), slot }
    }

    /// Publishes `value` as the next version and returns that version. A shard that has not yet
    /// picked up the previous version skips straight to this one.
    pub fn publish(&mut self, value: T) -> u64 {
        self.reclaim();
        let next = Arc::new(Versioned { version: self.current.version + 1, value });
        for slot in &self.slots {
            let mut item = next.clone();
            loop {
                match slot.inbox.push(item) {
                    Ok(()) => break,
                    Err(back) => {
                        // The shard has not adopted the previous version: withdraw it.
                        item = back;
                        let _ = slot.inbox.pop();
                    }
                }
            }
        }
        self.current = next;
        self.current.version
    }

    /// The latest version published.
    pub fn version(&self) -> u64 {
        self.current.version
    }

    /// The latest value published.
    pub fn current(&self) -> &T {
        &self.current.value
    }

    /// True when every subscriber has adopted `version` or later.
    pub fn adopted_by_all(&self, version: u64) -> bool {
        self.slots.iter().all(|s| s.adopted.load(Ordering::Acquire) >= version)
    }

    /// Frees versions the shards have let go of; returns how many.
    pub fn reclaim(&mut self) -> usize {
        let mut n = 0;
        for s in &self.slots {
            while let Some(old) = s.retired.pop() {
                drop(old);
                n += 1;
            }
        }
        n
    }
}

impl<T> Subscriber<T> {
    /// A subscriber to a value that never changes (version 1, no publisher): for a stage that
    /// takes a `Subscriber` when the table is fixed for the whole run.
    ///
    /// ```
    /// let mut fixed = wirespeed_core::epoch::Subscriber::fixed(7u32);
    /// assert!(!fixed.refresh());
    /// assert_eq!((*fixed, fixed.version()), (7, 1));
    /// ```
    pub fn fixed(value: T) -> Self {
        Publisher::new(value).subscribe()
    }

    /// Adopts the newest published version if there is one; returns true if it changed.
    /// Call at batch boundaries.
    #[inline]
    pub fn refresh(&mut self) -> bool {
        let Some(next) = self.slot.inbox.pop() else { return false };
        let version = next.version;
        let old = std::mem::replace(&mut self.current, next);
        if let Err(old) = self.slot.retired.push(old) {
            // The publisher has not reclaimed for a while; free it here (rare, not per packet).
            drop(old);
        }
        self.slot.adopted.store(version, Ordering::Release);
        true
    }

    /// The version in use.
    #[inline]
    pub fn version(&self) -> u64 {
        self.current.version
    }

    /// The value in use.
    #[inline]
    pub fn get(&self) -> &T {
        &self.current.value
    }
}

impl<T> std::ops::Deref for Subscriber<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.current.value
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn versions_flow_and_are_reclaimed() {
        let mut p = Publisher::new(vec![1u32]);
        let mut a = p.subscribe();
        let mut b = p.subscribe();
        assert_eq!((a.version(), a.get().clone()), (1, vec![1]));
        let v2 = p.publish(vec![2]);
        let v3 = p.publish(vec![3]);
        assert!(!p.adopted_by_all(v2));
        assert!(a.refresh());
        assert_eq!(a.version(), v3, "a skipped v2");
        assert!(!a.refresh());
        assert!(!p.adopted_by_all(v3));
        assert!(b.refresh());
        assert!(p.adopted_by_all(v3));
        assert_eq!(**b, vec![3]);
        assert_eq!(p.reclaim(), 2, "each shard's v1 comes back");
    }
}
