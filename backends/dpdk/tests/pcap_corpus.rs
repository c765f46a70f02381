//! `net_pcap` reading a real capture from the tcpdump corpus (`08-sunrise-sunset-esp2.pcap`:
//! ESP between two hosts, Ethernet): every frame DPDK delivers equals, byte for byte and in
//! order, the frame wirespeed's own pcap reader finds in the file; a pipeline then forwards them
//! to a `tx_pcap` file, which reads back the same.

mod common;

use std::path::PathBuf;

use common::*;
use wirespeed_core::{PacketBuf, PerPacket, Pipeline, Port, ShardCtx, Verdict};
use wirespeed_dpdk::Mbuf;
use wirespeed_pcap::CaptureReader;

const CAPTURE: &str = "08-sunrise-sunset-esp2.pcap";

fn corpus_file() -> PathBuf {
    wirespeed_test_corpus::file(CAPTURE)
}

fn frames_of(path: &std::path::Path) -> Vec<Vec<u8>> {
    let mut r = CaptureReader::open(path).unwrap();
    let mut v = Vec::new();
    while let Some(f) = r.next_frame() {
        v.push(f.unwrap().data.to_vec());
    }
    v
}

#[test]
fn net_pcap_delivers_the_corpus_capture_frame_for_frame() {
    let _g = serial();
    let input = corpus_file();
    let out = std::env::temp_dir().join(format!("wirespeed-dpdk-pcap-{}.pcap", std::process::id()));
    let vdev = format!("net_pcap0,rx_pcap={},tx_pcap={}", input.display(), out.display());
    let Some(mut port) = port(&[vdev.as_str()], "net_pcap0", |_| {}) else { return };
    assert_eq!(port.driver(), "net_pcap");
    let expected = frames_of(&input);
    assert!(expected.len() >= 5, "{CAPTURE} has {} frames", expected.len());

    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut seen = Vec::new();
    let stage = PerPacket(|_: &mut ShardCtx, p: &mut Mbuf| {
        seen.push(p.data().to_vec());
        Verdict::Continue
    });
    let mut pipeline = Pipeline::new(rx, tx, stage);
    let mut cx = ShardCtx::new(0);
    let mut idle = 0;
    while idle < 100 {
        if pipeline.run_once(&mut cx) == 0 {
            idle += 1;
        }
    }
    drop(pipeline);
    assert_eq!(seen, expected, "net_pcap frames equal the reader's");
    assert_eq!(cx.counters.tx_packets, expected.len() as u64);
    let c = port.counters().unwrap();
    assert_eq!(c.rx_packets, expected.len() as u64);
    assert_eq!(c.rx_bytes, expected.iter().map(|f| f.len() as u64).sum::<u64>());
    drop(port);
    assert_eq!(frames_of(&out), expected, "tx_pcap holds what was forwarded");
    let _ = std::fs::remove_file(&out);
}
