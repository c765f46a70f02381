//! Hostile configurations (issue #19): numbers out of range are refused with `key = value:
//! reason` (exit code 2 from `check` and `run`, never a panic's 101 or an abort's 134), and every
//! cross-entry inconsistency names both entries. A proptest fuzz mutates every file of
//! `configs/` and asserts: no panic, and either such an error or a configuration that holds the
//! invariants and builds.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ipsec_gateway::config::{
    ConfigError, GatewayConfig, MAX_BUFFERS, MAX_ICMP_RATE, MAX_STATS_INTERVAL, MIN_STATS_INTERVAL,
    PortConfig,
};
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::gateway;
use proptest::prelude::*;
use toml::Value;

fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
    GatewayConfig::from_toml(text, None, "<test>")
}

/// The demo's gateway A (mem ports) with `from` replaced by `to` (which must occur).
fn a_with(from: &str, to: &str) -> String {
    let base = configs::config(Site::A, 2, None);
    assert!(base.contains(from), "test setup: {from:?} not in the demo config:\n{base}");
    base.replacen(from, to, 1)
}

fn refused(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn stats_interval_out_of_range_is_refused_not_a_panic() {
    for v in ["1e300", "1e20", "86401.0", "0.001", "-1.0", "nan", "inf"] {
        let e = refused(&a_with("stats_interval = 0\n", &format!("stats_interval = {v}\n")));
        assert!(e.starts_with("gateway.stats_interval = ") && e.contains("want 0 (none) or"), "{v}: {e}");
    }
    parse(&a_with("stats_interval = 0\n", "stats_interval = 86400.0\n")).expect("a day is fine");
}

#[test]
fn icmp_rate_out_of_range_is_refused() {
    let with = |v: &str| a_with("[icmp]\nerrors = false\n", &format!("[icmp]\nrate = {v}\n"));
    for v in [u64::from(MAX_ICMP_RATE) + 1, u64::from(u32::MAX)] {
        let e = refused(&with(&v.to_string()));
        assert!(e.starts_with(&format!("icmp.rate = {v}: want 0 (none) to {MAX_ICMP_RATE}")), "{e}");
    }
    // Not a u32 at all: refused by the parser, naming the key.
    for v in ["-1", "4294967296", "1e9", "\"fast\""] {
        let e = refused(&with(v));
        assert!(e.contains("rate"), "{v}: {e}");
    }
    assert_eq!(parse(&with(&MAX_ICMP_RATE.to_string())).unwrap().icmp_rate, Some(MAX_ICMP_RATE));
    assert_eq!(parse(&with("0")).unwrap().icmp_rate, None, "0: no ICMP errors");
}

#[test]
fn buffers_beyond_range_or_memory_are_refused() {
    for v in [1_099_511_627_776u64, (MAX_BUFFERS + 1) as u64] {
        let e = refused(&a_with("[gateway]\n", &format!("[gateway]\nbuffers = {v}\n")));
        assert!(e.starts_with(&format!("gateway.buffers = {v}: want")), "{e}");
    }
    // In range but more than this machine has: refused naming the memory.
    let mem: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let too_many = (mem * 1024 / 2304 + 1).min(MAX_BUFFERS as u64);
    if too_many * 2304 > mem * 1024 / 4 * 3 {
        let e = refused(&a_with("[gateway]\n", &format!("[gateway]\nbuffers = {too_many}\n")));
        assert!(e.contains("of memory are available"), "{e}");
    }
}

#[test]
fn duplicate_route_prefix_names_both_entries() {
    let e = refused(&a_with(
        "[[routes]]\n",
        "[[routes]]\nprefix = \"10.2.0.0/16\"\nvia = \"10.1.255.254\"\n\n[[routes]]\n",
    ));
    assert!(e.starts_with("routes[1].prefix = 10.2.0.0/16: routes[0] has the same prefix"), "{e}");
}

#[test]
fn neighbor_with_two_macs_names_both_entries() {
    let text = a_with(
        "[[neighbors]]\n",
        "[[neighbors]]\nip = \"192.0.2.1\"\nmac = \"02:00:00:00:ee:ee\"\ninterface = \"wan\"\n\n[[neighbors]]\n",
    );
    let e = refused(&text);
    assert!(e.starts_with("neighbors[1].ip = 192.0.2.1: neighbors[0] has the same address"), "{e}");
}

#[test]
fn lan_and_wan_with_the_same_address_are_refused() {
    let e = refused(&a_with("addresses = [\"192.0.2.100/24\"]", "addresses = [\"10.1.0.1/24\"]"));
    assert!(
        e.starts_with("interfaces.wan.addresses[0] = 10.1.0.1: interfaces.lan.addresses[0] is the same"),
        "{e}"
    );
}

#[test]
fn two_sas_with_the_same_key_name_both_entries() {
    let base = configs::config(Site::A, 2, None);
    let keys: Vec<&str> = base.lines().filter(|l| l.starts_with("key = \"") && l.len() > 20).collect();
    let (first, second) = (keys[0].to_string(), keys[1].to_string());
    let e = refused(&base.replacen(&second, &first, 1));
    assert!(e.starts_with("sa[1].key = <20 bytes>: same key as sa[0]"), "{e}");
    // The key itself is never echoed.
    assert!(!e.contains(first.trim_start_matches("key = \"").trim_end_matches('"')), "{e}");
}

#[test]
fn tunnel_endpoint_and_next_hop_must_fit_own_addresses() {
    let base = configs::config(Site::A, 2, None);
    let local = format!("local = \"{}\"", configs::A_WAN);
    assert!(base.contains(&local));
    let e = refused(&base.replacen(&local, "local = \"198.51.100.7\"", 1));
    assert!(e.contains(".local = 198.51.100.7: not an address of this gateway"), "{e}");
    let e = refused(&a_with(
        "[[routes]]\n",
        &format!("[[routes]]\nprefix = \"10.77.0.0/16\"\nvia = \"{}\"\n\n[[routes]]\n", configs::A_WAN),
    ));
    assert!(e.starts_with("routes[0].via = 192.0.2.100: is this gateway's own address"), "{e}");
}

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_ipsec-gateway"))
}

