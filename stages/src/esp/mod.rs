//! ESP/IPsec (RFC 4303) for the data path: in-place encapsulation and decapsulation with
//! AES-GCM (RFC 4106) and ChaCha20-Poly1305 (RFC 7634), tunnel and transport mode, IPv4 and
//! IPv6 (mixed inner/outer), RFC 3948 UDP encapsulation (NAT-T), RFC 6479 anti-replay with
//! RFC 4303 ESN, lifetimes, and RFC 9611 per-shard SAs.
//!
//! The pieces, from the bottom up:
//! - [`aead`]: the [`AeadProvider`] trait (a provider is a value: RustCrypto by default, ring
//!   with the `accel` feature, or a third party's) and the [`EspAead`] ciphers it makes, with
//!   batch seal/open; chosen per SA.
//! - [`SaConfig`] → [`SecurityAssociation`] (immutable: keys, mode, lifetimes) and [`SaState`]
//!   (one shard's mutable part: sequence number, [`ReplayWindow`], counters).
//! - [`Spd`] of [`SecurityPolicy`]s ([`Selector`] → [`PolicyAction`]) and [`SaSet`], the SAD
//!   version that is published to shards with [`wirespeed_core::epoch`]; [`ShardSas`] is a
//!   shard's subscription plus its states.
//! - [`encapsulate`] / [`locate_esp`] + [`decapsulate`]: the packet transforms.
//! - [`EspEncrypt`] / [`EspDecrypt`]: the pipeline stages.
//!
//! ```
//! use std::sync::Arc;
//! use wirespeed_core::epoch::Publisher;
//! use wirespeed_core::{Batch, BufferPool, PacketBuf, PoolConfig, ShardCtx, Stage};
//! use wirespeed_stages::esp::*;
//!
//! let keymat = [7u8; 20]; // AES-128 key ‖ 4-byte salt, from IKE
//! let gw: std::net::IpAddr = "192.0.2.1".parse()?;
//! let peer: std::net::IpAddr = "198.51.100.7".parse()?;
//! let out = SaConfig::tunnel(0x1001, Direction::Outbound { shard: 0 }, AeadAlgorithm::Aes128Gcm, &keymat, gw, peer);
//! // The same gateway decrypts its own traffic here: as the receiver, "local" is the peer.
//! let inb = SaConfig::tunnel(0x1001, Direction::Inbound, AeadAlgorithm::Aes128Gcm, &keymat, peer, gw);
//! let spd = Spd::new(vec![SecurityPolicy {
//!     selector: Selector::between(IpPrefix::any_v4(), IpPrefix::new("10.9.0.0".parse()?, 16)),
//!     action: PolicyAction::Protect { spis: vec![0x1001] },
//! }]);
//! let set = SaSet::new([Arc::new(SecurityAssociation::new(&out)?), Arc::new(SecurityAssociation::new(&inb)?)], &spd)?;
//! let mut publisher = Publisher::new(set);
//! let mut encrypt = EspEncrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
//! let mut decrypt = EspDecrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
//!
//! // A 28-byte IPv4/UDP packet from 10.0.0.1 to 10.9.0.9.
//! let pkt = [0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 9, 0, 9, 0, 1, 0, 2, 0, 8, 0, 0];
//! let pool = BufferPool::new(PoolConfig::default())?;
//! let mut b = pool.alloc().unwrap();
//! b.copy_from(&pkt)?;
//! let mut batch: Batch<_> = Batch::new();
//! batch.push(b).unwrap();
//! let mut cx = ShardCtx::new(0);
//! encrypt.process(&mut cx, &mut batch);
//! assert_eq!(batch.as_slice()[0].data()[9], 50); // now ESP
//! decrypt.process(&mut cx, &mut batch);
//! assert_eq!(batch.as_slice()[0].data(), &pkt[..]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod aead;
pub mod chacha;
pub mod gcm;
mod packet;
pub mod replay;
mod sa;
mod sad;
mod spd;
mod stage;
pub mod wire;

pub use aead::{
    AeadAlgorithm, AeadError, AeadJob, AeadProvider, EspAead, ProviderRef, RustCrypto, builtin_providers,
    default_provider, fastest_provider,
};
pub use chacha::{BatchChaCha, BatchChaChaForced, ChaChaPath, PATH_ENV as CHACHA_PATH_ENV};
pub use gcm::{BatchGcm, BatchGcmAesNi, BatchGcmForced, GcmPath, PATH_ENV};
pub use packet::{
    Decapsulated, ESP_HDR_LEN, EspLocation, MIN_ESP_LEN, UDP_HDR_LEN, decapsulate, encapsulate,
    encapsulate_with_iv, locate_esp,
};
pub use replay::ReplayWindow;
pub use sa::{
    Direction, EspMode, Lifetime, Limits, NAT_T_PORT, SaConfig, SaError, SaEvent, SaEventKind, SaState,
    SaStatus, SecurityAssociation, UdpEncap, key_fingerprint,
};
pub use sad::{OutboundDecision, SaSet, SadError, ShardSas};
pub use spd::{DefaultAction, FlowKey, IpPrefix, PolicyAction, SecurityPolicy, Selector, Spd};
pub use stage::{
    EspDecrypt, EspEncrypt, EspStats, EventQueue, FRAG_SPILL, Framing, MAX_SPI_HOLD_PACKETS,
    MAX_SPI_HOLD_TIME, event_queue,
};
