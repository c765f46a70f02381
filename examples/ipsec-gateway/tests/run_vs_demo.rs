//! `run --config configs/pcap.toml` and `demo --out configs/captures` share a directory: the
//! run reads the demo's lan-in.pcap, and neither may overwrite the other's outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipsec_gateway::config::{GatewayConfig, PortConfig};
use ipsec_gateway::demo::FILES;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ipsec-gateway"))
}

fn shipped_pcap_toml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/pcap.toml")
}

/// The pcap output captures of a configuration (absolute: resolved against its directory).
fn outputs(cfg: &GatewayConfig) -> Vec<PathBuf> {
    [&cfg.lan.port, &cfg.wan.port]
        .into_iter()
        .filter_map(|p| match p {
            PortConfig::Pcap(p) => p.output.clone(),
            _ => None,
        })
        .collect()
}

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn shipped_pcap_config_writes_no_demo_file_and_reads_the_demo_input() {
    let cfg = GatewayConfig::load(&shipped_pcap_toml()).unwrap();
    let captures = shipped_pcap_toml().parent().unwrap().join("captures");
    let outs = outputs(&cfg);
    assert_eq!(outs.len(), 2, "LAN and WAN outputs");
    for o in &outs {
        assert_eq!(o.parent(), Some(captures.as_path()), "{}", o.display());
        let name = o.file_name().unwrap().to_str().unwrap();
        assert!(!FILES.contains(&name), "{name} is a file the demo writes");
        assert!(name.ends_with("-run.pcap"), "{name}");
    }
    let PortConfig::Pcap(lan) = &cfg.lan.port else { panic!("pcap.toml: pcap ports") };
    assert_eq!(lan.input.as_deref(), Some(captures.join("lan-in.pcap").as_path()));
}

#[test]
fn demo_and_run_in_one_directory_never_clobber_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("pcap.toml");
    std::fs::copy(shipped_pcap_toml(), &cfg).unwrap();
    let captures = dir.path().join("captures");

    let report = ok(bin().args(["demo", "--shards", "1", "--out"]).arg(&captures));
    demo_rates_are_over_the_processing_window(&report);
    let demo_files = snapshot(&captures);
    assert_eq!(demo_files.len(), FILES.len(), "{:?}", demo_files.keys());
    let lan_out = &demo_files["lan-out.pcap"];
    assert!(lan_out.len() > 1000, "the demo's decrypted output: {} bytes", lan_out.len());

    // `run` next to it: every demo file is byte for byte what the demo left.
    let stdout = ok(bin().args(["run", "--config"]).arg(&cfg));
    assert!(stdout.contains("site-1 total: rx "), "{stdout}");
    let after_run = snapshot(&captures);
    for (name, bytes) in &demo_files {
        assert!(after_run[name] == *bytes, "run changed the demo's {name}");
    }
    let run_files: BTreeMap<_, _> =
        after_run.into_iter().filter(|(n, _)| !demo_files.contains_key(n)).collect();
    assert_eq!(run_files.keys().collect::<Vec<_>>(), ["lan-out-run.pcap", "wan-out-run.pcap"]);
    // The run's WAN output is the ESP of the demo's gateway A (same gateway, same keys).
    assert!(run_files["wan-out-run.pcap"].len() > 1000);

    // The demo again: the run's outputs stay as they were.
    ok(bin().args(["demo", "--shards", "1", "--out"]).arg(&captures));
    let after_demo = snapshot(&captures);
    for (name, bytes) in &run_files {
        assert!(after_demo[name] == *bytes, "the demo changed the run's {name}");
    }
}

/// The demo's throughput line divides by the processing window, which lies inside the run's
/// wall time (start-up included) printed on the next line.
fn demo_rates_are_over_the_processing_window(report: &str) {
    let line = |prefix: &str| {
        report
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}: {report}"))
            .to_string()
    };
    let rates = line("throughput while processing (pcap files, 1 data shards each): A ");
    let wall = line("wall time with start-up: A ");
    // "... A 0.078 Mpps (698 packets in 8.9 ms), B 0.090 Mpps (690 packets in 7.7 ms)"
    let ms: Vec<f64> = rates
        .split(" packets in ")
        .skip(1)
        .map(|s| s.split(" ms)").next().unwrap().parse().unwrap())
        .collect();
    // "wall time with start-up: A 0.101 s, B 0.087 s; ..."
    let secs: Vec<f64> = ["A ", "B "]
        .iter()
        .map(|g| wall.split(g).nth(1).unwrap().split(" s").next().unwrap().parse().unwrap())
        .collect();
    assert_eq!((ms.len(), secs.len()), (2, 2), "{rates}\n{wall}");
    for (m, s) in ms.iter().zip(&secs) {
        assert!(*m > 0.0 && m / 1e3 <= *s, "processing {m} ms, wall {s} s:\n{rates}\n{wall}");
    }
}
