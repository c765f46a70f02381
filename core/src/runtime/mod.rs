//! The shard runtime: one pinned thread per shard, each owning its worker (queues, stages, SAs),
//! steered from outside only through a small bounded control queue, observed only through its
//! [`StatsCell`].
//!
//! * A [`Worker`] is a shard's loop body. Shards of one [`Runtime`] may run different worker
//!   types: the runtime holds each as a `Box<dyn Worker>`, so the shard boundary costs one
//!   indirect call per batch (never per packet); inside, a [`crate::Pipeline`] stays one
//!   monomorphised loop.
//! * Workers are built *on* the shard's thread by a factory, so they may hold `!Send`/`!Sync`
//!   state; nothing on the hot path is shared or locked. [`PerShard`] hands each factory its own
//!   pieces (queue pairs, epoch subscribers) without locks in user code.
//! * Every shard has the same, non-generic [`ShardControl`]: typed updates
//!   ([`ShardControl::update`]`(|w: &mut MyWorker| ..)`, or a pipeline's stages) are checked
//!   against the shard's worker type when sent and applied between batches.
//! * [`Runtime::stop`] and [`Runtime::wait_finished`] return one [`ShardReport`] per shard: final
//!   counters, how the shard ended, and the worker's own report ([`Worker::report`],
//!   [`crate::Pipeline::with_report`]) with typed access.
//! * A shard that panics is caught at the shard boundary and marked [`ShardState::Failed`] with
//!   the panic message; `stop`, `wait_finished` and `Drop` still finish and report it.
//!
//! The loop checks the control queue once per iteration (two plain loads when empty), runs a batch,
//! refreshes [`ShardCtx::now`] every [`LoopOptions::clock_every`] busy polls (not per batch) and
//! publishes counters every [`LoopOptions::stats_every`] batches and whenever it goes idle.
//!
//! ```
//! use wirespeed_core::backend::null::{NullConfig, NullPort};
//! use wirespeed_core::runtime::{PerShard, Pinning, Runtime, RuntimeConfig, ShardOutcome};
//! use wirespeed_core::{BufferPool, LoopOptions, Pipeline, PoolConfig};
//!
//! let pool = BufferPool::new(PoolConfig::default())?;
//! let mut port = NullPort::new(NullConfig { queues: 2, limit: Some(1000), ..NullConfig::default() }, pool);
//! let queues = PerShard::queue_pairs(&mut port, 2)?;
//! let cfg = RuntimeConfig {
//!     shards: 2,
//!     pinning: Pinning::None, // unpinned, for a doctest
//!     loop_options: LoopOptions { exit_when_finished: true, ..LoopOptions::default() },
//!     ..RuntimeConfig::default()
//! };
//! // Each shard builds its pipeline on its own thread; the report is read when it ends.
//! let rt = Runtime::launch(cfg, move |shard| {
//!     let (rx, tx) = queues.take(shard)?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
//!         Pipeline::new(rx, tx, ()).with_report(move |_stages| format!("shard {shard} done")),
//!     )
//! })?;
//! let reports = rt.wait_finished()?;
//! for r in &reports {
//!     assert_eq!(r.outcome, ShardOutcome::Finished);
//!     assert_eq!(r.stats.counters.tx_packets, 1000);
//!     assert_eq!(r.report::<String>().map(String::as_str), Some(&*format!("shard {} done", r.stats.shard)));
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::any::{Any, TypeId};

use crate::stats::{ShardCtx, ShardId, ShardStats, StatsCell};
use crate::sync::BoundedQueue;
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
mod handout;
mod idle;
#[cfg(not(loom))]
mod launch;

#[cfg(not(loom))]
pub use handout::{HandOutError, PerShard};
pub use idle::{IdlePolicy, UnknownIdlePolicy};
#[cfg(not(loom))]
pub use launch::{
    FactoryOutput, IntoWorker, Pinning, Placement, ReportTypeError, Runtime, RuntimeBuilder, RuntimeConfig,
    RuntimeError, ShardOutcome, ShardReport, WaitError, numa_node_of_cpu,
};

