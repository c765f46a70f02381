//! [`Runtime`]: pinned shard threads, each building its worker with its factory and running
//! [`run_shard`] inside a panic boundary.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::handout;
use super::{
    Command, LoopOptions, ShardControl, ShardExit, ShardState, UpdateError, Worker, WorkerReport, run_shard,
};
use crate::stats::{ShardCounters, ShardCtx, ShardId, ShardStats};
use crate::sync::Arc;

/// Which cores shard threads are pinned to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Pinning {
    /// Shard `i` on the `i`-th core the process may use (wrapping); unpinned when that list
    /// cannot be read.
    #[default]
    Auto,
    /// Shard `i` on core `cores[i % cores.len()]` (an empty list pins nothing).
    Cores(Vec<usize>),
    /// No pinning: the OS schedules the shard threads (tests, doctests, shared machines).
    None,
}

impl Pinning {
    /// The core of shard `shard`, given the cores the process may use (`available`).
    ///
    /// ```
    /// use wirespeed_core::runtime::Pinning;
    /// assert_eq!(Pinning::Auto.core_of(3, &[4, 5]), Some(5));
    /// assert_eq!(Pinning::Auto.core_of(0, &[]), None);
    /// assert_eq!(Pinning::Cores(vec![2, 6, 7]).core_of(1, &[0]), Some(6));
    /// assert_eq!(Pinning::Cores(vec![]).core_of(1, &[0]), None);
    /// assert_eq!(Pinning::None.core_of(0, &[0]), None);
    /// ```
    pub fn core_of(&self, shard: ShardId, available: &[usize]) -> Option<usize> {
        let list = match self {
            Pinning::Auto => available,
            Pinning::Cores(cores) => cores,
            Pinning::None => return None,
        };
        (!list.is_empty()).then(|| list[shard % list.len()])
    }
}

/// How to launch shards.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Number of shards (threads) for [`Runtime::launch`]. [`Runtime::builder`] launches one
    /// shard per factory given and ignores this field.
    pub shards: usize,
    /// Which core each shard runs on ([`Pinning::Auto`] by default).
    pub pinning: Pinning,
    /// Commands each control queue holds.
    pub control_capacity: usize,
    /// Loop behaviour.
    pub loop_options: LoopOptions,
    /// Thread name prefix.
    pub name: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            shards: 1,
            pinning: Pinning::Auto,
            control_capacity: 64,
            loop_options: LoopOptions::default(),
            name: "wirespeed-shard".into(),
        }
    }
}

/// Why shards could not be launched or ended badly.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Zero shards asked for.
    #[error("a runtime needs at least one shard")]
    NoShards,
    /// The OS refused a thread.
    #[error("could not spawn shard {shard}: {source}")]
    Spawn {
        /// Shard.
        shard: ShardId,
        /// OS error.
        source: std::io::Error,
    },
    /// A shard's factory failed (returned an error or panicked).
    #[error("shard {shard} failed to start: {message}")]
    Factory {
        /// Shard.
        shard: ShardId,
        /// Factory's error.
        message: String,
    },
    /// [`Runtime::launch`]'s factory took from a [`super::PerShard`] hand-out holding more items
    /// than shards were launched (e.g. queue pairs for 2 shards with [`RuntimeConfig::shards`]
    /// left at 1, which would leave a queue unserved), or none for a shard; nothing runs.
    #[error(
        "{handed_out} {what}s were handed out for {shards} shards: set RuntimeConfig::shards to {handed_out} or prepare {shards}"
    )]
    ShardCount {
        /// Shards launched ([`RuntimeConfig::shards`]).
        shards: usize,
        /// Items the hand-out holds.
        handed_out: usize,
        /// What the hand-out holds ("queue pair").
        what: &'static str,
    },
    /// A shard panicked while running; the other shards were stopped normally.
    #[error("shard {shard} panicked: {message}")]
    Panicked {
        /// Shard.
        shard: ShardId,
        /// The panic message.
        message: String,
    },
}

