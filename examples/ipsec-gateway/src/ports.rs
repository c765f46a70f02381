//! Opening the ports a configuration names. `mem` ports are made by the embedding program (tests)
//! and passed to [`crate::gateway::build`] directly; this module opens `pcap` ports and, on
//! Linux, `afxdp` ports and, with the `dpdk` feature, `dpdk` ports (for
//! [`crate::gateway::build_with`]).
//!
//! A capture file has one input, but the gateway has one queue per shard plus the management
//! queue: the pcap port spreads the input over them with the gateway's own [`Steering`] (the
//! same RSS key, symmetric mode, RETA and management rules a NIC would apply), so offline runs
//! land every packet on the shard a NIC would have chosen.

use std::sync::Arc;

use wirespeed_core::BufferPool;
use wirespeed_pcap::{PcapOutput, PcapPort, TxTimestamp};

use crate::config::{GatewayConfig, PortConfig, Side};
use crate::gateway::{GatewayPorts, Steering, queues_per_port};

/// Why a port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PortOpenError {
    /// The capture files.
    #[error("interfaces.{side}.port: {source}")]
    Pcap {
        /// Which interface.
        side: &'static str,
        /// The error.
        source: wirespeed_pcap::PcapError,
    },
    /// An AF_XDP port.
    #[error("interfaces.{side}.port: {source}")]
    AfXdp {
        /// Which interface.
        side: &'static str,
        /// The error.
        source: wirespeed_afxdp::AfXdpError,
    },
    /// A DPDK port.
    #[cfg(feature = "dpdk")]
    #[error("interfaces.{side}.port: {source}")]
    Dpdk {
        /// Which interface.
        side: &'static str,
        /// The error.
        source: wirespeed_dpdk::DpdkError,
    },
    /// A backend this function does not open.
    #[error("interfaces.{side}.port: backend `{backend}` {why}")]
    Unsupported {
        /// Which interface.
        side: &'static str,
        /// The backend.
        backend: &'static str,
        /// Why.
        why: &'static str,
    },
}

/// Opens both pcap ports of `cfg`: each input spread over the queues by the steering plan, all
/// queues of a port writing one shared output capture.
pub fn open_pcap(
    cfg: &GatewayConfig,
    pool: &BufferPool,
    steering: Steering,
) -> Result<GatewayPorts<PcapPort>, PortOpenError> {
    let steering = Arc::new(steering);
    let open = |side: Side| -> Result<PcapPort, PortOpenError> {
        let itf = cfg.interface(side);
        let PortConfig::Pcap(p) = &itf.port else {
            return Err(PortOpenError::Unsupported {
                side: side.name(),
                backend: itf.port.backend(),
                why: "is not opened from a file (pass its ports to gateway::build)",
            });
        };
        if p.iface.is_some() {
            return Err(PortOpenError::Unsupported {
                side: side.name(),
                backend: "pcap",
                why: "live `iface`: a libpcap handle is one queue and the gateway needs one per shard; \
                      use capture files, or AF_XDP/DPDK for live traffic",
            });
        }
        let mut b = PcapPort::builder(*pool)
            .name(format!("{}-{}", cfg.name, side.name()))
            .port_id(side.port())
            .mac(itf.mac)
            .queues(queues_per_port(cfg))
            .tx_timestamp(TxTimestamp::Constant(1_764_000_000_000_000_000));
        if let Some(input) = &p.input {
            b = b.spread_input(input, steering.clone());
        }
        if let Some(output) = &p.output {
            b = b.output(PcapOutput::Shared(output.clone()));
        }
        b.build().map_err(|source| PortOpenError::Pcap { side: side.name(), source })
    };
    let lan = open(Side::Lan)?;
    let wan = open(Side::Wan)?;
    Ok(GatewayPorts { lan, wan })
}

/// The control plane's side of an AF_XDP management queue: the queue's transmit half, shared
/// between sending and allocating frames from its UMEM. Both halves live on the control shard's
/// thread, so the lock is never contended (and this is the management path, not the data path).
#[cfg(target_os = "linux")]
pub struct XdpControlTx(Arc<std::sync::Mutex<wirespeed_afxdp::XdpTx>>);

