//! [`DispatchRx`]: an owner shard's receive side — an ordinary [`RxQueue`] over the rings of
//! every Rx shard, at its end once every Rx shard closed and the rings are empty.

use super::fabric::Ring;
use crate::backend::RxQueue;
use crate::batch::Batch;
use crate::buf::PacketBuf;
use crate::sync::Arc;
use crate::sync::atomic::{AtomicBool, Ordering};

/// The receive side of an owner shard: packets dispatched to it by every Rx shard.
pub struct DispatchRx<B> {
    rings: Vec<Arc<Ring<B>>>,
    closed: Vec<Arc<AtomicBool>>,
    pending: Batch<B>,
    next: usize,
}

impl<B> DispatchRx<B> {
    pub(super) fn new(rings: Vec<Arc<Ring<B>>>, closed: Vec<Arc<AtomicBool>>) -> Self {
        Self { rings, closed, pending: Batch::new(), next: 0 }
    }
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
