//! UMEM lifetime: a buffer may outlive its queue and port. Alone in its test binary because it
//! watches this process's mappings, which tests running beside it would change.
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use wirespeed_afxdp::peer::enter_netns;
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig};
use wirespeed_core::Port;

/// True when `addr` lies in one of this process's mappings.
fn mapped(addr: usize) -> bool {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().any(|l| {
        let range = l.split_whitespace().next().unwrap_or("");
        let (a, b) = range.split_once('-').unwrap_or(("0", "0"));
        let (a, b) = (usize::from_str_radix(a, 16).unwrap_or(0), usize::from_str_radix(b, 16).unwrap_or(0));
        (a..b).contains(&addr)
    })
}

/// A buffer may outlive its queue and port: its UMEM stays mapped (and its bytes intact) until
/// that last buffer drops, and is unmapped then — no leak per reopened queue, no dangling buffer.
#[test]
fn umem_outlives_its_queue_until_the_last_buffer_drops() {
    require_kernel!();
    use wirespeed_core::{Batch, PacketBuf, RxQueue};
    let veth = common::Veth::new(1);
    let (ours, theirs) = (veth.local_mac(), veth.peer_mac());
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let (mut rx, tx) = port.queue_pair(0).unwrap();
    let frame = common::udp_frame(ours, theirs, 77, 1, 300);
    let f = frame.clone();
    let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
    std::thread::spawn(move || {
        enter_netns(&ns).unwrap();
        assert!(wirespeed_afxdp::peer::RawSocket::open(&dev).unwrap().send(&f).unwrap());
    })
    .join()
    .unwrap();
    let mut batch = Batch::new();
    let start = std::time::Instant::now();
    while batch.is_empty() && start.elapsed() < Duration::from_secs(3) {
        rx.rx_burst(&mut batch);
    }
    let held = batch.pop().expect("the frame arrived");
    assert_eq!(held.data(), &frame[..]);
    let addr = held.data().as_ptr() as usize;
    drop((rx, tx, port));
    assert!(veth.detached().is_ok());
    assert!(mapped(addr), "the UMEM stays mapped while a buffer is out");
    assert_eq!(held.data(), &frame[..], "and the buffer's bytes are intact");
    drop(held);
    assert!(!mapped(addr), "the last buffer home unmaps the UMEM");
}
