//! `[keying] source = "xfrm"`: the configuration section, and a mirror's SAs and policies
//! published into a running gateway next to its static ones (mem backend, kernel messages from
//! byte fixtures: this machine's kernel cannot hold keyed ESP SAs); and, as root in a private
//! network namespace, the gateway's XFRM source on the real NETLINK_XFRM socket.
#![allow(unsafe_code)] // unshare(2) of the kernel test, fenced in `private_netns`

mod common;

use std::net::IpAddr;

use common::*;
use ipsec_gateway::config::{GatewayConfig, Side};
use ipsec_gateway::ctl::Control;
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::keying::{Keying, MirrorPublisher};
use wirespeed_stages::esp::{Direction, PolicyAction};
use wirespeed_xfrm::msg::Builder;
use wirespeed_xfrm::wire::{
    self, AlgoAead, UserTmpl, UserpolicyId, UserpolicyInfo, UsersaId, UsersaInfo, XfrmId, XfrmSelector, attr,
    msg_type,
};
use wirespeed_xfrm::{Mirror, MirrorConfig, Scope};

const IF_ID: u32 = 42;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa_info(src: &str, dst: &str, spi: u32) -> UsersaInfo {
    UsersaInfo {
        id: XfrmId { daddr: wire::from_ip(ip(dst)), spi, proto: wire::IPPROTO_ESP },
        saddr: wire::from_ip(ip(src)),
        reqid: 9,
        family: wire::AF_INET,
        mode: wire::MODE_TUNNEL,
        replay_window: 64,
        ..UsersaInfo::default()
    }
}

fn newsa(src: &str, dst: &str, spi: u32) -> Vec<u8> {
    let aead = AlgoAead {
        name: "rfc4106(gcm(aes))".into(),
        key: zeroize::Zeroizing::new((0..20).map(|i| i as u8 ^ spi as u8).collect()),
        icv_bits: 128,
    };
    let mut b = Builder::new();
    let at = b.start(msg_type::NEWSA, 0, 0);
    b.fixed(|o| sa_info(src, dst, spi).write(o));
    b.attr(attr::ALG_AEAD, |o| aead.write(o));
    b.attr(attr::IF_ID, |o| o.extend_from_slice(&IF_ID.to_ne_bytes()));
    b.finish(at);
    b.bytes().to_vec()
}

fn delsa(src: &str, dst: &str, spi: u32) -> Vec<u8> {
    let mut b = Builder::new();
    let at = b.start(msg_type::DELSA, 0, 0);
    b.fixed(|o| {
        UsersaId { daddr: wire::from_ip(ip(dst)), spi, family: wire::AF_INET, proto: wire::IPPROTO_ESP }
            .write(o)
    });
    b.attr(attr::SA, |o| sa_info(src, dst, spi).write(o));
    b.attr(attr::IF_ID, |o| o.extend_from_slice(&IF_ID.to_ne_bytes()));
    b.finish(at);
    b.bytes().to_vec()
}

fn policy() -> (Vec<u8>, UserpolicyInfo) {
    let sel = XfrmSelector {
        saddr: wire::from_ip(ip("10.1.0.0")),
        daddr: wire::from_ip(ip("10.77.0.0")),
        family: wire::AF_INET,
        prefixlen_s: 16,
        prefixlen_d: 16,
        ..XfrmSelector::default()
    };
    let info = UserpolicyInfo { sel, index: 0x301, dir: wire::POLICY_OUT, ..UserpolicyInfo::default() };
    let t = UserTmpl {
        id: XfrmId { daddr: wire::from_ip(ip(configs::B_WAN)), spi: 0, proto: wire::IPPROTO_ESP },
        family: wire::AF_INET,
        saddr: wire::from_ip(ip(configs::A_WAN)),
        reqid: 9,
        mode: wire::MODE_TUNNEL,
        ..UserTmpl::default()
    };
    let mut b = Builder::new();
    let at = b.start(msg_type::NEWPOLICY, 0, 0);
    b.fixed(|o| info.write(o));
    b.attr(attr::TMPL, |o| t.write(o));
    b.attr(attr::IF_ID, |o| o.extend_from_slice(&IF_ID.to_ne_bytes()));
    b.finish(at);
    (b.bytes().to_vec(), info)
}

fn delpolicy(info: &UserpolicyInfo) -> Vec<u8> {
    let mut b = Builder::new();
    let at = b.start(msg_type::DELPOLICY, 0, 0);
    b.fixed(|o| UserpolicyId { sel: info.sel, index: info.index, dir: info.dir }.write(o));
    b.attr(attr::IF_ID, |o| o.extend_from_slice(&IF_ID.to_ne_bytes()));
    b.finish(at);
    b.bytes().to_vec()
}

