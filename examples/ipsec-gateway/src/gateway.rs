//! The appliance's wiring: [`build`] turns a [`GatewayConfig`] and two ports (LAN and WAN, any
//! backend) into running shards.
//!
//! ```text
//!  data shard i (one per RSS queue i of both ports):
//!    LAN rx i ─► Classify ─► Punt ─► Forward ─► EspEncrypt (SPD → this shard's SA) ─┐
//!    WAN rx i ─► Classify ─► Reassemble (outer IP fragments to us)   ─► Punt ─►      ├─► LAN tx i / WAN tx i
//!                CleartextGuard ─► EspDecrypt (SA by SPI, inbound selector check)    │   (by output port)
//!                ─► Forward ─────────────────────────────────────────────────────────┘
//!  control shard (queue `shards` of both ports, the steering plan's management queue):
//!    mgmt rx ─► Classify ─► Punt ─► smoltcp ControlPlane per interface (ARP, ND, ping,
//!    HTTP /metrics on the management interface) ─► mgmt tx
//!           └─► data traffic (a NIC that cannot steer) ─► hand-off queue of the data shard
//!               the software RSS picks
//! ```
//!
//! The forward stages are [`Resolving`]: a next hop on a connected subnet without a static
//! neighbor is resolved by the control shard (ARP / Neighbor Solicitation), learned neighbors
//! are published to the shards by epoch, and packets wait in a bounded per-shard queue
//! meanwhile. With `[icmp] errors` (the default) TTL expiry, missing routes and packets too big
//! for their tunnel are answered with ICMP errors.
//!
//! Routes and SAs are read-mostly tables published by epoch from the [`Gateway`] handle, so
//! [`Gateway::publish_routes`] / [`Gateway::publish_sas`] change them under running shards.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use wirespeed_core::epoch::{Publisher, Subscriber};
use wirespeed_core::pipeline::transmit;
use wirespeed_core::rss::{Reta, RssHasher, SteeringEngine};
use wirespeed_core::runtime::{IdlePolicy, UpdateError};
use wirespeed_core::sync::BoundedQueue;
use wirespeed_core::{
    Batch, BufferPool, DropReason, FlowClass, LoopOptions, PacketBuf, Pinning, Poll, PoolBuf, Port, Runtime,
    RuntimeConfig, RxQueue, ShardCounters, ShardCtx, ShardId, ShardStats, Stage, TxQueue, Verdict, Worker,
};
use wirespeed_stages::classify::Classify;
use wirespeed_stages::control::{ControlConfig, ControlPlane, Punt, PuntQueue, TxAlloc, punt_queue};
use wirespeed_stages::esp::wire::{IpHeader, ethernet_l3_offset};
use wirespeed_stages::esp::{
    EspDecrypt, EspEncrypt, EventQueue, FlowKey, OutboundDecision, SaConfig, SaEvent, SaSet,
    SecurityAssociation, Spd, event_queue,
};
use wirespeed_stages::forward::{
    Fib, FibBuilder, Forward, HoldConfig, HoldCounters, Neighbors, NextHop, ResolveQueue, Resolving,
    resolve_queue,
};
use wirespeed_stages::icmp::{IcmpConfig, IcmpErrors};
use wirespeed_stages::reasm::{ReasmConfig, Reassemble};

use crate::config::{GatewayConfig, Side};
use crate::stagestats::{StageCell, StageCounters};

/// Why a gateway could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The routes do not make a FIB.
    #[error("routes: {0}")]
    Routes(String),
    /// The SAs and policies do not make a SAD.
    #[error("SAD: {0}")]
    Sad(String),
    /// A port could not hand out its queues.
    #[error("port: {0}")]
    Port(String),
    /// RSS / steering.
    #[error("steering: {0}")]
    Steering(String),
    /// The shards.
    #[error(transparent)]
    Runtime(#[from] wirespeed_core::RuntimeError),
}

/// The two ports of a gateway (any backend: pcap and mem through [`build`], AF_XDP and DPDK
/// through [`build_with`]).
#[derive(Debug)]
pub struct GatewayPorts<P> {
    /// Protected side.
    pub lan: P,
    /// Untrusted side.
    pub wan: P,
}

/// How the shards end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Offline captures: every shard exits once its inputs are exhausted.
    UntilInputEnds,
    /// Live ports: run until [`Gateway::stop`].
    UntilStopped,
}

/// Queues each port needs: one per data shard plus the management queue.
pub fn queues_per_port(cfg: &GatewayConfig) -> u16 {
    cfg.shards as u16 + 1
}

/// The steering decision of the gateway's ports (what a NIC with this RSS configuration and
/// steering plan computes in hardware; what the pcap port and tests use in software).
#[derive(Debug)]
pub struct Steering {
    engine: SteeringEngine,
    reta: Reta,
}

impl Steering {
    /// The engine of `cfg`.
    pub fn new(cfg: &GatewayConfig) -> Result<Self, BuildError> {
        let err = |e: wirespeed_core::rss::RssError| BuildError::Steering(e.to_string());
        let hasher = RssHasher::new(&cfg.rss).map_err(err)?;
        let engine = SteeringEngine::new(hasher, cfg.steering.clone(), queues_per_port(cfg)).map_err(err)?;
        let reta = engine.default_reta().map_err(err)?;
        Ok(Self { engine, reta })
    }

    /// The indirection table (what the ports program into the NIC).
    pub fn reta(&self) -> &Reta {
        &self.reta
    }

    /// The management queue (the last one).
    pub fn management_queue(&self) -> u16 {
        self.engine.queues() - 1
    }

    /// Queue of `frame` (`None`: the plan drops it).
    pub fn queue(&self, frame: &[u8]) -> Option<u16> {
        self.engine.decide_frame(frame, &self.reta).queue()
    }
}

/// Frames the plan drops go to the management queue, where the control shard counts them.
impl wirespeed_core::rss::Steer for Steering {
    fn queue(&self, frame: &[u8]) -> Option<u16> {
        Some(Steering::queue(self, frame).unwrap_or(self.management_queue()))
    }
}

/// The FIB of a configuration.
pub fn fib_builder(cfg: &GatewayConfig) -> Result<FibBuilder, BuildError> {
    let mut b = FibBuilder::new();
    for r in &cfg.routes {
        let via = r.via.map_or(NextHop::Direct, NextHop::Gateway);
        b.route(r.prefix.addr, r.prefix.len, via).map_err(|e| BuildError::Routes(e.to_string()))?;
    }
    for n in &cfg.neighbors {
        b.neighbor(n.ip, n.mac, n.side.port());
    }
    Ok(b)
}

/// The SA table and SPD of a configuration.
pub fn sad(cfg: &GatewayConfig) -> Result<(Vec<Arc<SecurityAssociation>>, Spd), BuildError> {
    let sas = cfg
        .sas
        .iter()
        .map(|c| SecurityAssociation::new(c).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BuildError::Sad(e.to_string()))?;
    let spd = Spd::new(cfg.policies.iter().map(|p| p.policy.clone()).collect());
    Ok((sas, spd))
}

