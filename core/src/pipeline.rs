//! The standard shard worker: Rx burst → stages → Tx burst, one batch at a time.

use std::any::{Any, TypeId};
use std::marker::PhantomData;

use arrayvec::ArrayVec;

use crate::backend::{RxQueue, TxQueue};
use crate::batch::Batch;
use crate::buf::PacketBuf;
use crate::runtime::{IdlePolicy, Poll, Worker, WorkerReport};
use crate::stage::Stage;
use crate::stats::ShardCtx;
use crate::verdict::DropReason;

/// Most output ports one pipeline transmits on.
pub const MAX_TX_PORTS: usize = 8;

type StageReport<S> = Box<dyn FnOnce(&mut S) -> WorkerReport + Send>;

/// A pipeline's stages `S` as its report closure sees them ([`Pipeline::with_report`]): look a
/// stage up by its type with [`StageSet::get`] — which keeps working when stages are added,
/// removed or reordered — or reach the tuple itself with [`StageSet::inner`].
pub struct StageSet<'a, S, B> {
    stages: &'a mut S,
    _buf: PhantomData<fn(B)>,
}

impl<S, B> std::fmt::Debug for StageSet<'_, S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageSet").field("stages", &std::any::type_name::<S>()).finish()
    }
}

impl<'a, S: Stage<B> + 'static, B: PacketBuf> StageSet<'a, S, B> {
    /// Wraps `stages`.
    pub fn new(stages: &'a mut S) -> Self {
        Self { stages, _buf: PhantomData }
    }

    /// The first stage of type `T` (depth first through nested tuples and [`crate::Chain`]s;
    /// see [`Stage::stage_by_type`]), or `None` when the pipeline has none.
    pub fn get<T: Any>(&self) -> Option<&T> {
        <S as Stage<B>>::stage_by_type(self.stages, TypeId::of::<T>())?.downcast_ref()
    }

    /// [`StageSet::get`], writable.
    pub fn get_mut<T: Any>(&mut self) -> Option<&mut T> {
        <S as Stage<B>>::stage_by_type_mut(self.stages, TypeId::of::<T>())?.downcast_mut()
    }

    /// The stages themselves, for positional access.
    pub fn inner(&mut self) -> &mut S {
        self.stages
    }
}

/// A shard's pipeline: one Rx queue, stages `S`, and one Tx queue per output port
/// (indexed by [`crate::PacketMeta::out_port`]).
///
/// As a [`Worker`] it polls one batch at a time; at the end of its input it calls
/// [`Stage::finish`] on its stages once (a dispatcher stage then tells its receivers), and typed
/// runtime updates may address either the pipeline or its stages `S`
/// (`rt.update(shard, |stages: &mut S| ..)`); [`Pipeline::with_report`] sets what it reports when
/// its shard ends.
pub struct Pipeline<Rx: RxQueue, Tx, S> {
    rx: Rx,
    tx: ArrayVec<Tx, MAX_TX_PORTS>,
    stages: S,
    batch: Batch<Rx::Buf>,
    scratch: Batch<Rx::Buf>,
    finished: bool,
    report: Option<StageReport<S>>,
}

