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
    let roles: Vec<&str> = finals.iter().map(|v| v["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["data", "data", "control"], "{stdout}");
    for v in &finals {
        for key in ["punted", "handed_off", "dropped", "tx_packets"] {
            assert!(v[key].is_u64(), "{key} missing: {v}");
        }
    }
    let rx: u64 = finals.iter().map(|v| v["rx_packets"].as_u64().unwrap()).sum();
    assert_eq!(rx, sent);
    let no_route: u64 = finals.iter().filter_map(|v| v["drops"]["no_route"].as_u64()).sum();
    assert!(no_route > 0, "{stdout}");
    // The last line is the total over every shard, with the processing window of the input.
    let total: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(total["total"], true, "{stdout}");
    assert_eq!(total["gateway"], "gateway-a");
    assert_eq!(total["rx_packets"].as_u64(), Some(sent), "{total}");
    assert_eq!(total["drops"]["no_route"].as_u64(), Some(no_route), "{total}");
    let tx: u64 = finals.iter().map(|v| v["tx_packets"].as_u64().unwrap()).sum();
    assert_eq!(total["tx_packets"].as_u64(), Some(tx), "{total}");
    // Stage counters, every key present (here all zero: the demo sends no ICMP errors).
    let stages = total["stages"].as_object().unwrap_or_else(|| panic!("{total}"));
    assert_eq!(stages.len(), ipsec_gateway::stagestats::StageCounters::FIELDS.len(), "{total}");
    assert!(stages.values().all(|v| v.as_u64() == Some(0)), "{total}");
    assert!(finals.iter().all(|v| v["stages"]["fragments"].is_u64()), "{stdout}");
    let (wall, processing) = (total["wall_s"].as_f64().unwrap(), total["processing_s"].as_f64().unwrap());
    assert!(processing > 0.0 && processing <= wall, "{total}");
}

#[test]
fn text_run_ends_with_labelled_final_counters_and_a_total() {
    let dir = tempfile::tempdir().unwrap();
    let flows = traffic::demo_flows(None);
    let sent = traffic::write_capture(&flows, &dir.path().join("in.pcap")).unwrap();
    // A stats interval longer than the run: the final lines are printed all the same.
    let text = configs::config(Site::A, 2, Some([Some("in.pcap"), None, None, Some("esp.pcap")]))
        .replace("stats_interval = 0", "stats_interval = 30");
    std::fs::write(dir.path().join("a.toml"), text).unwrap();
    let out = bin().args(["run", "--config"]).arg(dir.path().join("a.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(lines[0].starts_with("gateway-a shard 0 (data) final: rx "), "{stdout}");
    assert!(lines[1].starts_with("gateway-a shard 1 (data) final: rx "), "{stdout}");
    assert!(lines[2].starts_with("gateway-a shard 2 (control) final: rx "), "{stdout}");
    let total = lines[3];
    assert!(total.starts_with(&format!("gateway-a total: rx {sent} pkts / ")), "{total}");
    assert!(total.contains(" punted ") && total.contains(" handed off "), "{total}");
    assert!(total.contains(" s wall, processing ") && total.ends_with(" Mpps rx"), "{total}");
    // Then the stage counters summed over the shards (ICMP errors are off in the demo's
    // configuration; nothing is fragmented, clamped or held there).
    assert_eq!(lines[4], "gateway-a stages: none", "{stdout}");
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
    // Labelled: the rate and drops of the interval, then the shard's cumulative counters.
    assert!(first.starts_with("gateway-a shard 0 (data): rate "), "{first}");
    assert!(first.contains(" pps rx, ") && first.contains(" Gbps tx over 0."), "{first}");
    assert!(first.contains(", dropped +") && first.contains(" | total: rx "), "{first}");
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
    let finals = rest.iter().filter(|l| l.starts_with("gateway-a shard ") && l.contains(" final: ")).count();
    assert_eq!(finals, 3, "final counters of every shard: {rest:?}");
    // Interrupted: no processing window (the input did not end), the wall time only.
    assert!(total.ends_with(" s wall"), "{total}");
}

/// A copy of `configs/pcap.toml` in `dir` (its captures are relative to it).
fn pcap_toml_in(dir: &std::path::Path) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/pcap.toml");
    let p = dir.join("pcap.toml");
    std::fs::copy(src, &p).unwrap();
    p
}

#[test]
fn check_and_run_refuse_a_missing_input_and_say_how_to_make_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = pcap_toml_in(dir.path());
    let input = dir.path().join("captures/lan-in.pcap");
    for cmd in ["check", "run"] {
        let out = bin().args([cmd, "--config"]).arg(&cfg).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(out.stdout.is_empty(), "{cmd}: nothing on stdout, no `ok`");
        assert_eq!(
            err.lines().next().unwrap(),
            format!(
                "error: configuration: interfaces.lan.port.input: cannot open {}: No such file or directory (os error 2)",
                input.display()
            ),
            "{cmd}"
        );
        let hint = format!(
            "hint: `ipsec-gateway demo --out {}` creates lan-in.pcap there",
            input.parent().unwrap().display()
        );
        assert_eq!(err.lines().nth(1), Some(hint.as_str()), "{cmd}: {err}");
    }
    // `run` refused before opening any port: no output written.
    assert!(!dir.path().join("captures").exists());
    // The hint works: after the demo made the input, check says ok.
    let out = bin().args(["demo", "--shards", "1", "--out"]).arg(input.parent().unwrap()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = bin().args(["check", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
}

#[test]
fn errors_are_printed_with_display_and_their_source_not_debug() {
    let dir = tempfile::tempdir().unwrap();
    let flows = traffic::demo_flows(None);
    traffic::write_capture(&flows, &dir.path().join("in.pcap")).unwrap();
    // The output capture's directory does not exist: the port cannot create it (exit 1).
    let text = configs::config(Site::A, 1, Some([Some("in.pcap"), None, None, Some("no-such-dir/esp.pcap")]));
    std::fs::write(dir.path().join("a.toml"), text).unwrap();
    let out = bin().args(["run", "--config"]).arg(dir.path().join("a.toml")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    let mut errs = vec![err.clone()];
    let want = format!("error: interfaces.wan.port: {}: ", dir.path().join("no-such-dir/esp.pcap").display());
    assert!(err.starts_with(&want), "{err}");
    assert!(err.trim_end().ends_with(": No such file or directory (os error 2)"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // A control socket that is not there: the OS error, as text.
    let out = bin().arg("ctl").arg(dir.path().join("none.sock")).args(["show", "sas"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    errs.push(err.clone());
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!("error: {}: No such file or directory (os error 2)", dir.path().join("none.sock").display())
    );
    // A configuration file that is not there.
    let out = bin().args(["check", "--config"]).arg(dir.path().join("none.toml")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    errs.push(err.clone());
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "error: configuration: {}: No such file or directory (os error 2)",
            dir.path().join("none.toml").display()
        )
    );
    for e in &errs {
        for debug in ["Os {", "Io {", "kind:", "code:"] {
            assert!(!e.contains(debug), "Debug formatting in {e}");
        }
    }
}

#[test]
fn pcap_run_serves_metrics_on_host_listen() {
    let dir = tempfile::tempdir().unwrap();
    let flows = traffic::demo_flows(Some(200_000));
    traffic::write_capture(&flows, &dir.path().join("in.pcap")).unwrap();
    let text = configs::config(Site::A, 2, Some([Some("in.pcap"), None, None, Some("esp.pcap")]))
        .replace("http_port = 9000\n", "http_port = 9000\nhost_listen = \"127.0.0.1:0\"\n")
        .replace("stats_interval = 0", "stats_interval = 0.05");
    std::fs::write(dir.path().join("a.toml"), text).unwrap();
    let mut child = bin()
        .args(["run", "--json", "--config"])
        .arg(dir.path().join("a.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    // The run says where it serves (port 0: the one the OS picked).
    let first = err.next().unwrap().unwrap();
    let url = first.strip_prefix("gateway-a: GET /metrics on ").unwrap_or_else(|| panic!("{first}"));
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"), "{url}");
    let mut resp = ureq::get(url).call().expect("GET /metrics while the run lasts");
    assert_eq!(resp.status(), 200);
    let body = resp.body_mut().read_to_string().unwrap();
    assert!(body.contains("wirespeed_rx_packets_total{gateway=\"gateway-a\",shard=\"0\"}"), "{body}");
    // The JSON interval lines: the interval's rate and drops, the shard's cumulative total.
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&out.next().unwrap().unwrap()).unwrap();
    assert_eq!((first["shard"].as_u64(), first["role"].as_str()), (Some(0), Some("data")), "{first}");
    assert!(first["interval_s"].as_f64().unwrap() >= 0.05, "{first}");
    assert!(
        first["pps"].is_f64() && first["gbps"].is_f64() && first["interval_drops"].is_object(),
        "{first}"
    );
    for key in ["rx_packets", "tx_packets", "punted", "handed_off", "dropped"] {
        assert!(first["total"][key].is_u64(), "{key}: {first}");
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let rest: Vec<String> = out.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let total: serde_json::Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(
        (total["total"].as_bool(), total["interrupted"].as_bool()),
        (Some(true), Some(true)),
        "{total}"
    );
    assert!(total["processing_s"].is_null(), "no processing window after a signal: {total}");
}
