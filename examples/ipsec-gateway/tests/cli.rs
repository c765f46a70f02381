//! The binary: exit codes, stats lines (text and JSON), and SIGINT draining with final counters.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::demo::traffic;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ipsec-gateway"))
}

#[test]
fn config_errors_exit_2_and_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, configs::config(Site::A, 2, None).replace("shards = 2", "shards = 0")).unwrap();
    for cmd in ["check", "run"] {
        let out = bin().args([cmd, "--config"]).arg(&p).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("gateway.shards = 0"), "{err}");
    }
    let out = bin().args(["run", "--config", "/nonexistent.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["run", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A mem config is valid but `run` cannot feed it: a configuration error too.
    std::fs::write(&p, configs::config(Site::A, 2, None)).unwrap();
    let out = bin().args(["run", "--config"]).arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn run_prints_stats_lines_and_final_counters() {
    let dir = tempfile::tempdir().unwrap();
    let flows = traffic::demo_flows(Some(3000));
    let sent = traffic::write_capture(&flows, &dir.path().join("in.pcap")).unwrap();
    let text = configs::config(Site::A, 2, Some([Some("in.pcap"), None, None, Some("esp.pcap")]));
    std::fs::write(dir.path().join("a.toml"), text).unwrap();
    let out = bin().args(["run", "--json", "--config"]).arg(dir.path().join("a.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let finals: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .filter(|v| v["final"] == true)
        .collect();
    assert_eq!(finals.len(), 3, "two data shards and the control shard: {stdout}");
    let rx: u64 = finals.iter().map(|v| v["rx_packets"].as_u64().unwrap()).sum();
    assert_eq!(rx, sent);
    let no_route: u64 = finals.iter().filter_map(|v| v["drops"]["no_route"].as_u64()).sum();
    assert!(no_route > 0, "{stdout}");
}

#[test]
fn sigint_drains_and_prints_final_counters() {
    let dir = tempfile::tempdir().unwrap();
    let flows = traffic::demo_flows(Some(200_000));
    traffic::write_capture(&flows, &dir.path().join("in.pcap")).unwrap();
    let text = configs::config(Site::A, 2, Some([Some("in.pcap"), None, None, Some("esp.pcap")]))
        .replace("stats_interval = 0", "stats_interval = 0.05\ncontrol_socket = \"ctl.sock\"");
    std::fs::write(dir.path().join("a.toml"), text).unwrap();
    let mut child = bin()
        .args(["run", "--config"])
        .arg(dir.path().join("a.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait for the first stats line: the gateway is running.
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.contains(" shard 0: ") && first.contains(" pps ") && first.contains(" Gbps drops: "),
        "{first}"
    );
    // Live changes through the control socket, from the `ctl` command.
    let sock = dir.path().join("ctl.sock");
    let ok = bin()
        .arg("ctl")
        .arg(&sock)
        .args(["route", "add", "10.3.0.0/16", "via", "192.0.2.1"])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok route 10.3.0.0/16 set, epoch "));
    let bad = bin().arg("ctl").arg(&sock).args(["sa", "remove", "0x1", "inbound"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).starts_with("error no inbound SA 0x1"));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(10));
    };
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    let total =
        rest.iter().find(|l| l.starts_with("gateway-a total: ")).unwrap_or_else(|| panic!("{rest:?}"));
    // Stopped by the signal, before the end of the capture, with every shard drained.
    assert!(err.contains("stopped by signal; shards drained"), "{err}");
    let sent: usize = flows.iter().map(|f| f.packets).sum();
    assert!(total.contains("rx ") && !total.contains(&format!("rx {sent} pkts")), "{total}");
    let finals = rest.iter().filter(|l| l.starts_with("gateway-a shard ") && l.contains(" tx ")).count();
    assert_eq!(finals, 3, "final counters of every shard: {rest:?}");
}
