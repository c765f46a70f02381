//! `net_null`: RSS key, hash types and RETA programming (read back from the PMD), runtime RETA
//! updates, the symmetric-mode fallback, steering placement on a PMD without rte_flow, and a
//! throughput smoke test of a pipeline on its queues.

mod common;

use common::*;
use wirespeed_core::rss::{HashTypes, Reta, RssConfig, RssControl, RssGroup, SteeringPlan, SymmetricMode};
use wirespeed_core::{PerPacket, Pipeline, Port, ShardCtx, Verdict};
use wirespeed_dpdk::flow::Placement;
use wirespeed_dpdk::{DpdkError, DpdkPort, DpdkPortConfig, Mbuf, RssSettings, SymmetricSupport};

const VDEVS: [&str; 1] = ["net_null0"];

fn rss_port(queues: u16, hash: RssConfig) -> Option<DpdkPort> {
    port(&VDEVS, "net_null0", |c| {
        c.queues = queues;
        c.rss = Some(RssSettings { hash, reta_size: None });
    })
}

#[test]
fn key_types_and_reta_are_programmed_and_read_back() {
    let _g = serial();
    let Some(mut port) = rss_port(4, RssConfig::default()) else { return };
    let rss = port.hw_rss().expect("RSS configured");
    let report = rss.report().clone();
    assert_eq!(report.reta_size, 128, "net_null's RETA");
    assert_eq!(report.effective.key, wirespeed_core::rss::MS_KEY.to_vec());
    // net_null offers IPv4/IPv6 and TCP/UDP, not ESP; NAT-T-by-SPI has no DPDK type at all.
    assert_eq!(
        report.not_in_hardware.names(),
        vec!["ipv4-esp", "ipv4-natt", "ipv6-esp", "ipv6-natt"],
        "{report}"
    );
    let (key, _hf) = rss.query_key().unwrap();
    assert_eq!(key, wirespeed_core::rss::MS_KEY.to_vec());
    assert_eq!(rss.query_reta().unwrap(), Reta::round_robin(128, 4).unwrap().entries());

    // Runtime RETA update (what the rebalancer does), read back from the PMD.
    let mut reta = Reta::round_robin(128, 4).unwrap();
    reta.set(5, 3).unwrap();
    reta.set(127, 0).unwrap();
    rss.set_reta(&reta).unwrap();
    assert_eq!(rss.query_reta().unwrap(), reta.entries());
    // A smaller table is replicated: the same queue for every hash.
    let small = Reta::weighted(32, &[(0, 1), (2, 3)]).unwrap();
    rss.set_reta(&small).unwrap();
    let dev = rss.query_reta().unwrap();
    for h in [0u32, 1, 31, 32, 77, 0xdead_beef, u32::MAX] {
        assert_eq!(dev[(h & 127) as usize], small.queue(h), "hash {h:#x}");
    }
    // Out of range: refused, device unchanged.
    let bad = Reta::new(vec![4; 128]).unwrap();
    assert!(rss.set_reta(&bad).is_err());
    assert_eq!(rss.query_reta().unwrap(), dev);

    // A new key, through the RssControl trait.
    let ctl = port.rss().unwrap();
    let key: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(7)).collect();
    ctl.set_key(&key).unwrap();
    assert!(ctl.set_key(&key[..16]).is_err(), "net_null takes 40-byte keys only");
    assert_eq!(port.hw_rss().unwrap().query_key().unwrap().0, key);
}

#[test]
fn wrong_key_length_is_a_config_error_naming_the_field() {
    let _g = serial();
    if eal(&VDEVS).is_none() {
        return;
    }
    let mut cfg = DpdkPortConfig::new(eal_args(&VDEVS), "net_null0");
    cfg.mempool.mbufs = Some(4095);
    cfg.rx_desc = 256;
    cfg.tx_desc = 256;
    let hash = RssConfig { key: vec![0x6d; 52], types: HashTypes::ALL, ..RssConfig::default() };
    cfg.rss = Some(RssSettings { hash, reta_size: None });
    let err = DpdkPort::new(&cfg).unwrap_err();
    assert!(matches!(&err, DpdkError::BadConfig { field: "rss.hash.key", .. }), "{err}");
    assert!(err.to_string().contains("exactly 40-byte"), "{err}");
}

