//! The peer itself: it boots, runs commands (output, exit code, timeout), has ESP with the
//! AEADs the interop tests use, and its NICs reach host interfaces attached to their bridges.
//! Root, QEMU and the prepared kernel needed; skipped with the reason otherwise (a failure when
//! `WIRESPEED_LINUX_PEER_REQUIRE` is set).

use std::time::Duration;

use wirespeed_test_linux_peer::{LinuxPeer, Options};

fn host(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn boots_runs_commands_has_esp_and_reaches_attached_interfaces() {
    let Some(peer) = LinuxPeer::for_test(&Options::default(), module_path!()) else { return };
    eprintln!(
        "linux peer: kernel {} booted in {:.1?} on {:?}",
        peer.kernel(),
        peer.boot_time(),
        peer.accel()
    );

    // Commands: output (stdout and stderr), exit codes, the guest-side time limit.
    let out = peer.run("echo out; echo err >&2; exit 3").unwrap();
    assert_eq!((out.stdout.as_str(), out.code), ("out\nerr\n", 3));
    assert_eq!(peer.check("uname -r").unwrap().trim(), peer.kernel());
    let out = peer.run_timeout("sleep 30; echo late", Duration::from_secs(1)).unwrap();
    assert!(out.code == 143 || out.code == 137, "killed at its limit: {out:?}");
    assert!(!out.stdout.contains("late"));
    // Binary-safe and long output.
    let long = peer.check("seq 1 20000").unwrap();
    assert_eq!(long.lines().count(), 20000);
    assert_eq!(long.lines().last(), Some("20000"));

    // ESP with each AEAD the interop tests use; no error counted.
    for (i, (alg, bits, key_bytes)) in [
        ("rfc4106(gcm(aes))", 128, 20),
        ("rfc4106(gcm(aes))", 128, 36),
        ("rfc7539esp(chacha20,poly1305)", 128, 36),
    ]
    .into_iter()
    .enumerate()
    {
        let key = "ab".repeat(key_bytes);
        peer.check(&format!(
            "ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi {} mode tunnel aead '{alg}' 0x{key} {bits}",
            0x100 + i
        ))
        .unwrap();
        peer.check(&format!(
            "ip -6 xfrm state add src 2001:db8::1 dst 2001:db8::2 proto esp spi {} mode tunnel aead '{alg}' 0x{key} {bits}",
            0x200 + i
        ))
        .unwrap();
    }
    assert_eq!(peer.check("ip xfrm state | grep -c '^src'").unwrap().trim(), "6");
    let stats = peer.xfrm_stat().unwrap();
    assert!(stats.len() >= 20, "{stats:?}");
    assert!(stats.iter().all(|(_, n)| *n == 0), "{stats:?}");

    // NIC 0 on a veth whose other end is in a namespace of its own: ping both ways.
    let ns = format!("wslp-t{}", std::process::id());
    let _ = host(&["ip", "netns", "add", &ns]);
    let cleanup = Cleanup(ns.clone());
    host(&[
        "ip", "link", "add", "lpt0a", "netns", &ns, "type", "veth", "peer", "name", "lpt0b", "netns", &ns,
    ]);
    peer.attach(0, Some(&ns), "lpt0b").unwrap();
    host(&["ip", "-n", &ns, "addr", "add", "198.51.100.2/24", "dev", "lpt0a"]);
    host(&["ip", "-n", &ns, "link", "set", "lpt0a", "up"]);
    let eth0 = &peer.nic(0).guest;
    peer.check(&format!("ip addr add 198.51.100.1/24 dev {eth0} && ip link set {eth0} up")).unwrap();
    let ping = peer.run("busybox ping -c 3 -i 0.2 -W 2 198.51.100.2").unwrap();
    assert_eq!(ping.code, 0, "{ping:?}");
    host(&["ip", "netns", "exec", &ns, "busybox", "ping", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.1"]);
    drop(cleanup);
}

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}
