//! The mirror state machine, message by message, from byte fixtures.

use std::time::Duration;

use wirespeed_stages::esp::{
    AeadAlgorithm, DefaultAction, Direction, EspMode, Limits, PolicyAction, SaSet, UdpEncap,
};
use wirespeed_test_xfrm::*;
use wirespeed_xfrm::msg::{self, XfrmMsg};
use wirespeed_xfrm::wire::{
    self, EncapTmpl, LifetimeCfg, Mark, ReplayState, ReplayStateEsn, UsersaInfo, msg_type,
};
use wirespeed_xfrm::{Applied, Mirror, MirrorConfig, Refusal, SaEntry, Scope};

const IF_ID: u32 = 7;
const MARK: Mark = Mark { v: 0x42, m: 0xff };

fn mirror() -> Mirror {
    let scope = Scope { if_ids: vec![IF_ID], marks: vec![MARK] };
    let mut cfg = MirrorConfig::new(scope, vec![ip(LOCAL)]);
    cfg.outbound_shards = vec![0, 1];
    Mirror::new(cfg)
}

fn apply(m: &mut Mirror, bytes: &[u8]) -> Result<Applied, Refusal> {
    let (h, p) = msg::messages(bytes).next().unwrap().unwrap();
    m.apply(&XfrmMsg::decode(h.kind, p).unwrap())
}

fn scoped_gcm(seed: u8) -> A {
    A { aead: Some(gcm128(seed)), if_id: Some(IF_ID), ..A::default() }
}

#[test]
fn allocspi_placeholder_is_filled_by_updsa() {
    let mut m = mirror();
    let info = UsersaInfo { replay_window: 0, ..sa_info(PEER, LOCAL, 0xc100_0001, 3) };
    assert_eq!(apply(&mut m, &allocspi(&info, 0xc000_0000, 0xcfff_ffff)), Ok(Applied::Unchanged));
    assert_eq!(m.placeholders(), 1);
    assert!(m.configs().is_empty());
    // The kernel's answer to ALLOCSPI, and what a dump shows: a NEWSA without algorithms.
    assert_eq!(apply(&mut m, &newsa(msg_type::NEWSA, &info, &if_id(IF_ID))), Ok(Applied::Unchanged));
    assert_eq!(m.placeholders(), 1);
    let v = m.version();
    let filled = UsersaInfo { replay_window: 64, ..info };
    assert_eq!(apply(&mut m, &newsa(msg_type::UPDSA, &filled, &scoped_gcm(1))), Ok(Applied::Changed));
    assert_eq!(m.version(), v + 1);
    assert_eq!(m.placeholders(), 0);
    let c = m.configs();
    assert_eq!(c.len(), 1);
    let c = &c[0];
    assert_eq!(c.spi, 0xc100_0001);
    assert_eq!(c.direction, Direction::Inbound);
    assert_eq!(c.algorithm, AeadAlgorithm::Aes128Gcm);
    assert_eq!(c.keymat, (1..21).collect::<Vec<u8>>());
    assert_eq!(c.mode, EspMode::Tunnel { local: ip(LOCAL), remote: ip(PEER) });
    assert_eq!(c.replay_window, 64);
    assert!(!c.esn);
}

#[test]
fn outbound_sa_resolves_its_policy_and_rekeys() {
    let mut m = mirror();
    let pol = out_policy(0x201, 100, "10.1.0.0", 16, "10.2.0.0", 16);
    let pa = A { tmpls: vec![tmpl(LOCAL, PEER, 3)], if_id: Some(IF_ID), ..A::default() };
    assert_eq!(apply(&mut m, &newpolicy(msg_type::NEWPOLICY, &pol, &pa)), Ok(Applied::Changed));
    // No SA yet: the policy protects with nothing (packets dropped, never sent in clear) and
    // the data plane should raise an ACQUIRE for it.
    assert_eq!(m.spd().policies[0].action, PolicyAction::Protect { spis: vec![] });
    assert_eq!(m.unresolved().len(), 1);

    let info =
        UsersaInfo { flags: wire::STATE_ESN, replay_window: 0, ..sa_info(LOCAL, PEER, 0xa000_0003, 3) };
    let a = A {
        esn: Some(ReplayStateEsn { bmp_len: 4, oseq: 0, seq: 0, oseq_hi: 0, seq_hi: 0, replay_window: 0 }),
        ..scoped_gcm(2)
    };
    assert_eq!(apply(&mut m, &newsa(msg_type::NEWSA, &info, &a)), Ok(Applied::Changed));
    let sa = m.find(0xa000_0003, true).unwrap();
    assert_eq!(sa.seq, 0, "a fresh outbound SA starts its numbering at 1");
    assert_eq!(sa.config.direction, Direction::Outbound { shard: 1 }, "reqid 3 % 2 shards");
    assert!(sa.config.esn);
    assert!(sa.config.replay_window > 0, "ESN SAs get a window even outbound");
    assert_eq!(sa.config.mode, EspMode::Tunnel { local: ip(LOCAL), remote: ip(PEER) });
    let spd = m.spd();
    assert_eq!(spd.policies[0].action, PolicyAction::Protect { spis: vec![0xa000_0003] });
    assert!(m.unresolved().is_empty());
    SaSet::from_configs(&m.configs(), &spd).expect("the desired state builds a SaSet");

    // Rekey: a newer SA for the same template takes over; deleting the old one keeps it.
    let newer = sa_info(LOCAL, PEER, 0xa000_0004, 3);
    assert_eq!(apply(&mut m, &newsa(msg_type::NEWSA, &newer, &scoped_gcm(3))), Ok(Applied::Changed));
    assert_eq!(m.spd().policies[0].action, PolicyAction::Protect { spis: vec![0xa000_0004] });
    assert_eq!(apply(&mut m, &delsa(&info, &if_id(IF_ID))), Ok(Applied::Changed));
    assert_eq!(m.spd().policies[0].action, PolicyAction::Protect { spis: vec![0xa000_0004] });
    SaSet::from_configs(&m.configs(), &m.spd()).unwrap();

    // An SA of another reqid does not serve the policy.
    let other = sa_info(LOCAL, PEER, 0xa000_0010, 99);
    apply(&mut m, &newsa(msg_type::NEWSA, &other, &scoped_gcm(4))).unwrap();
    assert_eq!(m.spd().policies[0].action, PolicyAction::Protect { spis: vec![0xa000_0004] });
}

