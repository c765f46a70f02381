//! Fixed-capacity packet batches: the unit every stage and queue works on.

use arrayvec::ArrayVec;

use crate::buf::PacketBuf;
use crate::stats::ShardCtx;
use crate::verdict::{DropReason, Verdict};

/// Default batch size: 32 packets, like DPDK's usual burst.
pub const BATCH_SIZE: usize = 32;

/// Up to `N` packets, stored inline (no heap). Created once per shard and reused for every burst.
pub struct Batch<B, const N: usize = BATCH_SIZE> {
    pkts: ArrayVec<B, N>,
}

impl<B, const N: usize> Default for Batch<B, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: std::fmt::Debug, const N: usize> std::fmt::Debug for Batch<B, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.pkts.iter()).finish()
    }
}

impl<B, const N: usize> Batch<B, N> {
    /// An empty batch.
    #[inline]
    pub const fn new() -> Self {
        Self { pkts: ArrayVec::new_const() }
    }

    /// Capacity `N`.
    #[inline]
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Packets held.
    #[inline]
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// True when full.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.pkts.is_full()
    }

    /// Free slots.
    #[inline]
    pub fn remaining(&self) -> usize {
        N - self.pkts.len()
    }

    /// Appends a packet, or gives it back when the batch is full.
    #[inline]
    pub fn push(&mut self, pkt: B) -> Result<(), B> {
        self.pkts.try_push(pkt).map_err(|e| e.element())
    }

    /// The packets as the underlying array vector, for in-crate code that fills a batch in place.
    #[inline]
    pub(crate) fn inner_mut(&mut self) -> &mut ArrayVec<B, N> {
        &mut self.pkts
    }

    /// Removes the last packet.
    #[inline]
    pub fn pop(&mut self) -> Option<B> {
        self.pkts.pop()
    }

    /// Drops every packet.
    #[inline]
    pub fn clear(&mut self) {
        self.pkts.clear()
    }

    /// The packets.
    #[inline]
    pub fn as_slice(&self) -> &[B] {
        &self.pkts
    }

    /// The packets, writable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [B] {
        &mut self.pkts
    }

    /// Iterates the packets.
    #[inline]
    pub fn iter(&self) -> std::slice::Iter<'_, B> {
        self.pkts.iter()
    }

    /// Iterates the packets, writable.
    #[inline]
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, B> {
        self.pkts.iter_mut()
    }

    /// Removes and yields the packets in `range`.
    #[inline]
    pub fn drain<R: std::ops::RangeBounds<usize>>(&mut self, range: R) -> arrayvec::Drain<'_, B, N> {
        self.pkts.drain(range)
    }

    /// Keeps the packets for which `keep` returns true (order preserved).
    #[inline]
    pub fn retain(&mut self, keep: impl FnMut(&mut B) -> bool) {
        self.pkts.retain(keep)
    }

    /// Moves packets out of the front of `self` into `other` while it has room; returns how many.
    #[inline]
    pub fn move_into<const M: usize>(&mut self, other: &mut Batch<B, M>) -> usize {
        let n = self.len().min(other.remaining());
        for p in self.pkts.drain(..n) {
            // Cannot fail: n is bounded by other's free room.
            let _ = other.push(p);
        }
        n
    }
}

