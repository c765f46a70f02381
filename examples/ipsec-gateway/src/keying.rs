//! `[keying]`: where SAs come from besides the static `[[sa]]` tables.
//!
//! ```toml
//! [keying]
//! source = "xfrm"          # "static" (default): only [[sa]]; "xfrm": also an IKE daemon's SAs
//! if_ids = [42]            # strongSwan if_id_in/if_id_out of the connections the gateway carries
//! marks = ["0x42/0xff"]    # or marks (value/mask)
//! acquire_holdoff = 1      # seconds between two ACQUIREs of one policy
//! counters_interval = 10   # seconds between two counter reports (NEWAE), 1..=3600
//! reqid_shards = [{ reqid = 9, shard = 1 }]  # the shard owning reqid 9's outbound SAs
//! pcpu_shards = [0, 1]     # per-CPU SAs (RFC 9611): CPU n's SA on shard pcpu_shards[n % len]
//! hold_unknown_spi = { packets = 64, ms = 50 }  # hold ESP for an SPI not yet mirrored
//! ```
//!
//! **Rekeys.** The IKE daemon installs a rekeyed inbound SA in the kernel and answers its peer,
//! which may send ESP on the new SPI at once; the mirrored SA reaches the data shards a little
//! later. `hold_unknown_spi` makes each data shard hold up to `packets` ESP packets (0..=4096)
//! whose SPI has no SA yet for up to `ms` milliseconds (0..=1000), and decrypt them as soon as
//! the SA is published; those whose SA does not come in time are dropped as `esp_no_sa`
//! ([`wirespeed_stages::esp::EspDecrypt::with_unknown_spi_hold`]). `packets = 0` or `ms = 0`
//! turns it off. Default: on (64 packets, 50 ms) with `source = "xfrm"`, off with `"static"`
//! (static SAs are all there before the first packet; an unknown SPI is a stale or forged
//! packet, dropped at once).
//!
//! **Shards.** Each data shard encrypts only with outbound SAs it owns (the same rule as static
//! SAs: one outbound SA per shard and policy); a packet of a protect policy on a shard without
//! its SA is dropped as `EspNoSa`, never sent in clear. A mirrored outbound SA without CPU is
//! owned by its reqid's shard (`reqid_shards`, else `reqid % shards`), so an IKE rekey (new SA,
//! same reqid, old one deleted later) stays on that shard and loses nothing; with more than one
//! shard, steer the policy's LAN traffic to that shard (a `[[steering.rules]]` entry on the
//! policy's selector, `action = { queue = SHARD }`), as the steering plan steers anything else.
//! Per-CPU SAs (`XFRMA_SA_PCPU`, Linux 6.13+ and an IKE daemon that negotiates them, strongSwan
//! `per_cpu_sas`) need no steering: each CPU's SA goes to a shard (`pcpu_shards`, else
//! `n % shards`), a policy has one SA on each shard that got one, and shards without use the SA
//! without CPU where they own it.
//!
//! With `source = "xfrm"` the gateway mirrors the kernel's XFRM SAs and policies scoped to it
//! (`wirespeed-xfrm`; needs `CAP_NET_ADMIN`) next to the static ones: mirrored SAs join the SA
//! table, mirrored `dir out` policies follow the static policies in the SPD, both through the
//! same epoch publish as the control socket. Data-plane lifetime events become `EXPIRE`s, protect
//! policies without SA `ACQUIRE`s, both relayed by the kernel to the daemon. Every
//! `counters_interval` the gateway collects each SA's packets, bytes and last use from the
//! data shards ([`Gateway::request_sa_usage`]) and pushes the totals of every mirrored SA to the
//! kernel as `XFRM_MSG_NEWAE` (replace semantics: totals, never increments), where the daemon
//! reads them (`swanctl --list-sas`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use wirespeed_stages::esp::{Direction, SaEvent, SaEventKind, SecurityAssociation, SecurityPolicy};
use wirespeed_xfrm::mirror::SaKey;
use wirespeed_xfrm::msg::Builder;
use wirespeed_xfrm::wire::Mark;
use wirespeed_xfrm::{Feedback, Mirror, MirrorConfig, SaCounters, Scope};

