//! Live updates on the mem backend while traffic flows: a make-before-break rekey of the tunnel's
//! SA on shard 0 (B installs the new inbound SA, A switches its outbound SA, B's old inbound SA
//! lingers, then goes) and a route change at B (a new LAN next hop). Every inner packet must
//! arrive exactly once, in order per flow; and the control socket carries the same requests.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ipsec_gateway::config::{Side, to_hex};
use ipsec_gateway::ctl::{Control, CtlServer, request};
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::demo::{check, traffic};

/// Sends packets `range` of every tunnelled flow into A, relays A's ESP output into B (not
/// waiting for B: the caller settles), and returns the SPIs the ESP packets carried.
fn pump(a: &mut Rig, b: &mut Rig, flows: &[traffic::Flow], range: std::ops::Range<usize>) -> Vec<u32> {
    for seq in range {
        for f in flows.iter().filter(|f| seq < f.packets) {
            a.send(Side::Lan, &traffic::frame(f, seq as u32));
        }
    }
    a.settle();
    let esp = a.take(Side::Wan);
    for f in &esp {
        b.send(Side::Wan, f);
    }
    esp.iter().map(|f| u32::from_be_bytes([f[34], f[35], f[36], f[37]])).collect()
}

#[test]
fn rekey_and_route_change_lose_and_duplicate_nothing() {
    let flows: Vec<_> = traffic::demo_flows(Some(3000)).into_iter().filter(check::tunnelled).collect();
    let longest = flows.iter().map(|f| f.packets).max().unwrap();
    let mut a = Rig::start(Site::A);
    let mut b = Rig::start(Site::B);
    let (mut ca, mut cb) = (Control::default(), Control::default());
    let (cfg_a, cfg_b) = (a.cfg.clone(), b.cfg.clone());
    let quarter = longest / 4;
    let old = configs::spi(Site::A, false, 0, SHARDS);
    let new = old + 0x800;
    let key = to_hex(&configs::keymat(new, false));
    let sa = |dir: &str| {
        let shard = if dir == "outbound" { ", shard = 0" } else { ", policy = \"to-peer-v4\"" };
        let (local, remote) = if dir == "outbound" {
            (configs::A_WAN, configs::B_WAN)
        } else {
            (configs::B_WAN, configs::A_WAN)
        };
        format!(
            "{{ spi = {new:#x}, direction = \"{dir}\"{shard}, aead = \"aes128gcm\", key = \"{key}\", local = \"{local}\", remote = \"{remote}\" }}"
        )
    };

    let mut out = Vec::new();
    let before = pump(&mut a, &mut b, &flows, 0..quarter);
    assert!(before.contains(&old));
    // Make: B accepts the new SA next to the old one.
    let r = cb.handle(b.gw_mut(), &cfg_b, &format!("sa rekey {old:#x} {} grace=30", sa("inbound")));
    assert!(r.starts_with("ok inbound"), "{r}");
    pump(&mut a, &mut b, &flows, quarter..2 * quarter);
    // Break: A's shard 0 switches to the new SA in one epoch, while packets are in flight.
    for seq in 2 * quarter..2 * quarter + 3 {
        for f in flows.iter().filter(|f| seq < f.packets) {
            a.send(Side::Lan, &traffic::frame(f, seq as u32));
        }
    }
    let r = ca.handle(a.gw_mut(), &cfg_a, &format!("sa rekey {old:#x} {}", sa("outbound")));
    assert!(r.starts_with("ok outbound"), "{r}");
    let after = pump(&mut a, &mut b, &flows, 2 * quarter + 3..3 * quarter);
    // Shard 0 switched; only packets already in flight at the switch may still carry the old SPI.
    assert!(after.contains(&new), "shard 0 switched to the new SA");
    let late_old = after.iter().filter(|s| **s == old).count();
    assert!(late_old <= 3 * flows.len(), "{late_old} packets under the old SA after the switch");
    // Route change at B: site-2 hosts now behind another LAN router.
    let new_router = [0x02, 0, 0, 0, 0x0b, 0xfd];
    for req in [
        "neighbor add 10.2.255.253 02:00:00:00:0b:fd lan".to_string(),
        "route add 10.2.0.0/16 via 10.2.255.253".to_string(),
    ] {
        let r = cb.handle(b.gw_mut(), &cfg_b, &req);
        assert!(r.starts_with("ok"), "{req}: {r}");
    }
    pump(&mut a, &mut b, &flows, 3 * quarter..longest);
    b.settle();
    for f in b.take(Side::Lan) {
        out.push(f);
    }
    // Which SPIs carried shard 0's IPv4 traffic is visible in B's counters: nothing dropped.
    let tb = b.totals();
    assert_eq!(tb.total_drops(), 0, "B dropped packets during the updates: {tb}");
    let ta = a.totals();
    assert_eq!(ta.total_drops(), 0, "A dropped packets during the updates: {ta}");
    // The new SA really carried traffic: A's shard 0 has an SA 'new' in its set now.
    let shown = ca.handle(a.gw_mut(), &cfg_a, "show sas");
    assert!(
        shown.contains(&format!("{new:#x}/out@0")) && !shown.contains(&format!("{old:#x}/out")),
        "{shown}"
    );

    // IPv4 packets to site 2 after the route change carry the new router's MAC; put the old
    // one back so the byte check sees the same frames as before.
    let mut moved = 0;
    for f in &mut out {
        if f[0..6] == new_router {
            f[0..6].copy_from_slice(&configs::B_LAN_ROUTER_MAC);
            moved += 1;
        }
    }
    assert!(moved > 0, "the route change took effect");
    let v = check::lan_frames(&flows, out.into_iter().map(Ok)).unwrap();
    assert!(v.ok(), "lost, duplicated or reordered packets: {v:#?}");

    // After the grace period the old inbound SA goes (here: tick far in the future).
    let removed = cb.tick(b.gw_mut(), Instant::now() + Duration::from_secs(60));
    assert_eq!(removed, vec![old]);
    let shown = cb.handle(b.gw_mut(), &cfg_b, "show sas");
    assert!(shown.contains(&format!("{new:#x}/in")) && !shown.contains(&format!("{old:#x}/in")), "{shown}");
    a.stop();
    b.stop();
}