/// Why [`Runtime::wait_finished_timeout`] returned no reports.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// Some shard's input had not finished in time; the shards keep running and the runtime is
    /// handed back (wait again, read its stats, or [`Runtime::stop`] it).
    #[error("shards still running after {after:?}")]
    TimedOut {
        /// The runtime, still running.
        runtime: Runtime,
        /// The timeout that passed.
        after: std::time::Duration,
    },
    /// Every shard finished, but one had failed (see [`Runtime::wait_finished`]).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Where a shard runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Core the shard is pinned to, if pinned.
    pub core: Option<usize>,
    /// NUMA node of that core, read from sysfs, if known.
    pub numa_node: Option<usize>,
}

/// What a factory may return: any [`Worker`], or an already boxed `Box<dyn Worker>` (so one
/// factory can build different workers for different shards).
pub trait IntoWorker {
    /// The worker, boxed for the shard boundary.
    fn into_worker(self) -> Box<dyn Worker>;
}

impl<W: Worker> IntoWorker for W {
    fn into_worker(self) -> Box<dyn Worker> {
        Box::new(self)
    }
}

impl IntoWorker for Box<dyn Worker> {
    fn into_worker(self) -> Box<dyn Worker> {
        self
    }
}

/// What a shard factory returns: a worker (anything [`IntoWorker`]) when building it cannot
/// fail, or a `Result` of one, whose `Err` fails the launch with its message
/// ([`RuntimeError::Factory`]).
pub trait FactoryOutput {
    /// The worker, or the factory's error message.
    fn into_worker_result(self) -> Result<Box<dyn Worker>, String>;
}

impl<W: IntoWorker> FactoryOutput for W {
    fn into_worker_result(self) -> Result<Box<dyn Worker>, String> {
        Ok(self.into_worker())
    }
}

impl<W: IntoWorker, E: std::fmt::Display> FactoryOutput for Result<W, E> {
    fn into_worker_result(self) -> Result<Box<dyn Worker>, String> {
        self.map(IntoWorker::into_worker).map_err(|e| e.to_string())
    }
}

/// How a shard ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardOutcome {
    /// Stopped by [`Runtime::stop`] (or after [`Runtime::wait_finished`] saw its input finish).
    Stopped,
    /// Left its loop at the end of its input ([`LoopOptions::exit_when_finished`]).
    Finished,
    /// Panicked; the message of the panic.
    Failed(String),
}

/// One shard's end: final counters, how it ended, and its worker's [`Worker::report`].
#[derive(Debug)]
pub struct ShardReport {
    /// Final counters (the last ones published, for a failed shard).
    pub stats: ShardStats,
    /// How the shard ended.
    pub outcome: ShardOutcome,
    report: Option<WorkerReport>,
}

/// [`ShardReport::try_report`] asked for a type the worker did not report.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("shard {shard} reported {}, not {expected}", found.unwrap_or("nothing"))]
pub struct ReportTypeError {
    /// The shard.
    pub shard: ShardId,
    /// The type asked for.
    pub expected: &'static str,
    /// The type of the report it made, if it made one.
    pub found: Option<&'static str>,
}

impl ShardReport {
    /// The shard.
    pub fn shard(&self) -> ShardId {
        self.stats.shard
    }

    /// Final counters.
    pub fn counters(&self) -> &ShardCounters {
        &self.stats.counters
    }

    /// The worker's report, if it made one of type `T` ([`ShardReport::try_report`] says what it
    /// made instead).
    pub fn report<T: Any>(&self) -> Option<&T> {
        self.report.as_ref()?.downcast_ref()
    }

