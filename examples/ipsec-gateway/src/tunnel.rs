//! The demo's IPsec tunnel: our gateway (WAN 192.0.2.100) to a peer gateway (203.0.113.1)
//! protecting the LAN 10.1.0.0/16 ↔ 10.2.0.0/16 (AES-128-GCM) and fd00:1::/64 ↔ fd00:2::/64
//! (ChaCha20-Poly1305, IPv6 inside IPv4), with one outbound SA per shard for each (RFC 9611
//! per-resource SAs), so the tunnel scales across cores without shared sequence numbers.

use std::net::IpAddr;
use std::sync::Arc;

use wirespeed_core::PacketBuf;
use wirespeed_core::pool::BufferPool;
use wirespeed_stages::esp::{
    AeadAlgorithm, Direction, IpPrefix, NAT_T_PORT, PolicyAction, SaConfig, SaSet, SaState,
    SecurityAssociation, SecurityPolicy, Selector, Spd, decapsulate, locate_esp,
};

/// Our WAN address (outer source).
pub const LOCAL: &str = "192.0.2.100";
/// The peer gateway (outer destination).
pub const PEER: &str = "203.0.113.1";

/// SPI of shard `shard`'s outbound SA for the IPv4 (`v6 == false`) or IPv6 policy.
pub fn spi(v6: bool, shard: usize) -> u32 {
    (if v6 { 0x6000 } else { 0x4000 }) + shard as u32
}

/// Key material of an SA: key ‖ 4-byte salt (RFC 4106 / RFC 7634). Demo keys are derived from
/// the SPI; a real deployment gets them from IKE.
fn keymat(v6: bool, spi: u32) -> Vec<u8> {
    let len = if v6 { 32 + 4 } else { 16 + 4 };
    (0..len).map(|i| (spi as u8).wrapping_mul(31).wrapping_add(i as u8 * 7) ^ 0x5a).collect()
}

fn algorithm(v6: bool) -> AeadAlgorithm {
    if v6 { AeadAlgorithm::ChaCha20Poly1305 } else { AeadAlgorithm::Aes128Gcm }
}

fn addr(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

/// SA config of one side: `outbound` builds our SAs; `false` builds the peer's inbound SAs that
/// decrypt them.
fn sa_config(v6: bool, shard: usize, outbound: bool) -> SaConfig {
    let spi = spi(v6, shard);
    let dir = if outbound { Direction::Outbound { shard } } else { Direction::Inbound };
    // Our SAs are LOCAL ↔ PEER; the peer's inbound SAs see the tunnel from the other end.
    let (local, remote) = if outbound { (LOCAL, PEER) } else { (PEER, LOCAL) };
    SaConfig::tunnel(spi, dir, algorithm(v6), &keymat(v6, spi), addr(local), addr(remote))
}

/// Our SAD/SPD: protect LAN ↔ remote traffic with the shards' outbound SAs, bypass the rest.
pub fn local_sas(shards: usize) -> Result<SaSet, String> {
    let mut sas = Vec::new();
    for v6 in [false, true] {
        for s in 0..shards {
            sas.push(Arc::new(SecurityAssociation::new(&sa_config(v6, s, true)).map_err(|e| e.to_string())?));
        }
    }
    let policy = |src: &str, slen, dst: &str, dlen, v6| SecurityPolicy {
        selector: Selector::between(IpPrefix::new(addr(src), slen), IpPrefix::new(addr(dst), dlen)),
        action: PolicyAction::Protect { spis: (0..shards).map(|s| spi(v6, s)).collect() },
    };
    let spd = Spd::new(vec![
        policy("10.1.0.0", 16, "10.2.0.0", 16, false),
        policy("fd00:1::", 64, "fd00:2::", 64, true),
    ]);
    SaSet::new(sas, &spd).map_err(|e| e.to_string())
}

/// The peer gateway's view: decrypts one of our ESP frames and returns the inner IP packet.
pub struct Peer {
    sas: Vec<(SecurityAssociation, SaState)>,
    pool: BufferPool,
}

impl Peer {
    /// The peer's inbound SAs for every shard's outbound SA.
    pub fn new(shards: usize, pool: BufferPool) -> Result<Self, String> {
        let mut sas = Vec::new();
        for v6 in [false, true] {
            for s in 0..shards {
                let sa = SecurityAssociation::new(&sa_config(v6, s, false)).map_err(|e| e.to_string())?;
                let st = SaState::new(&sa);
                sas.push((sa, st));
            }
        }
        Ok(Self { sas, pool })
    }

    /// Verifies and decrypts an Ethernet frame carrying ESP; returns (SPI, inner IP packet).
    pub fn decrypt(&mut self, frame: &[u8]) -> Result<(u32, Vec<u8>), String> {
        let loc = locate_esp(frame, 14, NAT_T_PORT)
            .map_err(|r| format!("not ESP: {}", r.name()))?
            .ok_or("not ESP")?;
        let (sa, st) = self
            .sas
            .iter_mut()
            .find(|(sa, _)| sa.spi() == loc.spi)
            .ok_or_else(|| format!("no SA for SPI {:#x}", loc.spi))?;
        let mut b = self.pool.alloc().ok_or("pool exhausted")?;
        b.copy_from(frame).map_err(|e| e.to_string())?;
        decapsulate(&mut b, 14, &loc, sa, st, std::time::Instant::now(), |_| {})
            .map_err(|r| format!("SPI {:#x}: {}", loc.spi, r.name()))?;
        Ok((loc.spi, b.data()[14..].to_vec()))
    }
}
