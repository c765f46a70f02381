//! `PcapPort` under a real pipeline: corpus captures in, output files compared frame by frame.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use wirespeed_core::rss::{RssConfig, RssGroup, RssHasher, SteeringEngine, SteeringPlan, SymmetricMode};
use wirespeed_core::{
    BufferPool, DropReason, PacketBuf, Pipeline, PoolConfig, Port, PortError, RxQueue, ShardCtx, Worker,
};
use wirespeed_pcap::{
    CaptureReader, LinkType, PcapError, PcapOutput, PcapPort, PcapWriter, TxTimestamp, WriterOptions,
    queue_file,
};

fn pool(buffers: usize, data_room: usize) -> BufferPool {
    BufferPool::new(PoolConfig { buffers, data_room, headroom: 128 }).unwrap()
}

/// Frames of a capture, normalised to Ethernet as the port does.
fn ethernet_frames(path: &Path) -> Vec<Vec<u8>> {
    let mut r = CaptureReader::open(path).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 18];
    while let Some(f) = r.next_frame() {
        let n = f.unwrap().to_ethernet(&mut buf).unwrap();
        out.push(buf[..n].to_vec());
    }
    out
}

fn frames_of(path: &Path) -> Vec<Vec<u8>> {
    let mut r = CaptureReader::open(path).unwrap();
    assert_eq!(r.link_type(), Some(LinkType::Ethernet));
    let mut out = Vec::new();
    while let Some(f) = r.next_frame() {
        out.push(f.unwrap().data.to_vec());
    }
    out
}

/// Runs a pipeline with no stages until its Rx reaches the end, then drains it.
fn run_to_end<P: Port<Buf = wirespeed_core::PoolBuf>>(port: &mut P, q: u16) -> ShardCtx
where
    P::Rx: 'static,
    P::Tx: 'static,
{
    let (rx, tx) = port.queue_pair(q).unwrap();
    let mut pipeline = Pipeline::new(rx, tx, ());
    let mut cx = ShardCtx::new(0);
    let mut polls = 0;
    while !matches!(pipeline.poll(&mut cx), wirespeed_core::Poll::Finished) {
        polls += 1;
        assert!(polls < 1_000_000, "pipeline never finished");
    }
    pipeline.drain(&mut cx);
    cx
}

#[test]
fn corpus_capture_through_a_pipeline_comes_out_identical() {
    let input = corpus_file("mptcp-v0.pcap");
    let out = temp_path("pipeline-out.pcap");
    let mut port = PcapPort::new(pool(256, 2048), [&input], PcapOutput::Shared(out.clone())).unwrap();
    let status = port.status();
    assert_eq!(port.info().queues, 1);
    let cx = run_to_end(&mut port, 0);
    let want = frames_of(&input);
    let got = frames_of(&out);
    assert!(want.len() > 50, "the capture has {} frames", want.len());
    assert_eq!(got, want);
    assert_eq!(cx.counters.rx_packets, want.len() as u64);
    assert_eq!(cx.counters.tx_packets, want.len() as u64);
    assert_eq!(cx.counters.total_drops(), 0);
    assert_eq!((status.rx_frames(0), status.tx_frames(0)), (want.len() as u64, want.len() as u64));
    assert!(status.take_rx_error(0).is_none() && status.take_tx_error(0).is_none());
}

