//! `[keying] source = "xfrm"`: the configuration section, and a mirror's SAs and policies
//! published into a running gateway next to its static ones (mem backend, kernel messages from
//! byte fixtures: this machine's kernel cannot hold keyed ESP SAs); and, as root in a private
//! network namespace, the gateway's XFRM source on the real NETLINK_XFRM socket.
#![allow(unsafe_code)] // unshare(2) of the kernel test, fenced in `private_netns`

mod common;

use common::*;
use ipsec_gateway::config::{GatewayConfig, Side};
use ipsec_gateway::ctl::Control;
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::gateway::{SaUsage, sum_sa_usage};
use ipsec_gateway::keying::{Keying, MirrorPublisher};
use std::time::{Duration, Instant};
use wirespeed_core::{BufferPool, DropReason, PacketBuf, PoolConfig};
use wirespeed_stages::esp::{
    AeadAlgorithm, Direction, PolicyAction, SaConfig, SaState, SecurityAssociation, encapsulate,
};
use wirespeed_test_xfrm::{self as fixture, A, ip};
use wirespeed_xfrm::Feedback;
use wirespeed_xfrm::msg::{self as xmsg, Builder, XfrmMsg};
use wirespeed_xfrm::wire::{AlgoAead, UserpolicyInfo, UsersaInfo, attr, msg_type};
use wirespeed_xfrm::{Mirror, MirrorConfig, Scope};

const IF_ID: u32 = 42;

/// An ESP tunnel SA `src` → `dst` as the gateway tests' IKE daemon installs it (reqid 9,
/// replay window 64).
fn sa_info(src: &str, dst: &str, spi: u32) -> UsersaInfo {
    UsersaInfo { replay_window: 64, ..fixture::sa_info(src, dst, spi, 9) }
}

fn newsa(src: &str, dst: &str, spi: u32) -> Vec<u8> {
    newsa_cpu(src, dst, spi, None)
}

/// `newsa`, of a per-CPU SA when `pcpu` is given (`XFRMA_SA_PCPU`).
fn newsa_cpu(src: &str, dst: &str, spi: u32, pcpu: Option<u32>) -> Vec<u8> {
    newsa_info(&sa_info(src, dst, spi), pcpu)
}

/// `newsa` of the SA `info` describes (e.g. with the kernel's current lifetime counters).
fn newsa_info(info: &UsersaInfo, pcpu: Option<u32>) -> Vec<u8> {
    let raw = pcpu.map(|cpu| (attr::SA_PCPU, cpu.to_ne_bytes().to_vec())).into_iter().collect();
    newsa_raw(info, raw)
}

/// `newsa` of `info` whose kernel state holds the replay state `replay` (`XFRMA_REPLAY_VAL`), as
/// a dump shows an SA whose sequence numbers a data plane reported.
fn newsa_replay(info: &UsersaInfo, replay: wirespeed_xfrm::wire::ReplayState) -> Vec<u8> {
    let mut bytes = Vec::new();
    replay.write(&mut bytes);
    newsa_raw(info, vec![(attr::REPLAY_VAL, bytes)])
}

fn newsa_raw(info: &UsersaInfo, raw: Vec<(u16, Vec<u8>)>) -> Vec<u8> {
    let spi = info.id.spi;
    let aead = AlgoAead {
        name: "rfc4106(gcm(aes))".into(),
        key: zeroize::Zeroizing::new((0..20).map(|i| i as u8 ^ spi as u8).collect()),
        icv_bits: 128,
    };
    fixture::newsa(msg_type::NEWSA, info, &A { aead: Some(aead), if_id: Some(IF_ID), raw, ..A::default() })
}

fn delsa(src: &str, dst: &str, spi: u32) -> Vec<u8> {
    fixture::delsa(&sa_info(src, dst, spi), &fixture::if_id(IF_ID))
}

/// The outbound policy 10.1.0.0/16 → 10.77.0.0/16 through the tunnel A → B (reqid 9).
fn policy() -> (Vec<u8>, UserpolicyInfo) {
    let info = fixture::out_policy(0x301, 0, "10.1.0.0", 16, "10.77.0.0", 16);
    let a = A {
        tmpls: vec![fixture::tmpl(configs::A_WAN, configs::B_WAN, 9)],
        if_id: Some(IF_ID),
        ..A::default()
    };
    (fixture::newpolicy(msg_type::NEWPOLICY, &info, &a), info)
}

