//! [`DispatchFabric`]: one bounded ring of batches per (Rx shard → owner shard) pair, and the
//! end-of-input flags of the Rx shards.

use super::dispatcher::Dispatcher;
use super::engine::SteeringEngine;
use super::receiver::DispatchRx;
use crate::batch::Batch;
use crate::buf::PacketBuf;
use crate::epoch::Subscriber;
use crate::rss::RssError;
use crate::rss::reta::Reta;
use crate::stats::ShardId;
use crate::sync::atomic::AtomicBool;
use crate::sync::{Arc, BoundedQueue};

/// A ring of whole batches from one Rx shard to one owner.
pub(super) type Ring<B> = BoundedQueue<Batch<B>>;

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
        Ok(Dispatcher::new(engine, reta, rings, keep_local, self.closed[rx].clone()))
    }

    /// [`DispatchFabric::dispatcher`] for a RETA fixed for the whole run: `engine`'s default
    /// RETA ([`SteeringEngine::default_reta`]), with no [`crate::epoch::Publisher`] to keep.
    ///
    /// ```
    /// use wirespeed_core::rss::{DispatchFabric, RssConfig, SteeringEngine};
    /// let fabric = DispatchFabric::<wirespeed_core::PoolBuf>::new(1, 2, 64)?;
    /// let engine = SteeringEngine::rss_only(&RssConfig::default(), 2)?;
    /// let dispatcher = fabric.fixed_dispatcher(0, engine, Some(0))?;
    /// # let _ = (dispatcher, fabric.receiver(1)?);
    /// assert!(fabric.fixed_dispatcher(1, SteeringEngine::rss_only(&RssConfig::default(), 2)?, None).is_err());
    /// # Ok::<(), wirespeed_core::rss::RssError>(())
    /// ```
    pub fn fixed_dispatcher(
        &self,
        rx: usize,
        engine: SteeringEngine,
        keep_local: Option<ShardId>,
    ) -> Result<Dispatcher<B>, RssError> {
        let reta = Subscriber::fixed(engine.default_reta()?);
        self.dispatcher(rx, Arc::new(engine), reta, keep_local)
    }

    /// The receive side of owner shard `shard`.
    pub fn receiver(&self, shard: ShardId) -> Result<DispatchRx<B>, RssError> {
        if shard >= self.shards {
            return Err(RssError::BadConfig(format!("shard {shard} of {}", self.shards)));
        }
        let rings = (0..self.rx_shards).map(|r| self.rings[r * self.shards + shard].clone()).collect();
        Ok(DispatchRx::new(rings, self.closed.clone()))
    }
}
