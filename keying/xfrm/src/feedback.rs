//! Feedback from the data plane to the IKE daemon, through the kernel: cumulative counters
//! (`XFRM_MSG_NEWAE`), data-plane expiry (`XFRM_MSG_EXPIRE`) and SA requests
//! (`XFRM_MSG_ACQUIRE`), paced so a busy data plane does not flood the daemon.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::mirror::{Mirror, Refusal, SaEntry};
use crate::msg::{self, Builder};
use crate::wire::LifetimeCur;

/// What the data plane counted for one SA: totals since the SA was installed, summed over
/// shards (never increments since the last report: `NEWAE` replaces the kernel's counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaCounters {
    /// SPI.
    pub spi: u32,
    /// Outbound (else inbound).
    pub outbound: bool,
    /// Bytes (of inner packets).
    pub bytes: u64,
    /// Packets.
    pub packets: u64,
    /// Sequence number: outbound, the last sent; inbound, the highest authenticated (the
    /// largest over shards). 0: none. Reported to the kernel's SA with the counters, where a
    /// restarted data plane finds it ([`crate::MirroredSa::seq`]) and resumes an inbound SA's
    /// replay window from it.
    pub seq: u64,
    /// Last use, seconds since the Unix epoch (0: never). Not sent: the kernel's
    /// `curlft.use_time` is the *first* use (its use-time limits count from it) and no
    /// netlink message sets an SA's last use; [`Feedback::counters`] stamps the first use.
    pub last_use: u64,
}

/// Identity of a mirrored SA for the feedback: SPI, direction and installation order (a new SA
/// that reuses a deleted one's SPI is another SA).
type FbKey = (u32, bool, u64);