fn mirror(cfg: &GatewayConfig) -> Mirror {
    let mut mc = MirrorConfig::new(Scope { if_ids: vec![IF_ID], marks: vec![] }, cfg.own_addresses());
    mc.outbound_shards = (0..cfg.shards).collect();
    Mirror::new(mc)
}

#[test]
fn keying_section_is_validated() {
    let base = configs::config(Site::A, 1, None);
    let load = |extra: &str| GatewayConfig::from_toml(&format!("{base}\n[keying]\n{extra}\n"), None, "test");
    assert_eq!(GatewayConfig::from_toml(&base, None, "test").unwrap().keying, Keying::Static);
    let k = load("source = \"xfrm\"\nif_ids = [42]\nmarks = [\"0x42/0xff\"]").unwrap().keying;
    let Keying::Xfrm(x) = k else { panic!("{k:?}") };
    assert_eq!(x.scope.if_ids, vec![42]);
    assert_eq!((x.scope.marks[0].v, x.scope.marks[0].m), (0x42, 0xff));
    let e = load("source = \"xfrm\"").unwrap_err().to_string();
    assert!(e.contains("keying.if_ids") && e.contains("if_id_in"), "{e}");
    let e = load("source = \"xfrm\"\nif_ids = [0]").unwrap_err().to_string();
    assert!(e.contains("keying.if_ids[0]"), "{e}");
    let e = load("source = \"xfrm\"\nmarks = [\"7/0\"]").unwrap_err().to_string();
    assert!(e.contains("zero mask"), "{e}");
    let e = load("source = \"ike\"").unwrap_err().to_string();
    assert!(e.contains("keying.source"), "{e}");
    assert!(load("sources = \"xfrm\"").is_err(), "unknown keys refused");
}

#[test]
fn mirrored_sas_join_the_static_ones_and_seal_traffic() {
    let mut rig = Rig::start_with(&configs::config(Site::A, 1, None));
    let cfg = rig.cfg.clone();
    let static_sas: Vec<(u32, Direction)> = rig.gw().sas().iter().map(|s| (s.spi(), s.direction())).collect();
    let static_policies = rig.gw().spd().policies.clone();
    let mut m = mirror(&cfg);
    let (pol, pol_info) = policy();
    m.apply_datagram(&pol);
    m.apply_datagram(&newsa(configs::A_WAN, configs::B_WAN, 0xbeef_0001));
    m.apply_datagram(&newsa(configs::B_WAN, configs::A_WAN, 0xbeef_0002));
    assert_eq!(m.configs().len(), 2, "{:?}", m.recent_refusals().collect::<Vec<_>>());
    let mut p = MirrorPublisher::default();
    assert!(p.due(&m));
    let log = p.sync(&m, rig.gw_mut());
    assert!(log.iter().any(|l| l.contains("2 mirrored SAs, 1 mirrored policies")), "{log:?}");
    assert!(!p.due(&m));

    let gw = rig.gw();
    assert_eq!(gw.sas().len(), static_sas.len() + 2);
    let spd = &gw.spd().policies;
    assert_eq!(&spd[..static_policies.len()], &static_policies[..], "static policies first, unchanged");
    assert_eq!(spd.last().unwrap().action, PolicyAction::Protect { spis: vec![0xbeef_0001] });

    // `show sas` marks the mirrored SAs; /metrics gives every SA's origin.
    let mut control = Control::default();
    control.mirrored = p.mirrored_uids().collect();
    let shown = control.handle(rig.gw_mut(), &cfg, "show sas");
    assert!(shown.contains("0xbeef0001/out@0[xfrm]") && shown.contains("0xbeef0002/in[xfrm]"), "{shown}");
    let (spi0, _) = static_sas[0];
    assert!(shown.contains(&format!("{spi0:#x}/")) && !shown.contains(&format!("{spi0:#x}/in[")), "{shown}");
    let metrics = p.metrics("A", rig.gw(), &m);
    assert!(metrics.contains("spi=\"0xbeef0001\",direction=\"out\",origin=\"xfrm\""), "{metrics}");
    assert!(
        metrics.contains(&format!("spi=\"{spi0:#x}\"")) && metrics.contains("origin=\"static\""),
        "{metrics}"
    );

    // Traffic of the mirrored policy leaves sealed with the mirrored SA (routed like the
    // demo's remote LAN, through the WAN router).
    let wan_router = cfg.routes.iter().find(|r| r.prefix.to_string() == "10.2.0.0/16").unwrap().via.unwrap();
    let r = control.handle(rig.gw_mut(), &cfg, &format!("route add 10.77.0.0/16 via {wan_router}"));
    assert!(r.starts_with("ok"), "{r}");
    let mut f = configs::A_LAN_MAC.to_vec();
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ipv4 = vec![0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 1, 0, 10, 10, 77, 0, 5];
    let c = wirespeed_core::backend::null::ipv4_header_checksum(&ipv4);
    ipv4[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ipv4);
    f.extend_from_slice(&[0x30, 0x39, 0x12, 0x67, 0, 28, 0, 0]);
    f.extend_from_slice(&[0xab; 20]);
    rig.send(Side::Lan, &f);
    rig.settle();
    let out = rig.take(Side::Wan);
    assert_eq!(
        out.len(),
        1,
        "one ESP packet out; drops {:?}",
        rig.totals().nonzero_drops().collect::<Vec<_>>()
    );
    assert_eq!(out[0][23], 50, "ESP");
    assert_eq!(&out[0][34..38], &0xbeef_0001u32.to_be_bytes());

    // A later change keeps installed SAs as they are (same object: same sequence numbers).
    let uid = rig.gw().sas().iter().find(|s| s.spi() == 0xbeef_0001).unwrap().uid();
    m.apply_datagram(&newsa(configs::B_WAN, configs::A_WAN, 0xbeef_0003));
    p.sync(&m, rig.gw_mut());
    assert_eq!(rig.gw().sas().iter().find(|s| s.spi() == 0xbeef_0001).unwrap().uid(), uid);
    assert_eq!(rig.gw().sas().len(), static_sas.len() + 3);

    // DELSA and DELPOLICY take them out again; the static ones stay.
    m.apply_datagram(&delsa(configs::A_WAN, configs::B_WAN, 0xbeef_0001));
    p.sync(&m, rig.gw_mut());
    assert_eq!(rig.gw().spd().policies.last().unwrap().action, PolicyAction::Protect { spis: vec![] });
    m.apply_datagram(&delpolicy(&pol_info));
    m.apply_datagram(&delsa(configs::B_WAN, configs::A_WAN, 0xbeef_0002));
    m.apply_datagram(&delsa(configs::B_WAN, configs::A_WAN, 0xbeef_0003));
    p.sync(&m, rig.gw_mut());
    let now: Vec<(u32, Direction)> = rig.gw().sas().iter().map(|s| (s.spi(), s.direction())).collect();
    assert_eq!(now, static_sas);
    assert_eq!(rig.gw().spd().policies, static_policies);
    rig.stop();
}

