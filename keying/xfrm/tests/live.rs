//! The NETLINK_XFRM socket against this machine's kernel, in a private network namespace:
//! dumps, multicast events of policies and SAs, and the kernel's answers to the feedback
//! messages. Needs root (CAP_NET_ADMIN); without it the tests say why they skip, and fail when
//! `WIRESPEED_XFRM_REQUIRE_KERNEL` is set.
//!
//! Kernels without ESP (`CONFIG_INET_ESP`) or the AEAD templates cannot hold keyed ESP SAs;
//! `keyed_esp_sa_is_mirrored` then says so and skips (it needs the VM of the e2e job).
#![allow(unsafe_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use wirespeed_stages::esp::PolicyAction;
use wirespeed_xfrm::msg::{self, Builder, SaRef, XfrmMsg};
use wirespeed_xfrm::socket::Received;
use wirespeed_xfrm::wire::{self, UsersaId};
use wirespeed_xfrm::{Follower, Mirror, MirrorConfig, Scope, XfrmSocket};

const LOCAL: &str = "10.0.0.1";
const PEER: &str = "10.0.0.2";

fn skip(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2));
    let why = if euid != Some("0") {
        format!("not root (effective uid {euid:?}); NETLINK_XFRM dumps and groups need CAP_NET_ADMIN")
    } else {
        return false;
    };
    if std::env::var_os("WIRESPEED_XFRM_REQUIRE_KERNEL").is_some() {
        panic!("{test} cannot run and WIRESPEED_XFRM_REQUIRE_KERNEL is set: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    true
}

/// Moves this test's thread into a fresh network namespace (its own XFRM database), so the
/// host's is never touched; `ip` commands spawned from the thread run in it too.
fn private_netns() {
    // SAFETY: unshare(2) with a constant flag; it only changes this thread's namespace.
    let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    ip(&["link", "set", "lo", "up"]);
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("spawn ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `ip xfrm policy add src SRC dst DST dir out PRE tmpl src LOCAL dst PEER proto esp reqid REQID
/// mode tunnel POST` (`PRE` and `POST`: more words, separated by spaces).
fn add_out_policy(src: &str, dst: &str, pre: &str, reqid: u32, post: &str) {
    let line = format!(
        "xfrm policy add src {src} dst {dst} dir out {pre} tmpl src {LOCAL} dst {PEER} proto esp reqid {reqid} mode tunnel {post}"
    );
    ip(&line.split_whitespace().collect::<Vec<_>>());
}

fn mirror() -> Mirror {
    Mirror::new(MirrorConfig::new(Scope { if_ids: vec![7], marks: vec![] }, vec![LOCAL.parse().unwrap()]))
}

/// Polls until `cond` holds (2 s at most).
fn poll_until(f: &mut Follower, what: &str, cond: impl Fn(&Mirror) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cond(f.mirror()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}; stats {:?}", f.mirror().stats());
        f.socket().wait(Duration::from_millis(50)).unwrap();
        f.poll().unwrap();
    }
}

/// Sends `bytes` (one request with NLM_F_ACK) on a plain socket and returns the errno of the
/// acknowledgement (0 success).
fn request(bytes: &[u8]) -> i32 {
    let mut s = XfrmSocket::open(&[]).unwrap();
    s.send(bytes).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        assert!(Instant::now() < deadline, "no acknowledgement");
        s.wait(Duration::from_millis(100)).unwrap();
        if let Received::Datagram(d) = s.recv().unwrap() {
            for m in msg::messages(d) {
                let (h, p) = m.unwrap();
                if let Ok(XfrmMsg::Error { errno, .. }) = XfrmMsg::decode(h.kind, p) {
                    return -errno;
                }
            }
        }
    }
}

#[test]
fn per_cpu_acquire_is_relayed_with_its_cpu() {
    if skip("per_cpu_acquire_is_relayed_with_its_cpu") {
        return;
    }
    private_netns();
    let mut listener = XfrmSocket::open(&[wire::group::ACQUIRE]).expect("join XFRMNLGRP_ACQUIRE");
    let sel = wire::XfrmSelector {
        saddr: wire::from_ip("10.1.0.0".parse().unwrap()),
        daddr: wire::from_ip("10.2.0.0".parse().unwrap()),
        family: wire::AF_INET,
        prefixlen_s: 16,
        prefixlen_d: 16,
        ..wire::XfrmSelector::default()
    };
    let info = wire::UserpolicyInfo {
        sel,
        index: 0x809,
        dir: wire::POLICY_OUT,
        flags: wire::POLICY_CPU_ACQUIRE,
        ..wire::UserpolicyInfo::default()
    };
    let t = wire::UserTmpl {
        id: wire::XfrmId { daddr: wire::from_ip(PEER.parse().unwrap()), spi: 0, proto: wire::IPPROTO_ESP },
        family: wire::AF_INET,
        saddr: wire::from_ip(LOCAL.parse().unwrap()),
        reqid: 3,
        mode: wire::MODE_TUNNEL,
        ..wire::UserTmpl::default()
    };
    let pol = msg::PolicyMsg {
        info,
        attrs: msg::Attrs { templates: vec![t], if_id: Some(7), ..msg::Attrs::default() },
    };
    let mut b = Builder::new();
    msg::acquire_pcpu(&mut b, 1, &pol, None, Some(0), true);
    assert_eq!(request(b.bytes()), 0, "kernel accepted the per-CPU ACQUIRE");
    // What charon would receive.
    let deadline = Instant::now() + Duration::from_secs(2);
    let pcpu = 'found: loop {
        assert!(Instant::now() < deadline, "no ACQUIRE relayed");
        listener.wait(Duration::from_millis(100)).unwrap();
        if let Received::Datagram(d) = listener.recv().unwrap() {
            for m in msg::messages(d) {
                let (h, p) = m.unwrap();
                if let Ok(XfrmMsg::Acquire { acquire, attrs }) = XfrmMsg::decode(h.kind, p) {
                    assert_eq!(acquire.policy.index, 0x809, "the policy we named");
                    break 'found attrs.pcpu;
                }
            }
        }
    };
    assert_eq!(pcpu, Some(0), "the kernel relays the CPU (XFRMA_SA_PCPU, Linux 6.13+)");
}

