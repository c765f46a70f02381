//! A one-port router built only from wirespeed's public API (the integrator's view of the
//! dynamic-neighbor, ICMP-error and MSS-clamp stages, an [`IdlePolicy`] and [`BufWindow`]):
//!
//! classify → forward (next hop resolved from learned neighbors while packets wait in
//! `Resolving`; no route → ICMP Destination Unreachable) → MSS clamp → Tx, on the pcap backend
//! over the vendored `dns_tcp.pcap` (a DNS query over TCP between 192.168.1.11 and
//! 209.87.249.18). The router knows a route to the server's /24 through a router whose MAC it
//! has not learned yet, and no route back to the client: the client's packets are held until the
//! control side (here the main thread, standing in for ARP) publishes the neighbor, then leave
//! with TTL 63 and the SYN's MSS clamped to 1360; the server's answers are turned into ICMP
//! errors. The shard idles as `IDLE` says (`spin`, `busy-poll`, `block`, `adaptive`; default
//! `adaptive`).
//!
//! The `Pipeline` services `Resolving` on polls that receive nothing (`Stage::needs_service`),
//! so held packets leave as soon as their next hop is published, and it reports the end of its
//! input only once nothing is held.
//!
//! Run: `cargo run -p integrator-appliance --example router [OUT.pcap]`.
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use wirespeed_core::epoch::Publisher;
use wirespeed_core::{
    Batch, BufError, BufWindow, BufferPool, IdlePolicy, LoopOptions, PacketBuf, PacketMeta, Pinning,
    Pipeline, PoolBuf, PoolConfig, Port, Runtime, RuntimeConfig, ShardCtx, Stage,
};
use wirespeed_pcap::{CaptureReader, PcapOutput, PcapPort};
use wirespeed_stages::forward::{HoldConfig, HoldCounters, Neighbor, Neighbors, Resolving, resolve_queue};
use wirespeed_stages::icmp::{IcmpConfig, IcmpCounters, IcmpErrors};
use wirespeed_stages::mss::MssClamp;
use wirespeed_stages::{Classify, ClassifyConfig, FibBuilder, Forward, NextHop};

const MY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MY_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 254));
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

/// What the shard reports when it ends.
#[derive(Debug)]
struct Report {
    mss_clamped: u64,
    hold: HoldCounters,
    icmp: IcmpCounters,
}

/// A buffer of the integrator's own (say, a slot of a foreign ring) whose bounds `BufWindow`
/// keeps: every wirespeed stage runs on it unchanged.
struct SlotBuf {
    bytes: Box<[u8; 2048]>,
    window: BufWindow,
    meta: PacketMeta,
}

impl SlotBuf {
    fn new(frame: &[u8]) -> Result<Self, BufError> {
        let mut bytes = Box::new([0; 2048]);
        let window = BufWindow::new(128, frame.len(), bytes.len())?;
        bytes[window.range()].copy_from_slice(frame);
        Ok(Self { bytes, window, meta: PacketMeta::default() })
    }
}