#[test]
fn unscoped_outbound_sa_is_refused_and_counted() {
    let mut m = mirror();
    let info = sa_info(LOCAL, PEER, 0xb000_0001, 1);
    let r = apply(&mut m, &newsa(msg_type::NEWSA, &info, &A { aead: Some(gcm128(1)), ..A::default() }));
    assert!(
        matches!(r, Err(Refusal::UnscopedOutbound { spi: 0xb000_0001, if_id: None, mark: None, .. })),
        "{r:?}"
    );
    // An if_id the data plane does not own, and a mark with a zero mask, are no scope either.
    let info2 = sa_info(LOCAL, PEER, 0xb000_0002, 1);
    let r = apply(
        &mut m,
        &newsa(msg_type::NEWSA, &info2, &A { aead: Some(gcm128(1)), if_id: Some(8), ..A::default() }),
    );
    assert!(matches!(r, Err(Refusal::UnscopedOutbound { if_id: Some(8), .. })), "{r:?}");
    let info3 = sa_info(LOCAL, PEER, 0xb000_0003, 1);
    let a = A { aead: Some(gcm128(1)), mark: Some(Mark { v: 0x42, m: 0 }), ..A::default() };
    assert!(matches!(
        apply(&mut m, &newsa(msg_type::NEWSA, &info3, &a)),
        Err(Refusal::UnscopedOutbound { .. })
    ));
    assert_eq!(m.stats().refused_by_kind.get("unscoped_outbound"), Some(&3));
    assert!(m.configs().is_empty());
    assert!(
        m.recent_refusals().any(|r| r.to_string().contains("if_id_out")),
        "the log line says what to configure"
    );
    // A mark in scope is enough.
    let info4 = sa_info(LOCAL, PEER, 0xb000_0004, 1);
    let a = A { aead: Some(gcm128(1)), mark: Some(MARK), ..A::default() };
    assert_eq!(apply(&mut m, &newsa(msg_type::NEWSA, &info4, &a)), Ok(Applied::Changed));
    assert_eq!(m.find(0xb000_0004, true).unwrap().sa_ref().mark, Some(MARK));
    // The host's own inbound SA is out of scope (ignored, counted).
    let inbound = sa_info(PEER, LOCAL, 0xb000_0005, 1);
    let r = apply(&mut m, &newsa(msg_type::NEWSA, &inbound, &A { aead: Some(gcm128(1)), ..A::default() }));
    assert!(matches!(r, Err(Refusal::OutOfScope { .. })), "{r:?}");
    // So are unscoped policies.
    let pol = out_policy(0x301, 1, "10.1.0.0", 16, "10.2.0.0", 16);
    let r = apply(
        &mut m,
        &newpolicy(msg_type::NEWPOLICY, &pol, &A { tmpls: vec![tmpl(LOCAL, PEER, 1)], ..A::default() }),
    );
    assert!(matches!(r, Err(Refusal::OutOfScope { .. })), "{r:?}");
    assert!(m.policies().next().is_none());
}

