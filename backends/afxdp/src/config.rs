//! [`AfXdpPortConfig`]: what an application's configuration file says about an AF_XDP port.

use serde::{Deserialize, Serialize};

use crate::error::AfXdpError;
use crate::program::{KernelPass, MAX_OWN_ADDRESSES, MAX_TCP_PORTS, MAX_UDP_PORTS};

/// How the port runs the XDP program and its sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// Driver-mode XDP with zero-copy sockets when the driver supports them; else driver-mode
    /// XDP with copy-mode sockets; else generic (SKB) XDP. The port reports what it got and why.
    #[default]
    Auto,
    /// Driver-mode XDP and zero-copy sockets, or an error saying why not.
    Zerocopy,
    /// Copy-mode sockets; driver-mode XDP, falling back to generic when the driver has none.
    Copy,
    /// Generic (SKB) XDP and copy-mode sockets: works on every interface, slowest.
    Skb,
}

impl std::fmt::Display for XdpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Zerocopy => "zerocopy",
            XdpMode::Copy => "copy",
            XdpMode::Skb => "skb",
        })
    }
}

/// Configuration of one AF_XDP port (TOML example in the crate docs).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AfXdpPortConfig {
    /// Interface name (`ens1f0`, `veth0`).
    pub interface: String,
    /// Queues to serve, `0..queues`; all of the interface's receive queues when absent.
    #[serde(default)]
    pub queues: Option<u16>,
    /// XDP and socket mode.
    #[serde(default)]
    pub mode: XdpMode,
    /// Port number stamped into each packet's `rx_port`.
    #[serde(default)]
    pub port_id: u16,
    /// UMEM frame size in bytes: a power of two from 2048 to the page size (4096).
    #[serde(default = "defaults::frame_size")]
    pub frame_size: u32,
    /// UMEM frames per queue (Rx in flight + Tx in flight + buffers held by stages).
    #[serde(default = "defaults::frames")]
    pub frames: u32,
    /// Extra headroom the kernel leaves before each received packet, on top of its own 256.
    #[serde(default)]
    pub headroom: u32,
    /// Rx ring entries (power of two).
    #[serde(default = "defaults::ring")]
    pub rx_ring: u32,
    /// Tx ring entries (power of two).
    #[serde(default = "defaults::ring")]
    pub tx_ring: u32,
    /// Fill ring entries (power of two).
    #[serde(default = "defaults::ring")]
    pub fill_ring: u32,
    /// Completion ring entries (power of two).
    #[serde(default = "defaults::ring")]
    pub completion_ring: u32,
    /// Use the need-wakeup protocol (fewer syscalls when the kernel is busy anyway).
    #[serde(default = "defaults::yes")]
    pub need_wakeup: bool,
    /// Jumbo frames: when the interface's MTU does not fit one frame, frames arrive and leave
    /// as chains of descriptors (AF_XDP multi-buffer: `XDP_USE_SG`, kernel 6.6+, and an XDP
    /// program loaded with `BPF_F_XDP_HAS_FRAGS`) and are gathered into contiguous jumbo
    /// buffers. `false` refuses such an MTU instead ([`AfXdpError::MtuTooLarge`]).
    #[serde(default = "defaults::yes")]
    pub multi_buffer: bool,
    /// Jumbo buffers per queue when multi-buffer is in use (each `MTU + 14 + headroom + 256`
    /// bytes, rounded up to whole frames, part of the queue's UMEM): a chain received is copied
    /// into one, and a packet from another port too large for a frame is copied into one to
    /// be sent. A frame arriving while all are in use is dropped as `pool_exhausted`.
    #[serde(default = "defaults::jumbo_buffers")]
    pub jumbo_buffers: u32,
    /// Ask the driver for each packet's RSS hash (`bpf_xdp_metadata_rx_hash`, kernel 6.3+, a
    /// device-bound program in driver mode) and put it in [`wirespeed_core::PacketMeta::rss_hash`]
    /// with the `HW_RSS` flag, so the software hash can be checked against the NIC's. Costs a
    /// kfunc call per packet in the driver; the port's report says when it is not in effect.
    #[serde(default)]
    pub rx_hash: bool,
    /// How long a burst may wait, in microseconds, for room on a full Tx ring while the kernel
    /// makes no progress. While it keeps taking descriptors (the device drains, slowly), the
    /// burst waits as long as that takes, so a full ring moves loss to the Rx ring (where a
    /// forwarder that cannot keep up should lose, as the kernel does) instead of counting it as
    /// `tx_full`; after `tx_wait_us` with no progress (a stuck or dead link) the rest of the
    /// burst is `tx_full`, and later bursts on that queue do not wait again until the kernel
    /// takes a descriptor. While a burst waits the shard polls nothing else, so this bounds how
    /// long a stuck port can hold up the shard's other ports. 0: never wait (drop at once, as
    /// DPDK's `rte_eth_tx_burst` users do). At most 100000 (100 ms).
    #[serde(default = "defaults::tx_wait_us")]
    pub tx_wait_us: u32,
    /// Management traffic the XDP program passes to the kernel stack.
    #[serde(default)]
    pub kernel_pass: KernelPass,
}

