//! The demo's two gateways as configuration files: A (site 1: 10.1.0.0/16, fd00:1::/64) and B
//! (site 2: 10.2.0.0/16, fd00:2::/64), joined by one tunnel with RFC 9611 per-shard SAs in each
//! direction: AES-128-GCM for IPv4 inner traffic, ChaCha20-Poly1305 for IPv6, both in IPv4.
//!
//! The keys are fixed demo keys written into the files, so another ESP implementation (e.g.
//! Wireshark's ESP preferences, or `ip xfrm`) can decrypt the middle capture.

use std::fmt::Write as _;

use crate::config::to_hex;

/// A's LAN MAC (frames from site-1 hosts are addressed to it).
pub const A_LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
/// A's WAN MAC.
pub const A_WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x02];
/// B's LAN MAC.
pub const B_LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];
/// B's WAN MAC.
pub const B_WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x02];
/// The router behind B's LAN that leads to site-2 hosts.
pub const B_LAN_ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0xfe];
/// A's WAN address (tunnel endpoint).
pub const A_WAN: &str = "192.0.2.100";
/// B's WAN address (tunnel endpoint).
pub const B_WAN: &str = "203.0.113.1";

/// Which gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// Site 1, encrypts the demo traffic.
    A,
    /// Site 2, decrypts it.
    B,
}

/// SPI of `from`'s outbound SA on `shard` (of `shards`) for IPv4 (`v6 == false`) or IPv6 inner
/// traffic: the first SPI from a base (0x4000 A/IPv4, 0x6000 A/IPv6, 0x5000 B/IPv4, 0x7000
/// B/IPv6) that the receiving gateway's RSS (Microsoft key, `sort`, ESP hashed by
/// `src ‖ dst ‖ SPI`, round-robin RETA of 128) steers to its data shard `shard`. That is how the
/// receiver of an SA chooses its SPI (in IKE, the inbound side picks it) so that every shard
/// decrypts one tunnel share, with a complete replay window.
pub fn spi(from: Site, v6: bool, shard: usize, shards: usize) -> u32 {
    use wirespeed_core::rss::{FlowTuple, HashTypes, Reta, RssConfig, RssHasher, SymmetricMode};
    let base = match (from, v6) {
        (Site::A, false) => 0x4000,
        (Site::A, true) => 0x6000,
        (Site::B, false) => 0x5000,
        (Site::B, true) => 0x7000,
    };
    let (src, dst) = match from {
        Site::A => (A_WAN, B_WAN),
        Site::B => (B_WAN, A_WAN),
    };
    let (Ok(src), Ok(dst)) = (src.parse(), dst.parse()) else { return base + shard as u32 };
    let rss = RssConfig { mode: SymmetricMode::Sort, types: HashTypes::ALL, ..RssConfig::default() };
    let (Ok(h), Ok(reta)) = (RssHasher::new(&rss), Reta::round_robin(128, shards as u16)) else {
        return base + shard as u32;
    };
    (base..base + 0x1000)
        .find(|&spi| {
            h.hash_tuple(&FlowTuple::esp(src, dst, spi)).map(|x| reta.queue(x) as usize) == Some(shard)
        })
        .unwrap_or(base + shard as u32)
}

/// Demo key material (key ‖ salt) of an SA, derived from its SPI. Real keys come from IKE.
pub fn keymat(spi: u32, v6: bool) -> Vec<u8> {
    let len = if v6 { 36 } else { 20 };
    (0..len)
        .map(|i| ((spi as u8).wrapping_mul(31).wrapping_add(i as u8 * 7) ^ 0x5a) ^ (spi >> 8) as u8)
        .collect()
}

