//! [`DpdkPort`]: an ethdev configured with one Rx/Tx queue pair per shard, its mempool on the
//! device's NUMA socket, link status and counters; [`DpdkRx`]/[`DpdkTx`] are the shard-owned
//! queue handles.

use std::ffi::CString;
use std::sync::Arc;

use wirespeed_core::backend::{QueueClaims, ShardOwned};
use wirespeed_core::pool::MIN_HEADROOM;
use wirespeed_core::rss::RssControl;
use wirespeed_core::{Batch, DropReason, Port, PortError, PortInfo, RxQueue, ShardCounters, TxQueue};

use crate::config::DpdkPortConfig;
use crate::eal::{Eal, current_socket, ensure_thread_registered};
use crate::error::DpdkError;
use crate::ffi;
use crate::host::{
    HOST_PATH_FULL, HostCounters, HostCountersHandle, HostFilter, HostPathConfig, HostQueue, HostStats,
};
use crate::mbuf::{self, Mbuf};
use crate::mempool::{Mempool, MempoolConfig};
use crate::rss::HwRss;

/// Link state of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link up.
    pub up: bool,
    /// Speed in Mb/s (0 when unknown or down).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// A port's hardware counters: the basic ethdev stats, every extended statistic by name, and
/// the drops that have a wirespeed [`DropReason`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Packets received by the port.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Packets the NIC dropped because an Rx ring was full (software too slow).
    pub rx_missed: u64,
    /// Erroneous received packets (CRC, length).
    pub rx_errors: u64,
    /// Failed transmissions.
    pub tx_errors: u64,
    /// Rx descriptors the PMD could not refill: the mempool was empty.
    pub rx_no_mbuf: u64,
    /// Every extended statistic (`rte_eth_xstats_get`), by DPDK name.
    pub xstats: Vec<(String, u64)>,
}

impl PortCounters {
    /// Adds the port-level drops that have a wirespeed reason to `c`: Rx with no mbuf is
    /// [`DropReason::PoolExhausted`], frames the device missed because the Rx ring was full
    /// (`imissed`) [`DropReason::RxRingFull`]. (Erroneous frames have no wirespeed reason; they
    /// stay in [`PortCounters::rx_errors`].)
    pub fn add_drops_to(&self, c: &mut ShardCounters) {
        c.drop_packets(DropReason::PoolExhausted, self.rx_no_mbuf);
        c.drop_packets(DropReason::RxRingFull, self.rx_missed);
    }

    /// An extended statistic by name.
    pub fn xstat(&self, name: &str) -> Option<u64> {
        self.xstats.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// State shared by a port and its queues: the device is stopped when the last of them is
/// dropped. It is not closed (closing a virtual device removes it), so a later
/// [`DpdkPort::new`] on the same device reconfigures it.
#[derive(Debug)]
pub(crate) struct PortShared {
    pub(crate) port_id: u16,
    pub(crate) device: String,
    /// The shared pool the port's rings are committed to ([`Mempool::commit`]), if any.
    pub(crate) committed: Option<Mempool>,
}

impl Drop for PortShared {
    fn drop(&mut self) {
        let _ = ffi::dev_stop(self.port_id);
        if let Some(pool) = &self.committed {
            pool.release(&self.device);
        }
    }
}

/// A DPDK ethdev as a wirespeed [`Port`]: `queues` Rx/Tx queue pairs, one per shard.
pub struct DpdkPort {
    shared: Arc<PortShared>,
    eal: &'static Eal,
    claims: QueueClaims,
    queues: u16,
    meta_port: u16,
    driver: String,
    socket: i32,
    mac: [u8; 6],
    max_frame: usize,
    mempool: Mempool,
    rss: Option<HwRss>,
    host: Option<HostPort>,
}

/// A port's exception path: the tap device, the compiled filter, one counter set per queue.
struct HostPort {
    cfg: HostPathConfig,
    tap: Box<DpdkPort>,
    filter: Arc<HostFilter>,
    stats: Vec<Arc<HostStats>>,
    full_reason: DropReason,
}

impl std::fmt::Debug for DpdkPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkPort")
            .field("device", &self.shared.device)
            .field("port_id", &self.shared.port_id)
            .field("driver", &self.driver)
            .field("queues", &self.queues)
            .field("socket", &self.socket)
            .finish()
    }
}

