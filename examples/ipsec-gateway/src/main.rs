//! `ipsec-gateway`: the example wirespeed appliance. See `USAGE` for the commands and exit codes.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ipsec_gateway::app::{self, RunOptions, error_chain as chain};
use ipsec_gateway::config::{ConfigError, GatewayConfig};
use ipsec_gateway::demo::{self, DemoOptions};

const USAGE: &str = "usage:
  ipsec-gateway run --config FILE [--json]
  ipsec-gateway check --config FILE
  ipsec-gateway ctl SOCKET [REQUEST]
  ipsec-gateway demo [--out DIR] [--shards N] [--packets N]

  run      run the gateway of FILE (TOML, see examples/ipsec-gateway/configs/) until its
           input ends (pcap) or SIGINT/SIGTERM, which drains the shards; backends pcap,
           afxdp (root) and, built with --features dpdk, dpdk. Every [gateway] stats_interval
           seconds a line per shard: the interval's rate and drops (+N), then its cumulative
           total; at the end always a final line per shard (data/control) and a total line
           with the wall time and, for pcap input, the packet-processing time and rate
           (--json: one JSON object per line; \"final\": true per shard, \"total\": true last).
           GET /metrics (Prometheus text): in-band on the management address (afxdp, dpdk;
           on pcap it exists only inside the captures) and, with [management] host_listen,
           on the host's own network stack (any backend)
  check    validate FILE and that its pcap input captures exist, and exit
  ctl      send REQUEST (or each line of stdin) to a running gateway's control socket
           ([gateway] control_socket), print the replies; one request a line:
             sa add { spi = 0x4100, direction = \"inbound\", aead = \"aes128gcm\", key = \"HEX\",
                      local = \"ADDR\", remote = \"ADDR\", policy = \"NAME\" }
             sa remove SPI inbound|outbound
             sa rekey OLD_SPI { new SA, same keys as sa add } [grace=SECONDS]
             route add PREFIX [via ADDR]      route remove PREFIX
             neighbor add ADDR MAC lan|wan    neighbor remove ADDR
             show sas            (SAs from [keying] source = \"xfrm\" marked [xfrm],
                                  then :PACKETSp/BYTESB as last reported to the kernel)
           rekey is make-before-break: rekey the receiver's inbound SA first (the old one
           lingers for the grace period, default 5 s), then the sender's outbound SA
  demo     two gateways offline: generated traffic -> gateway A (encrypt) -> ESP capture ->
           gateway B (decrypt), every inner packet checked; prints the throughput over the
           packet-processing time (file I/O included, start-up not) and the wall time
    --out DIR      keep the three captures (lan-in.pcap, esp.pcap, lan-out.pcap) and both
                   configurations (keys included) in DIR; configs/pcap.toml reads
                   DIR=configs/captures and writes its own *-run.pcap files next to them
    --shards N     data shards per gateway (default 2)
    --packets N    scale the traffic to about N packets (progress bar on stderr from 100000)

exit codes: 0 success (also after a signal-initiated drain), 1 runtime failure (ports, files,
shards; for ctl, any request refused), 2 bad command line or configuration (a missing input
capture included), 3 demo check failed";

/// Exit code of a bad command line or configuration.
const EXIT_CONFIG: u8 = 2;
/// Exit code of a demo whose output is wrong.
const EXIT_CHECK: u8 = 3;

/// Why a command failed: the message (Display of the error and its source chain) and, for
/// some, a hint line.
enum Failure {
    Usage(String),
    Config(String, Option<String>),
    Runtime(String),
    Check(String),
}

/// A configuration error, with the hint for a missing input capture: the demo makes them.
fn config_failure(e: &ConfigError) -> Failure {
    let hint = match e {
        ConfigError::Input { path, .. } => {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            Some(if name.ends_with(".pcap") && demo::FILES.contains(&name) {
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                format!("`ipsec-gateway demo --out {}` creates {name} there", dir.display())
            } else {
                "`ipsec-gateway demo --out DIR` creates sample captures in DIR (lan-in.pcap: cleartext \
                 site-1 traffic, the input of configs/pcap.toml)"
                    .to_string()
            })
        }
        _ => None,
    };
    Failure::Config(chain(e), hint)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}\n\n{USAGE}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Config(m, hint)) => {
            eprintln!("error: configuration: {m}");
            if let Some(h) = hint {
                eprintln!("hint: {h}");
            }
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Runtime(m)) => {
            eprintln!("error: {m}");
            ExitCode::FAILURE
        }
        Err(Failure::Check(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(EXIT_CHECK)
        }
    }
}

