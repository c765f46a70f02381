//! The `Stage` trait and its static composition.
//!
//! A pipeline is a value whose type lists its stages — `(Classify, Esp, Forward)` or
//! `Chain<A, Chain<B, C>>` — so the whole path monomorphises and inlines into one loop per batch.
//! `Box<dyn Stage<B>>` also implements `Stage` for appliances assembled from configuration at the
//! edges, at the cost of one indirect call per batch (not per packet).

use std::any::{Any, TypeId};

use crate::batch::Batch;
use crate::buf::PacketBuf;
use crate::stats::ShardCtx;
use crate::verdict::Verdict;

/// One step of packet processing, applied to a whole batch.
///
/// A stage removes the packets it drops (counting them in `cx.counters`) and leaves the rest in
/// order for the next stage. It owns its state (flow tables, SAs); nothing in it is shared.
pub trait Stage<B: PacketBuf> {
    /// Processes the batch in place.
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>);

    /// The input has ended for good (end of a capture): flush what the stage holds, tell
    /// downstream consumers. Called once, by [`crate::Pipeline`] when its Rx queue is at its end;
    /// a [`crate::rss::Dispatcher`] closes its rings here so the shards it feeds finish too.
    /// Does nothing by default.
    fn finish(&mut self, cx: &mut ShardCtx) {
        let _ = cx;
    }

    /// Packets the stage holds between batches (a stage waiting for a neighbor to resolve);
    /// 0 by default. While a pipeline's stages hold packets, [`crate::Pipeline`] does not report
    /// the end of its input: held packets leave or are dropped first.
    fn held(&self) -> usize {
        0
    }

    /// True when the stage should run although no packet arrived (held packets are due: their
    /// next hop resolved, or they timed out); [`crate::Pipeline`] asks on every empty poll and
    /// then calls [`Stage::service`]. `now` is the shard's clock ([`ShardCtx::now`]). False by
    /// default.
    fn needs_service(&mut self, now: std::time::Instant) -> bool {
        let _ = now;
        false
    }

    /// Runs the stage when [`Stage::needs_service`] said so: a stage that holds packets releases
    /// the due ones into `batch` (or drops them), any other stage processes what `batch` holds,
    /// if anything (the default). Compositions service their parts in order, so released
    /// packets run through the stages after the one that held them.
    fn service(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        if !batch.is_empty() {
            self.process(cx, batch);
        }
    }

    /// The stage of type `ty` inside `self`: `self` itself when it is of that type, else (for a
    /// composition: tuples, [`Chain`]) the first of its parts, searched in order and depth
    /// first, that is or holds one. This is what [`crate::Pipeline::stage`] and
    /// [`crate::pipeline::StageSet::get`] use to name a stage by its type instead of its
    /// position; a stage that wraps others may override it to expose them.
    fn stage_by_type(&self, ty: TypeId) -> Option<&(dyn Any + 'static)>
    where
        Self: Sized + 'static,
    {
        (TypeId::of::<Self>() == ty).then_some(self as &dyn Any)
    }

    /// [`Stage::stage_by_type`], writable.
    fn stage_by_type_mut(&mut self, ty: TypeId) -> Option<&mut (dyn Any + 'static)>
    where
        Self: Sized + 'static,
    {
        (TypeId::of::<Self>() == ty).then_some(self as &mut dyn Any)
    }
}

impl<B: PacketBuf, S: Stage<B> + ?Sized> Stage<B> for &mut S {
    #[inline(always)]
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        (**self).process(cx, batch)
    }

    fn finish(&mut self, cx: &mut ShardCtx) {
        (**self).finish(cx)
    }

    fn held(&self) -> usize {
        (**self).held()
    }

    fn needs_service(&mut self, now: std::time::Instant) -> bool {
        (**self).needs_service(now)
    }

    fn service(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        (**self).service(cx, batch)
    }
}

impl<B: PacketBuf, S: Stage<B> + ?Sized> Stage<B> for Box<S> {
    #[inline(always)]
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        (**self).process(cx, batch)
    }

    fn finish(&mut self, cx: &mut ShardCtx) {
        (**self).finish(cx)
    }

    fn held(&self) -> usize {
        (**self).held()
    }

    fn needs_service(&mut self, now: std::time::Instant) -> bool {
        (**self).needs_service(now)
    }

    fn service(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        (**self).service(cx, batch)
    }
}

/// The empty pipeline: forwards untouched.
impl<B: PacketBuf> Stage<B> for () {
    #[inline(always)]
    fn process(&mut self, _cx: &mut ShardCtx, _batch: &mut Batch<B>) {}
}