impl DpdkPort {
    /// Initialises the EAL (once per process, with `cfg.eal`), finds or hot-plugs the device,
    /// creates (or reuses) the mempool of its NUMA socket, configures `cfg.queues` queue pairs
    /// and RSS, and starts the port.
    pub fn new(cfg: &DpdkPortConfig) -> Result<DpdkPort, DpdkError> {
        Self::open(cfg, None)
    }

    /// [`Self::new`], receiving into `pool` when given (the exception path's tap shares its
    /// data port's pool) instead of the pool `cfg.mempool` names.
    fn open(cfg: &DpdkPortConfig, pool: Option<Mempool>) -> Result<DpdkPort, DpdkError> {
        let eal = Eal::init(&cfg.eal)?;
        cfg.check()?;
        if eal.mbuf_headroom() < MIN_HEADROOM {
            return Err(DpdkError::bad(
                "RTE_PKTMBUF_HEADROOM",
                eal.mbuf_headroom(),
                format!("ESP encapsulation needs at least {MIN_HEADROOM} bytes of mbuf headroom"),
            ));
        }
        let device = cfg.device.clone();
        let cname =
            CString::new(device.clone()).map_err(|_| DpdkError::bad("device", &device, "NUL in name"))?;
        let port_id = match ffi::port_by_name(&cname) {
            Some(p) => p,
            None => {
                let Some(devargs) = &cfg.devargs else {
                    return Err(DpdkError::NoSuchDevice {
                        device,
                        why: "not probed by the EAL and no devargs given to hot-plug it".into(),
                    });
                };
                let cargs = CString::new(devargs.clone())
                    .map_err(|_| DpdkError::bad("devargs", devargs, "NUL in devargs"))?;
                let rc = ffi::dev_probe(&cargs);
                if rc < 0 {
                    return Err(DpdkError::NoSuchDevice {
                        device,
                        why: format!("rte_dev_probe(\"{devargs}\"): {}", ffi::strerror(-rc)),
                    });
                }
                ffi::port_by_name(&cname).ok_or_else(|| DpdkError::NoSuchDevice {
                    device: device.clone(),
                    why: format!("devargs `{devargs}` probed but created no port of that name"),
                })?
            }
        };
        let info =
            ffi::dev_info(port_id).map_err(|rc| DpdkError::port(&device, "rte_eth_dev_info_get", rc))?;
        let max_q = info.max_rx_queues.min(info.max_tx_queues);
        if cfg.queues > max_q {
            return Err(DpdkError::bad(
                "queues",
                cfg.queues,
                format!("{device} supports at most {max_q} queue pairs"),
            ));
        }
        // With an exception path, Tx queue `queues + q` carries what the kernel sends out of tap
        // queue `q` (owned by Rx queue `q`, so no Tx queue is shared between threads).
        let tx_queues = if cfg.host.is_some() { 2 * cfg.queues } else { cfg.queues };
        if tx_queues > info.max_tx_queues {
            return Err(DpdkError::bad(
                "host",
                cfg.host.as_ref().map(|h| h.iface.clone()).unwrap_or_default(),
                format!(
                    "the exception path needs {tx_queues} Tx queues ({} for the shards, as many for the kernel's \
                     traffic) and {device} has at most {}",
                    cfg.queues, info.max_tx_queues
                ),
            ));
        }
        if let Some(mtu) = cfg.mtu {
            // DPDK checks it in rte_eth_dev_configure too, but says only EINVAL; here the device
            // is not touched yet.
            let max = device_max_mtu(&info);
            if mtu < info.min_mtu || mtu > max {
                return Err(DpdkError::bad(
                    "mtu",
                    mtu,
                    format!(
                        "{device} takes an MTU of {}..={max} (its largest frame is {} bytes)",
                        info.min_mtu, info.max_rx_pktlen
                    ),
                ));
            }
        }
        let socket = if info.socket_id >= 0 { info.socket_id } else { current_socket() };
        let mempool = match pool {
            Some(p) => p,
            // A derived count covers this port only: the pool is the port's own.
            None if cfg.mempool.mbufs.is_none() => {
                let shape = MempoolConfig { mbufs: Some(cfg.mbufs()?), ..cfg.mempool };
                Mempool::get(eal, socket, shape, Some(&device))?
            }
            None => Mempool::get(eal, socket, cfg.mempool, None)?,
        };
        // A pool shared by the socket's ports (explicit `mbufs`): the rings of all of them must
        // leave some mbufs free. A port's own pool was sized for it (derived count, or checked
        // by `cfg.check()`), and a pool handed in is the caller's (the exception path's tap on
        // its data port's pool, whose count covers the tap).
        let committed = match (pool, cfg.mempool.mbufs) {
            (None, Some(_)) => {
                mempool.commit(&device, cfg.ring_mbufs())?;
                Some(mempool)
            }
            _ => None,
        };
        // Shared from here on so an error below still stops and closes the device.
        let shared = Arc::new(PortShared { port_id, device: device.clone(), committed });

        let plan = match &cfg.rss {
            Some(r) => Some(HwRss::plan(port_id, &device, &info, cfg.queues, r)?),
            None => None,
        };
        let (rss_on, types, key) = match &plan {
            Some(p) => (true, p.hw_types_bits(), p.key().to_vec()),
            None => (false, 0, Vec::new()),
        };
        let rc =
            ffi::dev_configure(port_id, cfg.queues, tx_queues, rss_on, types, &key, cfg.mtu.unwrap_or(0));
        if rc != 0 {
            return Err(DpdkError::port(&device, "rte_eth_dev_configure", rc));
        }
        for q in 0..cfg.queues {
            let rc = ffi::rx_queue_setup(port_id, q, cfg.rx_desc, socket, mempool.raw());
            if rc != 0 {
                return Err(DpdkError::port(&device, "rte_eth_rx_queue_setup", rc));
            }
        }
        for q in 0..tx_queues {
            let rc = ffi::tx_queue_setup(port_id, q, cfg.tx_desc, socket);
            if rc != 0 {
                return Err(DpdkError::port(&device, "rte_eth_tx_queue_setup", rc));
            }
        }
        let rc = ffi::dev_start(port_id);
        if rc != 0 {
            return Err(DpdkError::port(&device, "rte_eth_dev_start", rc));
        }
        if cfg.promiscuous {
            // Some vdevs do not implement it; a port that cannot is still usable.
            let _ = ffi::promiscuous_enable(port_id);
        }
        let rss = match plan {
            Some(mut p) => {
                p.start()?;
                Some(p)
            }
            None => None,
        };
        // What the port sends and receives: its MTU (DPDK's default 1500 unless the driver says
        // otherwise) plus the Ethernet header, within what the driver and an mbuf can hold.
        let mtu_frame = ffi::mtu(port_id).map_or(usize::MAX, |m| usize::from(m) + 14);
        let max_frame = (info.max_rx_pktlen as usize).min(usize::from(cfg.mempool.data_room)).min(mtu_frame);
        let mac = ffi::macaddr(port_id);
        let host = match &cfg.host {
            Some(h) => Some(HostPort::open(cfg, h, &mac, mempool)?),
            None => None,
        };
        Ok(DpdkPort {
            claims: QueueClaims::new(device.clone(), cfg.queues),
            queues: cfg.queues,
            meta_port: cfg.port_index,
            driver: info.driver(),
            socket,
            mac,
            max_frame,
            mempool,
            rss,
            host,
            eal,
            shared,
        })
    }

