//! Test fixtures: the veth/netns fixtures of `wirespeed-test-netns` with this crate's AF_XDP
//! probe, test frames, and a peer that exchanges frames from inside the namespace.
#![allow(dead_code)] // each test binary uses a different part

pub mod esp;

use std::time::{Duration, Instant};

use wirespeed_afxdp::peer::{RawSocket, enter_netns};

#[allow(unused_imports)] // each test binary uses a different part
pub use wirespeed_test_netns::{Veth, output, run};

/// `Some(reason)` when kernel tests cannot run here: not root, or no AF_XDP in this kernel.
pub fn skip_reason() -> Option<String> {
    wirespeed_test_netns::skip_reason(wirespeed_afxdp::probe)
}

/// Skips the test (printing why) when kernel tests cannot run — or fails it, when
/// `WIRESPEED_AFXDP_REQUIRE_KERNEL` is set (CI, where a skip would hide a broken setup).
#[macro_export]
macro_rules! require_kernel {
    () => {
        if !wirespeed_test_netns::kernel_ready(common::skip_reason(), module_path!()) {
            return;
        }
    };
}

/// An Ethernet/IPv4/UDP frame `dst ← src` of `len` bytes whose payload starts with `seq`.
pub fn udp_frame(dst: [u8; 6], src: [u8; 6], sport: u16, seq: u32, len: usize) -> Vec<u8> {
    let len = len.max(60);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    f.extend_from_slice(&[0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 1, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
    let c = wirespeed_core::backend::null::ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let udp_len = ip_len - 20;
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&[0x13, 0x89, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32 ^ seq) as u8);
    }
    f
}

/// Sends `frames` from the peer end and collects the frames arriving there that `keep` accepts, until
/// `expect` have or `wait` passes. Runs on its own thread inside the peer namespace, pinned to `cpu` when given (a raw
/// socket that bypasses the qdisc sends on transmit queue `cpu % queues`).
pub fn peer_exchange(
    ns: String,
    dev: String,
    frames: Vec<Vec<u8>>,
    expect: usize,
    keep: impl Fn(&[u8]) -> bool + Send + 'static,
    wait: Duration,
    cpu: Option<usize>,
) -> Vec<Vec<u8>> {
    std::thread::spawn(move || {
        if let Some(id) = cpu {
            assert!(core_affinity::set_for_current(core_affinity::CoreId { id }), "pin to cpu {id}");
        }
        enter_netns(&ns).unwrap();
        let s = RawSocket::open(&dev).unwrap();
        let mut back = Vec::new();
        let mut buf = vec![0u8; 16384];
        let end = Instant::now() + wait;
        for (sent, f) in frames.iter().enumerate() {
            // At most WINDOW frames in flight: a veth's per-queue ring holds 256 frames and a
            // socket buffer not many more, and a loaded CI machine may poll slowly. Overrunning
            // them is legitimate loss, not what these tests look for.
            const WINDOW: usize = 64;
            while sent >= back.len() + WINDOW && Instant::now() < end {
                if let Some(n) = s.recv(&mut buf, 50).unwrap()
                    && keep(&buf[..n])
                {
                    back.push(buf[..n].to_vec());
                }
            }
            while !s.send(f).unwrap() {
                std::thread::sleep(Duration::from_micros(50));
            }
            while let Some(n) = s.recv(&mut buf, 0).unwrap() {
                if keep(&buf[..n]) {
                    back.push(buf[..n].to_vec());
                }
            }
        }
        while back.len() < expect && Instant::now() < end {
            if let Some(n) = s.recv(&mut buf, 50).unwrap()
                && keep(&buf[..n])
            {
                back.push(buf[..n].to_vec());
            }
        }
        back
    })
    .join()
    .unwrap()
}