impl<Rx, Tx, S> Pipeline<Rx, Tx, S>
where
    Rx: RxQueue,
    Tx: TxQueue<Buf = Rx::Buf>,
    S: Stage<Rx::Buf>,
{
    /// A pipeline receiving on `rx` and transmitting on `tx` (output port 0).
    pub fn new(rx: Rx, tx: Tx, stages: S) -> Self {
        let mut txs = ArrayVec::new();
        txs.push(tx);
        Self {
            rx,
            tx: txs,
            stages,
            batch: Batch::new(),
            scratch: Batch::new(),
            finished: false,
            report: None,
        }
    }

    /// Sets the shard's report: when the shard ends, `f` runs on the shard's thread over the
    /// stages and its result is handed back by `Runtime::stop`/`wait_finished`
    /// ([`crate::runtime::ShardReport::report`]) — e.g. a custom stage's counts or state.
    ///
    /// `f` names stages by type ([`StageSet::get`]), so adding a stage does not break it. It
    /// must be `Send`, like everything a pipeline holds: a `Pipeline` is `Send` when its queues
    /// and stages are, so it can be built on one thread and moved to its shard's.
    ///
    /// ```
    /// use wirespeed_core::backend::null::{NullConfig, NullPort};
    /// use wirespeed_core::{Batch, BufferPool, PacketBuf, Pipeline, PoolConfig, Port, ShardCtx, Stage};
    ///
    /// /// Counts the packets it sees.
    /// #[derive(Default)]
    /// struct Count(u64);
    /// impl<B: PacketBuf> Stage<B> for Count {
    ///     fn process(&mut self, _cx: &mut ShardCtx, batch: &mut Batch<B>) {
    ///         self.0 += batch.len() as u64;
    ///     }
    /// }
    ///
    /// let mut port = NullPort::new(NullConfig::default(), BufferPool::new(PoolConfig::default())?);
    /// let (rx, tx) = port.queue_pair(0)?;
    /// // Wherever `Count` sits in the stages, the report finds it.
    /// let pipeline = Pipeline::new(rx, tx, ((), (Count::default(), ())))
    ///     .with_report(|stages| stages.get::<Count>().map(|c| c.0));
    /// # let _ = pipeline;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// A report closure that holds something `!Send` is refused where it is written:
    ///
    /// ```compile_fail
    /// # use wirespeed_core::backend::null::{NullConfig, NullPort};
    /// # use wirespeed_core::{BufferPool, Pipeline, PoolConfig, Port};
    /// # let mut port = NullPort::new(NullConfig::default(), BufferPool::new(PoolConfig::default()).unwrap());
    /// # let (rx, tx) = port.queue_pair(0).unwrap();
    /// let local = std::rc::Rc::new(1u32);
    /// let _ = Pipeline::new(rx, tx, ()).with_report(move |_| *local);
    /// ```
    pub fn with_report<R: Send + 'static>(
        mut self,
        f: impl FnOnce(&mut StageSet<'_, S, Rx::Buf>) -> R + Send + 'static,
    ) -> Self
    where
        S: 'static,
    {
        self.report = Some(Box::new(move |s: &mut S| WorkerReport::new(f(&mut StageSet::new(s)))));
        self
    }

    /// The first stage of type `T` (see [`StageSet::get`]).
    pub fn stage<T: Any>(&self) -> Option<&T>
    where
        S: 'static,
    {
        self.stages.stage_by_type(TypeId::of::<T>())?.downcast_ref()
    }

    /// The first stage of type `T`, writable (between batches).
    pub fn stage_mut<T: Any>(&mut self) -> Option<&mut T>
    where
        S: 'static,
    {
        self.stages.stage_by_type_mut(TypeId::of::<T>())?.downcast_mut()
    }

    /// Adds another output port; returns its index, or gives `tx` back when at [`MAX_TX_PORTS`].
    pub fn add_tx(&mut self, tx: Tx) -> Result<u16, Tx> {
        self.tx.try_push(tx).map_err(|e| e.element())?;
        Ok((self.tx.len() - 1) as u16)
    }

    /// The stages.
    pub fn stages(&self) -> &S {
        &self.stages
    }

    /// The stages, writable (between batches).
    pub fn stages_mut(&mut self) -> &mut S {
        &mut self.stages
    }

    /// Runs one batch; returns how many packets were received. When none were, stages that
    /// hold packets and ask for it ([`Stage::needs_service`]) are serviced
    /// ([`Stage::service`]) and what they release is transmitted.
    #[inline]
    pub fn run_once(&mut self, cx: &mut ShardCtx) -> usize {
        let n = self.rx.rx_burst(&mut self.batch);
        if let Some((reason, count)) = self.rx.take_drops() {
            cx.counters.drop_packets(reason, count);
        }
        if n == 0 {
            // Nothing arrived: stages holding packets release the due ones (rare; one call
            // through the stages otherwise).
            if self.stages.needs_service(cx.now) {
                self.stages.service(cx, &mut self.batch);
                self.transmit(cx);
            }
            for t in self.tx.iter_mut() {
                t.idle();
            }
            return 0;
        }
        cx.counters.rx_packets += n as u64;
        cx.counters.rx_bytes += self.batch.bytes();
        self.stages.process(cx, &mut self.batch);
        self.transmit(cx);
        n
    }

    #[inline]
    fn transmit(&mut self, cx: &mut ShardCtx) {
        transmit(&mut self.batch, &mut self.scratch, &mut self.tx, cx);
    }
}

