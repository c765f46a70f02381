//! Backend contracts — ports and their Rx/Tx queues — and the two backends that live in core:
//! [`mem`] (tests inject frames and collect output) and [`null`] (endless frames for benchmarks).
//!
//! A backend never knows about stages. A shard takes one `(RxQueue, TxQueue)` pair per port it
//! serves from [`Port::queue_pair`] and owns it from then on; queues are `Send` so they can be
//! moved to the shard's thread, but nothing about them is shared.

pub mod mem;
pub mod null;

use crate::batch::Batch;
use crate::buf::PacketBuf;
use crate::rss::RssControl;
use crate::runtime::IdlePolicy;
use std::time::Duration;

/// Receive side of one queue.
pub trait RxQueue: Send {
    /// Buffer type handed out.
    type Buf: PacketBuf;

    /// Appends up to `out.remaining()` received packets to `out`; returns how many.
    /// Never blocks. Packets that could not be received (pool exhausted, oversize) are counted by
    /// the queue and reported in [`RxQueue::take_drops`].
    fn rx_burst(&mut self, out: &mut Batch<Self::Buf>) -> usize;

    /// True when the queue can never produce another packet (end of a capture file).
    /// Live queues return `false`.
    fn at_end(&self) -> bool {
        false
    }

    /// Drops counted inside the queue since the last call, as `(reason, count)` (e.g. frames
    /// lost to pool exhaustion). The pipeline moves them into the shard counters.
    fn take_drops(&mut self) -> Option<(crate::DropReason, u64)> {
        None
    }

    /// Takes the shard's idle policy (once, on the shard's thread, before its loop): a backend
    /// with kernel busy polling sets it up for [`IdlePolicy::PreferBusyPoll`]. Ignored by
    /// default.
    fn set_idle_policy(&mut self, policy: IdlePolicy) {
        let _ = policy;
    }

    /// Waits until a packet may be ready or `timeout` passes; `false` when the queue cannot
    /// wait (the default: the runtime sleeps instead). Blocking idle policies call it.
    fn wait(&mut self, timeout: Duration) -> bool {
        let _ = timeout;
        false
    }
}

/// Transmit side of one queue.
pub trait TxQueue: Send {
    /// Buffer type accepted.
    type Buf: PacketBuf;

    /// Sends packets from the front of `batch`, removing those sent; returns how many.
    /// Packets left in the batch were not accepted (ring full); the caller retries or drops.
    fn tx_burst(&mut self, batch: &mut Batch<Self::Buf>) -> usize;

    /// Pushes out anything the queue buffers internally (file writers, doorbell batching).
    fn flush(&mut self) {}

    /// Called when a poll of the shard received nothing: a queue holding packets the device
    /// pushed back earlier moves them on and reclaims finished buffers (cheap when there are
    /// none). Nothing by default.
    fn idle(&mut self) {}

    /// Whether the queue holds packets the device has not taken yet, which only further calls
    /// ([`TxQueue::idle`]) move on — a backlog the device pushed back. A blocking idle policy
    /// then sleeps at most [`TX_BACKLOG_WAIT`] so the backlog does not wait for new input.
    /// `false` by default.
    fn backlog(&self) -> bool {
        false
    }
}

/// Longest sleep of a blocking idle policy while a Tx queue has a [`TxQueue::backlog`].
pub const TX_BACKLOG_WAIT: Duration = Duration::from_micros(50);

/// The timeout a worker that is about to block should use: `timeout`, or at most
/// [`TX_BACKLOG_WAIT`] after moving the backlog on when one of `tx` has one.
pub fn backlog_timeout<T: TxQueue>(tx: &mut [T], timeout: Duration) -> Duration {
    let mut pending = false;
    for t in tx.iter_mut() {
        if t.backlog() {
            t.idle();
            pending |= t.backlog();
        }
    }
    if pending { timeout.min(TX_BACKLOG_WAIT) } else { timeout }
}

/// Static facts about a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Human-readable name (`mem0`, `null0`, a file path, `ens1f0`).
    pub name: String,
    /// Number of Rx/Tx queue pairs.
    pub queues: u16,
    /// MAC address of the port.
    pub mac: [u8; 6],
    /// Largest frame the port sends or receives, without FCS.
    pub max_frame: usize,
}

