//! # wirespeed-core
//!
//! The core of wirespeed, a library for packet-processing appliances (VPN/IPsec gateways,
//! inspection boxes) that run at NIC line rate. It holds the contracts every other wirespeed
//! crate builds on: packet buffers ([`PacketBuf`]) from a pre-allocated [`BufferPool`],
//! fixed-size [`Batch`]es, statically composed [`Stage`]s, backend traits ([`Port`],
//! [`RxQueue`], [`TxQueue`]), the per-core [`Runtime`] of shards that own their queues and state,
//! lock-free stats snapshots, epoch handoff of tables ([`epoch`]), and receive-side scaling
//! ([`rss`]).
//!
//! The hot path allocates nothing: buffers come from the pool, batches live on the stack or in
//! the shard, and stages are plain generic code the compiler inlines into one loop.
//!
//! ```
//! use wirespeed_core::backend::null::{NullConfig, NullPort};
//! use wirespeed_core::{BufferPool, PacketBuf, Pipeline, PoolConfig, Port, ShardCtx, PerPacket, Verdict};
//!
//! let pool = BufferPool::new(PoolConfig::default())?;
//! let mut port = NullPort::new(NullConfig::default(), pool);
//! let (rx, tx) = port.queue_pair(0)?;
//! // One stage: drop frames shorter than 60 bytes, forward the rest.
//! let stage = PerPacket(|_cx: &mut ShardCtx, p: &mut wirespeed_core::PoolBuf| {
//!     if p.len() < 60 { Verdict::Drop(wirespeed_core::DropReason::Truncated) } else { Verdict::Continue }
//! });
//! let mut pipeline = Pipeline::new(rx, tx, stage);
//! let mut cx = ShardCtx::new(0);
//! for _ in 0..10 {
//!     pipeline.run_once(&mut cx);
//! }
//! assert_eq!(cx.counters.tx_packets, 320);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

pub mod backend;
pub mod batch;
pub mod buf;
pub mod epoch;
pub mod meta;
pub mod pipeline;
pub mod pool;
pub mod queue;
pub mod rss;
pub mod runtime;
pub mod stage;
pub mod stats;
// The concurrency facade (std or loom atomics, `Arc`, threads, bounded queue). Public only so
// wirespeed's own crates and their loom model tests build on the same primitives; integrators
// use `std` directly. Hidden from the documentation and not covered by semver.
#[doc(hidden)]
pub mod sync;
pub mod verdict;
pub mod wire;

pub use backend::mem::InjectError;
pub use backend::{Port, PortError, PortInfo, RxQueue, TxQueue};
pub use batch::{BATCH_SIZE, Batch};
pub use buf::{BufError, BufWindow, PacketBuf};
pub use meta::{FlowClass, L3Kind, PacketMeta};
pub use pipeline::{Pipeline, StageSet};
pub use pool::{BufferPool, PoolBuf, PoolConfig, PoolError, PoolStats};
pub use runtime::{
    Command, IdlePolicy, LoopOptions, Poll, ShardControl, ShardState, Update, UpdateError, Worker,
    WorkerReport,
};
#[cfg(not(loom))]
pub use runtime::{
    HandOutError, PerShard, Pinning, ReportTypeError, Runtime, RuntimeConfig, RuntimeError, ShardOutcome,
    ShardReport, WaitError,
};
pub use stage::{Chain, PerPacket, Stage};
pub use stats::{ShardCounters, ShardCtx, ShardId, ShardStats, StatsCell};
pub use verdict::{CustomReason, DropReason, DropReasonError, Verdict};
pub use wire::{IpPrefix, PrefixError, WireError};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