#[test]
fn control_socket_round_trip_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    let (server, requests) = CtlServer::start(&path).unwrap();
    let mut a = Rig::start(Site::A);
    let cfg = a.cfg.clone();
    let mut control = Control::default();
    let client = std::thread::spawn({
        let path = path.clone();
        move || {
            request(
                &path,
                &[
                    "route add 10.3.0.0/16 via 192.0.2.1".into(),
                    "route remove 10.9.0.0/16".into(),
                    "sa remove 0x4000 outbound".into(),
                    "sa add { spi = 0x9999, direction = \"inbound\", aead = \"aes128gcm\", key = \"00\", local = \"192.0.2.100\", remote = \"203.0.113.1\" }".into(),
                    "frobnicate".into(),
                ],
            )
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = 0;
    while answered < 5 && Instant::now() < deadline {
        if let Ok((line, reply)) = requests.recv_timeout(Duration::from_millis(50)) {
            reply.send(control.handle(a.gw_mut(), &cfg, &line)).unwrap();
            answered += 1;
        }
    }
    let replies = client.join().unwrap().unwrap();
    assert!(replies[0].starts_with("ok route 10.3.0.0/16 set"), "{replies:?}");
    assert!(replies[1].starts_with("error no route 10.9.0.0/16"), "{replies:?}");
    assert!(replies[2].starts_with("error outbound SA 0x4000 is used by policy"), "{replies:?}");
    assert!(replies[3].starts_with("error sa.key = <1 bytes>"), "{replies:?}");
    assert!(replies[4].starts_with("error unknown request"), "{replies:?}");
    drop(server);
    assert!(!path.exists(), "socket file removed on shutdown");
    a.stop();
}