/// What every data shard's stages share: the classifier's view of the appliance, the output
/// ports' MACs, the punt queues to the control plane (LAN, WAN) and the SA event queue.
pub struct Shared<B: PacketBuf = PoolBuf> {
    /// Own addresses and management port, for [`Classify`].
    pub classify: wirespeed_stages::classify::ClassifyConfig,
    /// Source MAC per output port ([`Side::port`]).
    pub macs: [[u8; 6]; 2],
    /// Punt queue per side.
    pub punts: [PuntQueue<B>; 2],
    /// SA lifetime events.
    pub events: EventQueue,
    /// Next hops the data shards want resolved (read by the control shard).
    pub resolve: ResolveQueue,
    /// How data shards hold packets while their next hop is resolved.
    pub hold: HoldConfig,
    /// Per data shard, per side: data traffic the NIC put on the management queue, handed
    /// from the control shard to the data shard the software RSS picks.
    pub handoff: Vec<[PuntQueue<B>; 2]>,
    /// Per data shard: protected packets another data shard received whose outbound SA this
    /// shard owns, handed here to be encrypted (`EspEncrypt::with_handoff`,
    /// [`DataShard::with_seal_handoff`]).
    pub seal: Vec<PuntQueue<B>>,
    /// ICMP errors (sources and MACs per port, rate), when enabled.
    pub icmp: Option<IcmpConfig>,
    /// Where each shard (data shards, then the control shard) publishes its stage counters.
    pub stage_cells: Vec<Arc<StageCell>>,
    /// Outer IPv4 and IPv6 reassembly before decryption (`None`: off).
    pub reassembly: Option<ReasmConfig>,
    /// ESP packets with an unknown SPI held by each shard's `EspDecrypt`, and for how long
    /// (`None`: dropped at once).
    pub unknown_spi_hold: Option<(usize, std::time::Duration)>,
}

// By hand: the derives would ask `B: Clone + Debug`, which buffers are not.
impl<B: PacketBuf> Clone for Shared<B> {
    fn clone(&self) -> Self {
        Self {
            classify: self.classify.clone(),
            macs: self.macs,
            punts: self.punts.clone(),
            events: self.events.clone(),
            resolve: self.resolve.clone(),
            hold: self.hold,
            handoff: self.handoff.clone(),
            seal: self.seal.clone(),
            icmp: self.icmp.clone(),
            stage_cells: self.stage_cells.clone(),
            reassembly: self.reassembly,
            unknown_spi_hold: self.unknown_spi_hold,
        }
    }
}

impl<B: PacketBuf> std::fmt::Debug for Shared<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("classify", &self.classify)
            .field("macs", &self.macs)
            .finish_non_exhaustive()
    }
}

impl<B: PacketBuf> Shared<B> {
    /// The shared pieces of `cfg`.
    pub fn new(cfg: &GatewayConfig) -> Self {
        let mut classify = wirespeed_stages::classify::ClassifyConfig {
            management_tcp_port: cfg.management.http_port,
            ..Default::default()
        };
        for a in cfg.own_addresses() {
            match a {
                IpAddr::V4(v) => classify.own_ipv4.push(v),
                IpAddr::V6(v) => classify.own_ipv6.push(v),
            }
        }
        Self {
            classify,
            macs: [cfg.lan.mac, cfg.wan.mac],
            punts: [punt_queue(1024), punt_queue(1024)],
            events: event_queue(256),
            resolve: resolve_queue(256),
            hold: HoldConfig::default(),
            handoff: (0..cfg.shards)
                .map(|_| [punt_queue(HANDOFF_CAPACITY), punt_queue(HANDOFF_CAPACITY)])
                .collect(),
            seal: (0..cfg.shards).map(|_| punt_queue(HANDOFF_CAPACITY)).collect(),
            icmp: cfg.icmp_rate.map(|rate| IcmpConfig {
                // Errors leave from the interface's first address of each family.
                sources: [&cfg.lan, &cfg.wan]
                    .into_iter()
                    .map(|itf| {
                        let v4 = itf.addresses.iter().find_map(|(a, _)| match a {
                            IpAddr::V4(v) => Some(*v),
                            IpAddr::V6(_) => None,
                        });
                        let v6 = itf.addresses.iter().find_map(|(a, _)| match a {
                            IpAddr::V6(v) => Some(*v),
                            IpAddr::V4(_) => None,
                        });
                        (v4, v6)
                    })
                    .collect(),
                macs: vec![cfg.lan.mac, cfg.wan.mac],
                rate,
            }),
            stage_cells: (0..=cfg.shards).map(|_| Arc::new(StageCell::new())).collect(),
            reassembly: cfg.reassembly,
            unknown_spi_hold: cfg.unknown_spi_hold,
        }
    }

    fn forward(&self, fib: Subscriber<Fib>, learned: Subscriber<Neighbors>) -> Resolving<B> {
        let mut fwd = Forward::new(fib, &self.macs).with_neighbors(learned);
        if let Some(icmp) = &self.icmp {
            fwd = fwd.with_icmp_errors(IcmpErrors::new(icmp));
        }
        Resolving::new(fwd, self.resolve.clone(), self.hold)
    }

    /// The LAN → WAN path of one shard: classify, punt, route (static then learned
    /// neighbors, holding packets while a next hop is resolved), SPD + encrypt.
    pub fn outbound(
        &self,
        fib: Subscriber<Fib>,
        learned: Subscriber<Neighbors>,
        sas: Subscriber<SaSet>,
    ) -> Outbound<B> {
        (
            Classify::new(self.classify.clone()),
            Punt::new(self.punts[Side::Lan as usize].clone()),
            self.forward(fib, learned),
            EspEncrypt::new(sas).with_events(self.events.clone()),
        )
    }

    /// The WAN → LAN path of one shard: classify, reassemble (outer IP fragments of ESP and
    /// UDP to the gateway), punt, cleartext guard, decrypt (SA by SPI, inbound selector check),
    /// route.
    pub fn inbound(
        &self,
        fib: Subscriber<Fib>,
        learned: Subscriber<Neighbors>,
        decrypt: Subscriber<SaSet>,
        guard: Subscriber<SaSet>,
    ) -> Inbound<B> {
        let mut decrypt = EspDecrypt::new(decrypt).with_events(self.events.clone());
        if let Some((packets, wait)) = self.unknown_spi_hold {
            decrypt = decrypt.with_unknown_spi_hold(packets, wait);
        }
        let reasm = match self.reassembly {
            // The configuration was validated: a refusal here cannot happen, and would only
            // turn reassembly off.
            Some(r) => Reassemble::new(self.classify.clone(), r).unwrap_or_else(|_| Reassemble::disabled()),
            None => Reassemble::disabled(),
        };
        (
            Classify::new(self.classify.clone()),
            reasm,
            Punt::new(self.punts[Side::Wan as usize].clone()),
            CleartextGuard::new(guard),
            decrypt,
            self.forward(fib, learned),
        )
    }
}

/// Shards publish their stage counters every this many busy polls (and when they go idle).
pub const STAGE_PUBLISH_EVERY: u32 = 64;

/// Packets each hand-off queue (control shard → data shard) holds.
pub const HANDOFF_CAPACITY: usize = 1024;

/// The route and SA tables of a configuration: the editable sources and their publishers.
#[derive(Debug)]
pub struct Tables {
    /// Routes and neighbors (edit, then build and publish).
    pub route_table: FibBuilder,
    /// The FIB publisher shards subscribe to.
    pub routes: Publisher<Fib>,
    /// The SAs.
    pub sa_table: Vec<Arc<SecurityAssociation>>,
    /// The SPD.
    pub spd: Spd,
    /// The SA set publisher shards subscribe to.
    pub sad: Publisher<SaSet>,
    /// The learned-neighbor table shards subscribe to (the control shard publishes it).
    pub learned: Publisher<Neighbors>,
}

impl Tables {
    /// The tables of `cfg`, checked.
    pub fn new(cfg: &GatewayConfig) -> Result<Self, BuildError> {
        let route_table = fib_builder(cfg)?;
        let fib = route_table.build().map_err(|e| BuildError::Routes(e.to_string()))?;
        let (sa_table, spd) = sad(cfg)?;
        let set = SaSet::new(sa_table.iter().cloned(), &spd).map_err(|e| BuildError::Sad(e.to_string()))?;
        Ok(Self {
            route_table,
            routes: Publisher::new(fib),
            sa_table,
            spd,
            sad: Publisher::new(set),
            learned: Publisher::new(Neighbors::new()),
        })
    }
}

