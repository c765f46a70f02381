//! `ipsec-gateway`: the example wirespeed appliance, shaped as the template an integrator copies.
//!
//! - [`config`]: the TOML configuration, validated up front into library types.
//! - [`gateway`]: the wiring — [`gateway::build`] turns a configuration and two ports (LAN, WAN;
//!   any backend) into data shards running both directions and a control shard answering
//!   management traffic, and returns a [`gateway::Gateway`] handle for live updates and stats.
//! - [`ports`]: opening the configured backend's ports.
//! - [`demo`]: traffic generation and peer checks for the offline two-gateway demo.
//!
//! ```
//! use ipsec_gateway::config::GatewayConfig;
//!
//! let cfg = GatewayConfig::from_toml(
//!     r#"
//!     [interfaces.lan]
//!     mac = "02:00:00:00:00:01"
//!     addresses = ["10.1.0.1/16"]
//!     port = { backend = "mem" }
//!     [interfaces.wan]
//!     mac = "02:00:00:00:00:02"
//!     addresses = ["192.0.2.100/24"]
//!     port = { backend = "mem" }
//!     "#,
//!     None,
//!     "<doc>",
//! )?;
//! assert_eq!(cfg.shards, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod ctl;
pub mod demo;
pub mod gateway;
pub mod keying;
pub mod metrics;
mod outpath;
pub mod ports;
pub mod stagestats;