#[test]
fn algorithms_supported_and_refused() {
    let mut m = mirror();
    let aead = |name: &str, len: usize, icv: u32| wire::AlgoAead {
        name: name.into(),
        key: zeroize::Zeroizing::new(vec![7; len]),
        icv_bits: icv,
    };
    let cases: [(wire::AlgoAead, Option<AeadAlgorithm>); 6] = [
        (aead("rfc4106(gcm(aes))", 20, 128), Some(AeadAlgorithm::Aes128Gcm)),
        (aead("rfc4106(gcm(aes))", 36, 128), Some(AeadAlgorithm::Aes256Gcm)),
        (aead("rfc7539esp(chacha20,poly1305)", 36, 128), Some(AeadAlgorithm::ChaCha20Poly1305)),
        (aead("rfc4106(gcm(aes))", 28, 128), None),
        (aead("rfc4106(gcm(aes))", 20, 96), None),
        (aead("rfc4309(ccm(aes))", 19, 128), None),
    ];
    for (i, (alg, want)) in cases.into_iter().enumerate() {
        let info = sa_info(PEER, LOCAL, 0x100 + i as u32, 1);
        let r = apply(
            &mut m,
            &newsa(msg_type::NEWSA, &info, &A { aead: Some(alg), if_id: Some(IF_ID), ..A::default() }),
        );
        match want {
            Some(a) => {
                assert_eq!(r, Ok(Applied::Changed));
                assert_eq!(m.find(0x100 + i as u32, false).unwrap().config.algorithm, a);
            }
            None => assert!(matches!(r, Err(Refusal::UnsupportedAlgorithm { .. })), "{i}: {r:?}"),
        }
    }
    let info = sa_info(PEER, LOCAL, 0x200, 1);
    let a = A { crypt: Some(("cbc(aes)", vec![1; 16])), if_id: Some(IF_ID), ..A::default() };
    let r = apply(&mut m, &newsa(msg_type::NEWSA, &info, &a));
    assert!(matches!(&r, Err(Refusal::UnsupportedAlgorithm { name, .. }) if name == "cbc(aes)"), "{r:?}");
    assert_eq!(m.stats().refused_by_kind.get("unsupported_algorithm"), Some(&4));
    // AH is not mirrored.
    let ah = UsersaInfo { id: wire::XfrmId { proto: 51, ..info.id }, ..info };
    assert!(matches!(
        apply(&mut m, &newsa(msg_type::NEWSA, &ah, &scoped_gcm(1))),
        Err(Refusal::UnsupportedProto { proto: 51, .. })
    ));
    // BEET mode is not either.
    let beet = UsersaInfo { mode: 4, ..sa_info(PEER, LOCAL, 0x201, 1) };
    assert!(matches!(
        apply(&mut m, &newsa(msg_type::NEWSA, &beet, &scoped_gcm(1))),
        Err(Refusal::UnsupportedMode { mode: 4, .. })
    ));
}

#[test]
fn transport_nat_t_replay_and_lifetimes() {
    let mut m = mirror();
    let lft = LifetimeCfg {
        soft_byte_limit: 1_000_000,
        hard_packet_limit: 5_000,
        soft_add_expires_seconds: 3000,
        hard_add_expires_seconds: 3600,
        ..LifetimeCfg::default()
    };
    let out = UsersaInfo { mode: wire::MODE_TRANSPORT, lft, ..sa_info(LOCAL, PEER, 0xd000_0001, 1) };
    let encap = EncapTmpl { encap_type: wire::UDP_ENCAP_ESPINUDP, sport: 4500, dport: 34567, oa: [0; 16] };
    let a = A { encap: Some(encap), ..scoped_gcm(1) };
    assert_eq!(apply(&mut m, &newsa(msg_type::NEWSA, &out, &a)), Ok(Applied::Changed));
    let sa = m.find(0xd000_0001, true).unwrap();
    assert_eq!(sa.config.mode, EspMode::Transport);
    assert_eq!(sa.config.udp_encap, Some(UdpEncap { src_port: 4500, dst_port: 34567 }));
    assert_eq!(
        sa.config.lifetime.soft,
        Limits { packets: None, bytes: Some(1_000_000), time: Some(Duration::from_secs(3000)) }
    );
    assert_eq!(
        sa.config.lifetime.hard,
        Limits { packets: Some(5_000), bytes: None, time: Some(Duration::from_secs(3600)) }
    );
    // Inbound: the kernel's ports are those of received packets; wirespeed's those it writes.
    let inb = sa_info(PEER, LOCAL, 0xd000_0002, 1);
    let encap_in = EncapTmpl { sport: 34567, dport: 4500, ..encap };
    let replay = {
        let mut v = Vec::new();
        ReplayState { oseq: 0, seq: 77, bitmap: 0 }.write(&mut v);
        v
    };
    let a = A { encap: Some(encap_in), raw: vec![(wire::attr::REPLAY_VAL, replay)], ..scoped_gcm(2) };
    apply(&mut m, &newsa(msg_type::NEWSA, &inb, &a)).unwrap();
    assert_eq!(m.find(0xd000_0002, false).unwrap().seq, 77, "inbound: highest sequence seen");
    assert_eq!(
        m.find(0xd000_0002, false).unwrap().config.udp_encap,
        Some(UdpEncap { src_port: 4500, dst_port: 34567 })
    );
    let bad = sa_info(PEER, LOCAL, 0xd000_0003, 1);
    let r = apply(
        &mut m,
        &newsa(
            msg_type::NEWSA,
            &bad,
            &A { encap: Some(EncapTmpl { encap_type: 1, ..encap }), ..scoped_gcm(3) },
        ),
    );
    assert!(matches!(r, Err(Refusal::UnsupportedEncap { encap_type: 1, .. })), "{r:?}");
}