fn delpolicy(info: &UserpolicyInfo) -> Vec<u8> {
    fixture::delpolicy(info, &fixture::if_id(IF_ID))
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
    let k = load("source = \"xfrm\"\nif_ids = [42]\ncounters_interval = 2.5").unwrap().keying;
    let Keying::Xfrm(x) = k else { panic!("{k:?}") };
    assert_eq!(x.counters_interval, Duration::from_millis(2500));
    for bad in ["0.5", "0", "-1", "3601", "nan"] {
        let e = load(&format!("source = \"xfrm\"\nif_ids = [42]\ncounters_interval = {bad}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("keying.counters_interval"), "{bad}: {e}");
    }
    let k = load(
        "source = \"xfrm\"\nif_ids = [42]\nreqid_shards = [{ reqid = 9, shard = 0 }]\npcpu_shards = [0, 0]",
    )
    .unwrap()
    .keying;
    let Keying::Xfrm(x) = k else { panic!("{k:?}") };
    assert_eq!((x.reqid_shards.get(&9), &x.pcpu_shards[..]), (Some(&0), &[0, 0][..]));
    // One data shard here: shard 1 does not exist.
    let e = load("source = \"xfrm\"\nif_ids = [42]\nreqid_shards = [{ reqid = 9, shard = 1 }]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("keying.reqid_shards[0]"), "{e}");
    let e = load("source = \"xfrm\"\nif_ids = [42]\nreqid_shards = [{ reqid = 9, shard = 0 }, { reqid = 9, shard = 0 }]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("keying.reqid_shards[1]") && e.contains("twice"), "{e}");
    let e = load("source = \"xfrm\"\nif_ids = [42]\npcpu_shards = [0, 3]").unwrap_err().to_string();
    assert!(e.contains("keying.pcpu_shards[1]"), "{e}");
    let e = load("source = \"ike\"").unwrap_err().to_string();
    assert!(e.contains("keying.source"), "{e}");
    assert!(load("sources = \"xfrm\"").is_err(), "unknown keys refused");
}

#[test]
fn hold_unknown_spi_is_validated_and_on_by_default_with_xfrm() {
    let base = configs::config(Site::A, 1, None);
    let load = |extra: &str| GatewayConfig::from_toml(&format!("{base}\n[keying]\n{extra}\n"), None, "test");
    let ms = Duration::from_millis;
    assert_eq!(GatewayConfig::from_toml(&base, None, "test").unwrap().unknown_spi_hold, None);
    let xfrm = "source = \"xfrm\"\nif_ids = [42]";
    assert_eq!(load(xfrm).unwrap().unknown_spi_hold, Some((64, ms(50))));
    let with = |h: &str| load(&format!("{xfrm}\nhold_unknown_spi = {h}"));
    assert_eq!(with("{ packets = 8, ms = 200 }").unwrap().unknown_spi_hold, Some((8, ms(200))));
    assert_eq!(with("{ packets = 0, ms = 50 }").unwrap().unknown_spi_hold, None);
    assert_eq!(with("{ packets = 64, ms = 0 }").unwrap().unknown_spi_hold, None);
    assert_eq!(
        load("hold_unknown_spi = { packets = 16, ms = 10 }").unwrap().unknown_spi_hold,
        Some((16, ms(10))),
        "static SAs: on when asked for"
    );
    let e = with("{ packets = 4097, ms = 50 }").unwrap_err().to_string();
    assert!(e.contains("keying.hold_unknown_spi.packets"), "{e}");
    let e = with("{ packets = 64, ms = 1001 }").unwrap_err().to_string();
    assert!(e.contains("keying.hold_unknown_spi.ms"), "{e}");
    assert!(with("{ packets = 64 }").is_err(), "both keys needed");
    assert!(with("{ packets = 64, ms = 5, s = 1 }").is_err(), "unknown keys refused");
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
    // The kernel state's outbound sequence number was 0 (a mirrored outbound SA always is: a
    // used one is refused and rekeyed, Refusal::UsedOutbound): numbering continues at 1.
    assert_eq!(&out[0][38..42], &1u32.to_be_bytes(), "first sequence number");

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

#[test]
fn usage_sums_over_shards_by_sa() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_secs(1);
    let u =
        |uid, packets, bytes, seq, last_use| SaUsage { uid, spi: uid as u32, packets, bytes, seq, last_use };
    let shard0 = [u(7, 10, 1000, 40, Some(t1)), u(9, 1, 60, 1, Some(t0))];
    let shard1 = [u(7, 5, 400, 44, Some(t0))];
    let total = sum_sa_usage(shard0.iter().chain(&shard1));
    // Counts add up; the sequence number is the highest any shard saw.
    assert_eq!(total, vec![u(7, 15, 1400, 44, Some(t1)), u(9, 1, 60, 1, Some(t0))]);
}

/// An ESP frame for A's WAN under the inbound SA `spi` (B_WAN -> A_WAN, the key `newsa` gives
/// it), carrying a `len`-byte IPv4/UDP packet 10.2.0.5 -> 10.1.0.10, sequence number `seq`.
fn inbound_esp(spi: u32, seq: u64, len: usize) -> Vec<u8> {
    let key: Vec<u8> = (0..20).map(|i| i as u8 ^ spi as u8).collect();
    let cfg = SaConfig::tunnel(
        spi,
        Direction::Outbound { shard: 0 },
        AeadAlgorithm::Aes128Gcm,
        &key,
        ip(configs::B_WAN),
        ip(configs::A_WAN),
    );
    let sa = SecurityAssociation::new(&cfg).unwrap();
    let mut st = SaState::new(&sa);
    st.set_seq(seq - 1);
    let mut f = configs::A_WAN_MAC.to_vec();
    f.extend_from_slice(&configs::B_WAN_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ipv4 = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 2, 0, 5, 10, 1, 0, 10];
    ipv4[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    let c = wirespeed_core::backend::null::ipv4_header_checksum(&ipv4);
    ipv4[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ipv4);
    f.extend_from_slice(&[0x30, 0x39, 0x12, 0x67]);
    f.extend_from_slice(&((len - 20) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(14 + len, 0xcd);
    let pool = BufferPool::new(PoolConfig::default()).unwrap();
    let mut p = pool.alloc().unwrap();
    p.copy_from(&f).unwrap();
    encapsulate(&mut p, 14, &sa, &mut st, Instant::now(), |_| {}).unwrap();
    p.data().to_vec()
}

/// A 48-byte IPv4/UDP packet from A's LAN to the mirrored policy's 10.77.0.0/16.
fn outbound_frame(n: u8) -> Vec<u8> {
    let mut f = configs::A_LAN_MAC.to_vec();
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ipv4 = vec![0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 1, 0, 10, 10, 77, 0, n];
    let c = wirespeed_core::backend::null::ipv4_header_checksum(&ipv4);
    ipv4[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ipv4);
    f.extend_from_slice(&[0x30, 0x39, 0x12, 0x67, 0, 28, 0, 0]);
    f.extend_from_slice(&[0xab; 20]);
    f
}

/// `(spi, bytes, packets)` of every NEWAE in `b`.
/// (SPI, bytes, packets, sequence number) of each NEWAE: the last sent (outbound) or highest
/// received (inbound) from the legacy replay state the test's SAs have.
fn newaes(b: &Builder) -> Vec<(u32, u64, u64, u64)> {
    xmsg::messages(b.bytes())
        .map(|r| {
            let (h, p) = r.unwrap();
            match XfrmMsg::decode(h.kind, p).unwrap() {
                XfrmMsg::NewAe { id, attrs } => {
                    let l = attrs.ltime.unwrap();
                    let r = attrs.replay.expect("the SA's replay state");
                    (id.sa_id.spi, l.bytes, l.packets, u64::from(r.oseq.max(r.seq)))
                }
                x => panic!("not a NEWAE: {x:?}"),
            }
        })
        .collect()
}

/// Counter steps at `now` for up to `patience` (a request made at `now` is answered by every
/// shard between two of its batches): returns the NEWAEs built.
fn counters_at(
    rig: &mut Rig,
    p: &mut MirrorPublisher,
    m: &Mirror,
    fb: &mut Feedback,
    now: Instant,
    patience: Duration,
) -> Vec<(u32, u64, u64, u64)> {
    let mut b = Builder::new();
    let deadline = Instant::now() + patience;
    while p.report_counters(rig.gw_mut(), m, fb, now, &mut b) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    newaes(&b)
}

/// How long the shards may take to answer.
const WAIT: Duration = Duration::from_secs(5);
/// How long to watch for a report that must not come.
const QUIET: Duration = Duration::from_millis(200);

#[test]
fn newae_carries_the_shards_totals_at_the_interval() {
    // Two data shards: the inbound SA's packets are decrypted on both, and summed.
    let mut rig = Rig::start_with(&configs::config(Site::A, 2, None));
    let cfg = rig.cfg.clone();
    let mut m = mirror(&cfg);
    let (pol, _) = policy();
    m.apply_datagram(&pol);
    let (out_spi, in_spi) = (0xbeef_0010u32, 0xbeef_0011u32);
    m.apply_datagram(&newsa(configs::A_WAN, configs::B_WAN, out_spi));
    m.apply_datagram(&newsa(configs::B_WAN, configs::A_WAN, in_spi));
    let mut p = MirrorPublisher::default();
    p.sync(&m, rig.gw_mut());
    let owner = match rig.gw().sas().iter().find(|s| s.spi() == out_spi).unwrap().direction() {
        Direction::Outbound { shard } => shard,
        d => panic!("{d:?}"),
    };
    let wan_router = cfg.routes.iter().find(|r| r.prefix.to_string() == "10.2.0.0/16").unwrap().via.unwrap();
    let mut control = Control::default();
    let r = control.handle(rig.gw_mut(), &cfg, &format!("route add 10.77.0.0/16 via {wan_router}"));
    assert!(r.starts_with("ok"), "{r}");

    let interval = Duration::from_secs(10);
    let mut fb = Feedback::new(interval, Duration::from_secs(1));
    let t0 = Instant::now();
    // First report, no traffic yet: the kernel's zeros stand, nothing to send.
    let mut b = Builder::new();
    assert_eq!(p.report_counters(rig.gw_mut(), &m, &mut fb, t0, &mut b), 0, "asks the shards");
    let deadline = Instant::now() + WAIT;
    while rig.gw_mut().take_sa_usage().is_none() {
        assert!(Instant::now() < deadline, "the shards did not answer");
        std::thread::sleep(Duration::from_millis(5));
    }

    // Traffic: outbound frames on the owner's queue, inbound ESP on both shards' queues.
    let mut sent_out = 0u64;
    let mut sent_in = (0u64, 0u64);
    let mut seq = 1u64;
    let mut round = |rig: &mut Rig, outs: u64, ins: u64| {
        for i in 0..outs {
            rig.ports[Side::Lan as usize].inject(owner as u16, &outbound_frame(i as u8)).unwrap();
            rig.injected += 1;
            sent_out += 1;
        }
        for i in 0..ins {
            let len = 60 + (i as usize % 5) * 100;
            rig.ports[Side::Wan as usize].inject((i % 2) as u16, &inbound_esp(in_spi, seq, len)).unwrap();
            rig.injected += 1;
            seq += 1;
            sent_in.0 += 1;
            sent_in.1 += len as u64;
        }
        rig.settle();
        (sent_out, sent_in)
    };
    let (o1, i1) = round(&mut rig, 7, 10);
    let esp_out = rig.take(Side::Wan).len() as u64;
    assert_eq!(
        esp_out,
        o1,
        "every outbound frame sealed; drops {:?}",
        rig.totals().nonzero_drops().collect::<Vec<_>>()
    );

    // Not due before the interval: nothing asked, nothing sent.
    assert!(counters_at(&mut rig, &mut p, &m, &mut fb, t0 + interval / 2, QUIET).is_empty());
    // Due at the interval: the totals, equal to what was encrypted and decrypted.
    let second = counters_at(&mut rig, &mut p, &m, &mut fb, t0 + interval, WAIT);
    // Sequence numbers too: the last sent, the highest received (one per packet from 1).
    let get = |v: &[(u32, u64, u64, u64)], spi| *v.iter().find(|x| x.0 == spi).unwrap();
    assert_eq!(get(&second, out_spi), (out_spi, 48 * o1, o1, o1));
    assert_eq!(get(&second, in_spi), (in_spi, i1.1, i1.0, i1.0));
    // Both shards decrypted some: the inbound totals are a sum.
    let per_shard = rig.gw().stats();
    assert!(per_shard[0].counters.rx_packets > 0 && per_shard[1].counters.rx_packets > 0);

    // More traffic: the next report replaces with larger totals (monotonic, not increments).
    let (o2, i2) = round(&mut rig, 3, 4);
    assert!(counters_at(&mut rig, &mut p, &m, &mut fb, t0 + interval + interval / 2, QUIET).is_empty());
    let third = counters_at(&mut rig, &mut p, &m, &mut fb, t0 + 2 * interval, WAIT);
    assert_eq!(get(&third, out_spi), (out_spi, 48 * o2, o2, o2));
    assert_eq!(get(&third, in_spi), (in_spi, i2.1, i2.0, i2.0));
    assert!(
        get(&third, out_spi).2 > get(&second, out_spi).2 && get(&third, in_spi).1 > get(&second, in_spi).1
    );
    assert_eq!(fb.regressions(), 0);

    // `show sas` and /metrics give the same counters.
    control.mirrored = p.mirrored_uids().collect();
    let shown = control.handle(rig.gw_mut(), &cfg, "show sas");
    assert!(shown.contains(&format!("{out_spi:#x}/out@{owner}[xfrm]:{o2}p/{}B", 48 * o2)), "{shown}");
    assert!(shown.contains(&format!("{in_spi:#x}/in[xfrm]:{}p/{}B", i2.0, i2.1)), "{shown}");
    let metrics = p.metrics("A", rig.gw(), &m);
    assert!(
        metrics.contains(&format!(
            "wirespeed_sa_packets_total{{gateway=\"A\",spi=\"{out_spi:#x}\",direction=\"out\",origin=\"xfrm\"}} {o2}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "wirespeed_sa_bytes_total{{gateway=\"A\",spi=\"{in_spi:#x}\",direction=\"in\",origin=\"xfrm\"}} {}",
            i2.1
        )),
        "{metrics}"
    );
    assert!(metrics.contains("wirespeed_sa_last_use_seconds{"), "{metrics}");

    // A data-plane restart: the kernel's SA now shows the totals pushed (its curlft, as a dump
    // gives it). The outbound SA is not continued (its last sequence number is unknown) but
    // refused, and the daemon asked to rekey it with a soft EXPIRE.
    let (_, bytes, packets, _) = get(&third, out_spi);
    let used = UsersaInfo {
        curlft: wirespeed_xfrm::wire::LifetimeCur { bytes, packets, ..Default::default() },
        ..sa_info(configs::A_WAN, configs::B_WAN, out_spi)
    };
    let mut restarted = mirror(&cfg);
    restarted.apply_datagram(&newsa_info(&used, None));
    assert!(restarted.find(out_spi, true).is_none(), "a used outbound SA is not mirrored");
    let mut b = Builder::new();
    assert_eq!(Feedback::new(interval, Duration::from_secs(1)).retire_used(&restarted, &mut b), 1);
    let (h, p) = xmsg::messages(b.bytes()).next().unwrap().unwrap();
    match XfrmMsg::decode(h.kind, p).unwrap() {
        XfrmMsg::Expire { sa, hard } => assert_eq!((sa.info.id.spi, hard), (out_spi, false)),
        x => panic!("{x:?}"),
    }
    let t = rig.totals();
    for r in
        [DropReason::EspNoSa, DropReason::EspAuthFailed, DropReason::EspReplay, DropReason::PolicyDiscard]
    {
        assert_eq!(t.drops_of(r), 0, "{t}");
    }
    rig.stop();

    // The inbound SA goes on after the restart, its window resumed at the highest sequence
    // number reported (the kernel's replay state, as the dump shows it): ESP captured before
    // the restart is refused as a replay on every shard, new ESP passes.
    let top = get(&third, in_spi).3;
    let replay = wirespeed_xfrm::wire::ReplayState { oseq: 0, seq: top as u32, bitmap: 0 };
    restarted.apply_datagram(&pol);
    restarted.apply_datagram(&newsa_replay(&sa_info(configs::B_WAN, configs::A_WAN, in_spi), replay));
    let sa = restarted.find(in_spi, false).expect("the inbound SA is mirrored again");
    assert_eq!((sa.seq, sa.config.resume_seq), (top, top));
    let mut rig = Rig::start_with(&configs::config(Site::A, 2, None));
    MirrorPublisher::default().sync(&restarted, rig.gw_mut());
    for (q, seq) in [(0u16, top), (1, top - 1), (0, 1), (1, top + 1), (0, top + 2)] {
        rig.ports[Side::Wan as usize].inject(q, &inbound_esp(in_spi, seq, 100)).unwrap();
        rig.injected += 1;
    }
    rig.settle();
    assert_eq!(rig.take(Side::Lan).len(), 2, "{}", rig.totals());
    assert_eq!(rig.totals().drops_of(DropReason::EspReplay), 3, "{}", rig.totals());
    rig.stop();
}

/// Gateway A with two data shards, `[keying]` `extra` and the steering `rules`, its mirror.
fn two_shards(rules: &str, extra: &str) -> (Rig, Mirror) {
    let text = format!(
        "{}\n[steering]\nrules = [{rules}]\n\n[keying]\nsource = \"xfrm\"\nif_ids = [{IF_ID}]\n{extra}\n",
        configs::config(Site::A, 2, None)
    );
    let mut rig = Rig::start_with(&text);
    let cfg = rig.cfg.clone();
    let Keying::Xfrm(k) = &cfg.keying else { panic!() };
    let m = Mirror::new(ipsec_gateway::keying::mirror_config(&cfg, k));
    let wan_router = cfg.routes.iter().find(|r| r.prefix.to_string() == "10.2.0.0/16").unwrap().via.unwrap();
    let r =
        Control::default().handle(rig.gw_mut(), &cfg, &format!("route add 10.77.0.0/16 via {wan_router}"));
    assert!(r.starts_with("ok"), "{r}");
    (rig, m)
}

/// The policy's test frames: 16 destinations, which RSS alone spreads over both shards.
fn spread_frames(rig: &Rig) -> Vec<Vec<u8>> {
    let frames: Vec<Vec<u8>> = (1..=16).map(outbound_frame).collect();
    let plain =
        ipsec_gateway::config::GatewayConfig::from_toml(&configs::config(Site::A, 2, None), None, "t")
            .unwrap();
    let rss = ipsec_gateway::gateway::Steering::new(&plain).unwrap();
    let queues: std::collections::BTreeSet<u16> = frames.iter().filter_map(|f| rss.queue(f)).collect();
    assert_eq!(queues.into_iter().collect::<Vec<_>>(), vec![0, 1], "RSS alone puts them on both shards");
    let _ = rig;
    frames
}

/// Sends `frames` from the LAN and returns the SPI of each ESP packet out, with the queue its
/// frame was steered to.
fn seal_all(rig: &mut Rig, frames: &[Vec<u8>]) -> Vec<(u16, u32)> {
    let mut out = Vec::new();
    for f in frames {
        let q = rig.steering.queue(f).unwrap();
        rig.send(Side::Lan, f);
        rig.settle();
        let esp = rig.take(Side::Wan);
        assert_eq!(esp.len(), 1, "sealed; drops {:?}", rig.totals().nonzero_drops().collect::<Vec<_>>());
        assert_eq!(esp[0][23], 50, "ESP");
        out.push((q, u32::from_be_bytes(esp[0][34..38].try_into().unwrap())));
    }
    out
}

fn usage_of(rig: &mut Rig, spi: u32) -> u64 {
    assert!(rig.gw_mut().request_sa_usage());
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(u) = rig.gw_mut().take_sa_usage() {
            let uid = rig
                .gw()
                .sas()
                .iter()
                .find(|s| s.spi() == spi && s.direction() == Direction::Inbound)
                .map(|s| s.uid());
            return u.iter().find(|u| Some(u.uid) == uid).map_or(0, |u| u.packets);
        }
        assert!(Instant::now() < deadline, "the shards did not answer");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn rekey_overlap_on_the_reqids_shard_loses_nothing() {
    // reqid 9's outbound SAs on shard 1, and the policy's LAN traffic steered there.
    let rule = "{ name = \"tunnel-77\", match = { dst = \"10.77.0.0/16\" }, action = { queue = 1 } }";
    let (mut rig, mut m) = two_shards(rule, "reqid_shards = [{ reqid = 9, shard = 1 }]");
    let frames = spread_frames(&rig);
    let (pol, _) = policy();
    m.apply_datagram(&pol);
    let (old_out, old_in, new_out, new_in) = (0xbeef_0101u32, 0xbeef_0102u32, 0xbeef_0201u32, 0xbeef_0202u32);
    m.apply_datagram(&newsa(configs::A_WAN, configs::B_WAN, old_out));
    m.apply_datagram(&newsa(configs::B_WAN, configs::A_WAN, old_in));
    let mut p = MirrorPublisher::default();
    p.sync(&m, rig.gw_mut());
    let sealed = seal_all(&mut rig, &frames);
    assert!(sealed.iter().all(|&(q, spi)| q == 1 && spi == old_out), "{sealed:x?}");

    // The rekey: new SAs of the same reqid, both old ones still there.
    m.apply_datagram(&newsa(configs::A_WAN, configs::B_WAN, new_out));
    m.apply_datagram(&newsa(configs::B_WAN, configs::A_WAN, new_in));
    p.sync(&m, rig.gw_mut());
    let new_sa = rig.gw().sas().iter().find(|s| s.spi() == new_out).unwrap().direction();
    assert_eq!(new_sa, Direction::Outbound { shard: 1 }, "the new SA is on the reqid's shard too");
    let sealed = seal_all(&mut rig, &frames);
    assert!(sealed.iter().all(|&(_, spi)| spi == new_out), "{sealed:x?}");
    // The peer may still send under the old inbound SA until it switches: it decrypts.
    for seq in 1..=4 {
        rig.send(Side::Wan, &inbound_esp(old_in, seq, 100));
        rig.send(Side::Wan, &inbound_esp(new_in, seq, 100));
    }
    rig.settle();
    assert_eq!((usage_of(&mut rig, old_in), usage_of(&mut rig, new_in)), (4, 4));

    // The daemon deletes the old SAs later.
    m.apply_datagram(&delsa(configs::A_WAN, configs::B_WAN, old_out));
    m.apply_datagram(&delsa(configs::B_WAN, configs::A_WAN, old_in));
    p.sync(&m, rig.gw_mut());
    let sealed = seal_all(&mut rig, &frames);
    assert!(sealed.iter().all(|&(_, spi)| spi == new_out), "{sealed:x?}");
    let t = rig.totals();
    for r in [DropReason::EspNoSa, DropReason::EspAuthFailed, DropReason::EspReplay] {
        assert_eq!(t.drops_of(r), 0, "{t}");
    }
    rig.stop();
}

/// An SA without CPU and no steering (a NIC that cannot put the policy's flows on its shard):
/// the other shard hands its share of the traffic to the SA's shard after routing, which
/// encrypts everything under the one SA — one sender, sequence numbers 1, 2, 3… in the order
/// sent — and nothing is dropped. Reception moves with the packets (each counted once).
#[test]
fn an_sa_without_cpu_seals_what_every_shard_receives() {
    let (mut rig, mut m) = two_shards("", "reqid_shards = [{ reqid = 9, shard = 1 }]");
    let frames = spread_frames(&rig);
    let (pol, _) = policy();
    m.apply_datagram(&pol);
    let out_spi = 0xbeef_0401u32;
    m.apply_datagram(&newsa(configs::A_WAN, configs::B_WAN, out_spi));
    let mut p = MirrorPublisher::default();
    p.sync(&m, rig.gw_mut());
    let mut seqs = Vec::new();
    let mut on_zero = 0;
    for f in &frames {
        let q = rig.steering.queue(f).unwrap();
        on_zero += u64::from(q == 0);
        rig.send(Side::Lan, f);
        rig.settle();
        let esp = rig.take(Side::Wan);
        assert_eq!(esp.len(), 1, "sealed; drops {:?}", rig.totals().nonzero_drops().collect::<Vec<_>>());
        assert_eq!(u32::from_be_bytes(esp[0][34..38].try_into().unwrap()), out_spi);
        seqs.push(u32::from_be_bytes(esp[0][38..42].try_into().unwrap()));
    }
    assert!(on_zero > 0 && on_zero < frames.len() as u64, "RSS put some on each shard");
    assert_eq!(
        seqs,
        (1..=frames.len() as u32).collect::<Vec<_>>(),
        "one sender: contiguous sequence numbers"
    );
    let stats = rig.gw().stats();
    assert_eq!(stats[0].counters.handed_off, on_zero, "shard 0 handed its share over");
    assert_eq!(stats[0].counters.rx_packets, 0, "and counts it as received by shard 1");
    assert_eq!(stats[1].counters.rx_packets, frames.len() as u64);
    assert_eq!(stats[1].counters.tx_packets, frames.len() as u64);
    let t = rig.totals();
    assert_eq!(t.total_drops(), 0, "{t}");
    rig.stop();
}

#[test]
fn per_cpu_sas_serve_the_shards_they_map_to() {
    // No steering: RSS spreads the policy's traffic; CPU n's SA is owned by shard n % 2.
    let (mut rig, mut m) = two_shards("", "");
    let frames = spread_frames(&rig);
    let (pol, _) = policy();
    m.apply_datagram(&pol);
    m.apply_datagram(&newsa_cpu(configs::A_WAN, configs::B_WAN, 0xbeef_0300, Some(0)));
    m.apply_datagram(&newsa_cpu(configs::A_WAN, configs::B_WAN, 0xbeef_0301, Some(1)));
    assert_eq!(m.configs().len(), 2, "{:?}", m.recent_refusals().collect::<Vec<_>>());
    let mut p = MirrorPublisher::default();
    p.sync(&m, rig.gw_mut());
    assert_eq!(
        rig.gw().spd().policies.last().unwrap().action,
        PolicyAction::Protect { spis: vec![0xbeef_0300, 0xbeef_0301] }
    );
    let sealed = seal_all(&mut rig, &frames);
    for (q, spi) in &sealed {
        assert_eq!(*spi, 0xbeef_0300 + u32::from(*q), "shard {q} seals with its CPU's SA");
    }
    assert_eq!(rig.totals().drops_of(DropReason::EspNoSa), 0);
    rig.stop();
}

#[test]
fn feedback_is_sent_in_chunks_of_whole_messages() {
    use ipsec_gateway::keying::{SEND_CHUNK, chunks};
    let mut m = mirror(&GatewayConfig::from_toml(&configs::config(Site::A, 1, None), None, "t").unwrap());
    let mut counters = Vec::new();
    for i in 0..1000u32 {
        m.apply_datagram(&newsa(configs::A_WAN, configs::B_WAN, 0x1000_0000 + i));
        counters.push(wirespeed_xfrm::SaCounters {
            spi: 0x1000_0000 + i,
            outbound: true,
            bytes: 100,
            packets: 1,
            seq: 1,
            last_use: 0,
        });
    }
    let mut fb = Feedback::new(Duration::from_secs(10), Duration::from_secs(1));
    let mut b = Builder::new();
    assert_eq!(fb.counters(&m, &counters, &mut b), 1000);
    let all = b.bytes();
    assert!(all.len() > 3 * SEND_CHUNK, "{} bytes", all.len());
    let parts: Vec<&[u8]> = chunks(all, SEND_CHUNK).collect();
    assert_eq!(parts.concat(), all, "nothing lost or repeated");
    let mut n = 0;
    for p in &parts {
        assert!(p.len() <= SEND_CHUNK, "{}", p.len());
        for r in xmsg::messages(p) {
            let (h, _) = r.expect("whole messages");
            assert_eq!(h.kind, msg_type::NEWAE);
            n += 1;
        }
    }
    assert_eq!(n, 1000);
    // A malformed length does not loop: the rest goes in one piece.
    let bad = [&all[..200], &[0xff; 40][..]].concat();
    assert_eq!(chunks(&bad, 64).map(<[u8]>::len).sum::<usize>(), bad.len());
}

/// A rekey's first packets under the new inbound SPI can reach a data shard before the mirror
/// publishes the SA (the interop test's race): with `hold_unknown_spi` the shards hold them and
/// decrypt them once it is published; with the hold off they are `esp_no_sa` drops.
#[test]
fn esp_under_an_spi_mirrored_late_is_held_until_published() {
    // A long hold, so that a loaded test machine does not turn the test into a race.
    for (extra, hold) in [
        ("hold_unknown_spi = { packets = 64, ms = 1000 }", true),
        ("hold_unknown_spi = { packets = 0, ms = 50 }", false),
    ] {
        let (mut rig, mut m) = two_shards("", extra);
        let (pol, _) = policy();
        m.apply_datagram(&pol);
        let mut p = MirrorPublisher::default();
        p.sync(&m, rig.gw_mut());
        let new_in = 0xbeef_0402u32;
        for seq in 1..=4 {
            rig.send(Side::Wan, &inbound_esp(new_in, seq, 100));
        }
        rig.settle();
        let t = rig.totals();
        assert_eq!(t.drops_of(DropReason::EspNoSa), if hold { 0 } else { 4 }, "{t}");
        // The daemon's NEWSA is mirrored and published only now.
        m.apply_datagram(&newsa(configs::B_WAN, configs::A_WAN, new_in));
        p.sync(&m, rig.gw_mut());
        let deadline = Instant::now() + WAIT;
        let want = if hold { 4 } else { 0 };
        let mut used = usage_of(&mut rig, new_in);
        while used < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            used = usage_of(&mut rig, new_in);
        }
        assert_eq!(used, want, "packets decrypted under the late SA (hold {hold})");
        let t = rig.totals();
        assert_eq!(t.drops_of(DropReason::EspNoSa), if hold { 0 } else { 4 }, "{t}");
        assert_eq!(t.drops_of(DropReason::EspAuthFailed), 0, "{t}");
        // The stage counters tell the hold's part (published when the shards go idle).
        let held = |rig: &Rig| {
            let all = ipsec_gateway::stagestats::StageCounters::sum(&rig.gw().stage_stats());
            (all.spi_held, all.spi_hold_resolved, all.spi_hold_expired, all.spi_hold_full)
        };
        let want = if hold { (4, 4, 0, 0) } else { (0, 0, 0, 0) };
        while held(&rig) != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(held(&rig), want, "stage counters (hold {hold})");
        rig.stop();
    }
}
