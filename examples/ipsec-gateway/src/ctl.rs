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
//! show sas                       (SAs mirrored from an IKE daemon are marked [xfrm]; with
//!                                [keying] source = "xfrm" each SA's packets and bytes follow,
//!                                SPI/out@SHARD[xfrm]:PACKETSp/BYTESB)
//! ```
//!
//! Rekeying is make-before-break. `sa rekey OLD { direction = "inbound", … }` installs the new
//! inbound SA next to the old one, which lingers for `grace` seconds (default 5) so packets
//! already sent under it still decrypt, then is removed. `sa rekey OLD { direction = "outbound",
//! shard = N, … }` switches every policy from OLD to the new SA in one epoch. A pair of peers
//! rekeys a tunnel by installing the new inbound SA on the receiver first, then switching the
//! sender's outbound SA.
//!
//! Every request is checked before it touches state and refused with an `error ...` reply,
//! never a panic: numbers are range-checked (`grace` is `0..=`[`MAX_GRACE`] seconds), and key
//! hygiene holds (SECURITY.md, "Key hygiene"): `sa add` and `sa rekey` refuse an SA whose SPI
//! is already live in its direction, whose key equals a live SA's key, or whose key was used
//! by any SA since the gateway started (a key installed again restarts its sequence numbers,
//! which are the AEAD nonces). At most [`MAX_SAS`] SAs are live, and `route add` /
//! `neighbor add` add at most [`MAX_ROUTES`] / [`MAX_NEIGHBORS`]. Route and neighbor changes are
//! made on a copy of the table and kept only if it builds and publishes (a refused request
//! leaves the table as it was); a route's next hop must be of its prefix's family, a neighbor
//! must not be an own address nor have a multicast MAC.
//!
//! The socket ([`CtlServer`]) is made `0600` (or `0660` with a group) whatever the umask, by
//! binding it in a private directory and renaming it into place; every connection's peer
//! credentials (`SO_PEERCRED`) must be root, the gateway's own user or the configured group.
//! Connections are capped ([`CtlOptions::max_connections`], one thread each at most), a request
//! line is at most [`CtlOptions::max_line`] bytes (longer: an error reply, then the connection is
//! closed) and must arrive within [`CtlOptions::idle_timeout`].

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use wirespeed_stages::esp::{Direction, PolicyAction, SaConfig, SecurityAssociation};
use wirespeed_stages::forward::NextHop;

use crate::config::{GatewayConfig, SaEntry, sa_from_entry};
use crate::gateway::Gateway;

/// Default time an old inbound SA lingers after a rekey.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Longest `grace=` a rekey accepts (seconds).
pub const MAX_GRACE: f64 = 3600.0;

/// Most SAs (both directions) live at once through the control socket.
pub const MAX_SAS: usize = 4096;

/// Most routes `route add` adds (beyond those of the configuration).
pub const MAX_ROUTES: usize = 65_536;

/// Most neighbors `neighbor add` adds (beyond those of the configuration).
pub const MAX_NEIGHBORS: usize = 65_536;

