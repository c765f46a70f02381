//! Dynamic neighbors: next hops resolved from what the control plane learns by ARP and Neighbor
//! Discovery, and the [`Resolving`] stage that holds packets while a next hop is being resolved.
//!
//! The control side keeps a [`Neighbors`] table (fed from
//! [`crate::control::ControlPlane::take_neighbor_updates`]) and publishes it by epoch like the
//! FIB; a [`Forward`] stage given a subscriber ([`Forward::with_neighbors`]) looks a next hop up
//! in the FIB's static neighbors first (static wins), then in the learned table.
//!
//! On a miss, [`Resolving`] (a [`Forward`] that does not drop misses) puts the packet in a small
//! bounded queue of the shard ([`HoldConfig::capacity`] packets over at most
//! [`HoldConfig::max_hops`] next hops being resolved; when full the packet is a counted
//! [`DropReason::NeighborQueueFull`] drop, like Linux's `unres_qlen`), and asks the control
//! plane to resolve the next hop through a bounded [`ResolveQueue`] (at most once per
//! [`HoldConfig::retry`] per next hop and shard; the control plane rate-limits the ARP requests
//! and Neighbor Solicitations it sends). When a table in which the next hop resolves is
//! published, the held packets are routed and released in their arrival order, ahead of newer
//! packets to the same next hop; packets still unresolved after [`HoldConfig::timeout`] are
//! [`DropReason::NoNeighbor`] drops. Everything is allocated at construction: holding,
//! releasing and asking allocate nothing.
//!
//! Accounting: a held packet has been received but neither sent nor dropped yet, so while
//! packets are held a shard's `rx == tx + punted + drops + held`; stopping the shard drops them
//! as [`DropReason::Shutdown`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use wirespeed_core::queue::SharedQueue;
use wirespeed_core::{BATCH_SIZE, Batch, DropReason, PacketBuf, ShardCtx, Stage};

use super::{Forward, Miss, Neighbor};

/// Neighbors learned by ARP / Neighbor Discovery, published to shards by epoch.
///
/// The addresses come from the wire, so the table uses the standard library's keyed (SipHash)
/// hasher: nobody can choose addresses that collide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Neighbors {
    map: HashMap<IpAddr, Neighbor>,
}

impl Neighbors {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `ip` at `n`; returns true if that changed anything.
    pub fn insert(&mut self, ip: IpAddr, n: Neighbor) -> bool {
        self.map.insert(ip, n) != Some(n)
    }

    /// Removes `ip`; returns whether it was there.
    pub fn remove(&mut self, ip: IpAddr) -> bool {
        self.map.remove(&ip).is_some()
    }

    /// The neighbor at `ip`.
    #[inline]
    pub fn get(&self, ip: IpAddr) -> Option<Neighbor> {
        self.map.get(&ip).copied()
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, Neighbor)> + '_ {
        self.map.iter().map(|(a, n)| (*a, *n))
    }
}

/// Next hops data shards want resolved, read by the control side (clone it for each shard).
pub type ResolveQueue = SharedQueue<IpAddr>;

/// A resolve queue holding at most `capacity` requests (at least one).
pub fn resolve_queue(capacity: usize) -> ResolveQueue {
    SharedQueue::new(capacity)
}

/// How [`Resolving`] holds packets waiting for a next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldConfig {
    /// Packets held at most (all next hops together); beyond, a
    /// [`DropReason::NeighborQueueFull`] drop.
    pub capacity: usize,
    /// Next hops being resolved at once; a packet for one more is a
    /// [`DropReason::NeighborQueueFull`] drop.
    pub max_hops: usize,
    /// A packet not released after this long is a [`DropReason::NoNeighbor`] drop.
    pub timeout: Duration,
    /// A next hop still unresolved is asked for again after this long.
    pub retry: Duration,
}

impl Default for HoldConfig {
    /// 64 packets over 16 next hops, 3 s (Linux: 3 solicitations 1 s apart), asked each second.
    fn default() -> Self {
        Self { capacity: 64, max_hops: 16, timeout: Duration::from_secs(3), retry: Duration::from_secs(1) }
    }
}

/// What a [`Resolving`] stage did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HoldCounters {
    /// Packets put on hold.
    pub held: u64,
    /// Held packets routed and released.
    pub released: u64,
    /// Packets dropped because the hold queue (or its next-hop list) was full.
    pub overflow: u64,
    /// Held packets dropped unresolved after the timeout.
    pub expired: u64,
    /// Resolution requests queued for the control plane.
    pub requests: u64,
    /// Resolution requests lost to a full resolve queue (asked again at the next retry).
    pub requests_lost: u64,
}

struct Held<B> {
    pkt: B,
    hop: IpAddr,
    since: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    hop: IpAddr,
    asked: Option<Instant>,
    queued: usize,
}

