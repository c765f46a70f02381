//! The software-dispatch layout through the real runtime (issue 10 item 1): a single-queue pcap
//! input received on shard 0, whose first stage is the RSS `Dispatcher`, and shard 1 receiving
//! from a `DispatchRx`. End of input must propagate through the dispatcher, so
//! `Runtime::wait_finished` returns; every frame must come out once, on the shard the steering
//! engine names; receive counters must count each packet once.

use std::sync::Arc;
use std::time::Duration;

use wirespeed_core::epoch::Publisher;
use wirespeed_core::rss::{
    DispatchFabric, RssConfig, RssGroup, RssHasher, SteeringEngine, SteeringPlan, SymmetricMode,
};
use wirespeed_core::runtime::{Pinning, Runtime, RuntimeConfig, ShardOutcome};
use wirespeed_core::{BufferPool, Pipeline, PoolBuf, PoolConfig, Port};
use wirespeed_pcap::{CaptureReader, PcapOutput, PcapPort, PcapWriter, TxTimestamp, queue_file};

/// A UDP/IPv4 frame of flow `i` (addresses and ports vary with `i`), direction by `reply`.
fn udp_frame(i: u16, reply: bool) -> Vec<u8> {
    let mut f = wirespeed_core::backend::null::udp4_frame(80);
    let (a, b) = ([10, 0, (i >> 8) as u8, i as u8], [192, 0, 2, (i % 7) as u8]);
    let (sp, dp) = (1024 + i, 53u16);
    let (src, dst, sport, dport) = if reply { (b, a, dp, sp) } else { (a, b, sp, dp) };
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f
}

fn frames_of(path: &std::path::Path) -> Vec<Vec<u8>> {
    let mut r = CaptureReader::open(path).unwrap();
    let mut out = Vec::new();
    while let Some(f) = r.next_frame() {
        out.push(f.unwrap().data.to_vec());
    }
    out
}

#[test]
fn pcap_rx_with_dispatcher_on_shard0_and_dispatch_rx_on_shard1_finishes() {
    let dir = std::env::temp_dir().join(format!("wirespeed-dispatch-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.pcap");
    let mut w = PcapWriter::create(&input).unwrap();
    let mut sent = Vec::new();
    for round in 0..6u16 {
        for flow in 0..200u16 {
            let f = udp_frame(flow, round % 2 == 1);
            w.write_frame(&f, 0).unwrap();
            sent.push(f);
        }
    }
    w.flush().unwrap();
    drop(w);

    // One input file, two queue pairs: queue 1 has no input (its Rx is at its end), only a Tx.
    let pool = BufferPool::new(PoolConfig { buffers: 4096, ..PoolConfig::default() }).unwrap();
    let out = dir.join("out.pcap");
    let mut port = PcapPort::builder(pool)
        .input(&input)
        .queues(2)
        .output(PcapOutput::PerQueue(out.clone()))
        .tx_timestamp(TxTimestamp::Constant(0))
        .build()
        .unwrap();
    let (rx0, tx0) = port.queue_pair(0).unwrap();
    let (_rx1, tx1) = port.queue_pair(1).unwrap();

    let hasher = RssHasher::new(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() }).unwrap();
    let engine =
        Arc::new(SteeringEngine::new(hasher, SteeringPlan::rss_only(RssGroup::first(2)), 2).unwrap());
    let reta = engine.default_reta().unwrap();
    let mut reta_pub = Publisher::new(reta.clone());
    let fabric = DispatchFabric::<PoolBuf>::new(1, 2, 1024).unwrap();
    let dispatcher = fabric.dispatcher(0, engine.clone(), reta_pub.subscribe(), Some(0)).unwrap();
    let receiver = fabric.receiver(1).unwrap();

    // Default loop options: shards idle at the end of input until stopped — the case that used
    // to hang, because the dispatcher never told shard 1 that input had ended.
    let cfg = RuntimeConfig { pinning: Pinning::None, ..RuntimeConfig::default() };
    let rt = Runtime::builder(cfg)
        .shard(move |_| Ok::<_, String>(Pipeline::new(rx0, tx0, (dispatcher,))))
        .shard(move |_| Ok::<_, String>(Pipeline::new(receiver, tx1, ())))
        .launch()
        .unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(rt.wait_finished());
    });
    let reports = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("wait_finished returns in the dispatcher layout")
        .unwrap();
    drop(port);

    for r in &reports {
        assert_eq!(r.outcome, ShardOutcome::Stopped);
    }
    let (c0, c1) = (reports[0].counters(), reports[1].counters());
    // Each packet is received once: by the shard that processes it.
    assert_eq!(c0.rx_packets + c1.rx_packets, sent.len() as u64, "{c0} / {c1}");
    assert_eq!(c0.handed_off, c1.rx_packets);
    assert!(c0.rx_packets > 0 && c1.rx_packets > 0, "both shards get traffic: {c0} / {c1}");
    for c in [c0, c1] {
        assert_eq!(c.rx_packets, c.tx_packets + c.total_drops(), "{c}");
        assert_eq!(c.total_drops(), 0, "{c}");
    }
    // Every frame came out once, on the queue the steering engine names, in input order per queue.
    let outs = [frames_of(&queue_file(&out, 0)), frames_of(&queue_file(&out, 1))];
    for (q, frames) in outs.iter().enumerate() {
        let want: Vec<&Vec<u8>> =
            sent.iter().filter(|f| engine.decide_frame(f, &reta).queue() == Some(q as u16)).collect();
        assert_eq!(frames.len(), want.len(), "queue {q}");
        assert!(frames.iter().zip(want).all(|(a, b)| a == b), "queue {q}: frames differ or out of order");
    }
    let _ = std::fs::remove_dir_all(dir);
}
