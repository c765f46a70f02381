//! End to end on the mem backend: the demo's two gateways built from their configuration text
//! with `gateway::build`, frames injected on the queue the steering plan picks, outputs
//! collected from every Tx queue. Round trip A → B, replayed / unknown-SPI / tampered ESP,
//! cleartext on the WAN, inner packets outside the SA's policy, ping and `/metrics` on the
//! management address.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use etherparse::{Icmpv4Type, PacketBuilder, SlicedPacket, TransportSlice};
use ipsec_gateway::config::{GatewayConfig, Side};
use ipsec_gateway::demo::configs::{self, Site};
use ipsec_gateway::demo::{check, traffic};
use wirespeed_core::{BufferPool, DropReason, PacketBuf, PoolConfig};
use wirespeed_stages::esp::{Direction, SaState, SecurityAssociation, encapsulate};

mod common;
use common::*;

#[test]
fn round_trip_a_to_b() {
    let (flows, esp, ta) = through_a();
    let tunnelled: u64 = flows.iter().filter(|f| check::tunnelled(f)).map(|f| f.packets as u64).sum();
    assert_eq!(esp.len() as u64, tunnelled, "A: {ta}");
    assert_eq!(ta.drops_of(DropReason::NoRoute), 5, "{ta}");
    assert_eq!(ta.drops_of(DropReason::TtlExpired), 3, "{ta}");
    for f in &esp {
        assert_eq!(f[23], 50, "ESP in IPv4");
        assert_eq!(f[0..6], configs::B_WAN_MAC, "to the WAN router");
    }

    let mut b = Rig::start(Site::B);
    for f in &esp {
        b.send(Side::Wan, f);
    }
    b.settle();
    let out = b.take(Side::Lan);
    let tb = b.stop();
    assert_eq!(tb.total_drops(), 0, "{tb}");
    let v = check::lan_frames(&flows, out.into_iter().map(Ok)).unwrap();
    assert!(v.ok(), "{v:#?}");
    assert_eq!(v.flows.len(), 12);
}

#[test]
fn replayed_unknown_spi_and_tampered_esp_are_counted_drops() {
    let (_, esp, _) = through_a();
    let mut b = Rig::start(Site::B);
    b.send(Side::Wan, &esp[0]);
    b.settle();
    // The same packet again: a replay.
    b.send(Side::Wan, &esp[0]);
    // An SPI nobody has.
    let mut unknown = esp[1].clone();
    unknown[34..38].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    b.send(Side::Wan, &unknown);
    // A flipped ciphertext bit: authentication fails.
    let mut tampered = esp[2].clone();
    let n = tampered.len();
    tampered[n - 20] ^= 0x01;
    b.send(Side::Wan, &tampered);
    b.settle();
    let t = b.totals();
    assert_eq!(t.drops_of(DropReason::EspReplay), 1, "{t}");
    assert_eq!(t.drops_of(DropReason::EspNoSa), 1, "{t}");
    assert_eq!(t.drops_of(DropReason::EspAuthFailed), 1, "{t}");
    assert_eq!(t.total_drops(), 3, "{t}");
    assert_eq!(b.take(Side::Lan).len(), 1, "only the first copy is delivered");
    b.stop();
}