use crate::config::{ConfigError, GatewayConfig};
use crate::gateway::{Gateway, SaUsage};

/// A shard-clock instant as seconds since the Unix epoch, given a (monotonic, wall) pair read
/// at one moment.
pub fn unix_seconds(t: Instant, now: (Instant, SystemTime)) -> u64 {
    let wall = now.1.checked_sub(now.0.saturating_duration_since(t)).unwrap_or(UNIX_EPOCH);
    wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `[keying]` as written.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeyingSection {
    /// `"static"` or `"xfrm"`.
    pub source: String,
    /// if_ids owned by the data plane.
    pub if_ids: Vec<u32>,
    /// Marks owned by the data plane, `"VALUE/MASK"` (hex with `0x` or decimal).
    pub marks: Vec<String>,
    /// Seconds between two ACQUIREs of one policy.
    pub acquire_holdoff: f64,
    /// Seconds between two counter reports (`NEWAE`) to the kernel.
    pub counters_interval: f64,
    /// The shard owning each listed reqid's outbound SAs (others: `reqid % shards`).
    pub reqid_shards: Vec<ReqidShard>,
    /// Per-CPU SAs: CPU `n`'s SA goes to shard `pcpu_shards[n % len]` (empty: `n % shards`).
    pub pcpu_shards: Vec<usize>,
    /// Holding ESP packets whose SPI has no SA yet (absent: [`HoldUnknownSpi::DEFAULT_XFRM`]
    /// with `source = "xfrm"`, off with `"static"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_unknown_spi: Option<HoldUnknownSpi>,
}

/// `[keying] hold_unknown_spi`: ESP packets whose SPI has no SA yet held per data shard.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HoldUnknownSpi {
    /// Packets held at most per data shard, 0..=4096 (0: off).
    pub packets: usize,
    /// Milliseconds a packet waits for its SA, 0..=1000 (0: off).
    pub ms: u64,
}

impl HoldUnknownSpi {
    /// The default with `source = "xfrm"`: 64 packets, 50 ms.
    pub const DEFAULT_XFRM: Self = Self { packets: 64, ms: 50 };
    /// Range of `packets`.
    pub const PACKETS: std::ops::RangeInclusive<usize> = 0..=wirespeed_stages::esp::MAX_SPI_HOLD_PACKETS;
    /// Range of `ms`.
    pub const MS: std::ops::RangeInclusive<u64> = 0..=1000;
}

/// One `[keying] reqid_shards` entry.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReqidShard {
    /// The reqid (strongSwan `reqid`, or the one charon assigns: `swanctl --list-sas`).
    pub reqid: u32,
    /// The data shard owning its outbound SAs.
    pub shard: usize,
}

/// Range of `[keying] counters_interval`, seconds: at least one second (each report is one
/// netlink message per mirrored SA), at most an hour (the daemon's view of the counters, and of
/// byte-based lifetimes it checks itself, lags by up to this).
pub const COUNTERS_INTERVAL: std::ops::RangeInclusive<f64> = 1.0..=3600.0;

impl Default for KeyingSection {
    fn default() -> Self {
        Self {
            source: "static".into(),
            if_ids: vec![],
            marks: vec![],
            acquire_holdoff: 1.0,
            counters_interval: 10.0,
            reqid_shards: vec![],
            pcpu_shards: vec![],
            hold_unknown_spi: None,
        }
    }
}

/// Where SAs come from.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Keying {
    /// Only `[[sa]]` and the control socket.
    #[default]
    Static,
    /// Also an IKE daemon, through the kernel's XFRM database.
    Xfrm(XfrmKeying),
}

