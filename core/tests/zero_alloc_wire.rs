//! Zero heap allocations for an appliance-defined stage built the recommended way: headers read
//! through `wirespeed_core::wire` views, drops under a custom `DropReason` registered at start-up,
//! removed with `Batch::remove_marked`. After warm-up, 10 000 batches on the `null` backend
//! allocate nothing, and every drop is counted under the custom reason.

use wirespeed_core::backend::null::{NullConfig, NullPort};
use wirespeed_core::wire::{ETHERTYPE_IPV4, EthernetFrame, Ipv4Packet, UdpPacket, ip_proto};
use wirespeed_core::{
    BATCH_SIZE, Batch, BufferPool, DropReason, PacketBuf, Pipeline, PoolConfig, Port, ShardCtx, Stage,
};

use wirespeed_alloc_counter::{CountingAlloc, allocations_during};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const BATCHES: usize = 10_000;

/// Drops every other UDP datagram to `port` (alternating, so the batch is compacted each time).
struct Firewall {
    port: u16,
    reason: DropReason,
    flip: bool,
}

impl<B: PacketBuf> Stage<B> for Firewall {
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        let mut drops = [None; BATCH_SIZE];
        for (p, d) in batch.iter_mut().zip(drops.iter_mut()) {
            let Ok(eth) = EthernetFrame::new_checked(p.data()) else {
                *d = Some(DropReason::Truncated);
                continue;
            };
            if eth.ethertype() != ETHERTYPE_IPV4 {
                continue;
            }
            let verdict = Ipv4Packet::new_checked(eth.payload())
                .and_then(|ip| {
                    let udp = ip.protocol() == ip_proto::UDP;
                    UdpPacket::new_checked(ip.payload()).map(|u| udp && u.dst_port() == self.port)
                })
                .map_err(DropReason::from);
            match verdict {
                Ok(true) => {
                    self.flip = !self.flip;
                    if self.flip {
                        *d = Some(self.reason);
                    }
                }
                Ok(false) => {}
                Err(r) => *d = Some(r),
            }
        }
        if drops.iter().any(Option::is_some) {
            batch.remove_marked(cx, &drops);
        }
    }
}

#[test]
fn custom_drops_through_wire_views_allocate_nothing() {
    let reason = DropReason::register("zero_alloc_firewall").unwrap();
    let pool = BufferPool::new(PoolConfig::default()).unwrap();
    let mut port = NullPort::new(NullConfig { copy: true, ..NullConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    // The null port's frame is UDP 1024 → 2048.
    let mut pipeline = Pipeline::new(rx, tx, Firewall { port: 2048, reason, flip: false });
    let mut cx = ShardCtx::new(0);
    for _ in 0..100 {
        pipeline.run_once(&mut cx);
    }
    let allocs = allocations_during(|| {
        for _ in 0..BATCHES {
            pipeline.run_once(&mut cx);
        }
    });
    assert_eq!(allocs, 0, "allocations on the hot path");
    let total = (BATCHES as u64 + 100) * 32;
    assert_eq!(cx.counters.drops_of(reason), total / 2);
    assert_eq!(cx.counters.tx_packets, total / 2);
    assert_eq!(cx.counters.total_drops(), total / 2, "no other reason counted");
}