/// Builds the feedback messages of a mirror.
#[derive(Debug)]
pub struct Feedback {
    interval: Duration,
    last_counters: Option<Instant>,
    acquire_holdoff: Duration,
    /// Last ACQUIRE per (policy direction, index, CPU or `u32::MAX`).
    acquired: HashMap<(u8, u32, u32), Instant>,
    first_use: HashMap<FbKey, u64>,
    /// Last totals sent per SA (bytes, packets, sequence number): replace semantics never go
    /// backwards.
    sent: HashMap<FbKey, (u64, u64, u64)>,
    regressions: u64,
    expired: HashMap<(u32, bool), bool>,
    retired: HashSet<u32>,
    seq: u32,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Feedback {
    /// Counters every `interval`; at most one ACQUIRE per policy per `acquire_holdoff`.
    pub fn new(interval: Duration, acquire_holdoff: Duration) -> Self {
        Self {
            interval,
            last_counters: None,
            acquire_holdoff,
            acquired: HashMap::new(),
            first_use: HashMap::new(),
            sent: HashMap::new(),
            regressions: 0,
            expired: HashMap::new(),
            retired: HashSet::new(),
            seq: 0,
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Whether counters are due at `now` (then not again before `now + interval`).
    pub fn counters_due(&mut self, now: Instant) -> bool {
        match self.last_counters {
            Some(t) if now.saturating_duration_since(t) < self.interval => false,
            _ => {
                self.last_counters = Some(now);
                true
            }
        }
    }

    /// Appends one `NEWAE` per mirrored SA in `counters` whose totals changed since the last
    /// one sent for it (others are skipped: the kernel keeps what it was last told, and a
    /// gateway with thousands of idle SAs sends nothing for them): cumulative bytes and
    /// packets (replace semantics: the kernel's counters become these totals), the kernel's
    /// own `add_time`, the first-use time (the first report with packets) and the sequence
    /// number, as the kernel SA's replay state ([`crate::MirroredSa::replay_value`]). A value
    /// below one already sent for the same SA is not sent lower (the kernel and the daemon
    /// never see counters go back; counted in [`Feedback::regressions`]). Returns how many
    /// were built.
    pub fn counters(&mut self, mirror: &Mirror, counters: &[SaCounters], b: &mut Builder) -> usize {
        let mut n = 0;
        for c in counters {
            let Some(sa) = mirror.find(c.spi, c.outbound) else { continue };
            let key = (c.spi, c.outbound, sa.order);
            let (mut bytes, mut packets, mut sa_seq) = (c.bytes, c.packets, c.seq);
            let last = self.sent.get(&key).copied().unwrap_or((0, 0, 0));
            if bytes < last.0 || packets < last.1 || sa_seq < last.2 {
                self.regressions += 1;
                bytes = bytes.max(last.0);
                packets = packets.max(last.1);
                sa_seq = sa_seq.max(last.2);
            }
            if (bytes, packets, sa_seq) == last {
                continue;
            }
            self.sent.insert(key, (bytes, packets, sa_seq));
            let use_time = *self.first_use.entry(key).or_insert_with(unix_now);
            let cur = LifetimeCur { bytes, packets, add_time: sa.kernel_add_time, use_time };
            let seq = self.next_seq();
            let replay = (sa_seq > 0).then(|| sa.replay_value(sa_seq));
            msg::newae(b, seq, &sa.sa_ref(), &cur, replay.as_ref(), false);
            n += 1;
        }
        // Forget SAs that are gone.
        let alive = |&(spi, out, order): &FbKey| mirror.find(spi, out).is_some_and(|sa| sa.order == order);
        self.first_use.retain(|k, _| alive(k));
        self.sent.retain(|k, _| alive(k));
        n
    }

    /// Counter reports that were lower than an earlier one for the same SA (and were sent as
    /// the earlier totals instead).
    pub fn regressions(&self) -> u64 {
        self.regressions
    }

    /// Appends an `EXPIRE` for a data-plane lifetime event of a mirrored SA (once per SA and
    /// kind: a soft expiry is reported once, a hard one once). Returns whether one was built.
    pub fn expire(&mut self, mirror: &Mirror, spi: u32, outbound: bool, hard: bool, b: &mut Builder) -> bool {
        let Some(sa) = mirror.find(spi, outbound) else { return false };
        let key = (spi, outbound);
        match self.expired.get(&key) {
            Some(true) => return false,
            Some(false) if !hard => return false,
            _ => {}
        }
        self.expired.insert(key, hard);
        let seq = self.next_seq();
        msg::expire(b, seq, &sa.sa_ref(), hard, false);
        self.expired.retain(|&(spi, out), _| mirror.find(spi, out).is_some() || (spi, out) == key);
        true
    }

    /// Appends a soft `EXPIRE` (rekey now) for every outbound SA refused as already used
    /// ([`crate::Refusal::UsedOutbound`]) or as present before the data plane started
    /// ([`crate::Refusal::PreexistingOutbound`]) and not asked for before. Returns how many were built.
    pub fn retire_used(&mut self, mirror: &Mirror, b: &mut Builder) -> usize {
        let mut n = 0;
        for (_, e) in mirror.entries() {
            if let SaEntry::Refused(
                Refusal::UsedOutbound { spi, sa, .. } | Refusal::PreexistingOutbound { spi, sa },
            ) = e
                && self.retired.insert(*spi)
            {
                let seq = self.next_seq();
                msg::expire(b, seq, sa, false, false);
                n += 1;
            }
        }
        n
    }

    /// Appends an `ACQUIRE` for every outbound policy that has no SA, and a per-CPU one
    /// (`XFRMA_SA_PCPU`) for every shard without its own SA of a policy that wants one per CPU
    /// ([`Mirror::per_cpu_missing`]), at most once per policy (and CPU) per holdoff. Returns
    /// how many were built.
    pub fn acquires(&mut self, mirror: &Mirror, now: Instant, b: &mut Builder) -> usize {
        let mut n = 0;
        let holdoff = self.acquire_holdoff;
        let mut wanted: Vec<(&crate::msg::PolicyMsg, Option<u32>)> =
            mirror.unresolved().into_iter().map(|p| (p, None)).collect();
        wanted.extend(mirror.per_cpu_missing().into_iter().map(|(p, _, cpu)| (p, Some(cpu))));
        let key =
            |p: &crate::msg::PolicyMsg, cpu: Option<u32>| (p.info.dir, p.info.index, cpu.unwrap_or(u32::MAX));
        for &(p, cpu) in &wanted {
            let k = key(p, cpu);
            if self.acquired.get(&k).is_some_and(|&t| now < t + holdoff) {
                continue;
            }
            self.acquired.insert(k, now);
            let seq = self.next_seq();
            msg::acquire_pcpu(b, seq, p, None, cpu, false);
            n += 1;
        }
        self.acquired.retain(|k, _| wanted.iter().any(|&(p, cpu)| key(p, cpu) == *k));
        n
    }
}