/// `source = "xfrm"`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct XfrmKeying {
    /// What belongs to the gateway.
    pub scope: Scope,
    /// Between two ACQUIREs of one policy.
    pub acquire_holdoff: Duration,
    /// Between two counter reports.
    pub counters_interval: Duration,
    /// The shard owning each listed reqid's outbound SAs.
    pub reqid_shards: std::collections::BTreeMap<u32, usize>,
    /// CPU `n`'s per-CPU SA goes to `pcpu_shards[n % len]` (empty: every data shard in turn).
    pub pcpu_shards: Vec<usize>,
}

fn number(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn invalid(key: &str, value: impl std::fmt::Display, reason: &str) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
}

impl KeyingSection {
    /// `hold_unknown_spi`, checked: `Some((packets, wait))` when on, `None` when off.
    pub fn unknown_spi_hold(&self) -> Result<Option<(usize, Duration)>, ConfigError> {
        let h = match (self.hold_unknown_spi, self.source.as_str()) {
            (Some(h), _) => h,
            (None, "xfrm") => HoldUnknownSpi::DEFAULT_XFRM,
            (None, _) => return Ok(None),
        };
        if !HoldUnknownSpi::PACKETS.contains(&h.packets) {
            return Err(invalid("keying.hold_unknown_spi.packets", h.packets, "want 0..=4096 packets"));
        }
        if !HoldUnknownSpi::MS.contains(&h.ms) {
            return Err(invalid("keying.hold_unknown_spi.ms", h.ms, "want 0..=1000 milliseconds"));
        }
        Ok((h.packets > 0 && h.ms > 0).then(|| (h.packets, Duration::from_millis(h.ms))))
    }

    /// Checks the section (for a gateway of `shards` data shards).
    pub fn validate(&self, shards: usize) -> Result<Keying, ConfigError> {
        match self.source.as_str() {
            "static" => Ok(Keying::Static),
            "xfrm" => {
                let marks = self
                    .marks
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let (v, mask) =
                            m.split_once('/').and_then(|(v, k)| Some((number(v)?, number(k)?))).ok_or_else(
                                || invalid(&format!("keying.marks[{i}]"), m, "want VALUE/MASK"),
                            )?;
                        if mask == 0 {
                            return Err(invalid(
                                &format!("keying.marks[{i}]"),
                                m,
                                "a zero mask matches every packet",
                            ));
                        }
                        Ok(Mark { v, m: mask })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(i) = self.if_ids.iter().position(|&i| i == 0) {
                    return Err(invalid(&format!("keying.if_ids[{i}]"), 0, "if_id 0 is the kernel's own"));
                }
                if self.if_ids.is_empty() && marks.is_empty() {
                    return Err(ConfigError::Missing {
                        key: "keying.if_ids".into(),
                        reason: "source = \"xfrm\" mirrors only SAs scoped to the gateway by an if_id or mark, so the kernel never encrypts with them (strongSwan if_id_in/if_id_out)".into(),
                    });
                }
                let v = self.acquire_holdoff;
                if !v.is_finite() || v < 0.0 {
                    return Err(invalid("keying.acquire_holdoff", v, "want seconds >= 0"));
                }
                let c = self.counters_interval;
                if !COUNTERS_INTERVAL.contains(&c) {
                    return Err(invalid("keying.counters_interval", c, "want seconds in 1..=3600"));
                }
                let mut reqid_shards = std::collections::BTreeMap::new();
                for (i, r) in self.reqid_shards.iter().enumerate() {
                    let key = format!("keying.reqid_shards[{i}]");
                    if r.shard >= shards {
                        return Err(invalid(&key, r.shard, &format!("want a data shard 0..{shards}")));
                    }
                    if reqid_shards.insert(r.reqid, r.shard).is_some() {
                        return Err(invalid(&key, r.reqid, "reqid listed twice"));
                    }
                }
                if let Some(i) = self.pcpu_shards.iter().position(|&s| s >= shards) {
                    return Err(invalid(
                        &format!("keying.pcpu_shards[{i}]"),
                        self.pcpu_shards[i],
                        &format!("want a data shard 0..{shards}"),
                    ));
                }
                if self.pcpu_shards.len() > 4096 {
                    return Err(invalid(
                        "keying.pcpu_shards",
                        self.pcpu_shards.len(),
                        "want at most 4096 CPUs",
                    ));
                }
                Ok(Keying::Xfrm(XfrmKeying {
                    scope: Scope { if_ids: self.if_ids.clone(), marks },
                    acquire_holdoff: Duration::from_secs_f64(self.acquire_holdoff),
                    counters_interval: Duration::from_secs_f64(c),
                    reqid_shards,
                    pcpu_shards: self.pcpu_shards.clone(),
                }))
            }
            other => Err(invalid("keying.source", other, "want \"static\" or \"xfrm\"")),
        }
    }
}

