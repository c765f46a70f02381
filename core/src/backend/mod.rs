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