#[test]
fn inbound_selector_is_mirrored_and_wildcards_are_none() {
    let mut m = mirror();
    let info = UsersaInfo { sel: sel("10.2.0.0", 16, "10.1.0.0", 16), ..sa_info(PEER, LOCAL, 0xe1, 1) };
    apply(&mut m, &newsa(msg_type::NEWSA, &info, &scoped_gcm(1))).unwrap();
    let s = m.find(0xe1, false).unwrap().config.selector.unwrap();
    assert_eq!(s.src.to_string(), "10.2.0.0/16");
    assert_eq!(s.dst.to_string(), "10.1.0.0/16");
    assert_eq!((s.proto, s.src_ports, s.dst_ports), (None, (0, u16::MAX), (0, u16::MAX)));
    let wildcard = sa_info(PEER, LOCAL, 0xe2, 1);
    apply(&mut m, &newsa(msg_type::NEWSA, &wildcard, &scoped_gcm(2))).unwrap();
    assert_eq!(m.find(0xe2, false).unwrap().config.selector, None);
    let odd = UsersaInfo {
        sel: wire::XfrmSelector { sport_mask: 0xff00, ..sel("10.2.0.0", 16, "10.1.0.0", 16) },
        ..sa_info(PEER, LOCAL, 0xe3, 1)
    };
    assert!(matches!(
        apply(&mut m, &newsa(msg_type::NEWSA, &odd, &scoped_gcm(3))),
        Err(Refusal::UnsupportedSelector { .. })
    ));
}

#[test]
fn sa_dir_attribute_decides_when_no_address_is_local() {
    let mut m = mirror();
    let info = sa_info("203.0.113.1", "203.0.113.2", 0xf1, 1);
    let r = apply(&mut m, &newsa(msg_type::NEWSA, &info, &scoped_gcm(1)));
    assert!(matches!(r, Err(Refusal::UnknownDirection { .. })), "{r:?}");
    let info = sa_info("203.0.113.1", "203.0.113.2", 0xf2, 1);
    apply(&mut m, &newsa(msg_type::NEWSA, &info, &A { sa_dir: Some(2), ..scoped_gcm(1) })).unwrap();
    assert!(m.find(0xf2, true).is_some());
}

#[test]
fn delete_expire_and_flush() {
    let mut m = mirror();
    let a = sa_info(PEER, LOCAL, 0x11, 1);
    let b = sa_info(PEER, LOCAL, 0x12, 1);
    let c = sa_info(LOCAL, PEER, 0x13, 1);
    for (i, s) in [a, b, c].iter().enumerate() {
        apply(&mut m, &newsa(msg_type::NEWSA, s, &scoped_gcm(i as u8))).unwrap();
    }
    assert_eq!(m.configs().len(), 3);
    // A DELSA names the SA as the kernel does, by (daddr, SPI, proto, mark): another mark is
    // another SA; the if_id does not matter.
    assert_eq!(apply(&mut m, &delsa(&a, &A { mark: Some(MARK), ..A::default() })), Ok(Applied::Unchanged));
    assert_eq!(m.stats().unknown_deletes, 1);
    assert_eq!(apply(&mut m, &delsa(&a, &A::default())), Ok(Applied::Changed));
    assert_eq!(m.configs().len(), 2);
    // Soft expiry: kept (the daemon rekeys); hard: the kernel deleted it without a DELSA.
    assert_eq!(apply(&mut m, &expire(&b, false, &if_id(IF_ID))), Ok(Applied::Unchanged));
    assert_eq!(m.configs().len(), 2);
    assert_eq!(apply(&mut m, &expire(&b, true, &if_id(IF_ID))), Ok(Applied::Changed));
    assert_eq!(m.configs().len(), 1);
    assert_eq!(m.stats().kernel_expires, 2);
    let pol = out_policy(0x401, 1, "10.1.0.0", 16, "10.2.0.0", 16);
    let pa = A { tmpls: vec![tmpl(LOCAL, PEER, 1)], if_id: Some(IF_ID), ..A::default() };
    apply(&mut m, &newpolicy(msg_type::NEWPOLICY, &pol, &pa)).unwrap();
    assert_eq!(m.spd().policies[0].action, PolicyAction::Protect { spis: vec![0x13] });
    assert_eq!(apply(&mut m, &flushsa(0)), Ok(Applied::Changed));
    assert!(m.configs().is_empty());
    assert_eq!(m.spd().policies[0].action, PolicyAction::Protect { spis: vec![] });
    assert_eq!(apply(&mut m, &delpolicy(&pol, &if_id(IF_ID))), Ok(Applied::Changed));
    assert!(m.spd().policies.is_empty());
    apply(&mut m, &newpolicy(msg_type::NEWPOLICY, &pol, &pa)).unwrap();
    assert_eq!(apply(&mut m, &flushpolicy()), Ok(Applied::Changed));
    assert!(m.spd().policies.is_empty());
}

