//! The offline demo: synthetic capture → N-shard pipeline on the pcap backend → output captures.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use wirespeed_core::epoch::Publisher;
use wirespeed_core::rss::{RssConfig, RssGroup, RssHasher, SteeringEngine, SteeringPlan, SymmetricMode};
use wirespeed_core::{
    BufferPool, DropReason, PerShard, Pipeline, PoolConfig, Runtime, RuntimeConfig, ShardCounters,
};
use wirespeed_pcap::{CaptureReader, PcapOutput, PcapPort, PcapWriter, TxTimestamp, queue_file};
use wirespeed_stages::classify::{Classify, ClassifyConfig};
use wirespeed_stages::esp::EspEncrypt;
use wirespeed_stages::forward::{Fib, FibBuilder, FibError, Forward, NextHop};

use crate::GatewayError;
use crate::traffic;
use crate::tunnel::{self, Peer};

/// Demo settings.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Output directory (temp dir when `None`).
    pub out: Option<PathBuf>,
    /// Shards.
    pub shards: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self { out: None, shards: 2 }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GatewayError + '_ {
    move |source| GatewayError::Io { path: path.to_path_buf(), source }
}

/// Runs the demo.
pub fn run(opts: &DemoOptions) -> Result<(), GatewayError> {
    let dir = match &opts.out {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("wirespeed-demo-{}", std::process::id())),
    };
    // Refuse FIFOs, devices and the like before opening anything (opening a FIFO blocks).
    let captures: Vec<PathBuf> = std::iter::once(dir.join("input.pcap"))
        .chain((0..opts.shards).map(|q| queue_file(&dir.join("output.pcap"), q as u16)))
        .collect();
    crate::outpath::check_output_paths(&dir, &captures)?;
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;

    // 1. Synthetic traffic.
    let flows = traffic::demo_flows();
    let frames = traffic::frames(&flows);
    let input = dir.join("input.pcap");
    let mut w = PcapWriter::create(&input)?;
    for (ts, f) in &frames {
        w.write_frame(f, *ts)?;
    }
    w.flush()?;
    drop(w);
    let v6 = flows.iter().filter(|f| f.src.is_ipv6()).count();
    println!("RSS: Toeplitz, Microsoft key, symmetric sort mode, {} queues", opts.shards);
    println!(
        "generated {} frames in {} flows ({} IPv4, {} IPv6; TCP and UDP) -> {}",
        frames.len(),
        flows.len(),
        flows.len() - v6,
        v6,
        input.display()
    );

    // 2. The pcap port: the one input spread over the shards' queues by the same symmetric
    //    Toeplitz hash a NIC would use (so both directions of a flow meet on one shard),
    //    one output capture per queue.
    let pool = BufferPool::new(PoolConfig { buffers: 1024 * opts.shards.max(1), ..PoolConfig::default() })?;
    let output = dir.join("output.pcap");
    let mut port = PcapPort::builder(pool)
        .name("demo")
        .spread_input(&input, demo_rss(opts.shards)?)
        .queues(opts.shards as u16)
        .output(PcapOutput::PerQueue(output.clone()))
        .tx_timestamp(TxTimestamp::Constant(1_764_000_000_000_000_000))
        .build()?;
    let queues = PerShard::queue_pairs(&mut port, opts.shards)?;

    // 3. Routing: remote sites behind the WAN router, published to the shards by epoch.
    let fib = demo_fib().map_err(|e| GatewayError::Check(format!("demo routes: {e}")))?;
    let mut routes = Publisher::new(fib);
    let subs = PerShard::subscribers(&mut routes, opts.shards);
    // IPsec: our SAD/SPD (one outbound SA per shard and policy), published by epoch too.
    let mut sad = Publisher::new(tunnel::local_sas(opts.shards).map_err(GatewayError::Check)?);
    let sa_subs = PerShard::subscribers(&mut sad, opts.shards);
    let classify_cfg = ClassifyConfig {
        own_ipv4: vec![GATEWAY_V4.parse().expect("literal")],
        own_ipv6: vec![GATEWAY_V6.parse().expect("literal")],
        ..ClassifyConfig::default()
    };

    // 4. One shard per queue, each building and owning its pipeline on its own thread:
    //    pcap Rx → classify → forward (LPM, TTL, checksum, MAC rewrite) → ESP encrypt (SPD
    //    lookup, this shard's SA, tunnel encapsulation in place) → pcap Tx.
    let cfg = RuntimeConfig {
        shards: opts.shards,
        loop_options: wirespeed_core::LoopOptions { exit_when_finished: true, ..Default::default() },
        name: "gateway".into(),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::launch(cfg, move |shard| {
        let (rx, tx) = queues.take(shard)?;
        let stages = (
            Classify::new(classify_cfg.clone()),
            Forward::new(subs.take(shard)?, &[traffic::GATEWAY_MAC]),
            EspEncrypt::new(sa_subs.take(shard)?),
        );
        Ok::<_, wirespeed_core::runtime::HandOutError>(Pipeline::new(rx, tx, stages))
    })?;
    for s in 0..rt.shards() {
        if let Some(p) = rt.placement(s) {
            println!(
                "shard {s}: core {}, NUMA node {}",
                p.core.map_or("unpinned".into(), |c| c.to_string()),
                p.numa_node.map_or("unknown".into(), |n| n.to_string())
            );
        }
    }
    let stats = rt.wait_finished()?;

    routes.reclaim();
    sad.reclaim();

    // 5. Report and check.
    let mut total = ShardCounters::default();
    for s in &stats {
        println!("shard {}: {}", s.shard(), s.counters());
        total.accumulate(s.counters());
    }
    println!("total:   {total}");
    // The peer gateway's view: every output frame must be ESP from us to the peer that its
    // inbound SAs authenticate and decrypt to exactly one of the packets we forwarded.
    let mut expected = expected_inner(&flows);
    let mut peer = Peer::new(opts.shards, pool).map_err(GatewayError::Check)?;
    let mut per_spi = std::collections::BTreeMap::<u32, u64>::new();
    let mut written = 0u64;
    for q in 0..opts.shards as u16 {
        let path = queue_file(&output, q);
        let mut r = CaptureReader::open(&path)?;
        let mut n = 0u64;
        while let Some(f) = r.next_frame() {
            let f = f?;
            let spi = check_tunneled(f.data, &mut peer, &mut expected)
                .map_err(|why| GatewayError::Check(format!("{}: frame {n}: {why}", path.display())))?;
            *per_spi.entry(spi).or_default() += 1;
            n += 1;
        }
        println!("output queue {q}: {n} ESP frames -> {}", path.display());
        written += n;
    }
    for (spi, n) in &per_spi {
        let v6 = (spi & 0xf000) == 0x6000;
        println!(
            "  SPI {spi:#06x} (shard {}, {} inner, {}): {n} packets, all authenticated and decrypted by the peer",
            spi & 0xfff,
            if v6 { "IPv6" } else { "IPv4" },
            if v6 { "ChaCha20-Poly1305" } else { "AES-128-GCM" },
        );
    }
    let missing: usize = expected.values().sum();
    if missing != 0 {
        return Err(GatewayError::Check(format!("{missing} forwarded packets never reached the peer")));
    }
    if total.rx_packets != frames.len() as u64 {
        return Err(GatewayError::Check(format!("received {} of {} frames", total.rx_packets, frames.len())));
    }
    if written != total.tx_packets || total.rx_packets != total.tx_packets + total.total_drops() {
        return Err(GatewayError::Check(format!(
            "counters disagree: rx {}, tx {}, drops {}, written {written}",
            total.rx_packets,
            total.tx_packets,
            total.total_drops()
        )));
    }
    check_drops(&flows, &total)?;
    println!(
        "ok: every frame accounted for ({} forwarded, {} dropped)",
        total.tx_packets,
        total.total_drops()
    );
    Ok(())
}