    /// Compiles the exception path's filter from `plan` (the same plan the NIC's `rte_flow`
    /// rules and the software dispatcher come from): queue pairs handed out afterwards send
    /// the packets of [`HostPathConfig::rules`] to the kernel interface. Until it is called the
    /// filter is that of [`SteeringPlan::management_default`] without own addresses. Fails when
    /// the port has no exception path or a configured rule name is not in `plan`.
    ///
    /// [`SteeringPlan::management_default`]: wirespeed_core::rss::SteeringPlan::management_default
    pub fn set_host_plan(&mut self, plan: &wirespeed_core::rss::SteeringPlan) -> Result<(), DpdkError> {
        let Some(h) = &mut self.host else {
            return Err(DpdkError::bad("host", "none", "this port has no exception path (set `host`)"));
        };
        h.filter = Arc::new(HostFilter::compile(plan, &h.cfg)?);
        Ok(())
    }

    /// The exception path's compiled filter, if the port has one.
    pub fn host_filter(&self) -> Option<&HostFilter> {
        self.host.as_ref().map(|h| &*h.filter)
    }

    /// The exception path's kernel interface name, if the port has one.
    pub fn host_iface(&self) -> Option<&str> {
        self.host.as_ref().map(|h| h.cfg.iface.as_str())
    }

    /// The exception path's counters, summed over the port's queues (`None` without one).
    pub fn host_counters(&self) -> Option<HostCounters> {
        self.host_counters_handle().map(|h| h.read())
    }

    /// A reader of the exception path's counters that stays valid after the port is dropped
    /// (`None` without one).
    pub fn host_counters_handle(&self) -> Option<HostCountersHandle> {
        self.host.as_ref().map(|h| HostCountersHandle { stats: h.stats.clone() })
    }