/// A [`Forward`] stage that resolves next hops instead of dropping misses: packets whose next
/// hop has no neighbor entry yet are held (bounded, per shard) while the control plane solicits.
///
/// Held packets are released when the stage runs: on the next batch, or when
/// [`Resolving::needs_service`] says so ([`Stage::needs_service`] / [`Stage::service`]: a
/// [`wirespeed_core::Pipeline`] services its stages on every poll that received nothing, and
/// reports the end of its input only once nothing is held). A worker of one's own calls
/// `needs_service` between bursts and then `process` on an empty batch, as `ipsec-gateway`'s
/// data shard does. In a pipeline, it is one stage among others:
///
/// ```
/// use std::net::IpAddr;
/// use wirespeed_core::backend::null::{NullConfig, NullPort};
/// use wirespeed_core::epoch::Publisher;
/// use wirespeed_core::{BufferPool, IpPrefix, Pipeline, PoolBuf, PoolConfig, Port, ShardCtx};
/// use wirespeed_stages::forward::{HoldConfig, Neighbor, Neighbors, Resolving, resolve_queue};
/// use wirespeed_stages::{Classify, ClassifyConfig, FibBuilder, Forward, NextHop};
///
/// let router: IpAddr = "10.0.1.254".parse()?;
/// let mut fib = FibBuilder::new();
/// fib.route_prefix(IpPrefix::any_v4(), NextHop::Gateway(router)); // its MAC is not known yet
/// let mut fib = Publisher::new(fib.build()?);
/// let mut learned = Publisher::new(Neighbors::new());
/// let requests = resolve_queue(16); // the control plane reads this and solicits
/// let mac = [0x02, 0, 0, 0, 0, 1];
/// let forward = Forward::new(fib.subscribe(), &[mac]).with_neighbors(learned.subscribe());
/// let resolving = Resolving::<PoolBuf>::new(forward, requests.clone(), HoldConfig::default());
///
/// let pool = BufferPool::new(PoolConfig::default())?;
/// let mut port = NullPort::new(NullConfig { copy: true, limit: Some(32), ..NullConfig::default() }, pool);
/// let (rx, tx) = port.queue_pair(0)?;
/// let mut pipeline = Pipeline::new(rx, tx, (Classify::new(ClassifyConfig::default()), resolving));
/// let mut cx = ShardCtx::new(0);
/// pipeline.run_once(&mut cx);
/// assert_eq!((cx.counters.rx_packets, cx.counters.tx_packets), (32, 0)); // all held
/// assert_eq!(requests.pop(), Some(router));
/// // The control side learns the router's MAC and publishes it: at the next poll the held
/// // packets leave, although nothing new arrives (the port's 32 frames were all).
/// let mut table = Neighbors::new();
/// table.insert(router, Neighbor { mac: [0x02, 0, 0, 0, 0, 0xfe], port: 0 });
/// learned.publish(table);
/// assert_eq!(pipeline.run_once(&mut cx), 0);
/// assert_eq!(cx.counters.tx_packets, 32);
/// assert_eq!(pipeline.stage::<Resolving<PoolBuf>>().map(|r| r.held()), Some(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Resolving<B> {
    fwd: Forward,
    requests: ResolveQueue,
    cfg: HoldConfig,
    held: VecDeque<Held<B>>,
    hops: Vec<Pending>,
    /// FIB and neighbor versions at the last service, and when it is due again.
    serviced: (u64, u64),
    next_check: Option<Instant>,
    counters: HoldCounters,
}

