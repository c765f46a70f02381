//! A Linux IPsec peer for wirespeed's interop tests.
//!
//! The kernels our machines run tests on may lack ESP (`CONFIG_INET_ESP`) and module loading, so
//! the peer is a small VM: QEMU boots Debian's packaged kernel (with its esp4/esp6, XFRM and AEAD
//! modules) and a busybox initramfs, both prepared by `testing/linux-peer/prepare.sh` into
//! `target/linux-peer/`. The guest mounts the host's `/` read-only over 9p and runs the host's
//! own `ip`, `iperf3`, `ping` chrooted there. Its NICs (virtio) are taps in a network namespace
//! of their own, each enslaved to a bridge there; [`LinuxPeer::attach`] moves a host interface
//! (say a veth end) into that namespace and onto a NIC's bridge. [`LinuxPeer::run`] runs a shell
//! command in the guest over a virtio-serial port and returns its output and exit code.
//!
//! ```text
//!   host (test)                    netns wslp-N                 guest (VM)
//!   veth a ───── veth b ──── br0 ── tap0 ════ virtio-net ── eth0
//!   veth c ───── veth d ──── br1 ── tap1 ════ virtio-net ── eth1
//!                                          cmd ══ virtio-serial ── /init's command loop
//! ```
//!
//! Test support only (not published): it needs root (namespaces, taps), `qemu-system-x86_64`
//! and the prepared kernel. When one is missing, [`LinuxPeer::boot`] returns
//! [`BootError::Skip`] with the reason; [`LinuxPeer::for_test`] prints it and skips — or fails
//! when `WIRESPEED_LINUX_PEER_REQUIRE` is set (CI, where a skip would hide a broken setup).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Environment variable turning a skip into a failure (set by CI).
pub const REQUIRE_ENV: &str = "WIRESPEED_LINUX_PEER_REQUIRE";
/// Environment variable naming the prepared directory (default: `target/linux-peer` of the
/// workspace).
pub const DIR_ENV: &str = "WIRESPEED_LINUX_PEER_DIR";
/// Environment variable choosing the accelerator: `tcg`, `kvm` or `auto` (the default).
pub const ACCEL_ENV: &str = "WIRESPEED_LINUX_PEER_ACCEL";

/// The QEMU binary.
const QEMU: &str = "qemu-system-x86_64";

/// Why the peer did not come up.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// This machine cannot run it (not root, no QEMU, kernel not prepared): a test may skip.
    #[error("linux peer unavailable: {0}")]
    Skip(String),
    /// It should have run and did not: a test fails.
    #[error("linux peer failed to boot: {0}")]
    Failed(String),
}

/// A failure talking to the peer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command channel broke (timeout, VM gone); later commands fail at once.
    #[error("linux peer command channel: {0}")]
    Channel(String),
    /// A command ran and exited non-zero (from [`LinuxPeer::check`]).
    #[error("linux peer command `{command}` exited {code}:\n{output}")]
    Failed {
        /// The command.
        command: String,
        /// Its exit code.
        code: i32,
        /// Its output (stdout and stderr).
        output: String,
    },
    /// A host-side command (in the peer's namespace) failed.
    #[error("host command {0}")]
    Host(String),
}

/// The hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// QEMU's emulator: always works, slower (20–26 s to the first command on a loaded 2-vCPU guest).
    Tcg,
    /// KVM (`/dev/kvm`).
    Kvm,
    /// KVM when `/dev/kvm` opens and a guest boots on it within 20 s, else TCG.
    Auto,
}

/// How to boot.
#[derive(Clone, Debug)]
pub struct Options {
    /// Guest memory.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// Guest NICs (virtio-net), `eth0`, `eth1`, ... in the guest, MAC [`Options::mac`].
    pub nics: usize,
    /// How long the boot may take until the first command answers.
    pub boot_timeout: Duration,
    /// Hypervisor (default from `WIRESPEED_LINUX_PEER_ACCEL`, else [`Accel::Auto`]).
    pub accel: Accel,
}

impl Default for Options {
    fn default() -> Self {
        let accel = match std::env::var(ACCEL_ENV).as_deref() {
            Ok("kvm") => Accel::Kvm,
            Ok("tcg") => Accel::Tcg,
            _ => Accel::Auto,
        };
        Options { memory_mib: 384, cpus: 1, nics: 2, boot_timeout: Duration::from_secs(240), accel }
    }
}

