//! Kernel test fixtures shared by the AF_XDP tests of `wirespeed-afxdp` and `ipsec-gateway`: a
//! veth pair whose peer end lives in its own network namespace, torn down by `Drop` even when the
//! test fails, and the rule for when a kernel test may skip.
//!
//! Test support only (not published): it shells out to `ip` and needs root.

use std::fmt::Display;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Runs a command, panicking with its output when it fails.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Standard output of a command.
pub fn output(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `Some(reason)` when kernel tests cannot run here: not root, or `probe` (the AF_XDP probe of
/// the crate under test) failed.
pub fn skip_reason<E: Display>(probe: impl FnOnce() -> Result<(), E>) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2));
    if euid != Some("0") {
        return Some(format!("not root (effective uid {euid:?}); AF_XDP and netns need root"));
    }
    if let Err(e) = probe() {
        return Some(format!("kernel lacks AF_XDP: {e}"));
    }
    None
}

/// Whether a kernel test may go on: `true` when `skip` is `None`. Otherwise it prints why the
/// test `test` is skipped and returns `false` — or panics when `WIRESPEED_AFXDP_REQUIRE_KERNEL`
/// is set (CI, where a skip would hide a broken setup).
pub fn kernel_ready(skip: Option<String>, test: &str) -> bool {
    let Some(why) = skip else { return true };
    if std::env::var_os("WIRESPEED_AFXDP_REQUIRE_KERNEL").is_some() {
        panic!("kernel test cannot run and WIRESPEED_AFXDP_REQUIRE_KERNEL is set: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// A veth pair: `local` in this namespace (where the port under test runs), `peer` in namespace
/// `ns`.
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

fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s.trim().split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
    v.try_into().unwrap()
}

impl Veth {
    /// A pair with `queues` Rx/Tx queues on each end and kernel-chosen MACs, both up, IPv6 off
    /// (so the kernel sends no unsolicited frames into the test).
    pub fn new(queues: u16) -> Self {
        Self::create(queues, None)
    }

    /// The same with MACs `local_mac` / `peer_mac`.
    pub fn with_macs(queues: u16, local_mac: [u8; 6], peer_mac: [u8; 6]) -> Self {
        Self::create(queues, Some((local_mac, peer_mac)))
    }

    fn create(queues: u16, macs: Option<([u8; 6], [u8; 6])>) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let v = Veth { ns: format!("wsnet-{id}"), local: format!("wx{id}a"), peer: format!("wx{id}b") };
        let q = queues.to_string();
        let (local_mac, peer_mac) = match macs {
            Some((l, p)) => (Some(mac_text(l)), Some(mac_text(p))),
            None => (None, None),
        };
        run(&["ip", "netns", "add", &v.ns]);
        let mut args = vec!["ip", "link", "add", &v.local];
        if let Some(m) = &local_mac {
            args.extend(["address", m.as_str()]);
        }
        args.extend(["numtxqueues", &q, "numrxqueues", &q, "type", "veth", "peer", "name", &v.peer]);
        if let Some(m) = &peer_mac {
            args.extend(["address", m.as_str()]);
        }
        args.extend(["numtxqueues", &q, "numrxqueues", &q, "netns", &v.ns]);
        run(&args);
        // (A kernel without IPv6 has nothing to switch off: ignore failure.)
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.local), "1");
        let key = format!("net.ipv6.conf.{}.disable_ipv6=1", v.peer);
        let _ = Command::new("ip").args(["netns", "exec", &v.ns, "sysctl", "-qw", &key]).output();
        run(&["ip", "link", "set", &v.local, "up"]);
        run(&["ip", "-n", &v.ns, "link", "set", &v.peer, "up"]);
        run(&["ip", "-n", &v.ns, "link", "set", "lo", "up"]);
        v
    }

    /// MAC address of our end.
    pub fn local_mac(&self) -> [u8; 6] {
        mac(&std::fs::read_to_string(format!("/sys/class/net/{}/address", self.local)).unwrap())
    }

    /// MAC address of the peer end.
    pub fn peer_mac(&self) -> [u8; 6] {
        let path = format!("/sys/class/net/{}/address", self.peer);
        mac(&output(&["ip", "netns", "exec", &self.ns, "cat", &path]))
    }

    /// Waits up to two seconds for `ip link show` to list no XDP program on our end (the kernel
    /// frees a closed `bpf_link` in deferred work), returning what it showed last.
    pub fn detached(&self) -> Result<String, String> {
        let end = Instant::now() + Duration::from_secs(2);
        loop {
            let shown = self.link_show();
            if !shown.contains("xdp") {
                return Ok(shown);
            }
            if Instant::now() > end {
                return Err(shown);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `ip link show` of our end.
    pub fn link_show(&self) -> String {
        output(&["ip", "link", "show", "dev", &self.local])
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; deleting the namespace would too.
        let _ = Command::new("ip").args(["link", "del", &self.local]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
