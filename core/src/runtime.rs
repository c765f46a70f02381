//! The shard runtime: one pinned thread per shard, each owning its worker (queues, stages, SAs),
//! steered from outside only through a small bounded control queue, observed only through its
//! [`StatsCell`].
//!
//! The worker is built *on* the shard's thread by a factory, so it may hold `!Send`/`!Sync`
//! state; nothing on the hot path is shared or locked. The loop checks the control queue once per
//! iteration (two loads when empty), runs a batch, and publishes counters every
//! [`LoopOptions::stats_every`] batches and whenever it goes idle.

use crate::stats::{ShardCtx, ShardId, ShardStats, StatsCell};
use crate::sync::BoundedQueue;
use crate::sync::atomic::{AtomicU32, Ordering};

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

/// A shard's work loop body. Built on the shard's thread; never shared.
pub trait Worker: 'static {
    /// What the control side can send to change the worker between batches.
    type Update: Send + 'static;

    /// Does one unit of work (normally one batch).
    fn poll(&mut self, cx: &mut ShardCtx) -> Poll;

    /// Applies an update between batches.
    fn apply(&mut self, cx: &mut ShardCtx, update: Self::Update) {
        let _ = (cx, update);
    }

    /// Finishes in-flight work before the shard exits (flush Tx, write files).
    fn drain(&mut self, cx: &mut ShardCtx) {
        let _ = cx;
    }
}

/// A command to one shard.
#[derive(Debug)]
pub enum Command<U> {
    /// Drain and exit.
    Stop,
    /// Apply an update between batches.
    Update(U),
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
    /// The worker could not be built.
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
}

/// The control side of one shard: its command queue, state and published counters.
#[derive(Debug)]
pub struct ShardControl<U> {
    shard: ShardId,
    commands: BoundedQueue<Command<U>>,
    state: AtomicU32,
    stats: StatsCell,
}

/// The control queue of a shard is full; the command is handed back.
#[derive(Debug, thiserror::Error)]
#[error("control queue of shard {shard} is full")]
pub struct ControlFull<U> {
    /// The shard.
    pub shard: ShardId,
    /// The command that was not queued.
    pub command: Command<U>,
}

impl<U> ShardControl<U> {
    /// Control block for `shard` with a queue of `capacity` commands.
    pub fn new(shard: ShardId, capacity: usize) -> Self {
        Self {
            shard,
            commands: BoundedQueue::new(capacity.max(1)),
            state: AtomicU32::new(ShardState::Starting as u32),
            stats: StatsCell::new(),
        }
    }

    /// Queues a command.
    pub fn send(&self, command: Command<U>) -> Result<(), ControlFull<U>> {
        self.commands.push(command).map_err(|command| ControlFull { shard: self.shard, command })
    }

    /// Current lifecycle state.
    pub fn state(&self) -> ShardState {
        ShardState::from_u32(self.state.load(Ordering::Acquire))
    }

    fn set_state(&self, s: ShardState) {
        self.state.store(s as u32, Ordering::Release);
    }