/// What one `poll` of a worker did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Processed this many packets; poll again at once.
    Busy(usize),
    /// Nothing to do right now.
    Idle,
    /// Input is exhausted for good (end of a capture); the shard may exit.
    Finished,
}

/// Type-erased access to a value, implemented for every `'static` type. It is the supertrait of
/// [`Worker`] that lets the runtime address typed updates and reports to a `Box<dyn Worker>`;
/// never implement it by hand.
pub trait AsAny: Any {
    /// `self` as `&dyn Any`.
    fn as_any(&self) -> &dyn Any;
    /// `self` as `&mut dyn Any`.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// The name of `self`'s concrete type (for error messages).
    fn type_name(&self) -> &'static str;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

/// A shard's work loop body. Built on the shard's thread; never shared.
///
/// The runtime calls [`Worker::poll`] once per loop iteration through a `Box<dyn Worker>`, so
/// shards of one runtime may run different workers. [`crate::Pipeline`] is the standard one.
pub trait Worker: AsAny {
    /// Does one unit of work (normally one batch).
    fn poll(&mut self, cx: &mut ShardCtx) -> Poll;

    /// Finishes in-flight work before the shard exits (flush Tx, write files).
    fn drain(&mut self, cx: &mut ShardCtx) {
        let _ = cx;
    }

    /// The part of the worker that typed updates may address besides the worker itself (a
    /// pipeline's stages). `None` by default.
    fn inner(&mut self) -> Option<&mut dyn Any> {
        None
    }

    /// Called once on the shard's thread before the loop with the shard's [`IdlePolicy`], for
    /// workers whose queues take part in it (a [`crate::Pipeline`] passes it to its Rx queue).
    /// Ignored by default.
    fn set_idle_policy(&mut self, policy: IdlePolicy) {
        let _ = policy;
    }

    /// Waits until input may be ready or `timeout` has passed (blocking [`IdlePolicy`]s call it
    /// after an idle poll); `false` when the worker cannot wait on its input (the default), and
    /// the runtime sleeps for `timeout` instead.
    fn wait(&mut self, timeout: std::time::Duration) -> bool {
        let _ = timeout;
        false
    }

    /// Called once on the shard's thread after the loop ended (and the worker drained): what it
    /// returns is handed back in the shard's [`ShardReport`] by `Runtime::stop` /
    /// `Runtime::wait_finished`. `None` by default.
    fn report(&mut self) -> Option<WorkerReport> {
        None
    }
}

/// What a worker hands back when its shard ends ([`Worker::report`]): any `Send` value, with the
/// name of its type so that asking for the wrong type says what was there
/// ([`ShardReport::try_report`]).
pub struct WorkerReport {
    value: Box<dyn Any + Send>,
    type_name: &'static str,
}

impl WorkerReport {
    /// Wraps `value`.
    pub fn new<T: Any + Send>(value: T) -> Self {
        Self { value: Box::new(value), type_name: std::any::type_name::<T>() }
    }

    /// The name of the value's type ([`std::any::type_name`]).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The value, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.value.downcast_ref()
    }

    /// The value if it is a `T`, else the report back.
    pub fn downcast<T: Any>(self) -> Result<T, Self> {
        match self.value.downcast::<T>() {
            Ok(t) => Ok(*t),
            Err(value) => Err(Self { value, type_name: self.type_name }),
        }
    }
}

impl std::fmt::Debug for WorkerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WorkerReport").field(&self.type_name).finish()
    }
}

type ApplyFn = Box<dyn FnOnce(&mut dyn Any) + Send>;

/// A change to a shard's worker, applied on the shard's thread between batches: a closure over
/// the worker's own type `T` or the type of its [`Worker::inner`] part.
pub struct Update {
    target: TypeId,
    target_name: &'static str,
    apply: ApplyFn,
}

impl std::fmt::Debug for Update {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Update").field("target", &self.target_name).finish_non_exhaustive()
    }
}

impl Update {
    /// An update of a worker of type `T`, or of a worker whose [`Worker::inner`] is a `T`.
    pub fn new<T: Any>(f: impl FnOnce(&mut T) + Send + 'static) -> Self {
        Self {
            target: TypeId::of::<T>(),
            target_name: std::any::type_name::<T>(),
            apply: Box::new(move |a: &mut dyn Any| {
                if let Some(t) = a.downcast_mut::<T>() {
                    f(t)
                }
            }),
        }
    }