impl PacketBuf for SlotBuf {
    fn data(&self) -> &[u8] {
        &self.bytes[self.window.range()]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.window.range()]
    }
    fn headroom(&self) -> usize {
        self.window.headroom()
    }
    fn tailroom(&self) -> usize {
        self.window.tailroom(self.bytes.len())
    }
    fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        let new = self.window.prepend(n)?;
        Ok(&mut self.bytes[new])
    }
    fn trim_front(&mut self, n: usize) -> Result<(), BufError> {
        self.window.trim_front(n)
    }
    fn set_len(&mut self, len: usize) -> Result<(), BufError> {
        self.window.set_len(len, self.bytes.len())
    }
    fn meta(&self) -> &PacketMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut PacketMeta {
        &mut self.meta
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let input = wirespeed_test_corpus::file("dns_tcp.pcap");
    let out =
        std::env::args().nth(1).map_or_else(|| std::env::temp_dir().join("router-out.pcap"), Into::into);
    let idle: IdlePolicy = std::env::var("IDLE").as_deref().unwrap_or("adaptive").parse()?;

    // The server's /24 through a router not resolved yet; no route to the client's LAN.
    let mut fib = FibBuilder::new();
    fib.route_prefix("209.87.249.0/24".parse()?, NextHop::Gateway(ROUTER));
    let mut fib = Publisher::new(fib.build()?);
    let mut learned = Publisher::new(Neighbors::new());
    let requests = resolve_queue(16);
    let icmp = IcmpConfig { sources: vec![(Some(MY_IP), None)], macs: vec![MY_MAC], ..IcmpConfig::default() };
    let forward = Forward::new(fib.subscribe(), &[MY_MAC])
        .with_neighbors(learned.subscribe())
        .with_icmp_errors(IcmpErrors::new(&icmp));

    let pool = BufferPool::new(PoolConfig::default())?;
    let mut port = PcapPort::builder(pool).input(&input).output(PcapOutput::Shared(out.clone())).build()?;
    let (rx, tx) = port.queue_pair(0)?;
    let stages = (
        Classify::new(ClassifyConfig::default()),
        Resolving::new(forward, requests.clone(), HoldConfig::default()),
        MssClamp::new(1360),
    );
    let router = Pipeline::new(rx, tx, stages).with_report(|s| {
        let forward = s.get::<Resolving<PoolBuf>>().expect("in the pipeline");
        let mss_clamped = s.get::<MssClamp>().map_or(0, MssClamp::clamped);
        Report { mss_clamped, hold: forward.counters(), icmp: forward.forward().icmp_counters() }
    });
    let cfg = RuntimeConfig {
        pinning: Pinning::None,
        loop_options: LoopOptions { exit_when_finished: true, idle, ..LoopOptions::default() },
        ..RuntimeConfig::default()
    };
    let rt = Runtime::builder(cfg).shard(move |_| router).launch()?;

    // The control side: answer the shard's resolution request, as ARP would a little later.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let asked = loop {
        if let Some(ip) = requests.pop() {
            break ip;
        }
        if std::time::Instant::now() > deadline {
            return Err("the shard never asked for its next hop".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    std::thread::sleep(Duration::from_millis(20));
    let mut table = Neighbors::new();
    table.insert(asked, Neighbor { mac: ROUTER_MAC, port: 0 });
    learned.publish(table);
    println!("control: {asked} is at {ROUTER_MAC:02x?}");

    let report = rt.wait_finished()?.remove(0);
    let r = report.try_report::<Report>()?;
    println!("shard 0 ({idle}): {}", report.counters());
    println!("  {r:?}");
    println!("  output: {}", out.display());
    let c = report.counters();
    let ok = c.rx_packets == 11
        && c.tx_packets == 11
        && c.total_drops() == 0
        && r.mss_clamped == 1
        && (r.hold.held, r.hold.released) == (6, 6)
        && r.icmp.unreachable == 5;
    if !ok {
        return Err(format!("unexpected result: {} {r:?}", report.counters()).into());
    }

    // The integrator's own buffer type through the same stages: the first frame is the SYN.
    let syn = CaptureReader::open(&input)?.next_frame().ok_or("empty capture")??.data.to_vec();
    let mut batch = Batch::<SlotBuf>::new();
    batch.push(SlotBuf::new(&syn)?).map_err(|_| "batch full")?;
    let mut cx = ShardCtx::new(0);
    let mut stages = (Classify::new(ClassifyConfig::default()), MssClamp::new(1200));
    stages.process(&mut cx, &mut batch);
    println!(
        "SlotBuf: {} SYN clamped to MSS 1200, {} dropped",
        stages.1.clamped(),
        cx.counters.total_drops()
    );
    if stages.1.clamped() != 1 || cx.counters.total_drops() != 0 {
        return Err("the SYN in a SlotBuf was not clamped".into());
    }
    Ok(())
}

/// `cargo test -p integrator-appliance --example router` runs the example and its checks.
#[test]
fn the_router_example_runs_and_its_counts_check_out() {
    main().unwrap();
}
