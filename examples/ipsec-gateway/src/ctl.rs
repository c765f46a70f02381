//! Live updates through a Unix control socket: one request per line, one reply line each
//! (`ok ...` or `error ...`). Every change builds a new SA set or FIB and publishes it by epoch;
//! each shard adopts it at its next batch, so the data plane never stops.
//!
//! Requests (SA tables are written like `[[sa]]` entries of the configuration, as TOML inline
//! tables):
//!
//! ```text
//! sa add { spi = 0x4100, direction = "inbound", aead = "aes128gcm", key = "…", local = "…", remote = "…", policy = "…" }
//! sa remove SPI inbound|outbound
//! sa rekey OLD_SPI { …new SA… } [grace=SECONDS]
//! route add PREFIX [via ADDRESS]
//! route remove PREFIX
//! neighbor add ADDRESS MAC lan|wan
//! neighbor remove ADDRESS
//! show sas                       (SAs mirrored from an IKE daemon are marked [xfrm])
//! ```
//!
//! Rekeying is make-before-break. `sa rekey OLD { direction = "inbound", … }` installs the new
//! inbound SA next to the old one, which lingers for `grace` seconds (default 5) so packets
//! already sent under it still decrypt, then is removed. `sa rekey OLD { direction = "outbound",
//! shard = N, … }` switches every policy from OLD to the new SA in one epoch. A pair of peers
//! rekeys a tunnel by installing the new inbound SA on the receiver first, then switching the
//! sender's outbound SA.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use wirespeed_stages::esp::{Direction, PolicyAction, SecurityAssociation};
use wirespeed_stages::forward::NextHop;

use crate::config::{GatewayConfig, SaEntry, sa_from_entry};
use crate::gateway::Gateway;

/// Default time an old inbound SA lingers after a rekey.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The control side's state between requests: old inbound SAs waiting for their grace period.
#[derive(Debug, Default)]
pub struct Control {
    lingering: Vec<(u32, Instant)>,
    /// Uids of the SAs mirrored from an IKE daemon (`[keying] source = "xfrm"`): `show sas`
    /// marks them `[xfrm]`.
    pub mirrored: Vec<u64>,
}

fn sa_table(text: &str, key: &str) -> Result<SaEntry, String> {
    #[derive(serde::Deserialize)]
    struct One {
        sa: SaEntry,
    }
    toml::from_str::<One>(&format!("sa = {text}"))
        .map(|o| o.sa)
        .map_err(|e| format!("{key}: {}", e.message()))
}

fn prefix(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (a, l) = s.split_once('/').ok_or_else(|| format!("{s}: want address/length"))?;
    let a: std::net::IpAddr = a.parse().map_err(|_| format!("{s}: not an address"))?;
    let l: u8 = l.parse().map_err(|_| format!("{s}: bad prefix length"))?;
    Ok((a, l))
}

impl Control {
    /// Applies one request line to `gw`; returns the reply line.
    pub fn handle(&mut self, gw: &mut Gateway, cfg: &GatewayConfig, line: &str) -> String {
        match self.apply(gw, cfg, line.trim()) {
            Ok(msg) => format!("ok {msg}"),
            Err(e) => format!("error {e}"),
        }
    }

    /// Removes lingering inbound SAs whose grace period has passed; returns their SPIs.
    pub fn tick(&mut self, gw: &mut Gateway, now: Instant) -> Vec<u32> {
        let (due, keep): (Vec<_>, Vec<_>) = self.lingering.drain(..).partition(|(_, t)| *t <= now);
        self.lingering = keep;
        let spis: Vec<u32> = due.into_iter().map(|(s, _)| s).collect();
        if !spis.is_empty() {
            let sas = gw
                .sas()
                .iter()
                .filter(|s| !(s.direction() == Direction::Inbound && spis.contains(&s.spi())))
                .cloned()
                .collect();
            let spd = gw.spd().clone();
            if let Err(e) = gw.publish_sas(sas, spd) {
                eprintln!("ctl: removing rekeyed inbound SAs {spis:x?}: {e}");
            }
        }
        spis
    }

