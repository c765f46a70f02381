//! Packets per second forwarded back out through AF_XDP on a veth pair, and the kernel's own IPv4
//! forwarding between the same two namespaces as the reference. Root only; run through
//! `tools/afxdp-bench.sh`, or directly:
//!
//! ```text
//! cargo run --release -p wirespeed-afxdp --example afxdp_bench -- MODE [SECONDS] [FRAME_BYTES]
//! MODE: afxdp-copy | afxdp-skb | afxdp-zerocopy | kernel
//! ```
//!
//! Two namespaces joined by a veth: `G` (generator) and `R` (reflector). The generator is itself
//! an AF_XDP port on G's end (driver-mode XDP, copy-mode socket), pinned to the last CPU: it
//! keeps its Tx ring full of UDP frames addressed to R and counts what comes back. The reflector
//! is either a wirespeed pipeline on an AF_XDP port on R's end (one shard pinned to CPU 0,
//! swapping MAC addresses and sending each frame back out of the queue it came in on), or, for
//! `kernel`, Linux routing the frames back to G (ip_forward, a route via G, static neighbor).

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("afxdp_bench: AF_XDP is Linux only");
}

#[cfg(target_os = "linux")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    linux::main()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::process::Command;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use wirespeed_afxdp::peer::enter_netns;
    use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig, XdpMode};
    use wirespeed_core::backend::null::ipv4_header_checksum;
    use wirespeed_core::{Batch, PacketBuf, PerPacket, Port, RxQueue, ShardCtx, TxQueue, Verdict};

    fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn sysctl(ns: &str, kv: &str) {
        ip(&["netns", "exec", ns, "sysctl", "-qw", kv]);
    }

    /// The two namespaces and the veth between them; `Drop` deletes both namespaces (and the veth).
    struct Wire {
        r_ns: String,
        g_ns: String,
        r_dev: String,
        g_dev: String,
    }

    impl Wire {
        fn new() -> Self {
            let id = std::process::id() % 100_000;
            let w = Wire {
                r_ns: format!("wsb-r-{id}"),
                g_ns: format!("wsb-g-{id}"),
                r_dev: format!("wsb{id}r"),
                g_dev: format!("wsb{id}g"),
            };
            ip(&["netns", "add", &w.r_ns]);
            ip(&["netns", "add", &w.g_ns]);
            ip(&[
                "link", "add", &w.r_dev, "netns", &w.r_ns, "type", "veth", "peer", "name", &w.g_dev, "netns",
                &w.g_ns,
            ]);
            for (ns, dev) in [(&w.r_ns, &w.r_dev), (&w.g_ns, &w.g_dev)] {
                sysctl(ns, &format!("net.ipv6.conf.{dev}.disable_ipv6=1"));
                ip(&["-n", ns, "link", "set", dev, "up"]);
            }
            w
        }

        fn mac(ns: &str, dev: &str) -> [u8; 6] {
            let out =
                Command::new("ip").args(["-n", ns, "-o", "link", "show", dev]).output().expect("run ip");
            let text = String::from_utf8_lossy(&out.stdout);
            let hex =
                text.split("link/ether ").nth(1).and_then(|s| s.split_whitespace().next()).expect("a MAC");
            let v: Vec<u8> = hex.split(':').map(|b| u8::from_str_radix(b, 16).expect("hex")).collect();
            v.try_into().expect("6 bytes")
        }
    }

    impl Drop for Wire {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.r_ns]).output();
            let _ = Command::new("ip").args(["netns", "del", &self.g_ns]).output();
        }
    }

    fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
        let len = len.max(60);
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        let ip_len = (len - 14) as u16;
        f.extend_from_slice(&[0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[10, 1, 0, 2, 10, 2, 0, 9]);
        let c = ipv4_header_checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let udp_len = ip_len - 20;
        f.extend_from_slice(&[0x30, 0x39, 0x13, 0x89, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
        f.resize(len, 0x5a);
        f
    }

    /// CPU seconds (user + system) this process has used, all threads: the reflector's polling,
    /// the generator, and the kernel's forwarding work done in their system calls' softirq context.
    fn process_cpu_secs(ticks_per_sec: f64) -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the `(comm)`, which may contain spaces: utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
        (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / ticks_per_sec
    }

    fn pin(cpu: usize) {
        let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }

    pub fn main() -> Result<(), Box<dyn std::error::Error>> {
        let args: Vec<String> = std::env::args().collect();
        let mode = args.get(1).map(String::as_str).unwrap_or("afxdp-copy").to_string();
        let seconds: f64 = args.get(2).map_or(Ok(5.0), |s| s.parse())?;
        let size: usize = args.get(3).map_or(Ok(64), |s| s.parse())?;
        let reflector_mode = match mode.as_str() {
            "afxdp-copy" => Some(XdpMode::Copy),
            "afxdp-skb" => Some(XdpMode::Skb),
            "afxdp-zerocopy" => Some(XdpMode::Zerocopy),
            "kernel" => None,
            other => return Err(format!("unknown mode {other}").into()),
        };
        wirespeed_afxdp::probe()?;
        let cpus = core_affinity::get_core_ids().map_or(1, |c| c.len());
        let gen_cpu = cpus.saturating_sub(1);
        let wire = Arc::new(Wire::new());
        let (r_mac, g_mac) = (Wire::mac(&wire.r_ns, &wire.r_dev), Wire::mac(&wire.g_ns, &wire.g_dev));
        let stop = Arc::new(AtomicBool::new(false));

        let reflector = match reflector_mode {
            None => {
                ip(&["-n", &wire.r_ns, "addr", "add", "10.1.0.1/24", "dev", &wire.r_dev]);
                ip(&["-n", &wire.g_ns, "addr", "add", "10.1.0.2/24", "dev", &wire.g_dev]);
                for kv in [
                    "net.ipv4.ip_forward=1",
                    "net.ipv4.conf.all.send_redirects=0",
                    "net.ipv4.conf.all.rp_filter=0",
                ] {
                    sysctl(&wire.r_ns, kv);
                }
                sysctl(&wire.r_ns, &format!("net.ipv4.conf.{}.send_redirects=0", wire.r_dev));
                sysctl(&wire.r_ns, &format!("net.ipv4.conf.{}.rp_filter=0", wire.r_dev));
                ip(&["-n", &wire.r_ns, "route", "add", "10.2.0.0/24", "via", "10.1.0.2"]);
                let g = g_mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
                ip(&[
                    "-n",
                    &wire.r_ns,
                    "neigh",
                    "replace",
                    "10.1.0.2",
                    "lladdr",
                    &g,
                    "dev",
                    &wire.r_dev,
                    "nud",
                    "permanent",
                ]);
                println!("reflector: kernel IPv4 forwarding in {}", wire.r_ns);
                None
            }
            Some(m) => {
                let (w, stop) = (wire.clone(), stop.clone());
                let (ready_tx, ready_rx) = std::sync::mpsc::channel();
                let h = std::thread::spawn(move || {
                    pin(0);
                    enter_netns(&w.r_ns).expect("enter reflector namespace");
                    let mut cfg = AfXdpPortConfig::new(&w.r_dev);
                    cfg.mode = m;
                    let opened = AfXdpPort::open(cfg)
                        .map_err(|e| e.to_string())
                        .and_then(|mut p| p.queue_pair(0).map(|q| (p, q)).map_err(|e| e.to_string()));
                    let (port, (rx, tx)) = match opened {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return 0;
                        }
                    };
                    let _ = ready_tx.send(Ok(port.report().to_string()));
                    // The pipeline's loop by hand, to read the socket's kernel counters at the end.
                    let (mut rx, mut tx) = (rx, tx);
                    let mut swap = PerPacket(|_: &mut ShardCtx, p: &mut wirespeed_afxdp::XdpBuf| {
                        let d = p.data_mut();
                        for i in 0..6 {
                            d.swap(i, i + 6);
                        }
                        Verdict::Continue
                    });
                    let mut cx = ShardCtx::new(0);
                    let mut batch = Batch::new();
                    while !stop.load(Ordering::Relaxed) {
                        if rx.rx_burst(&mut batch) == 0 {
                            continue;
                        }
                        wirespeed_core::Stage::process(&mut swap, &mut cx, &mut batch);
                        let n = batch.len();
                        let sent = tx.tx_burst(&mut batch);
                        cx.counters.tx_packets += sent as u64;
                        cx.counters.drop_packets(wirespeed_core::DropReason::TxFull, (n - sent) as u64);
                        batch.clear();
                    }
                    if let Ok(st) = rx.socket_stats() {
                        println!(
                            "reflector socket: {st:?}; tx ring full drops {}",
                            cx.counters.total_drops()
                        );
                    }
                    cx.counters.tx_packets
                });
                match ready_rx.recv()? {
                    Ok(report) => println!("reflector: {report}"),
                    Err(e) => {
                        let _ = h.join();
                        return Err(e.into());
                    }
                }
                Some(h)
            }
        };

        let tck = Command::new("getconf").arg("CLK_TCK").output().ok();
        let ticks: f64 =
            tck.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0);
        let w = wire.clone();
        let generator = std::thread::spawn(move || -> Result<(u64, u64, f64, f64, String), String> {
            pin(gen_cpu);
            enter_netns(&w.g_ns).map_err(|e| e.to_string())?;
            let mut cfg = AfXdpPortConfig::new(&w.g_dev);
            cfg.mode = XdpMode::Copy;
            let mut port = AfXdpPort::open(cfg).map_err(|e| e.to_string())?;
            let (mut rx, mut tx) = port.queue_pair(0).map_err(|e| e.to_string())?;
            let tmpl = frame(r_mac, g_mac, size);
            let (mut rxb, mut txb) = (Batch::new(), Batch::new());
            let mut run = |d: Duration| {
                let (mut sent, mut got) = (0u64, 0u64);
                let start = Instant::now();
                while start.elapsed() < d {
                    for _ in 0..64 {
                        got += rx.rx_burst(&mut rxb) as u64;
                        rxb.clear();
                        while !txb.is_full() {
                            let Some(mut b) = tx.alloc() else { break };
                            if b.copy_from(&tmpl).is_err() || txb.push(b).is_err() {
                                break;
                            }
                        }
                        sent += tx.tx_burst(&mut txb) as u64;
                    }
                }
                (sent, got, start.elapsed().as_secs_f64())
            };
            run(Duration::from_millis(500)); // warm-up: rings, ARP-free path, caches
            let cpu0 = process_cpu_secs(ticks);
            let (sent, got, secs) = run(Duration::from_secs_f64(seconds));
            let cpu = process_cpu_secs(ticks) - cpu0;
            Ok((sent, got, secs, cpu, port.report().to_string()))
        });
        let result = generator.join().map_err(|_| "generator panicked")?;
        stop.store(true, Ordering::Relaxed);
        let reflected = reflector.map(|h| h.join().unwrap_or(0));
        let (sent, got, secs, cpu, gen_report) = result?;
        println!("generator: {gen_report}");
        println!(
            "{mode}: {size}-byte frames, {secs:.1} s: offered {:.3} Mpps, forwarded back {:.3} Mpps ({:.1}% of offered), \
             {cpu:.2} CPU-s used by the process = {:.2} µs CPU per forwarded packet{}",
            sent as f64 / secs / 1e6,
            got as f64 / secs / 1e6,
            100.0 * got as f64 / sent.max(1) as f64,
            cpu * 1e6 / got.max(1) as f64,
            reflected.map(|n| format!("; reflector sent {n} in total")).unwrap_or_default()
        );
        Ok(())
    }
}