/// The control side's state between requests: old inbound SAs waiting for their grace period,
/// and the fingerprints ([`wirespeed_stages::esp::key_fingerprint`]) of every key an SA of this
/// gateway has used, so that no key is ever installed twice.
#[derive(Debug, Default)]
pub struct Control {
    lingering: Vec<(u32, Instant)>,
    /// Uids of the SAs mirrored from an IKE daemon (`[keying] source = "xfrm"`): `show sas`
    /// marks them `[xfrm]`.
    pub mirrored: Vec<u64>,
    used_keys: HashSet<u64>,
    routes_added: usize,
    neighbors_added: usize,
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
        // Every key live now has been used (the configuration's SAs on the first request).
        self.used_keys.extend(gw.sas().iter().map(|s| s.key_fingerprint()));
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
                let new = self.fresh_sa(gw, &sa, None)?;
                let mut sas = gw.sas().to_vec();
                sas.push(new);
                let v = gw.publish_sas(sas, gw.spd().clone()).map_err(e)?;
                self.used_keys.extend(gw.sas().iter().map(|s| s.key_fingerprint()));
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
                    t => parse_grace(t)?,
                };
                let new = sa_from_entry(cfg, &sa_table(&format!("{{{table}}}"), "sa rekey")?, "sa")
                    .map_err(|e| e.to_string())?;
                match new.direction {
                    Direction::Inbound => {
                        if !gw.sas().iter().any(|s| s.spi() == old && is_inbound(s)) {
                            return Err(format!("no inbound SA {old:#x}"));
                        }
                        if self.lingering.iter().any(|(s, _)| *s == old) {
                            return Err(format!("inbound SA {old:#x} is already being replaced"));
                        }
                        let new_sa = self.fresh_sa(gw, &new, None)?;
                        // Make: the new inbound SA joins the old one.
                        let mut sas = gw.sas().to_vec();
                        sas.push(new_sa);
                        let v = gw.publish_sas(sas, gw.spd().clone()).map_err(e)?;
                        self.used_keys.extend(gw.sas().iter().map(|s| s.key_fingerprint()));
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
                        let new_sa = self.fresh_sa(gw, &new, Some(old))?;
                        let new_sa_key = new_sa.key_fingerprint();
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
                        self.used_keys.insert(new_sa_key);
                        Ok(format!("outbound {old:#x} -> {:#x} on shard {shard}, epoch {v}", new.spi))
                    }
                }
            }
            ("route", "add") => {
                let (a, l) = prefix(words.next().ok_or("route add PREFIX [via ADDRESS]")?)?;
                let via = match (words.next(), words.next(), words.next()) {
                    (None, _, _) => NextHop::Direct,
                    (Some("via"), Some(v), None) => {
                        let v: std::net::IpAddr =
                            v.parse().map_err(|_| format!("via {v}: not an address"))?;
                        if v.is_ipv4() != a.is_ipv4() {
                            return Err(format!("via {v}: address family differs from {a}/{l}"));
                        }
                        NextHop::Gateway(v)
                    }
                    _ => return Err("route add PREFIX [via ADDRESS]".into()),
                };
                let mut replaced = false;
                let added = self.routes_added;
                let v = edit_routes(gw, |r| {
                    replaced = r.remove_route(a, l) > 0;
                    if !replaced && added >= MAX_ROUTES {
                        return Err(format!("{MAX_ROUTES} routes were added, remove some first"));
                    }
                    r.route(a, l, via).map(|_| ()).map_err(|e| e.to_string())
                })?;
                if !replaced {
                    self.routes_added += 1;
                }
                Ok(format!("route {a}/{l} set, epoch {v}"))
            }
            ("route", "remove") => {
                let (a, l) = prefix(words.next().ok_or("route remove PREFIX")?)?;
                let v = edit_routes(gw, |r| {
                    if r.remove_route(a, l) == 0 { Err(format!("no route {a}/{l}")) } else { Ok(()) }
                })?;
                self.routes_added = self.routes_added.saturating_sub(1);
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
                if mac[0] & 1 != 0 || mac == [0; 6] {
                    return Err(format!("{}: want a unicast, non-zero MAC", crate::config::to_hex(&mac)));
                }
                if cfg.own_addresses().contains(&ip) {
                    return Err(format!("{ip}: is this gateway's own address"));
                }
                if words.next().is_some() {
                    return Err("neighbor add ADDRESS MAC lan|wan".into());
                }
                let mut replaced = false;
                let added = self.neighbors_added;
                let v = edit_routes(gw, |r| {
                    replaced = r.remove_neighbor(ip);
                    if !replaced && added >= MAX_NEIGHBORS {
                        return Err(format!("{MAX_NEIGHBORS} neighbors were added, remove some first"));
                    }
                    r.neighbor(ip, mac, port);
                    Ok(())
                })?;
                if !replaced {
                    self.neighbors_added += 1;
                }
                Ok(format!("neighbor {ip} set, epoch {v}"))
            }
            ("neighbor", "remove") => {
                let ip = words.next().ok_or("neighbor remove ADDRESS")?;
                let ip: std::net::IpAddr = ip.parse().map_err(|_| format!("{ip}: not an address"))?;
                let v = edit_routes(gw, |r| {
                    if r.remove_neighbor(ip) { Ok(()) } else { Err(format!("no neighbor {ip}")) }
                })?;
                self.neighbors_added = self.neighbors_added.saturating_sub(1);
                Ok(format!("neighbor {ip} removed, epoch {v}"))
            }
            ("show", "sas") => {
                let list: Vec<String> = gw
                    .sas()
                    .iter()
                    .map(|s| {
                        let origin = if self.mirrored.contains(&s.uid()) { "[xfrm]" } else { "" };
                        // Counters as last collected from the shards ([keying] source = "xfrm").
                        let used = gw
                            .sa_usage_of(s.uid())
                            .map(|u| format!(":{}p/{}B", u.packets, u.bytes))
                            .unwrap_or_default();
                        match s.direction() {
                            Direction::Inbound => format!("{:#x}/in{origin}{used}", s.spi()),
                            Direction::Outbound { shard } => {
                                format!("{:#x}/out@{shard}{origin}{used}", s.spi())
                            }
                        }
                    })
                    .collect();
                Ok(list.join(" "))
            }
            _ => Err(format!("unknown request {line:?} (see `ipsec-gateway help`)")),
        }
    }
}