    /// A consistent snapshot of the shard's counters (lock-free, never blocks the shard).
    pub fn stats(&self) -> ShardStats {
        let (generation, counters) = self.stats.read();
        ShardStats { shard: self.shard, generation, counters }
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
}

impl Default for LoopOptions {
    fn default() -> Self {
        Self { stats_every: 64, exit_when_finished: false, spin_before_yield: 1024 }
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

/// Runs a shard until stopped. Used by [`Runtime`] on pinned threads, and directly by tests
/// (including the loom model) and by appliances that manage their own threads.
pub fn run_shard<W: Worker>(
    ctl: &ShardControl<W::Update>,
    worker: &mut W,
    cx: &mut ShardCtx,
    opts: &LoopOptions,
) -> ShardExit {
    ctl.set_state(ShardState::Running);
    let mut busy_since_publish = 0u32;
    let mut idle = 0u32;
    let mut finished = false;
    loop {
        while let Some(cmd) = ctl.commands.pop() {
            match cmd {
                Command::Stop => {
                    worker.drain(cx);
                    ctl.stats.publish(&cx.counters);
                    ctl.set_state(ShardState::Exited);
                    return ShardExit::Stopped;
                }
                Command::Update(u) => worker.apply(cx, u),
                Command::PublishStats => {
                    ctl.stats.publish(&cx.counters);
                    busy_since_publish = 0;
                }
            }
        }
        if finished {
            idle_wait(&mut idle, opts);
            continue;
        }
        cx.now = std::time::Instant::now();
        match worker.poll(cx) {
            Poll::Busy(_) => {
                idle = 0;
                busy_since_publish += 1;
                if busy_since_publish >= opts.stats_every {
                    ctl.stats.publish(&cx.counters);
                    busy_since_publish = 0;
                }
            }
            Poll::Idle => {
                if busy_since_publish > 0 {
                    ctl.stats.publish(&cx.counters);
                    busy_since_publish = 0;
                }
                idle_wait(&mut idle, opts);
            }
            Poll::Finished => {
                worker.drain(cx);
                ctl.stats.publish(&cx.counters);
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

#[cfg(not(loom))]
pub use threads::*;

#[cfg(not(loom))]
mod threads {
    use super::*;
    use crate::sync::Arc;

    /// How to launch shards.
    #[derive(Clone, Debug)]
    pub struct RuntimeConfig {
        /// Number of shards (threads).
        pub shards: usize,
        /// Core of each shard; `None` pins shard `i` to the `i`-th available core (wrapping),
        /// `Some(vec![])` disables pinning.
        pub cores: Option<Vec<usize>>,
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
                cores: None,
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
        /// A shard's factory failed.
        #[error("shard {shard} failed to start: {message}")]
        Factory {
            /// Shard.
            shard: ShardId,
            /// Factory's error.
            message: String,
        },
        /// A shard panicked.
        #[error("shard {shard} panicked")]
        Panicked {
            /// Shard.
            shard: ShardId,
        },
    }

    /// Where a shard runs.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Placement {
        /// Core the shard is pinned to, if pinned.
        pub core: Option<usize>,
        /// NUMA node of that core, read from sysfs, if known.
        pub numa_node: Option<usize>,
    }

    struct Shard<U> {
        control: Arc<ShardControl<U>>,
        thread: Option<std::thread::JoinHandle<Result<ShardExit, String>>>,
        placement: Placement,
    }

    /// Running shards.
    pub struct Runtime<U: Send + 'static> {
        shards: Vec<Shard<U>>,
    }

    impl<U: Send + 'static> Runtime<U> {
        /// Launches `cfg.shards` threads; shard `i` builds its worker with `factory(i)` on its
        /// own thread, then loops. Returns once every worker is built (or one failed).
        pub fn launch<W, F, E>(cfg: RuntimeConfig, factory: F) -> Result<Self, RuntimeError>
        where
            W: Worker<Update = U>,
            F: Fn(ShardId) -> Result<W, E> + Send + Sync + 'static,
            E: std::fmt::Display,
        {
            if cfg.shards == 0 {
                return Err(RuntimeError::NoShards);
            }
            let factory = Arc::new(factory);
            let available: Vec<usize> =
                core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(ShardId, Result<(), String>)>();
            let mut shards = Vec::with_capacity(cfg.shards);
            for i in 0..cfg.shards {
                let core = match &cfg.cores {
                    Some(list) if list.is_empty() => None,
                    Some(list) => Some(list[i % list.len()]),
                    None if available.is_empty() => None,
                    None => Some(available[i % available.len()]),
                };
                let placement = Placement { core, numa_node: core.and_then(numa_node_of_cpu) };
                let control = Arc::new(ShardControl::new(i, cfg.control_capacity));
                let ctl = control.clone();
                let factory = factory.clone();
                let ready = ready_tx.clone();
                let opts = cfg.loop_options;
                let thread = std::thread::Builder::new()
                    .name(format!("{}-{i}", cfg.name))
                    .spawn(move || {
                        if let Some(c) = core {
                            // Pinning is best effort: a container may forbid some cores.
                            let _ = core_affinity::set_for_current(core_affinity::CoreId { id: c });
                        }
                        let mut worker = match factory(i) {
                            Ok(w) => w,
                            Err(e) => {
                                let msg = e.to_string();
                                ctl.set_state(ShardState::Failed);
                                let _ = ready.send((i, Err(msg.clone())));
                                return Err(msg);
                            }
                        };
                        let _ = ready.send((i, Ok(())));
                        drop(ready);
                        let mut cx = ShardCtx::new(i);
                        Ok(run_shard(&ctl, &mut worker, &mut cx, &opts))
                    })
                    .map_err(|source| RuntimeError::Spawn { shard: i, source })?;
                shards.push(Shard { control, thread: Some(thread), placement });
            }
            drop(ready_tx);
            let mut rt = Runtime { shards };
            let mut failure = None;
            for _ in 0..cfg.shards {
                match ready_rx.recv() {
                    Ok((_, Ok(()))) => {}
                    Ok((shard, Err(message))) => {
                        failure.get_or_insert(RuntimeError::Factory { shard, message });
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

        /// Control block of a shard (send commands, read state and stats).
        pub fn control(&self, shard: ShardId) -> Option<&ShardControl<U>> {
            self.shards.get(shard).map(|s| &*s.control)
        }

        /// Where a shard runs.
        pub fn placement(&self, shard: ShardId) -> Option<Placement> {
            self.shards.get(shard).map(|s| s.placement)
        }

        /// Queues an update for one shard.
        pub fn update(&self, shard: ShardId, update: U) -> Result<(), ControlFull<U>> {
            match self.shards.get(shard) {
                Some(s) => s.control.send(Command::Update(update)),
                None => Err(ControlFull { shard, command: Command::Update(update) }),
            }
        }

        /// Consistent per-shard counter snapshots, read without stopping or locking anything.
        pub fn stats(&self) -> Vec<ShardStats> {
            self.shards.iter().map(|s| s.control.stats()).collect()
        }

        /// True when every shard's input has finished (or it exited).
        pub fn all_finished(&self) -> bool {
            self.shards.iter().all(|s| {
                matches!(s.control.state(), ShardState::Finished | ShardState::Exited | ShardState::Failed)
            })
        }

        /// Waits until every shard finished its input, then stops them; returns final counters.
        pub fn wait_finished(mut self) -> Result<Vec<ShardStats>, RuntimeError> {
            while !self.all_finished() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            self.stop_all()
        }

        /// Stops every shard (draining in-flight batches) and returns final counters.
        pub fn stop(mut self) -> Result<Vec<ShardStats>, RuntimeError> {
            self.stop_all()
        }

        fn stop_all(&mut self) -> Result<Vec<ShardStats>, RuntimeError> {
            for s in &self.shards {
                let mut cmd = Command::Stop;
                loop {
                    match s.control.state() {
                        ShardState::Exited | ShardState::Failed => break,
                        _ => {}
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
            let mut result = Ok(());
            for s in &mut self.shards {
                if let Some(t) = s.thread.take() {
                    match t.join() {
                        Ok(_) => {}
                        Err(_) => {
                            if result.is_ok() {
                                result = Err(RuntimeError::Panicked { shard: s.control.shard });
                            }
                        }
                    }
                }
            }
            result.map(|()| self.stats())
        }
    }

    impl<U: Send + 'static> Drop for Runtime<U> {
        fn drop(&mut self) {
            if self.shards.iter().any(|s| s.thread.is_some()) {
                let _ = self.stop_all();
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
}
