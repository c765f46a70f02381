//! End to end on the pcap backend through `app::run` (the code path of `ipsec-gateway run`):
//! gateway A's ESP capture, doctored — a replayed packet, an unknown SPI, a tampered packet,
//! cleartext that should have been protected — fed to gateway B; every one is a counted drop
//! under its reason and everything else arrives.

use ipsec_gateway::app::{self, RunOptions};
use ipsec_gateway::config::GatewayConfig;
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::demo::{check, traffic};
use wirespeed_core::DropReason;
use wirespeed_pcap::{CaptureReader, PcapWriter};

fn frames(path: &std::path::Path) -> Vec<Vec<u8>> {
    let mut r = CaptureReader::open(path).unwrap();
    std::iter::from_fn(|| r.next_frame().map(|f| f.unwrap().data.to_vec())).collect()
}

#[test]
fn doctored_esp_capture_through_gateway_b() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let flows = traffic::demo_flows(None);
    traffic::write_capture(&flows, &d.join("lan-in.pcap")).unwrap();
    std::fs::write(
        d.join("a.toml"),
        configs::config(Site::A, 2, Some([Some("lan-in.pcap"), None, None, Some("esp.pcap")])),
    )
    .unwrap();
    let quiet = RunOptions { quiet: true, ..RunOptions::default() };
    let ra = app::run(&GatewayConfig::load(&d.join("a.toml")).unwrap(), &quiet).unwrap();
    assert_eq!(ra.total().rx_packets, flows.iter().map(|f| f.packets as u64).sum::<u64>());

    let esp = frames(&d.join("esp.pcap"));
    let mut w = PcapWriter::create(d.join("esp-doctored.pcap")).unwrap();
    let mut t = 1_764_000_000_000_000_000u64;
    let mut put = |f: &[u8]| {
        w.write_frame(f, t).unwrap();
        t += 1000;
    };
    // A tampered copy of a packet ahead of the original: authentication fails (and the window
    // does not move, so the original still gets through).
    let mut tampered = esp[2].clone();
    let n = tampered.len();
    tampered[n - 5] ^= 0x40;
    put(&tampered);
    for f in &esp {
        put(f);
    }
    put(&esp[0]); // replay
    let mut unknown = esp[1].clone();
    unknown[34..38].copy_from_slice(&0x0bad_beefu32.to_be_bytes());
    put(&unknown);
    let mut clear = traffic::frame(&flows[0], 0); // site 1 -> site 2 in clear, on B's WAN
    clear[0..6].copy_from_slice(&configs::B_WAN_MAC);
    put(&clear);
    w.flush().unwrap();
    drop(w);

    std::fs::write(
        d.join("b.toml"),
        configs::config(Site::B, 2, Some([None, Some("lan-out.pcap"), Some("esp-doctored.pcap"), None])),
    )
    .unwrap();
    let rb = app::run(&GatewayConfig::load(&d.join("b.toml")).unwrap(), &quiet).unwrap();
    let tb = rb.total();
    let cleartext = DropReason::from_name(ipsec_gateway::gateway::CLEARTEXT_ON_WAN).unwrap();
    assert_eq!(tb.drops_of(DropReason::EspReplay), 1, "{tb}");
    assert_eq!(tb.drops_of(DropReason::EspNoSa), 1, "{tb}");
    assert_eq!(tb.drops_of(DropReason::EspAuthFailed), 1, "{tb}");
    assert_eq!(tb.drops_of(cleartext), 1, "{tb}");
    assert_eq!(tb.total_drops(), 4, "{tb}");
    let out = frames(&d.join("lan-out.pcap"));
    let v = check::lan_frames(&flows, out.into_iter().map(Ok)).unwrap();
    assert!(v.ok(), "{v:#?}");
}