/// The mirror configuration of a gateway: its scope, its addresses (an SA's direction), its
/// data shards and the `[keying]` shard mapping.
pub fn mirror_config(cfg: &GatewayConfig, k: &XfrmKeying) -> MirrorConfig {
    let mut mc = MirrorConfig::new(k.scope.clone(), cfg.own_addresses());
    mc.outbound_shards = (0..cfg.shards).collect();
    mc.reqid_shards = k.reqid_shards.clone();
    mc.pcpu_shards = k.pcpu_shards.clone();
    mc
}

/// Puts a mirror's desired state into a gateway's SA table and SPD, next to the static SAs and
/// policies (and whatever the control socket changed), through [`Gateway::publish_sas`].
#[derive(Debug, Default)]
pub struct MirrorPublisher {
    /// The mirror's SAs in the gateway's table, kept so an SA keeps its identity (its uid, and
    /// so its shards' sequence numbers) across publishes.
    installed: HashMap<SaKey, Arc<SecurityAssociation>>,
    /// The mirrored policies in the gateway's SPD.
    policies: Vec<SecurityPolicy>,
    published: Option<u64>,
}

impl MirrorPublisher {
    /// Whether `m` changed since the last [`MirrorPublisher::sync`].
    pub fn due(&self, m: &Mirror) -> bool {
        self.published != Some(m.version())
    }

