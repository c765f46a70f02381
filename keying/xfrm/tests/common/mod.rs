//! Fixture builders: netlink messages laid out as the kernel sends them
//! (`include/uapi/linux/xfrm.h`, checked against the C layout in `layout.rs` and against
//! netlink-packet-xfrm in `crosscheck.rs`).
#![allow(dead_code)]

use std::net::IpAddr;

use wirespeed_xfrm::msg::Builder;
use wirespeed_xfrm::wire::{
    self, AlgoAead, EncapTmpl, IPPROTO_ESP, LifetimeCfg, Mark, ReplayStateEsn, UserTmpl, UserpolicyId,
    UserpolicyInfo, UsersaId, UsersaInfo, XfrmId, XfrmSelector, attr, msg_type,
};
use zeroize::Zeroizing;

pub const LOCAL: &str = "192.0.2.1";
pub const PEER: &str = "198.51.100.7";

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

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

pub fn gcm128(seed: u8) -> AlgoAead {
    AlgoAead {
        name: "rfc4106(gcm(aes))".into(),
        key: Zeroizing::new((0..20).map(|i| seed.wrapping_add(i)).collect()),
        icv_bits: 128,
    }
}

/// Attributes to put after the fixed part.
#[derive(Default, Clone)]
pub struct A {
    pub aead: Option<AlgoAead>,
    pub crypt: Option<(&'static str, Vec<u8>)>,
    pub encap: Option<EncapTmpl>,
    pub esn: Option<ReplayStateEsn>,
    pub mark: Option<Mark>,
    pub if_id: Option<u32>,
    pub tmpls: Vec<UserTmpl>,
    pub sa: Option<UsersaInfo>,
    pub policy: Option<UserpolicyInfo>,
    pub sa_dir: Option<u8>,
    pub raw: Vec<(u16, Vec<u8>)>,
}

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
    let at = b.start(kind, 0, 0);
    b.fixed(fixed);
    attrs(&mut b, a);
    b.finish(at);
    b.bytes().to_vec()
}

pub fn newsa(kind: u16, info: &UsersaInfo, a: &A) -> Vec<u8> {
    message(kind, |o| info.write(o), a)
}

pub fn delsa(info: &UsersaInfo, a: &A) -> Vec<u8> {
    let id = UsersaId { daddr: info.id.daddr, spi: info.id.spi, family: info.family, proto: info.id.proto };
    let a = A { sa: Some(*info), ..a.clone() };
    message(msg_type::DELSA, |o| id.write(o), &a)
}

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

pub fn flushsa(proto: u8) -> Vec<u8> {
    message(msg_type::FLUSHSA, |o| o.push(proto), &A::default())
}

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

pub fn newpolicy(kind: u16, info: &UserpolicyInfo, a: &A) -> Vec<u8> {
    message(kind, |o| info.write(o), a)
}

pub fn delpolicy(info: &UserpolicyInfo, a: &A) -> Vec<u8> {
    let id = UserpolicyId { sel: info.sel, index: info.index, dir: info.dir };
    let a = A { policy: Some(*info), ..a.clone() };
    message(msg_type::DELPOLICY, |o| id.write(o), &a)
}
