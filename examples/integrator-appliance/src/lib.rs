//! The appliance of issue 10, built the way a third party builds one: only the public API of
//! `wirespeed-core`, `wirespeed-stages` and `wirespeed-pcap`.
//!
//! Two shards, one capture file as input. Shard 0 receives it and runs the software RSS
//! `Dispatcher` (symmetric Toeplitz) as its first stage, keeping its own flows and handing the
//! others to shard 1, which receives them through a `DispatchRx`. Both shards then run classify,
//! the appliance's own [`Firewall`] (ICMP denied under its own drop reason `fw_icmp_denied`) and
//! forward (LPM, TTL, MAC rewrite); shard 0 also encrypts LAN → servers traffic into an ESP
//! tunnel to a peer reached through the servers' router (forward runs first, so its MAC rewrite
//! stays on the ESP frame). Each shard writes its own output capture and reports its firewall's
//! state when it ends (shard 0 with its ESP statistics). `tests/appliance.rs` runs it on a real
//! capture and checks the output.
//!
//! This file is the whole appliance: 62 lines of code as `rustfmt` leaves them, imports,
//! constants and type definitions included, comments and blank lines not counted
//! (`grep -vcE '^\s*(//|$)' src/lib.rs`).
use std::{error::Error, net::IpAddr, net::Ipv4Addr, path::Path};

use wirespeed_core::epoch::Publisher;
use wirespeed_core::rss::{DispatchFabric, RssConfig, SteeringEngine, SymmetricMode::Sort};
use wirespeed_core::{Batch, BufferPool, DropReason, PacketBuf, Pinning, Pipeline, PoolConfig, Port};
use wirespeed_core::{Runtime, RuntimeConfig, ShardCtx, ShardReport, Stage, wire::ip_proto::ICMP};
use wirespeed_pcap::{PcapOutput::PerQueue, PcapPort};
use wirespeed_stages::{AeadAlgorithm::Aes128Gcm, Classify, Direction::Outbound, EspEncrypt, Forward};
use wirespeed_stages::{FibBuilder, NextHop, PolicyAction, SaConfig, SaSet, SecurityPolicy, Selector, Spd};

/// This appliance's tunnel address (the outer source of its ESP packets).
pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
/// The peer gateway's tunnel address.
pub const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
/// SPI of the tunnel's outbound SA (owned by shard 0).
pub const SPI: u32 = 0x1000;
/// The LAN and its router (the capture's 131.151.1.x hosts above .127 are beyond it: no route).
pub const LAN: (&str, &str) = ("131.151.1.0/25", "131.151.1.126");
/// The servers and their router; LAN → servers traffic is tunnelled by shard 0.
pub const SERVERS: (&str, &str) = ("131.151.32.0/24", "131.151.32.254");
/// MACs of the LAN's router, the servers' router, and the appliance.
pub const MACS: [[u8; 6]; 3] = [[2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 32, 1], [2, 0, 0, 0, 0, 1]];

/// The firewall's state, which each shard reports when it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirewallState {
    /// Packets let through.
    pub passed: u64,
    /// Packets denied (counted under the firewall's own drop reason).
    pub denied: u64,
}

/// The appliance's own stage: denies ICMP under its own drop reason.
pub struct Firewall(DropReason, FirewallState);
impl<B: PacketBuf> Stage<B> for Firewall {
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        let Firewall(deny, seen) = self;
        batch.keep_or_drop(cx, |p| {
            let icmp = p.meta().l4_proto == ICMP;
            *(if icmp { &mut seen.denied } else { &mut seen.passed }) += 1;
            if icmp { Err(*deny) } else { Ok(()) }
        });
    }
}

/// Runs the appliance on `input` to its end, writing `output` (one file per shard: see
/// `wirespeed_pcap::queue_file`); shard 0 reports `(Option<FirewallState>, Option<EspStats>)`,
/// shard 1 an `Option<FirewallState>` (each stage found by its type: `None` if absent).
pub fn run(input: &Path, output: &Path, keymat: &[u8]) -> Result<Vec<ShardReport>, Box<dyn Error>> {
    let deny = DropReason::register("fw_icmp_denied")?;
    let pool = BufferPool::new(PoolConfig::default())?;
    let mut port = PcapPort::builder(pool).input(input).queues(2).output(PerQueue(output.into())).build()?;
    let ((rx0, tx0), (_, tx1)) = (port.queue_pair(0)?, port.queue_pair(1)?); // queue 1: no input, Tx only
    // Symmetric RSS in software: shard 0 dispatches, shard 1 receives.
    let symmetric = RssConfig { mode: Sort, ..RssConfig::default() };
    let (fabric, engine) = (DispatchFabric::new(1, 2, 64)?, SteeringEngine::rss_only(&symmetric, 2)?);
    let dispatcher = fabric.fixed_dispatcher(0, engine, Some(0))?;
    let mut fib = FibBuilder::new();
    for ((net, router), mac) in [LAN, SERVERS].into_iter().zip(MACS) {
        fib.route_prefix(net.parse()?, NextHop::Gateway(router.parse()?)).neighbor(router.parse()?, mac, 0);
    }
    let mut fib = Publisher::new(fib.build()?);
    let sa = SaConfig::tunnel(SPI, Outbound { shard: 0 }, Aes128Gcm, keymat, LOCAL, REMOTE);
    let selector = Selector::between(LAN.0.parse()?, SERVERS.0.parse()?);
    let spd = Spd::new(vec![SecurityPolicy { selector, action: PolicyAction::Protect { spis: vec![SPI] } }]);
    let mut sad = Publisher::new(SaSet::from_configs(&[sa], &spd)?);
    let mut l3 = || {
        (Classify::default(), Firewall(deny, Default::default()), Forward::new(fib.subscribe(), &MACS[2..]))
    };
    let (l3_0, l3_1, encrypt, rx1) = (l3(), l3(), EspEncrypt::new(sad.subscribe()), fabric.receiver(1)?);
    let rt = Runtime::builder(RuntimeConfig { pinning: Pinning::None, ..RuntimeConfig::default() })
        .shard(move |_| {
            let pipeline = Pipeline::new(rx0, tx0, (dispatcher, l3_0, encrypt));
            pipeline.with_report(|s| {
                (s.get::<Firewall>().map(|f| f.1), s.get::<EspEncrypt>().map(|e| *e.stats()))
            })
        })
        .shard(move |_| Pipeline::new(rx1, tx1, l3_1).with_report(|s| s.get::<Firewall>().map(|f| f.1)))
        .launch()?;
    Ok(rt.wait_finished()?)
}
