//! The shard runtime end to end: pinned shards owning queue pairs of a `mem` port, updated while
//! running, observed through lock-free stats, stopped with a drain; shards of different worker
//! types; reports; panicking shards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wirespeed_core::backend::mem::{MemConfig, MemPort};
use wirespeed_core::backend::null::{NullConfig, NullPort, udp4_frame};
use wirespeed_core::runtime::{
    LoopOptions, PerShard, Pinning, Poll, Runtime, RuntimeConfig, RuntimeError, ShardOutcome, ShardState,
    UpdateError, WaitError, Worker, WorkerReport,
};
use wirespeed_core::{
    BufferPool, DropReason, PacketBuf, PerPacket, Pipeline, PoolBuf, PoolConfig, Port, ShardControl,
    ShardCtx, Verdict,
};

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` on another thread; fails the test if it does not return within `secs` (a hang).
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs)).unwrap_or_else(|_| panic!("{what} hung for {secs} s"))
}

type Filter = PerPacket<Box<dyn FnMut(&mut ShardCtx, &mut PoolBuf) -> Verdict>>;

#[test]
fn two_shards_forward_update_and_stop() {
    let pool = BufferPool::new(PoolConfig { buffers: 2048, ..PoolConfig::default() }).unwrap();
    let (mut port, wire) = MemPort::new(MemConfig { queues: 2, ..MemConfig::default() }, pool);
    let queues = PerShard::queue_pairs(&mut port, 2).unwrap();

    // Each shard drops frames longer than its limit; the limit is changed by an update.
    let rt = Runtime::launch(RuntimeConfig { shards: 2, ..RuntimeConfig::default() }, move |shard| {
        let (rx, tx) = queues.take(shard)?;
        let limit = std::rc::Rc::new(std::cell::Cell::new(usize::MAX)); // !Send state is fine
        let l = limit.clone();
        let stage: Filter = PerPacket(Box::new(move |_cx, p| {
            if p.len() > l.get() { Verdict::Drop(DropReason::TooLarge) } else { Verdict::Continue }
        }));
        let _keep = limit;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Pipeline::new(rx, tx, (stage,)))
    })
    .unwrap();

    let placement = rt.placement(0).unwrap();
    assert!(placement.core.is_some() || core_count() == 0);

    for q in 0..2 {
        for _ in 0..100 {
            wire.inject(q, &udp4_frame(100)).unwrap();
        }
    }
    wait_until("200 frames forwarded", || {
        rt.stats().iter().map(|s| s.counters.tx_packets).sum::<u64>() == 200
    });
    assert_eq!(wire.drain_tx(0).len(), 100);
    assert_eq!(wire.drain_tx(1).len(), 100);

    // Swap shard 1's stage for one that drops everything over 80 bytes: a typed update of the
    // pipeline's stages.
    rt.update(1, |stages: &mut (Filter,)| {
        stages.0 = PerPacket(Box::new(|_cx, p| {
            if p.len() > 80 { Verdict::Drop(DropReason::TooLarge) } else { Verdict::Continue }
        }));
    })
    .expect("control queue has room");
    // An update of a type the shard does not run is refused when sent.
    let wrong = rt.update(1, |_: &mut u32| {}).unwrap_err();
    assert!(matches!(wrong, UpdateError::WrongType { shard: 1, wanted: "u32", .. }), "{wrong}");
    assert!(matches!(
        rt.update(7, |_: &mut (Filter,)| {}),
        Err(UpdateError::NoSuchShard { shard: 7, shards: 2 })
    ));
    std::thread::sleep(Duration::from_millis(20));
    for _ in 0..50 {
        wire.inject(1, &udp4_frame(100)).unwrap();
        wire.inject(1, &udp4_frame(64)).unwrap();
    }
    wait_until("shard 1 saw 200 packets", || rt.stats()[1].counters.rx_packets == 200);
    let s1 = rt.stats()[1].counters;
    assert_eq!(s1.drops_of(DropReason::TooLarge), 50);
    assert_eq!(s1.tx_packets, 150);
    assert_eq!(rt.control(0).unwrap().state(), ShardState::Running);
    assert_eq!(rt.control(1).unwrap().misdirected_updates(), 0);

    let last = rt.stop().unwrap();
    let total: u64 = last.iter().map(|s| s.counters().rx_packets).sum();
    assert_eq!(total, 300);
    for s in &last {
        assert_eq!(s.outcome, ShardOutcome::Stopped);
        let c = s.counters();
        assert_eq!(c.rx_packets, c.tx_packets + c.total_drops());
    }
}

fn core_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
}

#[test]
fn factory_failure_is_reported_with_context() {
    let err = Runtime::launch(RuntimeConfig { shards: 2, ..RuntimeConfig::default() }, |shard| {
        if shard == 1 {
            Err(format!("no queue for shard {shard}"))
        } else {
            Ok(Pipeline::new(
                MemPort::new(
                    MemConfig::default(),
                    BufferPool::new(PoolConfig { buffers: 64, ..PoolConfig::default() }).unwrap(),
                )
                .0
                .queue_pair(0)
                .unwrap()
                .0,
                NoTx,
                (),
            ))
        }
    })
    .expect_err("launch must fail");
    assert_eq!(err.to_string(), "shard 1 failed to start: no queue for shard 1");
}

#[test]
fn factory_panic_is_a_launch_error() {
    let err = Runtime::launch(
        RuntimeConfig { shards: 1, pinning: Pinning::None, ..RuntimeConfig::default() },
        |_| {
            if true {
                panic!("no config");
            }
            Ok::<_, String>(Idle(0))
        },
    )
    .expect_err("launch must fail");
    assert_eq!(err.to_string(), "shard 0 failed to start: factory panicked: no config");
}

struct NoTx;
impl wirespeed_core::TxQueue for NoTx {
    type Buf = PoolBuf;
    fn tx_burst(&mut self, b: &mut wirespeed_core::Batch<Self::Buf>) -> usize {
        let n = b.len();
        b.clear();
        n
    }
}

/// A worker of its own type: idles, counts polls, reports the count.
struct Idle(u64);
impl Worker for Idle {
    fn poll(&mut self, _cx: &mut ShardCtx) -> Poll {
        self.0 += 1;
        Poll::Idle
    }
    fn report(&mut self) -> Option<WorkerReport> {
        Some(WorkerReport::new(self.0))
    }
}

/// Shards of different worker types in one runtime, with uniform control handles, typed
/// updates checked per shard, and typed reports.
#[test]
fn shards_of_different_types_share_one_runtime() {
    let pool = BufferPool::new(PoolConfig { buffers: 256, ..PoolConfig::default() }).unwrap();
    let mut port = NullPort::new(NullConfig { limit: Some(640), ..NullConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    let cfg = RuntimeConfig { pinning: Pinning::None, ..RuntimeConfig::default() };
    let rt = Runtime::builder(cfg)
        .shard(move |_| Ok::<_, String>(Pipeline::new(rx, tx, ()).with_report(|_| "pipeline")))
        .shard(|_| Ok::<_, String>(Idle(0)))
        .launch()
        .unwrap();
    assert_eq!(rt.shards(), 2);
    let controls: [&ShardControl; 2] = [rt.control(0).unwrap(), rt.control(1).unwrap()];
    assert!(controls[1].worker_type().unwrap().ends_with("Idle"));
    controls[1].update(|w: &mut Idle| w.0 += 1_000_000_000).unwrap();
    assert!(matches!(
        controls[0].update(|w: &mut Idle| w.0 = 0),
        Err(UpdateError::WrongType { shard: 0, .. })
    ));
    wait_until("shard 0 at end of input", || controls[0].state() == ShardState::Finished);
    // Commands are applied in order: the update lands before the stop.
    let mut reports = rt.stop().unwrap();
    assert_eq!(reports[0].report::<&str>(), Some(&"pipeline"));
    assert_eq!(reports[0].counters().tx_packets, 640);
    assert_eq!(reports[1].report::<&str>(), None, "typed access checks the type");
    let wrong = reports[1].try_report::<&str>().unwrap_err();
    assert_eq!((wrong.shard, wrong.found), (1, Some("u64")), "the error names what was reported");
    assert!(format!("{:?}", reports[1]).contains("WorkerReport(\"u64\")"), "{:?}", reports[1]);
    let polls: u64 = reports[1].take_report().unwrap();
    assert!(polls >= 1_000_000_000, "the update reached the Idle worker: {polls}");
}

/// A worker that idles until its flag is set, then reports its input finished.
struct FinishWhen(Arc<std::sync::atomic::AtomicBool>);
impl Worker for FinishWhen {
    fn poll(&mut self, _cx: &mut ShardCtx) -> Poll {
        if self.0.load(std::sync::atomic::Ordering::Acquire) { Poll::Finished } else { Poll::Idle }
    }
    fn report(&mut self) -> Option<WorkerReport> {
        Some(WorkerReport::new("finished"))
    }
}

/// A bounded wait hands the running runtime back on timeout; waiting again after the input
/// finished returns the reports.
#[test]
fn wait_finished_timeout_gives_the_runtime_back() {
    let finish = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = finish.clone();
    let cfg = RuntimeConfig { shards: 2, pinning: Pinning::None, ..RuntimeConfig::default() };
    let rt = Runtime::launch(cfg, move |_| FinishWhen(flag.clone())).unwrap();
    let rt = match rt.wait_finished_timeout(Duration::from_millis(20)) {
        Err(WaitError::TimedOut { runtime, after }) => {
            assert_eq!(after, Duration::from_millis(20));
            runtime
        }
        other => panic!("shards whose input never ends finished: {other:?}"),
    };
    assert_eq!(rt.stats().len(), 2, "the runtime still runs");
    finish.store(true, std::sync::atomic::Ordering::Release);
    let reports = rt.wait_finished_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.try_report::<&str>() == Ok(&"finished")));
}

/// One factory can build different workers per shard by returning `Box<dyn Worker>`.
#[test]
fn one_factory_may_return_boxed_workers() {
    let pool = BufferPool::new(PoolConfig { buffers: 256, ..PoolConfig::default() }).unwrap();
    let mut port = NullPort::new(NullConfig { limit: Some(64), ..NullConfig::default() }, pool);
    let queue = PerShard::new([port.queue_pair(0).unwrap()]);
    let cfg = RuntimeConfig {
        shards: 2,
        pinning: Pinning::None,
        loop_options: LoopOptions { exit_when_finished: true, ..LoopOptions::default() },
        ..RuntimeConfig::default()
    };
    let rt = Runtime::launch(
        cfg,
        move |shard| -> Result<Box<dyn Worker>, wirespeed_core::runtime::HandOutError> {
            if shard == 0 {
                let (rx, tx) = queue.take(0)?;
                Ok(Box::new(Pipeline::new(rx, tx, ())))
            } else {
                Ok(Box::new(Finishing))
            }
        },
    )
    .unwrap();
    let reports = rt.wait_finished().unwrap();
    assert_eq!(reports[0].counters().tx_packets, 64);
    assert!(reports.iter().all(|r| r.outcome == ShardOutcome::Finished));
}

struct Finishing;
impl Worker for Finishing {
    fn poll(&mut self, _cx: &mut ShardCtx) -> Poll {
        Poll::Finished
    }
}

/// A worker that panics on the first poll after it is armed by an update.
struct Bomb {
    armed: bool,
}
impl Worker for Bomb {
    fn poll(&mut self, cx: &mut ShardCtx) -> Poll {
        if self.armed {
            cx.counters.rx_packets += 1;
            panic!("bomb on shard {}", cx.shard);
        }
        Poll::Idle
    }
}

fn bomb_runtime(control_capacity: usize) -> Runtime {
    let cfg =
        RuntimeConfig { shards: 2, pinning: Pinning::None, control_capacity, ..RuntimeConfig::default() };
    Runtime::launch(cfg, |_| Ok::<_, String>(Bomb { armed: false })).unwrap()
}

/// Issue 13: a panicking shard is marked `Failed` with its message (not left `Running`), and
/// `stop` finishes even though the dead shard's control queue is full, reporting the panic.
#[test]
fn panicking_shard_is_marked_failed_and_stop_finishes() {
    let rt = bomb_runtime(2);
    rt.update(1, |b: &mut Bomb| b.armed = true).unwrap();
    wait_until("shard 1 marked failed", || rt.control(1).unwrap().state() == ShardState::Failed);
    let c1 = rt.control(1).unwrap();
    assert_eq!(c1.failure(), Some("bomb on shard 1"));
    assert_eq!(c1.stats().counters.rx_packets, 1, "counters up to the panic are published");
    assert_eq!(rt.failures(), vec![(1, "bomb on shard 1".to_string())]);
    assert!(matches!(
        rt.update(1, |b: &mut Bomb| b.armed = false),
        Err(UpdateError::NotRunning { shard: 1, .. })
    ));
    // Fill the dead shard's control queue.
    while c1.send(wirespeed_core::Command::PublishStats).is_ok() {}
    assert_eq!(rt.control(0).unwrap().state(), ShardState::Running);
    let result = within(10, "stop", move || rt.stop());
    match result {
        Err(RuntimeError::Panicked { shard: 1, message }) => assert_eq!(message, "bomb on shard 1"),
        other => panic!("expected shard 1's panic, got {other:?}"),
    }
}

/// Dropping a runtime with a dead shard whose queue is full finishes too; all reports are kept.
#[test]
fn drop_and_reports_survive_a_panicked_shard() {
    let rt = bomb_runtime(1);
    rt.update(0, |b: &mut Bomb| b.armed = true).unwrap();
    wait_until("shard 0 failed", || rt.control(0).unwrap().state() == ShardState::Failed);
    while rt.control(0).unwrap().send(wirespeed_core::Command::PublishStats).is_ok() {}
    within(10, "drop", move || drop(rt));

    let rt = bomb_runtime(1);
    rt.update(0, |b: &mut Bomb| b.armed = true).unwrap();
    wait_until("shard 0 failed", || rt.control(0).unwrap().state() == ShardState::Failed);
    let reports = within(10, "stop_all_reports", move || rt.stop_all_reports());
    assert_eq!(reports[0].outcome, ShardOutcome::Failed("bomb on shard 0".into()));
    assert_eq!(reports[1].outcome, ShardOutcome::Stopped);
}

/// `wait_finished` returns (with the panic) when a shard dies instead of finishing its input.
#[test]
fn wait_finished_returns_when_a_shard_panics() {
    let rt = bomb_runtime(4);
    rt.update(0, |b: &mut Bomb| b.armed = true).unwrap();
    // Shard 1 idles forever: wait_finished must not wait for it once shard 0 failed... it does
    // wait for unfinished shards, so finish shard 1 by stopping through a handle.
    let c1 = rt.control_handle(1).unwrap();
    let r = within(10, "wait_finished", move || {
        wait_until("shard 0 failed", || rt.control(0).unwrap().state() == ShardState::Failed);
        c1.send(wirespeed_core::Command::Stop).unwrap();
        rt.wait_finished()
    });
    assert!(matches!(r, Err(RuntimeError::Panicked { shard: 0, .. })), "{r:?}");
}

/// A factory that cannot fail returns its worker itself (no `Ok::<_, E>(..)`), with `launch` and
/// with the builder, boxed or not; a factory returning a `Result` still fails the launch with its
/// `Err`.
#[test]
fn infallible_factories_return_the_worker_itself() {
    let cfg = RuntimeConfig { shards: 2, pinning: Pinning::None, ..RuntimeConfig::default() };
    let rt = Runtime::launch(cfg.clone(), |shard| Idle(shard as u64 * 1_000_000_000)).unwrap();
    let reports = rt.stop().unwrap();
    assert!(*reports[1].report::<u64>().unwrap() >= 1_000_000_000);

    let rt = Runtime::builder(cfg.clone())
        .shard(|_| Idle(0))
        .shard(|_| Box::new(Idle(7)) as Box<dyn Worker>)
        .launch()
        .unwrap();
    let reports = rt.stop().unwrap();
    assert!(*reports[1].report::<u64>().unwrap() >= 7);

    let err = Runtime::builder(cfg)
        .shard(|_| Idle(0))
        .shard(|_| Err::<Idle, _>("no queue for this shard"))
        .launch()
        .expect_err("launch must fail");
    assert_eq!(err.to_string(), "shard 1 failed to start: no queue for this shard");
}

/// Queue pairs for 2 shards with `RuntimeConfig::shards` left at its default 1 used to serve half
/// the input and exit 0; now the launch fails naming both numbers, in either direction, and
/// whether the factory returns the `take` error or unwraps it.
#[test]
fn hand_out_of_another_length_than_the_shards_fails_the_launch() {
    let launch = |shards: usize, prepared: usize, unwrap: bool| {
        let pool = BufferPool::new(PoolConfig { buffers: 256, ..PoolConfig::default() }).unwrap();
        let mut port = NullPort::new(NullConfig { queues: 4, ..NullConfig::default() }, pool);
        let queues = PerShard::queue_pairs(&mut port, prepared).unwrap();
        let cfg = RuntimeConfig { shards, pinning: Pinning::None, ..RuntimeConfig::default() };
        Runtime::launch(cfg, move |shard| {
            let (rx, tx) = if unwrap { queues.take(shard).unwrap() } else { queues.take(shard)? };
            Ok::<_, wirespeed_core::HandOutError>(Pipeline::new(rx, tx, ()))
        })
    };
    for (shards, prepared) in [(1, 2), (2, 1), (3, 4)] {
        for unwrap in [false, true] {
            let err = launch(shards, prepared, unwrap).expect_err("launch must fail");
            assert!(
                matches!(err, RuntimeError::ShardCount { shards: s, handed_out: h, what: "queue pair" } if s == shards && h == prepared),
                "{err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "{prepared} queue pairs were handed out for {shards} shards: set RuntimeConfig::shards to {prepared} or prepare {shards}"
                )
            );
        }
    }
    // Matching lengths launch and run.
    let rt = launch(2, 2, false).expect("2 queue pairs for 2 shards");
    assert_eq!(rt.stop().unwrap().len(), 2);
}

/// Counts the packets it sees; found by type in a report.
#[derive(Default)]
struct Seen(u64);
impl<B: PacketBuf> wirespeed_core::Stage<B> for Seen {
    fn process(&mut self, _cx: &mut ShardCtx, batch: &mut wirespeed_core::Batch<B>) {
        self.0 += batch.len() as u64;
    }
}

/// Reports name stages by type, wherever they sit (nested tuples, `Chain`), and the pipeline,
/// report included, moves to another thread (`Pipeline: Send`).
#[test]
fn reports_find_stages_by_type() {
    let pool = BufferPool::new(PoolConfig { buffers: 256, ..PoolConfig::default() }).unwrap();
    let mut port = NullPort::new(NullConfig { limit: Some(320), ..NullConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    let stages = ((), (wirespeed_core::Chain((), Seen::default()), ()), ());
    let pipeline = Pipeline::new(rx, tx, stages).with_report(|s| {
        (s.get::<Seen>().map(|c| c.0), s.get::<Idle>().is_some(), s.get_mut::<()>().is_some())
    });
    // Built here, run on a shard thread.
    let cfg = RuntimeConfig { pinning: Pinning::None, ..RuntimeConfig::default() };
    let rt = Runtime::builder(cfg).shard(move |_| pipeline).launch().unwrap();
    wait_until("end of input", || rt.control(0).unwrap().state() == ShardState::Finished);
    let reports = rt.stop().unwrap();
    assert_eq!(reports[0].report::<(Option<u64>, bool, bool)>(), Some(&(Some(320), false, true)));

    let mut port = NullPort::new(NullConfig::default(), BufferPool::new(PoolConfig::default()).unwrap());
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut p = Pipeline::new(rx, tx, (Seen(7), (Seen(9),)));
    assert_eq!(p.stage::<Seen>().map(|s| s.0), Some(7), "the first in order");
    p.stage_mut::<(Seen,)>().unwrap().0.0 = 11;
    assert_eq!(p.stages().1.0.0, 11);
    assert!(p.stage::<Idle>().is_none());
}
