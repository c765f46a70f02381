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
}

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
        }
    }

    /// Checks the values that do not need the device.
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
        let q = u32::from(self.queues);
        let mut needed = q * (u32::from(self.rx_desc) + u32::from(self.tx_desc));
        if let Some(h) = &self.host {
            h.check()?;
            // The reserved Tx queues, and the tap's Rx and Tx rings.
            needed += q * (u32::from(self.tx_desc) + 2 * u32::from(h.desc));
        }
        if self.mempool.mbufs <= needed {
            return Err(DpdkError::bad(
                "mempool.mbufs",
                self.mempool.mbufs,
                format!(
                    "more than the {needed} mbufs the rings of {} queue pairs{} can hold",
                    self.queues,
                    if self.host.is_some() { " and the exception path" } else { "" }
                ),
            ));
        }
        Ok(())
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
        cfg.mempool.mbufs = 1000;
        let e = cfg.check().unwrap_err();
        assert!(e.to_string().contains("mempool.mbufs") && e.to_string().contains("16384"), "{e}");
        assert!(
            toml::from_str::<DpdkPortConfig>("device = \"x\"\nqueue = 2").is_err(),
            "unknown fields refused"
        );
    }
}