    /// The worker's report as a `T`, or an error naming the type it actually reported (or that
    /// it reported nothing).
    ///
    /// ```
    /// use wirespeed_core::backend::null::{NullConfig, NullPort};
    /// use wirespeed_core::{BufferPool, Pinning, Pipeline, PoolConfig, Port, Runtime, RuntimeConfig};
    ///
    /// let mut port = NullPort::new(NullConfig::default(), BufferPool::new(PoolConfig::default())?);
    /// let (rx, tx) = port.queue_pair(0)?;
    /// let cfg = RuntimeConfig { pinning: Pinning::None, ..RuntimeConfig::default() };
    /// let rt = Runtime::builder(cfg).shard(move |_| Pipeline::new(rx, tx, ()).with_report(|_| 7u32)).launch()?;
    /// let reports = rt.stop()?;
    /// assert_eq!(reports[0].try_report::<u32>(), Ok(&7));
    /// let err = reports[0].try_report::<u64>().unwrap_err();
    /// assert_eq!((err.expected, err.found), ("u64", Some("u32")));
    /// assert_eq!(err.to_string(), "shard 0 reported u32, not u64");
    /// assert_eq!(reports[0].report_type_name(), Some("u32"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_report<T: Any>(&self) -> Result<&T, ReportTypeError> {
        let found = self.report.as_ref();
        found.and_then(WorkerReport::downcast_ref).ok_or(ReportTypeError {
            shard: self.shard(),
            expected: std::any::type_name::<T>(),
            found: found.map(WorkerReport::type_name),
        })
    }

    /// The name of the type of the worker's report, if it made one.
    pub fn report_type_name(&self) -> Option<&'static str> {
        self.report.as_ref().map(WorkerReport::type_name)
    }

    /// Takes the worker's report out, if it is a `T` (it stays when it is not).
    pub fn take_report<T: Any>(&mut self) -> Option<T> {
        match self.report.take()?.downcast::<T>() {
            Ok(t) => Some(t),
            Err(other) => {
                self.report = Some(other);
                None
            }
        }
    }
}

type ShardFactory = Box<dyn FnOnce(ShardId) -> Result<Box<dyn Worker>, StartFailure> + Send>;

/// Why a shard's factory did not produce a worker.
#[derive(Debug)]
enum StartFailure {
    /// The factory's error or panic message.
    Factory(String),
    /// A hand-out's length was not the shard count (see [`RuntimeError::ShardCount`]).
    ShardCount { shards: usize, handed_out: usize, what: &'static str },
}

impl StartFailure {
    fn into_error(self, shard: ShardId) -> RuntimeError {
        match self {
            StartFailure::Factory(message) => RuntimeError::Factory { shard, message },
            StartFailure::ShardCount { shards, handed_out, what } => {
                RuntimeError::ShardCount { shards, handed_out, what }
            }
        }
    }

    fn message(&self) -> String {
        match self {
            StartFailure::Factory(message) => message.clone(),
            &StartFailure::ShardCount { shards, handed_out, what } => {
                RuntimeError::ShardCount { shards, handed_out, what }.to_string()
            }
        }
    }
}
type ThreadEnd = Result<(ShardExit, Option<WorkerReport>), String>;

struct Shard {
    control: Arc<ShardControl>,
    thread: Option<std::thread::JoinHandle<ThreadEnd>>,
    placement: Placement,
}

/// Running shards. Dropping it stops them.
pub struct Runtime {
    shards: Vec<Shard>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("shards", &self.shards.len()).finish()
    }
}