/// Moves this test's thread into a fresh network namespace (its own XFRM database).
fn private_netns() {
    // SAFETY: unshare(2) with a constant flag; it only changes this thread's namespace.
    let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
}

fn ip_cmd(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().expect("spawn ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn xfrm_source_follows_the_kernel() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")) {
        let why = "not root: NETLINK_XFRM needs CAP_NET_ADMIN";
        if std::env::var_os("WIRESPEED_XFRM_REQUIRE_KERNEL").is_some() {
            panic!(
                "xfrm_source_follows_the_kernel cannot run and WIRESPEED_XFRM_REQUIRE_KERNEL is set: {why}"
            );
        }
        eprintln!("SKIPPED xfrm_source_follows_the_kernel: {why}");
        return;
    }
    private_netns();
    let text =
        format!("{}\n[keying]\nsource = \"xfrm\"\nif_ids = [{IF_ID}]\n", configs::config(Site::A, 1, None));
    let mut rig = Rig::start_with(&text);
    let cfg = rig.cfg.clone();
    let Keying::Xfrm(k) = &cfg.keying else { panic!() };
    let static_policies = rig.gw().spd().policies.len();
    let (mut src, log) =
        ipsec_gateway::keying::XfrmSource::start(&cfg, k, rig.gw_mut()).expect("xfrm source");
    assert!(log.iter().any(|l| l.contains("0 mirrored SAs, 0 mirrored policies")), "{log:?}");
    let (a, b) = (configs::A_WAN, configs::B_WAN);
    let if_id = IF_ID.to_string();
    ip_cmd(&[
        "xfrm",
        "policy",
        "add",
        "src",
        "10.1.0.0/16",
        "dst",
        "10.77.0.0/16",
        "dir",
        "out",
        "tmpl",
        "src",
        a,
        "dst",
        b,
        "proto",
        "esp",
        "reqid",
        "9",
        "mode",
        "tunnel",
        "if_id",
        &if_id,
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while rig.gw().spd().policies.len() == static_policies {
        assert!(std::time::Instant::now() < deadline, "the mirrored policy never reached the gateway");
        std::thread::sleep(std::time::Duration::from_millis(20));
        src.poll(rig.gw_mut(), std::time::Instant::now());
    }
    let last = rig.gw().spd().policies.last().unwrap().clone();
    assert_eq!(last.action, PolicyAction::Protect { spis: vec![] }, "no SA yet: drop, never clear");
    assert_eq!(last.selector.dst.to_string(), "10.77.0.0/16");
    let metrics = src.metrics("A", rig.gw());
    assert!(metrics.contains("wirespeed_xfrm_messages_total"), "{metrics}");
    rig.stop();
}
