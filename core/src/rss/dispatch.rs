//! The software dispatcher: the NIC's RSS and steering, done by an Rx shard in software.
//!
//! When a backend has fewer hardware queues than shards (a capture file, single-queue AF_XDP, a
//! NIC without the needed hash type), the shard that receives computes, per packet, exactly what
//! the NIC would — [`SteeringEngine`]: the plan's first matching rule, else the Toeplitz hash
//! (key, symmetric mode, hash types) and the RETA — and hands the packet to the shard owning
//! that queue (queue *q* is owned by shard *q*).
//!
//! Packets travel in batches over one bounded ring per (Rx shard → owner) pair
//! ([`DispatchFabric`]): a [`Dispatcher`] (a [`Stage`]) collects each owner's packets into a
//! staging batch and pushes whole batches; an owner's [`DispatchRx`] (an [`RxQueue`]) pops
//! them. Nothing allocates per packet; a full ring drops the batch, counted as
//! [`DropReason::DispatchRingFull`]; a drop rule counts [`DropReason::SteeringDrop`]. The
//! default group's RETA comes by epoch ([`crate::epoch`]), so the rebalancer can change it
//! without stopping anything; per-entry load is counted in a [`RetaLoad`].
//!
//! Wiring, for a single-queue port feeding two shards: shard 0 receives, keeps its own packets
//! (the [`Dispatcher`] is its first stage) and hands the rest over; shard 1's pipeline receives
//! from a [`DispatchRx`]. (With an Rx shard that owns no queue, run a [`DispatchWorker`] instead.)
//!
//! ```
//! use wirespeed_core::backend::mem::{MemConfig, MemPort};
//! use wirespeed_core::epoch::Publisher;
//! use wirespeed_core::rss::{DispatchFabric, RssConfig, RssGroup, RssHasher, SteeringEngine, SteeringPlan, SymmetricMode};
//! use wirespeed_core::sync::Arc;
//! use wirespeed_core::{BufferPool, Pipeline, PoolBuf, PoolConfig, Port, ShardCtx};
//!
//! let pool = BufferPool::new(PoolConfig::default())?;
//! let (mut port, nic) = MemPort::new(MemConfig { queues: 2, ..MemConfig::default() }, pool);
//! let (rx0, tx0) = port.queue_pair(0)?;
//! let (_rx1, tx1) = port.queue_pair(1)?; // the hardware queue 1 gets nothing: one-queue NIC
//!
//! let hasher = RssHasher::new(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() })?;
//! let engine = Arc::new(SteeringEngine::new(hasher, SteeringPlan::rss_only(RssGroup::first(2)), 2)?);
//! let mut reta = Publisher::new(engine.default_reta()?); // the rebalancer publishes here
//! let fabric = DispatchFabric::<PoolBuf>::new(1, 2, 64)?;
//! let dispatcher = fabric.dispatcher(0, engine.clone(), reta.subscribe(), Some(0))?;
//! let mut shard0 = Pipeline::new(rx0, tx0, (dispatcher, /* classify, esp, forward */ ()));
//! let mut shard1 = Pipeline::new(fabric.receiver(1)?, tx1, ());
//!
//! for sport in 1000..1064u16 {
//!     let mut f = wirespeed_core::backend::null::udp4_frame(64);
//!     f[34..36].copy_from_slice(&sport.to_be_bytes());
//!     nic.inject(0, &f)?;
//! }
//! let (mut cx0, mut cx1) = (ShardCtx::new(0), ShardCtx::new(1));
//! while shard0.run_once(&mut cx0) > 0 {}
//! while shard1.run_once(&mut cx1) > 0 {}
//! assert_eq!(cx0.counters.tx_packets + cx1.counters.tx_packets, 64);
//! assert_eq!(cx0.counters.handed_off, cx1.counters.rx_packets);
//! assert!(cx1.counters.rx_packets > 0 && cx0.counters.tx_packets > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Instant;

use super::RssError;
use super::hash::RssHasher;
use super::parse::PacketInfo;
use super::rebalance::RetaLoad;
use super::reta::Reta;
use super::steering::{SteeringAction, SteeringPlan};
use crate::backend::RxQueue;
use crate::batch::Batch;
use crate::buf::PacketBuf;
use crate::epoch::Subscriber;
use crate::runtime::{Poll, Worker};
use crate::stage::Stage;
use crate::stats::{ShardCtx, ShardId};
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{Arc, BoundedQueue};
use crate::verdict::DropReason;