    /// DPDK port id.
    pub fn port_id(&self) -> u16 {
        self.shared.port_id
    }

    /// The PMD's name (`net_null`, `mlx5_pci`).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// NUMA socket of the device (and of its mempool).
    pub fn socket(&self) -> i32 {
        self.socket
    }

    /// The mempool the port receives into.
    pub fn mempool(&self) -> Mempool {
        self.mempool
    }

    /// The EAL the port runs on.
    pub fn eal(&self) -> &'static Eal {
        self.eal
    }

    /// The port's hardware RSS state, when RSS was configured.
    pub fn hw_rss(&mut self) -> Option<&mut HwRss> {
        self.rss.as_mut()
    }

    /// Link state, without waiting for autonegotiation.
    pub fn link(&self) -> Result<LinkStatus, DpdkError> {
        let l = ffi::link(self.port_id())
            .map_err(|rc| DpdkError::port(&self.shared.device, "rte_eth_link_get_nowait", rc))?;
        Ok(LinkStatus { up: l.up != 0, speed_mbps: l.speed_mbps, full_duplex: l.full_duplex != 0 })
    }

    /// The port's hardware counters and every extended statistic (control path: allocates).
    pub fn counters(&self) -> Result<PortCounters, DpdkError> {
        let dev = &self.shared.device;
        let s = ffi::stats(self.port_id()).map_err(|rc| DpdkError::port(dev, "rte_eth_stats_get", rc))?;
        let names = ffi::xstat_names(self.port_id())
            .map_err(|rc| DpdkError::port(dev, "rte_eth_xstats_get_names", rc))?;
        let mut values = vec![0u64; names.len()];
        let rc = ffi::xstat_values(self.port_id(), &mut values);
        if rc < 0 {
            return Err(DpdkError::port(dev, "rte_eth_xstats_get", rc));
        }
        Ok(PortCounters {
            rx_packets: s.ipackets,
            rx_bytes: s.ibytes,
            tx_packets: s.opackets,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_no_mbuf: s.rx_nombuf,
            xstats: names.into_iter().zip(values).collect(),
        })
    }
}

/// The largest MTU `info`'s device takes, as `rte_eth_dev_configure` decides: its `max_mtu`,
/// and a frame of MTU + overhead within `max_rx_pktlen`, the overhead being what the driver
/// reports (`max_rx_pktlen - max_mtu`) or else an Ethernet header and CRC (18).
fn device_max_mtu(info: &ffi::DevInfo) -> u16 {
    let (max_mtu, pktlen) = (u32::from(info.max_mtu), info.max_rx_pktlen);
    let overhead = if max_mtu != u32::from(u16::MAX) && pktlen > max_mtu { pktlen - max_mtu } else { 18 };
    let by_frame = pktlen.saturating_sub(overhead);
    u16::try_from(by_frame.min(max_mtu)).unwrap_or(u16::MAX)
}

impl HostPort {
    /// Probes (or finds) the exception device of the data port `cfg`, whose MAC is `mac`, with
    /// one queue pair per data queue, on the data port's mempool `pool`.
    fn open(
        cfg: &DpdkPortConfig,
        h: &HostPathConfig,
        mac: &[u8; 6],
        pool: Mempool,
    ) -> Result<HostPort, DpdkError> {
        h.check()?;
        let tap_cfg = DpdkPortConfig {
            eal: cfg.eal.clone(),
            device: h.device(),
            devargs: Some(h.devargs(mac)),
            queues: cfg.queues,
            rx_desc: h.desc,
            tx_desc: h.desc,
            // The data port's pool (whose count covers the tap's rings too).
            mempool: pool.config(),
            rss: None,
            // Promiscuous on a tap makes the kernel interface promiscuous: not wanted.
            promiscuous: false,
            port_index: cfg.port_index,
            host: None,
            // The tap keeps its driver's default: host-bound traffic (IKE) is small.
            mtu: None,
        };
        let tap = DpdkPort::open(&tap_cfg, Some(pool))?;
        let full_reason = DropReason::register(HOST_PATH_FULL).unwrap_or(DropReason::DispatchRingFull);
        Ok(HostPort {
            filter: Arc::new(HostFilter::default_for(h)?),
            stats: (0..cfg.queues).map(|_| Arc::default()).collect(),
            tap: Box::new(tap),
            full_reason,
            cfg: h.clone(),
        })
    }
}

