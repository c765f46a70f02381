//! The host exception path allocates nothing per packet: after warm-up, 2 000 bursts of a
//! `net_ring` data port with a `net_tap` exception port — each burst a mix of IKE (to the
//! tap), ESP-in-UDP and plain UDP (kept), ARP (copied) — run with a counting global allocator
//! reading zero. The frames are not addressed to the tap's MAC, so the kernel discards them.
//! Needs root (net_tap, a network namespace); CI runs as root.

mod common;

use common::*;
use wirespeed_alloc_counter::{CountingAlloc, start_counting, stop_counting};
use wirespeed_core::{Batch, Port, RxQueue, TxQueue};
use wirespeed_dpdk::{HostPathConfig, Mbuf};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn with_payload(mut f: Vec<u8>, dport: u16, first_word: [u8; 4]) -> Vec<u8> {
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[42..46].copy_from_slice(&first_word);
    f
}

// One test function: the counter is process-wide, so nothing else may run beside it.
#[test]
fn host_path_allocates_nothing_per_burst() {
    // The tap lives in a network namespace of its own.
    if eal(&[]).is_none() || in_netns("host_path_allocates_nothing_per_burst") {
        return;
    }
    let iface = format!("wsa{}", std::process::id() % 100_000);
    let Some(mut ring) = port(&[], "net_ring_ha", |c| {
        c.devargs = Some("net_ring_ha".into());
        c.host = Some(HostPathConfig::new(iface.clone()));
    }) else {
        return;
    };
    let pool = ring.mempool();
    let (mut rx, mut tx) = ring.queue_pair(0).unwrap();
    let base = udp4([198, 51, 100, 2], [192, 0, 2, 1], 500, 500, 64, 0);
    let frames = [
        with_payload(base.clone(), 500, [0x21, 0x20, 0x22, 0x08]), // IKE: to the tap
        with_payload(base.clone(), 4500, [0, 0, 0x10, 0x01]),      // ESP-in-UDP: kept
        with_payload(base.clone(), 4500, [0, 0, 0, 0]),            // IKE behind the marker: to the tap
        with_payload(base.clone(), 53, [1, 2, 3, 4]),              // data: kept
    ];
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0; 20]);
    let mut batch: Batch<Mbuf> = Batch::new();
    let mut got: Batch<Mbuf> = Batch::new();
    let mut burst = |batch: &mut Batch<Mbuf>, got: &mut Batch<Mbuf>| {
        for i in 0..31 {
            let _ = batch.push(Mbuf::from_bytes(&pool, &frames[i % 4]).unwrap().unwrap());
        }
        let _ = batch.push(Mbuf::from_bytes(&pool, &arp).unwrap().unwrap());
        assert_eq!(tx.tx_burst(batch), 32);
        let n = rx.rx_burst(got);
        got.clear();
        assert!(rx.take_drops().is_none());
        n
    };
    for _ in 0..100 {
        burst(&mut batch, &mut got);
    }
    start_counting();
    let mut kept = 0;
    for _ in 0..2_000 {
        kept += burst(&mut batch, &mut got);
    }
    assert_eq!(stop_counting(), 0, "the host path allocated");
    // 31 frames: 8 IKE + 8 NAT-T IKE to the tap (frames 0 and 2 of 4 → 16 of 31), 15 kept; the
    // ARP stays too (and a copy goes to the tap).
    assert_eq!(kept, 2_000 * 16);
    let c = ring.host_counters().unwrap();
    assert_eq!(c.to_host, 2_100 * 17, "{c:?}");
    assert_eq!(c.copies, 2_100);
    assert_eq!((c.to_host_full, c.copy_no_mbuf), (0, 0));
}