/// Where a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteeringDecision {
    /// To `queue`.
    Queue {
        /// The queue (= owning shard).
        queue: u16,
        /// The RSS hash, when the packet went through an RSS group and a hash type applied.
        hash: Option<u32>,
        /// The default group's RETA entry used (for load counting), when it went there.
        entry: Option<u16>,
        /// The rule that decided, `None` for the default group.
        rule: Option<u16>,
    },
    /// A drop rule matched (rule index).
    Drop {
        /// The rule.
        rule: u16,
    },
}

impl SteeringDecision {
    /// The queue, `None` for a drop.
    pub fn queue(&self) -> Option<u16> {
        match *self {
            Self::Queue { queue, .. } => Some(queue),
            Self::Drop { .. } => None,
        }
    }
}

enum Action {
    Queue(u16),
    Group(Reta),
    Drop,
}

/// A steering plan and RSS configuration compiled for software: what the dispatcher evaluates
/// per packet. The default group's RETA is passed in per call (it changes by epoch); rule
/// groups have their own fixed RETA.
///
/// Packets with no applicable hash type (non-IP, no enabled type) take entry 0 of their group
/// — the convention of the software path; hardware backends document theirs.
pub struct SteeringEngine {
    hasher: RssHasher,
    plan: SteeringPlan,
    actions: Vec<Action>,
    queues: u16,
    /// The default group's initial RETA, for [`Steer`] (static steering without epochs).
    reta: Reta,
}

impl std::fmt::Debug for SteeringEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteeringEngine").field("plan", &self.plan).field("queues", &self.queues).finish()
    }
}

impl SteeringEngine {
    /// Compiles `plan` for a port with `queues` queues.
    pub fn new(hasher: RssHasher, plan: SteeringPlan, queues: u16) -> Result<Self, RssError> {
        plan.validate(queues)?;
        let actions = plan
            .rules
            .iter()
            .map(|r| {
                Ok(match &r.action {
                    SteeringAction::Queue(q) => Action::Queue(*q),
                    SteeringAction::Rss(g) => Action::Group(g.reta()?),
                    SteeringAction::Drop => Action::Drop,
                })
            })
            .collect::<Result<Vec<_>, RssError>>()?;
        let reta = plan.default.reta()?;
        Ok(Self { hasher, plan, actions, queues, reta })
    }

    /// The hasher.
    pub fn hasher(&self) -> &RssHasher {
        &self.hasher
    }

    /// The plan.
    pub fn plan(&self) -> &SteeringPlan {
        &self.plan
    }

    /// Number of queues.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// The default group's initial RETA (publish it, then keep it up to date by epoch).
    pub fn default_reta(&self) -> Result<Reta, RssError> {
        self.plan.default.reta()
    }

    /// Decides a parsed packet; `reta` is the default group's current RETA.
    #[inline]
    pub fn decide(&self, p: &PacketInfo, reta: &Reta) -> SteeringDecision {
        let hash = || p.tuple.as_ref().and_then(|t| self.hasher.hash_tuple(t));
        for (i, (rule, action)) in self.plan.rules.iter().zip(&self.actions).enumerate() {
            if !rule.matches.matches(p) {
                continue;
            }
            let rule = Some(i as u16);
            return match action {
                Action::Queue(q) => SteeringDecision::Queue { queue: *q, hash: None, entry: None, rule },
                Action::Group(g) => {
                    let h = hash();
                    SteeringDecision::Queue { queue: g.queue(h.unwrap_or(0)), hash: h, entry: None, rule }
                }
                Action::Drop => SteeringDecision::Drop { rule: i as u16 },
            };
        }
        let h = hash();
        let entry = reta.index(h.unwrap_or(0));
        SteeringDecision::Queue {
            queue: reta.entries()[entry],
            hash: h,
            entry: Some(entry as u16),
            rule: None,
        }
    }

    /// Parses an Ethernet frame and decides it.
    #[inline]
    pub fn decide_frame(&self, frame: &[u8], reta: &Reta) -> SteeringDecision {
        self.decide(&PacketInfo::parse_ethernet(frame), reta)
    }
}

