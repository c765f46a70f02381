//! Live capture and injection on a network interface through libpcap (feature `live`).
//!
//! A [`LivePort`] has one queue pair: Rx reads the interface in non-blocking mode (a burst takes
//! what libpcap has buffered and never waits), Tx injects frames with `pcap_sendpacket`. Both
//! share one libpcap handle behind a mutex taken once per burst. Frames are normalised to
//! Ethernet like the file port's (`any` gives Linux cooked frames, tunnels give raw IP).
//!
//! Opening an interface needs `CAP_NET_RAW` (root); without it [`LivePort::open`] fails with
//! [`PcapError::Live`] carrying libpcap's message, e.g. "You don't have permission to perform
//! this capture on that device".
//!
//! The libpcap binding is the `pcap` crate; this module itself has no `unsafe`.

use std::sync::{Arc, Mutex, PoisonError};

use pcap::{Active, Capture, Device};
use wirespeed_core::{
    Batch, BufferPool, DropReason, PacketBuf, PacketMeta, PoolBuf, Port, PortError, PortInfo, RxQueue,
    TxQueue,
};

use crate::error::PcapError;
use crate::link::{self, LinkType, NormalizeError};

/// Settings of a [`LivePort`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveConfig {
    /// Interface name (`lo`, `eth0`, `any`).
    pub device: String,
    /// Port index stamped into [`PacketMeta::rx_port`].
    pub port_id: u16,
    /// Longest frame captured.
    pub snaplen: u32,
    /// Put the interface into promiscuous mode.
    pub promisc: bool,
    /// Kernel capture buffer, bytes (`None`: libpcap's default).
    pub buffer_size: Option<u32>,
}

impl LiveConfig {
    /// Defaults for `device`: port 0, 64 KiB snap length, not promiscuous.
    pub fn new(device: impl Into<String>) -> Self {
        Self { device: device.into(), port_id: 0, snaplen: 65535, promisc: false, buffer_size: None }
    }
}

struct Shared {
    cap: Mutex<Capture<Active>>,
    error: Mutex<Option<PcapError>>,
}

impl Shared {
    fn set_error(&self, e: PcapError) {
        self.error.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(e);
    }
}

/// A network interface opened for capture and injection; one queue pair.
pub struct LivePort {
    cfg: LiveConfig,
    pool: BufferPool,
    link: LinkType,
    shared: Arc<Shared>,
    taken: bool,
}

impl std::fmt::Debug for LivePort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePort").field("cfg", &self.cfg).field("link", &self.link).finish()
    }
}

