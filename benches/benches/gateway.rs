//! One shard of the example IPsec gateway, its whole data path, fed simple IMIX.
//!
//! - `gateway/encrypt_imix`: LAN Rx → classify → punt check → route (LPM, TTL, MACs) → SPD →
//!   ESP encrypt (AES-128-GCM tunnel) → WAN Tx.
//! - `gateway/decrypt_imix`: WAN Rx → classify → punt check → cleartext guard → ESP decrypt (SA
//!   by SPI, inbound selector check) → route → LAN Tx.
//!
//! The worker is the gateway's own data shard ([`ipsec_gateway::gateway::DataShard`]: both Rx
//! queues polled, stages, Tx by output port), built from the demo's configuration with one shard;
//! the other direction's Rx is idle. Rx copies each frame into a pool buffer (as a NIC's DMA would
//! fill it); Tx frees the buffers (null port). IMIX is 7:4:1 of 64, 594 and 1518-byte frames on
//! the wire (60, 590 and 1514 bytes without the FCS), interleaved, over six UDP flows. An
//! iteration is one batch of 32 packets; the throughput unit is packets.
//!
//! Decrypt replays one set of ESP packets over and over, so its inbound SA runs without the
//! replay window (which would drop the repeats; the check costs a few ns per packet).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipsec_gateway::config::GatewayConfig;
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::gateway::{DataShard, Shared, Tables};
use wirespeed_core::backend::null::{NullConfig, NullPort, NullTx};
use wirespeed_core::{
    BATCH_SIZE, Batch, BufferPool, PacketBuf, PacketMeta, PoolBuf, PoolConfig, Port, RxQueue, ShardCtx,
    Stage, Worker,
};

/// Frame sizes without FCS, in IMIX order: 7 × 64, 4 × 594, 1 × 1518 on the wire, interleaved.
const IMIX: [usize; 12] = [60, 590, 60, 60, 590, 60, 1514, 60, 590, 60, 60, 590];

/// Rx that cycles through pre-built frames, copying each into a fresh pool buffer.
struct CycleRx {
    pool: BufferPool,
    frames: Vec<Vec<u8>>,
    next: usize,
    port: u16,
}

impl RxQueue for CycleRx {
    type Buf = PoolBuf;
    fn rx_burst(&mut self, out: &mut Batch<PoolBuf>) -> usize {
        let Self { pool, frames, next, port } = self;
        if frames.is_empty() {
            return 0;
        }
        pool.alloc_batch(out, PacketMeta::received(*port, 0), |b| {
            let _ = b.copy_from(&frames[*next]);
            *next = (*next + 1) % frames.len();
        })
    }
}

/// A port whose Rx cycles through `frames` (none: idle) and whose Tx frees (null).
struct BenchPort {
    pool: BufferPool,
    frames: Vec<Vec<u8>>,
    id: u16,
    null: NullPort,
}

impl BenchPort {
    fn new(pool: BufferPool, id: u16, frames: Vec<Vec<u8>>) -> Self {
        Self {
            pool,
            frames,
            id,
            null: NullPort::new(NullConfig { port_id: id, ..NullConfig::default() }, pool),
        }
    }
}

impl Port for BenchPort {
    type Rx = CycleRx;
    type Tx = NullTx;
    type Buf = PoolBuf;
    fn info(&self) -> wirespeed_core::PortInfo {
        self.null.info()
    }
    fn queue_pair(&mut self, queue: u16) -> Result<(CycleRx, NullTx), wirespeed_core::PortError> {
        let (_, tx) = self.null.queue_pair(queue)?;
        let frames = std::mem::take(&mut self.frames);
        Ok((CycleRx { pool: self.pool, frames, next: 0, port: self.id }, tx))
    }
}

/// One data shard of the gateway `cfg` with `lan` / `wan` frames on its Rx queues.
fn data_shard(
    cfg: &GatewayConfig,
    tables: &mut Tables,
    pool: BufferPool,
    lan: Vec<Vec<u8>>,
    wan: Vec<Vec<u8>>,
) -> DataShard<BenchPort> {
    let shared = Shared::new(cfg);
    let mut lan = BenchPort::new(pool, 0, lan);
    let mut wan = BenchPort::new(pool, 1, wan);
    let fib = [tables.routes.subscribe(), tables.routes.subscribe()];
    let sas = [tables.sad.subscribe(), tables.sad.subscribe(), tables.sad.subscribe()];
    let learned = [tables.learned.subscribe(), tables.learned.subscribe()];
    DataShard::new(&shared, lan.queue_pair(0).unwrap(), wan.queue_pair(0).unwrap(), fib, learned, sas)
}

fn config(site: Site) -> GatewayConfig {
    let text = configs::config(site, 1, None)
        .replace("direction = \"inbound\"", "direction = \"inbound\"\nreplay_window = 0");
    GatewayConfig::from_toml(&text, None, "bench").expect("demo configuration")
}