impl<B> std::fmt::Debug for Resolving<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolving")
            .field("forward", &self.fwd)
            .field("cfg", &self.cfg)
            .field("held", &self.held.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<B: PacketBuf> Resolving<B> {
    /// Resolves the misses of `fwd` (give it [`Forward::with_neighbors`]) by asking on
    /// `requests`, holding packets as `cfg` says.
    pub fn new(fwd: Forward, requests: ResolveQueue, cfg: HoldConfig) -> Self {
        let cfg = HoldConfig { capacity: cfg.capacity.max(1), max_hops: cfg.max_hops.max(1), ..cfg };
        let serviced = (fwd.fib_version(), fwd.neighbors_version());
        Self {
            fwd,
            requests,
            held: VecDeque::with_capacity(cfg.capacity),
            hops: Vec::with_capacity(cfg.max_hops),
            cfg,
            serviced,
            next_check: None,
            counters: HoldCounters::default(),
        }
    }

    /// The forward stage inside.
    pub fn forward(&self) -> &Forward {
        &self.fwd
    }

    /// Counters so far.
    pub fn counters(&self) -> HoldCounters {
        self.counters
    }

    /// Packets held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// True when held packets should be looked at now (a new FIB or neighbor table, a timeout
    /// or a retry due) even if no packet arrives: run the stage on an empty batch then, and send
    /// what it releases. Adopts newly published tables.
    pub fn needs_service(&mut self, now: Instant) -> bool {
        if self.held.is_empty() {
            return false;
        }
        self.fwd.refresh();
        self.versions() != self.serviced || self.next_check.is_none_or(|t| now >= t)
    }

    /// Drops every held packet as [`DropReason::Shutdown`] (when the shard stops).
    pub fn drop_held(&mut self, cx: &mut ShardCtx) {
        cx.counters.drop_packets(DropReason::Shutdown, self.held.len() as u64);
        self.held.clear();
        self.hops.clear();
    }

    fn versions(&self) -> (u64, u64) {
        (self.fwd.fib_version(), self.fwd.neighbors_version())
    }

    fn pending(&mut self, hop: IpAddr) -> Option<&mut Pending> {
        self.hops.iter_mut().find(|p| p.hop == hop)
    }

    /// Asks the control plane for `hop` unless it was asked within the retry interval.
    fn ask(
        requests: &ResolveQueue,
        counters: &mut HoldCounters,
        p: &mut Pending,
        now: Instant,
        retry: Duration,
    ) {
        if p.asked.is_some_and(|t| now < t + retry) {
            return;
        }
        match requests.push(p.hop) {
            Ok(()) => {
                p.asked = Some(now);
                counters.requests += 1;
            }
            Err(_) => counters.requests_lost += 1,
        }
    }

    /// Puts `pkt` on hold for `hop`, or drops it when the queue is full.
    fn hold(&mut self, cx: &mut ShardCtx, pkt: B, hop: IpAddr, since: Instant) {
        let now = cx.now;
        if self.held.len() >= self.cfg.capacity {
            return self.overflow(cx, pkt);
        }
        let p = match self.hops.iter().position(|p| p.hop == hop) {
            Some(i) => &mut self.hops[i],
            None if self.hops.len() < self.cfg.max_hops => {
                self.hops.push(Pending { hop, asked: None, queued: 0 });
                let last = self.hops.len() - 1;
                &mut self.hops[last]
            }
            None => return self.overflow(cx, pkt),
        };
        p.queued += 1;
        Self::ask(&self.requests, &mut self.counters, p, now, self.cfg.retry);
        let p_asked = p.asked;
        self.held.push_back(Held { pkt, hop, since });
        self.counters.held += 1;
        let due = (since + self.cfg.timeout).min(p_asked.map_or(now, |t| t) + self.cfg.retry);
        self.next_check = Some(self.next_check.map_or(due, |t| t.min(due)));
    }

    fn overflow(&mut self, cx: &mut ShardCtx, pkt: B) {
        drop(pkt);
        self.counters.overflow += 1;
        cx.counters.drop_packet(DropReason::NeighborQueueFull);
    }

    /// Releases what resolves now into `batch` (at its end, in arrival order, while it has
    /// room), drops what timed out, asks again for what is still unresolved. Returns how many
    /// packets were released.
    fn service(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) -> usize {
        let now = cx.now;
        self.serviced = self.versions();
        let mut released = 0;
        let mut out_of_room = false;
        for _ in 0..self.held.len() {
            let Some(mut h) = self.held.pop_front() else { break };
            let mut outcome = None; // Some(true): gone (released or dropped)
            out_of_room |= batch.remaining() == 0;
            if batch.remaining() > 0 {
                let (kind, off) = (h.pkt.meta().l3, h.pkt.meta().l3_offset);
                match self.fwd.route(h.pkt.data_mut(), kind, off) {
                    Ok(port) => {
                        h.pkt.meta_mut().out_port = port;
                        // Cannot fail: the batch has room.
                        let _ = batch.push(h.pkt);
                        released += 1;
                        self.counters.released += 1;
                        if let Some(p) = self.pending(h.hop) {
                            p.queued -= 1;
                        }
                        continue;
                    }
                    Err(Miss::Drop(r)) => {
                        if self.fwd.icmp.is_some() && self.fwd.icmp_error(&mut h.pkt, r, now) {
                            let _ = batch.push(h.pkt);
                            released += 1;
                            if let Some(p) = self.pending(h.hop) {
                                p.queued -= 1;
                            }
                            continue;
                        }
                        cx.counters.drop_packet(r);
                        outcome = Some(true);
                    }
                    Err(Miss::Unresolved(hop)) if hop != h.hop => {
                        // The route changed under the packet: wait for the new next hop.
                        if let Some(p) = self.pending(h.hop) {
                            p.queued -= 1;
                        }
                        self.hold(cx, h.pkt, hop, h.since);
                        continue;
                    }
                    Err(Miss::Unresolved(_)) => {}
                }
            }
            if outcome.is_none() && now >= h.since + self.cfg.timeout {
                cx.counters.drop_packet(DropReason::NoNeighbor);
                self.counters.expired += 1;
                outcome = Some(true);
            }
            if outcome.is_some() {
                if let Some(p) = self.pending(h.hop) {
                    p.queued -= 1;
                }
            } else {
                self.held.push_back(h);
            }
        }
        self.hops.retain(|p| p.queued > 0);
        for p in &mut self.hops {
            Self::ask(&self.requests, &mut self.counters, p, now, self.cfg.retry);
        }
        if out_of_room {
            // Look again at the next batch: some may resolve but found no room.
            self.serviced = (0, 0);
        }
        // Next due: the oldest packet's timeout, or a next hop's retry.
        let retry = self.cfg.retry;
        let asks = self.hops.iter().map(|p| p.asked.map_or(now + retry, |t| t + retry)).min();
        self.next_check = match (self.held.front().map(|h| h.since + self.cfg.timeout), asks) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        released
    }
}

impl<B: PacketBuf> Stage<B> for Resolving<B> {
    /// End of input: the packets still held are dropped as [`DropReason::Shutdown`] (counted,
    /// so `rx == tx + punted + drops` holds when the shard ends).
    fn finish(&mut self, cx: &mut ShardCtx) {
        self.drop_held(cx);
    }

    fn held(&self) -> usize {
        Resolving::held(self)
    }

    fn needs_service(&mut self, now: Instant) -> bool {
        Resolving::needs_service(self, now)
    }

    /// Releases (or expires) the due held packets into `batch`, and routes what it holds.
    fn service(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        self.process(cx, batch);
    }

    #[inline]
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        self.fwd.refresh();
        if self.held.front().is_some_and(|h| cx.now >= h.since + self.cfg.timeout) {
            // Make room for this batch first.
            self.expire(cx);
        }
        let waiting = !self.hops.is_empty();
        let mut out = [None; BATCH_SIZE];
        let mut any = false;
        for (p, o) in batch.iter_mut().zip(out.iter_mut()) {
            let (kind, off) = (p.meta().l3, p.meta().l3_offset);
            // Packets to a next hop that has packets waiting queue up behind them.
            if waiting
                && let Some(hop) = self.fwd.pending_hop(p.data(), kind, off)
                && self.hops.iter().any(|w| w.hop == hop)
            {
                *o = Some(Miss::Unresolved(hop));
                any = true;
                continue;
            }
            match self.fwd.route(p.data_mut(), kind, off) {
                Ok(port) => p.meta_mut().out_port = port,
                Err(Miss::Drop(r)) if self.fwd.icmp.is_some() && self.fwd.icmp_error(p, r, cx.now) => {}
                Err(m) => {
                    *o = Some(m);
                    any = true;
                }
            }
        }
        if any {
            self.sweep(cx, batch, &out);
        }
        if !self.held.is_empty()
            && (self.versions() != self.serviced || self.next_check.is_none_or(|t| cx.now >= t))
        {
            let released = self.service(cx, batch);
            // The released packets go first: they arrived before this batch.
            batch.as_mut_slice().rotate_right(released);
        }
    }
}

