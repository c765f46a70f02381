//! Receive-side scaling: how packets are spread over queues (and so over shards).
//!
//! `reta` holds the indirection table; [`RssControl`] is what a backend with hardware RSS
//! (AF_XDP via ethtool, DPDK) implements so the same configuration drives the NIC.

pub mod reta;

pub use reta::Reta;

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
}