impl Options {
    /// MAC address of guest NIC `i`: `52:54:00:1e:00:0i` (locally administered QEMU range).
    pub fn mac(i: usize) -> [u8; 6] {
        [0x52, 0x54, 0x00, 0x1e, 0x00, i as u8]
    }
}

/// What a command printed (stdout and stderr, interleaved) and its exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Standard output and error.
    pub stdout: String,
    /// Exit code (143 or 137: killed at its timeout).
    pub code: i32,
}

/// The command channel: one request at a time.
struct Channel {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next: u64,
    broken: Option<String>,
}

impl Channel {
    /// Sends `script` to run at most `guest` seconds and waits until `deadline` for the answer.
    fn call(&mut self, script: &str, guest: Duration, deadline: Instant) -> Result<Output, Error> {
        if let Some(why) = &self.broken {
            return Err(Error::Channel(why.clone()));
        }
        let r = self.exchange(script, guest, deadline);
        if let Err(e) = &r {
            self.broken = Some(format!("broken by an earlier failure: {e}"));
        }
        r
    }

    fn exchange(&mut self, script: &str, guest: Duration, deadline: Instant) -> Result<Output, Error> {
        self.next += 1;
        let tag = format!("LPEND{}", self.next);
        let request = format!("{tag} {} {}\n", guest.as_secs().max(1), B64.encode(script));
        self.writer.write_all(request.as_bytes()).map_err(|e| Error::Channel(format!("send: {e}")))?;
        let mut encoded = String::new();
        let mut line = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Channel(format!("no answer to `{}` in time", short(script))));
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(|e| Error::Channel(format!("set timeout: {e}")))?;
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return Err(Error::Channel("the VM closed the channel (did it stop?)".into())),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(Error::Channel(format!("no answer to `{}` in time", short(script))));
                }
                Err(e) => return Err(Error::Channel(format!("receive: {e}"))),
            }
            let text = line.trim_end();
            if let Some(code) = text.strip_prefix(&tag).and_then(|rest| rest.strip_prefix(' ')) {
                let code = code.parse().map_err(|_| Error::Channel(format!("bad trailer {text:?}")))?;
                let bytes =
                    B64.decode(&encoded).map_err(|e| Error::Channel(format!("bad output encoding: {e}")))?;
                return Ok(Output { stdout: String::from_utf8_lossy(&bytes).into_owned(), code });
            }
            encoded.push_str(text);
        }
    }
}

fn short(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.len() > 80 || s.lines().count() > 1 {
        format!("{}…", &first[..first.len().min(80)])
    } else {
        s.into()
    }
}

/// A guest NIC.
#[derive(Clone, Debug)]
pub struct Nic {
    /// Its name in the guest (`eth0`, ...).
    pub guest: String,
    /// Its MAC.
    pub mac: [u8; 6],
    /// The bridge its tap is enslaved to, in [`LinuxPeer::netns`].
    pub bridge: String,
}

/// A running Linux peer VM. Dropping it stops the VM and deletes its namespace (with whatever
/// was attached there).
pub struct LinuxPeer {
    ns: String,
    dir: PathBuf,
    child: Mutex<Child>,
    chan: Mutex<Channel>,
    nics: Vec<Nic>,
    boot_time: Duration,
    accel: Accel,
    kernel: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The prepared kernel and initramfs.
pub fn prepared_dir() -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/linux-peer"),
    }
}

/// `Some(reason)` when this machine cannot run the peer.
pub fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2));
    if euid != Some("0") {
        return Some(format!("not root (effective uid {euid:?}); namespaces and taps need root"));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(QEMU).is_file()))
        .unwrap_or(false);
    if !on_path {
        return Some(format!("{QEMU} not found (apt-get install qemu-system-x86)"));
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    let dir = prepared_dir();
    for f in ["vmlinuz", "initrd.gz", "VERSION"] {
        if !dir.join(f).is_file() {
            return Some(format!(
                "{} has no {f}: run `bash testing/linux-peer/prepare.sh` (downloads Debian's kernel)",
                dir.display()
            ));
        }
    }
    None
}