/// Site-1 hosts to site-2 hosts, UDP, IMIX sizes, as they arrive at gateway A's LAN port.
fn imix_frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for flow in 0..6u8 {
        for len in IMIX {
            let ip_len = len - 14;
            let mut f = configs::A_LAN_MAC.to_vec();
            f.extend_from_slice(&[0x02, 0, 0, 0, 0x10, 1, 0x08, 0x00]);
            let mut ip = vec![0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0x40, 0, 64, 17, 0, 0];
            ip.extend_from_slice(&[10, 1, 0, 10 + flow, 10, 2, 0, 20 + flow]);
            let c = wirespeed_core::backend::null::ipv4_header_checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
            let udp_len = ip_len - 20;
            f.extend_from_slice(&[0x9c, 0x40 + flow, 0x11, 0x51, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
            f.extend((0..udp_len - 8).map(|i| i as u8));
            out.push(f);
        }
    }
    out
}

fn run(w: &mut DataShard<BenchPort>, cx: &mut ShardCtx, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(w.poll(cx));
    }
    start.elapsed()
}

/// This thread's CPU time (user + system) from `/proc/thread-self/stat`, in clock ticks (USER_HZ,
/// 100 on Linux); `None` off Linux.
fn thread_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The CPU clock in MHz as the kernel reports it (first `cpu MHz` line).
fn cpu_mhz() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines().find(|l| l.starts_with("cpu MHz"))?.split(':').nth(1)?.trim().parse().ok()
}

/// Cycles per packet from this thread's CPU time (not wall time) over about two seconds of
/// batches: on a machine shared with other jobs, wall time counts the time the thread waited for
/// a core; CPU time does not. Printed next to criterion's wall-clock figures.
fn cycles_per_packet(name: &str, p: &mut DataShard<BenchPort>, cx: &mut ShardCtx) {
    let (Some(t0), Some(mhz)) = (thread_cpu_ticks(), cpu_mhz()) else { return };
    let mut batches = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..1000 {
            black_box(p.poll(cx));
        }
        batches += 1000;
    }
    let Some(t1) = thread_cpu_ticks() else { return };
    let cpu_ns = (t1 - t0) as f64 * 1e7; // USER_HZ = 100: 10 ms per tick
    let per_packet = cpu_ns / (batches * BATCH_SIZE as u64) as f64;
    eprintln!(
        "gateway/{name}: {per_packet:.0} ns CPU time per packet = {:.0} cycles at {mhz:.0} MHz ({} packets, {:.2} s CPU of {:.2} s wall)",
        per_packet * mhz / 1000.0,
        batches * BATCH_SIZE as u64,
        cpu_ns / 1e9,
        start.elapsed().as_secs_f64()
    );
}

fn bench_gateway(c: &mut Criterion) {
    let pool = BufferPool::new(PoolConfig { buffers: 4096, ..PoolConfig::default() }).unwrap();
    let a = config(Site::A);
    let mut ta = Tables::new(&a).unwrap();
    let sa = Shared::new(&a);
    let mut enc = data_shard(&a, &mut ta, pool, imix_frames(), Vec::new());
    let mut cx = ShardCtx::new(0);

    // The ESP packets gateway A sends for one round of the IMIX frames, for the decrypt bench.
    let mut esp = Vec::new();
    {
        let mut probe = sa.outbound(ta.routes.subscribe(), ta.learned.subscribe(), ta.sad.subscribe());
        let mut batch: Batch<PoolBuf> = Batch::new();
        let frames = imix_frames();
        for f in &frames {
            let mut b = pool.alloc().unwrap();
            b.copy_from(f).unwrap();
            *b.meta_mut() = PacketMeta::received(0, 0);
            batch.push(b).unwrap();
            if batch.is_full() {
                probe.process(&mut cx, &mut batch);
                esp.extend(batch.iter().map(|p| p.data().to_vec()));
                batch.clear();
            }
        }
        probe.process(&mut cx, &mut batch);
        esp.extend(batch.iter().map(|p| p.data().to_vec()));
    }
    assert_eq!(esp.len(), IMIX.len() * 6, "every IMIX packet is encrypted: {}", cx.counters);
    assert!(esp.iter().all(|f| f[23] == 50));

    let mut g = c.benchmark_group("gateway");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    let before = cx.counters;
    g.bench_function("encrypt_imix", |b| b.iter_custom(|iters| run(&mut enc, &mut cx, iters)));
    cycles_per_packet("encrypt_imix", &mut enc, &mut cx);
    assert_eq!(cx.counters.total_drops(), before.total_drops(), "no drops while benching: {}", cx.counters);

    let bcfg = config(Site::B);
    let mut tb = Tables::new(&bcfg).unwrap();
    let mut dec = data_shard(&bcfg, &mut tb, pool, Vec::new(), esp);
    let mut cx = ShardCtx::new(0);
    g.bench_function("decrypt_imix", |b| b.iter_custom(|iters| run(&mut dec, &mut cx, iters)));
    cycles_per_packet("decrypt_imix", &mut dec, &mut cx);
    assert_eq!(cx.counters.total_drops(), 0, "no drops while benching: {}", cx.counters);
    assert!(cx.counters.tx_packets > 0);
    g.finish();
    ta.routes.reclaim();
    tb.routes.reclaim();
}

criterion_group!(benches, bench_gateway);
criterion_main!(benches);
