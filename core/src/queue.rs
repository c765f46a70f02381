//! [`SharedQueue`]: the bounded queue wirespeed uses to hand values between threads outside the
//! per-packet path of one shard — punted packets from data shards to the control shard, SA
//! events from ESP stages to the control side.

use crate::sync::{Arc, BoundedQueue};

/// A bounded multi-producer multi-consumer queue, shared by cloning the handle (every clone is
/// the same queue). Lock-free; `push` never blocks and gives the value back when the queue is
/// full, so a producer on the data path can count the loss instead of stalling.
///
/// ```
/// use wirespeed_core::queue::SharedQueue;
///
/// let q = SharedQueue::new(2);
/// let producer = q.clone();
/// assert_eq!((producer.push(1), producer.push(2), producer.push(3)), (Ok(()), Ok(()), Err(3)));
/// assert!(q.is_full());
/// assert_eq!((q.pop(), q.len(), q.capacity()), (Some(1), 1, 2));
/// assert_eq!(SharedQueue::<u8>::new(0).capacity(), 1, "a zero capacity is raised to one");
/// ```
pub struct SharedQueue<T> {
    inner: Arc<BoundedQueue<T>>,
}

impl<T> SharedQueue<T> {
    /// A queue holding at most `capacity` values (at least one: `0` is taken as `1`).
    pub fn new(capacity: usize) -> Self {
        Self { inner: Arc::new(BoundedQueue::new(capacity.max(1))) }
    }

    /// Appends `value`, or gives it back when the queue is full.
    #[inline]
    pub fn push(&self, value: T) -> Result<(), T> {
        self.inner.push(value)
    }

    /// Takes the oldest value, if any.
    #[inline]
    pub fn pop(&self) -> Option<T> {
        self.inner.pop()
    }

    /// Values queued now (a snapshot: other threads may change it at once).
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// True when a `push` now would fail.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }

    /// Most values the queue holds.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl<T> Clone for SharedQueue<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<T> std::fmt::Debug for SharedQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedQueue").field("len", &self.len()).field("capacity", &self.capacity()).finish()
    }
}
