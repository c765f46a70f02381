//! [`IdlePolicy`]: what a shard does when a poll finds no work — spin, let the kernel busy-poll
//! for it, block until input arrives, or spin for a while and then block.
//!
//! The policy is part of [`super::LoopOptions`]. The runtime hands it once to the worker
//! ([`super::Worker::set_idle_policy`], which a [`crate::Pipeline`] passes on to its Rx queue:
//! a backend with kernel busy polling sets it up there) and, for the blocking policies, calls
//! [`super::Worker::wait`] after an idle poll; a worker that cannot wait on its input (the
//! default) makes the runtime sleep for the timeout instead.

use std::time::Duration;

/// What a shard does when a poll found no work.
///
/// ```
/// use std::time::Duration;
/// use wirespeed_core::runtime::IdlePolicy;
///
/// assert_eq!("spin".parse::<IdlePolicy>(), Ok(IdlePolicy::Spin));
/// assert_eq!("block".parse(), Ok(IdlePolicy::Block { timeout: Duration::from_millis(10) }));
/// let adaptive: IdlePolicy = "adaptive".parse()?;
/// assert_eq!(adaptive.name(), "adaptive");
/// assert!("nap".parse::<IdlePolicy>().unwrap_err().to_string().contains("spin, busy-poll, block, adaptive"));
/// # Ok::<(), wirespeed_core::runtime::UnknownIdlePolicy>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Poll again at once (a spin hint; a yield after [`super::LoopOptions::spin_before_yield`]
    /// idle polls): lowest latency, a whole core per shard even when no packet arrives.
    #[default]
    Spin,
    /// Spin, and let the kernel poll the device from the shard's own system calls instead of
    /// from interrupts and softirq threads: AF_XDP sets `SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`
    /// (`usecs`) and `SO_BUSY_POLL_BUDGET` (`budget`) on its sockets and drives the device's
    /// NAPI from every Rx poll. For interrupts to stay off while the shard polls, set the
    /// interface's `napi_defer_hard_irqs` (e.g. 2) and `gro_flush_timeout` (e.g. 200000 ns) in
    /// sysfs. Backends without busy polling treat it as [`IdlePolicy::Spin`].
    PreferBusyPoll {
        /// Microseconds one busy poll may spin in the kernel (`SO_BUSY_POLL`).
        usecs: u32,
        /// Packets one busy poll may process (`SO_BUSY_POLL_BUDGET`).
        budget: u32,
    },
    /// After every idle poll, wait up to `timeout` for input (AF_XDP: `poll()` on the socket);
    /// an idle shard uses next to no CPU, and a stop or update waits at most `timeout`.
    Block {
        /// Longest single wait.
        timeout: Duration,
    },
    /// Spin while the shard has been idle for less than `spin`, then block as
    /// [`IdlePolicy::Block`] does: spin latency under load, no CPU when idle.
    Adaptive {
        /// How long an idle shard keeps spinning before it blocks.
        spin: Duration,
        /// Longest single wait once blocking.
        timeout: Duration,
    },
}

/// [`IdlePolicy`]'s `FromStr` got a name it does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown idle policy `{0}` (one of: spin, busy-poll, block, adaptive)")]
pub struct UnknownIdlePolicy(pub String);

impl IdlePolicy {
    /// [`IdlePolicy::PreferBusyPoll`] with 20 µs per busy poll and a budget of 64 packets.
    pub const BUSY_POLL: Self = Self::PreferBusyPoll { usecs: 20, budget: 64 };
    /// [`IdlePolicy::Block`] with a 10 ms timeout.
    pub const BLOCK: Self = Self::Block { timeout: Duration::from_millis(10) };
    /// [`IdlePolicy::Adaptive`]: spin 200 µs, then block with a 10 ms timeout.
    pub const ADAPTIVE: Self =
        Self::Adaptive { spin: Duration::from_micros(200), timeout: Duration::from_millis(10) };

    /// The policy's name as configuration files spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Spin => "spin",
            Self::PreferBusyPoll { .. } => "busy-poll",
            Self::Block { .. } => "block",
            Self::Adaptive { .. } => "adaptive",
        }
    }

    /// True for the policies that wait for input ([`IdlePolicy::Block`],
    /// [`IdlePolicy::Adaptive`]).
    pub fn blocks(&self) -> bool {
        matches!(self, Self::Block { .. } | Self::Adaptive { .. })
    }
}

impl std::str::FromStr for IdlePolicy {
    type Err = UnknownIdlePolicy;

    /// `spin`, `busy-poll`, `block` or `adaptive`, with the default parameters.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spin" => Ok(Self::Spin),
            "busy-poll" => Ok(Self::BUSY_POLL),
            "block" => Ok(Self::BLOCK),
            "adaptive" => Ok(Self::ADAPTIVE),
            other => Err(UnknownIdlePolicy(other.to_string())),
        }
    }
}

impl std::fmt::Display for IdlePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Spin => f.write_str("spin"),
            Self::PreferBusyPoll { usecs, budget } => write!(f, "busy-poll ({usecs} µs, budget {budget})"),
            Self::Block { timeout } => write!(f, "block (timeout {timeout:?})"),
            Self::Adaptive { spin, timeout } => write!(f, "adaptive (spin {spin:?}, then block {timeout:?})"),
        }
    }
}