    /// The type the update is for.
    pub fn target_name(&self) -> &'static str {
        self.target_name
    }

    /// Applies the update to `worker` (or its inner part); `false` when neither is the target
    /// type (the update is dropped).
    pub fn apply_to<W: Worker + ?Sized>(self, worker: &mut W) -> bool {
        if <dyn Any>::type_id(<W as AsAny>::as_any(worker)) == self.target {
            (self.apply)(<W as AsAny>::as_any_mut(worker));
            return true;
        }
        match worker.inner() {
            Some(inner) if <dyn Any>::type_id(inner) == self.target => {
                (self.apply)(inner);
                true
            }
            _ => false,
        }
    }
}

/// A command to one shard.
#[derive(Debug)]
pub enum Command {
    /// Drain and exit.
    Stop,
    /// Apply an update between batches.
    Update(Update),
    /// Publish counters now.
    PublishStats,
}

/// Lifecycle of a shard, as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ShardState {
    /// Thread started, worker being built.
    Starting = 0,
    /// In its loop.
    Running = 1,
    /// Input finished; waiting for `Stop` (or exiting, per [`LoopOptions::exit_when_finished`]).
    Finished = 2,
    /// Loop left; final counters published.
    Exited = 3,
    /// The worker could not be built, or the shard panicked ([`ShardControl::failure`] says why).
    Failed = 4,
}

impl ShardState {
    fn from_u32(v: u32) -> Self {
        match v {
            0 => Self::Starting,
            1 => Self::Running,
            2 => Self::Finished,
            3 => Self::Exited,
            _ => Self::Failed,
        }
    }

    /// True once the shard's loop has ended for good (`Exited` or `Failed`).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Exited | Self::Failed)
    }
}

#[derive(Debug, Clone, Copy)]
struct WorkerTypes {
    worker: TypeId,
    inner: Option<TypeId>,
    name: &'static str,
}

/// The control side of one shard: its command queue, state and published counters. The same
/// type for every shard whatever its worker, so handles of different shards go in one slice.
#[derive(Debug)]
pub struct ShardControl {
    shard: ShardId,
    commands: BoundedQueue<Command>,
    state: AtomicU32,
    stats: StatsCell,
    types: std::sync::OnceLock<WorkerTypes>,
    failure: std::sync::OnceLock<String>,
    misdirected: AtomicU64,
}

/// The control queue of a shard is full; the command is handed back.
#[derive(Debug, thiserror::Error)]
#[error("control queue of shard {shard} is full")]
pub struct ControlFull {
    /// The shard.
    pub shard: ShardId,
    /// The command that was not queued.
    pub command: Command,
}

/// Why an update was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// No shard with that index.
    #[error("no shard {shard} (the runtime has {shards})")]
    NoSuchShard {
        /// Shard asked for.
        shard: ShardId,
        /// Shards the runtime has.
        shards: usize,
    },
    /// The shard's worker is not (and does not contain) the update's type.
    #[error("shard {shard} runs `{worker}`, which neither is nor contains `{wanted}`")]
    WrongType {
        /// The shard.
        shard: ShardId,
        /// Its worker's type.
        worker: &'static str,
        /// The type the update is for.
        wanted: &'static str,
    },
    /// The shard's control queue is full (try again later).
    #[error("control queue of shard {shard} is full")]
    Full {
        /// The shard.
        shard: ShardId,
    },
    /// The shard has left its loop (`Exited` or `Failed`) and applies no more updates.
    #[error("shard {shard} is {state:?} and applies no updates")]
    NotRunning {
        /// The shard.
        shard: ShardId,
        /// Its state.
        state: ShardState,
    },
}

impl ShardControl {
    /// Control block for `shard` with a queue of `capacity` commands.
    pub fn new(shard: ShardId, capacity: usize) -> Self {
        Self {
            shard,
            commands: BoundedQueue::new(capacity.max(1)),
            state: AtomicU32::new(ShardState::Starting as u32),
            stats: StatsCell::new(),
            types: std::sync::OnceLock::new(),
            failure: std::sync::OnceLock::new(),
            misdirected: AtomicU64::new(0),
        }
    }

