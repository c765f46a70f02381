//! Shared helpers of the DPDK integration tests. Each test file is its own process and so has its
//! own EAL (DPDK allows one per process); tests in one file share it and run one at a time.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};

use wirespeed_dpdk::{DpdkError, DpdkPort, DpdkPortConfig, Eal, TEST_EAL_ARGS};

static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises the tests of one file (they share the process's EAL and its ports).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The test EAL arguments plus `vdevs` (`--vdev=…` each).
pub fn eal_args(vdevs: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = TEST_EAL_ARGS.iter().map(|s| s.to_string()).collect();
    a.extend(vdevs.iter().map(|v| format!("--vdev={v}")));
    a
}

/// The EAL, or `None` (after saying why) when this build has no DPDK. Any other failure fails
/// the test.
pub fn eal(vdevs: &[&str]) -> Option<&'static Eal> {
    match Eal::init(&eal_args(vdevs)) {
        Ok(e) => Some(e),
        Err(DpdkError::NotInstalled) => {
            eprintln!("SKIP: DPDK is not installed (wirespeed-dpdk was built without libdpdk)");
            None
        }
        Err(e) => panic!("EAL init failed: {e}"),
    }
}

/// A port on `device` of the EAL started with `vdevs`.
pub fn port(vdevs: &[&str], device: &str, f: impl FnOnce(&mut DpdkPortConfig)) -> Option<DpdkPort> {
    eal(vdevs)?;
    let mut cfg = DpdkPortConfig::new(eal_args(vdevs), device);
    cfg.rx_desc = 256;
    cfg.tx_desc = 256;
    cfg.mempool.mbufs = Some(4095);
    f(&mut cfg);
    Some(DpdkPort::new(&cfg).unwrap_or_else(|e| panic!("{device}: {e}")))
}

/// An Ethernet/IPv4/UDP frame (RFC 791/768 layout, RFC 5737 addresses) with a valid header
/// checksum and `payload` bytes counting up from `seed`.
pub fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: usize, seed: u8) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
    let total = (28 + payload) as u16;
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend((0..payload).map(|i| seed.wrapping_add(i as u8)));
    let c = wirespeed_core::backend::null::ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

/// Runs test `name` of this test binary again inside a fresh network namespace (deleted
/// afterwards) and fails unless it passed there. Returns `false` when already inside (the
/// caller then runs the test body). Needs root; CI runs as root.
pub fn in_netns(name: &str) -> bool {
    const INNER: &str = "WIRESPEED_DPDK_NETNS_INNER";
    if std::env::var_os(INNER).is_some() {
        return false;
    }
    let ns = format!("wsdh{}", std::process::id());
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip").args(args).output().expect("iproute2 `ip` is needed");
        assert!(
            out.status.success(),
            "ip {}: {} (root needed)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["netns", "add", &ns]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output()
        .unwrap();
    let _ = std::process::Command::new("ip").args(["netns", "del", &ns]).status();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "inner run failed");
    assert!(text.contains("1 passed"), "inner run did not run the test");
    true
}
