//! Running a gateway from its configuration: what `ipsec-gateway run` does, and what the demo
//! does for each of its two gateways (one code path).

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wirespeed_core::{BufferPool, PoolConfig, ShardCounters, ShardStats};

use crate::config::{GatewayConfig, PortConfig};
use crate::gateway::{self, RunMode, Steering};
use crate::ports;

/// Why a run failed (after the configuration was accepted).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Buffer pool.
    #[error(transparent)]
    Pool(#[from] wirespeed_core::PoolError),
    /// Ports.
    #[error(transparent)]
    Ports(#[from] ports::PortOpenError),
    /// Building or running the shards.
    #[error(transparent)]
    Build(#[from] gateway::BuildError),
    /// The host-side metrics listener.
    #[error("management.host_listen = {0}: {1}")]
    Listen(std::net::SocketAddr, String),
    /// The control socket.
    #[error("gateway.control_socket = {0}: {1}")]
    Listen2(String, String),
    /// The configuration names a backend `run` cannot open.
    #[error("interfaces.lan.port.backend = {0}: {1}")]
    Backend(&'static str, &'static str),
}

/// Options of a run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Stats lines as JSON (one object per shard and interval).
    pub json: bool,
    /// No stats lines or final counters on stdout (the demo prints its own summary).
    pub quiet: bool,
    /// Set from a signal handler: drain and stop.
    pub stop: Option<Arc<AtomicBool>>,
    /// Called every tick with the packets received so far (the demo's progress bar).
    pub progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("json", &self.json)
            .field("quiet", &self.quiet)
            .finish_non_exhaustive()
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Final counters per shard (control shard last).
    pub stats: Vec<ShardStats>,
    /// Wall time from start to the last shard's exit.
    pub elapsed: Duration,
    /// True when stopped by a signal rather than by the end of input.
    pub interrupted: bool,
}

impl RunReport {
    /// Sum of every shard's counters.
    pub fn total(&self) -> ShardCounters {
        let mut t = ShardCounters::default();
        for s in &self.stats {
            t.accumulate(&s.counters);
        }
        t
    }
}

/// Runs the gateway of `cfg` on its pcap ports until the input ends or `opts.stop` is set, or on
/// its AF_XDP or DPDK ports until `opts.stop` is set.
pub fn run(cfg: &GatewayConfig, opts: &RunOptions) -> Result<RunReport, RunError> {
    let start = Instant::now();
    let gw = match &cfg.lan.port {
        PortConfig::Mem(_) => {
            return Err(RunError::Backend(
                "mem",
                "for embedding (tests build mem ports themselves); `run` opens pcap, afxdp and dpdk",
            ));
        }
        PortConfig::Pcap(_) => {
            let pool = BufferPool::new(PoolConfig { buffers: cfg.buffers, ..PoolConfig::default() })?;
            let p = ports::open_pcap(cfg, &pool, Steering::new(cfg)?)?;
            gateway::build(cfg, p, pool, RunMode::UntilInputEnds)?
        }
        #[cfg(target_os = "linux")]
        PortConfig::Afxdp(_) => {
            let (p, notes) = ports::open_afxdp(cfg, &Steering::new(cfg)?)?;
            for n in notes {
                eprintln!("{}: {n}", cfg.name);
            }
            gateway::build_with(cfg, p, ports::XdpControlTx::split, RunMode::UntilStopped)?
        }
        #[cfg(not(target_os = "linux"))]
        PortConfig::Afxdp(_) => return Err(RunError::Backend("afxdp", "AF_XDP exists on Linux only")),
        #[cfg(feature = "dpdk")]
        PortConfig::Dpdk(_) => {
            let (p, alloc, notes) = ports::open_dpdk(cfg, &Steering::new(cfg)?)?;
            for n in notes {
                eprintln!("{}: {n}", cfg.name);
            }
            gateway::build_with(cfg, p, move |tx| (tx, alloc), RunMode::UntilStopped)?
        }
        #[cfg(not(feature = "dpdk"))]
        PortConfig::Dpdk(_) => {
            return Err(RunError::Backend("dpdk", "needs ipsec-gateway built with `--features dpdk`"));
        }
    };
    let _metrics = match cfg.management.host_listen {
        Some(addr) => Some(
            crate::metrics::MetricsServer::start(addr, gw.metrics_handle())
                .map_err(|e| RunError::Listen(addr, e.to_string()))?,
        ),
        None => None,
    };
    let mut gw = gw;
    let ctl = match &cfg.control_socket {
        Some(path) => Some(
            crate::ctl::CtlServer::start_with(
                path,
                crate::ctl::CtlOptions { group: cfg.control_group, ..crate::ctl::CtlOptions::default() },
            )
            .map_err(|e| RunError::Listen2(path.display().to_string(), e.to_string()))?,
        ),
        None => None,
    };
    let mut control = crate::ctl::Control::default();
    let mut last = (Instant::now(), gw.stats());
    let mut interrupted = false;
    let tick = Duration::from_millis(20);
    loop {
        std::thread::sleep(tick);
        for ev in gw.take_events() {
            eprintln!(
                "{}: SA event: SPI {:#x} (uid {}) on shard {}: {:?}",
                cfg.name, ev.spi, ev.uid, ev.shard, ev.kind
            );
        }
        if let Some((_, requests)) = &ctl {
            while let Ok((line, reply)) = requests.try_recv() {
                let answer = control.handle(&mut gw, cfg, &line);
                eprintln!("{}: ctl: {line} -> {answer}", cfg.name);
                let _ = reply.send(answer);
            }
        }
        for spi in control.tick(&mut gw, Instant::now()) {
            eprintln!("{}: ctl: rekeyed inbound SA {spi:#x} removed after its grace period", cfg.name);
        }
        gw.refresh_metrics();
        if let Some(p) = &opts.progress {
            p(gw.stats().iter().map(|s| s.counters.rx_packets).sum());
        }
        if let Some(every) = cfg.stats_interval
            && last.0.elapsed() >= every
            && !opts.quiet
        {
            let now = gw.stats();
            print_interval(cfg, &last.1, &now, last.0.elapsed(), opts.json);
            last = (Instant::now(), now);
        }
        if gw.finished() {
            break;
        }
        if opts.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
            interrupted = true;
            break;
        }
    }
    drop(ctl);
    let stats = if interrupted { gw.stop()? } else { gw.wait_finished()? };
    let report = RunReport { stats, elapsed: start.elapsed(), interrupted };
    if !opts.quiet {
        print_final(cfg, &report, opts.json);
    }
    Ok(report)
}