/// A running gateway: its shards and the control side of its tables.
pub struct Gateway {
    runtime: Option<Runtime>,
    shards: usize,
    routes: Publisher<Fib>,
    route_table: FibBuilder,
    sad: Publisher<SaSet>,
    sa_table: Vec<Arc<SecurityAssociation>>,
    spd: Spd,
    events: EventQueue,
    metrics: Arc<Mutex<String>>,
    /// More `/metrics` text, appended at every refresh (e.g. a port's exception-path counters).
    extra_metrics: Vec<MetricsSource>,
    name: String,
    stage_cells: Vec<Arc<StageCell>>,
    usage: UsageCollector,
}

/// A source of `/metrics` text: called with the gateway's name at every refresh, appends
/// Prometheus text exposition lines.
pub type MetricsSource = Box<dyn Fn(&str, &mut String) + Send + Sync>;

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("name", &self.name)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

/// What one data shard receives from the hand-out at start.
struct DataParts<P: Port> {
    lan: (P::Rx, P::Tx),
    wan: (P::Rx, P::Tx),
    fib: [Subscriber<Fib>; 2],
    learned: [Subscriber<Neighbors>; 2],
    sas: [Subscriber<SaSet>; 3],
    /// Routes for the encrypt stage's ICMP errors.
    icmp_routes: (Subscriber<Fib>, Subscriber<Neighbors>),
}

/// What the control shard receives.
struct ControlParts<P: Port> {
    lan: (P::Rx, P::Tx),
    wan: (P::Rx, P::Tx),
}

/// Builds and starts a gateway on `ports` (each with [`queues_per_port`] queues) whose buffers
/// are `pool`'s: the control planes allocate their replies from `pool` too.
pub fn build<P>(
    cfg: &GatewayConfig,
    ports: GatewayPorts<P>,
    pool: BufferPool,
    mode: RunMode,
) -> Result<Gateway, BuildError>
where
    P: Port<Buf = PoolBuf> + Send + 'static,
{
    build_with(cfg, ports, move |tx: P::Tx| (tx, pool), mode)
}

