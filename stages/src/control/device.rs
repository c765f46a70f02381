//! The smoltcp `phy::Device` of the control plane: receives from the punt queue, transmits
//! through a port's Tx queue.

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use wirespeed_core::{Batch, PacketBuf, TxQueue};

use super::snoop::Snoop;
use super::{PuntQueue, TxAlloc};

/// Frame counters of a [`PuntDevice`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Frames taken from the punt queue.
    pub received: u64,
    /// Bytes of those frames.
    pub received_bytes: u64,
    /// Frames accepted by the Tx queue.
    pub transmitted: u64,
    /// Bytes of those frames.
    pub transmitted_bytes: u64,
    /// Frames smoltcp produced that could not be sent (no buffer, too large, Tx ring full).
    pub tx_dropped: u64,
}

/// A smoltcp device over the punt queue (receive) and a Tx queue (transmit).
pub struct PuntDevice<B: PacketBuf, T: TxQueue<Buf = B>, A: TxAlloc<B>> {
    rx: PuntQueue<B>,
    out: Out<B, T, A>,
    mtu: usize,
    pub(crate) snoop: Snoop,
}

struct Out<B: PacketBuf, T: TxQueue<Buf = B>, A: TxAlloc<B>> {
    tx: T,
    alloc: A,
    batch: Batch<B>,
    /// Where smoltcp writes a frame that has no buffer, so it can be counted and discarded.
    scratch: Vec<u8>,
    counters: DeviceCounters,
}

impl<B: PacketBuf, T: TxQueue<Buf = B>, A: TxAlloc<B>> PuntDevice<B, T, A> {
    /// A device reading `rx`, writing `tx` with buffers from `alloc`; frames up to `max_frame`
    /// bytes (Ethernet header included).
    pub fn new(rx: PuntQueue<B>, tx: T, alloc: A, max_frame: usize) -> Self {
        let mtu = max_frame.max(64);
        Self {
            rx,
            out: Out {
                tx,
                alloc,
                batch: Batch::new(),
                scratch: vec![0; mtu],
                counters: DeviceCounters::default(),
            },
            mtu,
            snoop: Snoop::default(),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> DeviceCounters {
        self.out.counters
    }

    /// Flushes the Tx queue.
    pub fn flush(&mut self) {
        self.out.tx.flush();
    }
}

/// Receive token: owns the punted buffer; dropping it returns the buffer to its pool.
pub struct PuntRx<B>(B);

impl<B: PacketBuf> phy::RxToken for PuntRx<B> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0.data())
    }
}

/// Transmit token.
pub struct PuntTx<'a, B: PacketBuf, T: TxQueue<Buf = B>, A: TxAlloc<B>> {
    out: &'a mut Out<B, T, A>,
    mtu: usize,
}

impl<B: PacketBuf, T: TxQueue<Buf = B>, A: TxAlloc<B>> phy::TxToken for PuntTx<'_, B, T, A> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let o = self.out;
        let buf = if len <= self.mtu { o.alloc.alloc_tx() } else { None };
        let Some(mut buf) = buf.and_then(|mut b| b.set_len(len).ok().map(|_| b)) else {
            o.counters.tx_dropped += 1;
            if o.scratch.len() < len {
                o.scratch.resize(len, 0);
            }
            return f(&mut o.scratch[..len]);
        };
        let r = f(buf.data_mut());
        // One frame at a time: the control plane is not a fast path.
        let _ = o.batch.push(buf);
        if o.tx.tx_burst(&mut o.batch) == 1 {
            o.counters.transmitted += 1;
            o.counters.transmitted_bytes += len as u64;
        } else {
            o.counters.tx_dropped += 1;
        }
        o.batch.clear();
        r
    }
}

impl<B: PacketBuf, T: TxQueue<Buf = B>, A: TxAlloc<B>> phy::Device for PuntDevice<B, T, A> {
    type RxToken<'a>
        = PuntRx<B>
    where
        Self: 'a;
    type TxToken<'a>
        = PuntTx<'a, B, T, A>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let b = self.rx.pop()?;
        self.snoop.frame(b.data(), b.meta().rx_port);
        self.out.counters.received += 1;
        self.out.counters.received_bytes += b.len() as u64;
        Some((PuntRx(b), PuntTx { out: &mut self.out, mtu: self.mtu }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(PuntTx { out: &mut self.out, mtu: self.mtu })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu;
        caps.max_burst_size = Some(1);
        caps
    }
}