/// RSS of the demo port: Toeplitz with the Microsoft key, symmetric `sort` mode, every hash type,
/// the default round-robin RETA over one queue per shard — the choice a NIC would make.
fn demo_rss(shards: usize) -> Result<SteeringEngine, GatewayError> {
    let queues = u16::try_from(shards).map_err(|_| GatewayError::Check(format!("{shards} shards")))?;
    let rss = |e: wirespeed_core::rss::RssError| GatewayError::Check(format!("demo RSS: {e}"));
    let hasher =
        RssHasher::new(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() }).map_err(rss)?;
    SteeringEngine::new(hasher, SteeringPlan::rss_only(RssGroup::first(queues)), queues).map_err(rss)
}

/// What the peer must find inside the tunnel: the IP bytes of every packet of every flow the
/// gateway forwards (routed, TTL above 1), as forwarded (TTL/hop limit one lower, IPv4 checksum
/// updated), with multiplicity.
fn expected_inner(flows: &[traffic::Flow]) -> std::collections::HashMap<Vec<u8>, usize> {
    let mut m = std::collections::HashMap::new();
    for f in flows.iter().filter(|f| routed(f) && f.ttl > 1) {
        for seq in 0..f.packets {
            let mut ip = traffic::frame(f, seq as u32)[14..].to_vec();
            if f.src.is_ipv4() {
                ip[8] -= 1;
                ip[10..12].copy_from_slice(&[0, 0]);
                let c = traffic::checksum(&[&ip[..20]]);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
            } else {
                ip[7] -= 1;
            }
            *m.entry(ip).or_insert(0) += 1;
        }
    }
    m
}

