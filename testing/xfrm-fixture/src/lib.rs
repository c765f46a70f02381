//! NETLINK_XFRM fixture builders: netlink messages laid out as the kernel sends them
//! (`include/uapi/linux/xfrm.h`; `wirespeed-xfrm`'s codec tests check the layouts against
//! netlink-packet-xfrm). Shared by `wirespeed-xfrm`'s tests, the example gateway's XFRM keying
//! tests and the `xfrm/*` benchmarks.

use std::net::IpAddr;

use wirespeed_xfrm::msg::Builder;
use wirespeed_xfrm::wire::{
    self, AlgoAead, EncapTmpl, IPPROTO_ESP, LifetimeCfg, Mark, ReplayStateEsn, UserTmpl, UserpolicyId,
    UserpolicyInfo, UsersaId, UsersaInfo, XfrmId, XfrmSelector, attr, msg_type,
};
use zeroize::Zeroizing;

/// The local tunnel end of the fixtures.
pub const LOCAL: &str = "192.0.2.1";
/// The remote tunnel end of the fixtures.
pub const PEER: &str = "198.51.100.7";

/// `s` as an address (panics when it is not one: fixtures only).
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A selector `src/slen` → `dst/dlen` of `src`'s family.
pub fn sel(src: &str, slen: u8, dst: &str, dlen: u8) -> XfrmSelector {
    let (s, d) = (ip(src), ip(dst));
    XfrmSelector {
        daddr: wire::from_ip(d),
        saddr: wire::from_ip(s),
        family: wire::family_of(s),
        prefixlen_d: dlen,
        prefixlen_s: slen,
        ..XfrmSelector::default()
    }
}

/// An ESP tunnel SA from `src` to `dst`.
pub fn sa_info(src: &str, dst: &str, spi: u32, reqid: u32) -> UsersaInfo {
    UsersaInfo {
        id: XfrmId { daddr: wire::from_ip(ip(dst)), spi, proto: IPPROTO_ESP },
        saddr: wire::from_ip(ip(src)),
        lft: LifetimeCfg::default(),
        reqid,
        family: wire::family_of(ip(dst)),
        mode: wire::MODE_TUNNEL,
        replay_window: 32,
        ..UsersaInfo::default()
    }
}

/// AES-128-GCM (`rfc4106(gcm(aes))`, ICV 128 bits) with key bytes `seed`, `seed + 1`, ….
pub fn gcm128(seed: u8) -> AlgoAead {
    AlgoAead {
        name: "rfc4106(gcm(aes))".into(),
        key: Zeroizing::new((0..20).map(|i| seed.wrapping_add(i)).collect()),
        icv_bits: 128,
    }
}

