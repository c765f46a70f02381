//! Loom model of the route-table handoff: the control thread publishes new FIBs while a shard
//! forwards. The shard only ever forwards with a whole FIB — the route, the next hop and the
//! version it reports always belong to the same published table — its versions never go back,
//! and after the publisher is done the shard's next refresh adopts the newest table.
//!
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p wirespeed-stages --test loom_routes`
#![cfg(loom)]

use loom::thread;
use wirespeed_core::backend::null::udp4_frame;
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{PacketMeta, Verdict};
use wirespeed_stages::classify::ClassifyConfig;
use wirespeed_stages::forward::{Fib, FibBuilder, Forward, NextHop};

const PORT_MACS: [[u8; 6]; 3] =
    [[0x02, 0, 0, 0, 0xa0, 0], [0x02, 0, 0, 0, 0xa0, 1], [0x02, 0, 0, 0, 0xa0, 2]];

/// Version `v` (1-based) routes the template's 10.0.1.1 via a gateway on port `v - 1` whose MAC
/// ends in `v`.
fn fib(v: u8) -> Fib {
    let gw = format!("10.0.255.{v}").parse().unwrap();
    let mut b = FibBuilder::new();
    b.route("10.0.0.0".parse().unwrap(), 16, NextHop::Gateway(gw)).unwrap();
    b.neighbor(gw, [0x02, 0, 0, 0, 0xbb, v], (v - 1) as u16);
    b.build().unwrap()
}

/// Forwards one template frame and checks the answer is one whole version; returns it.
fn forward_once(fwd: &Forward, frame: &[u8], meta: &PacketMeta) -> u64 {
    let mut f = frame.to_vec();
    let v = fwd.fib_version();
    let Verdict::Forward { port } = fwd.forward_frame(&mut f, meta) else { panic!("dropped") };
    assert_eq!(port as u64, v - 1, "port from another version than {v}");
    assert_eq!(&f[0..6], &[0x02, 0, 0, 0, 0xbb, v as u8], "neighbor from another version");
    assert_eq!(&f[6..12], &PORT_MACS[port as usize]);
    v
}

#[test]
fn shard_sees_whole_tables_in_order_and_adopts_the_newest() {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    loom::model(|| {
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let frame = udp4_frame(64);
        let mut meta = PacketMeta::default();
        ClassifyConfig::default().classify(&frame, &mut meta).unwrap();

        let mut publisher = Publisher::new(fib(1));
        let fwd = Forward::new(publisher.subscribe(), &PORT_MACS);
        let (f2, m2) = (frame.clone(), meta);
        let shard = thread::spawn(move || {
            let mut fwd = fwd;
            let mut last = 0;
            for _ in 0..3 {
                fwd.refresh(); // batch boundary
                let v = forward_once(&fwd, &f2, &m2);
                assert!(v >= last, "went back from version {last} to {v}");
                last = v;
            }
            fwd
        });
        let v2 = publisher.publish(fib(2));
        let v3 = publisher.publish(fib(3));
        assert_eq!((v2, v3), (2, 3));
        let mut fwd = shard.join().unwrap();
        fwd.refresh();
        assert_eq!(forward_once(&fwd, &frame, &meta), v3);
        assert!(publisher.adopted_by_all(v3));
        publisher.reclaim();
    });
    let runs = RUNS.load(std::sync::atomic::Ordering::Relaxed);
    println!("{runs} interleavings explored");
    assert!(runs > 10, "loom explored only {runs} interleavings");
}
