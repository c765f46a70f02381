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
use crate::stagestats::StageCounters;

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
    /// `[keying] source = "xfrm"` cannot start (no CAP_NET_ADMIN, no NETLINK_XFRM).
    #[error(transparent)]
    Keying(#[from] crate::keying::KeyingError),
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
    /// Wall time from start to the last shard's exit (start-up and shutdown included).
    pub elapsed: Duration,
    /// The packet-processing window of an offline run: from the first data shard's first busy
    /// poll to the end of the last one's input. `None` after a signal or when no packet came.
    pub processing: Option<Duration>,
    /// True when stopped by a signal rather than by the end of input.
    pub interrupted: bool,
    /// Final stage counters per shard, in [`RunReport::stats`] order (ICMP errors,
    /// fragmentation, MSS clamping, next-hop holding, solicitations).
    pub stages: Vec<StageCounters>,
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

    /// Received packets per second over [`RunReport::processing`] (`None` without a window).
    pub fn processing_pps(&self) -> Option<f64> {
        let secs = self.processing?.as_secs_f64();
        (secs > 0.0).then(|| self.total().rx_packets as f64 / secs)
    }
}

/// `data` for data shards, `control` for the control shard (the last, number `cfg.shards`).
pub fn shard_role(cfg: &GatewayConfig, shard: usize) -> &'static str {
    if shard < cfg.shards { "data" } else { "control" }
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
            let host = ports::host_path_metrics(&p);
            let mut gw = gateway::build_with(cfg, p, move |tx| (tx, alloc), RunMode::UntilStopped)?;
            if let Some(m) = host {
                gw.add_metrics_source(m);
            }
            gw
        }
        #[cfg(not(feature = "dpdk"))]
        PortConfig::Dpdk(_) => {
            return Err(RunError::Backend("dpdk", "needs ipsec-gateway built with `--features dpdk`"));
        }
    };
    let _metrics = match cfg.management.host_listen {
        Some(addr) => {
            let server = crate::metrics::MetricsServer::start(addr, gw.metrics_handle())
                .map_err(|e| RunError::Listen(addr, e.to_string()))?;
            if !opts.quiet {
                eprintln!("{}: GET /metrics on http://{}/metrics", cfg.name, server.addr());
            }
            Some(server)
        }
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
    #[cfg(target_os = "linux")]
    let mut xfrm = match &cfg.keying {
        crate::keying::Keying::Xfrm(k) => {
            let (source, log) = crate::keying::XfrmSource::start(cfg, k, &mut gw)?;
            log.iter().for_each(|l| eprintln!("{}: {l}", cfg.name));
            Some(source)
        }
        crate::keying::Keying::Static => None,
    };
    #[cfg(not(target_os = "linux"))]
    if matches!(cfg.keying, crate::keying::Keying::Xfrm(_)) {
        return Err(crate::keying::KeyingError::Unsupported.into());
    }
    let cells = gw.stage_cells();
    let mut last = (Instant::now(), gw.stats());
    let mut interrupted = false;
    let tick = Duration::from_millis(20);
    loop {
        // With an XFRM source, wake as soon as the kernel reports (a rekeyed SA must be in the
        // data plane before the peer, told by the IKE daemon's DELETE, sends under it).
        #[cfg(target_os = "linux")]
        match &xfrm {
            Some(x) => x.wait(tick),
            None => std::thread::sleep(tick),
        }
        #[cfg(not(target_os = "linux"))]
        std::thread::sleep(tick);
        for ev in gw.take_events() {
            eprintln!(
                "{}: SA event: SPI {:#x} (uid {}) on shard {}: {:?}",
                cfg.name, ev.spi, ev.uid, ev.shard, ev.kind
            );
            #[cfg(target_os = "linux")]
            if let Some(l) = xfrm.as_mut().and_then(|x| x.on_event(&ev)) {
                eprintln!("{}: {l}", cfg.name);
            }
        }
        #[cfg(target_os = "linux")]
        if let Some(x) = xfrm.as_mut() {
            x.poll(&mut gw, Instant::now()).iter().for_each(|l| eprintln!("{}: {l}", cfg.name));
            control.mirrored = x.mirrored_uids().collect();
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
        #[cfg(target_os = "linux")]
        if let Some(x) = &xfrm
            && let Ok(mut m) = gw.metrics_handle().lock()
        {
            m.push_str(&x.metrics(&cfg.name, &gw));
        }
        if let Some(p) = &opts.progress {
            p(gw.stats().iter().map(|s| s.counters.rx_packets).sum());
        }
        if let Some(every) = cfg.stats_interval
            && last.0.elapsed() >= every
            && !opts.quiet
        {
            let now = gw.stats();
            print_interval(cfg, &last.1, &now, &gw.stage_stats(), last.0.elapsed(), opts.json);
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
    let (stats, processing) = if interrupted { (gw.stop()?, None) } else { gw.wait_finished_timed()? };
    let stages = cells.iter().map(|c| c.read()).collect();
    let report = RunReport { stats, elapsed: start.elapsed(), processing, interrupted, stages };
    if !opts.quiet {
        print_final(cfg, &report, opts.json);
    }
    Ok(report)
}

/// One stats line per shard, labelled: the `rate` over the interval (packets received per
/// second, Gbit/s transmitted) and the drops counted in it (`+N`), then the shard's cumulative
/// `total` counters and its `stages` counters (`stages[i]` is shard `i`'s: ICMP errors,
/// fragmentation, MSS clamping, next-hop holding, solicitations; the non-zero ones in text).
/// JSON: `pps`, `gbps`, `interval_s`, `interval_drops`, `total` and `stages` (every key).
pub fn print_interval(
    cfg: &GatewayConfig,
    before: &[ShardStats],
    now: &[ShardStats],
    stages: &[StageCounters],
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
        let role = shard_role(cfg, n.shard);
        let stage = stages.get(n.shard).copied().unwrap_or_default();
        let _ = if json {
            let d: serde_json::Map<String, serde_json::Value> =
                drops.iter().map(|(r, c)| (r.clone(), (*c).into())).collect();
            writeln!(
                out,
                "{}",
                serde_json::json!({"gateway": cfg.name, "shard": n.shard, "role": role,
                    "interval_s": secs, "pps": pps, "gbps": gbps, "interval_drops": d,
                    "total": counters_json(&n.counters), "stages": stage.json()})
            )
        } else {
            let d: String = drops.iter().map(|(r, c)| format!(" [{r}=+{c}]")).collect();
            let dropped: u64 = drops.iter().map(|(_, c)| c).sum();
            writeln!(
                out,
                "{} shard {} ({role}): rate {:.0} pps rx, {:.3} Gbps tx over {:.2} s, dropped +{dropped}{d} | total: {} | stages: {stage}",
                cfg.name, n.shard, pps, gbps, secs, n.counters
            )
        };
    }
}

/// A shard's counters as a JSON object: packets, bytes, punted, handed off, drops by reason.
fn counters_json(c: &ShardCounters) -> serde_json::Value {
    let d: serde_json::Map<String, serde_json::Value> =
        c.nonzero_drops().map(|(r, n)| (r.name().to_string(), n.into())).collect();
    serde_json::json!({"rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes, "tx_packets": c.tx_packets,
        "tx_bytes": c.tx_bytes, "punted": c.punted, "handed_off": c.handed_off,
        "dropped": c.total_drops(), "drops": d})
}

/// Final counters: one line per shard (`final`, with its role), then the total over every
/// shard with the run's wall time and, for offline input, the packet-processing window and
/// the receive rate over it, then the stage counters summed over the shards. JSON: per-shard
/// objects with `"final": true`, then one with `"total": true` (with `stages`: every key).
pub fn print_final(cfg: &GatewayConfig, r: &RunReport, json: bool) {
    let mut out = std::io::stdout().lock();
    for s in &r.stats {
        let role = shard_role(cfg, s.shard);
        let _ = if json {
            let mut v = counters_json(&s.counters);
            if let Some(o) = v.as_object_mut() {
                o.insert("gateway".into(), cfg.name.clone().into());
                o.insert("final".into(), true.into());
                o.insert("shard".into(), s.shard.into());
                o.insert("role".into(), role.into());
                o.insert("stages".into(), r.stages.get(s.shard).copied().unwrap_or_default().json());
            }
            writeln!(out, "{v}")
        } else {
            writeln!(out, "{} shard {} ({role}) final: {}", cfg.name, s.shard, s.counters)
        };
    }
    let total = r.total();
    let wall = r.elapsed.as_secs_f64();
    let _ = if json {
        let mut v = counters_json(&total);
        if let Some(o) = v.as_object_mut() {
            o.insert("gateway".into(), cfg.name.clone().into());
            o.insert("total".into(), true.into());
            o.insert("shards".into(), r.stats.len().into());
            o.insert("wall_s".into(), wall.into());
            o.insert("processing_s".into(), r.processing.map(|p| p.as_secs_f64()).into());
            o.insert("processing_pps".into(), r.processing_pps().into());
            o.insert("interrupted".into(), r.interrupted.into());
            o.insert("stages".into(), StageCounters::sum(&r.stages).json());
        }
        writeln!(out, "{v}")
    } else {
        let processing = match (r.processing, r.processing_pps()) {
            (Some(p), Some(pps)) => {
                format!(", processing {:.3} s at {:.3} Mpps rx", p.as_secs_f64(), pps / 1e6)
            }
            _ => String::new(),
        };
        writeln!(out, "{} total: {total} in {wall:.3} s wall{processing}", cfg.name)
            .and_then(|()| writeln!(out, "{} stages: {}", cfg.name, StageCounters::sum(&r.stages)))
    };
}

/// `err` and its sources joined by `: `, each source left out when the text so far already
/// shows it (most errors here embed their source in their own message): what a command line
/// prints, instead of the `Debug` form.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Any error, for `fn main() -> Result<(), Report>`: when `main` returns it, Rust prints
/// `Error: ` and its `Debug` form, which here is [`error_chain`] (the message and its sources),
/// not the error's structure.
pub struct Report(Box<dyn std::error::Error>);

impl<E: Into<Box<dyn std::error::Error>>> From<E> for Report {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&error_chain(&*self.0))
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&error_chain(&*self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open x: {0}")]
    struct Embeds(#[source] std::io::Error);

    fn not_found() -> std::io::Error {
        std::io::Error::from_raw_os_error(2)
    }

    #[test]
    fn chain_appends_sources_the_message_does_not_show() {
        assert_eq!(error_chain(&Outer(not_found())), "outer: No such file or directory (os error 2)");
        assert_eq!(
            error_chain(&Embeds(not_found())),
            "cannot open x: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn report_debug_is_the_chain_not_the_structure() {
        let r: Report = Outer(not_found()).into();
        assert_eq!(format!("{r:?}"), "outer: No such file or directory (os error 2)");
        let r: Report = crate::config::GatewayConfig::load(std::path::Path::new("/nonexistent.toml"))
            .map(|_| ())
            .unwrap_err()
            .into();
        assert_eq!(format!("{r:?}"), "/nonexistent.toml: No such file or directory (os error 2)");
    }
}