/// Launches shards with one factory each, so shards may run different workers.
///
/// ```
/// use wirespeed_core::backend::null::{NullConfig, NullPort};
/// use wirespeed_core::runtime::{Pinning, Poll, Runtime, RuntimeConfig, Worker, WorkerReport};
/// use wirespeed_core::{BufferPool, PoolConfig, Port, Pipeline, ShardCtx};
///
/// /// A worker of another type: counts its polls.
/// struct Ticker(u64);
/// impl Worker for Ticker {
///     fn poll(&mut self, _cx: &mut ShardCtx) -> Poll {
///         self.0 += 1;
///         Poll::Idle
///     }
///     fn report(&mut self) -> Option<WorkerReport> {
///         Some(WorkerReport::new(self.0))
///     }
/// }
///
/// let mut port = NullPort::new(NullConfig::default(), BufferPool::new(PoolConfig::default())?);
/// let (rx, tx) = port.queue_pair(0)?;
/// let cfg = RuntimeConfig { pinning: Pinning::None, ..RuntimeConfig::default() };
/// let rt = Runtime::builder(cfg)
///     .shard(move |_| Ok::<_, String>(Pipeline::new(rx, tx, ())))
///     .shard(|_| Ticker(0)) // a factory that cannot fail returns the worker itself
///     .launch()?;
/// // Uniform control handles; typed updates are checked against each shard's worker.
/// let [c0, c1] = [rt.control(0).unwrap(), rt.control(1).unwrap()];
/// c1.update(|t: &mut Ticker| t.0 += 1_000_000)?;
/// assert!(c0.update(|t: &mut Ticker| t.0 = 0).is_err()); // shard 0 is a pipeline
/// let reports = rt.stop()?;
/// assert!(*reports[1].report::<u64>().unwrap() >= 1_000_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RuntimeBuilder {
    cfg: RuntimeConfig,
    factories: Vec<ShardFactory>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("cfg", &self.cfg)
            .field("shards", &self.factories.len())
            .finish()
    }
}

impl RuntimeBuilder {
    /// Adds the next shard (shard ids count up from 0 in the order added). `factory` runs once,
    /// on the shard's own thread, so what it builds may be `!Send`; it may move its pieces (a
    /// queue pair, a subscriber) in. It returns the worker, or a `Result` of it when building
    /// can fail ([`FactoryOutput`]).
    pub fn shard<R, F>(mut self, factory: F) -> Self
    where
        R: FactoryOutput,
        F: FnOnce(ShardId) -> R + Send + 'static,
    {
        self.factories
            .push(Box::new(move |shard| factory(shard).into_worker_result().map_err(StartFailure::Factory)));
        self
    }

    /// Shards added so far.
    pub fn len(&self) -> usize {
        self.factories.len()
    }

    /// True when no shard was added.
    pub fn is_empty(&self) -> bool {
        self.factories.is_empty()
    }

