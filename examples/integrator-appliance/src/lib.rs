//! The appliance of issue 10, built the way a third party builds one: only the public API of
//! `wirespeed-core`, `wirespeed-stages` and `wirespeed-pcap`, nothing private.
//!
//! Two shards, one capture file as input. Shard 0 receives it and runs the software RSS
//! `Dispatcher` (symmetric Toeplitz) as its first stage, keeping its own flows and handing the
//! others to shard 1, which receives them through a `DispatchRx`. Both shards then run classify,
//! the appliance's own firewall (ICMP denied under its own drop reason `fw_icmp_denied`) and
//! forward (LPM, TTL, MAC rewrite); shard 0 also encrypts LAN → servers traffic into an ESP
//! tunnel. Each shard writes its own output capture, and reports its firewall's state when it
//! ends. The test in `tests/appliance.rs` runs it on a real capture and checks the output.
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use wirespeed_core::epoch::Publisher;
use wirespeed_core::rss::{
    DispatchFabric, RssConfig, RssGroup, RssHasher, SteeringEngine, SteeringPlan, SymmetricMode,
};
use wirespeed_core::wire::ip_proto;
use wirespeed_core::{
    Batch, BufferPool, DropReason, PacketBuf, Pipeline, PoolConfig, Port, Runtime, RuntimeConfig,
};
use wirespeed_core::{ShardCtx, ShardReport, Stage};
use wirespeed_pcap::{PcapOutput, PcapPort, TxTimestamp};
use wirespeed_stages::esp::{AeadAlgorithm, Direction, SaConfig, SecurityAssociation};
use wirespeed_stages::{Classify, EspEncrypt, EspStats, FibBuilder, Forward, NextHop, PolicyAction, SaSet};
use wirespeed_stages::{SecurityPolicy, Selector, Spd};

/// The tunnel: this appliance's WAN address, the peer gateway's, the SPI, and what it protects.
pub const LOCAL: &str = "192.0.2.1";
/// The peer gateway.
pub const REMOTE: &str = "198.51.100.7";
/// SPI of shard 0's outbound SA.
pub const SPI: u32 = 0x1000;
/// Protected traffic: from the LAN to the servers. (The capture's hosts above .127 are not on
/// it: no route.)
pub const LAN: &str = "131.151.1.0/25";
/// The servers.
pub const SERVERS: &str = "131.151.32.0/24";
/// Next-hop MACs towards the LAN and the servers, and the appliance's own.
pub const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
/// Next hop towards the servers.
pub const SERVERS_MAC: [u8; 6] = [2, 0, 0, 0, 32, 1];
/// The appliance's MAC.
pub const OWN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// The firewall's state, as each shard reports it at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardSummary {
    /// Packets the firewall let through.
    pub passed: u64,
    /// Packets it denied (counted under its own drop reason).
    pub denied: u64,
    /// The ESP stage's statistics, on the shard that has one.
    pub esp: Option<EspStats>,
}

/// The appliance's own stage: denies ICMP under its own drop reason.
pub struct Firewall(DropReason, ShardSummary);
impl<B: PacketBuf> Stage<B> for Firewall {
    fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
        let Firewall(deny, seen) = self;
        batch.keep_or_drop(cx, |p| {
            let icmp = p.meta().l4_proto == ip_proto::ICMP;
            *(if icmp { &mut seen.denied } else { &mut seen.passed }) += 1;
            if icmp { Err(*deny) } else { Ok(()) }
        });
    }
}

/// Runs the appliance on `input` until its end; writes `output` (one file per shard, see
/// `wirespeed_pcap::queue_file`) and returns each shard's report, holding a [`ShardSummary`].
pub fn run(
    input: &Path,
    output: &Path,
    keymat: &[u8],
) -> Result<Vec<ShardReport>, Box<dyn std::error::Error>> {
    let deny = DropReason::register("fw_icmp_denied")?;
    let pool = BufferPool::new(PoolConfig { buffers: 4096, ..PoolConfig::default() })?;
    let mut port = PcapPort::builder(pool)
        .input(input)
        .queues(2)
        .output(PcapOutput::PerQueue(output.into()))
        .tx_timestamp(TxTimestamp::Constant(0))
        .build()?;
    let ((rx0, tx0), (_, tx1)) = (port.queue_pair(0)?, port.queue_pair(1)?);
    // Symmetric RSS in software: shard 0 dispatches, shard 1 receives.
    let hasher = RssHasher::new(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() })?;
    let engine = Arc::new(SteeringEngine::new(hasher, SteeringPlan::rss_only(RssGroup::first(2)), 2)?);
    let mut reta = Publisher::new(engine.default_reta()?);
    let fabric = DispatchFabric::new(1, 2, 64)?;
    let (dispatcher, dispatch_rx) =
        (fabric.dispatcher(0, engine, reta.subscribe(), Some(0))?, fabric.receiver(1)?);
    // Routes, and the tunnel's SA and policy (shard 0's outbound SA).
    let mut fib = FibBuilder::new();
    fib.route_prefix(LAN.parse()?, NextHop::Gateway("131.151.1.126".parse()?)).neighbor(
        "131.151.1.126".parse()?,
        LAN_MAC,
        0,
    );
    fib.route_prefix(SERVERS.parse()?, NextHop::Gateway("131.151.32.254".parse()?)).neighbor(
        "131.151.32.254".parse()?,
        SERVERS_MAC,
        0,
    );
    let mut routes = Publisher::new(fib.build()?);
    let (local, remote): (IpAddr, IpAddr) = (LOCAL.parse()?, REMOTE.parse()?);
    let sa = SaConfig::tunnel(
        SPI,
        Direction::Outbound { shard: 0 },
        AeadAlgorithm::Aes128Gcm,
        keymat,
        local,
        remote,
    );
    let policy = SecurityPolicy {
        selector: Selector::between(LAN.parse()?, SERVERS.parse()?),
        action: PolicyAction::Protect { spis: vec![SPI] },
    };
    let mut sad =
        Publisher::new(SaSet::new([Arc::new(SecurityAssociation::new(&sa)?)], &Spd::new(vec![policy]))?);
    let mut l3 = || {
        (
            Classify::default(),
            Firewall(deny, ShardSummary::default()),
            Forward::new(routes.subscribe(), &[OWN_MAC]),
        )
    };
    let (l3_0, l3_1, encrypt) = (l3(), l3(), EspEncrypt::new(sad.subscribe()));
    let rt = Runtime::builder(RuntimeConfig { cores: Some(vec![]), ..RuntimeConfig::default() })
        .shard(move |_| {
            Ok::<_, String>(
                Pipeline::new(rx0, tx0, (dispatcher, l3_0, encrypt))
                    .with_report(|(_, (_, fw, _), esp)| ShardSummary { esp: Some(*esp.stats()), ..fw.1 }),
            )
        })
        .shard(move |_| Ok::<_, String>(Pipeline::new(dispatch_rx, tx1, l3_1).with_report(|(_, fw, _)| fw.1)))
        .launch()?;
    Ok(rt.wait_finished()?)
}
