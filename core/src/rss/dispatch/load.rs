//! Per-entry load reports from a dispatcher to the control thread: two buffers circulate, so
//! reporting allocates nothing once running.

use crate::rss::rebalance::RetaLoad;
use crate::sync::{Arc, BoundedQueue};

/// Creates the channel over which a [`super::Dispatcher`] reports its [`RetaLoad`] to the control
/// thread (which merges the reports of every Rx shard and runs the
/// [`crate::rss::Rebalancer`]). `reta_size` sizes the two circulating buffers.
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