/// Builds and starts a gateway on `ports` of any backend (each with [`queues_per_port`]
/// queues). `control_tx` runs on the control shard's thread and turns each management queue's
/// transmit half into the transmit queue and buffer allocator of that side's control plane
/// (pool backends: the queue and the pool; AF_XDP: the queue sharing its UMEM; DPDK: the queue
/// and the port's mempool).
pub fn build_with<P, T, A, F>(
    cfg: &GatewayConfig,
    ports: GatewayPorts<P>,
    control_tx: F,
    mode: RunMode,
) -> Result<Gateway, BuildError>
where
    P: Port + Send + 'static,
    T: TxQueue<Buf = P::Buf> + 'static,
    A: TxAlloc<P::Buf> + 'static,
    F: Fn(P::Tx) -> (T, A) + Send + 'static,
{
    let shards = cfg.shards;
    let Tables { route_table, mut routes, sa_table, spd, mut sad, mut learned } = Tables::new(cfg)?;
    let shared = Shared::<P::Buf>::new(cfg);
    let events = shared.events.clone();

    // Hand-out: every shard's queues and subscriptions, taken once by its factory.
    let GatewayPorts { mut lan, mut wan } = ports;
    // The control planes send and receive frames as large as their port does (a jumbo port's
    // management traffic — pings, TCP segments of the peer's MSS — is not cut at 1514).
    let max_frame = [lan.info().max_frame, wan.info().max_frame];
    let port_err = |e: wirespeed_core::PortError| BuildError::Port(e.to_string());
    let mut data: Vec<DataParts<P>> = Vec::with_capacity(shards);
    for q in 0..shards as u16 {
        data.push(DataParts {
            lan: lan.queue_pair(q).map_err(port_err)?,
            wan: wan.queue_pair(q).map_err(port_err)?,
            fib: [routes.subscribe(), routes.subscribe()],
            learned: [learned.subscribe(), learned.subscribe()],
            icmp_routes: (routes.subscribe(), learned.subscribe()),
            sas: [sad.subscribe(), sad.subscribe(), sad.subscribe()],
        });
    }
    let mgmt_q = shards as u16;
    let control = ControlParts::<P> {
        lan: lan.queue_pair(mgmt_q).map_err(port_err)?,
        wan: wan.queue_pair(mgmt_q).map_err(port_err)?,
    };

    let metrics = Arc::new(Mutex::new(String::new()));
    let control_cfgs: Vec<ControlConfig> = [Side::Lan, Side::Wan]
        .into_iter()
        .map(|side| {
            let itf = cfg.interface(side);
            let m = &cfg.management;
            ControlConfig {
                mac: itf.mac,
                addresses: itf.addresses.clone(),
                gateway_v4: if side == m.side { m.gateway_v4 } else { None },
                gateway_v6: if side == m.side { m.gateway_v6 } else { None },
                management_port: m.http_port,
                max_frame: max_frame[side as usize],
                ..ControlConfig::default()
            }
        })
        .collect();
    let mgmt_side = cfg.management.side;
    let served = metrics.clone();

    let rt_cfg = RuntimeConfig {
        shards: shards + 1,
        pinning: if cfg.cores.is_empty() { Pinning::Auto } else { Pinning::Cores(cfg.cores.clone()) },
        loop_options: LoopOptions {
            exit_when_finished: mode == RunMode::UntilInputEnds,
            idle: cfg.idle,
            ..LoopOptions::default()
        },
        name: cfg.name.clone(),
        ..RuntimeConfig::default()
    };
    // One factory per shard, each moving its own queues and subscriptions in; data shards and
    // the control shard are different workers in one runtime.
    let mut builder = Runtime::builder(rt_cfg);
    for (i, parts) in data.into_iter().enumerate() {
        let shared = shared.clone();
        builder = builder.shard(move |_| -> Result<DataShard<P>, String> {
            let DataParts { lan, wan, fib, learned, sas, icmp_routes } = parts;
            let handoff = shared.handoff[i].clone();
            Ok(DataShard::new(&shared, lan, wan, fib, learned, sas)
                .with_handoff(handoff)
                .with_seal_handoff(&shared, i)
                .with_stage_cell(shared.stage_cells[i].clone())
                .with_icmp_routes(&shared, icmp_routes))
        });
    }
    // The control shard's software RSS, for data traffic the NIC put on the management queue.
    let steering = Steering::new(cfg)?;
    let stage_cells = shared.stage_cells.clone();
    let control_cell = stage_cells[shards].clone();
    let runtime = builder
        .shard(move |_| -> Result<ControlShard<P, T, A>, String> {
            let mut sides = Vec::with_capacity(2);
            for (side, (rx, tx)) in [(Side::Lan, control.lan), (Side::Wan, control.wan)] {
                let i = side as usize;
                let (tx, alloc) = control_tx(tx);
                let mut plane =
                    ControlPlane::new(control_cfgs[i].clone(), shared.punts[i].clone(), tx, alloc)
                        .map_err(|e| format!("{} control plane: {e}", side.name()))?;
                if side == mgmt_side {
                    let m = served.clone();
                    plane.set_stats_source(move |out: &mut String| {
                        http_response(out, &m.lock().map(|s| s.clone()).unwrap_or_default())
                    });
                } else {
                    plane.set_stats_source(|out: &mut String| {
                        out.push_str(
                            "HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                    });
                }
                sides.push(ControlSide {
                    side: i,
                    rx,
                    classify: Classify::new(shared.classify.clone()),
                    punt: Punt::new(shared.punts[i].clone()),
                    plane,
                    batch: Batch::new(),
                });
            }
            let not_ours = DropReason::register(NOT_FOR_CONTROL_PLANE).unwrap_or(DropReason::Unsupported);
            Ok(ControlShard {
                sides,
                not_ours,
                learned,
                table: Neighbors::new(),
                resolve: shared.resolve.clone(),
                steering,
                handoff: shared.handoff.clone(),
                cell: control_cell,
                polls: 0,
            })
        })
        .launch()?;
    routes.reclaim();
    sad.reclaim();
    let gw = Gateway {
        runtime: Some(runtime),
        shards,
        routes,
        route_table,
        sad,
        sa_table,
        spd,
        events,
        metrics,
        extra_metrics: Vec::new(),
        name: cfg.name.clone(),
        stage_cells,
        usage: UsageCollector::new(shards, request_usage::<P>),
    };
    gw.refresh_metrics();
    Ok(gw)
}

fn http_response(out: &mut String, body: &str) {
    let _ = write!(
        out,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

impl Gateway {
    /// Data shards (the control shard is one more).
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Counters of every shard, data shards first, the control shard last.
    pub fn stats(&self) -> Vec<ShardStats> {
        self.runtime.as_ref().map(|r| r.stats()).unwrap_or_default()
    }

    /// Stage counters of every shard as last published (data shards first, the control shard
    /// last): ICMP errors, fragmentation, MSS clamping, next-hop holding, solicitations.
    pub fn stage_stats(&self) -> Vec<StageCounters> {
        self.stage_cells.iter().map(|c| c.read()).collect()
    }

    /// The shards' stage-counter cells, readable after [`Gateway::stop`] (shards publish their
    /// final counters when they stop).
    pub fn stage_cells(&self) -> Vec<Arc<StageCell>> {
        self.stage_cells.clone()
    }

    /// True once every shard has finished its input (offline runs).
    pub fn finished(&self) -> bool {
        self.runtime.as_ref().is_none_or(|r| r.all_finished())
    }

    /// SA lifetime events raised by the shards since the last call.
    pub fn take_events(&self) -> Vec<SaEvent> {
        std::iter::from_fn(|| self.events.pop()).collect()
    }

    /// Adds a source of `/metrics` text, appended at every [`Gateway::refresh_metrics`] (and
    /// once now).
    pub fn add_metrics_source(&mut self, source: MetricsSource) {
        self.extra_metrics.push(source);
        self.refresh_metrics();
    }

    /// Recomputes the `/metrics` text served by the control plane from the shards' counters
    /// and the added sources.
    pub fn refresh_metrics(&self) {
        let mut text = prometheus(&self.name, &self.stats());
        for source in &self.extra_metrics {
            source(&self.name, &mut text);
        }
        text.push_str(&crate::stagestats::prometheus(&self.name, &StageCounters::sum(&self.stage_stats())));
        if let Ok(mut m) = self.metrics.lock() {
            *m = text;
        }
    }

    /// The shared `/metrics` text, for another server (e.g. [`crate::metrics::MetricsServer`]).
    pub fn metrics_handle(&self) -> Arc<Mutex<String>> {
        self.metrics.clone()
    }

    /// The `/metrics` text as last refreshed.
    pub fn metrics_text(&self) -> String {
        self.metrics.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The route table (edit it, then [`Gateway::publish_routes`]).
    pub fn routes_mut(&mut self) -> &mut FibBuilder {
        &mut self.route_table
    }

    /// Publishes the edited route table to every shard (adopted at their next batch).
    pub fn publish_routes(&mut self) -> Result<u64, BuildError> {
        let fib = self.route_table.build().map_err(|e| BuildError::Routes(e.to_string()))?;
        let v = self.routes.publish(fib);
        self.routes.reclaim();
        Ok(v)
    }

    /// The SAs in force.
    pub fn sas(&self) -> &[Arc<SecurityAssociation>] {
        &self.sa_table
    }

    /// The SPD in force.
    pub fn spd(&self) -> &Spd {
        &self.spd
    }

    /// Replaces the SA table and SPD and publishes them to every shard. The set is checked
    /// first; on error nothing changes.
    pub fn publish_sas(&mut self, sas: Vec<Arc<SecurityAssociation>>, spd: Spd) -> Result<u64, BuildError> {
        let set = SaSet::new(sas.iter().cloned(), &spd).map_err(|e| BuildError::Sad(e.to_string()))?;
        self.sa_table = sas;
        self.spd = spd;
        let v = self.sad.publish(set);
        self.sad.reclaim();
        Ok(v)
    }

    /// Adds an SA built from `cfg` (to a copy of the table) and publishes.
    pub fn add_sa(&mut self, cfg: &SaConfig) -> Result<u64, BuildError> {
        let sa = Arc::new(SecurityAssociation::new(cfg).map_err(|e| BuildError::Sad(e.to_string()))?);
        let mut sas = self.sa_table.clone();
        sas.push(sa);
        self.publish_sas(sas, self.spd.clone())
    }

    /// True when every shard runs on the newest SA set and route table.
    pub fn updates_adopted(&self) -> bool {
        self.sad.adopted_by_all(self.sad.version()) && self.routes.adopted_by_all(self.routes.version())
    }

    /// Waits for offline input to end, then returns every shard's final counters.
    pub fn wait_finished(self) -> Result<Vec<ShardStats>, BuildError> {
        self.wait_finished_timed().map(|(stats, _)| stats)
    }

    /// [`Gateway::wait_finished`], also returning the packet-processing window: from the first
    /// data shard's first busy poll to the end of the last one's input (`None` when no data
    /// shard had a packet). Start-up (pool, ports, tables, threads) and shutdown are outside it.
    pub fn wait_finished_timed(
        mut self,
    ) -> Result<(Vec<ShardStats>, Option<std::time::Duration>), BuildError> {
        let rt = self.runtime.take().ok_or(BuildError::Port("already stopped".into()))?;
        let reports = rt.wait_finished()?;
        self.routes.reclaim();
        self.sad.reclaim();
        let data: Vec<&DataReport> = reports.iter().filter_map(|r| r.report::<DataReport>()).collect();
        let start = data.iter().filter_map(|d| d.first_busy).min();
        let end = data.iter().filter_map(|d| d.input_ended).max();
        let window = start.zip(end).map(|(s, e)| e.saturating_duration_since(s));
        Ok((reports.into_iter().map(|r| r.stats).collect(), window))
    }

    /// Asks every data shard for its per-SA counters ([`SaUsage`]): each reads the state its
    /// encrypt and decrypt stages own, on its own thread between two batches (a typed update
    /// through its control queue, the way the runtime changes a shard), and answers over a
    /// bounded queue; nothing is shared or locked on the packet path. A request still
    /// unanswered is abandoned. `false` when a shard could not be asked (stopped, or its
    /// control queue full): try again later.
    pub fn request_sa_usage(&mut self) -> bool {
        match &self.runtime {
            Some(rt) => self.usage.request(rt),
            None => false,
        }
    }

    /// The per-SA totals over every data shard once every shard has answered the last
    /// [`Gateway::request_sa_usage`] (`None` before): packets and bytes summed, last use the
    /// latest. Each SA's totals count from its installation and never go down while it is in
    /// the table (shards carry an SA's state across publishes). SAs without a packet yet are
    /// left out. Sorted by uid. Also kept for [`Gateway::sa_usage`].
    pub fn take_sa_usage(&mut self) -> Option<Vec<SaUsage>> {
        self.usage.collect()
    }

    /// The totals of the last completed [`Gateway::take_sa_usage`] (empty before), by uid.
    pub fn sa_usage(&self) -> &[SaUsage] {
        &self.usage.last
    }

    /// The totals of one SA in [`Gateway::sa_usage`] (`None`: no packet yet, or not collected).
    pub fn sa_usage_of(&self, uid: u64) -> Option<&SaUsage> {
        let last = &self.usage.last;
        last.binary_search_by_key(&uid, |u| u.uid).ok().map(|i| &last[i])
    }

    /// Drains and stops every shard; returns their final counters.
    pub fn stop(mut self) -> Result<Vec<ShardStats>, BuildError> {
        let rt = self.runtime.take().ok_or(BuildError::Port("already stopped".into()))?;
        Ok(rt.stop()?.into_iter().map(|r| r.stats).collect())
    }
}

/// One SA's counters: on one data shard (as a shard reports them), or summed over every data
/// shard ([`Gateway::take_sa_usage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaUsage {
    /// The SA ([`SecurityAssociation::uid`]).
    pub uid: u64,
    /// Its SPI.
    pub spi: u32,
    /// Packets encrypted (outbound SA) or decrypted and accepted (inbound).
    pub packets: u64,
    /// Bytes of those packets' inner IP packets.
    pub bytes: u64,
    /// Outbound: the last sequence number sent; inbound: the highest authenticated (over
    /// shards, the largest). Reported to the kernel with the counters (`source = "xfrm"`).
    pub seq: u64,
    /// When a shard last counted one (the shards' coarse loop clock).
    pub last_use: Option<std::time::Instant>,
}

/// Sums per-SA usage reports (any number per SA, e.g. one per shard) into one total per SA, by
/// uid: packets and bytes added, the largest sequence number, the latest last use. The order is
/// by uid.
pub fn sum_sa_usage<'a>(reports: impl IntoIterator<Item = &'a SaUsage>) -> Vec<SaUsage> {
    let mut by_uid: std::collections::BTreeMap<u64, SaUsage> = std::collections::BTreeMap::new();
    for u in reports {
        by_uid
            .entry(u.uid)
            .and_modify(|t| {
                t.packets += u.packets;
                t.bytes += u.bytes;
                t.seq = t.seq.max(u.seq);
                t.last_use = t.last_use.max(u.last_use);
            })
            .or_insert(*u);
    }
    by_uid.into_values().collect()
}

/// A data shard's answer to one usage request.
struct UsageReply {
    round: u64,
    shard: ShardId,
    usage: Vec<SaUsage>,
}

/// Sends one usage request to one data shard (monomorphised for the port type in [`build_with`]).
type UsageRequest = fn(&Runtime, ShardId, u64, &Arc<BoundedQueue<UsageReply>>) -> Result<(), UpdateError>;

fn request_usage<P: Port + 'static>(
    rt: &Runtime,
    shard: ShardId,
    round: u64,
    replies: &Arc<BoundedQueue<UsageReply>>,
) -> Result<(), UpdateError> {
    let replies = replies.clone();
    rt.update(shard, move |w: &mut DataShard<P>| {
        let usage = w.sa_usage();
        // A full queue loses this answer: the round never completes and the next one starts
        // afresh.
        let _ = replies.push(UsageReply { round, shard, usage });
    })
}

/// The control side of per-SA usage collection: rounds of requests to every data shard.
struct UsageCollector {
    shards: usize,
    request: UsageRequest,
    replies: Arc<BoundedQueue<UsageReply>>,
    round: u64,
    /// Answers of the current round, by shard.
    answered: Vec<Option<Vec<SaUsage>>>,
    pending: bool,
    last: Vec<SaUsage>,
}

impl UsageCollector {
    fn new(shards: usize, request: UsageRequest) -> Self {
        Self {
            shards,
            request,
            // Room for two rounds: a late answer of an abandoned one does not crowd out the next.
            replies: Arc::new(BoundedQueue::new(2 * shards.max(1))),
            round: 0,
            answered: vec![None; shards],
            pending: false,
            last: Vec::new(),
        }
    }

    fn request(&mut self, rt: &Runtime) -> bool {
        self.round += 1;
        self.answered.iter_mut().for_each(|a| *a = None);
        self.pending = (0..self.shards).all(|s| (self.request)(rt, s, self.round, &self.replies).is_ok());
        self.pending
    }

    fn collect(&mut self) -> Option<Vec<SaUsage>> {
        while let Some(r) = self.replies.pop() {
            if r.round == self.round
                && let Some(slot) = self.answered.get_mut(r.shard)
            {
                *slot = Some(r.usage);
            }
        }
        if !self.pending || self.answered.iter().any(Option::is_none) {
            return None;
        }
        self.pending = false;
        let total = sum_sa_usage(self.answered.iter().flatten().flatten());
        self.last = total.clone();
        Some(total)
    }
}

/// Prometheus text exposition of shard counters: per-shard packet and byte counters with a
/// `shard` label, drops with `shard` and `reason` labels.
pub fn prometheus(gateway: &str, stats: &[ShardStats]) -> String {
    let mut out = String::new();
    type Get = fn(&ShardCounters) -> u64;
    let series: [(&str, &str, Get); 4] = [
        ("wirespeed_rx_packets_total", "Packets received.", |c| c.rx_packets),
        ("wirespeed_rx_bytes_total", "Bytes received.", |c| c.rx_bytes),
        ("wirespeed_tx_packets_total", "Packets transmitted.", |c| c.tx_packets),
        ("wirespeed_tx_bytes_total", "Bytes transmitted.", |c| c.tx_bytes),
    ];
    for (name, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for s in stats {
            let _ =
                writeln!(out, "{name}{{gateway=\"{gateway}\",shard=\"{}\"}} {}", s.shard, get(&s.counters));
        }
    }
    let _ = writeln!(
        out,
        "# HELP wirespeed_drops_total Packets dropped, by reason.\n# TYPE wirespeed_drops_total counter"
    );
    for s in stats {
        for (reason, n) in s.counters.nonzero_drops() {
            let _ = writeln!(
                out,
                "wirespeed_drops_total{{gateway=\"{gateway}\",shard=\"{}\",reason=\"{}\"}} {n}",
                s.shard,
                reason.name()
            );
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Shard workers.
// ---------------------------------------------------------------------------------------------

impl<P: Port + 'static> Worker for DataShard<P> {
    fn poll(&mut self, cx: &mut ShardCtx) -> Poll {
        let p = DataShard::poll(self, cx);
        if self.cell.is_some() {
            match p {
                Poll::Busy(_) => self.busy_polls += 1,
                _ if self.busy_polls > 0 => self.busy_polls = STAGE_PUBLISH_EVERY,
                _ => {}
            }
            if self.busy_polls >= STAGE_PUBLISH_EVERY {
                self.publish_stage_counters();
                self.busy_polls = 0;
            }
        }
        // The processing window, for throughput figures: one branch per poll, a clock read
        // only at the end (the start takes the loop's coarse clock, which is never later).
        match p {
            Poll::Busy(_) if self.window.0.is_none() => self.window.0 = Some(cx.now),
            Poll::Finished if self.window.1.is_none() => self.window.1 = Some(std::time::Instant::now()),
            _ => {}
        }
        p
    }

    fn drain(&mut self, cx: &mut ShardCtx) {
        DataShard::drain(self, cx);
        self.publish_stage_counters();
    }

    fn set_idle_policy(&mut self, policy: IdlePolicy) {
        self.lan_rx.set_idle_policy(policy);
        self.wan_rx.set_idle_policy(policy);
    }

    /// Waits on the LAN and the WAN queue in turn, for half the timeout each (a queue cannot
    /// wait on another's socket), so the first packet after an idle spell on the side not
    /// waited on waits at most that half. A port that cannot wait makes the runtime sleep.
    /// While a Tx queue holds a backlog the device pushed back, it is moved on first and the
    /// wait is short ([`wirespeed_core::backend::TX_BACKLOG_WAIT`]); so is it while other shards
    /// hand packets over (they cannot wake this one), and it is skipped when some are queued.
    fn wait(&mut self, timeout: std::time::Duration) -> bool {
        // Other shards hand packets over without a wake-up: none waiting now, and while they
        // keep coming, short waits.
        let handed = |q: &PuntQueue<P::Buf>| !q.is_empty();
        if self.seal.as_ref().is_some_and(handed) || self.handoff.iter().flatten().any(handed) {
            return true;
        }
        let mut timeout = wirespeed_core::backend::backlog_timeout(&mut self.tx, timeout / 2);
        if self.handoff_recent {
            timeout = timeout.min(wirespeed_core::backend::TX_BACKLOG_WAIT);
        }
        self.wait_wan = !self.wait_wan;
        let rx = if self.wait_wan { &mut self.wan_rx } else { &mut self.lan_rx };
        rx.wait(timeout)
    }

    fn report(&mut self) -> Option<wirespeed_core::runtime::WorkerReport> {
        Some(wirespeed_core::runtime::WorkerReport::new(DataReport {
            encrypt: *self.outbound.3.stats(),
            decrypt: *self.inbound.4.stats(),
            cleartext_dropped: self.inbound.3.dropped(),
            first_busy: self.window.0,
            input_ended: self.window.1,
            hold: [self.outbound.2.counters(), self.inbound.5.counters()],
        }))
    }
}

impl<P, T, A> Worker for ControlShard<P, T, A>
where
    P: Port + 'static,
    T: TxQueue<Buf = P::Buf> + 'static,
    A: TxAlloc<P::Buf> + 'static,
{
    fn poll(&mut self, cx: &mut ShardCtx) -> Poll {
        let p = ControlShard::poll(self, cx);
        self.polls += 1;
        if self.polls >= STAGE_PUBLISH_EVERY || (p == Poll::Idle && self.polls > 1) {
            self.publish_stage_counters();
            self.polls = 0;
        }
        p
    }

    fn drain(&mut self, _cx: &mut ShardCtx) {
        ControlShard::drain(self);
        self.publish_stage_counters();
    }
}

/// What a data shard reports when it ends: its ESP stages' counters and the cleartext guard's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataReport {
    /// The encrypt stage.
    pub encrypt: wirespeed_stages::esp::EspStats,
    /// The decrypt stage.
    pub decrypt: wirespeed_stages::esp::EspStats,
    /// Cleartext packets the WAN side refused.
    pub cleartext_dropped: u64,
    /// When the shard first had packets to process (`None`: it never had any).
    pub first_busy: Option<std::time::Instant>,
    /// When its input ended, everything processed (`None`: stopped before, or live ports).
    pub input_ended: Option<std::time::Instant>,
    /// Packets held for next-hop resolution, outbound and inbound path.
    pub hold: [HoldCounters; 2],
}

/// Fills `batch` from a hand-off queue and counts what it took as received here (the shard
/// that handed it over counted it out, `ShardCounters::hand_off`). Returns how many it took.
fn receive_handed<B: PacketBuf>(q: &PuntQueue<B>, batch: &mut Batch<B>, cx: &mut ShardCtx) -> usize {
    let mut n = 0;
    while !batch.is_full() {
        let Some(p) = q.pop() else { break };
        cx.counters.rx_packets += 1;
        cx.counters.rx_bytes += p.len() as u64;
        // Cannot fail: the batch has room.
        let _ = batch.push(p);
        n += 1;
    }
    n
}

/// The stages of a data shard's LAN → WAN path.
pub type Outbound<B = PoolBuf> = (Classify, Punt<B>, Resolving<B>, EspEncrypt);
/// The stages of a data shard's WAN → LAN path.
pub type Inbound<B = PoolBuf> = (Classify, Reassemble<B>, Punt<B>, CleartextGuard, EspDecrypt, Resolving<B>);

/// One data shard: both directions over queue `i` of both ports. A [`Worker`]: the runtime polls
/// it on its own thread; tests may poll it directly.
pub struct DataShard<P: Port> {
    lan_rx: P::Rx,
    wan_rx: P::Rx,
    /// Indexed by output port ([`Side::port`]).
    tx: [P::Tx; 2],
    outbound: Outbound<P::Buf>,
    inbound: Inbound<P::Buf>,
    batch: Batch<P::Buf>,
    scratch: Batch<P::Buf>,
    /// First busy poll and end of input, for [`DataReport`].
    window: (Option<std::time::Instant>, Option<std::time::Instant>),
    /// Packets the control shard hands over (LAN, WAN), see [`DataShard::with_handoff`].
    handoff: Option<[PuntQueue<P::Buf>; 2]>,
    /// Packets other data shards hand over to be encrypted here
    /// ([`DataShard::with_seal_handoff`]).
    seal: Option<PuntQueue<P::Buf>>,
    /// The last poll took handed-over packets: a blocking wait stays short.
    handoff_recent: bool,
    /// Which queue the next blocking wait is on.
    wait_wan: bool,
    /// Where the stage counters go ([`DataShard::with_stage_cell`]), and busy polls since
    /// they last went.
    cell: Option<Arc<StageCell>>,
    busy_polls: u32,
}

impl<P: Port> DataShard<P> {
    /// Also takes the data packets the control shard received on the management queue and
    /// handed to this shard (`[LAN, WAN]`): they run the same paths as the shard's own queues.
    pub fn with_handoff(mut self, queues: [PuntQueue<P::Buf>; 2]) -> Self {
        self.handoff = Some(queues);
        self
    }

    /// Makes this shard (data shard `shard` of `shared`) one sender per outbound SA whatever
    /// queue a flow arrives on: a protected packet whose SA another data shard owns is handed to
    /// that shard after routing (`shared.seal[owner]`), and this shard encrypts and sends what
    /// the others hand it (`shared.seal[shard]`), in the order each queued it. Without it such
    /// packets are dropped (`esp_no_sa`): steer each policy's traffic to its SA's shard, or
    /// give every shard its own SA (per-CPU SAs).
    pub fn with_seal_handoff(mut self, shared: &Shared<P::Buf>, shard: usize) -> Self {
        self.outbound.3.set_handoff(shared.seal.clone());
        self.seal = shared.seal.get(shard).cloned();
        self
    }

    /// Lets the encrypt stage answer packets too big for their tunnel with ICMP Fragmentation
    /// Needed / Packet Too Big (when `shared` enables ICMP errors), routed back to their source
    /// through `routes` (FIB and learned neighbors: the packet was already forwarded).
    pub fn with_icmp_routes(
        mut self,
        shared: &Shared<P::Buf>,
        routes: (Subscriber<Fib>, Subscriber<Neighbors>),
    ) -> Self {
        if let Some(icmp) = &shared.icmp {
            let (fib, learned) = routes;
            self.outbound.3.set_icmp_errors(IcmpErrors::new(icmp).with_routes(fib, Some(learned)));
        }
        self
    }

    /// A data shard on the LAN and WAN queue pairs `lan` and `wan`, with the FIB and
    /// learned-neighbor subscriptions of its outbound and inbound paths and the SA
    /// subscriptions of its encrypt, decrypt and cleartext-guard stages.
    pub fn new(
        shared: &Shared<P::Buf>,
        lan: (P::Rx, P::Tx),
        wan: (P::Rx, P::Tx),
        fib: [Subscriber<Fib>; 2],
        learned: [Subscriber<Neighbors>; 2],
        sas: [Subscriber<SaSet>; 3],
    ) -> Self {
        let [fib_out, fib_in] = fib;
        let [learned_out, learned_in] = learned;
        let [sa_enc, sa_dec, sa_guard] = sas;
        Self {
            lan_rx: lan.0,
            wan_rx: wan.0,
            tx: [lan.1, wan.1],
            outbound: shared.outbound(fib_out, learned_out, sa_enc),
            inbound: shared.inbound(fib_in, learned_in, sa_dec, sa_guard),
            batch: Batch::new(),
            scratch: Batch::new(),
            window: (None, None),
            handoff: None,
            seal: None,
            handoff_recent: false,
            wait_wan: false,
            cell: None,
            busy_polls: 0,
        }
    }

    /// Publishes the stages' counters ([`DataShard::stage_counters`]) to `cell` every
    /// [`STAGE_PUBLISH_EVERY`] busy polls, when the shard goes idle, and when it stops.
    pub fn with_stage_cell(mut self, cell: Arc<StageCell>) -> Self {
        self.cell = Some(cell);
        self
    }

    /// The stages' own counters: ICMP errors of the forward and encrypt stages, fragmentation,
    /// MSS clamping, next-hop holding (both paths).
    pub fn stage_counters(&self) -> StageCounters {
        let mut c = StageCounters::default();
        let icmp = [
            self.outbound.2.forward().icmp_counters(),
            self.inbound.5.forward().icmp_counters(),
            self.outbound.3.icmp_counters(),
        ];
        for i in icmp {
            c.icmp_time_exceeded += i.time_exceeded;
            c.icmp_unreachable += i.unreachable;
            c.icmp_too_big += i.too_big;
            c.icmp_rate_limited += i.rate_limited;
            c.icmp_suppressed += i.suppressed;
        }
        let (e, d) = (self.outbound.3.stats(), self.inbound.4.stats());
        c.fragmented = e.fragmented;
        c.fragments = e.fragments;
        c.frag_failed = e.frag_failed;
        c.mss_clamped = e.mss_clamped + d.mss_clamped;
        c.spi_held = d.held;
        c.spi_hold_resolved = d.hold_resolved;
        c.spi_hold_expired = d.hold_expired;
        c.spi_hold_full = d.hold_full;
        let r = self.inbound.1.stats();
        c.reasm_fragments = r.fragments;
        c.reassembled = r.reassembled;
        for h in [self.outbound.2.counters(), self.inbound.5.counters()] {
            c.neighbor_held += h.held;
            c.neighbor_released += h.released;
            c.neighbor_hold_overflow += h.overflow;
            c.neighbor_hold_expired += h.expired;
            c.neighbor_requests += h.requests;
            c.neighbor_requests_lost += h.requests_lost;
        }
        c
    }

    fn publish_stage_counters(&self) {
        if let Some(cell) = &self.cell {
            cell.publish(&self.stage_counters());
        }
    }

    /// This shard's counters of every SA that carried a packet here, from the state its
    /// encrypt and decrypt stages own (one entry per SA).
    pub fn sa_usage(&mut self) -> Vec<SaUsage> {
        let mut out = Vec::new();
        for sas in [self.outbound.3.sas_mut(), self.inbound.4.sas_mut()] {
            let (set, states) = sas.parts();
            for (sa, st) in set.sas().iter().zip(states.iter()) {
                if st.packets() > 0 {
                    out.push(SaUsage {
                        uid: sa.uid(),
                        spi: sa.spi(),
                        packets: st.packets(),
                        bytes: st.bytes(),
                        seq: st.seq(),
                        last_use: st.last_use(),
                    });
                }
            }
        }
        sum_sa_usage(&out)
    }

    fn poll(&mut self, cx: &mut ShardCtx) -> Poll {
        let released = self.release(cx) + self.take_handoff(cx);
        let n = released
            + Self::run(
                &mut self.lan_rx,
                &mut self.outbound,
                &mut self.batch,
                &mut self.scratch,
                &mut self.tx,
                cx,
            )
            + Self::run(
                &mut self.wan_rx,
                &mut self.inbound,
                &mut self.batch,
                &mut self.scratch,
                &mut self.tx,
                cx,
            );
        match n {
            0 if self.lan_rx.at_end() && self.wan_rx.at_end() => Poll::Finished,
            0 => Poll::Idle,
            n => Poll::Busy(n),
        }
    }

    #[inline]
    fn run<S: Stage<P::Buf>>(
        rx: &mut P::Rx,
        stages: &mut S,
        batch: &mut Batch<P::Buf>,
        scratch: &mut Batch<P::Buf>,
        tx: &mut [P::Tx; 2],
        cx: &mut ShardCtx,
    ) -> usize {
        let n = rx.rx_burst(batch);
        if let Some((reason, count)) = rx.take_drops() {
            cx.counters.drop_packets(reason, count);
        }
        if n == 0 {
            for t in tx.iter_mut() {
                t.idle();
            }
            return 0;
        }
        cx.counters.rx_packets += n as u64;
        cx.counters.rx_bytes += batch.bytes();
        stages.process(cx, batch);
        transmit(batch, scratch, tx, cx);
        n
    }

    /// Runs what the control shard handed over through the outbound (LAN) and inbound (WAN)
    /// paths. Returns how many packets were taken.
    fn take_handoff(&mut self, cx: &mut ShardCtx) -> usize {
        let mut n = self.take_seal_handoff(cx);
        // Taken out for the loop (the paths borrow the shard) and put back: no reference count
        // touched per poll.
        let queues = self.handoff.take();
        for (q, outbound) in queues.iter().flat_map(|[lan, wan]| [(lan, true), (wan, false)]) {
            let taken = receive_handed(q, &mut self.batch, cx);
            if taken == 0 {
                continue;
            }
            n += taken;
            if outbound {
                self.outbound.process(cx, &mut self.batch);
            } else {
                self.inbound.process(cx, &mut self.batch);
            }
            transmit(&mut self.batch, &mut self.scratch, &mut self.tx, cx);
        }
        self.handoff = queues;
        self.handoff_recent = n > 0;
        n
    }

    /// Encrypts and sends what other data shards handed over (their packets were routed
    /// there; only the encrypt stage runs here). Returns how many packets were taken.
    fn take_seal_handoff(&mut self, cx: &mut ShardCtx) -> usize {
        let Some(q) = &self.seal else { return 0 };
        let mut n = 0;
        while !q.is_empty() {
            let taken = receive_handed(q, &mut self.batch, cx);
            if taken == 0 {
                break;
            }
            n += taken;
            self.outbound.3.process(cx, &mut self.batch);
            transmit(&mut self.batch, &mut self.scratch, &mut self.tx, cx);
            if n >= 4 * wirespeed_core::BATCH_SIZE {
                // The shard's own queues get their turn.
                break;
            }
        }
        n
    }

    /// Sends the packets held for next-hop resolution that resolve now (a new neighbor or
    /// route table was published), drops those that timed out: the rest of each path runs on
    /// what the forward stage releases. Returns how many were sent on.
    fn release(&mut self, cx: &mut ShardCtx) -> usize {
        let mut n = 0;
        // IPv4 fragments a full batch had no room for leave first, in sequence-number order.
        for _ in 0..wirespeed_stages::esp::FRAG_SPILL / wirespeed_core::BATCH_SIZE {
            if self.outbound.3.pending() == 0 {
                break;
            }
            self.outbound.3.process(cx, &mut self.batch);
            n += self.batch.len();
            transmit(&mut self.batch, &mut self.scratch, &mut self.tx, cx);
        }
        if self.outbound.2.needs_service(cx.now) {
            self.outbound.2.process(cx, &mut self.batch);
            self.outbound.3.process(cx, &mut self.batch);
            n += self.batch.len();
            transmit(&mut self.batch, &mut self.scratch, &mut self.tx, cx);
        }
        // Incomplete datagrams past their deadline give their buffers back; counted as work so
        // the shard publishes the drops (an idle poll publishes only after a busy one).
        if self.inbound.1.needs_service(cx.now) {
            self.inbound.1.expire(cx);
            n += 1;
        }
        // ESP for an SPI whose SA was not yet published (a rekey): decrypted once it is, or
        // dropped as `esp_no_sa` at its deadline.
        if self.inbound.4.needs_service(cx.now) {
            self.inbound.4.process(cx, &mut self.batch);
            self.inbound.5.process(cx, &mut self.batch);
            n += self.batch.len().max(1);
            transmit(&mut self.batch, &mut self.scratch, &mut self.tx, cx);
        }
        if self.inbound.5.needs_service(cx.now) {
            self.inbound.5.process(cx, &mut self.batch);
            n += self.batch.len();
            transmit(&mut self.batch, &mut self.scratch, &mut self.tx, cx);
        }
        n
    }

    fn drain(&mut self, cx: &mut ShardCtx) {
        transmit(&mut self.batch, &mut self.scratch, &mut self.tx, cx);
        // Fragments still waiting for room leave too.
        for _ in 0..wirespeed_stages::esp::FRAG_SPILL / wirespeed_core::BATCH_SIZE {
            if self.outbound.3.pending() == 0 {
                break;
            }
            self.outbound.3.process(cx, &mut self.batch);
            transmit(&mut self.batch, &mut self.scratch, &mut self.tx, cx);
        }
        for t in &mut self.tx {
            t.flush();
        }
        self.outbound.2.drop_held(cx);
        self.inbound.1.drop_held(cx);
        self.inbound.4.drop_held(cx);
        self.inbound.5.drop_held(cx);
    }
}

/// Name of the drop reason of [`CleartextGuard`].
pub const CLEARTEXT_ON_WAN: &str = "cleartext_on_wan";

/// Drops cleartext arriving on the WAN side that the SPD says must come protected: a packet
/// from the remote side whose reversed flow matches a protect policy (RFC 4301 §5.2: inbound
/// traffic a protect policy covers must arrive through its SA). Counted under the appliance's
/// own drop reason [`CLEARTEXT_ON_WAN`].
#[derive(Debug)]
pub struct CleartextGuard {
    sas: Subscriber<SaSet>,
    reason: DropReason,
    dropped: u64,
}

impl CleartextGuard {
    /// A guard reading the SPD from `sas`.
    pub fn new(sas: Subscriber<SaSet>) -> Self {
        // Registration is idempotent; if every custom slot were taken, fall back to the
        // built-in policy reason rather than fail.
        let reason = DropReason::register(CLEARTEXT_ON_WAN).unwrap_or(DropReason::PolicyDiscard);
        Self { sas, reason, dropped: 0 }
    }

    /// Packets dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl<B: PacketBuf> Stage<B> for CleartextGuard {
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        self.sas.refresh();
        let set = self.sas.get();
        if !set.has_policies() {
            return;
        }
        let shard = cx.shard;
        let reason = self.reason;
        let dropped = &mut self.dropped;
        batch.apply(
            cx,
            |cx, _| cx.counters.drop_packet(DropReason::Unsupported),
            |_, p| {
                let m = p.meta();
                if matches!(m.flow_class, FlowClass::Esp | FlowClass::EspInUdp) {
                    return Verdict::Continue;
                }
                let l3 = match m.l3 {
                    wirespeed_core::L3Kind::Ipv4 | wirespeed_core::L3Kind::Ipv6 => m.l3_offset as usize,
                    wirespeed_core::L3Kind::None => match ethernet_l3_offset(p.data()) {
                        Some(l3) => l3,
                        None => return Verdict::Continue,
                    },
                    _ => return Verdict::Continue,
                };
                let Some(d) = p.data().get(l3..) else { return Verdict::Continue };
                let Ok(ip) = IpHeader::parse(d) else { return Verdict::Continue };
                let k = ip.flow_key(d);
                let reversed = FlowKey { src: k.dst, dst: k.src, ports: k.ports.map(|(s, d)| (d, s)), ..k };
                match set.decide_outbound(&reversed, shard) {
                    OutboundDecision::Protect(_)
                    | OutboundDecision::Elsewhere(_)
                    | OutboundDecision::NoSa => {
                        *dropped += 1;
                        Verdict::Drop(reason)
                    }
                    OutboundDecision::Bypass | OutboundDecision::Discard => Verdict::Continue,
                }
            },
        );
    }
}

/// One interface's management path on the control shard.
struct ControlSide<P: Port, T: TxQueue<Buf = P::Buf>, A: TxAlloc<P::Buf>> {
    /// [`Side`] as an index.
    side: usize,
    rx: P::Rx,
    classify: Classify,
    punt: Punt<P::Buf>,
    plane: ControlPlane<P::Buf, T, A>,
    batch: Batch<P::Buf>,
}

/// The control shard: the steering plan's management queue of both ports into one smoltcp
/// control plane per interface.
struct ControlShard<P: Port, T: TxQueue<Buf = P::Buf>, A: TxAlloc<P::Buf>> {
    sides: Vec<ControlSide<P, T, A>>,
    not_ours: DropReason,
    /// The learned-neighbor table and its publisher (the data shards' forward stages read it).
    learned: Publisher<Neighbors>,
    table: Neighbors,
    /// Next hops the data shards asked for.
    resolve: ResolveQueue,
    /// The software RSS decision and the data shards' hand-off queues.
    steering: Steering,
    handoff: Vec<[PuntQueue<P::Buf>; 2]>,
    /// Where the solicitation counters go, and polls since they last went.
    cell: Arc<StageCell>,
    polls: u32,
}

/// Most resolution requests the control shard takes per poll.
const RESOLVE_PER_POLL: usize = 64;

/// Name of the drop reason of frames the steering plan sends to the management queue that the
/// control plane does not take (rules an operator added that match data traffic). Data traffic
/// the NIC itself put there (no steering) is handed to a data shard instead (`handed_off`).
pub const NOT_FOR_CONTROL_PLANE: &str = "not_for_control_plane";

impl<P: Port, T: TxQueue<Buf = P::Buf>, A: TxAlloc<P::Buf>> ControlShard<P, T, A> {
    fn poll(&mut self, cx: &mut ShardCtx) -> Poll {
        let mut busy = 0;
        let mut ended = true;
        // Solicit the next hops the data shards asked for, on the interface they are on.
        let sent = |sides: &[ControlSide<P, T, A>]| {
            sides
                .iter()
                .map(|s| s.plane.counters().device)
                .fold((0, 0), |(n, b), d| (n + d.transmitted, b + d.transmitted_bytes))
        };
        let before = sent(&self.sides);
        for _ in 0..RESOLVE_PER_POLL {
            let Some(ip) = self.resolve.pop() else { break };
            if let Some(s) = self.sides.iter_mut().find(|s| s.plane.on_link(ip)) {
                s.plane.solicit(ip);
                busy += 1;
            }
        }
        let after = sent(&self.sides);
        cx.counters.tx_packets += after.0 - before.0;
        cx.counters.tx_bytes += after.1 - before.1;
        for s in &mut self.sides {
            let n = s.rx.rx_burst(&mut s.batch);
            if let Some((reason, count)) = s.rx.take_drops() {
                cx.counters.drop_packets(reason, count);
            }
            if n > 0 {
                cx.counters.rx_packets += n as u64;
                cx.counters.rx_bytes += s.batch.bytes();
                s.classify.process(cx, &mut s.batch);
                s.punt.process(cx, &mut s.batch);
                // Data traffic here (a NIC that cannot keep it off the management queue, e.g.
                // veth): to the data shard the software RSS picks. What the steering plan sent
                // here on purpose but is not for the control plane is dropped.
                for p in s.batch.drain(..) {
                    let q = self.steering.queue(p.data()).map(usize::from);
                    let Some(to) = q.and_then(|q| self.handoff.get(q)) else {
                        cx.counters.drop_packet(self.not_ours);
                        continue;
                    };
                    let len = p.len() as u64;
                    match to[s.side].push(p) {
                        // Received (and counted) by the data shard that processes it.
                        Ok(()) => cx.counters.hand_off(len),
                        Err(p) => {
                            drop(p);
                            cx.counters.drop_packet(DropReason::DispatchRingFull);
                        }
                    }
                }
            }
            let before = s.plane.counters().device;
            if s.plane.poll() {
                busy += 1;
            }
            let after = s.plane.counters().device;
            cx.counters.tx_packets += after.transmitted - before.transmitted;
            cx.counters.tx_bytes += after.transmitted_bytes - before.transmitted_bytes;
            busy += n;
            ended &= s.rx.at_end();
        }
        // What the control planes learned (or aged out) goes to the data shards by epoch.
        let mut changed = false;
        for s in &mut self.sides {
            for (ip, n) in s.plane.take_neighbor_updates() {
                changed |= match n {
                    Some(n) => self.table.insert(ip, n),
                    None => self.table.remove(ip),
                };
            }
        }
        if changed {
            self.learned.publish(self.table.clone());
        }
        self.learned.reclaim();
        match busy {
            0 if ended => Poll::Finished,
            0 => Poll::Idle,
            n => Poll::Busy(n),
        }
    }

    fn publish_stage_counters(&self) {
        let mut c = StageCounters::default();
        for s in &self.sides {
            let p = s.plane.counters();
            c.solicitations += p.solicitations;
            c.solicit_limited += p.solicit_limited;
            c.solicit_not_on_link += p.solicit_not_on_link;
        }
        self.cell.publish(&c);
    }

    fn drain(&mut self) {
        for s in &mut self.sides {
            s.plane.poll();
        }
    }
}