mod defaults {
    pub(super) fn frame_size() -> u32 {
        2048
    }
    pub(super) fn frames() -> u32 {
        4096
    }
    pub(super) fn ring() -> u32 {
        2048
    }
    pub(super) fn yes() -> bool {
        true
    }
    pub(super) fn jumbo_buffers() -> u32 {
        512
    }
    pub(super) fn tx_wait_us() -> u32 {
        10_000
    }
}

/// Largest [`AfXdpPortConfig::tx_wait_us`].
pub const MAX_TX_WAIT_US: u32 = 100_000;

/// Kernel bytes before every received packet (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: u32 = 256;

impl AfXdpPortConfig {
    /// A configuration for `interface` with every other field at its default.
    pub fn new(interface: impl Into<String>) -> Self {
        Self {
            interface: interface.into(),
            queues: None,
            mode: XdpMode::Auto,
            port_id: 0,
            frame_size: defaults::frame_size(),
            frames: defaults::frames(),
            headroom: 0,
            rx_ring: defaults::ring(),
            tx_ring: defaults::ring(),
            fill_ring: defaults::ring(),
            completion_ring: defaults::ring(),
            need_wakeup: true,
            multi_buffer: true,
            jumbo_buffers: defaults::jumbo_buffers(),
            rx_hash: false,
            tx_wait_us: defaults::tx_wait_us(),
            kernel_pass: KernelPass::default(),
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), AfXdpError> {
        let bad = |field: &'static str, value: String, why: &'static str| {
            Err(AfXdpError::BadConfig { field, value, why })
        };
        if self.interface.is_empty()
            || self.interface.len() >= 16
            || self.interface.contains(['/', '\0', ' '])
        {
            return bad(
                "interface",
                self.interface.clone(),
                "must be an interface name of 1 to 15 characters",
            );
        }
        if self.queues == Some(0) {
            return bad("queues", "0".into(), "at least one queue");
        }
        if !self.frame_size.is_power_of_two() || !(2048..=4096).contains(&self.frame_size) {
            return bad("frame_size", self.frame_size.to_string(), "must be 2048 or 4096");
        }
        if self.headroom > self.frame_size / 2 {
            return bad("headroom", self.headroom.to_string(), "must be at most half a frame");
        }
        for (field, v) in [
            ("rx_ring", self.rx_ring),
            ("tx_ring", self.tx_ring),
            ("fill_ring", self.fill_ring),
            ("completion_ring", self.completion_ring),
        ] {
            if !v.is_power_of_two() || !(64..=65536).contains(&v) {
                return bad(field, v.to_string(), "must be a power of two from 64 to 65536");
            }
        }
        if self.frames < 2 * self.fill_ring.max(self.tx_ring) || self.frames > 1 << 20 {
            return bad(
                "frames",
                self.frames.to_string(),
                "must be at least twice the larger of fill_ring and tx_ring, and at most 1048576",
            );
        }
        if !(16..=65536).contains(&self.jumbo_buffers) {
            return bad("jumbo_buffers", self.jumbo_buffers.to_string(), "must be from 16 to 65536");
        }
        if self.tx_wait_us > MAX_TX_WAIT_US {
            return bad("tx_wait_us", self.tx_wait_us.to_string(), "must be at most 100000 (100 ms)");
        }
        if self.kernel_pass.own_addresses.len() > MAX_OWN_ADDRESSES {
            return bad(
                "kernel_pass.own_addresses",
                format!("{:?}", self.kernel_pass.own_addresses),
                "at most 8 addresses",
            );
        }
        if self.kernel_pass.tcp_dst_ports.len() > MAX_TCP_PORTS {
            return bad(
                "kernel_pass.tcp_dst_ports",
                format!("{:?}", self.kernel_pass.tcp_dst_ports),
                "at most 8 ports",
            );
        }
        for (field, ports) in [
            ("kernel_pass.ike_ports", &self.kernel_pass.ike_ports),
            ("kernel_pass.nat_t_ports", &self.kernel_pass.nat_t_ports),
        ] {
            if ports.len() > MAX_UDP_PORTS {
                return bad(field, format!("{ports:?}"), "at most 4 ports");
            }
        }
        Ok(())
    }

    /// Bytes of headroom every received buffer starts with.
    pub fn rx_headroom(&self) -> u32 {
        XDP_PACKET_HEADROOM + self.headroom
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_toml_parses_and_validates() {
        let cfg: AfXdpPortConfig = toml::from_str(crate::EXAMPLE_TOML).unwrap();
        assert_eq!(cfg.interface, "ens1f0");
        assert_eq!(cfg.queues, Some(4));
        assert_eq!(cfg.mode, XdpMode::Auto);
        assert_eq!(cfg.frames, 8192);
        assert_eq!(cfg.kernel_pass.tcp_dst_ports, vec![22, 179]);
        assert_eq!(
            (&cfg.kernel_pass.ike_ports[..], &cfg.kernel_pass.nat_t_ports[..]),
            (&[500][..], &[4500][..])
        );
        cfg.validate().unwrap();
    }

    /// The ipsec-gateway's `[interfaces.X.port]` is an enum tagged by `backend`; this config must
    /// deserialize as its `afxdp` variant.
    #[test]
    fn works_as_a_variant_of_a_backend_tagged_enum() {
        #[derive(Debug, serde::Deserialize, PartialEq)]
        #[serde(tag = "backend", rename_all = "lowercase")]
        enum PortConfig {
            Afxdp(AfXdpPortConfig),
        }
        let text = "backend = \"afxdp\"\ninterface = \"ens1f0\"\nqueues = 2\nmode = \"skb\"\n";
        let PortConfig::Afxdp(c) = toml::from_str::<PortConfig>(text).unwrap();
        assert_eq!((c.interface.as_str(), c.queues, c.mode), ("ens1f0", Some(2), XdpMode::Skb));
        let inline = format!("backend = \"afxdp\"\n{}", crate::EXAMPLE_TOML);
        let PortConfig::Afxdp(c) = toml::from_str::<PortConfig>(&inline).unwrap();
        assert_eq!(c.kernel_pass.tcp_dst_ports, vec![22, 179]);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut c = AfXdpPortConfig::new("veth0");
        c.validate().unwrap();
        c.rx_ring = 1000;
        assert!(matches!(c.validate(), Err(AfXdpError::BadConfig { field: "rx_ring", .. })));
        let mut c = AfXdpPortConfig::new("veth0");
        c.frame_size = 3000;
        assert!(matches!(c.validate(), Err(AfXdpError::BadConfig { field: "frame_size", .. })));
        let c = AfXdpPortConfig::new("a-very-long-interface-name");
        assert!(matches!(c.validate(), Err(AfXdpError::BadConfig { field: "interface", .. })));
        let mut c = AfXdpPortConfig::new("veth0");
        c.kernel_pass.nat_t_ports = vec![4500, 4501, 4502, 4503, 4504];
        assert!(matches!(c.validate(), Err(AfXdpError::BadConfig { field: "kernel_pass.nat_t_ports", .. })));
        let mut c = AfXdpPortConfig::new("veth0");
        c.tx_wait_us = MAX_TX_WAIT_US;
        c.validate().unwrap();
        c.tx_wait_us = MAX_TX_WAIT_US + 1;
        assert!(matches!(c.validate(), Err(AfXdpError::BadConfig { field: "tx_wait_us", .. })));
        let e = toml::from_str::<AfXdpPortConfig>("interface = \"x\"\nmode = \"turbo\"").unwrap_err();
        assert!(e.to_string().contains("turbo"), "{e}");
    }
}