    /// Uids of the mirrored SAs in the gateway's table (their origin is `xfrm`).
    pub fn mirrored_uids(&self) -> impl Iterator<Item = u64> + '_ {
        self.installed.values().map(|s| s.uid())
    }

    /// The installed SA of a mirrored kernel SA.
    pub fn installed(&self, key: &SaKey) -> Option<&Arc<SecurityAssociation>> {
        self.installed.get(key)
    }

    /// Publishes the mirror's SAs and `dir out` policies: the previous mirrored ones are
    /// replaced, everything else in the gateway's table and SPD stays. SAs already installed
    /// keep their object. Returns log lines.
    pub fn sync(&mut self, m: &Mirror, gw: &mut Gateway) -> Vec<String> {
        let mut log = Vec::new();
        let mut installed = HashMap::new();
        for sa in m.active() {
            let arc = match self.installed.get(&sa.key) {
                Some(a) => a.clone(),
                None => match SecurityAssociation::new(&sa.config) {
                    Ok(a) => Arc::new(a),
                    Err(e) => {
                        log.push(format!("xfrm: SA {:#x}: {e}", sa.key.spi));
                        continue;
                    }
                },
            };
            installed.insert(sa.key, arc);
        }
        let old: Vec<u64> = self.mirrored_uids().collect();
        let mut sas: Vec<_> = gw.sas().iter().filter(|s| !old.contains(&s.uid())).cloned().collect();
        sas.extend(installed.values().cloned());
        let mut policies = gw.spd().policies.clone();
        for p in &self.policies {
            if let Some(i) = policies.iter().rposition(|q| q == p) {
                policies.remove(i);
            }
        }
        let mirrored = m.spd().policies;
        policies.extend(mirrored.iter().cloned());
        let spd = wirespeed_stages::esp::Spd { policies, default_action: gw.spd().default_action };
        let (n_sas, n_pol) = (installed.len(), mirrored.len());
        // Not retried before the next change either way: a refused set would be refused again.
        self.published = Some(m.version());
        match gw.publish_sas(sas, spd) {
            Ok(epoch) => {
                self.installed = installed;
                self.policies = mirrored;
                log.push(format!("xfrm: {n_sas} mirrored SAs, {n_pol} mirrored policies, epoch {epoch}"));
            }
            Err(e) => log.push(format!("xfrm: mirrored state not published: {e}")),
        }
        log
    }

    /// The counters of the mirrored SAs among `usage` (the gateway's per-SA totals), as the
    /// feedback wants them (SAs without a packet yet report zeros).
    pub fn counters(&self, usage: &[SaUsage]) -> Vec<SaCounters> {
        let now = (Instant::now(), SystemTime::now());
        let by_uid: HashMap<u64, &SaUsage> = usage.iter().map(|u| (u.uid, u)).collect();
        self.installed
            .values()
            .map(|sa| {
                let u = by_uid.get(&sa.uid()).copied();
                SaCounters {
                    spi: sa.spi(),
                    outbound: matches!(sa.direction(), Direction::Outbound { .. }),
                    bytes: u.map_or(0, |u| u.bytes),
                    packets: u.map_or(0, |u| u.packets),
                    seq: u.map_or(0, |u| u.seq),
                    last_use: u.and_then(|u| u.last_use).map_or(0, |t| unix_seconds(t, now)),
                }
            })
            .collect()
    }

    /// The counter feedback, one step: when the shards have answered the last request, appends
    /// one `NEWAE` per mirrored SA with its totals to `out`; when `fb` says counters are due at
    /// `now`, asks the shards again. Returns how many `NEWAE`s were appended (to send).
    pub fn report_counters(
        &mut self,
        gw: &mut Gateway,
        m: &Mirror,
        fb: &mut Feedback,
        now: Instant,
        out: &mut Builder,
    ) -> usize {
        let mut n = 0;
        if let Some(usage) = gw.take_sa_usage() {
            n = fb.counters(m, &self.counters(&usage), out);
        }
        // A shard that cannot be asked (stopped, or its control queue full) is asked again
        // at the next interval, not at every poll.
        if fb.counters_due(now) {
            gw.request_sa_usage();
        }
        n
    }

    /// Prometheus lines: every SA of the gateway with its origin, and the mirror's counters.
    pub fn metrics(&self, gateway: &str, gw: &Gateway, m: &Mirror) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mine: std::collections::HashSet<u64> = self.mirrored_uids().collect();
        let _ = writeln!(
            out,
            "# HELP wirespeed_sa_info SAs in force, by origin.\n# TYPE wirespeed_sa_info gauge"
        );
        for s in gw.sas() {
            let dir = if s.direction() == Direction::Inbound { "in" } else { "out" };
            let origin = if mine.contains(&s.uid()) { "xfrm" } else { "static" };
            let _ = writeln!(
                out,
                "wirespeed_sa_info{{gateway=\"{gateway}\",spi=\"{:#x}\",direction=\"{dir}\",origin=\"{origin}\"}} 1",
                s.spi()
            );
        }
        let now = (Instant::now(), SystemTime::now());
        type Get = fn(&SaUsage, (Instant, SystemTime)) -> u64;
        let series: [(&str, &str, &str, Get); 3] = [
            (
                "wirespeed_sa_packets_total",
                "counter",
                "Packets of each SA, summed over the data shards.",
                |u, _| u.packets,
            ),
            (
                "wirespeed_sa_bytes_total",
                "counter",
                "Inner bytes of each SA, summed over the data shards.",
                |u, _| u.bytes,
            ),
            (
                "wirespeed_sa_last_use_seconds",
                "gauge",
                "When a packet of each SA was last counted, seconds since the Unix epoch.",
                |u, now| u.last_use.map_or(0, |t| unix_seconds(t, now)),
            ),
        ];
        for (name, kind, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in gw.sas() {
                let Some(u) = gw.sa_usage_of(s.uid()) else { continue };
                let dir = if s.direction() == Direction::Inbound { "in" } else { "out" };
                let origin = if mine.contains(&s.uid()) { "xfrm" } else { "static" };
                let _ = writeln!(
                    out,
                    "{name}{{gateway=\"{gateway}\",spi=\"{:#x}\",direction=\"{dir}\",origin=\"{origin}\"}} {}",
                    s.spi(),
                    get(u, now)
                );
            }
        }
        let st = m.stats();
        let _ = writeln!(
            out,
            "# HELP wirespeed_xfrm_refused_total XFRM messages not mirrored, by reason.\n# TYPE wirespeed_xfrm_refused_total counter"
        );
        for (kind, n) in &st.refused_by_kind {
            let _ =
                writeln!(out, "wirespeed_xfrm_refused_total{{gateway=\"{gateway}\",reason=\"{kind}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP wirespeed_xfrm_messages_total XFRM messages read.\n# TYPE wirespeed_xfrm_messages_total counter\nwirespeed_xfrm_messages_total{{gateway=\"{gateway}\"}} {}",
            st.messages
        );
        out
    }
}