impl Port for DpdkPort {
    type Rx = DpdkRx;
    type Tx = DpdkTx;
    type Buf = Mbuf;

    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.shared.device.clone(),
            queues: self.queues,
            mac: self.mac,
            max_frame: self.max_frame,
        }
    }

    fn queue_pair(&mut self, queue: u16) -> Result<(DpdkRx, DpdkTx), PortError> {
        self.claims.claim(queue)?;
        let port = self.port_id();
        let host = match &mut self.host {
            Some(h) => {
                let (tap_rx, tap_tx) = h.tap.queue_pair(queue)?;
                Some(Box::new(HostQueue {
                    filter: h.filter.clone(),
                    tap_rx,
                    tap_tx,
                    data_port: port,
                    data_txq: self.queues + queue,
                    pool: self.mempool,
                    stats: h.stats[usize::from(queue)].clone(),
                    full_reason: h.full_reason,
                    pending_full: 0,
                    staged: Batch::new(),
                    to_host: Batch::new(),
                }))
            }
            None => None,
        };
        Ok((
            DpdkRx {
                shared: self.shared.clone(),
                port,
                queue,
                meta_port: self.meta_port,
                too_large: 0,
                host,
                _owned: ShardOwned::default(),
            },
            DpdkTx { shared: self.shared.clone(), port, queue, _owned: ShardOwned::default() },
        ))
    }

    fn rss(&mut self) -> Option<&mut dyn RssControl> {
        self.rss.as_mut().map(|r| r as &mut dyn RssControl)
    }
}

/// Rx queue of a [`DpdkPort`], owned by one shard.
pub struct DpdkRx {
    shared: Arc<PortShared>,
    port: u16,
    queue: u16,
    meta_port: u16,
    too_large: u64,
    /// The exception path of this queue (boxed: it holds two burst-sized batches).
    host: Option<Box<HostQueue>>,
    _owned: ShardOwned,
}

impl DpdkRx {
    /// The device this queue belongs to.
    pub fn device(&self) -> &str {
        &self.shared.device
    }

    /// The queue index.
    pub fn queue(&self) -> u16 {
        self.queue
    }
}

impl RxQueue for DpdkRx {
    type Buf = Mbuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Batch<Mbuf>) -> usize {
        // A thread that cannot be registered still works, without mempool caches.
        let _ = ensure_thread_registered();
        let Some(h) = &mut self.host else {
            return mbuf::rx_burst(
                self.port,
                self.queue,
                self.meta_port,
                out,
                usize::MAX,
                &mut self.too_large,
            );
        };
        // The kernel's traffic first (one burst), then one burst of the port (at most what
        // `out` can take) into the staging batch, sorted between `out` and the tap.
        h.forward_from_host();
        let before = out.len();
        let n = mbuf::rx_burst(
            self.port,
            self.queue,
            self.meta_port,
            &mut h.staged,
            out.remaining(),
            &mut self.too_large,
        );
        if n > 0 {
            h.sort(out);
        }
        out.len() - before
    }

    fn take_drops(&mut self) -> Option<(DropReason, u64)> {
        if self.too_large != 0 {
            return Some((DropReason::TooLarge, std::mem::take(&mut self.too_large)));
        }
        self.host.as_mut().and_then(|h| h.take_drops())
    }
}

/// Tx queue of a [`DpdkPort`], owned by one shard.
pub struct DpdkTx {
    shared: Arc<PortShared>,
    port: u16,
    queue: u16,
    _owned: ShardOwned,
}

impl DpdkTx {
    /// The device this queue belongs to.
    pub fn device(&self) -> &str {
        &self.shared.device
    }
}

impl TxQueue for DpdkTx {
    type Buf = Mbuf;

    #[inline]
    fn tx_burst(&mut self, batch: &mut Batch<Mbuf>) -> usize {
        let _ = ensure_thread_registered();
        mbuf::tx_burst(self.port, self.queue, batch)
    }
}

#[cfg(test)]
mod counter_tests {
    use super::*;

    #[test]
    fn port_drops_map_to_their_reasons() {
        let p = PortCounters { rx_missed: 5, rx_no_mbuf: 3, rx_errors: 7, ..PortCounters::default() };
        let mut c = ShardCounters::default();
        p.add_drops_to(&mut c);
        assert_eq!(c.drops_of(DropReason::RxRingFull), 5);
        assert_eq!(c.drops_of(DropReason::PoolExhausted), 3);
        assert_eq!(c.total_drops(), 8, "erroneous frames have no reason: {c}");
    }
}