/// An output frame is ESP in IPv4 from our WAN address to the peer, addressed to the WAN
/// router, and decrypts to a packet we forwarded; returns its SPI.
fn check_tunneled(
    f: &[u8],
    peer: &mut Peer,
    expected: &mut std::collections::HashMap<Vec<u8>, usize>,
) -> Result<u32, String> {
    if f.len() < 34 || f[0..6] != WAN_ROUTER_MAC || f[6..12] != traffic::GATEWAY_MAC || f[12..14] != [8, 0] {
        return Err("not an IPv4 frame from the gateway to the WAN router".into());
    }
    if traffic::checksum(&[&f[14..34]]) != 0 || f[23] != 50 {
        return Err("outer header is not a valid IPv4 ESP header".into());
    }
    let outer: [IpAddr; 2] =
        [IpAddr::from([f[26], f[27], f[28], f[29]]), IpAddr::from([f[30], f[31], f[32], f[33]])];
    let want: [IpAddr; 2] = [tunnel::LOCAL.parse().expect("literal"), tunnel::PEER.parse().expect("literal")];
    if outer != want {
        return Err(format!("outer addresses {} -> {}", outer[0], outer[1]));
    }
    let (spi, inner) = peer.decrypt(f)?;
    match expected.get_mut(&inner) {
        Some(n) if *n > 0 => *n -= 1,
        _ => return Err(format!("SPI {spi:#x} carried a packet that was not forwarded (or twice)")),
    }
    Ok(spi)
}

/// The demo's refused flows must show up under exactly their drop reasons.
fn check_drops(flows: &[traffic::Flow], total: &ShardCounters) -> Result<(), GatewayError> {
    let count = |f: &dyn Fn(&traffic::Flow) -> bool| -> u64 {
        flows.iter().filter(|fl| f(fl)).map(|fl| fl.packets as u64).sum()
    };
    let expected = [
        (DropReason::NoRoute, count(&|f| !routed(f))),
        (DropReason::TtlExpired, count(&|f| routed(f) && f.ttl <= 1)),
    ];
    for (reason, n) in expected {
        if total.drops_of(reason) != n {
            return Err(GatewayError::Check(format!(
                "expected {n} {} drops, counted {}",
                reason.name(),
                total.drops_of(reason)
            )));
        }
    }
    let all: u64 = expected.iter().map(|(_, n)| n).sum();
    if total.total_drops() != all {
        return Err(GatewayError::Check(format!("unexpected drops: {total}")));
    }
    Ok(())
}

/// The gateway's own LAN addresses.
const GATEWAY_V4: &str = "10.1.0.1";
const GATEWAY_V6: &str = "fd00:1::1";
/// The WAN router that leads to the remote sites.
const WAN_ROUTER_V4: &str = "192.0.2.1";
const WAN_ROUTER_V6: &str = "fd00:ff::1";
const WAN_ROUTER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0xff, 0x01];

/// Routes of the demo: remote sites 10.2.0.0/16 and fd00:2::/64 via the WAN router.
fn demo_fib() -> Result<Fib, FibError> {
    let mut b = FibBuilder::new();
    let r4: std::net::IpAddr = WAN_ROUTER_V4.parse().expect("literal");
    let r6: std::net::IpAddr = WAN_ROUTER_V6.parse().expect("literal");
    b.route("10.2.0.0".parse().expect("literal"), 16, NextHop::Gateway(r4))?;
    b.route("fd00:2::".parse().expect("literal"), 64, NextHop::Gateway(r6))?;
    b.neighbor(r4, WAN_ROUTER_MAC, 0);
    b.neighbor(r6, WAN_ROUTER_MAC, 0);
    b.build()
}

/// True when the demo's routes cover the flow's destination.
fn routed(f: &traffic::Flow) -> bool {
    match f.dst {
        std::net::IpAddr::V4(a) => a.octets()[..2] == [10, 2],
        std::net::IpAddr::V6(a) => a.segments()[..4] == [0xfd00, 2, 0, 0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_runs_end_to_end_and_accounts_for_every_frame() {
        let dir = std::env::temp_dir().join(format!("wirespeed-demo-test-{}", std::process::id()));
        run(&DemoOptions { out: Some(dir.clone()), shards: 2 }).expect("demo succeeds");
        // Both shards wrote their capture; together they hold every generated frame.
        let mut n = 0;
        for q in 0..2 {
            let mut r = CaptureReader::open(queue_file(&dir.join("output.pcap"), q)).unwrap();
            while let Some(f) = r.next_frame() {
                f.unwrap();
                n += 1;
            }
        }
        let flows = traffic::demo_flows();
        let refused: usize = flows.iter().filter(|f| !routed(f) || f.ttl <= 1).map(|f| f.packets).sum();
        assert!(refused > 0, "the demo includes flows the gateway must refuse");
        assert_eq!(n, traffic::frames(&flows).len() - refused);
        let _ = std::fs::remove_dir_all(dir);
    }
}
