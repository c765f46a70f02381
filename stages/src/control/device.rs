//! The smoltcp `phy::Device` of the control plane: receives from the punt queue, transmits
//! through a port's Tx queue.

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpEndpoint};
use wirespeed_core::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, ip_proto};
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
    /// A frame taken from the punt queue ahead of smoltcp (see [`PuntDevice::prefetch`]).
    pending: Option<B>,
    out: Out<B, T, A>,
    mtu: usize,
    pub(crate) snoop: Snoop,
    /// TCP port of the management endpoint (to notice segments addressed to it).
    pub(crate) mgmt_port: u16,
    /// What the last received frame was, for the control plane's per-frame accounting.
    pub(crate) last: FrameSeen,
}

/// What the device noticed about the last frame it handed to smoltcp.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FrameSeen {
    /// A frame was received.
    pub(crate) received: bool,
    /// smoltcp used the reply token that came with it (an answer, sent or counted as dropped).
    pub(crate) replied: bool,
    /// It was a TCP segment to the management port: its source, and whether it was a bare SYN.
    pub(crate) tcp: Option<(IpEndpoint, bool)>,
}

/// The source endpoint of an untagged Ethernet II frame carrying TCP to `port`, and whether the
/// segment is a connection request (SYN without ACK).
fn tcp_to_port(f: &[u8], port: u16) -> Option<(IpEndpoint, bool)> {
    let et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let (src, l4): (IpAddress, &[u8]) = match et {
        ETHERTYPE_IPV4 => {
            let ip = f.get(14..34)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || ip[9] != ip_proto::TCP || ihl < 20 {
                return None;
            }
            (IpAddress::Ipv4([ip[12], ip[13], ip[14], ip[15]].into()), f.get(14 + ihl..)?)
        }
        ETHERTYPE_IPV6 => {
            let ip = f.get(14..54)?;
            if ip[0] >> 4 != 6 || ip[6] != ip_proto::TCP {
                return None;
            }
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[8..24]);
            (IpAddress::Ipv6(a.into()), f.get(54..)?)
        }
        _ => return None,
    };
    let tcp = l4.get(..14)?;
    if u16::from_be_bytes([tcp[2], tcp[3]]) != port {
        return None;
    }
    let syn = tcp[13] & 0x12 == 0x02;
    Some((IpEndpoint::new(src, u16::from_be_bytes([tcp[0], tcp[1]])), syn))
}

struct Out<B: PacketBuf, T: TxQueue<Buf = B>, A: TxAlloc<B>> {
    tx: T,
    alloc: A,
    batch: Batch<B>,
    /// Where smoltcp writes a frame that has no buffer, so it can be counted and discarded.
    scratch: Vec<u8>,
    counters: DeviceCounters,
    /// Set when the reply token of the current received frame is used.
    replied: bool,
}

impl<B: PacketBuf, T: TxQueue<Buf = B>, A: TxAlloc<B>> PuntDevice<B, T, A> {
    /// A device reading `rx`, writing `tx` with buffers from `alloc`; frames up to `max_frame`
    /// bytes (Ethernet header included).
    pub fn new(rx: PuntQueue<B>, tx: T, alloc: A, max_frame: usize) -> Self {
        let mtu = max_frame.max(64);
        Self {
            rx,
            pending: None,
            out: Out {
                tx,
                alloc,
                batch: Batch::new(),
                scratch: vec![0; mtu],
                counters: DeviceCounters::default(),
                replied: false,
            },
            mtu,
            snoop: Snoop::default(),
            mgmt_port: 0,
            last: FrameSeen::default(),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> DeviceCounters {
        self.out.counters
    }

    /// Takes the next punted frame ahead of smoltcp, so the control plane can look at it
    /// (make room for a connection request) before smoltcp processes it. `None` when the punt
    /// queue is empty.
    pub(crate) fn prefetch(&mut self) -> Option<FrameSeen> {
        self.out.replied = false;
        let b = match self.pending.take() {
            Some(b) => b,
            None => self.rx.pop()?,
        };
        self.last = FrameSeen { received: false, replied: false, tcp: tcp_to_port(b.data(), self.mgmt_port) };
        self.pending = Some(b);
        Some(self.last)
    }

    /// What the last frame was (see [`FrameSeen`]).
    pub(crate) fn frame_seen(&self) -> FrameSeen {
        FrameSeen { replied: self.out.replied, ..self.last }
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
    /// Handed out with a received frame: using it answers that frame.
    reply: bool,
}

impl<B: PacketBuf, T: TxQueue<Buf = B>, A: TxAlloc<B>> phy::TxToken for PuntTx<'_, B, T, A> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let o = self.out;
        o.replied |= self.reply;
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

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let b = match self.pending.take() {
            Some(b) => b,
            None => {
                let b = self.rx.pop()?;
                self.out.replied = false;
                self.last =
                    FrameSeen { received: false, replied: false, tcp: tcp_to_port(b.data(), self.mgmt_port) };
                b
            }
        };
        self.last.received = true;
        self.snoop.frame(b.data(), b.meta().rx_port, timestamp.total_micros());
        self.out.counters.received += 1;
        self.out.counters.received_bytes += b.len() as u64;
        Some((PuntRx(b), PuntTx { out: &mut self.out, mtu: self.mtu, reply: true }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(PuntTx { out: &mut self.out, mtu: self.mtu, reply: false })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu;
        caps.max_burst_size = Some(1);
        caps
    }
}
