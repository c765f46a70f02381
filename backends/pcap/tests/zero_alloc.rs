//! Reading a capture and running a `PcapPort` pipeline allocate nothing per frame: after a
//! warm-up, thousands of frames go through with a counting global allocator reading zero.

mod common;

use common::*;
use wirespeed_core::{BufferPool, Pipeline, PoolConfig, Port, ShardCtx};
use wirespeed_pcap::{CaptureReader, LinkType, PcapOutput, PcapPort, PcapWriter, WriterOptions};

use wirespeed_alloc_counter::{CountingAlloc, start_counting, stop_counting};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// A capture of `n` frames of growing sizes (60..=1514 bytes) with link type `link`.
fn capture(name: &str, link: LinkType, n: usize) -> std::path::PathBuf {
    let path = temp_path(name);
    let opts = WriterOptions { link, ..WriterOptions::default() };
    let mut w = PcapWriter::create_with(&path, opts).unwrap();
    let mut frame = match link {
        LinkType::Raw => IPV4_UDP.to_vec(),
        _ => ethernet(0x0800, &IPV4_UDP),
    };
    frame.resize(1514, 0xa5);
    for i in 0..n {
        w.write_frame(&frame[..60 + i % 1454], i as u64 * 1000).unwrap();
    }
    w.flush().unwrap();
    path
}

// One test function: the counter is process-wide, so nothing else may run beside it.
#[test]
fn no_allocation_per_frame() {
    // Reader alone, classic pcap.
    let path = capture("za-read.pcap", LinkType::Ethernet, 20_000);
    let mut r = CaptureReader::open(&path).unwrap();
    for _ in 0..100 {
        r.next_frame().unwrap().unwrap();
    }
    start_counting();
    let mut n = 0;
    let mut out = [0u8; 2048];
    while let Some(f) = r.next_frame() {
        let f = f.unwrap();
        assert!(f.l3().is_some());
        f.to_ethernet(&mut out).unwrap();
        n += 1;
    }
    assert_eq!(n, 19_900);
    assert_eq!(stop_counting(), 0, "reader allocated while reading");

    // Reader, pcapng with several interfaces.
    let mut ng = Ng::new();
    ng.shb(false).idb(1, 0, None, None).idb(101, 0, Some(9), None);
    let eth = ethernet(0x0800, &IPV4_UDP);
    for i in 0..5000u64 {
        if i % 2 == 0 {
            ng.epb(0, i, &eth, eth.len() as u32);
        } else {
            ng.epb(1, i, &IPV4_UDP, 32).block(0xbad, &[0; 16]);
        }
    }
    let mut r = CaptureReader::from_reader(std::io::Cursor::new(ng.bytes())).unwrap();
    for _ in 0..10 {
        r.next_frame().unwrap().unwrap();
    }
    start_counting();
    let mut n = 0;
    while let Some(f) = r.next_frame() {
        f.unwrap();
        n += 1;
    }
    assert_eq!(n, 4990);
    assert_eq!(stop_counting(), 0, "pcapng reader allocated while reading");

    // PcapPort Rx -> pipeline -> Tx to a shared file, raw-IP input normalised to Ethernet.
    let input = capture("za-port-in.pcap", LinkType::Raw, 20_000);
    let out = temp_path("za-port-out.pcap");
    let pool = BufferPool::new(PoolConfig { buffers: 1024, data_room: 2048, headroom: 128 }).unwrap();
    let mut port = PcapPort::new(pool, [&input], PcapOutput::Shared(out.clone())).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut pipeline = Pipeline::new(rx, tx, ());
    let mut cx = ShardCtx::new(0);
    for _ in 0..10 {
        pipeline.run_once(&mut cx);
    }
    start_counting();
    let mut batches = 0;
    while pipeline.run_once(&mut cx) > 0 {
        batches += 1;
    }
    let during = stop_counting();
    assert!(batches > 600, "{batches} batches");
    assert_eq!(during, 0, "PcapPort pipeline allocated {during} times in {batches} batches");
    assert_eq!(cx.counters.tx_packets, 20_000);
    drop(pipeline);
    let mut r = CaptureReader::open(&out).unwrap();
    let mut n = 0;
    while let Some(f) = r.next_frame() {
        assert_eq!(f.unwrap().l3(), Some((0x0800, 14)));
        n += 1;
    }
    assert_eq!(n, 20_000);
    for p in [path, input, out] {
        let _ = std::fs::remove_file(p);
    }
}