#[test]
fn active_sa_is_never_changed_in_place() {
    let mut m = mirror();
    let info = sa_info(LOCAL, PEER, 0x21, 1);
    apply(&mut m, &newsa(msg_type::NEWSA, &info, &scoped_gcm(1))).unwrap();
    // The same SA again (a dump racing an event): nothing to do.
    assert_eq!(apply(&mut m, &newsa(msg_type::UPDSA, &info, &scoped_gcm(1))), Ok(Applied::Unchanged));
    // New keys under the same SPI: refused, the old SA stays.
    let r = apply(&mut m, &newsa(msg_type::UPDSA, &info, &scoped_gcm(9)));
    assert_eq!(r, Err(Refusal::ActiveSaChanged { spi: 0x21 }));
    assert_eq!(m.find(0x21, true).unwrap().config.keymat[0], 1);
}

#[test]
fn duplicate_spi_in_one_direction_is_refused() {
    let mut m = mirror();
    apply(&mut m, &newsa(msg_type::NEWSA, &sa_info(LOCAL, PEER, 0x31, 1), &scoped_gcm(1))).unwrap();
    let r = apply(&mut m, &newsa(msg_type::NEWSA, &sa_info(LOCAL, "198.51.100.8", 0x31, 1), &scoped_gcm(2)));
    assert_eq!(r, Err(Refusal::DuplicateSpi { spi: 0x31, direction: "outbound" }));
    assert!(matches!(m.entries().filter(|(_, e)| matches!(e, SaEntry::Refused(_))).count(), 1));
    // The same SPI inbound is another SA.
    assert_eq!(
        apply(&mut m, &newsa(msg_type::NEWSA, &sa_info(PEER, LOCAL, 0x31, 1), &scoped_gcm(3))),
        Ok(Applied::Changed)
    );
    SaSet::from_configs(&m.configs(), &m.spd()).unwrap();
}

#[test]
fn spd_order_block_bypass_and_directions() {
    let mut m = mirror();
    let s = |i| A { if_id: Some(IF_ID), tmpls: vec![tmpl(LOCAL, PEER, i)], ..A::default() };
    let protect = out_policy(0x501, 200, "10.1.0.0", 16, "10.2.0.0", 16);
    let block = wire::UserpolicyInfo {
        action: wire::POLICY_BLOCK,
        ..out_policy(0x509, 50, "10.1.9.0", 24, "10.2.0.0", 16)
    };
    let bypass = out_policy(0x511, 100, "10.1.0.0", 16, "10.2.5.0", 24);
    let inbound =
        wire::UserpolicyInfo { dir: wire::POLICY_IN, ..out_policy(0x518, 1, "10.2.0.0", 16, "10.1.0.0", 16) };
    apply(&mut m, &newpolicy(msg_type::NEWPOLICY, &protect, &s(1))).unwrap();
    apply(&mut m, &newpolicy(msg_type::NEWPOLICY, &block, &if_id(IF_ID))).unwrap();
    apply(&mut m, &newpolicy(msg_type::NEWPOLICY, &bypass, &if_id(IF_ID))).unwrap();
    apply(&mut m, &newpolicy(msg_type::NEWPOLICY, &inbound, &s(1))).unwrap();
    assert_eq!(m.policies().count(), 4);
    let spd = m.spd();
    let actions: Vec<_> =
        spd.policies.iter().map(|p| (p.selector.dst.to_string(), p.action.clone())).collect();
    assert_eq!(
        actions,
        vec![
            ("10.2.0.0/16".to_string(), PolicyAction::Discard),
            ("10.2.5.0/24".to_string(), PolicyAction::Bypass),
            ("10.2.0.0/16".to_string(), PolicyAction::Protect { spis: vec![] }),
        ]
    );
    assert_eq!(spd.default_action, DefaultAction::Bypass);
    // UPDPOLICY replaces by index.
    let moved = wire::UserpolicyInfo { priority: 10, ..protect };
    assert_eq!(apply(&mut m, &newpolicy(msg_type::UPDPOLICY, &moved, &s(1))), Ok(Applied::Changed));
    assert_eq!(m.spd().policies[0].action, PolicyAction::Protect { spis: vec![] });
    // An AH template is refused.
    let mut ah = tmpl(LOCAL, PEER, 1);
    ah.id.proto = 51;
    let p = out_policy(0x521, 1, "10.3.0.0", 16, "10.4.0.0", 16);
    let r = apply(
        &mut m,
        &newpolicy(msg_type::NEWPOLICY, &p, &A { tmpls: vec![ah], if_id: Some(IF_ID), ..A::default() }),
    );
    assert!(matches!(r, Err(Refusal::UnsupportedTemplate { proto: 51, .. })), "{r:?}");
}

