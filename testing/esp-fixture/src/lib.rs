//! The ESP gateway fixture shared by the ESP tests of every backend (`mem` in
//! `stages/tests/esp_gateway.rs`, AF_XDP in `backends/afxdp/tests/esp.rs`, DPDK mbufs in
//! `backends/dpdk/tests/esp_mbuf.rs`): one gateway configuration, its stages, the frames to
//! send, and the tunnel peer's view of the traffic.
//!
//! The gateway ([`GW`]) protects LAN `10.0.1.0/24` ↔ remote `10.9.0.0/16` traffic with an
//! outbound SA [`SPI_OUT`] to the peer ([`PEER`]) and accepts the peer's traffic in the inbound
//! SA [`SPI_IN`]. Its stages are classify → ESP decrypt → ESP encrypt → forward; the FIB routes
//! the LAN directly (host [`HOST_IP`] at the MAC given) and everything else to the peer. The
//! peer side ([`EspGateway::peer_decrypt`], [`EspGateway::peer_encrypt`]) uses the mirror SAs,
//! built with the peer as `local`, as the peer gateway would.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use wirespeed_core::PacketBuf;
use wirespeed_core::backend::null::ipv4_header_checksum;
use wirespeed_core::epoch::Publisher;
use wirespeed_stages::classify::{Classify, ClassifyConfig, ipv4_header_valid};
use wirespeed_stages::esp::{
    AeadAlgorithm, Direction, EspDecrypt, EspEncrypt, IpPrefix, NAT_T_PORT, PolicyAction, SaConfig, SaSet,
    SaState, SecurityAssociation, SecurityPolicy, Selector, Spd, decapsulate, encapsulate, locate_esp,
};
use wirespeed_stages::forward::{Fib, FibBuilder, Forward, NextHop};

/// The gateway's tunnel address.
pub const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The peer gateway's tunnel address.
pub const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// A LAN host, behind the gateway.
pub const HOST_IP: [u8; 4] = [10, 0, 1, 5];
/// A remote host, behind the peer.
pub const REMOTE_IP: [u8; 4] = [10, 9, 0, 9];
/// The gateway's outbound SA (to the peer).
pub const SPI_OUT: u32 = 0x1001;
/// The gateway's inbound SA (from the peer).
pub const SPI_IN: u32 = 0x2001;

/// The stages of the gateway, in order.
pub type GatewayStages = (Classify, EspDecrypt, EspEncrypt, Forward);

/// An IPv4/UDP frame to `dst_mac`, `src` → `dst`, with `payload` bytes counting up from `seed`.
pub fn udp_frame(dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], payload: usize, seed: u8) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x99, 0x08, 0x00]);
    let total = 28 + payload;
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, ((8 + payload) >> 8) as u8, (8 + payload) as u8, 0, 0]);
    f.extend((0..payload).map(|i| (i as u8).wrapping_add(seed)));
    let c = ipv4_header_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

/// A LAN host's frame to the remote network, sent to the gateway's MAC `gw_mac`: it must leave
/// encrypted.
pub fn lan_frame(gw_mac: [u8; 6], payload: usize, seed: u8) -> Vec<u8> {
    udp_frame(gw_mac, HOST_IP, REMOTE_IP, payload, seed)
}

/// A remote host's reply to the LAN host (before the peer encrypts it).
pub fn reply_frame(gw_mac: [u8; 6], payload: usize, seed: u8) -> Vec<u8> {
    udp_frame(gw_mac, REMOTE_IP, HOST_IP, payload, seed)
}

/// The gateway's tables and the peer's SAs.
pub struct EspGateway {
    /// The gateway's SAD/SPD.
    pub sad: Publisher<SaSet>,
    /// The gateway's routes and neighbors.
    pub fib: Publisher<Fib>,
    peer_in: (SecurityAssociation, SaState),
    peer_out: (SecurityAssociation, SaState),
}

