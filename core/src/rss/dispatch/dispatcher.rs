//! [`Dispatcher`]: the stage that sends each packet to the shard owning its queue, and
//! [`DispatchWorker`], an Rx-only shard that dispatches everything.

use std::time::Instant;

use super::engine::{DecideScratch, SteeringDecision, SteeringEngine};
use super::fabric::Ring;
use super::load::LoadSender;
use crate::backend::RxQueue;
use crate::batch::{BATCH_SIZE, Batch};
use crate::buf::PacketBuf;
use crate::epoch::Subscriber;
use crate::rss::rebalance::RetaLoad;
use crate::rss::reta::Reta;
use crate::runtime::{Poll, Worker};
use crate::stage::Stage;
use crate::stats::{ShardCtx, ShardId};
use crate::sync::Arc;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::verdict::DropReason;

/// One Rx shard's dispatcher. As a [`Stage`] it removes from the batch every packet owned by
/// another shard (and, with `keep_local = None`, every packet), queueing it for its owner.
pub struct Dispatcher<B> {
    engine: Arc<SteeringEngine>,
    reta: Subscriber<Reta>,
    staging: Vec<Batch<B>>,
    rings: Vec<Arc<Ring<B>>>,
    scratch: Batch<B>,
    keep_local: Option<ShardId>,
    load: RetaLoad,
    epoch: Instant,
    closed: Arc<AtomicBool>,
    report: Option<(LoadSender, u32, u32)>,
    batch: Box<BatchScratch>,
}

/// What one batch is decided with: its decisions and the engine's scratch.
struct BatchScratch {
    decisions: [SteeringDecision; BATCH_SIZE],
    decide: DecideScratch,
}

impl<B> std::fmt::Debug for Dispatcher<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("keep_local", &self.keep_local).finish_non_exhaustive()
    }
}

impl<B: PacketBuf> Dispatcher<B> {
    pub(super) fn new(
        engine: Arc<SteeringEngine>,
        reta: Subscriber<Reta>,
        rings: Vec<Arc<Ring<B>>>,
        keep_local: Option<ShardId>,
        closed: Arc<AtomicBool>,
    ) -> Self {
        let load = RetaLoad::new(reta.len());
        Self {
            engine,
            staging: (0..rings.len()).map(|_| Batch::new()).collect(),
            reta,
            rings,
            scratch: Batch::new(),
            keep_local,
            load,
            epoch: Instant::now(),
            closed,
            report: None,
            batch: Box::new(BatchScratch {
                decisions: [SteeringDecision::Drop { rule: 0 }; BATCH_SIZE],
                decide: DecideScratch::new(),
            }),
        }
    }

    /// Per-entry load of the default group's RETA seen by this dispatcher (time in ns since the
    /// dispatcher was built, from [`ShardCtx::now`]).
    pub fn load(&self) -> &RetaLoad {
        &self.load
    }

    /// Per-entry load, writable (to decay or reset it between rebalancing rounds).
    pub fn load_mut(&mut self) -> &mut RetaLoad {
        &mut self.load
    }

