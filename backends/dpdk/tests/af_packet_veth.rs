//! `net_af_packet` on a veth pair inside a network namespace, with two queue pairs owned by two
//! shard threads. The far end (`vb`, a second af_packet port) sends 64 UDP flows; the kernel's
//! fanout spreads them over the two queues of `va` by flow hash, so each flow lands on exactly
//! one shard; each shard echoes what it receives on its own Tx queue, and every echo arrives
//! back at `vb`. Needs root (CI runs as root): the test sets up the namespace and re-runs itself
//! inside it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use wirespeed_core::{Batch, PacketBuf, Port, RxQueue, TxQueue};
use wirespeed_dpdk::{DpdkRx, DpdkTx, Mbuf};

const INNER: &str = "WIRESPEED_AFPKT_INNER";
const FLOWS: u8 = 64;
const PER_FLOW: u8 = 4;
const MARK: &[u8; 4] = b"wsdp";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("iproute2 `ip` is needed");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn two_shards_on_two_af_packet_queue_pairs_over_veth() {
    if std::env::var_os(INNER).is_some() {
        return inner();
    }
    // Outside: does this build have DPDK at all? (Without it the inner run would only skip.)
    if wirespeed_dpdk::Eal::init(&eal_args(&[])).err() == Some(wirespeed_dpdk::DpdkError::NotInstalled) {
        eprintln!("SKIP: DPDK is not installed (wirespeed-dpdk was built without libdpdk)");
        return;
    }
    let ns = Netns(format!("wsdpdk{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    for dev in ["va", "vb", "lo"] {
        ip(&["-n", &ns.0, "link", "set", dev, "up"]);
    }
    let _ = Command::new("ip")
        .args(["netns", "exec", &ns.0, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        .status();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(exe)
        .args([
            "--exact",
            "two_shards_on_two_af_packet_queue_pairs_over_veth",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER, "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "inner run failed");
    assert!(text.contains("1 passed"), "inner run did not run the test");
}

fn frame(kind: u8, flow: u8, seq: u8) -> Vec<u8> {
    let mut f = udp4([10, 1, 0, flow], [10, 2, 0, 1], 20_000 + u16::from(flow), 9, 32, 0);
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[42..46].copy_from_slice(MARK);
    f[46..49].copy_from_slice(&[kind, flow, seq]);
    f
}

/// (kind, flow, seq) of one of our frames.
fn tag(d: &[u8]) -> Option<(u8, u8, u8)> {
    (d.len() >= 49 && &d[42..46] == MARK).then(|| (d[46], d[47], d[48]))
}

/// One shard: receive on its queue, record what came, echo each frame (marked `E`) on its Tx.
fn shard(mut rx: DpdkRx, mut tx: DpdkTx, stop: Arc<AtomicBool>) -> Vec<(u8, u8)> {
    let mut seen = Vec::new();
    let mut batch: Batch<Mbuf> = Batch::new();
    while !stop.load(Ordering::Relaxed) {
        if rx.rx_burst(&mut batch) == 0 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        batch.retain(|p| matches!(tag(p.data()), Some((b'S', _, _))));
        for p in batch.iter_mut() {
            let (_, flow, seq) = tag(p.data()).unwrap();
            seen.push((flow, seq));
            p.data_mut()[46] = b'E';
        }
        while !batch.is_empty() {
            tx.tx_burst(&mut batch);
        }
    }
    seen
}

fn inner() {
    let _g = serial();
    let vdevs = ["net_af_packet0,iface=va,qpairs=2", "net_af_packet1,iface=vb,qpairs=1"];
    let Some(mut a) = port(&vdevs, "net_af_packet0", |c| c.queues = 2) else { return };
    // A jumbo MTU the driver cannot take (net_af_packet's largest frame is 1518 bytes) is refused
    // before the device is touched, naming the range it takes; the port then opens as before.
    let mut jumbo = wirespeed_dpdk::DpdkPortConfig::new(eal_args(&vdevs), "net_af_packet1");
    jumbo.mtu = Some(9000);
    jumbo.mempool.data_room = 9216;
    let Err(err) = wirespeed_dpdk::DpdkPort::new(&jumbo) else { panic!("MTU 9000 on net_af_packet opened") };
    let err = err.to_string();
    println!("{err}");
    assert!(
        err.contains("`mtu` = 9000") && err.contains("takes an MTU of") && err.contains("..=1500"),
        "{err}"
    );
    let Some(mut b) = port(&vdevs, "net_af_packet1", |_| {}) else { return };
    assert_eq!(a.driver(), "net_af_packet");
    let pool = b.mempool();
    let stop = Arc::new(AtomicBool::new(false));
    let shards: Vec<_> = (0..2)
        .map(|q| {
            let (rx, tx) = a.queue_pair(q).unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || shard(rx, tx, stop))
        })
        .collect();

    let (mut brx, mut btx) = b.queue_pair(0).unwrap();
    let mut sent = BTreeSet::new();
    let mut batch: Batch<Mbuf> = Batch::new();
    for seq in 0..PER_FLOW {
        for flow in 0..FLOWS {
            batch.push(Mbuf::from_bytes(&pool, &frame(b'S', flow, seq)).unwrap().unwrap()).unwrap();
            sent.insert((flow, seq));
            if batch.is_full() {
                while !batch.is_empty() {
                    btx.tx_burst(&mut batch);
                }
            }
        }
    }
    while !batch.is_empty() {
        btx.tx_burst(&mut batch);
    }

    // Echoes come back to vb.
    let mut echoed = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while echoed.len() < sent.len() && Instant::now() < deadline {
        if brx.rx_burst(&mut batch) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        for p in batch.drain(..) {
            if let Some((b'E', flow, seq)) = tag(p.data()) {
                assert_eq!(p.data(), &frame(b'E', flow, seq)[..], "echo intact");
                echoed.insert((flow, seq));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let per_shard: Vec<Vec<(u8, u8)>> = shards.into_iter().map(|h| h.join().unwrap()).collect();

    let mut received = BTreeSet::new();
    let mut owner: BTreeMap<u8, usize> = BTreeMap::new();
    for (q, seen) in per_shard.iter().enumerate() {
        for &(flow, seq) in seen {
            assert!(received.insert((flow, seq)), "flow {flow} seq {seq} received twice");
            let o = *owner.entry(flow).or_insert(q);
            assert_eq!(o, q, "flow {flow} split over both queues");
        }
    }
    println!("shard 0: {} packets, shard 1: {} packets", per_shard[0].len(), per_shard[1].len());
    assert_eq!(received, sent, "every frame reached one of the two shards");
    assert!(per_shard.iter().all(|s| !s.is_empty()), "both queues received flows");
    assert_eq!(echoed, sent, "every echo from the shards' Tx queues came back");
    let c = a.counters().unwrap();
    assert!(c.rx_packets >= sent.len() as u64 && c.tx_packets >= sent.len() as u64, "{c:?}");
}