fn host_cmd(args: &[&str]) -> Result<String, Error> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Host(format!("{args:?}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Host(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

impl LinuxPeer {
    /// Boots the VM (its namespace, bridges and taps first) and waits for its first answer.
    pub fn boot(opts: &Options) -> Result<Self, BootError> {
        if let Some(why) = unavailable() {
            return Err(BootError::Skip(why));
        }
        match opts.accel {
            Accel::Tcg | Accel::Kvm => Self::boot_twice(opts, opts.accel, opts.boot_timeout),
            Accel::Auto => {
                let kvm = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
                if kvm && let Ok(peer) = Self::boot_with(opts, Accel::Kvm, Duration::from_secs(20)) {
                    return Ok(peer);
                }
                Self::boot_twice(opts, Accel::Tcg, opts.boot_timeout)
            }
        }
    }

    /// Boots, and once more after a failed boot: an emulated guest on a loaded host can fail in
    /// ways that have nothing to do with the test (a timer check missed, a boot timeout). The
    /// first failure is printed; a second one is returned.
    fn boot_twice(opts: &Options, accel: Accel, timeout: Duration) -> Result<Self, BootError> {
        match Self::boot_with(opts, accel, timeout) {
            Err(BootError::Failed(first)) => {
                eprintln!("linux peer: boot failed, trying once more: {first}");
                Self::boot_with(opts, accel, timeout)
            }
            r => r,
        }
    }

    /// [`LinuxPeer::boot`] for a test: `None` (printing why `test` is skipped) when the machine
    /// cannot run the peer — or a panic when `WIRESPEED_LINUX_PEER_REQUIRE` is set. A failed
    /// boot panics.
    pub fn for_test(opts: &Options, test: &str) -> Option<Self> {
        match Self::boot(opts) {
            Ok(p) => Some(p),
            Err(BootError::Skip(why)) => {
                if std::env::var_os(REQUIRE_ENV).is_some() {
                    panic!("{test}: the Linux peer cannot run and {REQUIRE_ENV} is set: {why}");
                }
                eprintln!("SKIPPED {test}: {why}");
                None
            }
            Err(e) => panic!("{test}: {e}"),
        }
    }

    fn boot_with(opts: &Options, accel: Accel, timeout: Duration) -> Result<Self, BootError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| BootError::Failed(format!("{what}: {e}"));
        let start = Instant::now();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", std::process::id());
        let ns = format!("wslp-{id}");
        let dir = std::env::temp_dir().join(format!("wirespeed-linux-peer-{id}"));
        let prepared = prepared_dir();
        let kernel = std::fs::read_to_string(prepared.join("VERSION")).unwrap_or_default().trim().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| fail("temporary directory", &e))?;
        host_cmd(&["ip", "netns", "add", &ns]).map_err(|e| fail("namespace", &e))?;
        // From here on, Drop cleans up.
        let mut nics = Vec::new();
        let setup = || -> Result<(), Error> {
            host_cmd(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            // The bridges and taps send nothing of their own (no IPv6 autoconfiguration).
            host_cmd(&["ip", "netns", "exec", &ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
            for i in 0..opts.nics {
                let br = format!("br{i}");
                host_cmd(&["ip", "-n", &ns, "link", "add", &br, "type", "bridge", "forward_delay", "0"])?;
                host_cmd(&["ip", "-n", &ns, "link", "set", &br, "up"])?;
            }
            Ok(())
        };
        // No core file when QEMU aborts (a KVM it cannot drive does that).
        let mut qemu = Command::new("sh");
        qemu.args(["-c", "ulimit -c 0; exec \"$@\"", "sh", "ip", "netns", "exec", &ns, QEMU]);
        qemu.args(["-nodefaults", "-no-user-config", "-nographic"]);
        qemu.args(["-display", "none", "-monitor", "none", "-no-reboot"]);
        match accel {
            Accel::Kvm => qemu.args(["-accel", "kvm", "-cpu", "host"]),
            _ => qemu.args(["-accel", "tcg", "-cpu", "max"]),
        };
        let p = |f: &str| prepared.join(f).display().to_string();
        let d = |f: &str| dir.join(f).display().to_string();
        qemu.args(["-smp", &opts.cpus.to_string(), "-m", &opts.memory_mib.to_string()]);
        // The unpacked kernel when prepare.sh made one (PVH entry: no firmware setup, no
        // decompression in the emulator), else the bzImage.
        let kernel_image = if prepared.join("vmlinux").is_file() { "vmlinux" } else { "vmlinuz" };
        qemu.args(["-kernel", &p(kernel_image), "-initrd", &p("initrd.gz")]);
        // edd=off: some hypervisors hang at "Probing EDD"; quiet: a serial console is slow on TCG;
        // no_timer_check: on a loaded host the emulated IO-APIC timer can miss the kernel's
        // calibration window and the guest panics ("IO-APIC + timer doesn't work!", seen in CI).
        qemu.args(["-append", "console=ttyS0 edd=off no_timer_check panic=-1 quiet"]);
        qemu.args(["-serial", &format!("file:{}", d("console.log"))]);
        qemu.args(["-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"]);
        qemu.args(["-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"]);
        qemu.args(["-device", "virtio-serial-pci"]);
        qemu.args(["-chardev", &format!("socket,id=cmd,path={},server=on,wait=off", d("cmd.sock"))]);
        qemu.args(["-device", "virtserialport,chardev=cmd,name=cmd"]);
        for i in 0..opts.nics {
            qemu.args(["-netdev", &format!("tap,id=n{i},ifname=tap{i},script=no,downscript=no")]);
            // Fixed PCI slots: eth0, eth1, ... in the guest follow them.
            let mac = mac_text(Options::mac(i));
            qemu.args([
                "-device",
                &format!("virtio-net-pci,netdev=n{i},mac={mac},addr={:#x},romfile=", 0x10 + i),
            ]);
        }
        let log = std::fs::File::create(dir.join("qemu.log")).map_err(|e| fail("qemu.log", &e))?;
        let log2 = log.try_clone().map_err(|e| fail("qemu.log", &e))?;
        qemu.stdin(Stdio::null()).stdout(log).stderr(log2);

        // A half-built peer, cleaned up by Drop when anything below fails.
        let placeholder = Command::new("true").spawn().map_err(|e| fail("spawn", &e))?;
        let (r, w) = UnixStream::pair().map_err(|e| fail("socketpair", &e))?;
        let mut peer = LinuxPeer {
            ns: ns.clone(),
            dir: dir.clone(),
            child: Mutex::new(placeholder),
            chan: Mutex::new(Channel { reader: BufReader::new(r), writer: w, next: 0, broken: None }),
            nics: Vec::new(),
            boot_time: Duration::ZERO,
            accel,
            kernel,
        };
        let _ = peer.child.get_mut().map(|c| c.wait());
        setup().map_err(|e| fail("namespace setup", &e))?;
        *peer.child.get_mut().unwrap() = qemu.spawn().map_err(|e| fail(QEMU, &e))?;

        // The taps appear once QEMU has parsed its options; the control socket with them.
        let deadline = start + timeout;
        let sock = dir.join("cmd.sock");
        let stream = loop {
            if let Ok(Some(status)) = peer.child.get_mut().unwrap().try_wait() {
                return Err(BootError::Failed(format!("{QEMU} exited ({status}): {}", peer.logs())));
            }
            if let Ok(s) = UnixStream::connect(&sock) {
                break s;
            }
            if Instant::now() > deadline {
                return Err(BootError::Failed(format!("no control socket: {}", peer.logs())));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The taps come after the socket (QEMU sets up netdevs later).
        for i in 0..opts.nics {
            let (tap, br) = (format!("tap{i}"), format!("br{i}"));
            while host_cmd(&["ip", "-n", &ns, "link", "show", &tap]).is_err() {
                if let Ok(Some(status)) = peer.child.get_mut().unwrap().try_wait() {
                    return Err(BootError::Failed(format!("{QEMU} exited ({status}): {}", peer.logs())));
                }
                if Instant::now() > deadline {
                    return Err(BootError::Failed(format!("no {tap}: {}", peer.logs())));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            host_cmd(&["ip", "-n", &ns, "link", "set", &tap, "master", &br, "up"])
                .map_err(|e| fail("tap", &e))?;
        }
        let writer = stream.try_clone().map_err(|e| fail("socket", &e))?;
        *peer.chan.get_mut().unwrap() =
            Channel { reader: BufReader::new(stream), writer, next: 0, broken: None };

        // The first command answers once the guest is up.
        let probe = "for d in /sys/class/net/*; do echo \"$(basename $d) $(cat $d/address)\"; done";
        let out = peer
            .chan
            .get_mut()
            .unwrap()
            .call(probe, Duration::from_secs(10), deadline)
            .map_err(|e| BootError::Failed(format!("{e} ({accel:?}); {}", peer.logs())))?;
        for i in 0..opts.nics {
            let mac = mac_text(Options::mac(i));
            let guest = out
                .stdout
                .lines()
                .find(|l| l.ends_with(&mac))
                .and_then(|l| l.split_whitespace().next())
                .ok_or_else(|| BootError::Failed(format!("no guest NIC with MAC {mac}: {}", out.stdout)))?;
            nics.push(Nic { guest: guest.into(), mac: Options::mac(i), bridge: format!("br{i}") });
        }
        peer.nics = nics;
        peer.boot_time = start.elapsed();
        Ok(peer)
    }

    /// The host namespace holding the VM's taps and bridges.
    pub fn netns(&self) -> &str {
        &self.ns
    }

    /// Guest NIC `i`.
    pub fn nic(&self, i: usize) -> &Nic {
        &self.nics[i]
    }

    /// From start to the first answer.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// The hypervisor it runs on.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The guest kernel's version (Debian's package).
    pub fn kernel(&self) -> &str {
        &self.kernel
    }

    /// Moves host interface `ifname` (in namespace `from`, or this one when `None`) into the
    /// peer's namespace and onto the bridge of guest NIC `nic`, up: frames it receives reach the
    /// guest's NIC and the other way round.
    pub fn attach(&self, nic: usize, from: Option<&str>, ifname: &str) -> Result<(), Error> {
        match from {
            Some(src) => host_cmd(&["ip", "-n", src, "link", "set", ifname, "netns", &self.ns])?,
            None => host_cmd(&["ip", "link", "set", ifname, "netns", &self.ns])?,
        };
        let br = &self.nics[nic].bridge;
        host_cmd(&["ip", "-n", &self.ns, "link", "set", ifname, "master", br, "up"])?;
        Ok(())
    }

    /// Runs `args` on the host inside the peer's namespace (`ip netns exec`), returning its
    /// standard output, or an error with its standard error when it fails.
    pub fn host(&self, args: &[&str]) -> Result<String, Error> {
        let mut all = vec!["ip", "netns", "exec", &self.ns];
        all.extend_from_slice(args);
        host_cmd(&all)
    }

    /// Runs shell script `script` in the guest (`/bin/sh` of the host's `/`, chrooted), killed
    /// after 60 s.
    pub fn run(&self, script: &str) -> Result<Output, Error> {
        self.run_timeout(script, Duration::from_secs(60))
    }

    /// [`LinuxPeer::run`] with the guest-side limit `limit` (the host waits 30 s longer).
    pub fn run_timeout(&self, script: &str, limit: Duration) -> Result<Output, Error> {
        let deadline = Instant::now() + limit + Duration::from_secs(30);
        let mut chan = self.chan.lock().unwrap_or_else(|p| p.into_inner());
        chan.call(script, limit, deadline)
    }

    /// [`LinuxPeer::run`], its output when it exits 0, else [`Error::Failed`].
    pub fn check(&self, script: &str) -> Result<String, Error> {
        let out = self.run(script)?;
        if out.code != 0 {
            return Err(Error::Failed { command: script.into(), code: out.code, output: out.stdout });
        }
        Ok(out.stdout)
    }

    /// The guest's `/proc/net/xfrm_stat`: every counter with its value.
    pub fn xfrm_stat(&self) -> Result<Vec<(String, u64)>, Error> {
        let text = self.check("cat /proc/net/xfrm_stat")?;
        let mut v = Vec::new();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            if let (Some(k), Some(n)) = (it.next(), it.next()) {
                let n = n.parse().map_err(|_| Error::Channel(format!("xfrm_stat line {line:?}")))?;
                v.push((k.to_string(), n));
            }
        }
        if v.is_empty() {
            return Err(Error::Channel(format!("empty xfrm_stat: {text:?}")));
        }
        Ok(v)
    }

    /// The end of the guest's console and QEMU's own messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["console.log", "qemu.log"] {
            let mut text = String::new();
            if let Ok(mut file) = std::fs::File::open(self.dir.join(f)) {
                let _ = file.read_to_string(&mut text);
            }
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            let _ = write!(s, "\n--- {f} (last {} lines)\n{}", tail.len(), tail.join("\n"));
        }
        s
    }
}

impl Drop for LinuxPeer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("linux peer {}:{}", self.ns, self.logs());
        }
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