fn sa_ref(daddr: &str, spi: u32) -> SaRef {
    let d: std::net::IpAddr = daddr.parse().unwrap();
    SaRef {
        id: UsersaId { daddr: wire::from_ip(d), spi, family: wire::AF_INET, proto: wire::IPPROTO_ESP },
        saddr: [0; 16],
        reqid: 0,
        mark: None,
    }
}

#[test]
fn dump_follow_policies_placeholders_and_feedback() {
    if skip("dump_follow_policies_placeholders_and_feedback") {
        return;
    }
    private_netns();
    let mut f = Follower::start(mirror()).expect("NETLINK_XFRM socket");
    f.sync(Duration::from_secs(5)).unwrap();
    assert!(f.synced());
    assert_eq!(f.mirror().policies().count(), 0);

    // A scoped outbound policy arrives as a NEWPOLICY event; it has no SA yet.
    add_out_policy("10.1.0.0/16", "10.2.0.0/16", "priority 100", 1, "if_id 7");
    poll_until(&mut f, "NEWPOLICY", |m| m.policies().count() == 1);
    let spd = f.mirror().spd();
    assert_eq!(spd.policies.len(), 1);
    assert_eq!(spd.policies[0].action, PolicyAction::Protect { spis: vec![] });
    assert_eq!(spd.policies[0].selector.dst.to_string(), "10.2.0.0/16");
    assert_eq!(f.mirror().unresolved().len(), 1);
    // The host's own (unscoped) policy is counted out of scope.
    add_out_policy("10.5.0.0/16", "10.6.0.0/16", "", 2, "");
    poll_until(&mut f, "out-of-scope refusal", |m| m.stats().refused_by_kind.get("out_of_scope") == Some(&1));
    assert_eq!(f.mirror().policies().count(), 1);

    // The data plane asks for an SA: the kernel accepts our ACQUIRE and relays it to key
    // managers on XFRMNLGRP_ACQUIRE, where the follower (standing in for charon) sees it.
    let pol = f.mirror().unresolved()[0].clone();
    let mut b = Builder::new();
    msg::acquire(&mut b, 1, &pol, None, true);
    assert_eq!(request(b.bytes()), 0, "kernel accepted the ACQUIRE");
    poll_until(&mut f, "ACQUIRE relayed by the kernel", |m| m.stats().kernel_acquires >= 1);

    // An SPI reservation (ALLOCSPI) is a larval SA: no event, but the dump shows it, and the
    // mirror keeps it as a placeholder.
    ip(&[
        "xfrm", "state", "allocspi", "src", PEER, "dst", LOCAL, "proto", "esp", "min", "0x1000", "max",
        "0x1000",
    ]);
    let mut g = Follower::start(mirror()).unwrap();
    g.sync(Duration::from_secs(5)).unwrap();
    assert!(g.mirror().placeholders() >= 1, "dump shows the larval SA: {:?}", g.mirror().stats());
    assert!(g.mirror().configs().is_empty());
    assert_eq!(g.mirror().policies().count(), 1);

    // Feedback: the kernel finds the SA our NEWAE/EXPIRE name (EINVAL: larval, not VALID) and
    // not an SA that does not exist (NEWAE: ESRCH, EXPIRE: ENOENT).
    let cur = wire::LifetimeCur { bytes: 1000, packets: 10, add_time: 0, use_time: 0 };
    b.clear();
    msg::newae(&mut b, 2, &sa_ref(LOCAL, 0x1000), &cur, None, true);
    assert_eq!(request(b.bytes()), libc::EINVAL, "NEWAE reaches the larval SA");
    b.clear();
    msg::newae(&mut b, 3, &sa_ref(LOCAL, 0x2000), &cur, None, true);
    assert_eq!(request(b.bytes()), libc::ESRCH, "NEWAE for an unknown SA");
    b.clear();
    msg::expire(&mut b, 4, &sa_ref(LOCAL, 0x2000), false, true);
    assert_eq!(request(b.bytes()), libc::ENOENT, "EXPIRE for an unknown SA");
    b.clear();
    msg::expire(&mut b, 5, &sa_ref(LOCAL, 0x1000), false, true);
    assert_eq!(request(b.bytes()), libc::EINVAL, "EXPIRE reaches the larval SA");

    // Deletion and flush events.
    ip(&["xfrm", "policy", "delete", "src", "10.1.0.0/16", "dst", "10.2.0.0/16", "dir", "out", "if_id", "7"]);
    poll_until(&mut f, "DELPOLICY", |m| m.policies().count() == 0);
    add_out_policy("10.1.0.0/16", "10.2.0.0/16", "", 1, "if_id 7");
    poll_until(&mut f, "NEWPOLICY", |m| m.policies().count() == 1);
    ip(&["xfrm", "policy", "flush"]);
    poll_until(&mut f, "FLUSHPOLICY", |m| m.policies().count() == 0);
    ip(&["xfrm", "state", "flush"]);
    let before = f.mirror().stats().messages;
    poll_until(&mut f, "FLUSHSA", |m| m.stats().messages > before);
    assert_eq!(f.mirror().stats().refused_by_kind.get("decode"), None, "every kernel message decoded");
}