#[test]
fn resync_sweeps_what_the_new_dump_lacks() {
    let mut m = mirror();
    let a = sa_info(PEER, LOCAL, 0x41, 1);
    let b = sa_info(PEER, LOCAL, 0x42, 1);
    apply(&mut m, &newsa(msg_type::NEWSA, &a, &scoped_gcm(1))).unwrap();
    apply(&mut m, &newsa(msg_type::NEWSA, &b, &scoped_gcm(2))).unwrap();
    m.begin_resync();
    // The dump only has `a` (b was deleted while events were lost).
    let mut dgram = newsa(msg_type::NEWSA, &a, &scoped_gcm(1));
    let mut b2 = msg::Builder::new();
    let at = b2.start(msg::NLMSG_DONE, msg::NLM_F_MULTI, 1);
    b2.fixed(|o| o.extend_from_slice(&0i32.to_ne_bytes()));
    b2.finish(at);
    dgram.extend_from_slice(b2.bytes());
    assert_eq!(m.apply_datagram(&dgram), (false, true));
    assert_eq!(m.end_resync(), Applied::Changed);
    assert_eq!(m.configs().len(), 1);
    assert!(m.find(0x41, false).is_some());
}

#[test]
fn used_outbound_sa_is_refused_and_retired_with_a_rekey() {
    let mut m = mirror();
    // After a data-plane restart the kernel SA shows the counters the data plane pushed back.
    let used = UsersaInfo {
        curlft: wire::LifetimeCur { packets: 1000, bytes: 1_500_000, ..Default::default() },
        ..sa_info(LOCAL, PEER, 0x61, 1)
    };
    let r = apply(&mut m, &newsa(msg_type::NEWSA, &used, &scoped_gcm(1)));
    assert!(matches!(r, Err(Refusal::UsedOutbound { spi: 0x61, packets: 1000, .. })), "{r:?}");
    // Or a kernel outbound sequence number.
    let a = A {
        esn: Some(ReplayStateEsn {
            bmp_len: 1,
            oseq: 5,
            oseq_hi: 0,
            replay_window: 32,
            ..Default::default()
        }),
        ..scoped_gcm(2)
    };
    let seq_used = UsersaInfo { flags: wire::STATE_ESN, ..sa_info(LOCAL, PEER, 0x62, 1) };
    assert!(matches!(
        apply(&mut m, &newsa(msg_type::NEWSA, &seq_used, &a)),
        Err(Refusal::UsedOutbound { seq: 5, .. })
    ));
    assert!(m.configs().is_empty());
    // Inbound SAs with counters are fine.
    let inbound = UsersaInfo { curlft: used.curlft, ..sa_info(PEER, LOCAL, 0x63, 1) };
    assert_eq!(apply(&mut m, &newsa(msg_type::NEWSA, &inbound, &scoped_gcm(3))), Ok(Applied::Changed));
    // The feedback asks the daemon to rekey both, once.
    let mut f = wirespeed_xfrm::Feedback::new(Duration::from_secs(1), Duration::from_secs(1));
    let mut b = msg::Builder::new();
    assert_eq!(f.retire_used(&m, &mut b), 2);
    assert_eq!(f.retire_used(&m, &mut b), 0);
    let spis: Vec<(u32, bool)> = msg::messages(b.bytes())
        .map(|r| {
            let (h, p) = r.unwrap();
            match XfrmMsg::decode(h.kind, p).unwrap() {
                XfrmMsg::Expire { sa, hard } => (sa.info.id.spi, hard),
                x => panic!("{x:?}"),
            }
        })
        .collect();
    assert_eq!(spis, vec![(0x61, false), (0x62, false)]);
}