#[test]
fn cleartext_on_the_wan_and_inner_packets_outside_the_policy_are_dropped() {
    let mut b = Rig::start(Site::B);
    // Site-1 traffic arriving in clear on B's WAN: the policy says it must come through the
    // tunnel.
    let flows = traffic::demo_flows(None);
    let mut clear = traffic::frame(&flows[0], 0);
    clear[0..6].copy_from_slice(&configs::B_WAN_MAC);
    b.send(Side::Wan, &clear);
    // Authentic ESP from A whose inner source is outside the SA's policy (10.9.0.0/16 is not
    // site 1): decrypts, then fails the inbound selector check.
    let a_cfg = GatewayConfig::from_toml(&configs::config(Site::A, SHARDS, None), None, "a").unwrap();
    let sa_cfg = a_cfg.sas.iter().find(|s| matches!(s.direction, Direction::Outbound { shard: 0 })).unwrap();
    let sa = SecurityAssociation::new(sa_cfg).unwrap();
    let mut st = SaState::new(&sa);
    let mut rogue = traffic::Flow { src: IpAddr::from([10, 9, 0, 1]), ..flows[0].clone() };
    rogue.ttl = 64;
    let pool = BufferPool::new(PoolConfig::default()).unwrap();
    let mut p = pool.alloc().unwrap();
    p.copy_from(&traffic::frame(&rogue, 0)).unwrap();
    encapsulate(&mut p, 14, &sa, &mut st, Instant::now(), |_| {}).unwrap();
    b.send(Side::Wan, p.data());
    b.settle();
    let t = b.totals();
    let cleartext = DropReason::from_name(ipsec_gateway::gateway::CLEARTEXT_ON_WAN).unwrap();
    assert!(cleartext.is_custom());
    assert_eq!(t.drops_of(cleartext), 1, "{t}");
    assert_eq!(t.drops_of(DropReason::PolicyDiscard), 1, "inbound selector mismatch: {t}");
    assert_eq!(t.total_drops(), 2, "{t}");
    assert!(b.take(Side::Lan).is_empty());
    b.stop();
}

/// RFC 826 request from the client for `target`.
fn arp_request(client: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&client);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

fn wait_for_tx(rig: &Rig, side: Side, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(rig.take(side));
        std::thread::sleep(Duration::from_millis(2));
    }
    got
}

#[test]
fn management_ping_is_answered_by_the_control_plane() {
    let mut a = Rig::start(Site::A);
    let me = [10, 1, 0, 1];
    let client = [10, 1, 0, 50];
    a.send(Side::Lan, &arp_request(client, me));
    let arp = wait_for_tx(&a, Side::Lan, 1);
    assert_eq!(arp.len(), 1, "{arp:02x?}");
    assert_eq!(&arp[0][12..14], &[0x08, 0x06]);
    assert_eq!(&arp[0][22..28], &configs::A_LAN_MAC, "A answers with its LAN MAC");
    let b = PacketBuilder::ethernet2(CLIENT_MAC, configs::A_LAN_MAC)
        .ipv4(client, me, 64)
        .icmpv4_echo_request(7, 1);
    let mut ping = Vec::new();
    b.write(&mut ping, b"are you there").unwrap();
    a.send(Side::Lan, &ping);
    let out = wait_for_tx(&a, Side::Lan, 1);
    assert_eq!(out.len(), 1, "{out:02x?}");
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = p.transport else { panic!("not ICMP: {p:?}") };
    assert!(matches!(icmp.icmp_type(), Icmpv4Type::EchoReply(e) if (e.id, e.seq) == (7, 1)));
    assert_eq!(icmp.payload(), b"are you there");
    a.stop();
}

/// Ports whose frames are jumbo (a 9000-MTU AF_XDP port, mem ports on a 9 KiB pool): the
/// control plane's frame limit follows the port's, so a jumbo management frame punted to it is
/// answered in full (before, its device was fixed at 1514 bytes and the 8 KB echo reply was
/// dropped).
#[test]
fn jumbo_management_ping_is_answered_on_a_jumbo_port() {
    let text = configs::config(Site::A, SHARDS, None);
    let mut a =
        Rig::start_with_pool(&text, PoolConfig { buffers: 4096, data_room: 9216, ..PoolConfig::default() });
    let me = [10, 1, 0, 1];
    let client = [10, 1, 0, 50];
    a.send(Side::Lan, &arp_request(client, me));
    assert_eq!(wait_for_tx(&a, Side::Lan, 1).len(), 1, "ARP answered");
    let payload: Vec<u8> = (0..8972u32).map(|i| i as u8).collect();
    let b = PacketBuilder::ethernet2(CLIENT_MAC, configs::A_LAN_MAC)
        .ipv4(client, me, 64)
        .icmpv4_echo_request(9, 2);
    let mut ping = Vec::new();
    b.write(&mut ping, &payload).unwrap();
    assert_eq!(ping.len(), 9014, "a 9000-byte IP packet");
    a.send(Side::Lan, &ping);
    let out = wait_for_tx(&a, Side::Lan, 1);
    assert_eq!(out.len(), 1, "the jumbo echo is answered");
    assert_eq!(out[0].len(), 9014);
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = p.transport else { panic!("not ICMP: {p:?}") };
    assert!(matches!(icmp.icmp_type(), Icmpv4Type::EchoReply(e) if (e.id, e.seq) == (9, 2)));
    assert_eq!(icmp.payload(), &payload[..]);
    a.stop();
}

