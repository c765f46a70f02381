//! In-memory port for tests: inject frames into Rx queues, collect what the pipeline sends.
//!
//! Frames are copied into pool buffers when injected and transmitted buffers are kept as they are,
//! so running a pipeline on a `MemPort` allocates nothing (the zero-allocation test relies on it).

use crate::backend::{Port, PortError, PortInfo, QueueClaims, RxQueue, ShardOwned, TxQueue};
use crate::batch::Batch;
use crate::buf::PacketBuf;
use crate::meta::PacketMeta;
use crate::pool::{BufferPool, PoolBuf};
use crate::sync::{Arc, BoundedQueue};

/// Shape of a [`MemPort`].
#[derive(Clone, Debug)]
pub struct MemConfig {
    /// Port name.
    pub name: String,
    /// Port index stamped into [`PacketMeta::rx_port`].
    pub port_id: u16,
    /// Queue pairs.
    pub queues: u16,
    /// Frames each Rx and each Tx queue holds.
    pub ring_size: usize,
    /// MAC address reported in [`PortInfo`].
    pub mac: [u8; 6],
}

impl Default for MemConfig {
    fn default() -> Self {
        Self { name: "mem0".into(), port_id: 0, queues: 1, ring_size: 1024, mac: [0x02, 0, 0, 0, 0, 1] }
    }
}

/// Why a frame could not be injected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InjectError {
    /// Queue index out of range.
    #[error("queue {queue} does not exist ({queues} queues)")]
    NoSuchQueue {
        /// Queue asked for.
        queue: u16,
        /// Queues the port has.
        queues: u16,
    },
    /// The Rx ring is full.
    #[error("rx ring of queue {queue} is full")]
    Full {
        /// Queue.
        queue: u16,
    },
    /// The pool has no buffer.
    #[error("buffer pool exhausted")]
    PoolExhausted,
    /// The frame is larger than a buffer.
    #[error("frame of {len} bytes exceeds the {room}-byte data room")]
    TooLarge {
        /// Frame length.
        len: usize,
        /// Data room of the pool.
        room: usize,
    },
}

struct Shared {
    rx: Vec<BoundedQueue<PoolBuf>>,
    tx: Vec<BoundedQueue<PoolBuf>>,
}

/// The port half: hands queue pairs to shards.
pub struct MemPort {
    cfg: MemConfig,
    shared: Arc<Shared>,
    claims: QueueClaims,
    pool: BufferPool,
}

/// The test half: injects and collects. `Clone`, `Send`, `Sync`.
#[derive(Clone)]
pub struct MemHandle {
    shared: Arc<Shared>,
    pool: BufferPool,
    port_id: u16,
}

impl MemPort {
    /// A port with `cfg.queues` empty queue pairs drawing buffers from `pool`.
    pub fn new(cfg: MemConfig, pool: BufferPool) -> (MemPort, MemHandle) {
        let q = cfg.queues.max(1) as usize;
        let shared = Arc::new(Shared {
            rx: (0..q).map(|_| BoundedQueue::new(cfg.ring_size.max(1))).collect(),
            tx: (0..q).map(|_| BoundedQueue::new(cfg.ring_size.max(1))).collect(),
        });
        let handle = MemHandle { shared: shared.clone(), pool, port_id: cfg.port_id };
        let claims = QueueClaims::new(cfg.name.clone(), q as u16);
        (MemPort { claims, cfg, shared, pool }, handle)
    }
}

impl Port for MemPort {
    type Rx = MemRx;
    type Tx = MemTx;
    type Buf = PoolBuf;

    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.cfg.name.clone(),
            queues: self.shared.rx.len() as u16,
            mac: self.cfg.mac,
            max_frame: self.pool.data_room(),
        }
    }

    fn queue_pair(&mut self, queue: u16) -> Result<(MemRx, MemTx), PortError> {
        self.claims.claim(queue)?;
        Ok((
            MemRx { shared: self.shared.clone(), queue, _owned: ShardOwned::default() },
            MemTx { shared: self.shared.clone(), queue, _owned: ShardOwned::default() },
        ))
    }
}

impl MemHandle {
    /// Copies `frame` into a pool buffer and queues it for Rx on `queue`.
    pub fn inject(&self, queue: u16, frame: &[u8]) -> Result<(), InjectError> {
        let queues = self.shared.rx.len() as u16;
        let ring = self.shared.rx.get(queue as usize).ok_or(InjectError::NoSuchQueue { queue, queues })?;
        let mut b = self.pool.alloc().ok_or(InjectError::PoolExhausted)?;
        b.copy_from(frame)
            .map_err(|_| InjectError::TooLarge { len: frame.len(), room: self.pool.data_room() })?;
        *b.meta_mut() = PacketMeta::received(self.port_id, queue);
        ring.push(b).map_err(|_| InjectError::Full { queue })
    }

    /// Takes the oldest transmitted packet of `queue`.
    pub fn take_tx(&self, queue: u16) -> Option<PoolBuf> {
        self.shared.tx.get(queue as usize)?.pop()
    }

    /// Takes every transmitted packet of `queue` as byte vectors (allocates; for assertions).
    pub fn drain_tx(&self, queue: u16) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.take_tx(queue)).map(|b| b.data().to_vec()).collect()
    }

    /// Frames waiting in the Rx ring of `queue`.
    pub fn rx_pending(&self, queue: u16) -> usize {
        self.shared.rx.get(queue as usize).map_or(0, |q| q.len())
    }

    /// Frames waiting in the Tx ring of `queue`.
    pub fn tx_pending(&self, queue: u16) -> usize {
        self.shared.tx.get(queue as usize).map_or(0, |q| q.len())
    }
}

/// Rx queue of a [`MemPort`].
pub struct MemRx {
    shared: Arc<Shared>,
    queue: u16,
    _owned: ShardOwned,
}

impl RxQueue for MemRx {
    type Buf = PoolBuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Batch<PoolBuf>) -> usize {
        let ring = &self.shared.rx[self.queue as usize];
        let mut n = 0;
        while !out.is_full() {
            match ring.pop() {
                Some(b) => {
                    let _ = out.push(b);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }
}

/// Tx queue of a [`MemPort`]: keeps transmitted buffers for the [`MemHandle`] to collect.
pub struct MemTx {
    shared: Arc<Shared>,
    queue: u16,
    _owned: ShardOwned,
}

impl TxQueue for MemTx {
    type Buf = PoolBuf;

    #[inline]
    fn tx_burst(&mut self, batch: &mut Batch<PoolBuf>) -> usize {
        let ring = &self.shared.tx[self.queue as usize];
        let mut pending: Batch<PoolBuf> = Batch::new();
        batch.move_into(&mut pending);
        let mut sent = 0;
        let mut it = pending.drain(..);
        while let Some(b) = it.next() {
            if let Err(b) = ring.push(b) {
                // Ring full: give back this packet and the rest, in order.
                let _ = batch.push(b);
                for rest in it.by_ref() {
                    let _ = batch.push(rest);
                }
                break;
            }
            sent += 1;
        }
        sent
    }
}