/// Why a port operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The queue index is out of range.
    #[error("port {port}: queue {queue} does not exist (port has {queues} queues)")]
    NoSuchQueue {
        /// Port name.
        port: String,
        /// Queue asked for.
        queue: u16,
        /// Queues the port has.
        queues: u16,
    },
    /// The queue pair was already taken by a shard.
    #[error("port {port}: queue {queue} is already owned by a shard")]
    QueueTaken {
        /// Port name.
        port: String,
        /// Queue asked for.
        queue: u16,
    },
    /// Backend-specific failure.
    #[error("port {port}: {message}")]
    Backend {
        /// Port name.
        port: String,
        /// What went wrong.
        message: String,
    },
}

/// Makes a queue handle `!Sync`: a queue belongs to one shard, which uses it from its own thread
/// only. (`Send` stays, so the handle can be moved to that thread.)
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<wirespeed_core::backend::null::NullRx>(); // a shard-owned queue cannot be shared
/// ```
pub type ShardOwned = std::marker::PhantomData<std::cell::Cell<()>>;

/// Which queue pairs of a port have been handed to shards; each can be claimed once.
#[derive(Clone, Debug)]
pub struct QueueClaims {
    port: String,
    taken: Vec<bool>,
}

impl QueueClaims {
    /// `queues` unclaimed queue pairs of the port named `port`.
    pub fn new(port: impl Into<String>, queues: u16) -> Self {
        Self { port: port.into(), taken: vec![false; queues.max(1) as usize] }
    }

    /// Number of queue pairs.
    pub fn queues(&self) -> u16 {
        self.taken.len() as u16
    }

    /// Claims `queue`, or says why it cannot be had.
    pub fn claim(&mut self, queue: u16) -> Result<(), PortError> {
        let queues = self.queues();
        let slot = self.taken.get_mut(queue as usize).ok_or_else(|| PortError::NoSuchQueue {
            port: self.port.clone(),
            queue,
            queues,
        })?;
        if *slot {
            return Err(PortError::QueueTaken { port: self.port.clone(), queue });
        }
        *slot = true;
        Ok(())
    }
}

/// A network port with one or more queue pairs.
pub trait Port {
    /// Receive queue type.
    type Rx: RxQueue<Buf = Self::Buf>;
    /// Transmit queue type.
    type Tx: TxQueue<Buf = Self::Buf>;
    /// Buffer type of both.
    type Buf: PacketBuf;

    /// Static facts.
    fn info(&self) -> PortInfo;

    /// Hands out queue pair `queue`; each pair can be taken once.
    fn queue_pair(&mut self, queue: u16) -> Result<(Self::Rx, Self::Tx), PortError>;

    /// The port's hardware RSS control, when it has one (NICs); `None` for files and the null and
    /// mem ports, where the software dispatcher does the same job.
    fn rss(&mut self) -> Option<&mut dyn RssControl> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolBuf;

    /// A Tx queue with `left` descriptors pushed back; each `idle` sends `per_idle` of them.
    struct Backlogged {
        left: u32,
        per_idle: u32,
        idles: u32,
    }

    impl TxQueue for Backlogged {
        type Buf = PoolBuf;
        fn tx_burst(&mut self, _batch: &mut Batch<PoolBuf>) -> usize {
            0
        }
        fn idle(&mut self) {
            self.idles += 1;
            self.left = self.left.saturating_sub(self.per_idle);
        }
        fn backlog(&self) -> bool {
            self.left > 0
        }
    }

    #[test]
    fn a_blocking_wait_is_short_only_while_a_backlog_remains() {
        let long = Duration::from_millis(10);
        let q = |left, per_idle| Backlogged { left, per_idle, idles: 0 };
        // No backlog: the full timeout, and nothing is kicked.
        let mut tx = [q(0, 1), q(0, 1)];
        assert_eq!(backlog_timeout(&mut tx, long), long);
        assert_eq!((tx[0].idles, tx[1].idles), (0, 0));
        // A backlog the kick clears: the full timeout after one kick of that queue only.
        let mut tx = [q(0, 1), q(3, 8)];
        assert_eq!(backlog_timeout(&mut tx, long), long);
        assert_eq!((tx[0].idles, tx[1].idles, tx[1].left), (0, 1, 0));
        // A backlog that stays: a short wait.
        let mut tx = [q(64, 8), q(0, 1)];
        assert_eq!(backlog_timeout(&mut tx, long), TX_BACKLOG_WAIT);
        assert_eq!((tx[0].idles, tx[0].left), (1, 56));
        // Never longer than asked.
        assert_eq!(backlog_timeout(&mut tx, Duration::from_micros(5)), Duration::from_micros(5));
    }
}