/// Most bytes of feedback sent in one datagram (a report of thousands of SAs is split at
/// message boundaries so it stays under the socket's send buffer).
pub const SEND_CHUNK: usize = 32 * 1024;

/// Splits a buffer of whole netlink messages into runs of at most `max` bytes (a message
/// longer than `max` goes alone; a malformed length ends the split with the rest in one run).
pub fn chunks(bytes: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = 0;
        while end < rest.len() {
            let len = rest
                .get(end..end + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, |b| u32::from_ne_bytes(b) as usize);
            let next = end + len.next_multiple_of(4);
            if len < 16 || next > rest.len() {
                end = rest.len();
                break;
            }
            if end > 0 && next > max {
                break;
            }
            end = next;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// The XFRM follower of a running gateway.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct XfrmSource {
    follower: wirespeed_xfrm::Follower,
    feedback: Feedback,
    out: Builder,
    publisher: MirrorPublisher,
    /// The last poll failed: [`XfrmSource::wait`] sleeps instead of waking on a socket that
    /// may stay readable.
    poll_failed: bool,
}

/// Mirroring cannot start.
#[derive(Debug, thiserror::Error)]
pub enum KeyingError {
    /// The NETLINK_XFRM socket (CAP_NET_ADMIN, kernel support).
    #[cfg(target_os = "linux")]
    #[error("keying.source = \"xfrm\": {0}")]
    Socket(#[from] wirespeed_xfrm::SocketError),
    /// Not Linux.
    #[error("keying.source = \"xfrm\" needs Linux (NETLINK_XFRM)")]
    Unsupported,
}

#[cfg(target_os = "linux")]
impl XfrmSource {
    /// Opens the socket, dumps the kernel's database (5 s at most) and publishes what it holds.
    pub fn start(
        cfg: &GatewayConfig,
        k: &XfrmKeying,
        gw: &mut Gateway,
    ) -> Result<(Self, Vec<String>), KeyingError> {
        let mut follower = wirespeed_xfrm::Follower::start(Mirror::new(mirror_config(cfg, k)))?;
        follower.sync(Duration::from_secs(5))?;
        let mut s = Self {
            follower,
            feedback: Feedback::new(k.counters_interval, k.acquire_holdoff),
            out: Builder::new(),
            publisher: MirrorPublisher::default(),
            poll_failed: false,
        };
        let mut log: Vec<String> =
            s.follower.mirror_mut().drain_refusals().map(|r| format!("xfrm: not mirrored: {r}")).collect();
        if cfg.shards > 1 {
            log.push(format!(
                "xfrm: note: each mirrored outbound SA without CPU is owned by one of the {} shards (its reqid's: [keying] reqid_shards, else reqid % shards); steer each policy's LAN traffic to that shard with a [[steering.rules]] entry, or negotiate per-CPU SAs ([keying] pcpu_shards): packets of a policy on a shard without its SA are dropped as EspNoSa",
                cfg.shards
            ));
        }
        log.extend(s.publisher.sync(s.follower.mirror(), gw));
        Ok((s, log))
    }

    /// Reads the kernel's events, republishes on change, sends the feedback due; returns log
    /// lines.
    pub fn poll(&mut self, gw: &mut Gateway, now: Instant) -> Vec<String> {
        let mut log = Vec::new();
        let polled = self.follower.poll();
        self.poll_failed = polled.is_err();
        match polled {
            Ok(p) => {
                if p.resync {
                    log.push("xfrm: netlink overrun, resynchronising from a new dump".into());
                }
            }
            Err(e) => log.push(format!("xfrm: {e}")),
        }
        log.extend(self.follower.mirror_mut().drain_refusals().map(|r| format!("xfrm: not mirrored: {r}")));
        if self.publisher.due(self.follower.mirror()) {
            log.extend(self.publisher.sync(self.follower.mirror(), gw));
        }
        self.out.clear();
        let mut n = self.feedback.retire_used(self.follower.mirror(), &mut self.out);
        n += self.feedback.acquires(self.follower.mirror(), now, &mut self.out);
        n += self.publisher.report_counters(
            gw,
            self.follower.mirror(),
            &mut self.feedback,
            now,
            &mut self.out,
        );
        if n > 0 {
            for chunk in chunks(self.out.bytes(), SEND_CHUNK) {
                if let Err(e) = self.follower.socket().send(chunk) {
                    log.push(format!("xfrm: feedback not sent: {e}"));
                    break;
                }
            }
        }
        log
    }

    /// Reports a data-plane lifetime event of a mirrored SA to the daemon (soft: rekey; hard:
    /// expired). Returns a log line when one was sent.
    pub fn on_event(&mut self, ev: &SaEvent) -> Option<String> {
        let hard = match ev.kind {
            SaEventKind::SoftLifetime => false,
            SaEventKind::HardLifetime | SaEventKind::SeqOverflow => true,
        };
        let sa = self.publisher.installed.values().find(|s| s.uid() == ev.uid)?;
        let outbound = matches!(sa.direction(), Direction::Outbound { .. });
        self.out.clear();
        if !self.feedback.expire(self.follower.mirror(), ev.spi, outbound, hard, &mut self.out) {
            return None;
        }
        Some(match self.follower.socket().send(self.out.bytes()) {
            Ok(()) => {
                format!("xfrm: {} EXPIRE sent for SA {:#x}", if hard { "hard" } else { "soft" }, ev.spi)
            }
            Err(e) => format!("xfrm: EXPIRE for SA {:#x} not sent: {e}", ev.spi),
        })
    }

    /// Uids of the mirrored SAs in the gateway's table (their origin is `xfrm`).
    pub fn mirrored_uids(&self) -> impl Iterator<Item = u64> + '_ {
        self.publisher.mirrored_uids()
    }

    /// Waits until the kernel has something to report, or `timeout` passes (a plain sleep when
    /// the socket cannot be polled, or the last read failed).
    pub fn wait(&self, timeout: Duration) {
        if self.poll_failed || self.follower.socket().wait(timeout).is_err() {
            std::thread::sleep(timeout);
        }
    }

    /// Prometheus lines: every SA of the gateway with its origin, and the mirror's counters.
    pub fn metrics(&self, gateway: &str, gw: &Gateway) -> String {
        self.publisher.metrics(gateway, gw, self.follower.mirror())
    }
}