impl<B: PacketBuf, const N: usize> Batch<B, N> {
    /// Applies a per-packet decision: `Continue` keeps the packet, `Forward` keeps it and sets its
    /// output port, `Drop` frees it and counts the reason in `cx`, `Punt` hands it to `punt`.
    ///
    /// This is the helper most stages are written with; order of kept packets is preserved.
    #[inline]
    pub fn apply(
        &mut self,
        cx: &mut ShardCtx,
        mut punt: impl FnMut(&mut ShardCtx, B),
        mut decide: impl FnMut(&mut ShardCtx, &mut B) -> Verdict,
    ) {
        // Fast path: nothing leaves the batch (the common case for transit traffic).
        let mut first_out = None;
        for (i, p) in self.pkts.iter_mut().enumerate() {
            match decide(cx, p) {
                Verdict::Continue => {}
                Verdict::Forward { port } => p.meta_mut().out_port = port,
                v => {
                    first_out = Some((i, v));
                    break;
                }
            }
        }
        let Some((start, first)) = first_out else { return };
        // Slow path: compact the tail in place, deciding the rest as we go.
        let mut rest: ArrayVec<B, N> = self.pkts.drain(start..).collect();
        let mut pending = Some(first);
        for mut p in rest.drain(..) {
            let v = match pending.take() {
                Some(v) => v,
                None => decide(cx, &mut p),
            };
            match v {
                Verdict::Continue => self.pkts.push(p),
                Verdict::Forward { port } => {
                    p.meta_mut().out_port = port;
                    self.pkts.push(p);
                }
                Verdict::Drop(reason) => cx.counters.drop_packet(reason),
                Verdict::Punt => punt(cx, p),
            }
        }
    }

    /// Like [`Batch::apply`] for stages that only keep or drop.
    #[inline]
    pub fn keep_or_drop(
        &mut self,
        cx: &mut ShardCtx,
        mut check: impl FnMut(&mut B) -> Result<(), DropReason>,
    ) {
        self.apply(
            cx,
            |cx, _| cx.counters.drop_packet(DropReason::Unsupported),
            |_, p| match check(p) {
                Ok(()) => Verdict::Continue,
                Err(r) => Verdict::Drop(r),
            },
        )
    }

    /// Removes the packets whose slot in `drops` holds a reason, counting each under it; the
    /// kept packets stay in order. Slot `i` is packet `i`.
    ///
    /// The companion of a mark-then-sweep stage loop: decide every packet in a plain loop (which
    /// the compiler inlines whole), record drops in a stack array, and call this only when
    /// something was marked (rare on the fast path).
    ///
    /// ```
    /// use wirespeed_core::backend::null::udp4_frame;
    /// use wirespeed_core::{BATCH_SIZE, Batch, BufferPool, DropReason, PacketBuf, PoolConfig, ShardCtx};
    ///
    /// let pool = BufferPool::new(PoolConfig::default())?;
    /// let mut batch = Batch::new();
    /// for _ in 0..3 {
    ///     let mut p = pool.alloc().expect("a buffer");
    ///     p.copy_from(&udp4_frame(64))?;
    ///     batch.push(p).ok();
    /// }
    /// let mut drops = [None; BATCH_SIZE];
    /// drops[1] = Some(DropReason::TtlExpired);
    /// let mut cx = ShardCtx::new(0);
    /// batch.remove_marked(&mut cx, &drops);
    /// assert_eq!(batch.len(), 2);
    /// assert_eq!(cx.counters.drops_of(DropReason::TtlExpired), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline(never)]
    pub fn remove_marked(&mut self, cx: &mut ShardCtx, drops: &[Option<DropReason>; N]) {
        let mut i = 0;
        // `retain` visits every packet once, in order.
        self.pkts.retain(|_| {
            let d = drops[i];
            i += 1;
            match d {
                Some(r) => {
                    cx.counters.drop_packet(r);
                    false
                }
                None => true,
            }
        });
    }

    /// Total bytes in the batch.
    #[inline]
    pub fn bytes(&self) -> u64 {
        self.pkts.iter().map(|p| p.len() as u64).sum()
    }
}

impl<'a, B, const N: usize> IntoIterator for &'a Batch<B, N> {
    type Item = &'a B;
    type IntoIter = std::slice::Iter<'a, B>;
    fn into_iter(self) -> Self::IntoIter {
        self.pkts.iter()
    }
}

impl<'a, B, const N: usize> IntoIterator for &'a mut Batch<B, N> {
    type Item = &'a mut B;
    type IntoIter = std::slice::IterMut<'a, B>;
    fn into_iter(self) -> Self::IntoIter {
        self.pkts.iter_mut()
    }
}
