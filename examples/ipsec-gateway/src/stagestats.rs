//! The stages' own counters, beyond the shard counters (packets, bytes, drops by reason): ICMP
//! errors sent and not sent, IPv4 fragmentation before encryption, outer IP reassembly before
//! decryption, TCP MSS clamping, packets
//! held while a next hop is resolved, and the ARP requests / Neighbor Solicitations sent.
//!
//! Each shard owns one [`StageCell`] and publishes its counters there every 64 busy polls, when
//! it goes idle, and when it stops (relaxed stores of monotonic counters: a reader may see one
//! counter a publish ahead of another, never a torn or decreasing value). The gateway reads them
//! for the stats lines (`stages` in `--json`), the final report and `/metrics`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! stage_counters {
    ($($field:ident: $help:literal,)*) => {
        /// Counters of one shard's stages (or their sum over shards).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct StageCounters {
            $(#[doc = $help] pub $field: u64,)*
        }

        impl StageCounters {
            /// Every counter: name (the JSON key; `/metrics` prefixes `wirespeed_gateway_` and
            /// appends `_total`) and help text.
            pub const FIELDS: &'static [(&'static str, &'static str)] = &[$((stringify!($field), $help),)*];

            /// The values, in [`StageCounters::FIELDS`] order.
            pub fn values(&self) -> [u64; COUNT] {
                [$(self.$field,)*]
            }

            fn from_values(v: &[u64; COUNT]) -> Self {
                let mut it = v.iter().copied();
                Self { $($field: it.next().unwrap_or(0),)* }
            }
        }

        const COUNT: usize = [$(stringify!($field),)*].len();
    };
}

stage_counters! {
    icmp_time_exceeded: "ICMP Time Exceeded / ICMPv6 Time Exceeded sent (TTL or hop limit expired).",
    icmp_unreachable: "ICMP / ICMPv6 Destination Unreachable sent (no route).",
    icmp_too_big: "ICMP Fragmentation Needed / ICMPv6 Packet Too Big sent (did not fit a tunnel).",
    icmp_rate_limited: "ICMP errors not sent: over the `[icmp]` rate.",
    icmp_suppressed: "ICMP errors not sent: about an error, a fragment, a non-unicast address, or no route back.",
    fragmented: "IPv4 packets (DF clear) fragmented before encryption to fit their SA.",
    fragments: "Fragments those made, each encrypted as its own ESP packet.",
    frag_failed: "IPv4 packets (DF clear) that could not be fragmented (malformed, no buffer, no room) and were dropped.",
    reasm_fragments: "Outer IP fragments (ESP or UDP to the gateway) taken for reassembly before decryption.",
    reassembled: "Datagrams reassembled from them (failures are `reasm_*` drops).",
    mss_clamped: "TCP SYN segments whose MSS option was clamped (SA mss_clamp), both directions.",
    spi_held: "Inbound ESP packets held because their SPI had no SA yet (`[keying] hold_unknown_spi`).",
    spi_hold_resolved: "Held ESP packets whose SA was published in time (then decrypted or counted drops).",
    spi_hold_expired: "Held ESP packets dropped as esp_no_sa: their SA was not published in time.",
    spi_hold_full: "ESP packets with an unknown SPI dropped as esp_no_sa at once: the hold was full.",
    neighbor_held: "Packets held while their next hop was resolved.",
    neighbor_released: "Held packets released once their next hop resolved.",
    neighbor_hold_overflow: "Packets dropped: the hold queue (or its next-hop list) was full.",
    neighbor_hold_expired: "Held packets dropped unresolved after the hold timeout.",
    neighbor_requests: "Next-hop resolution requests the data shards sent to the control plane.",
    neighbor_requests_lost: "Resolution requests lost to a full request queue (asked again later).",
    solicitations: "ARP requests and Neighbor Solicitations sent (probes included).",
    solicit_limited: "Solicitations not sent: asked within the retransmit time or over the rate.",
    solicit_not_on_link: "Solicitations refused: the address is on no connected subnet of the interface.",
}

impl StageCounters {
    /// Adds `o` to these.
    pub fn accumulate(&mut self, o: &StageCounters) {
        let mut v = self.values();
        for (a, b) in v.iter_mut().zip(o.values()) {
            *a += b;
        }
        *self = Self::from_values(&v);
    }

    /// The sum of `all`.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a StageCounters>) -> StageCounters {
        let mut t = StageCounters::default();
        for c in all {
            t.accumulate(c);
        }
        t
    }

    /// `(name, value)` of every counter.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        Self::FIELDS.iter().map(|(n, _)| *n).zip(self.values())
    }

    /// Every counter as a JSON object (all keys, zeros included: a stable schema).
    pub fn json(&self) -> serde_json::Value {
        self.iter().map(|(n, v)| (n.to_string(), serde_json::Value::from(v))).collect()
    }
}

/// `name=value` of the counters that are not zero, space-separated (`none` when all are).
impl fmt::Display for StageCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for (n, v) in self.iter().filter(|(_, v)| *v > 0) {
            if any {
                f.write_str(" ")?;
            }
            write!(f, "{n}={v}")?;
            any = true;
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// Where one shard publishes its [`StageCounters`] (single writer: the shard).
#[derive(Debug, Default)]
pub struct StageCell {
    words: [AtomicU64; COUNT],
}

impl StageCell {
    /// All zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `c`.
    pub fn publish(&self, c: &StageCounters) {
        for (w, v) in self.words.iter().zip(c.values()) {
            w.store(v, Ordering::Relaxed);
        }
    }

    /// The last published counters.
    pub fn read(&self) -> StageCounters {
        StageCounters::from_values(&std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed)))
    }
}

/// Prometheus text of the gateway's stage counters (summed over its shards).
pub fn prometheus(gateway: &str, c: &StageCounters) -> String {
    use fmt::Write as _;
    let mut out = String::new();
    for ((name, help), v) in StageCounters::FIELDS.iter().zip(c.values()) {
        let _ = writeln!(
            out,
            "# HELP wirespeed_gateway_{name}_total {help}\n# TYPE wirespeed_gateway_{name}_total counter\n\
             wirespeed_gateway_{name}_total{{gateway=\"{gateway}\"}} {v}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_read_sum_and_render() {
        let cell = StageCell::new();
        let c = StageCounters { icmp_too_big: 3, fragments: 7, solicitations: 1, ..Default::default() };
        cell.publish(&c);
        assert_eq!(cell.read(), c);
        let t = StageCounters::sum([&c, &c]);
        assert_eq!((t.icmp_too_big, t.fragments, t.solicitations, t.fragmented), (6, 14, 2, 0));
        assert_eq!(t.to_string(), "icmp_too_big=6 fragments=14 solicitations=2");
        assert_eq!(StageCounters::default().to_string(), "none");
        let j = t.json();
        assert_eq!(j["fragments"], 14);
        assert_eq!(j["mss_clamped"], 0);
        assert_eq!(j.as_object().map(|o| o.len()), Some(StageCounters::FIELDS.len()));
        let m = prometheus("gw", &t);
        assert!(m.contains("wirespeed_gateway_icmp_too_big_total{gateway=\"gw\"} 6\n"), "{m}");
        assert!(m.contains("# TYPE wirespeed_gateway_neighbor_held_total counter\n"));
    }
}