impl Control {
    /// Builds the SA of `new` after the key-hygiene checks: its SPI is not live in its direction
    /// (`replacing`, an outbound rekey's old SPI, included: the new SA needs its own), its key
    /// is not a live SA's nor any key used since start, and the SA count stays bounded.
    fn fresh_sa(
        &self,
        gw: &Gateway,
        new: &SaConfig,
        replacing: Option<u32>,
    ) -> Result<Arc<SecurityAssociation>, String> {
        let inbound = new.direction == Direction::Inbound;
        let dir = if inbound { "inbound" } else { "outbound" };
        if let Some(live) = gw.sas().iter().find(|s| s.spi() == new.spi && is_inbound(s) == inbound) {
            let what = if replacing == Some(live.spi()) { "the SA it replaces" } else { "a live SA" };
            return Err(format!(
                "sa.spi = {:#x}: {what} has this {dir} SPI; a new SA needs a new SPI",
                new.spi
            ));
        }
        if gw.sas().len() >= MAX_SAS {
            return Err(format!("sa.spi = {:#x}: {MAX_SAS} SAs are live, remove some first", new.spi));
        }
        let sa = SecurityAssociation::new(new).map_err(|e| e.to_string())?;
        let fp = sa.key_fingerprint();
        if let Some(live) = gw.sas().iter().find(|s| s.key_fingerprint() == fp) {
            return Err(format!(
                "sa.key = <{} bytes>: same key as live SA {:#x}; every SA needs its own key (nonce reuse)",
                new.keymat.len(),
                live.spi()
            ));
        }
        if self.used_keys.contains(&fp) {
            return Err(format!(
                "sa.key = <{} bytes>: this key was already used by an SA of this gateway; its \
                 sequence numbers (the nonces) would restart under it",
                new.keymat.len()
            ));
        }
        Ok(Arc::new(sa))
    }
}

/// Applies `edit` to a copy of the route table, checks that the copy builds, then publishes
/// it: a refused edit leaves the table as it was.
fn edit_routes(
    gw: &mut Gateway,
    edit: impl FnOnce(&mut wirespeed_stages::forward::FibBuilder) -> Result<(), String>,
) -> Result<u64, String> {
    let mut next = gw.routes_mut().clone();
    edit(&mut next)?;
    // `publish_routes` builds first and publishes nothing if the build fails.
    let before = std::mem::replace(gw.routes_mut(), next);
    gw.publish_routes().map_err(|e| {
        *gw.routes_mut() = before;
        e.to_string()
    })
}

/// `grace=SECONDS`: finite, `0..=MAX_GRACE`.
fn parse_grace(t: &str) -> Result<Duration, String> {
    let s = t.strip_prefix("grace=").ok_or_else(|| format!("{t}: want grace=SECONDS"))?;
    let g: f64 = s.parse().map_err(|_| format!("grace = {s}: not a number of seconds"))?;
    if !g.is_finite() || !(0.0..=MAX_GRACE).contains(&g) {
        return Err(format!("grace = {s}: want 0..={MAX_GRACE} seconds"));
    }
    Ok(Duration::from_secs_f64(g))
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

/// Limits and access of the control socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlOptions {
    /// Connections served at once (one thread each); more are answered with an error and
    /// closed.
    pub max_connections: usize,
    /// Longest request line in bytes; a longer one gets an error reply and the connection is
    /// closed.
    pub max_line: usize,
    /// A connection must deliver each request line within this time (idle connections are
    /// closed after it).
    pub idle_timeout: Duration,
    /// Group allowed to connect besides root and the gateway's own user: the socket is made
    /// `0660` and owned by it (else `0600`).
    pub group: Option<u32>,
}

impl Default for CtlOptions {
    fn default() -> Self {
        Self { max_connections: 8, max_line: 64 * 1024, idle_timeout: Duration::from_secs(30), group: None }
    }
}

/// The socket: accepts connections on a thread and forwards each request line to the loop that
/// owns the [`Gateway`] (which answers it between stats ticks).
#[derive(Debug)]
pub struct CtlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Binds `path` so that it never exists with a looser mode than `mode`: the socket is bound in
/// a fresh private (`0700`) directory beside it, given `mode` (and `group`), then renamed into
/// place. An existing socket file at `path` is replaced; any other file is an error.
fn bind_private(path: &Path, mode: u32, group: Option<u32>) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket; not replacing it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "names a directory, not a socket file")
    })?;
    let tmp_dir = parent.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp_dir);
    std::fs::DirBuilder::new().mode(0o700).create(&tmp_dir)?;
    let tmp = tmp_dir.join("s");
    let bound = (|| {
        let l = UnixListener::bind(&tmp)?;
        if let Some(g) = group {
            std::os::unix::fs::chown(&tmp, None, Some(g))?;
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)?;
        Ok(l)
    })();
    let _ = std::fs::remove_dir_all(&tmp_dir);
    bound
}

