//! [`DpdkPortConfig`]: everything needed to build a [`crate::DpdkPort`], deserializable from the
//! appliance's TOML. `connectx6.toml` beside this crate is a commented example for a ConnectX-6
//! (mlx5).

use serde::{Deserialize, Serialize};

use crate::error::DpdkError;
use crate::host::HostPathConfig;
use crate::mempool::MempoolConfig;
use crate::rss::RssSettings;

/// One DPDK port: EAL arguments, the device, queues, mempool and RSS.
///
/// ```
/// let cfg: wirespeed_dpdk::DpdkPortConfig = toml::from_str(r#"
///     eal = ["-l", "0-3", "-a", "0000:3b:00.0,rxq_cqe_comp_en=1"]
///     device = "0000:3b:00.0"
///     queues = 4
///     [rss]
///     hash = { key = "6d5a", mode = "key", types = ["all"] }
/// "#)?;
/// assert_eq!(cfg.queues, 4);
/// assert_eq!(cfg.rx_desc, 1024);
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkPortConfig {
    /// EAL arguments, without the program name (`["-l", "0-3", "-a", "0000:3b:00.0"]`). The EAL
    /// is initialised once per process; every port of a process must give the same list.
    #[serde(default)]
    pub eal: Vec<String>,
    /// The ethdev name: a PCI address for a NIC (`0000:3b:00.0`), a vdev name (`net_null0`).
    pub device: String,
    /// Devargs to hot-plug the device with (`rte_dev_probe`) when the EAL did not probe it
    /// (`net_ring0`, `net_pcap0,rx_pcap=in.pcap`).
    #[serde(default)]
    pub devargs: Option<String>,
    /// Rx/Tx queue pairs: one per shard.
    #[serde(default = "one")]
    pub queues: u16,
    /// Rx descriptors per queue.
    #[serde(default = "desc")]
    pub rx_desc: u16,
    /// Tx descriptors per queue.
    #[serde(default = "desc")]
    pub tx_desc: u16,
    /// The mbuf pool of the device's NUMA socket.
    #[serde(default)]
    pub mempool: MempoolConfig,
    /// Hardware RSS; without it the port is configured without RSS (then use one queue or the
    /// software dispatcher).
    #[serde(default)]
    pub rss: Option<RssSettings>,
    /// Receive every frame, not only those for the port's MAC.
    #[serde(default = "yes")]
    pub promiscuous: bool,
    /// Index stamped into `PacketMeta::rx_port` of received packets.
    #[serde(default)]
    pub port_index: u16,
    /// The exception path to a kernel interface for the host's own traffic (IKE), see
    /// [`crate::host`]. The port then has twice `queues` Tx queues.
    #[serde(default)]
    pub host: Option<HostPathConfig>,
    /// The port's MTU (IP packet size; frames are 14 bytes more). `None`: the driver's default
    /// (1500). A jumbo MTU (`9000`) needs `mempool.data_room` of at least `mtu + 14`: wirespeed
    /// keeps one frame in one mbuf (no Rx scatter). The device must accept it too (its
    /// `min_mtu..=max_mtu`; checked when the port opens). The exception path's tap keeps its
    /// own default MTU.
    #[serde(default)]
    pub mtu: Option<u16>,
}

/// The smallest MTU a port takes: IPv4's 68 (RFC 791), DPDK's `RTE_ETHER_MIN_MTU`.
pub const MIN_MTU: u16 = 68;

fn one() -> u16 {
    1
}
fn desc() -> u16 {
    1024
}
fn yes() -> bool {
    true
}

impl DpdkPortConfig {
    /// A port on `device` with defaults: one queue, 1024 descriptors, no RSS.
    pub fn new(eal: Vec<String>, device: impl Into<String>) -> Self {
        Self {
            eal,
            device: device.into(),
            devargs: None,
            queues: 1,
            rx_desc: desc(),
            tx_desc: desc(),
            mempool: MempoolConfig::default(),
            rss: None,
            promiscuous: true,
            port_index: 0,
            host: None,
            mtu: None,
        }
    }

