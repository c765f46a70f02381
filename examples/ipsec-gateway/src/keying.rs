//! `[keying]`: where SAs come from besides the static `[[sa]]` tables.
//!
//! ```toml
//! [keying]
//! source = "xfrm"          # "static" (default): only [[sa]]; "xfrm": also an IKE daemon's SAs
//! if_ids = [42]            # strongSwan if_id_in/if_id_out of the connections the gateway carries
//! marks = ["0x42/0xff"]    # or marks (value/mask)
//! acquire_holdoff = 1      # seconds between two ACQUIREs of one policy
//! ```
//!
//! With `source = "xfrm"` the gateway mirrors the kernel's XFRM SAs and policies scoped to it
//! (`wirespeed-xfrm`; needs `CAP_NET_ADMIN`) next to the static ones: mirrored SAs join the SA
//! table, mirrored `dir out` policies follow the static policies in the SPD, both through the
//! same epoch publish as the control socket. Data-plane lifetime events become `EXPIRE`s, protect
//! policies without SA `ACQUIRE`s, both relayed by the kernel to the daemon.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wirespeed_stages::esp::{Direction, SaEvent, SaEventKind, SecurityAssociation, SecurityPolicy};
use wirespeed_xfrm::mirror::SaKey;
use wirespeed_xfrm::msg::Builder;
use wirespeed_xfrm::wire::Mark;
use wirespeed_xfrm::{Feedback, Mirror, Scope};

use crate::config::{ConfigError, GatewayConfig};
use crate::gateway::Gateway;

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
}

impl Default for KeyingSection {
    fn default() -> Self {
        Self { source: "static".into(), if_ids: vec![], marks: vec![], acquire_holdoff: 1.0 }
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
    /// Checks the section.
    pub fn validate(&self) -> Result<Keying, ConfigError> {
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
                Ok(Keying::Xfrm(XfrmKeying {
                    scope: Scope { if_ids: self.if_ids.clone(), marks },
                    acquire_holdoff: Duration::from_secs_f64(self.acquire_holdoff),
                }))
            }
            other => Err(invalid("keying.source", other, "want \"static\" or \"xfrm\"")),
        }
    }
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

    /// Prometheus lines: every SA of the gateway with its origin, and the mirror's counters.
    pub fn metrics(&self, gateway: &str, gw: &Gateway, m: &Mirror) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mine: Vec<u64> = self.mirrored_uids().collect();
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
        let mut mc = wirespeed_xfrm::MirrorConfig::new(k.scope.clone(), cfg.own_addresses());
        mc.outbound_shards = (0..cfg.shards).collect();
        let mut follower = wirespeed_xfrm::Follower::start(wirespeed_xfrm::Mirror::new(mc))?;
        follower.sync(Duration::from_secs(5))?;
        let mut s = Self {
            follower,
            // Counters (NEWAE) need per-SA totals from the shards, which the gateway does not
            // collect yet: only expiry and ACQUIRE are fed back.
            feedback: Feedback::new(Duration::from_secs(10), k.acquire_holdoff),
            out: Builder::new(),
            publisher: MirrorPublisher::default(),
            poll_failed: false,
        };
        let mut log: Vec<String> =
            s.follower.mirror_mut().drain_refusals().map(|r| format!("xfrm: not mirrored: {r}")).collect();
        if cfg.shards > 1 {
            log.push(format!(
                "xfrm: note: each mirrored outbound SA is owned by one of the {} shards; packets of its policy that RSS puts on another shard are dropped as EspNoSa (run with shards = 1 for IKE tunnels until per-CPU SAs are mirrored)",
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
        if n > 0
            && let Err(e) = self.follower.socket().send(self.out.bytes())
        {
            log.push(format!("xfrm: feedback not sent: {e}"));
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