    fn apply(&mut self, gw: &mut Gateway, cfg: &GatewayConfig, line: &str) -> Result<String, String> {
        let mut words = line.split_whitespace();
        let (what, verb) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let rest = line.splitn(3, char::is_whitespace).nth(2).unwrap_or("").trim();
        let e = |e: crate::gateway::BuildError| e.to_string();
        match (what, verb) {
            ("sa", "add") => {
                let sa = sa_from_entry(cfg, &sa_table(rest, "sa add")?, "sa").map_err(|e| e.to_string())?;
                let v = gw.add_sa(&sa).map_err(e)?;
                Ok(format!("sa {:#x} added, epoch {v}", sa.spi))
            }
            ("sa", "remove") => {
                let spi = parse_spi(words.next())?;
                let inbound = match words.next() {
                    Some("inbound") => true,
                    Some("outbound") => false,
                    other => {
                        return Err(format!(
                            "sa remove {spi:#x} {}: want inbound or outbound",
                            other.unwrap_or("")
                        ));
                    }
                };
                if !inbound && let Some(p) = policy_using(gw, spi) {
                    return Err(format!("outbound SA {spi:#x} is used by policy {p}; rekey it instead"));
                }
                let before = gw.sas().len();
                let sas: Vec<_> = gw
                    .sas()
                    .iter()
                    .filter(|s| !(s.spi() == spi && is_inbound(s) == inbound))
                    .cloned()
                    .collect();
                if sas.len() == before {
                    return Err(format!("no {} SA {spi:#x}", if inbound { "inbound" } else { "outbound" }));
                }
                let v = gw.publish_sas(sas, gw.spd().clone()).map_err(e)?;
                Ok(format!("sa {spi:#x} removed, epoch {v}"))
            }
            ("sa", "rekey") => {
                let old = parse_spi(words.next())?;
                let after_spi = line.split_once("{").map(|(_, r)| r).ok_or("sa rekey OLD_SPI { new SA }")?;
                let (table, tail) = after_spi.rsplit_once('}').ok_or("sa rekey: unclosed {")?;
                let grace = match tail.trim() {
                    "" => DEFAULT_GRACE,
                    t => {
                        let s = t.strip_prefix("grace=").ok_or_else(|| format!("{t}: want grace=SECONDS"))?;
                        Duration::from_secs_f64(
                            s.parse::<f64>().map_err(|_| format!("grace={s}: not seconds"))?,
                        )
                    }
                };
                let new = sa_from_entry(cfg, &sa_table(&format!("{{{table}}}"), "sa rekey")?, "sa")
                    .map_err(|e| e.to_string())?;
                match new.direction {
                    Direction::Inbound => {
                        if !gw.sas().iter().any(|s| s.spi() == old && is_inbound(s)) {
                            return Err(format!("no inbound SA {old:#x}"));
                        }
                        // Make: the new inbound SA joins the old one.
                        let v = gw.add_sa(&new).map_err(e)?;
                        self.lingering.push((old, Instant::now() + grace));
                        Ok(format!(
                            "inbound {:#x} installed (epoch {v}); {old:#x} removed in {:.1} s",
                            new.spi,
                            grace.as_secs_f64()
                        ))
                    }
                    Direction::Outbound { shard } => {
                        let Some(old_sa) = gw.sas().iter().find(|s| s.spi() == old && !is_inbound(s)) else {
                            return Err(format!("no outbound SA {old:#x}"));
                        };
                        if old_sa.direction() != (Direction::Outbound { shard }) {
                            return Err(format!(
                                "new SA is for shard {shard}, {old:#x} belongs to {:?}",
                                old_sa.direction()
                            ));
                        }
                        let new_sa = Arc::new(SecurityAssociation::new(&new).map_err(|e| e.to_string())?);
                        let mut sas: Vec<_> =
                            gw.sas().iter().filter(|s| s.spi() != old || is_inbound(s)).cloned().collect();
                        sas.push(new_sa);
                        let mut spd = gw.spd().clone();
                        for p in &mut spd.policies {
                            if let PolicyAction::Protect { spis } = &mut p.action {
                                for s in spis.iter_mut().filter(|s| **s == old) {
                                    *s = new.spi;
                                }
                            }
                        }
                        // Break: one epoch switches every policy to the new SA.
                        let v = gw.publish_sas(sas, spd).map_err(e)?;
                        Ok(format!("outbound {old:#x} -> {:#x} on shard {shard}, epoch {v}", new.spi))
                    }
                }
            }
            ("route", "add") => {
                let (a, l) = prefix(words.next().ok_or("route add PREFIX [via ADDRESS]")?)?;
                let via = match (words.next(), words.next()) {
                    (None, _) => NextHop::Direct,
                    (Some("via"), Some(v)) => {
                        NextHop::Gateway(v.parse().map_err(|_| format!("via {v}: not an address"))?)
                    }
                    _ => return Err("route add PREFIX [via ADDRESS]".into()),
                };
                let r = gw.routes_mut();
                r.remove_route(a, l);
                r.route(a, l, via).map_err(|e| e.to_string())?;
                let v = gw.publish_routes().map_err(e)?;
                Ok(format!("route {a}/{l} set, epoch {v}"))
            }
            ("route", "remove") => {
                let (a, l) = prefix(words.next().ok_or("route remove PREFIX")?)?;
                if gw.routes_mut().remove_route(a, l) == 0 {
                    return Err(format!("no route {a}/{l}"));
                }
                let v = gw.publish_routes().map_err(e)?;
                Ok(format!("route {a}/{l} removed, epoch {v}"))
            }
            ("neighbor", "add") => {
                let (ip, mac, side) = (words.next(), words.next(), words.next());
                let (Some(ip), Some(mac), Some(side)) = (ip, mac, side) else {
                    return Err("neighbor add ADDRESS MAC lan|wan".into());
                };
                let ip: std::net::IpAddr = ip.parse().map_err(|_| format!("{ip}: not an address"))?;
                let mac = crate::config::parse_mac(mac).ok_or_else(|| format!("{mac}: not a MAC"))?;
                let port = match side {
                    "lan" => 0,
                    "wan" => 1,
                    s => return Err(format!("{s}: want lan or wan")),
                };
                gw.routes_mut().neighbor(ip, mac, port);
                let v = gw.publish_routes().map_err(e)?;
                Ok(format!("neighbor {ip} set, epoch {v}"))
            }
            ("neighbor", "remove") => {
                let ip = words.next().ok_or("neighbor remove ADDRESS")?;
                let ip: std::net::IpAddr = ip.parse().map_err(|_| format!("{ip}: not an address"))?;
                if !gw.routes_mut().remove_neighbor(ip) {
                    return Err(format!("no neighbor {ip}"));
                }
                let v = gw.publish_routes().map_err(e)?;
                Ok(format!("neighbor {ip} removed, epoch {v}"))
            }
            ("show", "sas") => {
                let list: Vec<String> = gw
                    .sas()
                    .iter()
                    .map(|s| {
                        let origin = if self.mirrored.contains(&s.uid()) { "[xfrm]" } else { "" };
                        match s.direction() {
                            Direction::Inbound => format!("{:#x}/in{origin}", s.spi()),
                            Direction::Outbound { shard } => format!("{:#x}/out@{shard}{origin}", s.spi()),
                        }
                    })
                    .collect();
                Ok(list.join(" "))
            }
            _ => Err(format!("unknown request {line:?} (see `ipsec-gateway help`)")),
        }
    }
}