    /// The shard.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Queues a command.
    pub fn send(&self, command: Command) -> Result<(), ControlFull> {
        self.commands.push(command).map_err(|command| ControlFull { shard: self.shard, command })
    }

    /// Queues a typed update: `f` runs on the shard's thread between batches, on the worker if
    /// it is a `T`, else on the worker's [`Worker::inner`] part (a pipeline's stages) if that is
    /// a `T`. Once the worker is built the type is checked here, so a wrong type is an error now
    /// rather than a lost update later.
    pub fn update<T: Any>(&self, f: impl FnOnce(&mut T) + Send + 'static) -> Result<(), UpdateError> {
        let state = self.state();
        if state.is_terminal() {
            return Err(UpdateError::NotRunning { shard: self.shard, state });
        }
        if let Some(t) = self.types.get() {
            let want = TypeId::of::<T>();
            if t.worker != want && t.inner != Some(want) {
                return Err(UpdateError::WrongType {
                    shard: self.shard,
                    worker: t.name,
                    wanted: std::any::type_name::<T>(),
                });
            }
        }
        self.send(Command::Update(Update::new(f))).map_err(|_| UpdateError::Full { shard: self.shard })
    }

    /// Current lifecycle state.
    pub fn state(&self) -> ShardState {
        ShardState::from_u32(self.state.load(Ordering::Acquire))
    }

    fn set_state(&self, s: ShardState) {
        self.state.store(s as u32, Ordering::Release);
    }

    /// Why the shard failed (its factory's error or its panic message), once it has.
    pub fn failure(&self) -> Option<&str> {
        match self.state() {
            ShardState::Failed => self.failure.get().map(String::as_str),
            _ => None,
        }
    }

    /// Marks the shard failed with `message` (the first message is kept).
    pub fn mark_failed(&self, message: String) {
        let _ = self.failure.set(message);
        self.set_state(ShardState::Failed);
    }

    /// Updates that reached the shard before its worker type was known and matched neither the
    /// worker nor its inner part (dropped, counted here).
    pub fn misdirected_updates(&self) -> u64 {
        self.misdirected.load(Ordering::Relaxed)
    }

    /// The name of the worker type the shard runs, once it is built.
    pub fn worker_type(&self) -> Option<&'static str> {
        self.types.get().map(|t| t.name)
    }

    /// Records the worker's types (for checking updates when they are sent).
    fn note_worker<W: Worker + ?Sized>(&self, worker: &mut W) {
        if self.types.get().is_some() {
            return;
        }
        let name = <W as AsAny>::type_name(worker);
        let id = <dyn Any>::type_id(<W as AsAny>::as_any(worker));
        let inner = worker.inner().map(|i| <dyn Any>::type_id(i));
        let _ = self.types.set(WorkerTypes { worker: id, inner, name });
    }

    /// A consistent snapshot of the shard's counters (lock-free, never blocks the shard).
    pub fn stats(&self) -> ShardStats {
        let (generation, counters) = self.stats.read();
        ShardStats { shard: self.shard, generation, counters }
    }

    /// Publishes `cx`'s counters (the shard's own thread only: single writer).
    fn publish(&self, cx: &ShardCtx) {
        self.stats.publish(&cx.counters);
    }
}

/// How the shard loop behaves.
#[derive(Clone, Copy, Debug)]
pub struct LoopOptions {
    /// Publish counters every this many busy polls.
    pub stats_every: u32,
    /// Leave the loop when the worker reports [`Poll::Finished`] (offline captures), instead of
    /// idling until `Stop`.
    pub exit_when_finished: bool,
    /// Idle polls spun before the loop starts yielding the CPU.
    pub spin_before_yield: u32,
    /// Refresh [`ShardCtx::now`] every this many busy polls (and on every idle poll): reading the
    /// clock per batch costs about as much as moving a batch of 32 packets.
    pub clock_every: u32,
    /// What the shard does when a poll finds no work ([`IdlePolicy::Spin`] by default).
    pub idle: IdlePolicy,
}