#[test]
fn outbound_sas_of_the_initial_dump_are_retired_and_stay_retired_across_resyncs() {
    let mut m = mirror();
    // The initial dump: an unused outbound SA (the kernel shows no counters, but an earlier run
    // of the data plane may have sent under it after its last report) and an inbound one.
    let out = sa_info(LOCAL, PEER, 0x71, 1);
    let inb = sa_info(PEER, LOCAL, 0x72, 1);
    assert_eq!(apply(&mut m, &newsa(msg_type::NEWSA, &out, &scoped_gcm(1))), Ok(Applied::Changed));
    assert_eq!(apply(&mut m, &newsa(msg_type::NEWSA, &inb, &scoped_gcm(2))), Ok(Applied::Changed));
    assert!(m.find(0x71, true).is_some());
    assert_eq!(m.retire_preexisting_outbound(), Applied::Changed);
    assert!(m.find(0x71, true).is_none(), "the outbound SA left the data plane");
    assert!(m.find(0x72, false).is_some(), "the inbound SA stays");
    assert!(
        m.drain_refusals().any(|r| matches!(r, Refusal::PreexistingOutbound { spi: 0x71, .. })),
        "refusal recorded"
    );
    // Nothing left to retire: a second call changes nothing.
    assert_eq!(m.retire_preexisting_outbound(), Applied::Unchanged);
    // A resync dump that shows it again does not bring it back.
    m.begin_resync();
    assert_eq!(apply(&mut m, &newsa(msg_type::NEWSA, &out, &scoped_gcm(1))), Ok(Applied::Unchanged));
    assert_eq!(apply(&mut m, &newsa(msg_type::NEWSA, &inb, &scoped_gcm(2))), Ok(Applied::Unchanged));
    m.end_resync();
    assert!(m.find(0x71, true).is_none());
    assert!(
        m.configs().iter().all(|c| c.spi != 0x71),
        "{:?}",
        m.configs().iter().map(|c| c.spi).collect::<Vec<_>>()
    );
    // The daemon is asked to rekey it, once.
    let mut f = wirespeed_xfrm::Feedback::new(Duration::from_secs(1), Duration::from_secs(1));
    let mut b = msg::Builder::new();
    assert_eq!(f.retire_used(&m, &mut b), 1);
    assert_eq!(f.retire_used(&m, &mut b), 0);
    // A new outbound SA that arrives live (the rekey) is mirrored.
    let fresh = sa_info(LOCAL, PEER, 0x73, 1);
    assert_eq!(apply(&mut m, &newsa(msg_type::NEWSA, &fresh, &scoped_gcm(3))), Ok(Applied::Changed));
    assert!(m.find(0x73, true).is_some());
    // The daemon deletes the retired one.
    assert_eq!(apply(&mut m, &delsa(&out, &scoped_gcm(1))), Ok(Applied::Unchanged));
    assert!(m.entries().all(|(k, _)| k.spi != 0x71));
}

mod index {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// After any sequence of installs, deletions, expiries and flushes, `find` (indexed)
        /// agrees with a scan of the active SAs, and the desired state builds.
        #[test]
        fn find_agrees_with_a_scan(ops in prop::collection::vec((0u8..5, 0u32..6, any::<bool>()), 1..40)) {
            let mut m = mirror();
            for (op, spi, outbound) in ops {
                let (src, dst) = if outbound { (LOCAL, PEER) } else { (PEER, LOCAL) };
                let info = sa_info(src, dst, 0x100 + spi, 1);
                let bytes = match op {
                    0 | 1 => newsa(msg_type::NEWSA, &info, &scoped_gcm(spi as u8)),
                    2 => delsa(&info, &A::default()),
                    3 => expire(&info, true, &A::default()),
                    _ => flushsa(0),
                };
                m.apply_datagram(&bytes);
                for sa in m.active() {
                    let found = m.find(sa.key.spi, sa.is_outbound()).map(|f| f.key);
                    prop_assert_eq!(found, Some(sa.key));
                }
                for spi in 0x100..0x106 {
                    for out in [false, true] {
                        let scan = m.active().find(|s| s.key.spi == spi && s.is_outbound() == out).map(|s| s.key);
                        prop_assert_eq!(m.find(spi, out).map(|s| s.key), scan);
                    }
                }
                prop_assert!(SaSet::from_configs(&m.configs(), &m.spd()).is_ok());
            }
        }
    }
}

fn mirror_with(f: impl FnOnce(&mut MirrorConfig)) -> Mirror {
    let scope = Scope { if_ids: vec![IF_ID], marks: vec![MARK] };
    let mut cfg = MirrorConfig::new(scope, vec![ip(LOCAL)]);
    cfg.outbound_shards = vec![0, 1, 2, 3];
    f(&mut cfg);
    Mirror::new(cfg)
}

fn shard_of(m: &Mirror, spi: u32) -> usize {
    match m.find(spi, true).unwrap().config.direction {
        Direction::Outbound { shard } => shard,
        d => panic!("{d:?}"),
    }
}

#[test]
fn every_sa_of_a_reqid_is_owned_by_its_configured_shard_across_rekeys() {
    let mut m = mirror_with(|c| {
        c.reqid_shards.insert(9, 2);
    });
    let pol = out_policy(0x301, 100, "10.1.0.0", 16, "10.2.0.0", 16);
    let pa = A { tmpls: vec![tmpl(LOCAL, PEER, 9)], if_id: Some(IF_ID), ..A::default() };
    apply(&mut m, &newpolicy(msg_type::NEWPOLICY, &pol, &pa)).unwrap();
    // SPIs of every residue: the reqid decides, not the SPI.
    for (i, spi) in [0xd000_0000u32, 0xd000_0001, 0xd000_0002, 0xd000_0003].into_iter().enumerate() {
        apply(&mut m, &newsa(msg_type::NEWSA, &sa_info(LOCAL, PEER, spi, 9), &scoped_gcm(10 + i as u8)))
            .unwrap();
        assert_eq!(shard_of(&m, spi), 2, "{spi:#x}");
        // Overlap: the newest serves the policy, on the same shard as the one it replaces.
        assert_eq!(m.spd().policies[0].action, PolicyAction::Protect { spis: vec![spi] });
        SaSet::from_configs(&m.configs(), &m.spd()).unwrap();
    }
    // The old ones go later; the policy keeps the newest the whole time.
    for spi in [0xd000_0000u32, 0xd000_0001, 0xd000_0002] {
        apply(&mut m, &delsa(&sa_info(LOCAL, PEER, spi, 9), &if_id(IF_ID))).unwrap();
        assert_eq!(m.spd().policies[0].action, PolicyAction::Protect { spis: vec![0xd000_0003] });
    }
    // Without a configured shard: reqid modulo the outbound shards (7 % 4 = 3).
    apply(&mut m, &newsa(msg_type::NEWSA, &sa_info(LOCAL, PEER, 0xd100_0000, 7), &scoped_gcm(20))).unwrap();
    assert_eq!(shard_of(&m, 0xd100_0000), 3);
}