/// Chooses the queue of an Ethernet frame (`None`: drop it). The one steering path for
/// everything that spreads packets in software: [`SteeringEngine`] implements it with its plan,
/// Toeplitz key, symmetric mode and initial RETA — the same choice the [`Dispatcher`] and a
/// NIC make — and so does any `Fn(&[u8]) -> u16`. Backends that spread one input over several
/// queues (the pcap port's `spread_input`) take a `Steer`.
pub trait Steer: Send + Sync {
    /// The queue of `frame`, or `None` to drop it.
    fn queue(&self, frame: &[u8]) -> Option<u16>;
}

impl Steer for SteeringEngine {
    #[inline]
    fn queue(&self, frame: &[u8]) -> Option<u16> {
        self.decide_frame(frame, &self.reta).queue()
    }
}

impl<F: Fn(&[u8]) -> u16 + Send + Sync> Steer for F {
    #[inline]
    fn queue(&self, frame: &[u8]) -> Option<u16> {
        Some(self(frame))
    }
}

impl<S: Steer + ?Sized> Steer for Arc<S> {
    #[inline]
    fn queue(&self, frame: &[u8]) -> Option<u16> {
        (**self).queue(frame)
    }
}

type Ring<B> = BoundedQueue<Batch<B>>;

/// Creates the channel over which a [`Dispatcher`] reports its [`RetaLoad`] to the control
/// thread (which merges the reports of every Rx shard and runs the
/// [`super::Rebalancer`]). `reta_size` sizes the two circulating buffers.
pub fn load_channel(reta_size: usize) -> (LoadSender, LoadReceiver) {
    let full = Arc::new(BoundedQueue::new(1));
    let empty = Arc::new(BoundedQueue::new(2));
    for _ in 0..2 {
        let _ = empty.push(RetaLoad::new(reta_size));
    }
    (LoadSender { full: full.clone(), empty: empty.clone() }, LoadReceiver { full, empty })
}

/// The dispatcher's side of [`load_channel`].
#[derive(Debug)]
pub struct LoadSender {
    full: Arc<BoundedQueue<RetaLoad>>,
    empty: Arc<BoundedQueue<RetaLoad>>,
}

impl LoadSender {
    /// Copies `load` into a free buffer and sends it; `false` (nothing sent) when the control
    /// side still holds both buffers.
    pub fn send(&self, load: &RetaLoad) -> bool {
        let Some(mut buf) = self.empty.pop() else { return false };
        buf.copy_from(load);
        match self.full.push(buf) {
            Ok(()) => true,
            Err(buf) => {
                // The previous report is still unread: it is older, replace it.
                if let Some(old) = self.full.pop() {
                    let _ = self.empty.push(old);
                }
                match self.full.push(buf) {
                    Ok(()) => true,
                    Err(buf) => {
                        let _ = self.empty.push(buf);
                        false
                    }
                }
            }
        }
    }
}

/// The control thread's side of [`load_channel`].
#[derive(Debug)]
pub struct LoadReceiver {
    full: Arc<BoundedQueue<RetaLoad>>,
    empty: Arc<BoundedQueue<RetaLoad>>,
}

impl LoadReceiver {
    /// The latest report, if a new one arrived. Hand it back with [`LoadReceiver::recycle`].
    pub fn take(&self) -> Option<RetaLoad> {
        self.full.pop()
    }

    /// Returns a report's buffer for reuse.
    pub fn recycle(&self, load: RetaLoad) {
        let _ = self.empty.push(load);
    }
}

/// The rings between `rx_shards` receiving shards and `shards` owning shards.
pub struct DispatchFabric<B> {
    rings: Vec<Arc<Ring<B>>>,
    closed: Vec<Arc<AtomicBool>>,
    rx_shards: usize,
    shards: usize,
}

impl<B> std::fmt::Debug for DispatchFabric<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchFabric")
            .field("rx_shards", &self.rx_shards)
            .field("shards", &self.shards)
            .finish()
    }
}

