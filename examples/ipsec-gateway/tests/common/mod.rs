//! The mem-backend rig shared by the end-to-end tests: a gateway built from the demo's
//! configuration text, frames injected where the steering plan puts them, outputs collected.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use ipsec_gateway::config::{GatewayConfig, Side};
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::demo::traffic;
use ipsec_gateway::gateway::{self, Gateway, GatewayPorts, RunMode, Steering, queues_per_port};
use wirespeed_core::backend::mem::{MemConfig, MemHandle, MemPort};
use wirespeed_core::{BufferPool, PoolConfig, ShardCounters};

pub const SHARDS: usize = 2;
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x10, 0x01];

pub struct Rig {
    pub cfg: GatewayConfig,
    pub gw: Option<Gateway>,
    pub ports: [MemHandle; 2],
    pub steering: Steering,
    pub injected: u64,
}

impl Rig {
    pub fn start(site: Site) -> Self {
        Self::start_with(&configs::config(site, SHARDS, None))
    }

    /// A gateway from configuration text (mem ports).
    pub fn start_with(text: &str) -> Self {
        Self::start_with_pool(text, PoolConfig { buffers: 16384, ..PoolConfig::default() })
    }

    /// A gateway from configuration text on mem ports whose buffers come from a pool `pool`
    /// (its data room is the ports' largest frame).
    pub fn start_with_pool(text: &str, pool: PoolConfig) -> Self {
        let cfg = GatewayConfig::from_toml(text, None, "test").expect("generated config is valid");
        let pool = BufferPool::new(pool).unwrap();
        let q = queues_per_port(&cfg);
        let mem = |side: Side, mac| MemConfig {
            name: side.name().into(),
            port_id: side.port(),
            queues: q,
            ring_size: 4096,
            mac,
        };
        let (lan, lh) = MemPort::new(mem(Side::Lan, cfg.lan.mac), pool);
        let (wan, wh) = MemPort::new(mem(Side::Wan, cfg.wan.mac), pool);
        let gw = gateway::build(&cfg, GatewayPorts { lan, wan }, pool, RunMode::UntilStopped)
            .expect("gateway starts");
        let steering = Steering::new(&cfg).unwrap();
        Self { cfg, gw: Some(gw), ports: [lh, wh], steering, injected: 0 }
    }

    pub fn gw(&self) -> &Gateway {
        self.gw.as_ref().expect("running")
    }

    pub fn gw_mut(&mut self) -> &mut Gateway {
        self.gw.as_mut().expect("running")
    }

    /// Injects `frame` on `side` where the steering plan puts it.
    pub fn send(&mut self, side: Side, frame: &[u8]) {
        let q = self.steering.queue(frame).unwrap_or(self.steering.management_queue());
        self.ports[side as usize].inject(q, frame).expect("inject");
        self.injected += 1;
    }

    /// Waits until the shards have received everything injected and published it.
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let rx: u64 = self.gw().stats().iter().map(|s| s.counters.rx_packets).sum();
            if rx >= self.injected {
                // One more round so the last batch's Tx and counters are published.
                std::thread::sleep(Duration::from_millis(30));
                return;
            }
            assert!(Instant::now() < deadline, "shards received {rx} of {} frames", self.injected);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Everything transmitted on `side`, queue by queue (order kept per queue, hence per flow).
    pub fn take(&self, side: Side) -> Vec<Vec<u8>> {
        (0..queues_per_port(&self.cfg)).flat_map(|q| self.ports[side as usize].drain_tx(q)).collect()
    }

    pub fn totals(&self) -> ShardCounters {
        let mut t = ShardCounters::default();
        for s in self.gw().stats() {
            t.accumulate(&s.counters);
        }
        t
    }

    pub fn stop(mut self) -> ShardCounters {
        let stats = self.gw.take().unwrap().stop().expect("clean stop");
        let mut t = ShardCounters::default();
        for s in &stats {
            t.accumulate(&s.counters);
        }
        t
    }
}

/// The demo traffic through A; returns the flows and A's ESP output.
pub fn through_a() -> (Vec<traffic::Flow>, Vec<Vec<u8>>, ShardCounters) {
    let flows = traffic::demo_flows(None);
    let mut a = Rig::start(Site::A);
    let longest = flows.iter().map(|f| f.packets).max().unwrap();
    for seq in 0..longest {
        for f in flows.iter().filter(|f| seq < f.packets) {
            a.send(Side::Lan, &traffic::frame(f, seq as u32));
        }
    }
    a.settle();
    let esp = a.take(Side::Wan);
    assert!(a.take(Side::Lan).is_empty(), "nothing goes back to A's LAN");
    let totals = a.stop();
    (flows, esp, totals)
}