/// Attributes to put after the fixed part (in this order; each when given).
#[derive(Default, Clone)]
pub struct A {
    /// `XFRMA_ALG_AEAD`.
    pub aead: Option<AlgoAead>,
    /// `XFRMA_ALG_CRYPT`: algorithm name and key.
    pub crypt: Option<(&'static str, Vec<u8>)>,
    /// `XFRMA_ENCAP`.
    pub encap: Option<EncapTmpl>,
    /// `XFRMA_REPLAY_ESN_VAL`.
    pub esn: Option<ReplayStateEsn>,
    /// `XFRMA_MARK`.
    pub mark: Option<Mark>,
    /// `XFRMA_IF_ID`.
    pub if_id: Option<u32>,
    /// `XFRMA_TMPL`, all templates in one attribute (when not empty).
    pub tmpls: Vec<UserTmpl>,
    /// `XFRMA_SA`.
    pub sa: Option<UsersaInfo>,
    /// `XFRMA_POLICY`.
    pub policy: Option<UserpolicyInfo>,
    /// `XFRMA_SA_DIR`.
    pub sa_dir: Option<u8>,
    /// Any other attributes: (type, payload), last.
    pub raw: Vec<(u16, Vec<u8>)>,
}

/// Attributes with only `XFRMA_IF_ID` = `id`.
pub fn if_id(id: u32) -> A {
    A { if_id: Some(id), ..A::default() }
}

fn attrs(b: &mut Builder, a: &A) {
    if let Some(x) = &a.aead {
        b.attr(attr::ALG_AEAD, |o| x.write(o));
    }
    if let Some((name, key)) = &a.crypt {
        b.attr(attr::ALG_CRYPT, |o| wire::write_algo(o, name, key));
    }
    if let Some(x) = &a.encap {
        b.attr(attr::ENCAP, |o| x.write(o));
    }
    if let Some(x) = &a.esn {
        b.attr(attr::REPLAY_ESN_VAL, |o| x.write(o));
    }
    if let Some(x) = &a.mark {
        b.attr(attr::MARK, |o| x.write(o));
    }
    if let Some(x) = a.if_id {
        b.attr(attr::IF_ID, |o| o.extend_from_slice(&x.to_ne_bytes()));
    }
    if !a.tmpls.is_empty() {
        b.attr(attr::TMPL, |o| a.tmpls.iter().for_each(|t| t.write(o)));
    }
    if let Some(x) = &a.sa {
        b.attr(attr::SA, |o| x.write(o));
    }
    if let Some(x) = &a.policy {
        b.attr(attr::POLICY, |o| x.write(o));
    }
    if let Some(x) = a.sa_dir {
        b.attr(attr::SA_DIR, |o| o.push(x));
    }
    for (k, v) in &a.raw {
        b.attr(*k, |o| o.extend_from_slice(v));
    }
}

/// One netlink message: `kind`, fixed part written by `fixed`, attributes `a`.
pub fn message(kind: u16, fixed: impl FnOnce(&mut Vec<u8>), a: &A) -> Vec<u8> {
    let mut b = Builder::new();
    append_message(&mut b, kind, fixed, a);
    b.bytes().to_vec()
}

/// [`message`], appended to `b` (several messages in one datagram, as in a dump).
pub fn append_message(b: &mut Builder, kind: u16, fixed: impl FnOnce(&mut Vec<u8>), a: &A) {
    let at = b.start(kind, 0, 0);
    b.fixed(fixed);
    attrs(b, a);
    b.finish(at);
}

/// An SA message (`NEWSA`, `UPDSA`, …) of `kind` for `info`, attributes `a`.
pub fn newsa(kind: u16, info: &UsersaInfo, a: &A) -> Vec<u8> {
    message(kind, |o| info.write(o), a)
}

/// `DELSA` of the SA `info` (the SA itself in `XFRMA_SA`), attributes `a`.
pub fn delsa(info: &UsersaInfo, a: &A) -> Vec<u8> {
    let id = UsersaId { daddr: info.id.daddr, spi: info.id.spi, family: info.family, proto: info.id.proto };
    let a = A { sa: Some(*info), ..a.clone() };
    message(msg_type::DELSA, |o| id.write(o), &a)
}

/// `EXPIRE` of the SA `info`, hard or soft, attributes `a`.
pub fn expire(info: &UsersaInfo, hard: bool, a: &A) -> Vec<u8> {
    message(
        msg_type::EXPIRE,
        |o| {
            info.write(o);
            o.push(hard as u8);
            o.extend_from_slice(&[0; 7]);
        },
        a,
    )
}

/// `ALLOCSPI` for `info`, an SPI in `min..=max`.
pub fn allocspi(info: &UsersaInfo, min: u32, max: u32) -> Vec<u8> {
    message(
        msg_type::ALLOCSPI,
        |o| {
            info.write(o);
            o.extend_from_slice(&min.to_ne_bytes());
            o.extend_from_slice(&max.to_ne_bytes());
        },
        &A::default(),
    )
}

/// `FLUSHSA` of protocol `proto`.
pub fn flushsa(proto: u8) -> Vec<u8> {
    message(msg_type::FLUSHSA, |o| o.push(proto), &A::default())
}

/// `FLUSHPOLICY`.
pub fn flushpolicy() -> Vec<u8> {
    message(msg_type::FLUSHPOLICY, |_| {}, &A::default())
}

/// An outbound policy `src` → `dst` (protect when given templates).
pub fn out_policy(index: u32, priority: u32, src: &str, slen: u8, dst: &str, dlen: u8) -> UserpolicyInfo {
    UserpolicyInfo {
        sel: sel(src, slen, dst, dlen),
        lft: LifetimeCfg::default(),
        priority,
        index,
        dir: wire::POLICY_OUT,
        action: wire::POLICY_ALLOW,
        ..UserpolicyInfo::default()
    }
}

/// An ESP tunnel-mode template `src` → `dst`, any algorithm.
pub fn tmpl(src: &str, dst: &str, reqid: u32) -> UserTmpl {
    UserTmpl {
        id: XfrmId { daddr: wire::from_ip(ip(dst)), spi: 0, proto: IPPROTO_ESP },
        family: wire::family_of(ip(dst)),
        saddr: wire::from_ip(ip(src)),
        reqid,
        mode: wire::MODE_TUNNEL,
        aalgos: u32::MAX,
        ealgos: u32::MAX,
        calgos: u32::MAX,
        ..UserTmpl::default()
    }
}

/// A policy message (`NEWPOLICY`, `UPDPOLICY`, …) of `kind` for `info`, attributes `a`.
pub fn newpolicy(kind: u16, info: &UserpolicyInfo, a: &A) -> Vec<u8> {
    message(kind, |o| info.write(o), a)
}

/// `DELPOLICY` of the policy `info` (the policy itself in `XFRMA_POLICY`), attributes `a`.
pub fn delpolicy(info: &UserpolicyInfo, a: &A) -> Vec<u8> {
    let id = UserpolicyId { sel: info.sel, index: info.index, dir: info.dir };
    let a = A { policy: Some(*info), ..a.clone() };
    message(msg_type::DELPOLICY, |o| id.write(o), &a)
}
