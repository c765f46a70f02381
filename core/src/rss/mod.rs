//! Receive-side scaling: how packets are spread over queues (and so over shards).
//!
//! Everything is re-exported here, one path per item (the submodules are private):
//!
//! * the Toeplitz hash — bit-serial reference ([`toeplitz_reference`]), per-byte tables and
//!   CLMUL batches ([`Toeplitz`]), the keys ([`MS_KEY`], [`SYMMETRIC_KEY`], [`parse_key`]);
//! * hash types, symmetric modes, [`RssConfig`] and the [`RssHasher`] built from it; a whole
//!   batch of flows hashed at once ([`HashBatch`], the dispatcher's path);
//! * the indirection table (hash → queue, [`Reta`]) and its builders;
//! * the declarative [`SteeringPlan`] (rules → queue / RSS group / drop);
//! * the few header fields RSS and steering read from a frame ([`PacketInfo`]);
//! * the software dispatcher ([`Dispatcher`], [`DispatchRx`], [`DispatchFabric`],
//!   [`SteeringEngine`]; below) for backends without (enough) hardware RSS;
//! * per-RETA-entry load counters ([`RetaLoad`]) and a [`Rebalancer`] that only moves idle
//!   entries;
//! * choosing a source port whose replies hash to a given queue ([`pick_source_port`]);
//! * the hash self-test's findings, a driver's RSS hash against the software one
//!   ([`SelfTestReport`], [`HashMismatch`]), which the DPDK and AF_XDP backends fill.
//!
//! [`RssControl`] is what a backend with hardware RSS (AF_XDP via ethtool, DPDK) implements so
//! the same configuration drives the NIC.
//!
//! ```
//! use wirespeed_core::rss::{FlowTuple, MS_KEY, Reta, RssConfig, RssHasher, SymmetricMode, toeplitz_reference};
//!
//! let hasher = RssHasher::new(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() })?;
//! let reta = Reta::round_robin(128, 4)?;
//! // Row 1 of Microsoft's "Verifying the RSS Hash Calculation" table.
//! let a = FlowTuple::tcp("66.9.149.187".parse()?, "161.142.100.80".parse()?, 2794, 1766);
//! let h = hasher.hash_tuple(&a).unwrap_or(0);
//! // `sort` puts the smaller address first and sorts the ports independently, then hashes
//! // src ‖ dst ‖ sport ‖ dport with the default (Microsoft) key: here 66.9.149.187,
//! // 161.142.100.80, port 1766, port 2794.
//! let sorted = [66, 9, 149, 187, 161, 142, 100, 80, 0x06, 0xe6, 0x0a, 0xea];
//! assert_eq!(h, toeplitz_reference(&MS_KEY, &sorted));
//! assert_eq!(h, 0x759c4e0e);
//! assert_eq!(hasher.hash_tuple(&a.reversed()), Some(h)); // both directions, one queue
//! assert_eq!(reta.queue(h), (0x759c4e0e_u32 & 127) as u16 % 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The software dispatcher
//!
//! The NIC's RSS and steering, done by an Rx shard in software.
//!
//! When a backend has fewer hardware queues than shards (a capture file, single-queue AF_XDP, a
//! NIC without the needed hash type), the shard that receives computes, per packet, exactly what
//! the NIC would — [`SteeringEngine`]: the plan's first matching rule, else the Toeplitz hash
//! (key, symmetric mode, hash types) and the RETA — and hands the packet to the shard owning
//! that queue (queue *q* is owned by shard *q*).
//!
//! Packets travel in batches over one bounded ring per (Rx shard → owner) pair
//! ([`DispatchFabric`]): a [`Dispatcher`] (a [`Stage`](crate::Stage)) collects each owner's
//! packets into a staging batch and pushes whole batches; an owner's [`DispatchRx`] (an
//! [`RxQueue`](crate::RxQueue)) pops them. Nothing allocates per packet; a full ring drops the
//! batch, counted as [`DropReason::DispatchRingFull`](crate::DropReason::DispatchRingFull); a
//! drop rule counts [`DropReason::SteeringDrop`](crate::DropReason::SteeringDrop). The default
//! group's RETA comes by epoch ([`crate::epoch`]), so the rebalancer can change it
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

mod clmul;
mod dispatch;
mod hash;
mod hash_batch;
mod parse;
mod pick;
mod rebalance;
mod reta;
mod selftest;
mod steering;
mod toeplitz;

#[cfg(test)]
mod tests;

pub use dispatch::{
    DecideScratch, DispatchFabric, DispatchRx, DispatchWorker, Dispatcher, LoadReceiver, LoadSender, Steer,
    SteeringDecision, SteeringEngine, load_channel,
};
pub use hash::{FlowTuple, HashInput, HashTypes, L4, RssConfig, RssHasher, SymmetricMode, parse_key};
pub use hash_batch::{HASH_BATCH, HashBatch};
pub use parse::PacketInfo;
pub use pick::pick_source_port;
pub use rebalance::{MoveReason, RebalanceMove, Rebalancer, RetaLoad, imbalance};
pub use reta::{MAX_RETA_SIZE, Reta};
pub use selftest::{HashMismatch, SelfTestReport};
pub use steering::{Applied, Match, PortRange, RssGroup, SteeringAction, SteeringPlan, SteeringRule};
pub use toeplitz::{MS_KEY, SYMMETRIC_KEY, Toeplitz, toeplitz_reference};

/// Why an RSS configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RssError {
    /// RETA size is zero, not a power of two, or above the limit.
    #[error("RETA size {size} is invalid: must be a power of two between 1 and {max}")]
    BadRetaSize {
        /// Size given.
        size: usize,
        /// Largest size supported.
        max: usize,
    },
    /// A RETA entry names a queue the port does not have.
    #[error("RETA entry {index} names queue {queue}, but only {queues} queues exist")]
    QueueOutOfRange {
        /// Entry index.
        index: usize,
        /// Queue named.
        queue: u16,
        /// Queues available.
        queues: u16,
    },
    /// The key is too short for the hash input, or a length the device does not take.
    #[error("RSS key of {len} bytes is not accepted: {why}")]
    BadKey {
        /// Key length given.
        len: usize,
        /// What the device requires.
        why: &'static str,
    },
    /// A configuration value is invalid (unknown mode, bad rule, queue outside a group).
    #[error("invalid RSS configuration: {0}")]
    BadConfig(String),
    /// The device refused (driver error, unsupported feature).
    #[error("device refused RSS configuration: {0}")]
    Device(String),
}

/// Hardware RSS of a port: key, indirection table (and, in the RSS module, steering).
pub trait RssControl {
    /// Programs the Toeplitz key.
    fn set_key(&mut self, key: &[u8]) -> Result<(), RssError>;
    /// Programs the indirection table.
    fn set_reta(&mut self, reta: &Reta) -> Result<(), RssError>;
    /// Programs a steering plan (rte_flow rules, ethtool ntuple/RSS contexts). The default
    /// refuses, so a backend that cannot steer leaves the job to the software dispatcher.
    fn apply_steering(&mut self, plan: &SteeringPlan) -> Result<Applied, RssError> {
        let _ = plan;
        Err(RssError::Device("this port cannot apply steering rules; use the software dispatcher".into()))
    }
}