fn dispatch(args: &[String]) -> Result<(), Failure> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(Failure::Usage("no command given".into()));
    };
    if cmd == "ctl" {
        let Some((socket, request)) = rest.split_first() else {
            return Err(Failure::Usage("ctl needs SOCKET".into()));
        };
        let lines: Vec<String> = if request.is_empty() {
            std::io::stdin().lines().map_while(Result::ok).filter(|l| !l.trim().is_empty()).collect()
        } else {
            vec![request.join(" ")]
        };
        let replies = ipsec_gateway::ctl::request(std::path::Path::new(socket), &lines)
            .map_err(|e| Failure::Runtime(format!("{socket}: {}", chain(&e))))?;
        let mut failed = 0;
        for r in &replies {
            println!("{r}");
            failed += usize::from(!r.starts_with("ok"));
        }
        return if failed == 0 {
            Ok(())
        } else {
            Err(Failure::Runtime(format!("{failed} request(s) refused")))
        };
    }
    let mut it = rest.iter();
    let mut config = None;
    let mut json = false;
    let mut demo = DemoOptions::default();
    while let Some(a) = it.next() {
        let mut value =
            |name: &str| it.next().cloned().ok_or_else(|| Failure::Usage(format!("{name} needs a value")));
        match (cmd.as_str(), a.as_str()) {
            ("run" | "check", "--config") => config = Some(PathBuf::from(value("--config")?)),
            ("run", "--json") => json = true,
            ("demo", "--out") => demo.out = Some(PathBuf::from(value("--out")?)),
            ("demo", "--shards") => {
                let v = value("--shards")?;
                demo.shards = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| Failure::Usage(format!("--shards {v}: want 1..=64")))?;
            }
            ("demo", "--packets") => {
                let v = value("--packets")?;
                demo.packets = Some(
                    v.parse()
                        .ok()
                        .filter(|n| (16..=100_000_000).contains(n))
                        .ok_or_else(|| Failure::Usage(format!("--packets {v}: want 16..=100000000")))?,
                );
            }
            (_, other) => return Err(Failure::Usage(format!("{cmd}: unknown option {other}"))),
        }
    }
    match cmd.as_str() {
        "run" | "check" => {
            let path = config.ok_or_else(|| Failure::Usage(format!("{cmd} needs --config FILE")))?;
            let cfg = GatewayConfig::load(&path).map_err(|e| config_failure(&e))?;
            cfg.check_inputs().map_err(|e| config_failure(&e))?;
            if cmd == "check" {
                println!(
                    "{}: ok ({} shards, {} SAs, {} policies)",
                    path.display(),
                    cfg.shards,
                    cfg.sas.len(),
                    cfg.policies.len()
                );
                return Ok(());
            }
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, stop.clone())
                    .map_err(|e| Failure::Runtime(format!("signal handler: {}", chain(&e))))?;
            }
            let r = app::run(&cfg, &RunOptions { json, stop: Some(stop), ..RunOptions::default() }).map_err(
                |e| match e {
                    app::RunError::Backend(..) => Failure::Config(chain(&e), None),
                    e => Failure::Runtime(chain(&e)),
                },
            )?;
            if r.interrupted {
                eprintln!("ipsec-gateway: stopped by signal; shards drained");
            }
            Ok(())
        }
        "demo" => demo::run(&demo).map_err(|e| match e {
            demo::DemoError::Check(m) => Failure::Check(m),
            e => Failure::Runtime(chain(&e)),
        }),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(Failure::Usage(format!("unknown command {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found() -> std::io::Error {
        std::io::Error::from_raw_os_error(2)
    }

    #[test]
    fn missing_demo_input_hint_names_the_directory() {
        let e = ConfigError::Input {
            key: "interfaces.wan.port.input".into(),
            path: PathBuf::from("some/dir/esp.pcap"),
            source: not_found(),
        };
        let Failure::Config(msg, Some(hint)) = config_failure(&e) else { panic!("a hint") };
        assert_eq!(
            msg,
            "interfaces.wan.port.input: cannot open some/dir/esp.pcap: No such file or directory (os error 2)"
        );
        assert_eq!(hint, "`ipsec-gateway demo --out some/dir` creates esp.pcap there");
        let e = ConfigError::Input { key: "k".into(), path: PathBuf::from("mine.pcap"), source: not_found() };
        let Failure::Config(_, Some(hint)) = config_failure(&e) else { panic!("a hint") };
        assert!(hint.starts_with("`ipsec-gateway demo --out DIR` creates sample captures"), "{hint}");
    }
}
