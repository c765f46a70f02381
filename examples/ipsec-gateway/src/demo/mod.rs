//! `ipsec-gateway demo`: two gateways, offline. Generated cleartext traffic goes through
//! gateway A (encrypt) into an ESP capture, which gateway B (decrypt) turns back into
//! cleartext; then every inner packet is checked, flow by flow. Both gateways are built from
//! generated configuration files through [`crate::app::run`], the code path of `run`.

pub mod check;
pub mod configs;
pub mod traffic;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wirespeed_core::DropReason;

use crate::app::{self, RunOptions, RunReport};
use crate::config::{ConfigError, GatewayConfig};
use configs::Site;

/// Demo settings.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Directory that keeps the captures and configurations (a temporary one, removed at the
    /// end, when `None`).
    pub out: Option<PathBuf>,
    /// Data shards of each gateway.
    pub shards: usize,
    /// Scale the traffic to about this many packets.
    pub packets: Option<usize>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self { out: None, shards: 2, packets: None }
    }
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// File trouble.
    #[error("{path}: {why}")]
    File {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A generated configuration was refused (a bug in the demo).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A gateway run failed.
    #[error(transparent)]
    Run(#[from] app::RunError),
    /// The traffic capture.
    #[error(transparent)]
    Pcap(#[from] wirespeed_pcap::PcapError),
    /// The run finished but the output is wrong.
    #[error("check failed: {0}")]
    Check(String),
}

/// File names inside the output directory.
pub const FILES: [&str; 5] = ["lan-in.pcap", "esp.pcap", "lan-out.pcap", "gateway-a.toml", "gateway-b.toml"];

/// Checks that `dir` can hold the demo's files (a directory, or absent; each demo file a
/// regular file, or absent: never a FIFO or a device such as `/dev/null`), then creates it.
pub fn prepare_out_dir(dir: &Path) -> Result<(), DemoError> {
    let files: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    crate::outpath::check_output_paths(dir, &files)?;
    std::fs::create_dir_all(dir).map_err(|e| DemoError::File { path: dir.to_path_buf(), why: e.to_string() })
}

/// Runs the demo and prints its report.
pub fn run(opts: &DemoOptions) -> Result<(), DemoError> {
    let (dir, temporary) = match &opts.out {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("wirespeed-demo-{}", std::process::id())), true),
    };
    prepare_out_dir(&dir)?;
    let result = run_in(&dir, opts);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    std::fs::write(path, text).map_err(|e| DemoError::File { path: path.to_path_buf(), why: e.to_string() })
}

