//! A gateway data shard allocates nothing per packet in steady state: both directions, on mem
//! ports, polled on this thread under the counting allocator.

use ipsec_gateway::config::{GatewayConfig, Side};
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::demo::{check, traffic};
use ipsec_gateway::gateway::{DataShard, Shared, Tables};
use wirespeed_alloc_counter::{CountingAlloc, allocations_during};
use wirespeed_core::backend::mem::{MemConfig, MemHandle, MemPort};
use wirespeed_core::{BufferPool, PoolConfig, Port, ShardCtx, Worker};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

struct Shard {
    worker: DataShard<MemPort>,
    wires: [MemHandle; 2],
    _tables: Tables,
}

fn shard(site: Site, pool: BufferPool) -> Shard {
    // One data shard; decrypt replays the same ESP packets, so no replay window.
    let text = configs::config(site, 1, None)
        .replace("direction = \"inbound\"", "direction = \"inbound\"\nreplay_window = 0");
    let cfg = GatewayConfig::from_toml(&text, None, "zero-alloc").unwrap();
    let mut tables = Tables::new(&cfg).unwrap();
    let shared = Shared::new(&cfg);
    let port = |side: Side| {
        MemPort::new(MemConfig { port_id: side.port(), queues: 2, ..MemConfig::default() }, pool)
    };
    let ((mut lan, lw), (mut wan, ww)) = (port(Side::Lan), port(Side::Wan));
    let fib = [tables.routes.subscribe(), tables.routes.subscribe()];
    let sas = [tables.sad.subscribe(), tables.sad.subscribe(), tables.sad.subscribe()];
    let learned = [tables.learned.subscribe(), tables.learned.subscribe()];
    let worker =
        DataShard::new(&shared, lan.queue_pair(0).unwrap(), wan.queue_pair(0).unwrap(), fib, learned, sas);
    Shard { worker, wires: [lw, ww], _tables: tables }
}

/// Injects `frames` on `side`, polls until they are through, frees what came out on `out`.
fn round(s: &mut Shard, cx: &mut ShardCtx, side: Side, frames: &[Vec<u8>], out: Side) -> usize {
    for f in frames {
        s.wires[side as usize].inject(0, f).unwrap();
    }
    while s.wires[side as usize].rx_pending(0) > 0 {
        s.worker.poll(cx);
    }
    let mut n = 0;
    while let Some(b) = s.wires[out as usize].take_tx(0) {
        drop(b);
        n += 1;
    }
    n
}

#[test]
fn data_shard_both_directions_allocate_nothing() {
    let pool = BufferPool::new(PoolConfig { buffers: 4096, ..PoolConfig::default() }).unwrap();
    let flows: Vec<_> = traffic::demo_flows(None).into_iter().filter(check::tunnelled).collect();
    let clear: Vec<Vec<u8>> = flows.iter().flat_map(|f| (0..4).map(move |s| traffic::frame(f, s))).collect();
    let mut a = shard(Site::A, pool);
    let mut b = shard(Site::B, pool);
    let mut cx = ShardCtx::new(0);
    // Warm up (thread caches, first epoch adoption) and collect A's ESP output for B.
    for f in &clear {
        a.wires[0].inject(0, f).unwrap();
    }
    while a.wires[0].rx_pending(0) > 0 {
        a.worker.poll(&mut cx);
    }
    let esp: Vec<Vec<u8>> = a.wires[1].drain_tx(0);
    assert_eq!(esp.len(), clear.len(), "{}", cx.counters);
    assert_eq!(round(&mut b, &mut cx, Side::Wan, &esp, Side::Lan), esp.len(), "{}", cx.counters);

    let mut through = 0;
    let allocs = allocations_during(|| {
        for _ in 0..50 {
            through += round(&mut a, &mut cx, Side::Lan, &clear, Side::Wan);
            through += round(&mut b, &mut cx, Side::Wan, &esp, Side::Lan);
        }
    });
    assert_eq!(through, 50 * (clear.len() + esp.len()), "{}", cx.counters);
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    assert_eq!(allocs, 0, "allocations in the gateway's data path");
}
