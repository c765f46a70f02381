//! Hostile netlink input: truncated and mutated fixtures, absurd lengths, random bytes. Every
//! case must end in a counted refusal or a valid decode, never a panic.

use proptest::prelude::*;
use wirespeed_test_xfrm::*;
use wirespeed_xfrm::msg::{self, XfrmMsg};
use wirespeed_xfrm::wire::{self, EncapTmpl, ReplayStateEsn, msg_type};
use wirespeed_xfrm::{DecodeError, Mirror, MirrorConfig, Refusal, Scope};

fn mirror() -> Mirror {
    Mirror::new(MirrorConfig::new(Scope { if_ids: vec![7], marks: vec![] }, vec![ip(LOCAL)]))
}

/// One valid fixture of every message type the mirror handles.
fn corpus() -> Vec<Vec<u8>> {
    let info = sa_info(LOCAL, PEER, 0xa1, 3);
    let full = A {
        aead: Some(gcm128(1)),
        encap: Some(EncapTmpl { encap_type: 2, sport: 4500, dport: 4500, oa: [0; 16] }),
        esn: Some(ReplayStateEsn { bmp_len: 2, replay_window: 64, ..Default::default() }),
        if_id: Some(7),
        ..A::default()
    };
    let pol = out_policy(0x10, 1, "10.1.0.0", 16, "10.2.0.0", 16);
    let pa = A { tmpls: vec![tmpl(LOCAL, PEER, 3)], if_id: Some(7), ..A::default() };
    let mut acq = msg::Builder::new();
    msg::acquire(
        &mut acq,
        1,
        &msg::PolicyMsg {
            info: pol,
            attrs: msg::Attrs { templates: pa.tmpls.clone(), ..Default::default() },
        },
        None,
        false,
    );
    let mut ae = msg::Builder::new();
    let r = msg::SaRef { id: Default::default(), saddr: [0; 16], reqid: 1, mark: None };
    msg::newae(&mut ae, 1, &r, &Default::default(), None, false);
    vec![
        newsa(msg_type::NEWSA, &info, &full),
        newsa(msg_type::UPDSA, &info, &full),
        delsa(&info, &if_id(7)),
        flushsa(0),
        allocspi(&sa_info(PEER, LOCAL, 0, 3), 0x100, 0x200),
        expire(&info, true, &if_id(7)),
        newpolicy(msg_type::NEWPOLICY, &pol, &pa),
        newpolicy(msg_type::UPDPOLICY, &pol, &pa),
        delpolicy(&pol, &if_id(7)),
        flushpolicy(),
        acq.bytes().to_vec(),
        ae.bytes().to_vec(),
    ]
}

fn decode_refusals(m: &Mirror) -> u64 {
    m.stats().refused_by_kind.get("decode").copied().unwrap_or(0)
}

#[test]
fn every_truncation_is_a_counted_refusal() {
    for (i, f) in corpus().iter().enumerate() {
        let full = {
            let mut m = mirror();
            m.apply_datagram(f);
            decode_refusals(&m)
        };
        assert_eq!(full, 0, "fixture {i} decodes");
        for n in 1..f.len() {
            let mut m = mirror();
            m.apply_datagram(&f[..n]);
            assert_eq!(decode_refusals(&m), 1, "fixture {i} cut at {n}");
            assert!(m.recent_refusals().next().unwrap().to_string().contains("undecodable"));
        }
    }
}

#[test]
fn truncated_fixed_parts_and_attributes_are_refused() {
    // The netlink length says the message is shorter than its fixed structure.
    for (i, f) in corpus().iter().enumerate() {
        let (h, p) = msg::messages(f).next().unwrap().unwrap();
        for n in 0..p.len() {
            // Decoding a prefix never panics; it either fails or (when the cut is in the
            // attributes at a boundary) yields a message.
            let _ = XfrmMsg::decode(h.kind, &p[..n]);
        }
        if h.kind != msg_type::FLUSHPOLICY {
            assert!(XfrmMsg::decode(h.kind, &[]).is_err(), "fixture {i}: empty payload refused");
        }
    }
}

