//! Kernel fixtures for the AF_XDP tests: veth pairs whose peer end lives in its own network
//! namespace (torn down by `Drop`, also when a test fails), and why a kernel test may skip.
//! Adapted from wirespeed-afxdp's own test fixtures (backends/afxdp/tests/common).
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Runs a command, panicking with its output when it fails.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `Some(reason)` when kernel tests cannot run here: not root, or no AF_XDP in this kernel.
pub fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2));
    if euid != Some("0") {
        return Some(format!("not root (effective uid {euid:?}); AF_XDP and netns need root"));
    }
    if let Err(e) = wirespeed_afxdp::probe() {
        return Some(format!("kernel lacks AF_XDP: {e}"));
    }
    None
}

/// Skips the test, printing why, when kernel tests cannot run — or fails it when
/// `WIRESPEED_AFXDP_REQUIRE_KERNEL` is set (CI runs as root, where a skip would hide a problem).
#[macro_export]
macro_rules! require_kernel {
    () => {
        if let Some(why) = support::netns::skip_reason() {
            if std::env::var_os("WIRESPEED_AFXDP_REQUIRE_KERNEL").is_some() {
                panic!("kernel test cannot run and WIRESPEED_AFXDP_REQUIRE_KERNEL is set: {why}");
            }
            eprintln!("SKIPPED {}: {why}", module_path!());
            return;
        }
    };
}

/// A veth pair: `local` in this namespace (the gateway's end), `peer` in namespace `ns`.
pub struct Veth {
    /// Namespace of the peer end.
    pub ns: String,
    /// Our end.
    pub local: String,
    /// The peer end (inside `ns`).
    pub peer: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn mac_text(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

impl Veth {
    /// A pair with `queues` Rx/Tx queues on each end, MACs `local_mac` / `peer_mac`, both up,
    /// IPv6 off (so the kernel sends nothing unsolicited into the test).
    pub fn new(queues: u16, local_mac: [u8; 6], peer_mac: [u8; 6]) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let v = Veth { ns: format!("wsgw-{id}"), local: format!("wg{id}a"), peer: format!("wg{id}b") };
        let q = queues.to_string();
        run(&["ip", "netns", "add", &v.ns]);
        run(&[
            "ip",
            "link",
            "add",
            &v.local,
            "address",
            &mac_text(local_mac),
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &v.peer,
            "address",
            &mac_text(peer_mac),
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &v.ns,
        ]);
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.local), "1");
        let key = format!("net.ipv6.conf.{}.disable_ipv6=1", v.peer);
        let _ = Command::new("ip").args(["netns", "exec", &v.ns, "sysctl", "-qw", &key]).output();
        run(&["ip", "link", "set", &v.local, "up"]);
        run(&["ip", "-n", &v.ns, "link", "set", &v.peer, "up"]);
        v
    }

    /// Waits up to two seconds for `ip link show` to list no XDP program on our end, returning
    /// what it showed last.
    pub fn detached(&self) -> Result<String, String> {
        let end = Instant::now() + Duration::from_secs(2);
        loop {
            let out = Command::new("ip").args(["link", "show", "dev", &self.local]).output().expect("spawn");
            let shown = String::from_utf8_lossy(&out.stdout).into_owned();
            if !shown.contains("xdp") {
                return Ok(shown);
            }
            if Instant::now() > end {
                return Err(shown);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; deleting the namespace would too.
        let _ = Command::new("ip").args(["link", "del", &self.local]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