fn is_inbound(s: &SecurityAssociation) -> bool {
    s.direction() == Direction::Inbound
}

fn policy_using(gw: &Gateway, spi: u32) -> Option<usize> {
    gw.spd()
        .policies
        .iter()
        .position(|p| matches!(&p.action, PolicyAction::Protect { spis } if spis.contains(&spi)))
}

fn parse_spi(s: Option<&str>) -> Result<u32, String> {
    let s = s.ok_or("missing SPI")?;
    let r = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s}: not an SPI"))
}

/// A request from a socket connection and where its reply goes.
pub type Request = (String, Sender<String>);

/// The socket: accepts connections on a thread and forwards each request line to the loop that
/// owns the [`Gateway`] (which answers it between stats ticks).
#[derive(Debug)]
pub struct CtlServer {
    path: PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CtlServer {
    /// Listens on `path` (an existing socket file is replaced); requests arrive on the returned
    /// receiver.
    pub fn start(path: &Path) -> std::io::Result<(Self, Receiver<Request>)> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_socket()
        }) {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let (tx, rx) = channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("ctl-socket".into()).spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let tx = tx.clone();
                        let _ = std::thread::Builder::new()
                            .name("ctl-conn".into())
                            .spawn(move || serve(conn, tx));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })?;
        Ok((Self { path: path.to_path_buf(), stop, thread: Some(thread) }, rx))
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(conn: UnixStream, tx: Sender<Request>) {
    let Ok(read) = conn.try_clone() else { return };
    let mut conn = conn;
    for line in BufReader::new(read).lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let (rtx, rrx) = channel();
        if tx.send((line, rtx)).is_err() {
            return;
        }
        let reply = rrx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| "error gateway not answering".into());
        if writeln!(conn, "{reply}").is_err() {
            return;
        }
    }
}

/// Client side (`ipsec-gateway ctl SOCKET REQUEST`): sends each request line, returns the
/// replies in order.
pub fn request(socket: &Path, lines: &[String]) -> std::io::Result<Vec<String>> {
    let conn = UnixStream::connect(socket)?;
    conn.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let mut replies = Vec::new();
    for l in lines {
        writeln!(w, "{l}")?;
        let mut reply = String::new();
        r.read_line(&mut reply)?;
        replies.push(reply.trim_end().to_string());
    }
    Ok(replies)
}