fn set_first_attr_len(f: &mut [u8], fixed: usize, len: u16) {
    let at = 16 + wire::align4(fixed);
    f[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

#[test]
fn absurd_lengths_are_refused() {
    let info = sa_info(LOCAL, PEER, 0xa1, 3);
    // rta_len beyond the message, and below the attribute header.
    for len in [0xffff, 3, 0] {
        let mut f =
            newsa(msg_type::NEWSA, &info, &A { aead: Some(gcm128(1)), if_id: Some(7), ..A::default() });
        set_first_attr_len(&mut f, 224, len);
        let mut m = mirror();
        m.apply_datagram(&f);
        assert_eq!(decode_refusals(&m), 1, "rta_len {len}");
        assert!(m.configs().is_empty());
    }
    // nlmsg_len beyond the datagram and below the header.
    for len in [u32::MAX, 15, 0] {
        let mut f = flushsa(0);
        f[..4].copy_from_slice(&len.to_ne_bytes());
        let mut m = mirror();
        m.apply_datagram(&f);
        assert_eq!(decode_refusals(&m), 1, "nlmsg_len {len}");
    }
    // An AEAD key length of 4 Gbit in a 92-byte attribute.
    let mut f = newsa(msg_type::NEWSA, &info, &A { aead: Some(gcm128(1)), ..A::default() });
    let key_len_at = 16 + 224 + 4 + 64;
    f[key_len_at..key_len_at + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
    let (h, p) = msg::messages(&f).next().unwrap().unwrap();
    assert!(matches!(XfrmMsg::decode(h.kind, p), Err(DecodeError::BadKeyLength { .. })));
    // Key length not a whole number of bytes.
    f[key_len_at..key_len_at + 4].copy_from_slice(&157u32.to_ne_bytes());
    let (h, p) = msg::messages(&f).next().unwrap().unwrap();
    assert!(matches!(XfrmMsg::decode(h.kind, p), Err(DecodeError::BadKeyLength { .. })));
    // An algorithm name without its NUL.
    let mut f = newsa(msg_type::NEWSA, &info, &A { aead: Some(gcm128(1)), ..A::default() });
    for b in &mut f[16 + 224 + 4..16 + 224 + 4 + 64] {
        *b = b'a';
    }
    let (h, p) = msg::messages(&f).next().unwrap().unwrap();
    assert_eq!(XfrmMsg::decode(h.kind, p), Err(DecodeError::BadAlgName));
    // An ESN bitmap of 2^32 words.
    let esn = ReplayStateEsn { bmp_len: 1, ..Default::default() };
    let mut f = newsa(msg_type::NEWSA, &info, &A { esn: Some(esn), ..A::default() });
    f[16 + 224 + 4..16 + 224 + 8].copy_from_slice(&u32::MAX.to_ne_bytes());
    let (h, p) = msg::messages(&f).next().unwrap().unwrap();
    assert!(matches!(XfrmMsg::decode(h.kind, p), Err(DecodeError::BadEsnBitmap { .. })));
    // Seven templates (the kernel's maximum is six).
    let pol = out_policy(0x10, 1, "10.1.0.0", 16, "10.2.0.0", 16);
    let f = newpolicy(msg_type::NEWPOLICY, &pol, &A { tmpls: vec![tmpl(LOCAL, PEER, 1); 7], ..A::default() });
    let (h, p) = msg::messages(&f).next().unwrap().unwrap();
    assert_eq!(XfrmMsg::decode(h.kind, p), Err(DecodeError::TooManyTemplates(7)));
    // A family that is neither IPv4 nor IPv6.
    let bad = wire::UsersaInfo { family: 99, ..info };
    let mut m = mirror();
    let f = newsa(msg_type::NEWSA, &bad, &A { aead: Some(gcm128(1)), if_id: Some(7), ..A::default() });
    let (h, p) = msg::messages(&f).next().unwrap().unwrap();
    let r = m.apply(&XfrmMsg::decode(h.kind, p).unwrap());
    assert!(matches!(r, Err(Refusal::BadAddress { source: DecodeError::BadFamily(99), .. })), "{r:?}");
    assert_eq!(m.stats().refused, 1);
}

#[test]
fn a_bad_message_does_not_hide_earlier_good_ones() {
    let mut dgram = newsa(
        msg_type::NEWSA,
        &sa_info(PEER, LOCAL, 0x51, 3),
        &A { aead: Some(gcm128(1)), if_id: Some(7), ..A::default() },
    );
    dgram.extend_from_slice(&[0xff; 10]);
    let mut m = mirror();
    assert_eq!(m.apply_datagram(&dgram), (true, false));
    assert_eq!(m.configs().len(), 1);
    assert_eq!(decode_refusals(&m), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_fixtures_never_panic(which in 0usize..12, edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let corpus = corpus();
        let mut f = corpus[which % corpus.len()].clone();
        for (at, v) in edits {
            let n = f.len();
            f[at % n] = v;
        }
        let mut m = mirror();
        let before = m.stats().messages;
        m.apply_datagram(&f);
        // Whatever happened was counted: a decoded message or a refusal.
        prop_assert!(m.stats().messages > before);
        let _ = m.spd();
        let _ = m.configs();
    }

    #[test]
    fn random_payloads_never_panic(kind in 0u16..0x30, payload in prop::collection::vec(any::<u8>(), 0..700)) {
        let _ = XfrmMsg::decode(kind, &payload);
        let mut m = mirror();
        if let Ok(msg) = XfrmMsg::decode(kind, &payload) {
            let _ = m.apply(&msg);
        }
        m.apply_datagram(&payload);
    }
}