#[cfg(target_os = "linux")]
impl XdpControlTx {
    /// The transmit queue and the allocator of one management queue.
    pub fn split(tx: wirespeed_afxdp::XdpTx) -> (Self, Self) {
        let tx = Arc::new(std::sync::Mutex::new(tx));
        (Self(tx.clone()), Self(tx))
    }
}

#[cfg(target_os = "linux")]
impl wirespeed_core::TxQueue for XdpControlTx {
    type Buf = wirespeed_afxdp::XdpBuf;

    fn tx_burst(&mut self, batch: &mut wirespeed_core::Batch<Self::Buf>) -> usize {
        self.0.lock().map_or(0, |mut t| t.tx_burst(batch))
    }

    fn flush(&mut self) {
        if let Ok(mut t) = self.0.lock() {
            t.flush()
        }
    }
}

#[cfg(target_os = "linux")]
impl wirespeed_stages::control::TxAlloc<wirespeed_afxdp::XdpBuf> for XdpControlTx {
    fn alloc_tx(&mut self) -> Option<wirespeed_afxdp::XdpBuf> {
        self.0.lock().ok()?.alloc()
    }
}

/// Opens both AF_XDP ports of `cfg`, each with [`queues_per_port`] queues (queue `q` of a port
/// is data shard `q`'s; the last is the management queue) and `port_id` set to its side, then
/// programs the gateway's RSS configuration and steering plan into the NIC as far as the driver
/// allows. Returns the ports and one line per item of what runs in hardware and what the NIC
/// left undone (traffic of the management rules that lands on a data queue is still punted to
/// the control plane by the data shard's `Punt` stage; RSS the NIC does not do means an uneven
/// spread, never a wrong packet).
#[cfg(target_os = "linux")]
pub fn open_afxdp(
    cfg: &GatewayConfig,
    steering: &Steering,
) -> Result<(GatewayPorts<wirespeed_afxdp::AfXdpPort>, Vec<String>), PortOpenError> {
    use wirespeed_core::Port;
    let mut notes = Vec::new();
    let mut open = |side: Side| -> Result<wirespeed_afxdp::AfXdpPort, PortOpenError> {
        let itf = cfg.interface(side);
        let PortConfig::Afxdp(p) = &itf.port else {
            return Err(PortOpenError::Unsupported {
                side: side.name(),
                backend: itf.port.backend(),
                why: "is not an AF_XDP port",
            });
        };
        let mut p = p.clone();
        p.port_id = side.port();
        p.queues = Some(queues_per_port(cfg));
        let mut port = wirespeed_afxdp::AfXdpPort::open(p)
            .map_err(|source| PortOpenError::AfXdp { side: side.name(), source })?;
        let name = side.name();
        notes.push(format!("{name}: {}", port.report()));
        if let Ok(n) = wirespeed_afxdp::rx_queue_count(&port.config().interface)
            && n > queues_per_port(cfg)
        {
            notes.push(format!(
                "{name}: {} has {n} receive queues and the gateway serves {}: traffic the NIC puts on the \
                 others goes to the kernel stack (set `ethtool -L {} combined {}`)",
                port.config().interface,
                queues_per_port(cfg),
                port.config().interface,
                queues_per_port(cfg)
            ));
        }
        if port.info().mac != itf.mac {
            notes.push(format!(
                "{name}: interfaces.{name}.mac differs from {}'s own MAC: frames to the configured MAC \
                 reach the gateway only if the interface accepts them (promiscuous, or set its MAC)",
                port.config().interface
            ));
        }
        let rss = port.apply_rss(&cfg.rss, steering.reta());
        let plan = port.apply_plan(&cfg.steering);
        notes.push(format!("{name}: RSS: {rss}"));
        notes.push(format!("{name}: steering plan: {plan}"));
        Ok(port)
    };
    let lan = open(Side::Lan)?;
    let wan = open(Side::Wan)?;
    Ok((GatewayPorts { lan, wan }, notes))
}