impl EspGateway {
    /// The gateway with SAs of `alg` (fixed test keys), its LAN host at `host_mac` and the peer
    /// at `peer_mac`.
    pub fn new(alg: AeadAlgorithm, host_mac: [u8; 6], peer_mac: [u8; 6]) -> Self {
        let (gw, peer) = (IpAddr::V4(GW), IpAddr::V4(PEER));
        let k_out = vec![0x11u8; alg.keymat_len()];
        let k_in = vec![0x22u8; alg.keymat_len()];
        let ours = [
            SaConfig::tunnel(SPI_OUT, Direction::Outbound { shard: 0 }, alg, &k_out, gw, peer),
            SaConfig::tunnel(SPI_IN, Direction::Inbound, alg, &k_in, gw, peer),
        ];
        let spd = Spd::new(vec![SecurityPolicy {
            selector: Selector::between(
                IpPrefix::new(IpAddr::from(HOST_IP), 24),
                IpPrefix::new(IpAddr::from(REMOTE_IP), 16),
            ),
            action: PolicyAction::Protect { spis: vec![SPI_OUT] },
        }]);
        let sas = ours.iter().map(|c| Arc::new(SecurityAssociation::new(c).expect("valid SA")));
        let sad = Publisher::new(SaSet::new(sas, &spd).expect("valid SAD"));

        let mut b = FibBuilder::new();
        b.route(IpAddr::from(HOST_IP), 24, NextHop::Direct).expect("LAN route");
        b.route("0.0.0.0".parse().expect("address"), 0, NextHop::Gateway(peer)).expect("default route");
        b.neighbor(IpAddr::from(HOST_IP), host_mac, 0);
        b.neighbor(peer, peer_mac, 0);
        let fib = Publisher::new(b.build().expect("FIB"));

        // The peer's mirror SAs: `local` is the peer.
        let sa = |spi, dir, k: &[u8]| {
            let sa =
                SecurityAssociation::new(&SaConfig::tunnel(spi, dir, alg, k, peer, gw)).expect("peer SA");
            let st = SaState::new(&sa);
            (sa, st)
        };
        let peer_in = sa(SPI_OUT, Direction::Inbound, &k_out);
        let peer_out = sa(SPI_IN, Direction::Outbound { shard: 0 }, &k_in);
        Self { sad, fib, peer_in, peer_out }
    }

    /// The gateway's stages, with `gw_mac` as its own MAC (the source of what it forwards).
    pub fn stages(&mut self, gw_mac: [u8; 6]) -> GatewayStages {
        let classify = Classify::new(ClassifyConfig { own_ipv4: vec![GW], ..ClassifyConfig::default() });
        (
            classify,
            EspDecrypt::new(self.sad.subscribe()),
            EspEncrypt::new(self.sad.subscribe()),
            Forward::new(self.fib.subscribe(), &[gw_mac]),
        )
    }

    /// Checks that `f` is the gateway's ESP encapsulation of a LAN frame: routed to `peer_mac`
    /// by its outer destination, a valid outer IPv4 header GW → PEER, protocol ESP, SPI
    /// [`SPI_OUT`].
    pub fn assert_encrypted(f: &[u8], peer_mac: [u8; 6]) {
        assert_eq!(&f[0..6], &peer_mac, "routed by the outer destination");
        assert_eq!(f[14 + 9], 50, "ESP");
        assert!(ipv4_header_valid(&f[14..34]), "outer IPv4 header");
        let mut endpoints = GW.octets().to_vec();
        endpoints.extend_from_slice(&PEER.octets());
        assert_eq!(&f[26..34], &endpoints[..], "outer GW → PEER");
        assert_eq!(u32::from_be_bytes(f[34..38].try_into().expect("4 bytes")), SPI_OUT);
    }

    /// The peer decrypts the gateway's ESP frame in `b` in place (its inner packet after the
    /// Ethernet header); panics when it does not decrypt.
    pub fn peer_decrypt<B: PacketBuf>(&mut self, b: &mut B, now: std::time::Instant) {
        let (sa, st) = &mut self.peer_in;
        let loc = locate_esp(b.data(), 14, NAT_T_PORT).expect("well-formed ESP").expect("ESP");
        decapsulate(b, 14, &loc, sa, st, now, |_| {}).expect("the peer decrypts");
    }

    /// The peer encrypts the cleartext frame in `b` in place, into the gateway's inbound SA.
    pub fn peer_encrypt<B: PacketBuf>(&mut self, b: &mut B, now: std::time::Instant) {
        let (sa, st) = &mut self.peer_out;
        encapsulate(b, 14, sa, st, now, |_| {}).expect("the peer encrypts");
    }

    /// Checks that `f` is `reply` decrypted by the gateway and forwarded to the LAN host at
    /// `host_mac`: same length, TTL one less, valid header, payload intact.
    pub fn assert_decrypted(f: &[u8], reply: &[u8], host_mac: [u8; 6]) {
        assert_eq!(&f[0..6], &host_mac, "forwarded to the LAN host");
        assert_eq!(f.len(), reply.len());
        assert_eq!(f[14 + 8], 63, "forwarded: TTL decremented");
        assert!(ipv4_header_valid(&f[14..34]));
        assert_eq!(&f[34..], &reply[34..], "payload intact");
    }
}