#[test]
fn one_queue_per_input_and_one_file_per_queue() {
    let (a, b) = (corpus_file("mptcp-v0.pcap"), corpus_file("RADIUS-RFC3162.pcap"));
    let base = temp_path("multi.pcap");
    let mut port = PcapPort::builder(pool(512, 2048))
        .port_id(3)
        .input(&a)
        .input(&b)
        .output(PcapOutput::PerQueue(base.clone()))
        .tx_timestamp(TxTimestamp::Constant(1_000_000_000))
        .build()
        .unwrap();
    assert_eq!(port.info().queues, 2);
    // Queues run on their own threads, as shards would.
    let (q0, q1) = (port.queue_pair(0).unwrap(), port.queue_pair(1).unwrap());
    assert!(matches!(port.queue_pair(1), Err(PortError::QueueTaken { queue: 1, .. })));
    assert!(matches!(port.queue_pair(2), Err(PortError::NoSuchQueue { queue: 2, queues: 2, .. })));
    let handles: Vec<_> = [q0, q1]
        .into_iter()
        .enumerate()
        .map(|(q, (rx, tx))| {
            std::thread::spawn(move || {
                let mut p = Pipeline::new(
                    rx,
                    tx,
                    wirespeed_core::PerPacket(move |_: &mut ShardCtx, b: &mut wirespeed_core::PoolBuf| {
                        assert_eq!((b.meta().rx_port, b.meta().rx_queue), (3, q as u16));
                        wirespeed_core::Verdict::Continue
                    }),
                );
                let mut cx = ShardCtx::new(q);
                while !matches!(p.poll(&mut cx), wirespeed_core::Poll::Finished) {}
                p.drain(&mut cx);
                cx.counters.tx_packets
            })
        })
        .collect();
    let sent: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(queue_file(&base, 1).file_name().unwrap(), "multi-q1.pcap");
    // Queue 0 replays an Ethernet capture unchanged; queue 1 a Linux cooked one, normalised.
    assert_eq!(frames_of(&queue_file(&base, 0)), frames_of(&a));
    let q1 = frames_of(&queue_file(&base, 1));
    assert_eq!(q1, ethernet_frames(&b));
    assert!(q1.iter().all(|f| f[..12] == [0; 12]));
    assert_eq!(sent, vec![frames_of(&a).len() as u64, q1.len() as u64]);
    let mut r = CaptureReader::open(queue_file(&base, 1)).unwrap();
    assert_eq!(r.next_frame().unwrap().unwrap().ts_nanos, 1_000_000_000);
}

#[test]
fn rx_counts_what_it_cannot_take() {
    // 10 frames: 6 fit a 100-byte buffer, 2 are larger, 1 is raw IP of unknown version
    // (no EtherType), 1 is a 2-byte runt of a Linux cooked capture.
    let small = ethernet(0x0800, &IPV4_UDP);
    let large = ethernet(0x0800, &[0u8; 200]);
    let mut ng = Ng::new();
    ng.shb(false)
        .idb(1, 0, None, None)
        .idb(101, 0, None, None)
        .idb(113, 0, None, None)
        .idb(127, 0, None, None);
    for i in 0..8 {
        let f = if i % 4 == 3 { &large } else { &small };
        ng.epb(0, i, f, f.len() as u32);
    }
    ng.epb(1, 9, &[0x55; 30], 30).epb(2, 10, &[0, 1], 2).epb(3, 11, &[0; 20], 20);
    let path = temp_path("drops.pcapng");
    std::fs::write(&path, ng.bytes()).unwrap();
    let mut port = PcapPort::builder(pool(64, 100)).input(&path).build().unwrap();
    let cx = run_to_end(&mut port, 0);
    assert_eq!(cx.counters.rx_packets, 6);
    assert_eq!(cx.counters.tx_packets, 6);
    assert_eq!(cx.counters.drops_of(DropReason::TooLarge), 2);
    assert_eq!(cx.counters.drops_of(DropReason::Unsupported), 2, "unknown IP version + radiotap interface");
    assert_eq!(cx.counters.drops_of(DropReason::Truncated), 1);
}

#[test]
fn pool_exhaustion_is_a_counted_drop() {
    let f = ethernet(0x0800, &IPV4_UDP);
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    for i in 0..100 {
        w.write_frame(&f, i).unwrap();
    }
    let reader = CaptureReader::from_reader(std::io::Cursor::new(w.into_inner().unwrap())).unwrap();
    let pool = pool(40, 256);
    let mut port = PcapPort::builder(pool).input_reader(reader).build().unwrap();
    let (mut rx, _tx) = port.queue_pair(0).unwrap();
    // Hold every received buffer: the pool runs dry after 40.
    let mut held = Vec::new();
    let mut drops = 0;
    while !rx.at_end() {
        let mut batch = wirespeed_core::Batch::new();
        rx.rx_burst(&mut batch);
        while let Some((reason, n)) = rx.take_drops() {
            assert_eq!(reason, DropReason::PoolExhausted);
            drops += n;
        }
        held.extend(batch.drain(..));
    }
    assert_eq!(held.len(), 40);
    assert_eq!(drops, 60);
    assert!(held.iter().all(|b| b.data() == &f[..]));
}

