//! The shard loop's idle policies: blocking ones wait on the worker after every idle poll (or,
//! when the worker cannot wait, sleep), adaptive spins first, and the policy reaches the worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wirespeed_core::runtime::{IdlePolicy, ShardControl, run_shard};
use wirespeed_core::{Command, LoopOptions, Poll, ShardCtx, Worker};

/// Idles; records its policy, counts polls and waits, and answers `wait` with `can_wait`.
struct Recorder {
    policy: Option<IdlePolicy>,
    polls: u64,
    waits: Vec<Duration>,
    can_wait: bool,
    stop: Arc<AtomicBool>,
    ctl: Arc<ShardControl>,
    stop_after: u64,
}

impl Worker for Recorder {
    fn poll(&mut self, _cx: &mut ShardCtx) -> Poll {
        self.polls += 1;
        if self.polls == self.stop_after && !self.stop.swap(true, Ordering::SeqCst) {
            self.ctl.send(Command::Stop).unwrap();
        }
        Poll::Idle
    }

    fn set_idle_policy(&mut self, policy: IdlePolicy) {
        self.policy = Some(policy);
    }

    fn wait(&mut self, timeout: Duration) -> bool {
        self.waits.push(timeout);
        self.can_wait
    }
}

fn run(idle: IdlePolicy, can_wait: bool, stop_after: u64) -> Recorder {
    let ctl = Arc::new(ShardControl::new(0, 4));
    let mut w = Recorder {
        policy: None,
        polls: 0,
        waits: Vec::new(),
        can_wait,
        stop: Arc::new(AtomicBool::new(false)),
        ctl: ctl.clone(),
        stop_after,
    };
    let opts = LoopOptions { idle, ..LoopOptions::default() };
    run_shard(&ctl, &mut w, &mut ShardCtx::new(0), &opts);
    w
}

#[test]
fn block_waits_on_the_worker_after_every_idle_poll() {
    let t = Duration::from_millis(3);
    let w = run(IdlePolicy::Block { timeout: t }, true, 50);
    assert_eq!(w.policy, Some(IdlePolicy::Block { timeout: t }), "the worker was told its policy");
    assert_eq!(w.polls, 50);
    // Every idle poll but the one that queued the stop is followed by a wait of the timeout.
    assert_eq!(w.waits.len(), 50);
    assert!(w.waits.iter().all(|d| *d == t));
}

#[test]
fn spin_and_busy_poll_never_wait() {
    for idle in [IdlePolicy::Spin, IdlePolicy::BUSY_POLL] {
        let w = run(idle, true, 10_000);
        assert_eq!(w.polls, 10_000);
        assert!(w.waits.is_empty(), "{idle}: {} waits", w.waits.len());
        assert_eq!(w.policy, Some(idle));
    }
}

#[test]
fn adaptive_spins_before_it_blocks() {
    // A spin phase longer than the test: it never blocks.
    let w = run(
        IdlePolicy::Adaptive { spin: Duration::from_secs(3600), timeout: Duration::from_millis(1) },
        true,
        5000,
    );
    assert!(w.waits.is_empty());
    // No spin phase: it blocks from the first idle poll on, like `Block`.
    let w = run(IdlePolicy::Adaptive { spin: Duration::ZERO, timeout: Duration::from_millis(1) }, true, 20);
    assert_eq!(w.waits.len(), 20);
}

#[test]
fn a_worker_that_cannot_wait_is_slept_for_the_timeout() {
    let t = Duration::from_millis(2);
    let start = std::time::Instant::now();
    let w = run(IdlePolicy::Block { timeout: t }, false, 20);
    assert_eq!(w.waits.len(), 20, "asked first");
    // Each refused wait is followed by a sleep of the timeout: the loop took at least 19 of them.
    assert!(start.elapsed() >= t * 19, "{:?}", start.elapsed());
}
