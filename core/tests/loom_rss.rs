//! Loom model of RETA publication by epoch: the control thread publishes new indirection
//! tables (as the rebalancer does) while a shard keeps dispatching with whatever version it
//! holds. Checked: the shard only ever sees a complete table that was published, versions
//! never go backwards, every version it drops is reclaimed on the control side, and once the
//! shard has refreshed after the last publish it uses the newest table and the publisher knows.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p wirespeed-core --test loom_rss`
#![cfg(loom)]

use wirespeed_core::epoch::Publisher;
use wirespeed_core::rss::Reta;
use wirespeed_core::sync::thread;

/// The table of version `v` (1-based): every entry names queue `v - 1`, so a torn or mixed
/// table is visible as two different queues.
fn table(v: u64) -> Reta {
    Reta::new(vec![(v - 1) as u16; 4]).expect("valid RETA")
}

fn check(reta: &Reta, version: u64) {
    let want = table(version);
    assert_eq!(reta, &want, "shard saw a table that is not version {version}");
}

#[test]
fn reta_publication_is_atomic_and_monotonic() {
    loom::model(|| {
        let mut publisher = Publisher::new(table(1));
        let mut shard = publisher.subscribe();
        let worker = thread::spawn(move || {
            let mut last = shard.version();
            for _ in 0..3 {
                shard.refresh();
                let v = shard.version();
                assert!(v >= last, "version went back from {last} to {v}");
                last = v;
                // A "batch": every lookup of this batch uses one table.
                let r: &Reta = &shard;
                check(r, v);
                for h in 0..4u32 {
                    assert_eq!(r.queue(h), (v - 1) as u16);
                }
            }
            shard
        });
        let v2 = publisher.publish(table(2));
        let v3 = publisher.publish(table(3));
        assert_eq!((v2, v3), (2, 3));
        let mut shard = worker.join().expect("worker");
        // After the shard's next batch boundary it runs the newest table.
        shard.refresh();
        assert_eq!(shard.version(), 3);
        check(&shard, 3);
        assert!(publisher.adopted_by_all(3));
        // Versions the shard let go of come back to the control thread to be freed.
        publisher.reclaim();
        drop(shard);
    });
}

#[test]
fn two_shards_adopt_independently() {
    loom::model(|| {
        let mut publisher = Publisher::new(table(1));
        let a = publisher.subscribe();
        let b = publisher.subscribe();
        let spawn = |mut s: wirespeed_core::epoch::Subscriber<Reta>| {
            thread::spawn(move || {
                s.refresh();
                let v = s.version();
                check(&s, v);
                s
            })
        };
        let (ta, tb) = (spawn(a), spawn(b));
        let v2 = publisher.publish(table(2));
        let mut a = ta.join().expect("shard a");
        let mut b = tb.join().expect("shard b");
        assert!(a.version() <= v2 && b.version() <= v2);
        a.refresh();
        b.refresh();
        assert!(publisher.adopted_by_all(v2));
        check(&a, 2);
        check(&b, 2);
    });
}
