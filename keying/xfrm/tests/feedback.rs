//! Feedback messages built from the mirror: counters, expiry, ACQUIRE pacing.

use std::time::{Duration, Instant};

use wirespeed_test_xfrm::*;
use wirespeed_xfrm::msg::{self, Builder, XfrmMsg};
use wirespeed_xfrm::wire::{LifetimeCur, ReplayStateEsn, UserpolicyInfo, UsersaInfo, msg_type};
use wirespeed_xfrm::{Feedback, Mirror, MirrorConfig, SaCounters, Scope};

fn setup() -> Mirror {
    let mut m = Mirror::new(MirrorConfig::new(Scope { if_ids: vec![7], marks: vec![] }, vec![ip(LOCAL)]));
    let out = UsersaInfo {
        curlft: LifetimeCur { add_time: 1_700_000_000, ..Default::default() },
        ..sa_info(LOCAL, PEER, 0x71, 3)
    };
    m.apply_datagram(&newsa(
        msg_type::NEWSA,
        &out,
        &A { aead: Some(gcm128(1)), if_id: Some(7), ..A::default() },
    ));
    let pol = out_policy(0x601, 1, "10.1.0.0", 16, "10.2.0.0", 16);
    let pa = A { tmpls: vec![tmpl(LOCAL, "198.51.100.99", 4)], if_id: Some(7), ..A::default() };
    m.apply_datagram(&newpolicy(msg_type::NEWPOLICY, &pol, &pa));
    assert_eq!(m.configs().len(), 1);
    assert_eq!(m.unresolved().len(), 1);
    m
}

fn decoded(b: &Builder) -> Vec<XfrmMsg> {
    msg::messages(b.bytes())
        .map(|r| {
            let (h, p) = r.unwrap();
            XfrmMsg::decode(h.kind, p).unwrap()
        })
        .collect()
}

#[test]
fn counters_are_cumulative_and_keep_the_kernel_add_time() {
    let m = setup();
    let mut f = Feedback::new(Duration::from_secs(10), Duration::from_secs(1));
    let t0 = Instant::now();
    assert!(f.counters_due(t0));
    assert!(!f.counters_due(t0 + Duration::from_secs(5)));
    assert!(f.counters_due(t0 + Duration::from_secs(10)));
    let mut b = Builder::new();
    let idle = [
        SaCounters { spi: 0x71, outbound: true, bytes: 0, packets: 0, ..SaCounters::default() },
        SaCounters { spi: 0x99, outbound: true, bytes: 1, packets: 1, ..SaCounters::default() },
    ];
    assert_eq!(f.counters(&m, &idle, &mut b), 0, "unknown SAs and unchanged totals are skipped");
    let busy =
        [SaCounters { spi: 0x71, outbound: true, bytes: 15_000, packets: 10, ..SaCounters::default() }];
    f.counters(&m, &busy, &mut b);
    let more =
        [SaCounters { spi: 0x71, outbound: true, bytes: 30_000, packets: 20, ..SaCounters::default() }];
    f.counters(&m, &more, &mut b);
    let ltimes: Vec<LifetimeCur> = decoded(&b)
        .into_iter()
        .map(|x| match x {
            XfrmMsg::NewAe { id, attrs } => {
                assert_eq!(id.sa_id.spi, 0x71);
                assert_eq!(id.reqid, 3);
                attrs.ltime.unwrap()
            }
            x => panic!("{x:?}"),
        })
        .collect();
    assert_eq!(ltimes.len(), 2);
    assert!(ltimes.iter().all(|l| l.add_time == 1_700_000_000));
    assert_eq!((ltimes[0].bytes, ltimes[0].packets), (15_000, 10));
    assert_eq!((ltimes[1].bytes, ltimes[1].packets), (30_000, 20));
    assert!(ltimes[0].use_time > 1_700_000_000, "first use stamped");
    assert_eq!(ltimes[0].use_time, ltimes[1].use_time, "first use is kept, not moved");
}

#[test]
fn counters_replace_and_never_go_back() {
    let m = setup();
    let mut f = Feedback::new(Duration::from_secs(10), Duration::from_secs(1));
    let mut b = Builder::new();
    let c =
        |bytes, packets| [SaCounters { spi: 0x71, outbound: true, bytes, packets, ..SaCounters::default() }];
    // Totals, reported as they are: 100 then 250 is 250 (not 350).
    f.counters(&m, &c(1_000, 100), &mut b);
    f.counters(&m, &c(2_500, 250), &mut b);
    // A lower report (a bug, or a shard that lost state) is sent as the last totals.
    f.counters(&m, &c(2_000, 200), &mut b);
    f.counters(&m, &c(3_000, 300), &mut b);
    let got: Vec<(u64, u64)> = decoded(&b)
        .into_iter()
        .map(|x| match x {
            XfrmMsg::NewAe { id, attrs } => {
                assert_eq!(id.flags, wirespeed_xfrm::wire::AE_LVAL, "replace the lifetime values");
                let l = attrs.ltime.unwrap();
                (l.bytes, l.packets)
            }
            x => panic!("{x:?}"),
        })
        .collect();
    // The lower report changes nothing the kernel was told: not sent.
    assert_eq!(got, vec![(1_000, 100), (2_500, 250), (3_000, 300)]);
    assert_eq!(f.regressions(), 1);
    // Every NEWAE asks the kernel to replace (NLM_F_REPLACE), which it requires of NEWAE.
    for r in msg::messages(b.bytes()) {
        let (h, _) = r.unwrap();
        assert_eq!(h.kind, msg_type::NEWAE);
        assert_ne!(h.flags & 0x100, 0, "NLM_F_REPLACE");
    }
}

