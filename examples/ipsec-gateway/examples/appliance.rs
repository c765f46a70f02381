//! The README's "Build your own appliance": one shard of the gateway's LAN → WAN path, composed
//! by hand from core (pool, backend, pipeline, runtime, epoch tables) and stages (classify,
//! punt, forward, ESP), on the mem backend. `tests/readme.rs` keeps the README's copy identical.
// README-BEGIN
use ipsec_gateway::config::GatewayConfig;
use ipsec_gateway::gateway::{Shared, Tables};
use wirespeed_core::backend::mem::{MemConfig, MemPort};
use wirespeed_core::{BufferPool, Pipeline, PoolConfig, Port, Runtime, RuntimeConfig};

fn main() -> Result<(), ipsec_gateway::app::Report> {
    // Configuration: TOML, checked up front; its routes and SAs become epoch-published tables.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = GatewayConfig::load(&dir.join("configs/mem.toml"))?;
    let mut tables = Tables::new(&cfg)?;
    let shared = Shared::new(&cfg); // classifier view, port MACs, punt and SA-event queues
    // A backend: two ports; shard 0 owns queue pair 0 of each.
    let pool = BufferPool::new(PoolConfig::default())?;
    let port = |id: u16| MemPort::new(MemConfig { port_id: id, queues: 3, ..MemConfig::default() }, pool);
    let ((mut lan, lan_wire), (mut wan, wan_wire)) = (port(0), port(1));
    let (lan_rx, lan_tx) = lan.queue_pair(0)?;
    let (_, wan_tx) = wan.queue_pair(0)?;
    // Stages: classify → punt → forward → ESP encrypt, one static tuple, built on the shard's
    // own thread; the forward stage's output port picks the Tx queue (0 LAN, 1 WAN).
    let (fib, learned, sas) = (tables.routes.subscribe(), tables.learned.subscribe(), tables.sad.subscribe());
    let rt = Runtime::builder(RuntimeConfig::default())
        .shard(move |_| {
            let mut pipeline = Pipeline::new(lan_rx, lan_tx, shared.outbound(fib, learned, sas));
            pipeline.add_tx(wan_tx).map(|_| pipeline).map_err(|_| "too many ports")
        })
        .launch()?;
    // A site-1 → site-2 packet in on the LAN comes out of the WAN as ESP.
    let flow = &ipsec_gateway::demo::traffic::demo_flows(None)[0];
    lan_wire.inject(0, &ipsec_gateway::demo::traffic::frame(flow, 0))?;
    let esp = loop {
        if let Some(f) = wan_wire.drain_tx(0).pop() {
            break f;
        }
        std::thread::yield_now();
    };
    assert_eq!(esp[23], 50, "IP protocol 50: ESP");
    rt.stop()?;
    tables.sad.reclaim();
    Ok(())
}
// README-END