impl<B: PacketBuf> DispatchFabric<B> {
    /// Rings of `ring_batches` batches (of up to 32 packets) each, allocated now.
    pub fn new(rx_shards: usize, shards: usize, ring_batches: usize) -> Result<Self, RssError> {
        if rx_shards == 0 || shards == 0 || shards > usize::from(u16::MAX) || ring_batches == 0 {
            return Err(RssError::BadConfig(format!(
                "dispatch fabric needs ≥1 rx shard, 1..=65535 shards and ring capacity ≥1 \
                 (got {rx_shards}, {shards}, {ring_batches})"
            )));
        }
        let rings = (0..rx_shards * shards).map(|_| Arc::new(BoundedQueue::new(ring_batches))).collect();
        let closed = (0..rx_shards).map(|_| Arc::new(AtomicBool::new(false))).collect();
        Ok(Self { rings, closed, rx_shards, shards })
    }

    /// The dispatcher of Rx shard `rx`. With `keep_local = Some(s)`, packets owned by shard `s`
    /// stay in the batch (the Rx shard is also owner `s`); all others go to the rings.
    pub fn dispatcher(
        &self,
        rx: usize,
        engine: Arc<SteeringEngine>,
        reta: Subscriber<Reta>,
        keep_local: Option<ShardId>,
    ) -> Result<Dispatcher<B>, RssError> {
        if rx >= self.rx_shards {
            return Err(RssError::BadConfig(format!("rx shard {rx} of {}", self.rx_shards)));
        }
        if usize::from(engine.queues()) > self.shards {
            return Err(RssError::BadConfig(format!(
                "plan has {} queues but only {} shards own them",
                engine.queues(),
                self.shards
            )));
        }
        let rings: Vec<_> = (0..self.shards).map(|s| self.rings[rx * self.shards + s].clone()).collect();
        let load = RetaLoad::new(reta.len());
        Ok(Dispatcher {
            engine,
            reta,
            staging: (0..self.shards).map(|_| Batch::new()).collect(),
            rings,
            scratch: Batch::new(),
            keep_local,
            load,
            epoch: Instant::now(),
            closed: self.closed[rx].clone(),
            report: None,
        })
    }

    /// The receive side of owner shard `shard`.
    pub fn receiver(&self, shard: ShardId) -> Result<DispatchRx<B>, RssError> {
        if shard >= self.shards {
            return Err(RssError::BadConfig(format!("shard {shard} of {}", self.shards)));
        }
        let rings = (0..self.rx_shards).map(|r| self.rings[r * self.shards + shard].clone()).collect();
        Ok(DispatchRx { rings, closed: self.closed.clone(), pending: Batch::new(), next: 0 })
    }
}

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
}

impl<B> std::fmt::Debug for Dispatcher<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("keep_local", &self.keep_local).finish_non_exhaustive()
    }
}

impl<B: PacketBuf> Dispatcher<B> {
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
        batch.move_into(&mut self.scratch);
        let engine = &*self.engine;
        let reta: &Reta = &self.reta;
        for mut p in self.scratch.drain(..) {
            let d = engine.decide_frame(p.data(), reta);
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

/// The receive side of an owner shard: packets dispatched to it by every Rx shard.
pub struct DispatchRx<B> {
    rings: Vec<Arc<Ring<B>>>,
    closed: Vec<Arc<AtomicBool>>,
    pending: Batch<B>,
    next: usize,
}

impl<B> std::fmt::Debug for DispatchRx<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchRx").field("rings", &self.rings.len()).finish_non_exhaustive()
    }
}

impl<B: PacketBuf + Send> RxQueue for DispatchRx<B> {
    type Buf = B;

    fn rx_burst(&mut self, out: &mut Batch<B>) -> usize {
        let before = out.len();
        self.pending.move_into(out);
        // Visit every ring at most once per burst, starting after the last one served (fair).
        let n = self.rings.len();
        for i in 0..n {
            if out.is_full() {
                break;
            }
            let r = (self.next + i) % n;
            if let Some(mut b) = self.rings[r].pop() {
                b.move_into(out);
                // What did not fit waits for the next burst.
                b.move_into(&mut self.pending);
                self.next = (r + 1) % n;
            }
        }
        out.len() - before
    }

    fn at_end(&self) -> bool {
        self.pending.is_empty()
            && self.closed.iter().all(|c| c.load(Ordering::Acquire))
            && self.rings.iter().all(|r| r.is_empty())
    }
}