    /// Starts every shard; returns once every worker is built (or one failed, in which case the
    /// others are stopped and the first failure returned).
    pub fn launch(self) -> Result<Runtime, RuntimeError> {
        Runtime::spawn(self.cfg, self.factories)
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

impl Runtime {
    /// Launches `cfg.shards` threads; shard `i` builds its worker with `factory(i)` on its own
    /// thread, then loops. Returns once every worker is built (or one failed).
    ///
    /// The factory may return any [`Worker`] — or a `Box<dyn Worker>` to build different
    /// workers for different shards — or a `Result` of one ([`FactoryOutput`]). Hand per-shard
    /// pieces to it with [`super::PerShard`]: a hand-out the factory takes from must not hold
    /// more than `cfg.shards` items, nor miss the item of a shard that takes, else the launch
    /// fails with [`RuntimeError::ShardCount`].
    ///
    /// ```
    /// use wirespeed_core::backend::null::{NullConfig, NullPort};
    /// use wirespeed_core::{BufferPool, PerShard, Pinning, Pipeline, PoolConfig, Runtime, RuntimeConfig, RuntimeError};
    ///
    /// let mut port = NullPort::new(NullConfig { queues: 2, ..NullConfig::default() }, BufferPool::new(PoolConfig::default())?);
    /// let queues = PerShard::queue_pairs(&mut port, 2)?;
    /// // `shards` left at its default, 1: queue pair 1 would never be served.
    /// let cfg = RuntimeConfig { pinning: Pinning::None, ..RuntimeConfig::default() };
    /// let err = Runtime::launch(cfg, move |shard| {
    ///     let (rx, tx) = queues.take(shard)?;
    ///     Ok::<_, wirespeed_core::HandOutError>(Pipeline::new(rx, tx, ()))
    /// })
    /// .unwrap_err();
    /// assert!(matches!(err, RuntimeError::ShardCount { shards: 1, handed_out: 2, what: "queue pair" }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn launch<R, F>(cfg: RuntimeConfig, factory: F) -> Result<Self, RuntimeError>
    where
        R: FactoryOutput,
        F: Fn(ShardId) -> R + Send + Sync + 'static,
    {
        let factory = Arc::new(factory);
        let shards = cfg.shards;
        let factories = (0..shards)
            .map(|_| {
                let f = factory.clone();
                Box::new(move |shard| {
                    // Every `PerShard::take` in the factory checks its hand-out against `shards`.
                    // (A factory that unwraps the failed `take` panics: still a `ShardCount`.)
                    let scope = handout::LaunchScope::enter(shards);
                    let built = catch_unwind(AssertUnwindSafe(|| f(shard).into_worker_result()));
                    match (scope.mismatch(), built) {
                        (Some((what, handed_out)), _) => {
                            Err(StartFailure::ShardCount { shards, handed_out, what })
                        }
                        (None, Ok(built)) => built.map_err(StartFailure::Factory),
                        (None, Err(panic)) => std::panic::resume_unwind(panic),
                    }
                }) as ShardFactory
            })
            .collect();
        Self::spawn(cfg, factories)
    }

    /// A builder that takes one factory per shard ([`RuntimeBuilder::shard`]).
    pub fn builder(cfg: RuntimeConfig) -> RuntimeBuilder {
        RuntimeBuilder { cfg, factories: Vec::new() }
    }

    fn spawn(cfg: RuntimeConfig, factories: Vec<ShardFactory>) -> Result<Self, RuntimeError> {
        if factories.is_empty() {
            return Err(RuntimeError::NoShards);
        }
        let count = factories.len();
        let available: Vec<usize> =
            core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(ShardId, Result<(), StartFailure>)>();
        let mut rt = Runtime { shards: Vec::with_capacity(count) };
        for (i, factory) in factories.into_iter().enumerate() {
            let core = cfg.pinning.core_of(i, &available);
            let placement = Placement { core, numa_node: core.and_then(numa_node_of_cpu) };
            let control = Arc::new(ShardControl::new(i, cfg.control_capacity));
            let ctl = control.clone();
            let ready = ready_tx.clone();
            let opts = cfg.loop_options;
            let thread = std::thread::Builder::new()
                .name(format!("{}-{i}", cfg.name))
                .spawn(move || shard_main(i, core, factory, &ctl, ready, &opts));
            match thread {
                Ok(t) => rt.shards.push(Shard { control, thread: Some(t), placement }),
                Err(source) => {
                    let _ = rt.stop_all();
                    return Err(RuntimeError::Spawn { shard: i, source });
                }
            }
        }
        drop(ready_tx);
        let mut failure = None;
        for _ in 0..count {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((shard, Err(why))) => {
                    failure.get_or_insert(why.into_error(shard));
                }
                Err(_) => break,
            }
        }
        if let Some(f) = failure {
            let _ = rt.stop_all();
            return Err(f);
        }
        Ok(rt)
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Control block of a shard (send commands and updates, read state and stats). Every
    /// shard's control block has the same type, whatever its worker.
    pub fn control(&self, shard: ShardId) -> Option<&ShardControl> {
        self.shards.get(shard).map(|s| &*s.control)
    }

    /// Every shard's control block, in shard order.
    pub fn controls(&self) -> impl Iterator<Item = &ShardControl> {
        self.shards.iter().map(|s| &*s.control)
    }

    /// A shared handle on a shard's control block (for a control thread that outlives borrows).
    pub fn control_handle(&self, shard: ShardId) -> Option<Arc<ShardControl>> {
        self.shards.get(shard).map(|s| s.control.clone())
    }

    /// Where a shard runs.
    pub fn placement(&self, shard: ShardId) -> Option<Placement> {
        self.shards.get(shard).map(|s| s.placement)
    }

    /// Queues a typed update for one shard: `f` runs between batches on the shard's worker if it
    /// is a `T`, else on its [`Worker::inner`] part (a pipeline's stages). See
    /// [`ShardControl::update`].
    pub fn update<T: Any>(
        &self,
        shard: ShardId,
        f: impl FnOnce(&mut T) + Send + 'static,
    ) -> Result<(), UpdateError> {
        match self.shards.get(shard) {
            Some(s) => s.control.update(f),
            None => Err(UpdateError::NoSuchShard { shard, shards: self.shards.len() }),
        }
    }

    /// Consistent per-shard counter snapshots, read without stopping or locking anything.
    pub fn stats(&self) -> Vec<ShardStats> {
        self.shards.iter().map(|s| s.control.stats()).collect()
    }

    /// Shards that failed so far, with why (their factory's error or panic message).
    pub fn failures(&self) -> Vec<(ShardId, String)> {
        self.shards
            .iter()
            .filter_map(|s| s.control.failure().map(|m| (s.control.shard(), m.to_string())))
            .collect()
    }

    /// True when every shard's input has finished (or it exited or failed).
    pub fn all_finished(&self) -> bool {
        self.shards.iter().all(|s| {
            matches!(s.control.state(), ShardState::Finished | ShardState::Exited | ShardState::Failed)
        })
    }

    /// Waits until every shard finished its input (or failed), then stops them; returns each
    /// shard's report. A failed shard makes this an error ([`RuntimeError::Panicked`]) after every
    /// other shard was stopped.
    pub fn wait_finished(mut self) -> Result<Vec<ShardReport>, RuntimeError> {
        while !self.all_finished() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Self::check(self.stop_all())
    }

    /// [`Runtime::wait_finished`] for at most `timeout`: when some shard's input has not finished
    /// by then, the still running runtime comes back in [`WaitError::TimedOut`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use wirespeed_core::runtime::WaitError;
    /// use wirespeed_core::{Poll, Runtime, RuntimeConfig, ShardCtx, Worker};
    ///
    /// struct Endless; // never finishes its input
    /// impl Worker for Endless {
    ///     fn poll(&mut self, _: &mut ShardCtx) -> Poll {
    ///         Poll::Idle
    ///     }
    /// }
    /// let rt = Runtime::launch(RuntimeConfig::default(), |_| Endless)?;
    /// let Err(WaitError::TimedOut { runtime, .. }) = rt.wait_finished_timeout(Duration::from_millis(20)) else {
    ///     panic!("an endless shard finished");
    /// };
    /// assert_eq!(runtime.stop()?.len(), 1);
    /// # Ok::<(), wirespeed_core::RuntimeError>(())
    /// ```
    pub fn wait_finished_timeout(
        mut self,
        timeout: std::time::Duration,
    ) -> Result<Vec<ShardReport>, WaitError> {
        let deadline = std::time::Instant::now().checked_add(timeout);
        while !self.all_finished() {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Err(WaitError::TimedOut { runtime: self, after: timeout });
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(Self::check(self.stop_all())?)
    }

    /// Stops every shard (draining in-flight batches) and returns each shard's report. A shard
    /// that had panicked makes this an error ([`RuntimeError::Panicked`]); the others are still
    /// stopped and joined.
    pub fn stop(mut self) -> Result<Vec<ShardReport>, RuntimeError> {
        Self::check(self.stop_all())
    }

    /// Like [`Runtime::stop`], but returns every shard's report, failed ones included
    /// ([`ShardOutcome::Failed`]), for appliances that restart or report shards one by one.
    pub fn stop_all_reports(mut self) -> Vec<ShardReport> {
        self.stop_all()
    }

    fn check(reports: Vec<ShardReport>) -> Result<Vec<ShardReport>, RuntimeError> {
        for r in &reports {
            if let ShardOutcome::Failed(message) = &r.outcome {
                return Err(RuntimeError::Panicked { shard: r.shard(), message: message.clone() });
            }
        }
        Ok(reports)
    }

    fn stop_all(&mut self) -> Vec<ShardReport> {
        for s in &self.shards {
            let mut cmd = Command::Stop;
            loop {
                // A shard that left its loop, or whose thread is gone, takes no command: never
                // wait on its (possibly full) queue.
                let gone = s.thread.as_ref().is_none_or(|t| t.is_finished());
                if gone || s.control.state().is_terminal() {
                    break;
                }
                match s.control.send(cmd) {
                    Ok(()) => break,
                    Err(full) => {
                        cmd = full.command;
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    }
                }
            }
        }
        let mut reports = Vec::with_capacity(self.shards.len());
        for s in &mut self.shards {
            let Some(t) = s.thread.take() else { continue };
            let (outcome, report) = match t.join() {
                Ok(Ok((ShardExit::Stopped, report))) => (ShardOutcome::Stopped, report),
                Ok(Ok((ShardExit::Finished, report))) => (ShardOutcome::Finished, report),
                Ok(Err(message)) => (ShardOutcome::Failed(message), None),
                Err(payload) => {
                    let message = panic_message(&*payload);
                    s.control.mark_failed(message.clone());
                    (ShardOutcome::Failed(message), None)
                }
            };
            reports.push(ShardReport { stats: s.control.stats(), outcome, report });
        }
        reports
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.shards.iter().any(|s| s.thread.is_some()) {
            let _ = self.stop_all();
        }
    }
}

/// A shard thread: pin, build the worker, run the loop; a factory error or any panic marks the
/// shard failed with its message instead of leaving it `Running` forever.
fn shard_main(
    shard: ShardId,
    core: Option<usize>,
    factory: ShardFactory,
    ctl: &ShardControl,
    ready: std::sync::mpsc::Sender<(ShardId, Result<(), StartFailure>)>,
    opts: &LoopOptions,
) -> ThreadEnd {
    if let Some(c) = core {
        // Pinning is best effort: a container may forbid some cores.
        let _ = core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let built = catch_unwind(AssertUnwindSafe(|| factory(shard)))
        .unwrap_or_else(|p| Err(StartFailure::Factory(format!("factory panicked: {}", panic_message(&*p)))));
    let mut worker = match built {
        Ok(w) => w,
        Err(why) => {
            let message = why.message();
            ctl.mark_failed(message.clone());
            let _ = ready.send((shard, Err(why)));
            return Err(message);
        }
    };
    ctl.note_worker(&mut *worker);
    let _ = ready.send((shard, Ok(())));
    drop(ready);
    let mut cx = ShardCtx::new(shard);
    let run = catch_unwind(AssertUnwindSafe(|| {
        let exit = run_shard(ctl, &mut *worker, &mut cx, opts);
        (exit, worker.report())
    }));
    match run {
        Ok(end) => Ok(end),
        Err(p) => {
            let message = panic_message(&*p);
            // The counters up to the panic, then the state: readers that see `Failed` see them.
            ctl.stats.publish(&cx.counters);
            ctl.mark_failed(message.clone());
            // The worker may be mid-batch: drop it inside a boundary too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(worker)));
            Err(message)
        }
    }
}

/// NUMA node of a CPU, from `/sys/devices/system/cpu/cpuN/nodeM`; `None` where sysfs has no
/// NUMA information (containers, non-Linux).
pub fn numa_node_of_cpu(cpu: usize) -> Option<usize> {
    let dir = std::fs::read_dir(format!("/sys/devices/system/cpu/cpu{cpu}")).ok()?;
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("node")?.parse().ok()))
        .next()
}