#[test]
fn expiry_is_reported_once_per_kind() {
    let m = setup();
    let mut f = Feedback::new(Duration::from_secs(10), Duration::from_secs(1));
    let mut b = Builder::new();
    assert!(f.expire(&m, 0x71, true, false, &mut b));
    assert!(!f.expire(&m, 0x71, true, false, &mut b));
    assert!(f.expire(&m, 0x71, true, true, &mut b));
    assert!(!f.expire(&m, 0x71, true, true, &mut b));
    assert!(!f.expire(&m, 0x71, true, false, &mut b));
    assert!(!f.expire(&m, 0x72, true, true, &mut b), "unknown SA");
    let hard: Vec<bool> = decoded(&b)
        .into_iter()
        .map(|x| match x {
            XfrmMsg::Expire { sa, hard } => {
                assert_eq!(sa.info.id.spi, 0x71);
                hard
            }
            x => panic!("{x:?}"),
        })
        .collect();
    assert_eq!(hard, vec![false, true]);
}

#[test]
fn acquire_is_paced_per_policy() {
    let m = setup();
    let mut f = Feedback::new(Duration::from_secs(10), Duration::from_secs(1));
    let mut b = Builder::new();
    let t0 = Instant::now();
    assert_eq!(f.acquires(&m, t0, &mut b), 1);
    assert_eq!(f.acquires(&m, t0 + Duration::from_millis(500), &mut b), 0);
    assert_eq!(f.acquires(&m, t0 + Duration::from_secs(1), &mut b), 1);
    for x in decoded(&b) {
        match x {
            XfrmMsg::Acquire { acquire, attrs } => {
                assert_eq!(acquire.policy.index, 0x601);
                assert_eq!(attrs.templates[0].reqid, 4);
                assert_eq!(attrs.if_id, Some(7));
            }
            x => panic!("{x:?}"),
        }
    }
}

#[test]
fn per_cpu_policy_acquires_an_sa_for_each_shard_without_one() {
    let mut cfg = MirrorConfig::new(Scope { if_ids: vec![7], marks: vec![] }, vec![ip(LOCAL)]);
    cfg.outbound_shards = vec![0, 1];
    cfg.pcpu_shards = vec![1, 0]; // CPU 0 -> shard 1, CPU 1 -> shard 0
    let mut m = Mirror::new(cfg);
    let pol = UserpolicyInfo {
        flags: wirespeed_xfrm::wire::POLICY_CPU_ACQUIRE,
        ..out_policy(0x602, 1, "10.1.0.0", 16, "10.2.0.0", 16)
    };
    let pa = A { tmpls: vec![tmpl(LOCAL, PEER, 5)], if_id: Some(7), ..A::default() };
    m.apply_datagram(&newpolicy(msg_type::NEWPOLICY, &pol, &pa));
    let mut f = Feedback::new(Duration::from_secs(10), Duration::from_secs(1));
    let t0 = Instant::now();
    let acquired = |f: &mut Feedback, m: &Mirror, t| {
        let mut b = Builder::new();
        f.acquires(m, t, &mut b);
        decoded(&b)
            .into_iter()
            .map(|x| match x {
                XfrmMsg::Acquire { acquire, attrs } => {
                    assert_eq!(acquire.policy.index, 0x602);
                    attrs.pcpu
                }
                x => panic!("{x:?}"),
            })
            .collect::<Vec<_>>()
    };
    // No SA at all: one ACQUIRE without CPU (the first SA is the one without CPU).
    assert_eq!(acquired(&mut f, &m, t0), vec![None]);
    let gcm = |seed, cpu: Option<u32>| A {
        aead: Some(gcm128(seed)),
        if_id: Some(7),
        raw: cpu
            .map(|c| (wirespeed_xfrm::wire::attr::SA_PCPU, c.to_ne_bytes().to_vec()))
            .into_iter()
            .collect(),
        ..A::default()
    };
    m.apply_datagram(&newsa(msg_type::NEWSA, &sa_info(LOCAL, PEER, 0x80, 5), &gcm(1, None)));
    // Now each shard without its own per-CPU SA asks for one, naming a CPU it owns.
    let t1 = t0 + Duration::from_secs(2);
    let mut got = acquired(&mut f, &m, t1);
    got.sort();
    assert_eq!(got, vec![Some(0), Some(1)]);
    assert!(acquired(&mut f, &m, t1 + Duration::from_millis(500)).is_empty(), "paced per CPU");
    // CPU 1's SA arrives (shard 0): only shard 1 (CPU 0) still asks.
    m.apply_datagram(&newsa(msg_type::NEWSA, &sa_info(LOCAL, PEER, 0x81, 5), &gcm(2, Some(1))));
    assert_eq!(acquired(&mut f, &m, t1 + Duration::from_secs(2)), vec![Some(0)]);
    m.apply_datagram(&newsa(msg_type::NEWSA, &sa_info(LOCAL, PEER, 0x82, 5), &gcm(3, Some(0))));
    assert!(acquired(&mut f, &m, t1 + Duration::from_secs(4)).is_empty());
    // Every shard has its own SA now.
    assert!(m.per_cpu_missing().is_empty());
    // The mirror of `setup` (a policy without the per-CPU flag) never asks for per-CPU SAs.
    assert!(setup().per_cpu_missing().is_empty());
}

