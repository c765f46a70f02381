//! The software dispatcher: the NIC's RSS and steering, done by an Rx shard in software.
//!
//! When a backend has fewer hardware queues than shards (a capture file, single-queue AF_XDP, a
//! NIC without the needed hash type), the shard that receives computes, per packet, exactly what
//! the NIC would — [`SteeringEngine`]: the plan's first matching rule, else the Toeplitz hash
//! (key, symmetric mode, hash types) and the RETA — and hands the packet to the shard owning
//! that queue (queue *q* is owned by shard *q*).
//!
//! Packets travel in batches over one bounded ring per (Rx shard → owner) pair
//! ([`DispatchFabric`]): a [`Dispatcher`] (a [`Stage`]) collects each owner's packets into a
//! staging batch and pushes whole batches; an owner's [`DispatchRx`] (an [`RxQueue`]) pops
//! them. Nothing allocates per packet; a full ring drops the batch, counted as
//! [`DropReason::DispatchRingFull`]; a drop rule counts [`DropReason::SteeringDrop`]. The
//! default group's RETA comes by epoch ([`crate::epoch`]), so the rebalancer can change it
//! without stopping anything; per-entry load is counted in a [`RetaLoad`].
//!
//! Wiring, for a single-queue port feeding two shards: shard 0 receives, keeps its own packets
//! (the [`Dispatcher`] is its first stage) and hands the rest over; shard 1's pipeline receives
//! from a [`DispatchRx`]. (With an Rx shard that owns no queue, run a [`DispatchWorker`] instead.)
//!
//! ```
//! use wirespeed_core::backend::mem::{MemConfig, MemPort};
//! use wirespeed_core::epoch::Publisher;
//! use std::sync::Arc;
//! use wirespeed_core::rss::{DispatchFabric, RssConfig, SteeringEngine, SymmetricMode};
//! use wirespeed_core::{BufferPool, Pipeline, PoolBuf, PoolConfig, Port, ShardCtx};
//!
//! let pool = BufferPool::new(PoolConfig::default())?;
//! let (mut port, nic) = MemPort::new(MemConfig { queues: 2, ..MemConfig::default() }, pool);
//! let (rx0, tx0) = port.queue_pair(0)?;
//! let (_rx1, tx1) = port.queue_pair(1)?; // the hardware queue 1 gets nothing: one-queue NIC
//!
//! let rss = RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() };
//! let engine = Arc::new(SteeringEngine::rss_only(&rss, 2)?); // what a 2-queue NIC would do
//! let mut reta = Publisher::new(engine.default_reta()?); // the rebalancer publishes here
//! let fabric = DispatchFabric::<PoolBuf>::new(1, 2, 64)?;
//! let dispatcher = fabric.dispatcher(0, engine.clone(), reta.subscribe(), Some(0))?;
//! let mut shard0 = Pipeline::new(rx0, tx0, (dispatcher, /* classify, esp, forward */ ()));
//! let mut shard1 = Pipeline::new(fabric.receiver(1)?, tx1, ());
//!
//! for sport in 1000..1064u16 {
//!     let mut f = wirespeed_core::backend::null::udp4_frame(64);
//!     f[34..36].copy_from_slice(&sport.to_be_bytes());
//!     nic.inject(0, &f)?;
//! }
//! let (mut cx0, mut cx1) = (ShardCtx::new(0), ShardCtx::new(1));
//! while shard0.run_once(&mut cx0) > 0 {}
//! while shard1.run_once(&mut cx1) > 0 {}
//! assert_eq!(cx0.counters.tx_packets + cx1.counters.tx_packets, 64);
//! assert_eq!(cx0.counters.handed_off, cx1.counters.rx_packets);
//! assert!(cx1.counters.rx_packets > 0 && cx0.counters.tx_packets > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The module is split by concept: [`engine`] (what a packet's queue is: [`SteeringEngine`],
//! [`Steer`]), [`fabric`] (the rings between Rx shards and owners), [`dispatcher`] (the
//! [`Dispatcher`] stage and the Rx-only [`DispatchWorker`]), [`receiver`] (the owners'
//! [`DispatchRx`]) and [`load`] (per-entry load reports for the rebalancer).

pub mod dispatcher;
pub mod engine;
pub mod fabric;
pub mod load;
pub mod receiver;

pub use dispatcher::{DispatchWorker, Dispatcher};
pub use engine::{DecideScratch, Steer, SteeringDecision, SteeringEngine};
pub use fabric::DispatchFabric;
pub use load::{LoadReceiver, LoadSender, load_channel};
pub use receiver::DispatchRx;

#[allow(unused_imports)] // for the module docs' links
use crate::{backend::RxQueue, rss::RetaLoad, stage::Stage, verdict::DropReason};