#[test]
fn truncated_input_ends_the_queue_with_a_kept_error() {
    let f = ethernet(0x0800, &IPV4_UDP);
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    for i in 0..5 {
        w.write_frame(&f, i).unwrap();
    }
    let mut bytes = w.into_inner().unwrap();
    bytes.truncate(bytes.len() - 10);
    let path = temp_path("cut.pcap");
    std::fs::write(&path, &bytes).unwrap();
    let mut port = PcapPort::builder(pool(64, 2048)).input(&path).build().unwrap();
    let status = port.status();
    let cx = run_to_end(&mut port, 0);
    assert_eq!(cx.counters.tx_packets, 4);
    assert_eq!(cx.counters.drops_of(DropReason::Truncated), 1);
    let e = status.take_rx_error(0).expect("the error is kept");
    assert!(matches!(e, PcapError::Truncated { what: "packet data", .. }), "{e}");
    assert!(e.to_string().contains("cut.pcap"), "{e}");
}

#[test]
fn configuration_errors() {
    let input = corpus_file("mptcp-v0.pcap");
    let e = PcapPort::builder(pool(8, 256)).input(&input).input(&input).queues(1).build().unwrap_err();
    assert!(matches!(e, PcapError::InvalidConfig { field: "queues", .. }), "{e}");
    let opts = WriterOptions { link: LinkType::Raw, ..WriterOptions::default() };
    let e = PcapPort::builder(pool(8, 256))
        .output(PcapOutput::Shared(temp_path("x.pcap")))
        .writer_options(opts)
        .build()
        .unwrap_err();
    assert!(matches!(e, PcapError::InvalidConfig { field: "writer_options.link", .. }), "{e}");
    let e = PcapPort::new(pool(8, 256), ["/nonexistent/in.pcap"], PcapOutput::Discard).unwrap_err();
    assert!(matches!(e, PcapError::Io { op: "open", .. }), "{e}");
    // Writing over an input would truncate it before it is read.
    let copy = temp_path("in-and-out.pcap");
    std::fs::copy(&input, &copy).unwrap();
    let e = PcapPort::new(pool(8, 256), [&copy], PcapOutput::Shared(copy.clone())).unwrap_err();
    assert!(matches!(e, PcapError::InvalidConfig { field: "output", .. }), "{e}");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&input).unwrap(), "input untouched");
    // An output-only port: more queues than inputs; those Rx queues are at their end at once.
    let mut port = PcapPort::builder(pool(8, 256)).queues(2).build().unwrap();
    let (rx, _tx) = port.queue_pair(1).unwrap();
    assert!(rx.at_end());
}

/// A synthetic capture of 48 flows (IPv4/IPv6, TCP/UDP, both directions) spread over three
/// queues by the symmetric flow hash: every frame comes out of exactly one queue, in order, and
/// both directions of each flow come out of the same one.
#[test]
fn one_input_spread_over_queues_by_flow() {
    let input = temp_path("spread-in.pcap");
    let mut w = PcapWriter::create(&input).unwrap();
    let mut flow_of = Vec::new();
    for round in 0..4u16 {
        for flow in 0..48u16 {
            let (v6, proto) = (flow % 2 == 1, if flow % 3 == 0 { 17 } else { 6 });
            let (a, b, pa, pb) = (flow + 1, 1000 + flow, 40000 + flow, 443);
            let (s, d, ps, pd) = if round % 2 == 0 { (a, b, pa, pb) } else { (b, a, pb, pa) };
            w.write_frame(&flow_frame(v6, proto, s, d, ps, pd), 0).unwrap();
            flow_of.push(flow);
        }
    }
    w.flush().unwrap();
    drop(w);
    let base = temp_path("spread.pcap");
    // The same steering a NIC and the software dispatcher use: symmetric Toeplitz and the RETA.
    let hasher = RssHasher::new(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() }).unwrap();
    let engine =
        Arc::new(SteeringEngine::new(hasher, SteeringPlan::rss_only(RssGroup::first(3)), 3).unwrap());
    let reta = engine.default_reta().unwrap();
    let mut port = PcapPort::builder(pool(512, 2048))
        .spread_input(&input, engine.clone())
        .queues(3)
        .output(PcapOutput::PerQueue(base.clone()))
        .build()
        .unwrap();
    let sent: Vec<u64> = (0..3).map(|q| run_to_end(&mut port, q).counters.tx_packets).collect();
    drop(port);
    let all = frames_of(&input);
    let per_queue: Vec<Vec<Vec<u8>>> = (0..3).map(|q| frames_of(&queue_file(&base, q))).collect();
    assert_eq!(sent.iter().sum::<u64>(), all.len() as u64);
    assert!(per_queue.iter().all(|q| q.len() >= all.len() / 8), "uneven spread: {sent:?}");
    // Merged back in capture order the queues give the input again, and each flow (both
    // directions) sits on one queue.
    let mut next = [0usize; 3];
    let mut owner = std::collections::HashMap::new();
    for (f, flow) in all.iter().zip(&flow_of) {
        let q =
            (0..3).find(|&q| per_queue[q].get(next[q]) == Some(f)).expect("frame in some queue, in order");
        next[q] += 1;
        assert_eq!(*owner.entry(*flow).or_insert(q), q, "flow {flow} on two queues");
        assert_eq!(engine.decide_frame(f, &reta).queue(), Some(q as u16), "the dispatcher's choice");
    }
    let e = PcapPort::builder(pool(8, 256)).input(&input).spread_input(&input, engine).build();
    assert!(matches!(e, Err(PcapError::InvalidConfig { field: "spread_input", .. })));
}