fn run_in(dir: &Path, opts: &DemoOptions) -> Result<(), DemoError> {
    let [lan_in, esp, lan_out, cfg_a, cfg_b] = FILES;
    // 1. Traffic.
    let flows = traffic::demo_flows(opts.packets);
    let sent = traffic::write_capture(&flows, &dir.join(lan_in))?;
    let v6 = flows.iter().filter(|f| f.src.is_ipv6()).count();
    println!(
        "generated {sent} packets in {} flows ({} IPv4, {v6} IPv6; TCP and UDP; one with no route, one whose TTL runs out)",
        flows.len(),
        flows.len() - v6
    );

    // 2. The two gateways' configurations, written as files and loaded like `run` loads them.
    write(
        &dir.join(cfg_a),
        &configs::config(Site::A, opts.shards, Some([Some(lan_in), None, None, Some(esp)])),
    )?;
    write(
        &dir.join(cfg_b),
        &configs::config(Site::B, opts.shards, Some([None, Some(lan_out), Some(esp), None])),
    )?;
    // 3. Run A, then B on A's output (B's configuration is loaded, like `run` loads it, once
    // its input exists).
    let progress = progress_bar(opts.packets.is_some_and(|n| n >= 100_000));
    let a = GatewayConfig::load(&dir.join(cfg_a))?;
    a.check_inputs()?;
    let ra = run_gateway(&a, &progress, sent)?;
    let b = GatewayConfig::load(&dir.join(cfg_b))?;
    b.check_inputs()?;
    let rb = run_gateway(&b, &progress, ra.total().tx_packets)?;
    if let Some(p) = &progress {
        p.finish_and_clear();
    }
    for (cfg, r) in [(&a, &ra), (&b, &rb)] {
        for s in &r.stats {
            println!("{} shard {} ({}): {}", cfg.name, s.shard, app::shard_role(cfg, s.shard), s.counters);
        }
    }

    // 4. Checks: the ESP capture, the drops at A, and every inner packet at B's LAN side.
    let per_spi = check::esp_capture(&dir.join(esp)).map_err(DemoError::Check)?;
    let esp_frames: u64 = per_spi.values().sum();
    for (spi, n) in &per_spi {
        println!("  SPI {spi:#06x}: {n} ESP packets A -> B");
    }
    let ta = ra.total();
    let count = |p: &dyn Fn(&traffic::Flow) -> bool| -> u64 {
        flows.iter().filter(|f| p(f)).map(|f| f.packets as u64).sum()
    };
    let want_drops = [
        (DropReason::NoRoute, count(&|f| !check::tunnelled(f) && f.ttl > 1)),
        (DropReason::TtlExpired, count(&|f| f.ttl <= 1)),
    ];
    for (reason, n) in want_drops {
        if ta.drops_of(reason) != n {
            return Err(DemoError::Check(format!(
                "gateway A: expected {n} {} drops, counted {}",
                reason.name(),
                ta.drops_of(reason)
            )));
        }
    }
    if ta.total_drops() != want_drops.iter().map(|(_, n)| n).sum::<u64>() {
        return Err(DemoError::Check(format!("gateway A: unexpected drops: {ta}")));
    }
    let tunnelled = count(&check::tunnelled);
    if esp_frames != tunnelled {
        return Err(DemoError::Check(format!(
            "{esp_frames} ESP packets between the gateways, {tunnelled} expected"
        )));
    }
    let tb = rb.total();
    if tb.total_drops() != 0 {
        return Err(DemoError::Check(format!("gateway B dropped packets: {tb}")));
    }
    let verdict = check::lan_output(&flows, &dir.join(lan_out)).map_err(DemoError::Check)?;
    let mut bad = Vec::new();
    for (flow, r) in &verdict.flows {
        if r.matched != r.expected || r.mismatched != 0 {
            bad.push(format!(
                "  {flow}: {} of {} arrived intact, {} differ{}",
                r.matched,
                r.expected,
                r.mismatched,
                r.first_mismatch.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
            ));
        }
    }
    if verdict.strays > 0 {
        bad.push(format!("  {} packets at B's LAN side belong to no tunnelled flow", verdict.strays));
    }
    if !bad.is_empty() {
        return Err(DemoError::Check(format!(
            "B's LAN output differs from A's LAN input:\n{}",
            bad.join("\n")
        )));
    }
    println!(
        "ok: {} flows, {tunnelled} packets A -> ESP -> B byte-identical (TTL aside), in order per flow",
        verdict.flows.len()
    );
    // Throughput over the packet-processing window only (first busy poll of a data shard to
    // the end of the last one's input: reading and writing the captures included, start-up
    // and shutdown not); the wall time of each run, start-up included, for comparison.
    let rate = |r: &RunReport| match (r.processing, r.processing_pps()) {
        (Some(p), Some(pps)) => {
            format!(
                "{:.3} Mpps ({} packets in {:.1} ms)",
                pps / 1e6,
                r.total().rx_packets,
                p.as_secs_f64() * 1e3
            )
        }
        _ => "not measured (no packets)".to_string(),
    };
    println!(
        "throughput while processing (pcap files, {} data shards each): A {}, B {}",
        opts.shards,
        rate(&ra),
        rate(&rb)
    );
    println!(
        "wall time with start-up: A {:.3} s, B {:.3} s{}",
        ra.elapsed.as_secs_f64(),
        rb.elapsed.as_secs_f64(),
        if sent < 100_000 { "; few packets: --packets 1000000 for a steadier rate" } else { "" }
    );
    if opts.out.is_some() {
        println!(
            "kept in {}: {lan_in} (cleartext in), {esp} (ESP between), {lan_out} (cleartext out), {cfg_a}, {cfg_b} (keys included)",
            dir.display()
        );
    }
    Ok(())
}

/// One bar, reused for each gateway: its name, packets received of those it should receive,
/// and the rate as whole packets per second.
fn progress_bar(show: bool) -> Option<indicatif::ProgressBar> {
    if !show {
        return None;
    }
    let p = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::hidden());
    // The average since this gateway's bar was reset (indicatif's `{per_sec}` is a smoothed
    // estimate printed with four decimals).
    let rate = |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
        let secs = s.elapsed().as_secs_f64();
        let _ = write!(w, "{:.0} pkt/s", if secs > 0.0 { s.pos() as f64 / secs } else { 0.0 });
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} packets ({rate})")
    {
        p.set_style(style.with_key("rate", rate).progress_chars("=> "));
    }
    Some(p)
}

/// Runs one gateway of the demo, the bar (reset, labelled with its name) counting the `expect`
/// packets it should receive.
fn run_gateway(
    cfg: &GatewayConfig,
    bar: &Option<indicatif::ProgressBar>,
    expect: u64,
) -> Result<RunReport, DemoError> {
    let progress: Option<Arc<dyn Fn(u64) + Send + Sync>> = bar.clone().map(|p| {
        p.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        p.set_prefix(cfg.name.clone());
        p.set_length(expect);
        p.reset();
        p.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        p.enable_steady_tick(Duration::from_millis(200));
        Arc::new(move |n: u64| p.set_position(n)) as Arc<dyn Fn(u64) + Send + Sync>
    });
    Ok(app::run(cfg, &RunOptions { quiet: true, progress, ..RunOptions::default() })?)
}