/// Sequence numbers go to the kernel with the counters (`XFRM_AE_RVAL`), in the shape of the
/// kernel SA: an ESN inbound SA gets `XFRMA_REPLAY_ESN_VAL` with its bitmap length and window
/// and the highest received number; a legacy outbound SA gets `XFRMA_REPLAY_VAL` with the last
/// sent. A change of the sequence number alone is reported; one lower than already reported is
/// not. A restarted mirror reading that state back resumes the inbound SA's window from it, and
/// a resync dump showing the number moved on is not a change of the SA.
#[test]
fn sequence_numbers_are_reported_and_resume_an_inbound_sa() {
    let mut m = setup();
    let esn = ReplayStateEsn { bmp_len: 4, replay_window: 128, ..ReplayStateEsn::default() };
    let inb_info = UsersaInfo { flags: wirespeed_xfrm::wire::STATE_ESN, ..sa_info(PEER, LOCAL, 0x72, 3) };
    let inb = |seq: u64| A {
        aead: Some(gcm128(2)),
        if_id: Some(7),
        esn: Some(ReplayStateEsn { seq: seq as u32, seq_hi: (seq >> 32) as u32, ..esn }),
        ..A::default()
    };
    m.apply_datagram(&newsa(msg_type::NEWSA, &inb_info, &inb(0)));
    let mirrored = m.find(0x72, false).expect("inbound SA mirrored");
    assert_eq!((mirrored.seq, mirrored.config.resume_seq), (0, 0), "a fresh SA starts a fresh window");

    let mut f = Feedback::new(Duration::from_secs(10), Duration::from_secs(1));
    let mut b = Builder::new();
    let c = |spi, outbound, packets, seq| SaCounters {
        spi,
        outbound,
        bytes: packets * 100,
        packets,
        seq,
        ..SaCounters::default()
    };
    let big = (1u64 << 32) + 5; // past 2^32: ESN
    assert_eq!(f.counters(&m, &[c(0x72, false, 10, big), c(0x71, true, 4, 4)], &mut b), 2);
    assert_eq!(f.counters(&m, &[c(0x72, false, 10, big + 3)], &mut b), 1, "the sequence number alone moved");
    assert_eq!(f.counters(&m, &[c(0x72, false, 10, big + 1)], &mut b), 0, "never lower");
    let got: Vec<(u32, u32, Option<ReplayStateEsn>, Option<wirespeed_xfrm::wire::ReplayState>)> = decoded(&b)
        .into_iter()
        .map(|x| match x {
            XfrmMsg::NewAe { id, attrs } => (id.sa_id.spi, id.flags, attrs.replay_esn, attrs.replay),
            x => panic!("{x:?}"),
        })
        .collect();
    let ae = wirespeed_xfrm::wire::AE_LVAL | wirespeed_xfrm::wire::AE_RVAL;
    let esn_at = |s: u64| Some(ReplayStateEsn { seq: s as u32, seq_hi: (s >> 32) as u32, ..esn });
    assert_eq!(got.len(), 3);
    assert!(got.contains(&(0x72, ae, esn_at(big), None)), "{got:?}");
    assert!(
        got.contains(&(
            0x71,
            ae,
            None,
            Some(wirespeed_xfrm::wire::ReplayState { oseq: 4, seq: 0, bitmap: 0 })
        )),
        "{got:?}"
    );
    assert_eq!(got[2], (0x72, ae, esn_at(big + 3), None));

    // The kernel now holds big + 3 (as its dump shows it): a resync leaves the SA as it is.
    m.apply_datagram(&newsa(msg_type::NEWSA, &inb_info, &inb(big + 3)));
    assert_eq!(m.find(0x72, false).unwrap().config.resume_seq, 0, "a resync is not a change");
    assert_eq!(m.stats().refused_by_kind.get("active_sa_changed"), None);

    // A restarted data plane (a new mirror) dumps it: its window resumes at big + 3.
    let mut restarted = setup();
    restarted.apply_datagram(&newsa(msg_type::NEWSA, &inb_info, &inb(big + 3)));
    let sa = restarted.find(0x72, false).expect("inbound SA mirrored after the restart");
    assert_eq!((sa.seq, sa.config.resume_seq), (big + 3, big + 3));
    assert_eq!(sa.kernel_replay_esn, Some((4, 128)));
}