#[test]
fn check_and_run_exit_2_on_out_of_range_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let flows = ipsec_gateway::demo::traffic::demo_flows(Some(100));
    ipsec_gateway::demo::traffic::write_capture(&flows, &dir.path().join("in.pcap")).unwrap();
    let good = configs::config(Site::A, 2, Some([Some("in.pcap"), None, None, Some("esp.pcap")]));
    for (change, key) in [
        ("stats_interval = 1e300", "gateway.stats_interval = "),
        ("stats_interval = 0\nbuffers = 1099511627776", "gateway.buffers = 1099511627776"),
    ] {
        let p = dir.path().join("bad.toml");
        assert!(good.contains("stats_interval = 0\n"));
        std::fs::write(&p, good.replacen("stats_interval = 0", change, 1)).unwrap();
        for cmd in ["check", "run"] {
            let out = bin().args([cmd, "--config"]).arg(&p).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} with {change}: {err}");
            assert!(err.contains(key), "{cmd}: {err}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fuzz: mutations of every file in configs/.
// ---------------------------------------------------------------------------------------------

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

fn example_files() -> Vec<(String, Value)> {
    let mut v: Vec<_> = std::fs::read_dir(configs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), toml::from_str::<Value>(&text).unwrap())
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(v.len() >= 4, "configs/ holds the example files");
    v
}

/// Paths to every value (tables and arrays included), as keys and indices.
fn paths(v: &Value, at: &mut Vec<PathSeg>, out: &mut Vec<Vec<PathSeg>>) {
    out.push(at.clone());
    match v {
        Value::Table(t) => {
            for (k, x) in t {
                at.push(PathSeg::Key(k.clone()));
                paths(x, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(PathSeg::Index(i));
                paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum PathSeg {
    Key(String),
    Index(usize),
}

fn get_mut<'a>(v: &'a mut Value, path: &[PathSeg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in path {
        cur = match (s, cur) {
            (PathSeg::Key(k), Value::Table(t)) => t.get_mut(k)?,
            (PathSeg::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the value at path `n` (modulo the number of paths) with this one.
    Set(usize, Value),
    /// Remove the value at path `n` (a table key or an array element).
    Remove(usize),
    /// Duplicate the element at path `n` if it is in an array (same prefix, same key, ...).
    Duplicate(usize),
    /// Copy the value at path `a` over the value at path `b`.
    Copy(usize, usize),
    /// Add a key that may or may not exist to the table at path `n`.
    AddKey(usize, String, Value),
}

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(65_536),
            Just(u32::MAX as i64),
            Just(1 << 40),
            Just(i64::MAX),
            Just(i64::MIN)
        ]
        .prop_map(Value::Integer),
        any::<i64>().prop_map(Value::Integer),
        prop_oneof![
            Just(1e300),
            Just(-1e300),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(1e-300),
            Just(0.5)
        ]
        .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        prop_oneof![
            Just(String::new()),
            Just("lan".to_string()),
            Just("wan".into()),
            Just("10.1.0.1/16".into()),
            Just("192.0.2.1".into()),
            Just("fd00::1/200".into()),
            Just("02:00:00:00:0a:01".into()),
            Just("ff:ff:ff:ff:ff:ff".into()),
            Just("0xZZ".into()),
            Just("x".repeat(10_000)),
            "[ -~]{0,40}",
        ]
        .prop_map(Value::String),
        Just(Value::Array(vec![])),
        Just(Value::Table(Default::default())),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), hostile_value()).prop_map(|(n, v)| Mutation::Set(n, v)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        2 => any::<usize>().prop_map(Mutation::Duplicate),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Copy(a, b)),
        1 => (
            any::<usize>(),
            prop_oneof![
                Just("shard".to_string()),
                Just("via".into()),
                Just("buffers".into()),
                Just("stats_interval".into()),
                Just("replay_window".into()),
                Just("mtu".into()),
                Just("control_group".into()),
                Just("bogus".into())
            ],
            hostile_value()
        )
            .prop_map(|(n, k, v)| Mutation::AddKey(n, k, v)),
    ]
}

fn apply(doc: &mut Value, m: &Mutation) {
    let mut all = Vec::new();
    paths(doc, &mut Vec::new(), &mut all);
    let pick = |n: usize| all[n % all.len()].clone();
    match m {
        Mutation::Set(n, v) => {
            if let Some(x) = get_mut(doc, &pick(*n)) {
                *x = v.clone();
            }
        }
        Mutation::Remove(n) | Mutation::Duplicate(n) => {
            let p = pick(*n);
            let Some((last, parent)) = p.split_last() else { return };
            let Some(parent) = get_mut(doc, parent) else { return };
            match (last, parent, m) {
                (PathSeg::Key(k), Value::Table(t), Mutation::Remove(_)) => {
                    t.remove(k);
                }
                (PathSeg::Index(i), Value::Array(a), Mutation::Remove(_)) => {
                    a.remove(*i);
                }
                (PathSeg::Index(i), Value::Array(a), Mutation::Duplicate(_)) => {
                    let x = a[*i].clone();
                    a.push(x);
                }
                _ => {}
            }
        }
        Mutation::Copy(a, b) => {
            let Some(v) = get_mut(doc, &pick(*a)).map(|v| v.clone()) else { return };
            if let Some(x) = get_mut(doc, &pick(*b)) {
                *x = v;
            }
        }
        Mutation::AddKey(n, k, v) => {
            if let Some(Value::Table(t)) = get_mut(doc, &pick(*n)) {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

/// What an accepted configuration must hold (the refusals issue #19 asks for).
fn invariants(cfg: &GatewayConfig) -> Result<(), String> {
    if cfg.icmp_rate.is_some_and(|r| r == 0 || r > MAX_ICMP_RATE) {
        return Err(format!("icmp rate {:?}", cfg.icmp_rate));
    }
    if let Some(i) = cfg.stats_interval
        && !(MIN_STATS_INTERVAL..=MAX_STATS_INTERVAL).contains(&i.as_secs_f64())
    {
        return Err(format!("stats_interval {i:?}"));
    }
    if cfg.buffers > MAX_BUFFERS || cfg.buffers < 256 * cfg.shards {
        return Err(format!("buffers {}", cfg.buffers));
    }
    let mut seen = HashSet::new();
    for r in &cfg.routes {
        if !seen.insert((r.prefix.addr, r.prefix.len)) {
            return Err(format!("route {:?} twice", r.prefix));
        }
    }
    let mut seen = HashSet::new();
    for n in &cfg.neighbors {
        if !seen.insert(n.ip) {
            return Err(format!("neighbor {} twice", n.ip));
        }
    }
    let own = cfg.own_addresses();
    if own.iter().collect::<HashSet<_>>().len() != own.len() {
        return Err(format!("own address twice: {own:?}"));
    }
    for r in &cfg.routes {
        if r.via.is_some_and(|v| own.contains(&v)) {
            return Err(format!("route {:?} via an own address", r.prefix));
        }
    }
    for s in &cfg.sas {
        if let wirespeed_stages::esp::EspMode::Tunnel { local, .. } = s.mode
            && !local.is_unspecified()
            && !own.contains(&local)
        {
            return Err(format!("SA {:#x} local {local} is not own", s.spi));
        }
    }
    let mut seen = HashSet::new();
    for s in &cfg.sas {
        if !seen.insert(s.keymat[..s.algorithm.key_len()].to_vec()) {
            return Err(format!("SA {:#x} repeats a key", s.spi));
        }
    }
    Ok(())
}

proptest! {
    // 512 mutants by default; `WIRESPEED_FUZZ_CASES=N` for longer runs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("WIRESPEED_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_example_configs_are_refused_cleanly_or_valid(
        file in any::<usize>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let files = example_files();
        let (name, mut doc) = files[file % files.len()].clone();
        for m in &muts {
            apply(&mut doc, m);
        }
        let Ok(text) = toml::to_string(&doc) else { return Ok(()) };
        let dir = configs_dir();
        let result = std::panic::catch_unwind(|| GatewayConfig::from_toml(&text, Some(&dir), &name));
        let result = result.map_err(|_| TestCaseError::fail(format!("panic on {name} after {muts:?}")))?;
        match result {
            Err(ConfigError::Invalid { key, value, reason }) => {
                prop_assert!(!key.is_empty() && !reason.is_empty(), "{key} = {value}: {reason}");
            }
            Err(ConfigError::Missing { key, reason }) => {
                prop_assert!(!key.is_empty() && !reason.is_empty(), "{key}: {reason}");
            }
            Err(ConfigError::Syntax { path, message }) => {
                prop_assert!(path == name && !message.is_empty());
            }
            Err(ConfigError::Read { path, .. }) => prop_assert!(false, "read error {path:?}"),
            // `from_toml` never opens inputs (`check_inputs` does): an input error here is a bug.
            Err(ConfigError::Input { key, .. }) => prop_assert!(false, "input error from from_toml: {key}"),
            Ok(cfg) => {
                if let Err(e) = invariants(&cfg) {
                    prop_assert!(false, "{name} after {muts:?} accepted although {e}");
                }
                // The parts of a gateway built from it: steering, SAD and SPD, routes.
                let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    gateway::Steering::new(&cfg).map(|_| ())
                        .and_then(|_| gateway::sad(&cfg).map(|_| ()))
                        .and_then(|_| gateway::fib_builder(&cfg).map(|_| ()))
                }));
                match built {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => prop_assert!(false, "{name} after {muts:?}: accepted but does not build: {e}"),
                    Err(_) => prop_assert!(false, "{name} after {muts:?}: building panicked"),
                }
                if matches!(cfg.lan.port, PortConfig::Mem(_)) && cfg.buffers <= 65_536 {
                    // A mem gateway really starts and stops.
                    let pool = wirespeed_core::BufferPool::new(wirespeed_core::PoolConfig {
                        buffers: cfg.buffers,
                        ..Default::default()
                    });
                    prop_assert!(pool.is_ok(), "pool: {pool:?}");
                }
            }
        }
    }
}
