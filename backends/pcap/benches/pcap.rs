//! Reading, writing and replaying captures. One iteration handles a whole in-memory capture of
//! `FRAMES` frames, so throughput is in frames.
//!
//! `cargo bench -p wirespeed-pcap --bench pcap -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::io::Cursor;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wirespeed_core::{BufferPool, Pipeline, PoolConfig, Port, ShardCtx};
use wirespeed_pcap::{CaptureReader, LinkType, PcapPort, PcapWriter, WriterOptions};

const FRAMES: usize = 4096;

/// A capture of `FRAMES` frames of `len` bytes: Ethernet + IPv4 + UDP (RFC 791 / RFC 768
/// layouts, documentation addresses), or the same IPv4 packet as raw IP.
fn capture(link: LinkType, len: usize) -> &'static [u8] {
    let mut eth = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let ip = [0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1];
    eth.extend_from_slice(&ip);
    eth.resize(len, 0xa5);
    let frame = if link == LinkType::Raw { &eth[14..] } else { &eth[..] };
    let opts = WriterOptions { link, ..WriterOptions::default() };
    let mut w = PcapWriter::with_options_named(Vec::new(), opts, "bench").unwrap();
    for i in 0..FRAMES {
        w.write_frame(frame, i as u64 * 1000).unwrap();
    }
    Box::leak(w.into_inner().unwrap().into_boxed_slice())
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("pcap");
    g.throughput(Throughput::Elements(FRAMES as u64));
    for len in [64usize, 1514] {
        let file = capture(LinkType::Ethernet, len);
        g.bench_function(format!("read_{len}"), |b| {
            b.iter(|| {
                let mut r = CaptureReader::from_reader(Cursor::new(file)).unwrap();
                let mut n = 0;
                while let Some(f) = r.next_frame() {
                    n += black_box(f.unwrap().l3()).map_or(0, |(_, o)| o);
                }
                n
            })
        });
    }
    let frame = vec![0xa5u8; 64];
    g.bench_function("write_64", |b| {
        b.iter(|| {
            let mut w = PcapWriter::new(std::io::sink()).unwrap();
            for i in 0..FRAMES {
                w.write_frame(black_box(&frame), i as u64).unwrap();
            }
            w.flush().unwrap();
        })
    });
    let pool = BufferPool::new(PoolConfig { buffers: 1024, data_room: 2048, headroom: 128 }).unwrap();
    for (name, link) in [("replay_ethernet_64", LinkType::Ethernet), ("replay_raw_ip_64", LinkType::Raw)] {
        let file = capture(link, 64);
        g.bench_function(name, |b| {
            b.iter(|| {
                let reader = CaptureReader::from_reader(Cursor::new(file)).unwrap();
                let mut port = PcapPort::builder(pool).input_reader(reader).build().unwrap();
                let (rx, tx) = port.queue_pair(0).unwrap();
                let mut p = Pipeline::new(rx, tx, ());
                let mut cx = ShardCtx::new(0);
                while p.run_once(&mut cx) > 0 {}
                assert_eq!(cx.counters.tx_packets, FRAMES as u64);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