/// `A` then `B`. Nest for longer pipelines, or use tuples.
#[derive(Clone, Debug, Default)]
pub struct Chain<A, B>(pub A, pub B);

impl<P: PacketBuf, A: Stage<P>, B: Stage<P>> Stage<P> for Chain<A, B> {
    #[inline(always)]
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<P>) {
        self.0.process(cx, batch);
        if !batch.is_empty() {
            self.1.process(cx, batch);
        }
    }

    fn finish(&mut self, cx: &mut ShardCtx) {
        self.0.finish(cx);
        self.1.finish(cx);
    }

    fn held(&self) -> usize {
        self.0.held() + self.1.held()
    }

    fn needs_service(&mut self, now: std::time::Instant) -> bool {
        // Both asked: each refreshes what it needs to know.
        self.0.needs_service(now) | self.1.needs_service(now)
    }

    fn service(&mut self, cx: &mut ShardCtx, batch: &mut Batch<P>) {
        self.0.service(cx, batch);
        self.1.service(cx, batch);
    }

    fn stage_by_type(&self, ty: TypeId) -> Option<&(dyn Any + 'static)>
    where
        Self: Sized + 'static,
    {
        if TypeId::of::<Self>() == ty {
            return Some(self);
        }
        self.0.stage_by_type(ty).or_else(|| self.1.stage_by_type(ty))
    }

    fn stage_by_type_mut(&mut self, ty: TypeId) -> Option<&mut (dyn Any + 'static)>
    where
        Self: Sized + 'static,
    {
        if TypeId::of::<Self>() == ty {
            return Some(self);
        }
        if self.0.stage_by_type(ty).is_some() {
            return self.0.stage_by_type_mut(ty);
        }
        self.1.stage_by_type_mut(ty)
    }
}

macro_rules! tuple_stage {
    ($($name:ident . $idx:tt),+) => {
        /// Stages in tuple order; an emptied batch stops early.
        impl<P: PacketBuf, $($name: Stage<P>),+> Stage<P> for ($($name,)+) {
            #[inline(always)]
            fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<P>) {
                $(
                    if batch.is_empty() { return; }
                    self.$idx.process(cx, batch);
                )+
            }

            fn finish(&mut self, cx: &mut ShardCtx) {
                $( self.$idx.finish(cx); )+
            }

            fn held(&self) -> usize {
                0 $( + self.$idx.held() )+
            }

            fn needs_service(&mut self, now: std::time::Instant) -> bool {
                false $( | self.$idx.needs_service(now) )+
            }

            fn service(&mut self, cx: &mut ShardCtx, batch: &mut Batch<P>) {
                $( self.$idx.service(cx, batch); )+
            }

            fn stage_by_type(&self, ty: TypeId) -> Option<&(dyn Any + 'static)>
            where
                Self: Sized + 'static,
            {
                if TypeId::of::<Self>() == ty {
                    return Some(self);
                }
                $(
                    if let Some(s) = self.$idx.stage_by_type(ty) {
                        return Some(s);
                    }
                )+
                None
            }

            fn stage_by_type_mut(&mut self, ty: TypeId) -> Option<&mut (dyn Any + 'static)>
            where
                Self: Sized + 'static,
            {
                if TypeId::of::<Self>() == ty {
                    return Some(self);
                }
                $(
                    if self.$idx.stage_by_type(ty).is_some() {
                        return self.$idx.stage_by_type_mut(ty);
                    }
                )+
                None
            }
        }
    };
}

tuple_stage!(A.0);
tuple_stage!(A.0, B.1);
tuple_stage!(A.0, B.1, C.2);
tuple_stage!(A.0, B.1, C.2, D.3);
tuple_stage!(A.0, B.1, C.2, D.3, E.4);
tuple_stage!(A.0, B.1, C.2, D.3, E.4, F.5);
tuple_stage!(A.0, B.1, C.2, D.3, E.4, F.5, G.6);
tuple_stage!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7);

/// A stage from a per-packet closure returning a [`Verdict`].
///
/// `PerPacket` has no path to a control plane: a [`Verdict::Punt`] is dropped and counted as
/// [`crate::DropReason::Unsupported`] (nothing in this pipeline handles the packet). For a real
/// punt, write the stage with [`Batch::apply`] and a punt sink.
#[derive(Clone, Debug)]
pub struct PerPacket<F>(pub F);

impl<P: PacketBuf, F: FnMut(&mut ShardCtx, &mut P) -> Verdict> Stage<P> for PerPacket<F> {
    #[inline(always)]
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<P>) {
        batch.apply(cx, |cx, _p| cx.counters.drop_packet(crate::DropReason::Unsupported), &mut self.0);
    }
}