/// Sends every packet of `batch` on the queue of its output port (`tx[out_port]`), in order per
/// port, counting what went out (`tx_packets`/`tx_bytes`), what a queue refused (`TxFull`) and
/// packets naming a port `tx` does not have (`NoRoute`); `batch` is empty afterwards. `scratch`
/// (empty) collects one port's packets when a batch leaves by several ports. This is the Tx
/// step of [`Pipeline`], for workers that run their own loop over several ports.
#[inline]
pub fn transmit<B: PacketBuf, T: TxQueue<Buf = B>>(
    batch: &mut Batch<B>,
    scratch: &mut Batch<B>,
    tx: &mut [T],
    cx: &mut ShardCtx,
) {
    let Some(first) = batch.as_slice().first().map(|p| p.out_port()) else { return };
    // The common case: the whole batch leaves by one port. An OR over every packet (no early
    // exit) is a short straight loop; mixed ports are rare.
    let mixed = batch.iter().fold(0, |any, p| any | (p.out_port() ^ first)) != 0;
    if !mixed && let Some(t) = tx.get_mut(first as usize) {
        send(t, batch, cx);
        return;
    }
    // Mixed output ports: send per port, keeping each port's packets in order.
    for (port, t) in tx.iter_mut().enumerate() {
        while let Some(i) = batch.iter().position(|p| p.out_port() as usize == port) {
            // Move the run of this port's packets starting at i.
            let mut j = i;
            while j < batch.len() && batch.as_slice()[j].out_port() as usize == port {
                j += 1;
            }
            for p in batch.drain(i..j) {
                let _ = scratch.push(p);
            }
        }
        if !scratch.is_empty() {
            send(t, scratch, cx);
        }
    }
    // Whatever is left names a port this pipeline does not have.
    let n = batch.len() as u64;
    batch.clear();
    cx.counters.drop_packets(DropReason::NoRoute, n);
}

#[inline]
fn send<B: PacketBuf, T: TxQueue<Buf = B>>(tx: &mut T, batch: &mut Batch<B>, cx: &mut ShardCtx) {
    let bytes = batch.bytes();
    let want = batch.len();
    let sent = tx.tx_burst(batch);
    cx.counters.tx_packets += sent as u64;
    if sent == want {
        cx.counters.tx_bytes += bytes;
    } else {
        cx.counters.tx_bytes += bytes - batch.bytes();
        cx.counters.drop_packets(DropReason::TxFull, batch.len() as u64);
        batch.clear();
    }
}

impl<Rx, Tx, S> Worker for Pipeline<Rx, Tx, S>
where
    Rx: RxQueue + 'static,
    Tx: TxQueue<Buf = Rx::Buf> + 'static,
    S: Stage<Rx::Buf> + 'static,
{
    #[inline]
    fn poll(&mut self, cx: &mut ShardCtx) -> Poll {
        match self.run_once(cx) {
            0 if self.rx.at_end() && self.stages.held() == 0 => {
                if !self.finished {
                    // End of input reaches every stage once (a dispatcher closes its rings).
                    self.finished = true;
                    self.stages.finish(cx);
                }
                Poll::Finished
            }
            0 => Poll::Idle,
            n => Poll::Busy(n),
        }
    }

    fn inner(&mut self) -> Option<&mut dyn Any> {
        Some(&mut self.stages)
    }

    fn set_idle_policy(&mut self, policy: IdlePolicy) {
        self.rx.set_idle_policy(policy);
    }

    /// Waits on the Rx queue; while a Tx queue holds a backlog the device pushed back, moves
    /// it on first and waits at most [`crate::backend::TX_BACKLOG_WAIT`].
    fn wait(&mut self, timeout: std::time::Duration) -> bool {
        let timeout = crate::backend::backlog_timeout(&mut self.tx, timeout);
        self.rx.wait(timeout)
    }

    fn report(&mut self) -> Option<WorkerReport> {
        let f = self.report.take()?;
        Some(f(&mut self.stages))
    }

    fn drain(&mut self, cx: &mut ShardCtx) {
        // A stop ends the input too: stages that hold packets account for them (a stage waiting
        // for a neighbor counts them as `shutdown`), a dispatcher closes its rings.
        if !self.finished {
            self.finished = true;
            self.stages.finish(cx);
        }
        // Anything still held between stages goes out; then queues flush their buffers.
        self.transmit(cx);
        for t in self.tx.iter_mut() {
            t.flush();
        }
    }
}

// Compile-time check: a `Pipeline` over `Send` queues and stages is `Send`, report included
// (the report closure is boxed as `Send`), so it can be built on one thread and run on another.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    type Stages = (crate::stage::PerPacket<fn(&mut ShardCtx, &mut crate::PoolBuf) -> crate::Verdict>, ());
    assert_send::<Pipeline<crate::backend::null::NullRx, crate::backend::null::NullTx, Stages>>();
};