// A smoltcp client on A's LAN: what it sends goes in on the queue the steering plan picks (the
// management queue), what A transmits on its LAN is what it receives.
mod client {
    use super::*;
    use smoltcp::phy::{self, DeviceCapabilities, Medium};
    use smoltcp::time::Instant as SInstant;

    pub struct Dev<'a> {
        pub rig: &'a mut Rig,
        pub rx: Vec<Vec<u8>>,
    }

    pub struct Rx(Vec<u8>);
    impl phy::RxToken for Rx {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(&self.0)
        }
    }

    pub struct Tx<'a, 'b>(&'a mut Rig, std::marker::PhantomData<&'b ()>);
    impl phy::TxToken for Tx<'_, '_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut buf = vec![0; len];
            let r = f(&mut buf);
            self.0.send(Side::Lan, &buf);
            r
        }
    }

    impl<'a> phy::Device for Dev<'a> {
        type RxToken<'b>
            = Rx
        where
            Self: 'b;
        type TxToken<'b>
            = Tx<'b, 'a>
        where
            Self: 'b;
        fn receive(&mut self, _t: SInstant) -> Option<(Rx, Tx<'_, 'a>)> {
            if self.rx.is_empty() {
                self.rx = self.rig.take(Side::Lan);
                self.rx.reverse();
            }
            let f = self.rx.pop()?;
            Some((Rx(f), Tx(self.rig, std::marker::PhantomData)))
        }
        fn transmit(&mut self, _t: SInstant) -> Option<Tx<'_, 'a>> {
            Some(Tx(self.rig, std::marker::PhantomData))
        }
        fn capabilities(&self) -> DeviceCapabilities {
            let mut c = DeviceCapabilities::default();
            c.medium = Medium::Ethernet;
            c.max_transmission_unit = 1514;
            c
        }
    }
}

