//! The offline demo: synthetic capture → N-shard pipeline on the pcap backend → output captures.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use wirespeed_core::{BufferPool, Pipeline, PoolConfig, Port, Runtime, RuntimeConfig, ShardCounters};
use wirespeed_pcap::{CaptureReader, PcapOutput, PcapPort, PcapWriter, TxTimestamp, flow_hash, queue_file};

use crate::GatewayError;
use crate::traffic;

/// Demo settings.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Output directory (temp dir when `None`).
    pub out: Option<PathBuf>,
    /// Shards.
    pub shards: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self { out: None, shards: 2 }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GatewayError + '_ {
    move |source| GatewayError::Io { path: path.to_path_buf(), source }
}

/// Runs the demo.
pub fn run(opts: &DemoOptions) -> Result<(), GatewayError> {
    let dir = match &opts.out {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("wirespeed-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;

    // 1. Synthetic traffic.
    let flows = traffic::demo_flows();
    let frames = traffic::frames(&flows);
    let input = dir.join("input.pcap");
    let mut w = PcapWriter::create(&input)?;
    for (ts, f) in &frames {
        w.write_frame(f, *ts)?;
    }
    w.flush()?;
    drop(w);
    let v6 = flows.iter().filter(|f| f.src.is_ipv6()).count();
    println!(
        "generated {} frames in {} flows ({} IPv4, {} IPv6; TCP and UDP) -> {}",
        frames.len(),
        flows.len(),
        flows.len() - v6,
        v6,
        input.display()
    );

    // 2. The pcap port: the one input spread over the shards' queues by a symmetric flow hash,
    //    one output capture per queue.
    let pool = BufferPool::new(PoolConfig { buffers: 1024 * opts.shards.max(1), ..PoolConfig::default() })?;
    let output = dir.join("output.pcap");
    let port = PcapPort::builder(pool)
        .name("demo")
        .spread_input(&input, flow_hash)
        .queues(opts.shards as u16)
        .output(PcapOutput::PerQueue(output.clone()))
        .tx_timestamp(TxTimestamp::Constant(1_764_000_000_000_000_000))
        .build()?;
    let port = Mutex::new(port);

    // 3. One shard per queue, each building and owning its pipeline on its own thread.
    let cfg = RuntimeConfig {
        shards: opts.shards,
        loop_options: wirespeed_core::LoopOptions { exit_when_finished: true, ..Default::default() },
        name: "gateway".into(),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::launch(cfg, move |shard| {
        let (rx, tx) = port
            .lock()
            .map_err(|_| "port lock poisoned".to_string())?
            .queue_pair(shard as u16)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(Pipeline::new(rx, tx, ()))
    })?;
    for s in 0..rt.shards() {
        if let Some(p) = rt.placement(s) {
            println!(
                "shard {s}: core {}, NUMA node {}",
                p.core.map_or("unpinned".into(), |c| c.to_string()),
                p.numa_node.map_or("unknown".into(), |n| n.to_string())
            );
        }
    }
    let stats = rt.wait_finished()?;

    // 4. Report and check.
    let mut total = ShardCounters::default();
    for s in &stats {
        println!("shard {}: {}", s.shard, s.counters);
        total.accumulate(&s.counters);
    }
    println!("total:   {total}");
    let mut written = 0u64;
    for q in 0..opts.shards as u16 {
        let path = queue_file(&output, q);
        let mut r = CaptureReader::open(&path)?;
        let mut n = 0u64;
        while let Some(f) = r.next_frame() {
            f?;
            n += 1;
        }
        println!("output queue {q}: {n} frames -> {}", path.display());
        written += n;
    }
    if total.rx_packets != frames.len() as u64 {
        return Err(GatewayError::Check(format!("received {} of {} frames", total.rx_packets, frames.len())));
    }
    if written != total.tx_packets || total.rx_packets != total.tx_packets + total.total_drops() {
        return Err(GatewayError::Check(format!(
            "counters disagree: rx {}, tx {}, drops {}, written {written}",
            total.rx_packets,
            total.tx_packets,
            total.total_drops()
        )));
    }
    println!(
        "ok: every frame accounted for ({} forwarded, {} dropped)",
        total.tx_packets,
        total.total_drops()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_runs_end_to_end_and_accounts_for_every_frame() {
        let dir = std::env::temp_dir().join(format!("wirespeed-demo-test-{}", std::process::id()));
        run(&DemoOptions { out: Some(dir.clone()), shards: 2 }).expect("demo succeeds");
        // Both shards wrote their capture; together they hold every generated frame.
        let mut n = 0;
        for q in 0..2 {
            let mut r = CaptureReader::open(queue_file(&dir.join("output.pcap"), q)).unwrap();
            while let Some(f) = r.next_frame() {
                f.unwrap();
                n += 1;
            }
        }
        assert_eq!(n, traffic::frames(&traffic::demo_flows()).len());
        let _ = std::fs::remove_dir_all(dir);
    }
}