/// A spread input's steering may drop a frame or name a queue the port lacks: such frames are
/// nobody's, counted once (by queue 0) as `SteeringDrop`, never silently lost or wrapped.
#[test]
fn spread_steering_drops_are_counted_once() {
    let input = temp_path("spread-drop-in.pcap");
    let mut w = PcapWriter::create(&input).unwrap();
    for i in 0..30u16 {
        w.write_frame(&flow_frame(false, 17, i + 1, 99, 1000 + i, 53), 0).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    // Queue = last byte of the source address modulo 3 (0, 1, 2); 2 is not a queue of this port.
    let steer = |frame: &[u8]| u16::from(frame[29]) % 3;
    let mut port = PcapPort::builder(pool(64, 2048)).spread_input(&input, steer).queues(2).build().unwrap();
    let cx: Vec<ShardCtx> = (0..2).map(|q| run_to_end(&mut port, q)).collect();
    assert_eq!(cx[0].counters.tx_packets, 10);
    assert_eq!(cx[1].counters.tx_packets, 10);
    assert_eq!(cx[0].counters.drops_of(DropReason::SteeringDrop), 10);
    assert_eq!(cx[1].counters.total_drops(), 0);
    let _ = std::fs::remove_file(input);
}

/// Two shards writing one shared output file: every frame of both inputs is in it once, and
/// each input's frames keep their order.
#[test]
fn shared_output_from_two_shards() {
    let dir_frames = |flows: std::ops::Range<u16>, v6: bool| -> Vec<Vec<u8>> {
        flows.map(|f| flow_frame(v6, 17, f, 500 + f, 1000 + f, 53)).collect()
    };
    let inputs = [
        (temp_path("shared-a.pcap"), dir_frames(0..300, false)),
        (temp_path("shared-b.pcap"), dir_frames(0..300, true)),
    ];
    for (path, frames) in &inputs {
        let mut w = PcapWriter::create(path).unwrap();
        frames.iter().for_each(|f| w.write_frame(f, 0).unwrap());
    }
    let out = temp_path("shared-out.pcap");
    let mut port =
        PcapPort::new(pool(512, 2048), inputs.iter().map(|(p, _)| p), PcapOutput::Shared(out.clone()))
            .unwrap();
    let pairs = [port.queue_pair(0).unwrap(), port.queue_pair(1).unwrap()];
    let shards: Vec<_> = pairs
        .into_iter()
        .enumerate()
        .map(|(q, (rx, tx))| {
            std::thread::spawn(move || {
                let mut p = Pipeline::new(rx, tx, ());
                let mut cx = ShardCtx::new(q);
                while !matches!(p.poll(&mut cx), wirespeed_core::Poll::Finished) {}
                p.drain(&mut cx);
            })
        })
        .collect();
    shards.into_iter().for_each(|h| h.join().unwrap());
    drop(port);
    let got = frames_of(&out);
    assert_eq!(got.len(), 600);
    for (_, frames) in &inputs {
        let mine: Vec<&Vec<u8>> = got.iter().filter(|f| frames.contains(f)).collect();
        assert_eq!(mine, frames.iter().collect::<Vec<_>>(), "one input's frames in order");
    }
}