/// The control plane's buffer allocator on DPDK ports: mbufs from the port's mempool.
#[cfg(feature = "dpdk")]
#[derive(Clone, Copy, Debug)]
pub struct MbufAlloc(pub wirespeed_dpdk::Mempool);

#[cfg(feature = "dpdk")]
impl wirespeed_stages::control::TxAlloc<wirespeed_dpdk::Mbuf> for MbufAlloc {
    fn alloc_tx(&mut self) -> Option<wirespeed_dpdk::Mbuf> {
        wirespeed_dpdk::Mbuf::alloc(&self.0)
    }
}

/// Opens both DPDK ports of `cfg` (the EAL is initialised by the first, with the LAN port's
/// `eal` list), `port_index` set to their side. When a port's `rss` table is absent and it has
/// more than one queue, the gateway's `[rss]` key, mode and hash types are programmed (RETA size:
/// `rss.reta_size`). Then the gateway's indirection table (data queues only) and its steering
/// plan (management rules to the last queue, through `rte_flow`) are applied as far as the PMD
/// allows. A port with a `host` exception path gets its filter compiled from the same steering
/// plan, and its kernel interface the side's configured MAC. Returns the ports, an allocator for
/// the control planes, and one line per report (what runs in hardware, what does not;
/// management traffic a data queue receives is still punted to the control plane by the data
/// shard's `Punt` stage; the exception path's packets never reach the shards).
#[cfg(feature = "dpdk")]
pub fn open_dpdk(
    cfg: &GatewayConfig,
    steering: &Steering,
) -> Result<(GatewayPorts<wirespeed_dpdk::DpdkPort>, MbufAlloc, Vec<String>), PortOpenError> {
    let mut notes = Vec::new();
    let eal = match &cfg.lan.port {
        PortConfig::Dpdk(p) => p.eal.clone(),
        _ => Vec::new(),
    };
    let mut open = |side: Side| -> Result<wirespeed_dpdk::DpdkPort, PortOpenError> {
        let itf = cfg.interface(side);
        let PortConfig::Dpdk(p) = &itf.port else {
            return Err(PortOpenError::Unsupported {
                side: side.name(),
                backend: itf.port.backend(),
                why: "is not a DPDK port",
            });
        };
        let mut p = p.clone();
        p.port_index = side.port();
        if p.eal.is_empty() {
            p.eal = eal.clone();
        }
        if p.rss.is_none() && p.queues > 1 {
            p.rss =
                Some(wirespeed_dpdk::RssSettings { hash: cfg.rss.clone(), reta_size: Some(cfg.reta_size) });
        }
        // The kernel interface of the exception path carries the interface's configured MAC
        // (what peers address), unless the devargs say otherwise.
        if let Some(h) = &mut p.host
            && h.device_args.is_none()
        {
            h.device_args = Some(h.devargs(&itf.mac));
        }
        let mut port = wirespeed_dpdk::DpdkPort::new(&p)
            .map_err(|source| PortOpenError::Dpdk { side: side.name(), source })?;
        let name = side.name();
        if let Some(iface) = port.host_iface().map(str::to_string) {
            // One plan for the NIC, the software dispatcher and the exception path.
            port.set_host_plan(&cfg.steering)
                .map_err(|source| PortOpenError::Dpdk { side: side.name(), source })?;
            let rules: Vec<String> = port
                .host_filter()
                .map(|f| f.rules().filter(|(_, a)| *a != wirespeed_dpdk::HostAction::Keep))
                .into_iter()
                .flatten()
                .map(|(n, a)| {
                    format!("{n}{}", if a == wirespeed_dpdk::HostAction::Copy { " (copy)" } else { "" })
                })
                .collect();
            notes.push(format!(
                "{name}: host path: kernel interface {iface} receives {}; what it sends leaves by this port",
                rules.join(", ")
            ));
        }
        if let Some(hw) = port.hw_rss() {
            notes.push(format!("{name}: RSS: {}", hw.report()));
            match wirespeed_core::rss::RssControl::set_reta(hw, steering.reta()) {
                Ok(()) => notes.push(format!("{name}: RETA: data queues only, in hardware")),
                Err(e) => {
                    notes.push(format!("{name}: RETA not programmed ({e}): the NIC spreads over every queue"))
                }
            }
            match hw.apply_steering_report(&cfg.steering) {
                Ok(r) => notes.push(format!("{name}: steering plan: {r}")),
                Err(e) => notes.push(format!("{name}: steering plan left to software ({e})")),
            }
        } else {
            notes.push(format!("{name}: no hardware RSS: every packet arrives on queue 0 (shard 0)"));
        }
        Ok(port)
    };
    let lan = open(Side::Lan)?;
    let wan = open(Side::Wan)?;
    let alloc = MbufAlloc(lan.mempool());
    Ok((GatewayPorts { lan, wan }, alloc, notes))
}