#[test]
fn symmetric_modes_fall_back_to_the_6d5a_key_without_pmd_support() {
    let _g = serial();
    for mode in [SymmetricMode::Xor, SymmetricMode::Sort, SymmetricMode::Key] {
        let Some(mut port) = rss_port(2, RssConfig { mode, ..RssConfig::default() }) else { return };
        let rss = port.hw_rss().unwrap();
        let r = rss.report().clone();
        assert_eq!(r.effective.mode, SymmetricMode::Key, "{mode:?}: {r}");
        match mode {
            SymmetricMode::Key => assert_eq!(r.symmetric, SymmetricSupport::Key),
            _ => assert!(
                matches!(&r.symmetric, SymmetricSupport::KeyFallback { requested, .. } if *requested == mode),
                "{r}"
            ),
        }
        let six_d_5a: Vec<u8> = (0..40).map(|i| wirespeed_core::rss::SYMMETRIC_KEY[i % 2]).collect();
        assert_eq!(rss.query_key().unwrap().0, six_d_5a, "{mode:?}");
        // The software hash of what the NIC does is symmetric.
        let h = rss.hasher().unwrap();
        let t = wirespeed_core::rss::FlowTuple::tcp(
            "66.9.149.187".parse().unwrap(),
            "161.142.100.80".parse().unwrap(),
            2794,
            1766,
        );
        assert_eq!(h.hash_tuple(&t), h.hash_tuple(&t.reversed()));
        assert_eq!(h.hash_tuple(&t), Some(0x9fcc9fcc), "6d5a key, 4-tuple (DESIGN vector)");
    }
}

#[test]
fn steering_rules_fall_back_to_software_rule_by_rule() {
    let _g = serial();
    let Some(mut port) = rss_port(4, RssConfig::default()) else { return };
    let plan = SteeringPlan::management_default(0, RssGroup::new(vec![1, 2, 3]), &[]);
    let rss = port.hw_rss().unwrap();
    let report = rss.apply_steering_report(&plan).unwrap();
    assert_eq!(report.rules.len(), plan.rules.len());
    assert!(report.needs_software_dispatcher());
    // net_null has no rte_flow: the first rule is refused by validate, the rest follow it.
    match &report.rules[0].placement {
        Placement::Software { why } => assert!(why.contains("rte_flow_validate refused"), "{why}"),
        p => panic!("{p:?}"),
    }
    for r in &report.rules[1..] {
        assert!(
            matches!(&r.placement, Placement::Software { why } if why.contains("after rule `arp`")),
            "{report}"
        );
    }
    let text = report.to_string();
    assert!(
        text.lines().count() == plan.rules.len() && text.contains("rule `ssh`: software dispatcher"),
        "{text}"
    );
    // The default group became the RETA.
    assert_eq!(rss.query_reta().unwrap(), plan.default.reta().unwrap().entries());
    let applied = port.rss().unwrap().apply_steering(&plan).unwrap();
    assert_eq!((applied.in_hardware, applied.in_software), (0, plan.rules.len()));
    // A plan naming a queue the port lacks is refused before anything is touched.
    let bad = SteeringPlan::rss_only(RssGroup::new(vec![0, 9]));
    assert!(port.rss().unwrap().apply_steering(&bad).is_err());
}

#[test]
fn throughput_smoke_on_every_queue() {
    let _g = serial();
    let Some(mut port) = rss_port(2, RssConfig::default()) else { return };
    let pool = port.mempool();
    let base = pool.in_use();
    let mut total = 0;
    for q in 0..2 {
        let (rx, tx) = port.queue_pair(q).unwrap();
        let mut pipeline =
            Pipeline::new(rx, tx, PerPacket(|_: &mut ShardCtx, _: &mut Mbuf| Verdict::Continue));
        let mut cx = ShardCtx::new(usize::from(q));
        for _ in 0..2000 {
            assert_eq!(pipeline.run_once(&mut cx), 32);
        }
        assert_eq!(cx.counters.rx_packets, 64_000);
        assert_eq!(cx.counters.tx_packets, 64_000);
        assert_eq!(cx.counters.total_drops(), 0);
        total += 64_000;
    }
    assert_eq!(pool.in_use(), base, "every mbuf back in the pool");
    let c = port.counters().unwrap();
    assert_eq!(c.rx_packets, total);
    assert_eq!(c.tx_packets, total);
    assert_eq!(c.xstat("rx_good_packets"), Some(total));
}