#[test]
fn keyed_esp_sa_is_mirrored() {
    if skip("keyed_esp_sa_is_mirrored") {
        return;
    }
    private_netns();
    let mut f = Follower::start(mirror()).unwrap();
    f.sync(Duration::from_secs(5)).unwrap();
    let out = Command::new("ip")
        .args([
            "xfrm",
            "state",
            "add",
            "src",
            LOCAL,
            "dst",
            PEER,
            "proto",
            "esp",
            "spi",
            "0x3000",
            "reqid",
            "1",
            "mode",
            "tunnel",
            "aead",
            "rfc4106(gcm(aes))",
            "0x0102030405060708090a0b0c0d0e0f1011121314",
            "128",
            "if_id",
            "7",
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if std::env::var_os("WIRESPEED_XFRM_REQUIRE_ESP").is_some() {
            panic!("kernel refused a keyed ESP SA and WIRESPEED_XFRM_REQUIRE_ESP is set: {why}");
        }
        eprintln!(
            "SKIPPED keyed_esp_sa_is_mirrored: this kernel cannot hold a keyed ESP SA ({why}); needs CONFIG_INET_ESP and gcm(aes) (the strongSwan VM job)"
        );
        return;
    }
    poll_until(&mut f, "NEWSA", |m| m.configs().len() == 1);
    let sa = f.mirror().find(0x3000, true).unwrap();
    assert_eq!(sa.config.keymat, (1..=20).collect::<Vec<u8>>());
    assert_eq!(sa.if_id, 7);
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Clears CAP_NET_ADMIN from this thread's effective set (capabilities are per thread).
fn drop_net_admin() {
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_ADMIN: u32 = 12;
    let mut hdr = CapHeader { version: VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) with a version-3 header and the two data words it fills.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) };
    assert_eq!(r, 0, "capget: {}", std::io::Error::last_os_error());
    data[0].effective &= !(1 << CAP_NET_ADMIN);
    // SAFETY: capset(2) on this thread (pid 0) with the words capget returned, one bit cleared.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    assert_eq!(r, 0, "capset: {}", std::io::Error::last_os_error());
}

#[test]
fn without_cap_net_admin_the_error_says_so() {
    if skip("without_cap_net_admin_the_error_says_so") {
        return;
    }
    drop_net_admin();
    let e = Follower::start(mirror()).expect_err("no CAP_NET_ADMIN, no XFRM groups");
    assert!(matches!(e, wirespeed_xfrm::SocketError::PermissionDenied { .. }), "{e:?}");
    assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
}