impl Default for LoopOptions {
    fn default() -> Self {
        Self {
            stats_every: 64,
            exit_when_finished: false,
            spin_before_yield: 1024,
            clock_every: 16,
            idle: IdlePolicy::Spin,
        }
    }
}

/// Why the shard loop returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardExit {
    /// A `Stop` command.
    Stopped,
    /// Input finished and `exit_when_finished` was set.
    Finished,
}

/// Runs a shard until stopped. Used by [`Runtime`] on pinned threads (as `W = dyn Worker`), and
/// directly by tests (including the loom model), benches and appliances that manage their own
/// threads.
///
/// Final counters are always published *before* the state becomes [`ShardState::Exited`], so a
/// reader that sees `Exited` reads the final counters.
pub fn run_shard<W: Worker + ?Sized>(
    ctl: &ShardControl,
    worker: &mut W,
    cx: &mut ShardCtx,
    opts: &LoopOptions,
) -> ShardExit {
    ctl.note_worker(worker);
    worker.set_idle_policy(opts.idle);
    ctl.set_state(ShardState::Running);
    let clock_every = opts.clock_every.max(1);
    let mut busy_since_publish = 0u32;
    let mut busy_since_clock = 0u32;
    let mut idle = 0u32;
    let mut idle_since = std::time::Instant::now();
    let mut finished = false;
    cx.now = std::time::Instant::now();
    loop {
        // `is_empty` is two plain loads; an empty `pop` would also issue a full fence.
        while !ctl.commands.is_empty()
            && let Some(cmd) = ctl.commands.pop()
        {
            match cmd {
                Command::Stop => {
                    worker.drain(cx);
                    ctl.publish(cx);
                    ctl.set_state(ShardState::Exited);
                    return ShardExit::Stopped;
                }
                Command::Update(u) => {
                    if !u.apply_to(worker) {
                        ctl.misdirected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Command::PublishStats => {
                    ctl.publish(cx);
                    busy_since_publish = 0;
                }
            }
        }
        if finished {
            match opts.idle {
                IdlePolicy::Block { timeout } | IdlePolicy::Adaptive { timeout, .. } => {
                    std::thread::sleep(timeout);
                }
                IdlePolicy::Spin | IdlePolicy::PreferBusyPoll { .. } => idle_wait(&mut idle, opts),
            }
            continue;
        }
        match worker.poll(cx) {
            Poll::Busy(_) => {
                idle = 0;
                busy_since_publish += 1;
                if busy_since_publish >= opts.stats_every {
                    ctl.publish(cx);
                    busy_since_publish = 0;
                }
                busy_since_clock += 1;
                if busy_since_clock >= clock_every {
                    cx.now = std::time::Instant::now();
                    busy_since_clock = 0;
                }
            }
            Poll::Idle => {
                if busy_since_publish > 0 {
                    ctl.publish(cx);
                    busy_since_publish = 0;
                }
                cx.now = std::time::Instant::now();
                busy_since_clock = 0;
                if idle == 0 {
                    idle_since = cx.now;
                }
                let block = match opts.idle {
                    IdlePolicy::Block { timeout } => Some(timeout),
                    IdlePolicy::Adaptive { spin, timeout } if cx.now.duration_since(idle_since) >= spin => {
                        Some(timeout)
                    }
                    _ => None,
                };
                match block {
                    Some(timeout) => {
                        idle = idle.saturating_add(1);
                        if !worker.wait(timeout) {
                            std::thread::sleep(timeout);
                        }
                        cx.now = std::time::Instant::now();
                    }
                    None => idle_wait(&mut idle, opts),
                }
            }
            Poll::Finished => {
                worker.drain(cx);
                ctl.publish(cx);
                busy_since_publish = 0;
                if opts.exit_when_finished {
                    ctl.set_state(ShardState::Exited);
                    return ShardExit::Finished;
                }
                ctl.set_state(ShardState::Finished);
                finished = true;
            }
        }
    }
}

#[inline]
fn idle_wait(idle: &mut u32, opts: &LoopOptions) {
    *idle = idle.saturating_add(1);
    if *idle < opts.spin_before_yield {
        crate::sync::spin_hint();
    } else {
        crate::sync::thread::yield_now();
    }
}
