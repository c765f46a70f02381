//! The null port, like DPDK's `net_null`: Rx hands out frames endlessly, Tx frees them.
//!
//! With `copy: false` Rx only sets the frame length on a fresh pool buffer (DPDK `copy=0`); with
//! `copy: true` it copies the template frame into it (DPDK `copy=1`), which is what a pipeline
//! that parses and rewrites headers needs. Used by benchmarks and the zero-allocation test.

use crate::backend::{Port, PortError, PortInfo, QueueClaims, RxQueue, ShardOwned, TxQueue};
use crate::batch::Batch;
use crate::buf::PacketBuf;
use crate::meta::PacketMeta;
use crate::pool::{BufferPool, PoolBuf};
use std::sync::Arc; // immutable template shared by queues; not a concurrency protocol

/// Shape of a [`NullPort`].
#[derive(Clone, Debug)]
pub struct NullConfig {
    /// Port index stamped into [`PacketMeta::rx_port`].
    pub port_id: u16,
    /// Queue pairs.
    pub queues: u16,
    /// Frame every Rx returns (its length is the frame length).
    pub frame: Vec<u8>,
    /// Copy `frame` into each buffer (true) or only set the length (false).
    pub copy: bool,
    /// Packets each Rx queue delivers before it is at its end ([`RxQueue::at_end`]), like a
    /// capture of that many frames; `None` (the default) never ends.
    pub limit: Option<u64>,
}

impl Default for NullConfig {
    fn default() -> Self {
        Self { port_id: 0, queues: 1, frame: udp4_frame(64), copy: false, limit: None }
    }
}

/// The null port.
pub struct NullPort {
    cfg: NullConfig,
    frame: Arc<[u8]>,
    pool: BufferPool,
    claims: QueueClaims,
}

impl NullPort {
    /// A null port drawing buffers from `pool`.
    pub fn new(cfg: NullConfig, pool: BufferPool) -> Self {
        let frame: Arc<[u8]> = cfg.frame.clone().into();
        let q = cfg.queues.max(1) as usize;
        let claims = QueueClaims::new(format!("null{}", cfg.port_id), q as u16);
        Self { cfg, frame, pool, claims }
    }
}

impl Port for NullPort {
    type Rx = NullRx;
    type Tx = NullTx;
    type Buf = PoolBuf;

    fn info(&self) -> PortInfo {
        PortInfo {
            name: format!("null{}", self.cfg.port_id),
            queues: self.claims.queues(),
            mac: [0x02, 0, 0, 0, 0xee, self.cfg.port_id as u8],
            max_frame: self.pool.data_room(),
        }
    }

    fn queue_pair(&mut self, queue: u16) -> Result<(NullRx, NullTx), PortError> {
        self.claims.claim(queue)?;
        Ok((
            NullRx {
                pool: self.pool,
                frame: self.frame.clone(),
                copy: self.cfg.copy,
                left: self.cfg.limit.unwrap_or(u64::MAX),
                port: self.cfg.port_id,
                queue,
                _owned: ShardOwned::default(),
            },
            NullTx { pool: self.pool, _owned: ShardOwned::default() },
        ))
    }
}

/// Rx queue of a [`NullPort`].
pub struct NullRx {
    pool: BufferPool,
    frame: Arc<[u8]>,
    copy: bool,
    /// Packets left to deliver (`u64::MAX`: endless).
    left: u64,
    port: u16,
    queue: u16,
    _owned: ShardOwned,
}

impl RxQueue for NullRx {
    type Buf = PoolBuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Batch<PoolBuf>) -> usize {
        if self.left == u64::MAX {
            return self.fill(out);
        }
        let mut n = self.fill(out);
        while n as u64 > self.left {
            // Past the limit: give the extra buffers straight back.
            drop(out.pop());
            n -= 1;
        }
        self.left -= n as u64;
        n
    }

    fn at_end(&self) -> bool {
        self.left == 0
    }
}

impl NullRx {
    #[inline(always)]
    fn fill(&mut self, out: &mut Batch<PoolBuf>) -> usize {
        let meta = PacketMeta::received(self.port, self.queue);
        // The pool's data room is checked against the frame when the port is built by callers;
        // a frame that does not fit is simply returned short.
        if !self.copy {
            let len = self.frame.len();
            return self.pool.alloc_batch(out, meta, |b| {
                let _ = b.set_len(len);
            });
        }
        // The usual benchmark frame is 64 bytes: a fixed-size copy is a few vector moves where
        // a slice copy is a `memcpy` call per packet.
        if let Ok(frame) = <&[u8; 64]>::try_from(&*self.frame) {
            return self.pool.alloc_batch(out, meta, |b| {
                let _ = b.copy_from_array(frame);
            });
        }
        let frame = &*self.frame;
        self.pool.alloc_batch(out, meta, |b| {
            let _ = b.copy_from(frame);
        })
    }
}

/// Tx queue of a [`NullPort`]: frees everything.
pub struct NullTx {
    pool: BufferPool,
    _owned: ShardOwned,
}

impl TxQueue for NullTx {
    type Buf = PoolBuf;

    #[inline]
    fn tx_burst(&mut self, batch: &mut Batch<PoolBuf>) -> usize {
        let n = batch.len();
        self.pool.free_batch(batch);
        n
    }
}

/// A valid Ethernet / IPv4 / UDP frame of `len` bytes (at least 42), checksummed, from
/// 10.0.0.1:1024 to 10.0.1.1:2048, between locally administered MACs. Useful as a template.
pub fn udp4_frame(len: usize) -> Vec<u8> {
    let len = len.max(42);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&crate::wire::ETHERTYPE_IPV4.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 1, 1]);
    let csum = ipv4_header_checksum(ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    let udp_len = ip_len - 20;
    f[34..36].copy_from_slice(&1024u16.to_be_bytes());
    f[36..38].copy_from_slice(&2048u16.to_be_bytes());
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    // UDP checksum 0: allowed for IPv4.
    f
}

/// RFC 1071 checksum of an IPv4 header whose checksum field is zero.
pub fn ipv4_header_checksum(hdr: &[u8]) -> u16 {
    crate::wire::checksum::checksum(hdr)
}
