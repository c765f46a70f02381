//! Model checks of the concurrency protocols in core: the shard control channel and shutdown,
//! stats snapshots, and epoch handoff of tables.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p wirespeed-core --test loom`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use wirespeed_core::epoch::Publisher;
use wirespeed_core::runtime::{Command, LoopOptions, Poll, ShardControl, ShardExit, ShardState, run_shard};
use wirespeed_core::stats::SeqLock;
use wirespeed_core::{DropReason, ShardCounters, ShardCtx, StatsCell, Worker};

/// A worker that "receives" two packets, forwarding even-numbered ones and dropping odd ones,
/// and records the updates it was sent.
struct Mock {
    left: u32,
    applied: Vec<u32>,
    drained: bool,
}

impl Worker for Mock {
    fn poll(&mut self, cx: &mut ShardCtx) -> Poll {
        if self.left == 0 {
            return Poll::Idle;
        }
        self.left -= 1;
        cx.counters.rx_packets += 1;
        if self.left % 2 == 0 {
            cx.counters.tx_packets += 1;
        } else {
            cx.counters.drop_packet(DropReason::NoRoute);
        }
        Poll::Busy(1)
    }

    fn drain(&mut self, cx: &mut ShardCtx) {
        // Draining flushes something (like a Tx queue's last burst), so the final counters
        // always differ from anything published before the stop.
        cx.counters.tx_bytes += 100;
        self.drained = true;
    }
}

#[test]
fn control_updates_in_order_then_stop_drains_and_publishes() {
    loom::model(|| {
        let ctl = Arc::new(ShardControl::new(0, 4));
        let shard_ctl = ctl.clone();
        let shard = thread::spawn(move || {
            let mut w = Mock { left: 2, applied: Vec::new(), drained: false };
            let mut cx = ShardCtx::new(0);
            let opts = LoopOptions {
                stats_every: 1000,
                exit_when_finished: false,
                spin_before_yield: 0,
                clock_every: 16,
                idle: wirespeed_core::IdlePolicy::Spin,
            };
            let exit = run_shard(&shard_ctl, &mut w, &mut cx, &opts);
            (exit, w.applied, w.drained, cx.counters)
        });
        ctl.update(|m: &mut Mock| m.applied.push(7)).unwrap();
        ctl.update(|m: &mut Mock| m.applied.push(8)).unwrap();
        ctl.send(Command::Stop).unwrap();
        // Observe `Exited` *before* joining and read the stats right then: the shard must have
        // published its final counters before it announced `Exited` (a shard that published
        // after would let this snapshot miss them; reading only after `join()` cannot tell).
        while ctl.state() != ShardState::Exited {
            thread::yield_now();
        }
        let snap = ctl.stats();
        let (exit, applied, drained, counters) = shard.join().unwrap();
        assert_eq!(exit, ShardExit::Stopped);
        assert_eq!(applied, vec![7, 8], "updates applied in order, none lost");
        assert!(drained, "stop drains the worker");
        assert_eq!(snap.counters, counters, "stats seen at `Exited` are the shard's final counters");
    });
}

#[test]
fn stats_snapshots_are_never_torn() {
    // The seqlock under StatsCell, at three words so the model stays small: the writer keeps
    // w0 == w1 + w2 (rx == tx + drops); no snapshot may break it.
    loom::model(|| {
        let cell = Arc::new(SeqLock::<3>::new());
        let writer_cell = cell.clone();
        let writer = thread::spawn(move || {
            for i in 1..=2u64 {
                writer_cell.write(&[3 * i, 2 * i, i]);
            }
        });
        let (g1, a) = cell.read();
        let (g2, b) = cell.read();
        for w in [a, b] {
            assert_eq!(w[0], w[1] + w[2], "torn snapshot: {w:?}");
        }
        assert!(g2 >= g1, "generations never go back");
        assert!(b[0] >= a[0]);
        writer.join().unwrap();
        assert_eq!(cell.read(), (2, [6, 4, 2]));
    });
}

#[test]
fn stats_cell_round_trips_counters() {
    loom::model(|| {
        let cell = StatsCell::new();
        let mut c = ShardCounters::default();
        c.rx_packets = 5;
        c.drop_packet(DropReason::EspReplay);
        cell.publish(&c);
        assert_eq!(cell.read(), (1, c));
    });
}

#[test]
fn epoch_handoff_is_monotonic_and_reclaims() {
    loom::model(|| {
        let mut publisher = Publisher::new(10u64);
        let mut sub = publisher.subscribe();
        let shard = thread::spawn(move || {
            let mut seen = vec![sub.version()];
            for _ in 0..3 {
                sub.refresh();
                // Value and version always belong together.
                assert_eq!(*sub.get(), sub.version() * 10);
                seen.push(sub.version());
            }
            (seen, sub)
        });
        let v2 = publisher.publish(20);
        let v3 = publisher.publish(30);
        let (seen, mut sub) = shard.join().unwrap();
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "versions went back: {seen:?}");
        // Whatever the interleaving, one more refresh reaches the latest version.
        sub.refresh();
        assert_eq!((sub.version(), *sub.get()), (v3, 30));
        assert!(publisher.adopted_by_all(v2) && publisher.adopted_by_all(v3));
        // Every version the shard let go of comes back to the publisher to be freed.
        let reclaimed = publisher.reclaim();
        assert!((1..=2).contains(&reclaimed), "reclaimed {reclaimed}");
    });
}