/// Whether the peer of `conn` may use the socket: root, the gateway's own user, or (primary)
/// group `group`. Where `SO_PEERCRED` is not available, the socket file's mode alone guards it.
fn peer_allowed(conn: &UnixStream, group: Option<u32>) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        let c = rustix::net::sockopt::socket_peercred(conn).map_err(|e| format!("peer credentials: {e}"))?;
        let (uid, gid) = (c.uid.as_raw(), c.gid.as_raw());
        if uid == 0 || uid == rustix::process::geteuid().as_raw() || group == Some(gid) {
            return Ok(());
        }
        Err(format!("permission denied (uid {uid}, gid {gid})"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (conn, group);
        Ok(())
    }
}

impl CtlServer {
    /// Listens on `path` with the default [`CtlOptions`]; requests arrive on the returned
    /// receiver.
    pub fn start(path: &Path) -> std::io::Result<(Self, Receiver<Request>)> {
        Self::start_with(path, CtlOptions::default())
    }

    /// Listens on `path` (an existing socket file is replaced) with `opts`; requests arrive on
    /// the returned receiver.
    pub fn start_with(path: &Path, opts: CtlOptions) -> std::io::Result<(Self, Receiver<Request>)> {
        let mode = if opts.group.is_some() { 0o660 } else { 0o600 };
        let listener = bind_private(path, mode, opts.group)?;
        listener.set_nonblocking(true)?;
        let (tx, rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let active = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new().name("ctl-socket".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_write_timeout(Some(opts.idle_timeout));
                if let Err(e) = peer_allowed(&conn, opts.group) {
                    let _ = writeln!(conn, "error {e}");
                    continue;
                }
                if active.load(Ordering::Acquire) >= opts.max_connections {
                    let _ = writeln!(
                        conn,
                        "error {} control connections are open; try again later",
                        opts.max_connections
                    );
                    continue;
                }
                active.fetch_add(1, Ordering::AcqRel);
                let (tx, done, opts, stop) = (tx.clone(), active.clone(), opts.clone(), flag.clone());
                let spawned = std::thread::Builder::new().name("ctl-conn".into()).spawn(move || {
                    serve(conn, &tx, &opts, &stop);
                    done.fetch_sub(1, Ordering::AcqRel);
                });
                if spawned.is_err() {
                    // The closure was dropped unrun: give its slot back.
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
        Ok((Self { path: path.to_path_buf(), stop, thread: Some(thread) }, rx))
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why reading a request line ended.
enum LineEnd {
    /// A whole line (without its newline).
    Line(Vec<u8>),
    /// Longer than the limit.
    TooLong,
    /// Closed, timed out, or an I/O error.
    Closed,
}

/// Reads one line of at most `max` bytes within `timeout` (for the whole line).
fn read_line(r: &mut BufReader<UnixStream>, max: usize, timeout: Duration) -> LineEnd {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || r.get_ref().set_read_timeout(Some(left)).is_err() {
            return LineEnd::Closed;
        }
        let room = (max + 1).saturating_sub(line.len()) as u64;
        match r.by_ref().take(room).read_until(b'\n', &mut line) {
            Ok(0) => return LineEnd::Closed,
            Ok(_) if line.last() == Some(&b'\n') => {
                line.pop();
                return LineEnd::Line(line);
            }
            Ok(_) if line.len() > max => return LineEnd::TooLong,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return LineEnd::Closed,
        }
    }
}

fn serve(conn: UnixStream, tx: &Sender<Request>, opts: &CtlOptions, stop: &AtomicBool) {
    let Ok(read) = conn.try_clone() else { return };
    let mut conn = conn;
    let mut reader = BufReader::with_capacity(8 * 1024, read);
    while !stop.load(Ordering::Relaxed) {
        let line = match read_line(&mut reader, opts.max_line, opts.idle_timeout) {
            LineEnd::Line(l) => l,
            LineEnd::TooLong => {
                let _ = writeln!(conn, "error request line longer than {} bytes; closing", opts.max_line);
                return;
            }
            LineEnd::Closed => return,
        };
        let Ok(line) = String::from_utf8(line) else {
            if writeln!(conn, "error request is not UTF-8 text").is_err() {
                return;
            }
            continue;
        };
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
        // One reply line, whatever the message holds.
        if writeln!(conn, "{}", reply.replace(['\n', '\r'], " ")).is_err() {
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