/// The `/metrics` source of the ports' host exception paths (`None` when neither port has one):
/// `wirespeed_host_path_packets_total` and `_bytes_total` by side, kernel interface and
/// direction (`to_host`, `from_host`), `wirespeed_host_path_drops_total` by reason
/// (`to_host_full`, `from_host_full`, `copy_no_mbuf`), and `wirespeed_host_path_copies_total`.
/// Take it before the ports go to [`crate::gateway::build_with`]; it reads counters the
/// shards' queues keep.
#[cfg(feature = "dpdk")]
pub fn host_path_metrics(
    ports: &GatewayPorts<wirespeed_dpdk::DpdkPort>,
) -> Option<crate::gateway::MetricsSource> {
    let sides: Vec<(&'static str, String, wirespeed_dpdk::HostCountersHandle)> =
        [(Side::Lan, &ports.lan), (Side::Wan, &ports.wan)]
            .into_iter()
            .filter_map(|(side, p)| {
                Some((side.name(), p.host_iface()?.to_string(), p.host_counters_handle()?))
            })
            .collect();
    if sides.is_empty() {
        return None;
    }
    Some(Box::new(move |gateway: &str, out: &mut String| {
        use std::fmt::Write as _;
        let read: Vec<_> = sides.iter().map(|(s, i, h)| (*s, i.as_str(), h.read())).collect();
        type Get = fn(&wirespeed_dpdk::HostCounters) -> u64;
        let to: [(&str, Get); 2] = [("to_host", |c| c.to_host), ("from_host", |c| c.from_host)];
        let bytes: [(&str, Get); 2] =
            [("to_host", |c| c.to_host_bytes), ("from_host", |c| c.from_host_bytes)];
        for (name, what, values) in [
            ("wirespeed_host_path_packets_total", "Packets", to),
            ("wirespeed_host_path_bytes_total", "Bytes", bytes),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {what} through the DPDK host exception path, by direction.\n# TYPE {name} counter"
            );
            for (side, iface, c) in &read {
                for (v, get) in values {
                    let _ = writeln!(
                        out,
                        "{name}{{gateway=\"{gateway}\",interface=\"{side}\",iface=\"{iface}\",direction=\"{v}\"}} {}",
                        get(c)
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP wirespeed_host_path_copies_total Packets copied to the kernel that also stayed in the data plane.\n\
             # TYPE wirespeed_host_path_copies_total counter"
        );
        for (side, iface, c) in &read {
            let _ = writeln!(
                out,
                "wirespeed_host_path_copies_total{{gateway=\"{gateway}\",interface=\"{side}\",iface=\"{iface}\"}} {}",
                c.copies
            );
        }
        let _ = writeln!(
            out,
            "# HELP wirespeed_host_path_drops_total Packets the host exception path dropped, by reason.\n\
             # TYPE wirespeed_host_path_drops_total counter"
        );
        for (side, iface, c) in &read {
            for (reason, n) in [
                ("to_host_full", c.to_host_full),
                ("from_host_full", c.from_host_full),
                ("copy_no_mbuf", c.copy_no_mbuf),
            ] {
                let _ = writeln!(
                    out,
                    "wirespeed_host_path_drops_total{{gateway=\"{gateway}\",interface=\"{side}\",iface=\"{iface}\",reason=\"{reason}\"}} {n}"
                );
            }
        }
    }))
}