    /// Checks the values that do not need the device. An explicit `mempool.mbufs` must exceed
    /// what the port's rings hold; a derived one ([`Self::mbufs`]) always does.
    pub fn check(&self) -> Result<(), DpdkError> {
        if self.device.is_empty() {
            return Err(DpdkError::bad("device", "\"\"", "a device name is required"));
        }
        if self.queues == 0 {
            return Err(DpdkError::bad("queues", self.queues, "at least one queue pair"));
        }
        if self.rx_desc == 0 || self.tx_desc == 0 {
            return Err(DpdkError::bad(
                "rx_desc/tx_desc",
                self.rx_desc.min(self.tx_desc),
                "at least one descriptor",
            ));
        }
        if let Some(h) = &self.host {
            h.check()?;
        }
        if let Some(mtu) = self.mtu {
            if mtu < MIN_MTU {
                return Err(DpdkError::bad("mtu", mtu, format!("at least {MIN_MTU} (the IPv4 minimum)")));
            }
            if u32::from(mtu) + 14 > u32::from(self.mempool.data_room) {
                return Err(DpdkError::bad(
                    "mtu",
                    mtu,
                    format!(
                        "a {}-byte frame does not fit mempool.data_room {} (one frame is one mbuf: set \
                         data_room to at least mtu + 14)",
                        u32::from(mtu) + 14,
                        self.mempool.data_room
                    ),
                ));
            }
        }
        let needed = self.ring_mbufs();
        match self.mempool.mbufs {
            Some(mbufs) if u64::from(mbufs) <= needed => Err(DpdkError::bad(
                "mempool.mbufs",
                mbufs,
                format!(
                    "more than the {needed} mbufs the rings of {} queue pairs{} can hold (or leave it \
                     unset to have it derived)",
                    self.queues,
                    if self.host.is_some() { " and the exception path" } else { "" }
                ),
            )),
            Some(_) => Ok(()),
            None => self.mbufs().map(|_| ()),
        }
    }

    /// Mbufs the port's rings can hold at once: every Rx and Tx descriptor of `queues` queue
    /// pairs, and with an exception path the reserved Tx queues and the tap's Rx and Tx rings.
    pub(crate) fn ring_mbufs(&self) -> u64 {
        let q = u64::from(self.queues);
        let mut n = q * (u64::from(self.rx_desc) + u64::from(self.tx_desc));
        if let Some(h) = &self.host {
            n += q * (u64::from(self.tx_desc) + 2 * u64::from(h.desc));
        }
        n
    }