/// The interface's MAC address from Linux sysfs (`None` elsewhere or when unreadable).
fn interface_mac(device: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{device}/address")).ok()?;
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The interface's MTU from Linux sysfs (`None` elsewhere, for `any`, or when unreadable).
fn interface_mtu(device: &str) -> Option<usize> {
    std::fs::read_to_string(format!("/sys/class/net/{device}/mtu")).ok()?.trim().parse().ok()
}

fn live_error(device: &str, e: impl std::fmt::Display) -> PcapError {
    PcapError::Live { device: device.to_string(), message: e.to_string() }
}

impl LivePort {
    /// Names of the interfaces libpcap can capture on.
    pub fn devices() -> Result<Vec<String>, PcapError> {
        Device::list().map(|d| d.into_iter().map(|d| d.name).collect()).map_err(|e| live_error("(list)", e))
    }

    /// Opens `cfg.device` in non-blocking mode. Fails when the interface does not exist, when the
    /// process lacks the privilege, or when its link type is not one [`LinkType`] supports.
    pub fn open(cfg: LiveConfig, pool: BufferPool) -> Result<LivePort, PcapError> {
        let dev = cfg.device.as_str();
        let mut inactive = Capture::from_device(dev)
            .map_err(|e| live_error(dev, e))?
            .snaplen(i32::try_from(cfg.snaplen).unwrap_or(i32::MAX))
            .promisc(cfg.promisc)
            .immediate_mode(true);
        if let Some(size) = cfg.buffer_size {
            inactive = inactive.buffer_size(i32::try_from(size).unwrap_or(i32::MAX));
        }
        let cap =
            inactive.open().map_err(|e| live_error(dev, e))?.setnonblock().map_err(|e| live_error(dev, e))?;
        let dlt = cap.get_datalink().0;
        let link = u32::try_from(dlt).ok().and_then(LinkType::from_raw).ok_or_else(|| {
            PcapError::UnsupportedLinkType { file: dev.to_string(), link_type: dlt as u32, interface: None }
        })?;
        let shared = Arc::new(Shared { cap: Mutex::new(cap), error: Mutex::new(None) });
        Ok(LivePort { cfg, pool, link, shared, taken: false })
    }

    /// Link type of the interface.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// The longest frame the port carries, as [`PortInfo::max_frame`] reports it: the
    /// interface's MTU plus the 14-byte Ethernet header, within the pool's data room and (on an
    /// Ethernet interface, whose captured frames are the frames) the snap length.
    fn max_frame(&self) -> usize {
        let mut max = self.pool.data_room();
        if let Some(mtu) = interface_mtu(&self.cfg.device) {
            max = max.min(mtu.saturating_add(14));
        }
        if self.link == LinkType::Ethernet && self.cfg.snaplen > 0 {
            max = max.min(usize::try_from(self.cfg.snaplen).unwrap_or(usize::MAX));
        }
        max
    }

    /// Takes the first capture or injection error met by the queues, if any.
    pub fn take_error(&self) -> Option<PcapError> {
        self.shared.error.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl Port for LivePort {
    type Rx = LiveRx;
    type Tx = LiveTx;
    type Buf = PoolBuf;

    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.cfg.device.clone(),
            queues: 1,
            mac: interface_mac(&self.cfg.device).unwrap_or([0; 6]),
            max_frame: self.max_frame(),
        }
    }

    fn queue_pair(&mut self, queue: u16) -> Result<(LiveRx, LiveTx), PortError> {
        if queue != 0 {
            return Err(PortError::NoSuchQueue { port: self.cfg.device.clone(), queue, queues: 1 });
        }
        if self.taken {
            return Err(PortError::QueueTaken { port: self.cfg.device.clone(), queue });
        }
        self.taken = true;
        let rx = LiveRx {
            shared: self.shared.clone(),
            pool: self.pool,
            link: self.link,
            port_id: self.cfg.port_id,
            device: self.cfg.device.clone(),
            drops: [0; 4],
            failed: false,
        };
        let tx = LiveTx { shared: self.shared.clone(), pool: self.pool, device: self.cfg.device.clone() };
        Ok((rx, tx))
    }
}

const DROP_KINDS: [DropReason; 4] =
    [DropReason::PoolExhausted, DropReason::TooLarge, DropReason::Unsupported, DropReason::Truncated];

/// Rx queue of a [`LivePort`].
pub struct LiveRx {
    shared: Arc<Shared>,
    pool: BufferPool,
    link: LinkType,
    port_id: u16,
    device: String,
    drops: [u64; 4],
    failed: bool,
}

impl RxQueue for LiveRx {
    type Buf = PoolBuf;

    fn rx_burst(&mut self, out: &mut Batch<PoolBuf>) -> usize {
        if self.failed {
            return 0;
        }
        let mut cap = self.shared.cap.lock().unwrap_or_else(PoisonError::into_inner);
        let mut n = 0;
        while !out.is_full() {
            let packet = match cap.next_packet() {
                Ok(p) => p,
                Err(pcap::Error::TimeoutExpired) => break,
                Err(e) => {
                    self.failed = true;
                    self.shared.set_error(live_error(&self.device, e));
                    break;
                }
            };
            let data = packet.data;
            let len = match link::ethernet_len(self.link, data) {
                Ok(len) => len,
                Err(NormalizeError::Truncated { .. }) => {
                    self.drops[3] += 1;
                    continue;
                }
                Err(_) => {
                    self.drops[2] += 1;
                    continue;
                }
            };
            if len > self.pool.data_room() {
                self.drops[1] += 1;
                continue;
            }
            let Some(mut buf) = self.pool.alloc() else {
                self.drops[0] += 1;
                continue;
            };
            if buf.set_len(len).is_err()
                || link::normalize_to_ethernet(self.link, data, buf.data_mut()).is_err()
            {
                self.drops[1] += 1;
                continue;
            }
            *buf.meta_mut() = PacketMeta::received(self.port_id, 0);
            let _ = out.push(buf);
            n += 1;
        }
        n
    }

    fn take_drops(&mut self) -> Option<(DropReason, u64)> {
        let i = self.drops.iter().position(|&d| d != 0)?;
        Some((DROP_KINDS[i], std::mem::take(&mut self.drops[i])))
    }
}

/// Tx queue of a [`LivePort`]: injects frames on the interface.
pub struct LiveTx {
    shared: Arc<Shared>,
    pool: BufferPool,
    device: String,
}

impl TxQueue for LiveTx {
    type Buf = PoolBuf;

    fn tx_burst(&mut self, batch: &mut Batch<PoolBuf>) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let mut sent = 0;
        {
            let mut cap = self.shared.cap.lock().unwrap_or_else(PoisonError::into_inner);
            for p in batch.iter() {
                if let Err(e) = cap.sendpacket(p.data()) {
                    // The rest stays in the batch and the pipeline counts it as a Tx drop; the
                    // next burst tries again (the kernel may only have been short of buffers).
                    self.shared.set_error(live_error(&self.device, e));
                    break;
                }
                sent += 1;
            }
        }
        self.pool.free_bulk(batch.drain(..sent));
        sent
    }
}