fn mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The configuration of gateway `site` with `shards` data shards. `files` are the pcap
/// backend's `[lan_in, lan_out, wan_in, wan_out]` capture names (relative to the configuration
/// file, each optional); `None` makes both ports `mem` (tests).
pub fn config(site: Site, shards: usize, files: Option<[Option<&str>; 4]>) -> String {
    let (me, peer) = match site {
        Site::A => (Site::A, Site::B),
        Site::B => (Site::B, Site::A),
    };
    let [lan_in, lan_out, wan_in, wan_out] = files.unwrap_or_default();
    let port = |input: Option<&str>, output: Option<&str>| {
        if files.is_none() {
            return String::from("{ backend = \"mem\" }");
        }
        let mut s = String::from("{ backend = \"pcap\"");
        if let Some(i) = input {
            let _ = write!(s, ", input = \"{i}\"");
        }
        if let Some(o) = output {
            let _ = write!(s, ", output = \"{o}\"");
        }
        s + " }"
    };
    let (name, lan_mac, wan_mac, lan4, lan6, wan, peer_wan, here4, here6, there4, there6) = match me {
        Site::A => (
            "gateway-a",
            A_LAN_MAC,
            A_WAN_MAC,
            "10.1.0.1/16",
            "fd00:1::1/64",
            A_WAN,
            B_WAN,
            "10.1.0.0/16",
            "fd00:1::/64",
            "10.2.0.0/16",
            "fd00:2::/64",
        ),
        Site::B => (
            "gateway-b",
            B_LAN_MAC,
            B_WAN_MAC,
            "10.2.0.1/16",
            "fd00:2::1/64",
            B_WAN,
            A_WAN,
            "10.2.0.0/16",
            "fd00:2::/64",
            "10.1.0.0/16",
            "fd00:1::/64",
        ),
    };
    let wan_router4 = if me == Site::A { "192.0.2.1" } else { "203.0.113.254" };
    let wan_router6 = if me == Site::A { "fd00:ff::1" } else { "fd00:ff::2" };
    // The WAN router's MAC: in the demo the two gateways face each other, so it is the peer's.
    let wan_router_mac = if me == Site::A { B_WAN_MAC } else { A_WAN_MAC };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Generated by `ipsec-gateway demo`: {name}, one end of the demo tunnel.\n\
         # Keys are demo keys (derived from the SPI), written here so the ESP capture can be\n\
         # decrypted by any other ESP implementation.\n\n\
         [gateway]\nname = \"{name}\"\nshards = {shards}\nstats_interval = 0\n\n\
         [interfaces.lan]\nmac = \"{}\"\naddresses = [\"{lan4}\", \"{lan6}\"]\nport = {}\n\n\
         [interfaces.wan]\nmac = \"{}\"\naddresses = [\"{wan}/24\"]\nport = {}\n\n\
         [rss]\nkey = \"ms\"\nsymmetric = \"sort\"\nhash_types = [\"all\"]\nreta_size = 128\n\n\
         [management]\ninterface = \"lan\"\nhttp_port = 9000\n\n\
         # The demo counts the flows it refuses (no route, TTL 1) as drops: no ICMP errors.\n\
         [icmp]\nerrors = false\n",
        mac(lan_mac),
        port(lan_in, lan_out),
        mac(wan_mac),
        port(wan_in, wan_out),
    );
    // Routes: the remote site through the WAN router; our own site through the LAN router.
    let (lan_router4, lan_router6) =
        if me == Site::A { ("10.1.255.254", "fd00:1::fe") } else { ("10.2.255.254", "fd00:2::fe") };
    let lan_router_mac = if me == Site::A { [0x02, 0, 0, 0, 0x0a, 0xfe] } else { B_LAN_ROUTER_MAC };
    for (prefix, via) in
        [(there4, wan_router4), (there6, wan_router6), (here4, lan_router4), (here6, lan_router6)]
    {
        let _ = writeln!(t, "[[routes]]\nprefix = \"{prefix}\"\nvia = \"{via}\"\n");
    }
    for (ip, m, itf) in [
        (wan_router4, wan_router_mac, "wan"),
        (wan_router6, wan_router_mac, "wan"),
        (lan_router4, lan_router_mac, "lan"),
        (lan_router6, lan_router_mac, "lan"),
    ] {
        let _ = writeln!(t, "[[neighbors]]\nip = \"{ip}\"\nmac = \"{}\"\ninterface = \"{itf}\"\n", mac(m));
    }
    for (v6, here, there) in [(false, here4, there4), (true, here6, there6)] {
        let spis: Vec<String> = (0..shards).map(|s| format!("{:#x}", spi(me, v6, s, shards))).collect();
        let _ = writeln!(
            t,
            "[[policies]]\nname = \"to-peer-{}\"\nsrc = \"{here}\"\ndst = \"{there}\"\naction = \"protect\"\nsas = [{}]\n",
            if v6 { "v6" } else { "v4" },
            spis.join(", ")
        );
    }
    for v6 in [false, true] {
        let aead = if v6 { "chacha20poly1305" } else { "aes128gcm" };
        for s in 0..shards {
            let out = spi(me, v6, s, shards);
            let _ = writeln!(
                t,
                "[[sa]]\nspi = {out:#x}\ndirection = \"outbound\"\nshard = {s}\naead = \"{aead}\"\nkey = \"{}\"\n\
                 local = \"{wan}\"\nremote = \"{peer_wan}\"\n",
                to_hex(&keymat(out, v6))
            );
            let inb = spi(peer, v6, s, shards);
            let _ = writeln!(
                t,
                "[[sa]]\nspi = {inb:#x}\ndirection = \"inbound\"\naead = \"{aead}\"\nkey = \"{}\"\n\
                 local = \"{wan}\"\nremote = \"{peer_wan}\"\npolicy = \"to-peer-{}\"\n",
                to_hex(&keymat(inb, v6)),
                if v6 { "v6" } else { "v4" }
            );
        }
    }
    t
}
