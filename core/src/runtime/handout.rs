//! [`PerShard`]: per-shard pieces (queue pairs, epoch subscribers) prepared before launch and
//! taken once by each shard's factory on its own thread.

use std::cell::Cell;
use std::sync::{Mutex, PoisonError};

use crate::backend::{Port, PortError};
use crate::epoch::{Publisher, Subscriber};
use crate::stats::ShardId;

/// Why a [`PerShard`] hand-out has nothing for a shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandOutError {
    /// The shard's item was already taken.
    #[error("the {what} of shard {shard} was already taken")]
    Taken {
        /// Shard.
        shard: ShardId,
        /// What the hand-out holds.
        what: &'static str,
    },
    /// The hand-out has fewer items than the shard index.
    #[error("no {what} for shard {shard}: only {len} were prepared")]
    Missing {
        /// Shard.
        shard: ShardId,
        /// What the hand-out holds.
        what: &'static str,
        /// Items prepared.
        len: usize,
    },
    /// Taken inside [`crate::runtime::Runtime::launch`]'s factory, but the hand-out holds more
    /// items than the runtime has shards (some would never be taken: their queues never
    /// served), or none for this shard. The launch fails with
    /// [`crate::runtime::RuntimeError::ShardCount`].
    #[error("{len} {what}s were prepared for {shards} shards")]
    ShardCount {
        /// What the hand-out holds.
        what: &'static str,
        /// Items prepared.
        len: usize,
        /// Shards launched.
        shards: usize,
    },
}

thread_local! {
    /// On a shard thread while [`crate::runtime::Runtime::launch`]'s factory runs: how many
    /// shards the runtime launches.
    static LAUNCHED_SHARDS: Cell<Option<usize>> = const { Cell::new(None) };
    /// The first hand-out whose length differed from that (what it holds, its length).
    static MISMATCH: Cell<Option<(&'static str, usize)>> = const { Cell::new(None) };
}

/// Marks the current thread as running `Runtime::launch`'s factory for a runtime of `shards`
/// shards, so every [`PerShard::take`] checks the hand-out's length against it.
pub(super) struct LaunchScope(());

impl LaunchScope {
    pub(super) fn enter(shards: usize) -> Self {
        LAUNCHED_SHARDS.set(Some(shards));
        MISMATCH.set(None);
        Self(())
    }

    /// The first hand-out taken from whose length was not the shard count.
    pub(super) fn mismatch(&self) -> Option<(&'static str, usize)> {
        MISMATCH.get()
    }
}

impl Drop for LaunchScope {
    fn drop(&mut self) {
        LAUNCHED_SHARDS.set(None);
        MISMATCH.set(None);
    }
}

/// One item per shard, prepared on the control thread and taken once by each shard's factory.
///
/// [`crate::runtime::Runtime::launch`] takes a `Fn + Sync` factory, while handing out a queue
/// pair or a subscriber needs `&mut` access to the port or publisher; a `PerShard` bridges the
/// two (`Sync` whenever the items are `Send`), so a factory just calls [`PerShard::take`].
///
/// Inside `Runtime::launch`'s factory, `take` also checks the hand-out against the runtime's
/// shard count: queue pairs for 2 shards taken by a runtime of 1 shard (items no shard would
/// take), or a shard with no item, fail the launch with
/// [`crate::runtime::RuntimeError::ShardCount`] instead of leaving a queue unserved. A hand-out
/// with fewer items, taken only by the shards that have one, is fine. (A factory given to
/// [`crate::runtime::RuntimeBuilder::shard`] is not checked: shards built one by one may
/// legitimately take from hand-outs of other lengths.)
///
/// ```
/// use wirespeed_core::backend::null::{NullConfig, NullPort};
/// use wirespeed_core::epoch::Publisher;
/// use wirespeed_core::runtime::{HandOutError, PerShard};
/// use wirespeed_core::{BufferPool, PoolConfig};
///
/// let mut port = NullPort::new(NullConfig { queues: 2, ..NullConfig::default() }, BufferPool::new(PoolConfig::default())?);
/// let queues = PerShard::queue_pairs(&mut port, 2)?;
/// let mut routes = Publisher::new(vec![1u32, 2, 3]);
/// let subs = PerShard::subscribers(&mut routes, 2);
/// let (_rx, _tx) = queues.take(1)?;
/// assert_eq!(subs.take(0)?.get().len(), 3);
/// assert_eq!(queues.take(1).err(), Some(HandOutError::Taken { shard: 1, what: "queue pair" }));
/// assert!(matches!(subs.take(2), Err(HandOutError::Missing { shard: 2, .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PerShard<T> {
    items: Mutex<Vec<Option<T>>>,
    what: &'static str,
}

impl<T> std::fmt::Debug for PerShard<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerShard").field("what", &self.what).finish_non_exhaustive()
    }
}

impl<T> PerShard<T> {
    /// Item `i` of `items` is shard `i`'s.
    pub fn new(items: impl IntoIterator<Item = T>) -> Self {
        Self::named("item", items)
    }

    /// Like [`PerShard::new`], naming what the items are in errors ("SA subscriber").
    pub fn named(what: &'static str, items: impl IntoIterator<Item = T>) -> Self {
        Self { items: Mutex::new(items.into_iter().map(Some).collect()), what }
    }

    /// `shards` items, shard `i`'s made by `f(i)`.
    pub fn from_fn(shards: usize, f: impl FnMut(ShardId) -> T) -> Self {
        Self::new((0..shards).map(f))
    }

    /// Takes shard `shard`'s item (once).
    pub fn take(&self, shard: ShardId) -> Result<T, HandOutError> {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let len = items.len();
        // Inside `Runtime::launch`: more items than shards leaves some never taken; a shard past
        // the end finds none. (Fewer items than shards is fine when only some shards take.)
        if let Some(shards) = LAUNCHED_SHARDS.get()
            && (len > shards || shard >= len)
        {
            if MISMATCH.get().is_none() {
                MISMATCH.set(Some((self.what, len)));
            }
            return Err(HandOutError::ShardCount { what: self.what, len, shards });
        }
        match items.get_mut(shard) {
            None => Err(HandOutError::Missing { shard, what: self.what, len }),
            Some(slot) => slot.take().ok_or(HandOutError::Taken { shard, what: self.what }),
        }
    }

    /// Number of items prepared (taken or not).
    pub fn len(&self) -> usize {
        self.items.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// True when no item was prepared.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<Rx, Tx> PerShard<(Rx, Tx)> {
    /// Queue pairs `0..shards` of `port`: shard `i` takes queue pair `i`.
    pub fn queue_pairs<P: Port<Rx = Rx, Tx = Tx>>(port: &mut P, shards: usize) -> Result<Self, PortError> {
        let mut pairs = Vec::with_capacity(shards);
        for q in 0..shards {
            let q = u16::try_from(q).map_err(|_| {
                let info = port.info();
                PortError::NoSuchQueue { port: info.name, queue: u16::MAX, queues: info.queues }
            })?;
            pairs.push(port.queue_pair(q)?);
        }
        Ok(Self::named("queue pair", pairs))
    }
}

impl<T> PerShard<Subscriber<T>> {
    /// One subscriber of `publisher` per shard.
    pub fn subscribers(publisher: &mut Publisher<T>, shards: usize) -> Self {
        Self::named("subscriber", (0..shards).map(|_| publisher.subscribe()))
    }
}