#[test]
fn metrics_are_served_over_http_on_the_management_address() {
    let (_, esp, _) = through_a();
    let mut b = Rig::start(Site::B);
    for f in &esp[..10] {
        b.send(Side::Wan, f);
    }
    let mut bad = esp[10].clone();
    bad[34..38].copy_from_slice(&0x0bad_0badu32.to_be_bytes());
    b.send(Side::Wan, &bad);
    b.settle();
    b.gw().refresh_metrics();
    // B's management interface is its LAN (10.2.0.1): the client sits there.
    assert_eq!(b.cfg.management.side, Side::Lan);
    let resp = http_get(&mut b, [10, 2, 0, 50], [10, 2, 0, 1]);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not HTTP: {resp:?}"));
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
    assert_eq!(len, body.len());
    assert!(body.contains("# TYPE wirespeed_rx_packets_total counter"), "{body}");
    let rx: u64 = body
        .lines()
        .filter(|l| {
            l.starts_with("wirespeed_rx_packets_total{") && !l.contains(&format!("shard=\"{SHARDS}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(rx, 11, "{body}");
    assert!(body.contains("reason=\"esp_no_sa\"} 1"), "{body}");
    assert_eq!(body, b.gw().metrics_text(), "the control plane serves what the gateway computed");
    b.stop();
}

/// `GET /metrics` over TCP from `client` to the gateway's management address `me` (port 9000),
/// through the data plane's steering and the smoltcp control plane; returns the raw response.
fn http_get(rig: &mut Rig, client: [u8; 4], me: [u8; 4]) -> String {
    use smoltcp::iface::{Config, Interface, SocketSet};
    use smoltcp::socket::tcp;
    use smoltcp::time::Instant as SInstant;
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
    let start = Instant::now();
    let now = || SInstant::from_millis(start.elapsed().as_millis() as i64);
    let mut dev = client::Dev { rig, rx: Vec::new() };
    let mut iface =
        Interface::new(Config::new(HardwareAddress::Ethernet(EthernetAddress(CLIENT_MAC))), &mut dev, now());
    iface.update_ip_addrs(|v| v.push(IpCidr::new(IpAddress::from(Ipv4Addr::from(client)), 16)).unwrap());
    let mut sockets = SocketSet::new(Vec::new());
    let h = sockets
        .add(tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 65536]), tcp::SocketBuffer::new(vec![0; 1024])));
    sockets
        .get_mut::<tcp::Socket<'_>>(h)
        .connect(iface.context(), (IpAddress::from(Ipv4Addr::from(me)), 9000), 49152)
        .unwrap();
    let mut text = Vec::new();
    let mut sent = false;
    while start.elapsed() < Duration::from_secs(20) {
        iface.poll(now(), &mut dev, &mut sockets);
        let s = sockets.get_mut::<tcp::Socket<'_>>(h);
        if !sent && s.may_send() {
            s.send_slice(b"GET /metrics HTTP/1.1\r\nHost: gateway\r\n\r\n").unwrap();
            sent = true;
        }
        while s.can_recv() {
            s.recv(|b| {
                text.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        if !text.is_empty() && !s.may_recv() {
            s.close();
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    String::from_utf8(text).unwrap()
}

#[test]
fn metrics_scraped_by_a_real_http_client_on_the_host_listener() {
    let (_, esp, _) = through_a();
    let mut b = Rig::start(Site::B);
    for f in &esp[..5] {
        b.send(Side::Wan, f);
    }
    let mut tampered = esp[5].clone();
    let n = tampered.len();
    tampered[n - 1] ^= 0x80;
    b.send(Side::Wan, &tampered);
    b.settle();
    b.gw().refresh_metrics();
    let server =
        ipsec_gateway::metrics::MetricsServer::start("127.0.0.1:0".parse().unwrap(), b.gw().metrics_handle())
            .expect("listen on localhost");
    let url = format!("http://{}/metrics", server.addr());
    let mut resp = ureq::get(&url).call().expect("HTTP GET /metrics");
    assert_eq!(resp.status(), 200);
    let ct = resp.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let body = resp.body_mut().read_to_string().unwrap();
    assert_eq!(body, b.gw().metrics_text());
    for shard in 0..=SHARDS {
        assert!(
            body.contains(&format!("wirespeed_tx_packets_total{{gateway=\"gateway-b\",shard=\"{shard}\"}}")),
            "{body}"
        );
    }
    let auth: u64 = body
        .lines()
        .filter(|l| l.starts_with("wirespeed_drops_total{") && l.contains("reason=\"esp_auth_failed\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(auth, 1, "{body}");
    // `/` is a help line; any other path is a 404.
    let mut help = ureq::get(&format!("http://{}/", server.addr())).call().expect("GET /");
    assert!(help.body_mut().read_to_string().unwrap().contains("GET /metrics"));
    let other = ureq::get(&format!("http://{}/other", server.addr())).call();
    assert!(matches!(other, Err(ureq::Error::StatusCode(404))), "{other:?}");
    drop(server);
    b.stop();
}

#[test]
fn sa_lifetime_events_reach_the_control_side() {
    // Gateway A with a short-lived IPv4 SA on shard 0: soft limit at 3 packets, hard at 5.
    let text = configs::config(Site::A, SHARDS, None).replacen(
        "direction = \"outbound\"\nshard = 0\n",
        "direction = \"outbound\"\nshard = 0\nlifetime = { soft_packets = 3, hard_packets = 5 }\n",
        1,
    );
    let spi = configs::spi(Site::A, false, 0, SHARDS);
    let mut a = Rig::start_with(&text);
    for f in traffic::demo_flows(None).iter().filter(|f| f.src.is_ipv4() && check::tunnelled(f)) {
        for seq in 0..10 {
            a.send(Side::Lan, &traffic::frame(f, seq));
        }
    }
    a.settle();
    let events = a.gw().take_events();
    let kinds: Vec<_> = events.iter().filter(|e| e.spi == spi).map(|e| e.kind).collect();
    use wirespeed_stages::esp::SaEventKind;
    assert_eq!(kinds, vec![SaEventKind::SoftLifetime, SaEventKind::HardLifetime], "{events:?}");
    let t = a.totals();
    assert!(t.drops_of(DropReason::EspSaExpired) > 0, "{t}");
    a.stop();
}
