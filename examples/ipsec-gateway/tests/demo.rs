//! The two-gateway demo on the pcap backend: A encrypts, B decrypts, every inner packet checked;
//! and `--out` refuses what is not a directory of regular files.

use ipsec_gateway::demo::{self, DemoError, DemoOptions, FILES};

#[test]
fn demo_round_trip_through_two_gateways_keeps_captures_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    demo::run(&DemoOptions { out: Some(out.clone()), shards: 2, packets: Some(2000) })
        .expect("demo passes its checks");
    for f in FILES {
        let m = std::fs::metadata(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(m.len() > 0, "{f} is empty");
    }
    // The configurations are the ones the gateways ran: they load, and carry the keys.
    let b = ipsec_gateway::config::GatewayConfig::load(&out.join("gateway-b.toml")).unwrap();
    assert_eq!(b.shards, 2);
    assert!(b.sas.iter().all(|s| !s.keymat.is_empty()));
}

#[test]
fn out_dir_refuses_non_directories_and_non_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the directory should be.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let e = demo::prepare_out_dir(&file).unwrap_err();
    assert!(matches!(e, DemoError::File { .. }) && e.to_string().contains("directory"), "{e}");
    // /dev/null where a capture should go (a symlink to a device).
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink("/dev/null", out.join("esp.pcap")).unwrap();
    let e = demo::prepare_out_dir(&out).unwrap_err();
    assert!(e.to_string().contains("esp.pcap") && e.to_string().contains("character device"), "{e}");
    // A FIFO.
    let out2 = dir.path().join("out2");
    std::fs::create_dir(&out2).unwrap();
    let fifo = out2.join("lan-in.pcap");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().map(|s| s.success()).unwrap_or(false);
    if made {
        let e = demo::prepare_out_dir(&out2).unwrap_err();
        assert!(e.to_string().contains("lan-in.pcap"), "{e}");
    }
    // And the demo itself refuses before generating anything.
    let e = demo::run(&DemoOptions { out: Some(out), ..DemoOptions::default() }).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
}
