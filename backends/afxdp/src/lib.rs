//! # wirespeed-afxdp
//!
//! The Linux AF_XDP backend of wirespeed: packets go from the NIC's queues straight into
//! memory the application owns (UMEM), without the kernel network stack, on a stock kernel. An
//! [`AfXdpPort`] loads a small XDP program — assembled in Rust and loaded through the `bpf()`
//! system call, so no clang, libbpf or libxdp — that redirects every queue to the AF_XDP socket
//! of the shard owning that queue, while the management traffic named in [`KernelPass`] (ARP,
//! IPv6 neighbor discovery, SSH by default) still reaches the kernel. Each claimed queue gets its
//! own socket and UMEM; [`XdpBuf`] is the [`wirespeed_core::PacketBuf`] over a UMEM frame (256
//! bytes of headroom for encapsulation), so every existing stage runs on it unchanged. The
//! program is attached as a `bpf_link` and detaches when the port and its queues drop — also
//! when a shard panics or the process dies.
//!
//! Beside the data path: [`ethtool`] programs the NIC's RSS key, indirection table, symmetric
//! hashing and ntuple filters and reports item by item what runs in hardware and what is left to
//! the software dispatcher; [`placement`] puts each queue's shard and interrupt on the NIC's NUMA
//! node. Everything here needs only Rust and `libc`. The socket, ring, UMEM, `bpf()` and ethtool
//! code exists on Linux only; elsewhere the crate offers the configuration types alone.
//!
//! Configuration, and what the XDP program leaves to the kernel for a steering plan (runs
//! anywhere, no privileges):
//!
//! ```
//! use wirespeed_afxdp::{AfXdpPortConfig, KernelPass, XdpMode};
//! use wirespeed_core::rss::{RssGroup, SteeringPlan};
//!
//! let cfg: AfXdpPortConfig = toml::from_str("interface = \"ens1f0\"\nmode = \"copy\"")?;
//! cfg.validate()?;
//! assert_eq!((cfg.mode, cfg.frame_size, cfg.rx_headroom()), (XdpMode::Copy, 2048, 256));
//!
//! let own = ["192.0.2.1".parse()?];
//! let plan = SteeringPlan::management_default(0, RssGroup::first(4), &own);
//! let (pass, covered) = KernelPass::from_plan(&plan, 0);
//! assert!(pass.arp && pass.ipv6_nd);
//! assert_eq!(pass.tcp_dst_ports, [22, 179]); // SSH and BGP, to 192.0.2.1 only
//! assert_eq!((pass.ike_ports, pass.nat_t_ports), (vec![500], vec![4500])); // IKE, to 192.0.2.1
//! let names = ["arp", "ipv6-nd", "ike@192.0.2.1", "ike-natt@192.0.2.1", "ssh@192.0.2.1", "bgp@192.0.2.1"];
//! assert_eq!(covered, names);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A shard on queue 0 (root, or `CAP_NET_ADMIN` + `CAP_BPF`, and a real interface):
//!
//! ```no_run
//! # #[cfg(target_os = "linux")] {
//! use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig};
//! use wirespeed_core::{Pipeline, Port, ShardCtx, PerPacket, Verdict};
//!
//! let cfg: AfXdpPortConfig = toml::from_str(wirespeed_afxdp::EXAMPLE_TOML)?;
//! let mut port = AfXdpPort::open(cfg)?;
//! println!("{}", port.report());
//! let (rx, tx) = port.queue_pair(0)?;
//! // Reflect every frame back out of the queue it came in on.
//! let mut pipeline = Pipeline::new(rx, tx, PerPacket(|_: &mut ShardCtx, _: &mut _| Verdict::Continue));
//! let mut cx = ShardCtx::new(0);
//! loop {
//!     pipeline.run_once(&mut cx);
//! }
//! # }
//! # #[allow(unreachable_code)] Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Configuration
//!
//! [`AfXdpPortConfig`] deserializes from a TOML table like [`EXAMPLE_TOML`]:
//!
//! ```toml
#![doc = include_str!("example.toml")]
//! ```
#![deny(unsafe_code)]

mod config;
mod error;
pub mod placement;
mod program;
pub mod selftest;

#[cfg(target_os = "linux")]
mod bpf;
#[cfg(target_os = "linux")]
mod btf;
#[cfg(target_os = "linux")]
pub mod ethtool;
#[cfg(target_os = "linux")]
pub mod peer;
#[cfg(target_os = "linux")]
mod port;
#[cfg(target_os = "linux")]
mod ring;
#[cfg(target_os = "linux")]
mod sys;
#[cfg(target_os = "linux")]
mod umem;

pub use config::{AfXdpPortConfig, MAX_TX_WAIT_US, XDP_PACKET_HEADROOM, XdpMode};
pub use error::AfXdpError;
pub use program::{KernelPass, MAX_OWN_ADDRESSES, MAX_TCP_PORTS, MAX_UDP_PORTS};

#[cfg(target_os = "linux")]
pub use port::{
    AfXdpPort, AttachMode, AttachReport, BindMode, RxHashState, RxHashStats, SocketStats, TxStats, XdpRx,
    XdpTx, probe, rx_queue_count,
};
#[cfg(target_os = "linux")]
pub use umem::XdpBuf;

/// A documented example of an AF_XDP port's configuration (the ipsec-gateway's `[port]` table
/// with `backend = "afxdp"` takes these fields).
pub const EXAMPLE_TOML: &str = include_str!("example.toml");
