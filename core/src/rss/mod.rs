//! Receive-side scaling: how packets are spread over queues (and so over shards).
//!
//! * [`toeplitz`]: the Toeplitz hash — bit-serial reference, per-byte tables, CLMUL batches.
//! * [`hash`]: hash types, symmetric modes, [`RssConfig`] and the [`RssHasher`] built from it.
//! * [`hash_batch`]: a whole batch of flows hashed at once (the dispatcher's path).
//! * [`reta`]: the indirection table (hash → queue) and its builders.
//! * [`steering`]: the declarative [`SteeringPlan`] (rules → queue / RSS group / drop).
//! * [`parse`]: the few header fields RSS and steering read from a frame.
//! * [`dispatch`]: the software dispatcher — the same hash, plan and RETA in software, handing
//!   packets to their owning shard over bounded rings, for backends without (enough) hardware RSS.
//! * [`rebalance`]: per-RETA-entry load counters and a rebalancer that only moves idle entries.
//! * [`pick`]: choosing a source port whose replies hash to a given queue.
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

mod clmul;
pub mod dispatch;
pub mod hash;
pub mod hash_batch;
pub mod parse;
pub mod pick;
pub mod rebalance;
pub mod reta;
pub mod steering;
pub mod toeplitz;

#[cfg(test)]
mod tests;

pub use dispatch::{
    DecideScratch, DispatchFabric, DispatchRx, DispatchWorker, Dispatcher, LoadReceiver, LoadSender, Steer,
    SteeringDecision, SteeringEngine, load_channel,
};
pub use hash::{FlowTuple, HashInput, HashTypes, L4, RssConfig, RssHasher, SymmetricMode};
pub use hash_batch::{HASH_BATCH, HashBatch};
pub use parse::PacketInfo;
pub use pick::pick_source_port;
pub use rebalance::{MoveReason, RebalanceMove, Rebalancer, RetaLoad, imbalance};
pub use reta::Reta;
pub use steering::{
    Applied, IpPrefix, Match, PortRange, RssGroup, SteeringAction, SteeringPlan, SteeringRule,
};
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