impl<B: PacketBuf> Resolving<B> {
    /// Drops the held packets that timed out.
    #[inline(never)]
    fn expire(&mut self, cx: &mut ShardCtx) {
        let timeout = self.cfg.timeout;
        for _ in 0..self.held.len() {
            let Some(h) = self.held.pop_front() else { break };
            if cx.now >= h.since + timeout {
                cx.counters.drop_packet(DropReason::NoNeighbor);
                self.counters.expired += 1;
                if let Some(p) = self.pending(h.hop) {
                    p.queued -= 1;
                }
            } else {
                self.held.push_back(h);
            }
        }
        self.hops.retain(|p| p.queued > 0);
    }

    /// Takes the packets marked in `out` out of the batch (kept ones stay in order): drops are
    /// counted, unresolved ones held.
    #[inline(never)]
    fn sweep(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>, out: &[Option<Miss>; BATCH_SIZE]) {
        let now = cx.now;
        let n = batch.len();
        // Rotate through the batch once: kept packets go back in order, the rest leave.
        for o in out.iter().take(n) {
            let Some(p) = batch.drain(..1).next() else { break };
            match *o {
                None => {
                    // Cannot fail: a packet was just taken out.
                    let _ = batch.push(p);
                }
                Some(Miss::Drop(r)) => {
                    drop(p);
                    cx.counters.drop_packet(r);
                }
                Some(Miss::Unresolved(hop)) => self.hold(cx, p, hop, now),
            }
        }
    }
}
