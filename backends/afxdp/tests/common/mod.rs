//! Test fixtures: a veth pair whose peer end lives in its own network namespace, torn down by
//! `Drop` even when the test fails; and the reasons a kernel test may skip.
#![allow(dead_code)] // each test binary uses a different part

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wirespeed_afxdp::peer::{RawSocket, enter_netns};

/// Runs a command, panicking with its output when it fails.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Output of a command.
pub fn output(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    String::from_utf8_lossy(&out.stdout).into_owned()
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

/// Skips the test (printing why) when kernel tests cannot run — or fails it, when
/// `WIRESPEED_AFXDP_REQUIRE_KERNEL` is set (CI, where a skip would hide a broken setup).
#[macro_export]
macro_rules! require_kernel {
    () => {
        if let Some(why) = common::skip_reason() {
            if std::env::var_os("WIRESPEED_AFXDP_REQUIRE_KERNEL").is_some() {
                panic!("kernel test cannot run and WIRESPEED_AFXDP_REQUIRE_KERNEL is set: {why}");
            }
            eprintln!("SKIPPED {}: {why}", module_path!());
            return;
        }
    };
}

/// A veth pair: `local` in this namespace (where the AF_XDP port runs), `peer` in namespace `ns`.
pub struct Veth {
    /// Namespace of the peer end.
    pub ns: String,
    /// Our end.
    pub local: String,
    /// The peer end (inside `ns`).
    pub peer: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Veth {
    /// Creates the pair with `queues` Rx/Tx queues on each end, both up, IPv6 off (so the
    /// kernel sends no unsolicited frames into the test).
    pub fn new(queues: u16) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let v = Veth { ns: format!("wsnet-{id}"), local: format!("wx{id}a"), peer: format!("wx{id}b") };
        let q = queues.to_string();
        run(&["ip", "netns", "add", &v.ns]);
        run(&[
            "ip",
            "link",
            "add",
            &v.local,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &v.peer,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &v.ns,
        ]);
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.local), "1");
        // (A kernel without IPv6 has nothing to switch off: ignore failure.)
        let key = format!("net.ipv6.conf.{}.disable_ipv6=1", v.peer);
        let _ = Command::new("ip").args(["netns", "exec", &v.ns, "sysctl", "-qw", &key]).output();
        run(&["ip", "link", "set", &v.local, "up"]);
        run(&["ip", "-n", &v.ns, "link", "set", &v.peer, "up"]);
        run(&["ip", "-n", &v.ns, "link", "set", "lo", "up"]);
        v
    }

    /// MAC address of an interface in this namespace.
    pub fn local_mac(&self) -> [u8; 6] {
        mac(&std::fs::read_to_string(format!("/sys/class/net/{}/address", self.local)).unwrap())
    }

    /// MAC address of the peer end.
    pub fn peer_mac(&self) -> [u8; 6] {
        let s = output(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "cat",
            &format!("/sys/class/net/{}/address", self.peer),
        ]);
        mac(&s)
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

fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s.trim().split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
    v.try_into().unwrap()
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; deleting the namespace would too.
        let _ = Command::new("ip").args(["link", "del", &self.local]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// An Ethernet/IPv4/UDP frame `dst ← src` of `len` bytes whose payload starts with `seq`.
pub fn udp_frame(dst: [u8; 6], src: [u8; 6], sport: u16, seq: u32, len: usize) -> Vec<u8> {
    let len = len.max(60);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    f.extend_from_slice(&[0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 1, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
    let c = wirespeed_core::backend::null::ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let udp_len = ip_len - 20;
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&[0x13, 0x89, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32 ^ seq) as u8);
    }
    f
}

/// Sends `frames` from the peer end and collects the frames arriving there that `keep` accepts, until
/// `expect` have or `wait` passes. Runs on its own thread inside the peer namespace, pinned to `cpu` when given (a raw
/// socket that bypasses the qdisc sends on transmit queue `cpu % queues`).
pub fn peer_exchange(
    ns: String,
    dev: String,
    frames: Vec<Vec<u8>>,
    expect: usize,
    keep: impl Fn(&[u8]) -> bool + Send + 'static,
    wait: Duration,
    cpu: Option<usize>,
) -> Vec<Vec<u8>> {
    std::thread::spawn(move || {
        if let Some(id) = cpu {
            assert!(core_affinity::set_for_current(core_affinity::CoreId { id }), "pin to cpu {id}");
        }
        enter_netns(&ns).unwrap();
        let s = RawSocket::open(&dev).unwrap();
        let mut back = Vec::new();
        let mut buf = vec![0u8; 4096];
        let end = Instant::now() + wait;
        for (sent, f) in frames.iter().enumerate() {
            // At most WINDOW frames in flight: a veth's per-queue ring holds 256 frames and a
            // socket buffer not many more, and a loaded CI machine may poll slowly. Overrunning
            // them is legitimate loss, not what these tests look for.
            const WINDOW: usize = 64;
            while sent >= back.len() + WINDOW && Instant::now() < end {
                if let Some(n) = s.recv(&mut buf, 50).unwrap()
                    && keep(&buf[..n])
                {
                    back.push(buf[..n].to_vec());
                }
            }
            while !s.send(f).unwrap() {
                std::thread::sleep(Duration::from_micros(50));
            }
            while let Some(n) = s.recv(&mut buf, 0).unwrap() {
                if keep(&buf[..n]) {
                    back.push(buf[..n].to_vec());
                }
            }
        }
        while back.len() < expect && Instant::now() < end {
            if let Some(n) = s.recv(&mut buf, 50).unwrap()
                && keep(&buf[..n])
            {
                back.push(buf[..n].to_vec());
            }
        }
        back
    })
    .join()
    .unwrap()
}
