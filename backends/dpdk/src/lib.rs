//! # wirespeed-dpdk
//!
//! The DPDK backend of wirespeed: a DPDK ethdev (a ConnectX NIC through mlx5, or a virtual
//! device) as a wirespeed [`Port`](wirespeed_core::Port) with one Rx/Tx queue pair per shard. Received packets stay in
//! their `rte_mbuf`s ([`Mbuf`] implements [`wirespeed_core::PacketBuf`]): no copy, no allocation
//! per packet, mbufs back to the mempool of the device's NUMA socket when dropped, DPDK's 128-byte
//! headroom for ESP encapsulation. Hardware RSS ([`HwRss`]) takes wirespeed's key, hash types,
//! RETA and symmetric mode, compiles [`wirespeed_core::rss::SteeringPlan`] rules to `rte_flow`
//! with a rule-by-rule report of what runs in software, and [`HashSelfTest`] checks that the
//! NIC's hash equals wirespeed's software Toeplitz. The [`host`] exception path sends what the
//! steering plan marks as the host's (IKE) to a kernel TAP interface and what the kernel sends
//! back out of the port, as VPP's linux-cp does.
//!
//! It links the system DPDK (22.11, `libdpdk` through pkg-config) through a small C shim; it is
//! outside the workspace's default members. Built without DPDK, every port fails with
//! [`DpdkError::NotInstalled`].
//!
//! ```
//! use wirespeed_core::{PerPacket, Pipeline, Port, ShardCtx, Verdict};
//! use wirespeed_dpdk::{DpdkError, DpdkPort, DpdkPortConfig, Mbuf, TEST_EAL_ARGS};
//!
//! // A net_null virtual device: every Rx burst is full, Tx frees what it is given.
//! let mut eal: Vec<String> = TEST_EAL_ARGS.iter().map(|s| s.to_string()).collect();
//! eal.push("--vdev=net_null0".into());
//! let mut cfg = DpdkPortConfig::new(eal, "net_null0");
//! (cfg.rx_desc, cfg.tx_desc, cfg.mempool.mbufs) = (256, 256, Some(2047));
//! let mut port = match DpdkPort::new(&cfg) {
//!     Err(DpdkError::NotInstalled) => return Ok(()), // this build has no DPDK
//!     r => r?,
//! };
//! let (rx, tx) = port.queue_pair(0)?;
//! // Any wirespeed stage runs on mbufs unchanged; this one forwards everything.
//! let stage = PerPacket(|_: &mut ShardCtx, _: &mut Mbuf| Verdict::Continue);
//! let mut pipeline = Pipeline::new(rx, tx, stage);
//! let mut cx = ShardCtx::new(0);
//! assert_eq!(pipeline.run_once(&mut cx), 32);
//! assert_eq!(cx.counters.tx_packets, 32);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Layout: the private `ffi` module declares the shim (the only `extern "C"`) and `mbuf` holds
//! the mbuf pointer code; they are the only modules with `unsafe`.
#![deny(unsafe_code)]

pub mod config;
mod eal;
mod error;
mod ffi;
pub mod flow;
pub mod host;
mod mbuf;
mod mempool;
mod port;
pub mod rss;
pub mod selftest;

pub use config::{DpdkPortConfig, MIN_MTU};
pub use eal::{Eal, TEST_EAL_ARGS};
pub use error::DpdkError;
pub use host::{HostAction, HostCounters, HostCountersHandle, HostFilter, HostPathConfig};
pub use mbuf::Mbuf;
pub use mempool::{DEFAULT_MBUFS, Mempool, MempoolConfig};
pub use port::{DpdkPort, DpdkRx, DpdkTx, LinkStatus, PortCounters};
pub use rss::{HwRss, RssReport, RssSettings, SymmetricSupport};
pub use selftest::{HashMismatch, HashSelfTest, SelfTestReport, rte_softrss};