#[test]
fn per_cpu_sas_map_onto_shards() {
    // CPU n -> shard pcpu_shards[n % 2]: CPU 0 and 2 on shard 1, CPU 1 on shard 0.
    let mut m = mirror_with(|c| {
        c.outbound_shards = vec![0, 1];
        c.pcpu_shards = vec![1, 0];
    });
    let pol = out_policy(0x302, 100, "10.1.0.0", 16, "10.2.0.0", 16);
    let pa = A { tmpls: vec![tmpl(LOCAL, PEER, 4)], if_id: Some(IF_ID), ..A::default() };
    apply(&mut m, &newpolicy(msg_type::NEWPOLICY, &pol, &pa)).unwrap();
    let pcpu = |cpu: u32, seed: u8| A {
        raw: vec![(wire::attr::SA_PCPU, cpu.to_ne_bytes().to_vec())],
        ..scoped_gcm(seed)
    };
    let protect = |m: &Mirror| match &m.spd().policies[0].action {
        PolicyAction::Protect { spis } => spis.clone(),
        a => panic!("{a:?}"),
    };
    // The SA without CPU (RFC 9611's fallback SA): reqid 4 % 2 -> shard 0.
    apply(&mut m, &newsa(msg_type::NEWSA, &sa_info(LOCAL, PEER, 0xe000_0000, 4), &scoped_gcm(30))).unwrap();
    assert_eq!(shard_of(&m, 0xe000_0000), 0);
    assert_eq!(protect(&m), vec![0xe000_0000]);
    // CPU 0's SA: shard 1 gets its own SA, shard 0 keeps the fallback.
    apply(&mut m, &newsa(msg_type::NEWSA, &sa_info(LOCAL, PEER, 0xe000_0010, 4), &pcpu(0, 31))).unwrap();
    assert_eq!(m.find(0xe000_0010, true).unwrap().pcpu, Some(0));
    assert_eq!(shard_of(&m, 0xe000_0010), 1);
    assert_eq!(protect(&m), vec![0xe000_0000, 0xe000_0010], "shard order: 0, 1");
    // CPU 1's SA takes shard 0 from the fallback.
    apply(&mut m, &newsa(msg_type::NEWSA, &sa_info(LOCAL, PEER, 0xe000_0011, 4), &pcpu(1, 32))).unwrap();
    assert_eq!(shard_of(&m, 0xe000_0011), 0);
    assert_eq!(protect(&m), vec![0xe000_0011, 0xe000_0010]);
    // CPU 2 maps onto shard 1 too: the newer of the two serves it, one SA per shard.
    apply(&mut m, &newsa(msg_type::NEWSA, &sa_info(LOCAL, PEER, 0xe000_0012, 4), &pcpu(2, 33))).unwrap();
    assert_eq!(protect(&m), vec![0xe000_0011, 0xe000_0012]);
    SaSet::from_configs(&m.configs(), &m.spd()).expect("one SA per shard");
    // Rekey of CPU 1's SA: the new one replaces it on shard 0; the old one's deletion later
    // changes nothing for the policy.
    apply(&mut m, &newsa(msg_type::NEWSA, &sa_info(LOCAL, PEER, 0xe000_0021, 4), &pcpu(1, 34))).unwrap();
    assert_eq!(protect(&m), vec![0xe000_0021, 0xe000_0012]);
    apply(&mut m, &delsa(&sa_info(LOCAL, PEER, 0xe000_0011, 4), &if_id(IF_ID))).unwrap();
    assert_eq!(protect(&m), vec![0xe000_0021, 0xe000_0012]);
    // Shard 0's per-CPU SA gone: the fallback serves it again.
    apply(&mut m, &delsa(&sa_info(LOCAL, PEER, 0xe000_0021, 4), &if_id(IF_ID))).unwrap();
    assert_eq!(protect(&m), vec![0xe000_0000, 0xe000_0012]);
    SaSet::from_configs(&m.configs(), &m.spd()).unwrap();
}