/// One stats line per shard: packets per second, Gbit/s and drops by reason over the interval.
pub fn print_interval(
    cfg: &GatewayConfig,
    before: &[ShardStats],
    now: &[ShardStats],
    dt: Duration,
    json: bool,
) {
    let secs = dt.as_secs_f64().max(1e-9);
    let mut out = std::io::stdout().lock();
    for (b, n) in before.iter().zip(now) {
        let pkts = n.counters.rx_packets.saturating_sub(b.counters.rx_packets);
        let bytes = n.counters.tx_bytes.saturating_sub(b.counters.tx_bytes);
        let pps = pkts as f64 / secs;
        let gbps = bytes as f64 * 8.0 / secs / 1e9;
        let drops: Vec<(String, u64)> = n
            .counters
            .nonzero_drops()
            .map(|(r, c)| (r.name().to_string(), c.saturating_sub(b.counters.drops_of(r))))
            .filter(|(_, c)| *c > 0)
            .collect();
        let _ = if json {
            let d: serde_json::Map<String, serde_json::Value> =
                drops.iter().map(|(r, c)| (r.clone(), (*c).into())).collect();
            writeln!(
                out,
                "{}",
                serde_json::json!({"gateway": cfg.name, "shard": n.shard, "pps": pps, "gbps": gbps, "drops": d})
            )
        } else {
            let d: Vec<String> = drops.iter().map(|(r, c)| format!("{r}={c}")).collect();
            writeln!(
                out,
                "{} shard {}: {:.0} pps {:.3} Gbps drops: {}",
                cfg.name,
                n.shard,
                pps,
                gbps,
                if d.is_empty() { "none".into() } else { d.join(" ") }
            )
        };
    }
}

/// Final counters, one line per shard and a total.
pub fn print_final(cfg: &GatewayConfig, r: &RunReport, json: bool) {
    let mut out = std::io::stdout().lock();
    for s in &r.stats {
        let _ = if json {
            let d: serde_json::Map<String, serde_json::Value> =
                s.counters.nonzero_drops().map(|(r, c)| (r.name().to_string(), c.into())).collect();
            let c = &s.counters;
            writeln!(
                out,
                "{}",
                serde_json::json!({"gateway": cfg.name, "final": true, "shard": s.shard,
                    "rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes, "tx_packets": c.tx_packets,
                    "tx_bytes": c.tx_bytes, "drops": d})
            )
        } else {
            writeln!(out, "{} shard {}: {}", cfg.name, s.shard, s.counters)
        };
    }
    if !json {
        let _ = writeln!(out, "{} total: {} in {:.3} s", cfg.name, r.total(), r.elapsed.as_secs_f64());
    }
}