    /// Nanoseconds since the dispatcher was built, at `cx.now` (the clock of [`Self::load`]).
    pub fn clock(&self, cx: &ShardCtx) -> u64 {
        cx.now.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Sends a snapshot of the per-entry load to `tx` every `every_batches` batches, then halves
    /// the dispatcher's own counts (so successive snapshots are a decaying average). Buffers
    /// circulate between the two sides, so reporting allocates nothing once running.
    pub fn report_load(&mut self, tx: LoadSender, every_batches: u32) {
        self.report = Some((tx, every_batches.max(1), 0));
    }

    fn maybe_report(&mut self) {
        let Some((tx, every, count)) = &mut self.report else { return };
        *count += 1;
        if *count < *every {
            return;
        }
        *count = 0;
        if tx.send(&self.load) {
            self.load.decay();
        }
    }

    /// Tells the receivers this Rx shard will dispatch nothing more (end of a capture).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Dispatches `batch`: local packets stay, the rest go to their owners' rings.
    pub fn dispatch(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        self.reta.refresh();
        if self.load.len() != self.reta.len() {
            self.load = RetaLoad::new(self.reta.len());
        }
        let now = self.clock(cx);
        // The whole batch at once: parse and decide every packet with one batch hash (the same
        // decisions `SteeringEngine::decide` makes one at a time), then move them.
        let bs = &mut *self.batch;
        let n = batch.len().min(BATCH_SIZE);
        self.engine.decide_frames(
            batch.iter().map(|p| p.data()),
            &self.reta,
            &mut bs.decide,
            &mut bs.decisions[..n],
        );
        batch.move_into(&mut self.scratch);
        for (mut p, &d) in self.scratch.drain(..).zip(&bs.decisions[..n]) {
            let SteeringDecision::Queue { queue, hash, entry, .. } = d else {
                cx.counters.drop_packet(DropReason::SteeringDrop);
                continue;
            };
            if let Some(e) = entry {
                self.load.record(usize::from(e), p.len() as u64, now);
            }
            if let Some(h) = hash {
                p.meta_mut().rss_hash = Some(h);
            }
            let owner = usize::from(queue);
            if Some(owner) == self.keep_local {
                // Cannot fail: the batch was emptied into scratch, which has the same capacity.
                let _ = batch.push(p);
                continue;
            }
            let Some(stage) = self.staging.get_mut(owner) else {
                // Unreachable with a validated plan; a bad RETA published later lands here.
                cx.counters.drop_packet(DropReason::SteeringDrop);
                continue;
            };
            if let Err(p) = stage.push(p) {
                // Staging batch full: ship it and start the next one.
                ship(&self.rings[owner], stage, cx);
                let _ = stage.push(p);
            }
        }
        for (owner, stage) in self.staging.iter_mut().enumerate() {
            if !stage.is_empty() {
                ship(&self.rings[owner], stage, cx);
            }
        }
        self.maybe_report();
    }
}

impl<B> Drop for Dispatcher<B> {
    /// A dispatcher that is gone dispatches nothing more: its receivers may finish.
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Pushes a staging batch to its owner's ring. A handed-off packet is received (`rx_packets`,
/// `rx_bytes`) by the shard that processes it, not by this one: the Rx shard counted it when its
/// Rx queue delivered it, so it takes it back out here and counts it as `handed_off` instead.
/// Summed over shards, `rx_packets` then counts every packet once, and each shard balances
/// (`rx == tx + drops`).
fn ship<B: PacketBuf>(ring: &Ring<B>, stage: &mut Batch<B>, cx: &mut ShardCtx) {
    let n = stage.len() as u64;
    let bytes = stage.bytes();
    match ring.push(std::mem::take(stage)) {
        Ok(()) => {
            cx.counters.handed_off += n;
            cx.counters.rx_packets = cx.counters.rx_packets.saturating_sub(n);
            cx.counters.rx_bytes = cx.counters.rx_bytes.saturating_sub(bytes);
        }
        Err(lost) => {
            cx.counters.drop_packets(DropReason::DispatchRingFull, n);
            drop(lost);
        }
    }
}

impl<B: PacketBuf> Stage<B> for Dispatcher<B> {
    #[inline]
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        self.dispatch(cx, batch);
    }

    /// End of input: the receivers finish once they have drained the rings.
    fn finish(&mut self, _cx: &mut ShardCtx) {
        self.close();
    }
}

/// A worker that only receives and dispatches: for an Rx shard that owns no queue itself
/// (e.g. the reader of a capture file feeding N processing shards).
pub struct DispatchWorker<R: RxQueue> {
    rx: R,
    dispatcher: Dispatcher<R::Buf>,
    batch: Batch<R::Buf>,
}

impl<R: RxQueue> DispatchWorker<R> {
    /// Receives from `rx`, dispatches everything (the dispatcher's `keep_local` is ignored:
    /// packets for this shard's own id go through its ring too).
    pub fn new(rx: R, mut dispatcher: Dispatcher<R::Buf>) -> Self {
        dispatcher.keep_local = None;
        Self { rx, dispatcher, batch: Batch::new() }
    }

    /// The dispatcher (for its load counters).
    pub fn dispatcher(&self) -> &Dispatcher<R::Buf> {
        &self.dispatcher
    }
}

impl<R: RxQueue + 'static> Worker for DispatchWorker<R> {
    fn poll(&mut self, cx: &mut ShardCtx) -> Poll {
        let n = self.rx.rx_burst(&mut self.batch);
        if let Some((reason, count)) = self.rx.take_drops() {
            cx.counters.drop_packets(reason, count);
        }
        if n == 0 {
            if self.rx.at_end() {
                self.dispatcher.close();
                return Poll::Finished;
            }
            return Poll::Idle;
        }
        cx.counters.rx_packets += n as u64;
        cx.counters.rx_bytes += self.batch.bytes();
        self.dispatcher.dispatch(cx, &mut self.batch);
        Poll::Busy(n)
    }

    fn drain(&mut self, _cx: &mut ShardCtx) {
        self.dispatcher.close();
    }
}
