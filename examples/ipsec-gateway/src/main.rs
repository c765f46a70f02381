//! `ipsec-gateway`: the example wirespeed appliance.
//!
//! `ipsec-gateway demo [--out DIR] [--shards N]` runs the whole appliance offline: it generates a
//! synthetic traffic capture (IPv4 and IPv6, TCP and UDP flows), replays it through an N-shard
//! pipeline on the pcap backend, writes one output capture per shard and prints per-shard
//! counters. No NIC, no root.
#![forbid(unsafe_code)]

mod demo;
mod outpath;
mod traffic;
mod tunnel;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: ipsec-gateway demo [--out DIR] [--shards N]

  demo     generate synthetic traffic, run it through the gateway pipeline on the pcap
           backend (offline, no NIC, no root), write the output captures, print counters
  --out    directory for the input and output captures (default: a new temp directory)
  --shards number of shards (threads), default 2";

/// Errors the binary reports before exiting non-zero.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Bad command line.
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    /// File system trouble with a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Capture file trouble.
    #[error(transparent)]
    Pcap(#[from] wirespeed_pcap::PcapError),
    /// Buffer pool configuration.
    #[error(transparent)]
    Pool(#[from] wirespeed_core::PoolError),
    /// Shard runtime.
    #[error(transparent)]
    Runtime(#[from] wirespeed_core::RuntimeError),
    /// A port refused its queues.
    #[error(transparent)]
    Port(#[from] wirespeed_core::PortError),
    /// The run finished but its results are inconsistent.
    #[error("check failed: {0}")]
    Check(String),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipsec-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), GatewayError> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(GatewayError::Usage("no command given".into()));
    };
    match cmd.as_str() {
        "demo" => {
            let mut opts = demo::DemoOptions::default();
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                let mut value = |name: &str| {
                    it.next().cloned().ok_or_else(|| GatewayError::Usage(format!("{name} needs a value")))
                };
                match a.as_str() {
                    "--out" => opts.out = Some(PathBuf::from(value("--out")?)),
                    "--shards" => {
                        let v = value("--shards")?;
                        opts.shards = v
                            .parse()
                            .ok()
                            .filter(|n| (1..=64).contains(n))
                            .ok_or_else(|| GatewayError::Usage(format!("--shards {v}: want 1..=64")))?;
                    }
                    other => return Err(GatewayError::Usage(format!("unknown option {other}"))),
                }
            }
            demo::run(&opts)
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(GatewayError::Usage(format!("unknown command {other}"))),
    }
}