    /// Mbufs of the port's pool: `mempool.mbufs` when given, else derived from the port — the
    /// rings' mbufs (see [`Self::check`]), plus per queue the batches its thread holds between
    /// Rx and Tx (four [`wirespeed_core::BATCH_SIZE`] bursts: two more with an exception path),
    /// plus `mempool.cache` for each of `queues + 1` lcores (the queues' threads and the
    /// control thread), rounded up to `2^k - 1` and at least [`crate::DEFAULT_MBUFS`]. A derived
    /// count is the port's own pool, not shared with other ports.
    pub fn mbufs(&self) -> Result<u32, DpdkError> {
        if let Some(n) = self.mempool.mbufs {
            return Ok(n);
        }
        let q = u64::from(self.queues);
        let bursts = if self.host.is_some() { 6 } else { 4 };
        let wanted = self.ring_mbufs()
            + q * bursts * wirespeed_core::BATCH_SIZE as u64
            + (q + 1) * u64::from(self.mempool.cache);
        // 2^k - 1: DPDK's ring-backed pools hold 2^k - 1 objects without waste.
        let rounded = (wanted + 1).next_power_of_two() - 1;
        let n = rounded.max(u64::from(crate::DEFAULT_MBUFS));
        u32::try_from(n).map_err(|_| {
            DpdkError::bad(
                "mempool.mbufs",
                format!("derived {n}"),
                format!("{} queue pairs with these rings need more mbufs than a pool holds", self.queues),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_examples_parse() {
        let cfg: DpdkPortConfig = toml::from_str(include_str!("../connectx6.toml")).unwrap();
        cfg.check().unwrap();
        assert_eq!(cfg.device, "0000:xx:00.0");
        assert!(cfg.eal.iter().any(|a| a.starts_with("0000:xx:00.0,") && a.contains("mprq_en=1")));
        let rss = cfg.rss.as_ref().unwrap();
        assert_eq!(rss.reta_size, Some(512));
        assert_eq!(rss.hash.key.len(), 40);
        assert_eq!(rss.hash.mode, wirespeed_core::rss::SymmetricMode::Xor);
        assert_eq!(rss.hash.types, wirespeed_core::rss::HashTypes::ALL);
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut cfg = DpdkPortConfig::new(vec![], "net_null0");
        cfg.queues = 0;
        assert!(matches!(cfg.check(), Err(DpdkError::BadConfig { field: "queues", .. })));
        cfg.queues = 8;
        cfg.mempool.mbufs = Some(1000);
        let e = cfg.check().unwrap_err();
        assert!(e.to_string().contains("mempool.mbufs") && e.to_string().contains("16384"), "{e}");
        assert!(
            toml::from_str::<DpdkPortConfig>("device = \"x\"\nqueue = 2").is_err(),
            "unknown fields refused"
        );
    }

    #[test]
    fn default_mbufs_fit_every_configuration_check_accepts() {
        // The integrator's case: two queues and a host path with the default pool. With a fixed
        // 8191 this failed its own check (2 × (1024 + 1024) + 2 × (1024 + 2 × 512) = 8192).
        let mut cfg = DpdkPortConfig::new(vec![], "net_null0");
        cfg.queues = 2;
        cfg.host = Some(HostPathConfig::new("wan0"));
        cfg.check().unwrap();
        assert_eq!(cfg.mbufs().unwrap(), 16383);
        for queues in [1, 2, 3, 4, 8, 16, 64] {
            for (rx, tx) in [(1, 1), (256, 256), (1024, 1024), (4096, 4096), (4096, 512)] {
                for (host, cache) in [(None, 256), (Some(512), 256), (Some(4096), 512), (None, 0)] {
                    let mut c = DpdkPortConfig::new(vec![], "net_null0");
                    (c.queues, c.rx_desc, c.tx_desc, c.mempool.cache) = (queues, rx, tx, cache);
                    c.host = host.map(|desc| HostPathConfig { desc, ..HostPathConfig::new("wan0") });
                    c.check().unwrap_or_else(|e| panic!("{c:?}: {e}"));
                    let n = c.mbufs().unwrap();
                    assert!(u64::from(n) > c.ring_mbufs(), "{c:?}: {n}");
                    assert!(n >= crate::DEFAULT_MBUFS && (n + 1).is_power_of_two(), "{n}");
                    assert!(c.mempool.cache <= n / 2, "the pool's cache check holds: {n}");
                    // The derived count passes the check given explicitly too.
                    c.mempool.mbufs = Some(n);
                    c.check().unwrap();
                }
            }
        }
        // An explicit count is still checked as given.
        cfg.mempool.mbufs = Some(8191);
        let e = cfg.check().unwrap_err();
        assert!(e.to_string().contains("mempool.mbufs") && e.to_string().contains("8192"), "{e}");
        // A size no pool can have is an error naming the field, not an overflow.
        cfg.mempool.mbufs = None;
        (cfg.queues, cfg.rx_desc, cfg.tx_desc) = (u16::MAX, u16::MAX, u16::MAX);
        let e = cfg.check().unwrap_err();
        assert!(matches!(e, DpdkError::BadConfig { field: "mempool.mbufs", .. }), "{e}");
        // From TOML: unset is derived, a given count is kept.
        let c: DpdkPortConfig = toml::from_str("device = \"x\"\nmempool = { cache = 128 }").unwrap();
        assert_eq!((c.mempool.mbufs, c.mempool.cache), (None, 128));
        let c: DpdkPortConfig = toml::from_str("device = \"x\"\nmempool = { mbufs = 65535 }").unwrap();
        assert_eq!(c.mbufs().unwrap(), 65535);
    }
}
