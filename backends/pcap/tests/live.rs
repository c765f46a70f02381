//! Feature `live`: libpcap as an independent second reader of the whole tcpdump corpus, and a
//! live capture on the loopback interface (needs CAP_NET_RAW, i.e. root).
#![cfg(feature = "live")]

mod common;

use common::*;
use wirespeed_core::{Batch, BufferPool, PacketBuf, PoolConfig, Port, RxQueue, TxQueue};
use wirespeed_pcap::{CaptureReader, LinkType, LiveConfig, LivePort, PcapError};

/// Every corpus file this crate reads is read by libpcap too, and the two agree on every frame:
/// bytes, original length and timestamp (libpcap asked for nanosecond precision).
#[test]
fn corpus_agrees_with_libpcap() {
    let dir = corpus_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let (mut compared, mut frames, mut skipped, mut libpcap_refused) = (0, 0u64, 0u64, Vec::new());
    let mut bad_fraction = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Ok(mut ours) = CaptureReader::open(path) else { continue };
        let mut theirs = match pcap::Capture::from_file_with_precision(path, pcap::Precision::Nano) {
            Ok(c) => c,
            Err(e) => {
                libpcap_refused.push(format!("{name}: {e}"));
                continue;
            }
        };
        compared += 1;
        let classic = ours.format() != wirespeed_pcap::CaptureFormat::PcapNg;
        let mut i = 0;
        loop {
            let a = ours.next_frame();
            let b = theirs.next_packet();
            match (a, b) {
                (None, Err(pcap::Error::NoMorePackets)) => break,
                // A packet on a pcapng interface of an unsupported link type: we skip it (and
                // say so), libpcap hands it out.
                (Some(Err(e)), Ok(_)) if e.is_recoverable() => skipped += 1,
                (Some(Ok(f)), Ok(p)) => {
                    assert_eq!(f.data, p.data, "{name}: frame {i} bytes");
                    assert_eq!(f.orig_len, p.header.len, "{name}: frame {i} length");
                    // libpcap reads classic pcap seconds as a signed 32-bit value (before 1970
                    // when negative); draft-ietf-opsawg-pcap makes them unsigned, as we do.
                    let mut sec = p.header.ts.tv_sec as i128;
                    if sec < 0 && classic {
                        sec += 1 << 32;
                    }
                    let frac = p.header.ts.tv_usec as i128;
                    if (0..1_000_000_000).contains(&frac) {
                        let ts = sec * 1_000_000_000 + frac;
                        assert_eq!(f.ts_nanos as i128, ts, "{name}: frame {i} timestamp");
                    } else {
                        // A fraction past one second (fuzzed files): libpcap wraps it as a
                        // signed value, we carry it into the seconds. Both are garbage in.
                        bad_fraction += 1;
                    }
                }
                (a, b) => panic!(
                    "{name}: frame {i}: ours {:?}, libpcap {:?}",
                    a.map(|r| r.map(|f| f.data.len())),
                    b.map(|p| p.data.len())
                ),
            }
            i += 1;
            frames += 1;
        }
    }
    println!(
        "compared {compared} files ({frames} frames, {skipped} skipped as unsupported, {bad_fraction} \
         with an out-of-range fraction) with libpcap; \
         libpcap refused {libpcap_refused:?}"
    );
    assert!(compared >= 540, "only {compared} files compared");
    assert!(bad_fraction < 20, "{bad_fraction} frames with out-of-range timestamp fractions");
}

#[test]
fn lists_devices_and_captures_on_loopback() {
    let devices = LivePort::devices().expect("libpcap lists interfaces");
    assert!(devices.iter().any(|d| d == "lo"), "no loopback among {devices:?}");
    let pool = BufferPool::new(PoolConfig { buffers: 512, data_room: 2048, headroom: 128 }).unwrap();
    let mut port = match LivePort::open(LiveConfig::new("lo"), pool) {
        Ok(p) => p,
        Err(e) => {
            panic!("opening lo for live capture failed — this test needs CAP_NET_RAW (run as root): {e}")
        }
    };
    assert_eq!(port.link_type(), LinkType::Ethernet);
    assert_eq!(port.info().queues, 1);
    assert_eq!(port.info().mac, [0; 6], "loopback's MAC is all zeros");
    let (mut rx, mut tx) = port.queue_pair(0).unwrap();
    assert!(port.queue_pair(0).is_err());

    // A frame with the IEEE 802 local experimental EtherType 0x88b5 and a unique marker.
    let marker = format!("wirespeed-live-{}", std::process::id());
    let mut frame = ethernet(0x88b5, marker.as_bytes());
    frame.resize(64, 0);
    let mut out = Batch::new();
    let mut b = pool.alloc().unwrap();
    b.copy_from(&frame).unwrap();
    out.push(b).unwrap();
    assert_eq!(tx.tx_burst(&mut out), 1, "{:?}", port.take_error());

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut seen = false;
    while !seen && std::time::Instant::now() < deadline {
        let mut batch = Batch::new();
        rx.rx_burst(&mut batch);
        seen = batch.iter().any(|p| p.data() == &frame[..]);
        if !seen {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    assert!(port.take_error().is_none());
    assert!(seen, "the injected frame was not captured on lo");
}

/// `PortInfo::max_frame` is the interface's MTU plus the Ethernet header (not the pool's data
/// room), within the data room and the snap length: one end of a veth pair at MTU 1400 and 9000
/// (created for the test, root needed, removed after) and `lo` (MTU 65536).
#[test]
fn max_frame_follows_the_interface_mtu() {
    use wirespeed_test_netns::{Veth, run};
    let veth = Veth::new(1);
    let local = veth.local.as_str();
    run(&["ip", "link", "set", local, "mtu", "1400"]);
    let pool = BufferPool::new(PoolConfig { buffers: 8, data_room: 9216, headroom: 128 }).unwrap();
    let port = LivePort::open(LiveConfig::new(local), pool).expect("open the veth interface");
    assert_eq!(port.link_type(), LinkType::Ethernet);
    assert_eq!(port.info().max_frame, 1414, "MTU 1400 + 14");
    drop(port);
    run(&["ip", "link", "set", local, "mtu", "9000"]);
    let port = LivePort::open(LiveConfig::new(local), pool).unwrap();
    assert_eq!(port.info().max_frame, 9014, "MTU 9000 + 14 within the 9216-byte data room");
    let mut cfg = LiveConfig::new(local);
    cfg.snaplen = 4000;
    assert_eq!(LivePort::open(cfg, pool).unwrap().info().max_frame, 4000, "the snap length caps it");
    let small = BufferPool::new(PoolConfig { buffers: 8, data_room: 2048, headroom: 128 }).unwrap();
    let lo = LivePort::open(LiveConfig::new("lo"), small).unwrap();
    assert_eq!(lo.info().max_frame, 2048, "lo's MTU 65536 is beyond the data room");
}

#[test]
fn missing_interface_is_a_clear_error() {
    let pool = BufferPool::new(PoolConfig { buffers: 8, data_room: 256, headroom: 128 }).unwrap();
    let e = LivePort::open(LiveConfig::new("wirespeed-no-such-if0"), pool).unwrap_err();
    assert!(matches!(e, PcapError::Live { .. }), "{e}");
    assert!(e.to_string().contains("wirespeed-no-such-if0"), "{e}");
}
