//! Loom model of SA-set publication to a running shard (add/rekey by epoch):
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p wirespeed-stages --test loom_sa`.
//!
//! Checked in every interleaving: the shard always sees a whole version (its contents match its
//! version number), its per-SA states stay index-aligned with the set it uses, the state of an SA
//! present in both versions survives the handoff, the publisher only learns "adopted by all"
//! once the shard really moved, and old versions are reclaimed on the control side.
#![cfg(loom)]

use std::sync::Arc;

use loom::thread;
use wirespeed_core::epoch::Publisher;
use wirespeed_stages::esp::*;

fn inbound(spi: u32) -> Arc<SecurityAssociation> {
    let alg = AeadAlgorithm::Aes128Gcm;
    let cfg = SaConfig::tunnel(
        spi,
        Direction::Inbound,
        alg,
        &[spi as u8; 20],
        [192, 0, 2, 1].into(),
        [192, 0, 2, 2].into(),
    );
    Arc::new(SecurityAssociation::new(&cfg).expect("valid SA"))
}

#[test]
fn sa_set_publication_to_a_running_shard() {
    // Key expansion happens once, outside the model: the SAs are shared, immutable values.
    let a = inbound(1);
    let b = inbound(2);
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    loom::model(move || {
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut publisher = Publisher::new(SaSet::new([a.clone()], &Spd::default()).unwrap());
        let sub = publisher.subscribe();
        let a_uid = a.uid();
        let shard = thread::spawn(move || {
            let mut sas = ShardSas::new(sub);
            sas.state_of_mut(a_uid).unwrap().resume_inbound(100);
            for _ in 0..2 {
                sas.refresh();
                let version = sas.version();
                let (set, states) = sas.parts();
                assert_eq!(set.len(), states.len());
                for (sa, st) in set.sas().iter().zip(states.iter()) {
                    assert_eq!(sa.uid(), st.uid(), "states aligned with the set in use");
                }
                assert_eq!(set.inbound_index(2).is_some(), version == 2, "a whole version");
                assert_eq!(sas.state_of(a_uid).unwrap().seq(), 100, "SA a kept its window");
            }
            sas.version()
        });
        let v2 = publisher.publish(SaSet::new([a.clone(), b.clone()], &Spd::default()).unwrap());
        let seen = shard.join().unwrap();
        assert_eq!(publisher.adopted_by_all(v2), seen == v2);
        publisher.reclaim();
    });
    let runs = RUNS.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("loom explored {runs} interleavings");
    assert!(runs > 1, "the model must explore more than one interleaving");
}
