//! AEAD providers for ESP: the [`EspAead`] trait and its implementations.
//!
//! ESP with a combined-mode cipher (RFC 4106 AES-GCM, RFC 7634 ChaCha20-Poly1305) needs exactly
//! one primitive: seal or open a byte range *in place* with a 12-byte nonce (4-byte salt from the
//! key material ‖ 8-byte explicit IV), the ESP header as AAD and a detached 16-byte ICV. That is
//! what [`EspAead`] is, so a provider is a thin adapter and never copies the payload.
//!
//! Providers:
//! - [`Provider::RustCrypto`] (default, pure Rust): `aes-gcm` and `chacha20poly1305` through the
//!   `aead` 0.6 `AeadInOut` detached API. AES-NI/PCLMULQDQ (AES-GCM) and AVX2 (ChaCha20,
//!   Poly1305) are detected at run time by those crates, so the library stays portable; building
//!   with `-C target-cpu=x86-64-v3 -C target-feature=+aes,+pclmulqdq` lets the compiler inline
//!   the accelerated paths and is what the benches use (see the repository `.cargo/config.toml`).
//! - [`Provider::Ring`] (feature `accel`): ring's BoringSSL-derived assembly (AES-GCM with
//!   AVX/VAES and CLMUL, ChaCha20-Poly1305 with AVX2), selected per SA. Also detects CPU
//!   features at run time.
//!
//! The choice is per SA ([`crate::esp::SaConfig::provider`]); dispatch is a `match` on a small
//! enum ([`Cipher`]), not a virtual call.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;

/// Length of the ESP integrity check value (16-byte AEAD tag).
pub const ICV_LEN: usize = 16;
/// Length of the explicit IV carried in every ESP packet (RFC 4106 §3.1, RFC 7634 §2).
pub const IV_LEN: usize = 8;
/// Length of the salt taken from the end of the key material (RFC 4106 §8.1, RFC 7634 §4).
pub const SALT_LEN: usize = 4;
/// Length of the AEAD nonce: salt ‖ explicit IV.
pub const NONCE_LEN: usize = SALT_LEN + IV_LEN;

/// The combined-mode algorithms ESP supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AeadAlgorithm {
    /// AES-128-GCM with a 16-byte ICV (RFC 4106, IKEv2 transform ENCR_AES_GCM_16, 128-bit key).
    Aes128Gcm,
    /// AES-256-GCM with a 16-byte ICV (RFC 4106, 256-bit key).
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 7634).
    ChaCha20Poly1305,
}

impl AeadAlgorithm {
    /// Cipher key length in bytes (without the salt).
    pub const fn key_len(self) -> usize {
        match self {
            AeadAlgorithm::Aes128Gcm => 16,
            AeadAlgorithm::Aes256Gcm | AeadAlgorithm::ChaCha20Poly1305 => 32,
        }
    }

    /// Length of the key material an SA is configured with: key ‖ 4-byte salt.
    pub const fn keymat_len(self) -> usize {
        self.key_len() + SALT_LEN
    }

    /// Short stable name (`aes128gcm`, `aes256gcm`, `chacha20poly1305`).
    pub const fn name(self) -> &'static str {
        match self {
            AeadAlgorithm::Aes128Gcm => "aes128gcm",
            AeadAlgorithm::Aes256Gcm => "aes256gcm",
            AeadAlgorithm::ChaCha20Poly1305 => "chacha20poly1305",
        }
    }
}

/// Which implementation performs an SA's AEAD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Provider {
    /// RustCrypto `aes-gcm` / `chacha20poly1305` (pure Rust, always available).
    #[default]
    RustCrypto,
    /// ring (assembly); needs the `accel` feature, otherwise SA creation fails with
    /// [`AeadError::ProviderUnavailable`].
    Ring,
}

impl Provider {
    /// True when this build can use the provider.
    pub const fn available(self) -> bool {
        match self {
            Provider::RustCrypto => true,
            Provider::Ring => cfg!(feature = "accel"),
        }
    }
}

/// Errors of the AEAD layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    /// The key material has the wrong length for the algorithm.
    #[error("{algorithm:?} needs {expected} bytes of key material (key and 4-byte salt), got {got}")]
    BadKeyLength {
        /// The algorithm.
        algorithm: AeadAlgorithm,
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The provider was not compiled in (feature `accel` for ring).
    #[error("AEAD provider {0:?} is not built in (enable the `accel` feature)")]
    ProviderUnavailable(Provider),
    /// The ICV did not verify.
    #[error("ICV verification failed")]
    AuthFailed,
    /// The provider refused the input (too long for the algorithm).
    #[error("AEAD input rejected by the provider")]
    Rejected,
}

/// An in-place, detached-tag AEAD as ESP uses it. Implementations hold an expanded key and are
/// immutable after construction, so one instance is shared read-only by every shard.
pub trait EspAead: Send + Sync {
    /// The algorithm.
    fn algorithm(&self) -> AeadAlgorithm;

    /// Encrypts `data` in place and writes the tag to `icv`.
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &mut [u8; ICV_LEN],
    ) -> Result<(), AeadError>;

    /// Verifies `icv` and decrypts `data` in place. On failure `data` must be treated as garbage.
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &[u8; ICV_LEN],
    ) -> Result<(), AeadError>;
}

/// The RustCrypto provider. Boxed key schedules keep [`Cipher`] small.
pub enum RustCryptoAead {
    /// AES-128-GCM.
    Aes128(Box<Aes128Gcm>),
    /// AES-256-GCM.
    Aes256(Box<Aes256Gcm>),
    /// ChaCha20-Poly1305.
    ChaCha(Box<ChaCha20Poly1305>),
}

impl std::fmt::Debug for RustCryptoAead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RustCryptoAead({})", self.algorithm().name())
    }
}

impl RustCryptoAead {
    /// Expands `key` (the cipher key, without the salt).
    pub fn new(algorithm: AeadAlgorithm, key: &[u8]) -> Result<Self, AeadError> {
        let bad = || AeadError::BadKeyLength {
            algorithm,
            expected: algorithm.keymat_len(),
            got: key.len() + SALT_LEN,
        };
        Ok(match algorithm {
            AeadAlgorithm::Aes128Gcm => {
                RustCryptoAead::Aes128(Box::new(Aes128Gcm::new_from_slice(key).map_err(|_| bad())?))
            }
            AeadAlgorithm::Aes256Gcm => {
                RustCryptoAead::Aes256(Box::new(Aes256Gcm::new_from_slice(key).map_err(|_| bad())?))
            }
            AeadAlgorithm::ChaCha20Poly1305 => {
                RustCryptoAead::ChaCha(Box::new(ChaCha20Poly1305::new_from_slice(key).map_err(|_| bad())?))
            }
        })
    }
}

#[inline(always)]
fn rc_seal<A: AeadInOut<NonceSize = aes_gcm::aead::consts::U12, TagSize = aes_gcm::aead::consts::U16>>(
    a: &A,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    data: &mut [u8],
    icv: &mut [u8; ICV_LEN],
) -> Result<(), AeadError> {
    let nonce = aes_gcm::aead::Nonce::<A>::from(*nonce);
    let tag = a.encrypt_inout_detached(&nonce, aad, data.into()).map_err(|_| AeadError::Rejected)?;
    icv.copy_from_slice(tag.as_slice());
    Ok(())
}

#[inline(always)]
fn rc_open<A: AeadInOut<NonceSize = aes_gcm::aead::consts::U12, TagSize = aes_gcm::aead::consts::U16>>(
    a: &A,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    data: &mut [u8],
    icv: &[u8; ICV_LEN],
) -> Result<(), AeadError> {
    let nonce = aes_gcm::aead::Nonce::<A>::from(*nonce);
    let tag = aes_gcm::aead::Tag::<A>::from(*icv);
    a.decrypt_inout_detached(&nonce, aad, data.into(), &tag).map_err(|_| AeadError::AuthFailed)
}

impl EspAead for RustCryptoAead {
    fn algorithm(&self) -> AeadAlgorithm {
        match self {
            RustCryptoAead::Aes128(_) => AeadAlgorithm::Aes128Gcm,
            RustCryptoAead::Aes256(_) => AeadAlgorithm::Aes256Gcm,
            RustCryptoAead::ChaCha(_) => AeadAlgorithm::ChaCha20Poly1305,
        }
    }

    #[inline]
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &mut [u8; ICV_LEN],
    ) -> Result<(), AeadError> {
        match self {
            RustCryptoAead::Aes128(a) => rc_seal(&**a, nonce, aad, data, icv),
            RustCryptoAead::Aes256(a) => rc_seal(&**a, nonce, aad, data, icv),
            RustCryptoAead::ChaCha(a) => rc_seal(&**a, nonce, aad, data, icv),
        }
    }

    #[inline]
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &[u8; ICV_LEN],
    ) -> Result<(), AeadError> {
        match self {
            RustCryptoAead::Aes128(a) => rc_open(&**a, nonce, aad, data, icv),
            RustCryptoAead::Aes256(a) => rc_open(&**a, nonce, aad, data, icv),
            RustCryptoAead::ChaCha(a) => rc_open(&**a, nonce, aad, data, icv),
        }
    }
}

/// The ring provider (feature `accel`).
#[cfg(feature = "accel")]
pub struct RingAead {
    key: ring::aead::LessSafeKey,
    algorithm: AeadAlgorithm,
}

#[cfg(feature = "accel")]
impl std::fmt::Debug for RingAead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RingAead({})", self.algorithm.name())
    }
}

#[cfg(feature = "accel")]
impl RingAead {
    /// Expands `key` (the cipher key, without the salt).
    pub fn new(algorithm: AeadAlgorithm, key: &[u8]) -> Result<Self, AeadError> {
        let alg = match algorithm {
            AeadAlgorithm::Aes128Gcm => &ring::aead::AES_128_GCM,
            AeadAlgorithm::Aes256Gcm => &ring::aead::AES_256_GCM,
            AeadAlgorithm::ChaCha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
        };
        let unbound = ring::aead::UnboundKey::new(alg, key).map_err(|_| AeadError::BadKeyLength {
            algorithm,
            expected: algorithm.keymat_len(),
            got: key.len() + SALT_LEN,
        })?;
        Ok(Self { key: ring::aead::LessSafeKey::new(unbound), algorithm })
    }
}

#[cfg(feature = "accel")]
impl EspAead for RingAead {
    fn algorithm(&self) -> AeadAlgorithm {
        self.algorithm
    }

    #[inline]
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &mut [u8; ICV_LEN],
    ) -> Result<(), AeadError> {
        let nonce = ring::aead::Nonce::assume_unique_for_key(*nonce);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, ring::aead::Aad::from(aad), data)
            .map_err(|_| AeadError::Rejected)?;
        icv.copy_from_slice(tag.as_ref());
        Ok(())
    }

    #[inline]
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &[u8; ICV_LEN],
    ) -> Result<(), AeadError> {
        let nonce = ring::aead::Nonce::assume_unique_for_key(*nonce);
        self.key
            .open_in_place_separate_tag(
                nonce,
                ring::aead::Aad::from(aad),
                ring::aead::Tag::from(*icv),
                data,
                0..,
            )
            .map(|_| ())
            .map_err(|_| AeadError::AuthFailed)
    }
}

/// An SA's cipher: one of the compiled-in providers, dispatched by `match`.
// ring's expanded key is stored inline (no extra pointer chase per packet); a Cipher lives once
// per SA inside an `Arc`, so the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Cipher {
    /// RustCrypto.
    RustCrypto(RustCryptoAead),
    /// ring.
    #[cfg(feature = "accel")]
    Ring(RingAead),
}

impl Cipher {
    /// Builds the cipher for `algorithm` from `key` (cipher key only, no salt) with `provider`.
    pub fn new(provider: Provider, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Self, AeadError> {
        match provider {
            Provider::RustCrypto => Ok(Cipher::RustCrypto(RustCryptoAead::new(algorithm, key)?)),
            #[cfg(feature = "accel")]
            Provider::Ring => Ok(Cipher::Ring(RingAead::new(algorithm, key)?)),
            #[cfg(not(feature = "accel"))]
            Provider::Ring => Err(AeadError::ProviderUnavailable(provider)),
        }
    }

    /// The provider behind this cipher.
    pub fn provider(&self) -> Provider {
        match self {
            Cipher::RustCrypto(_) => Provider::RustCrypto,
            #[cfg(feature = "accel")]
            Cipher::Ring(_) => Provider::Ring,
        }
    }
}

impl EspAead for Cipher {
    fn algorithm(&self) -> AeadAlgorithm {
        match self {
            Cipher::RustCrypto(c) => c.algorithm(),
            #[cfg(feature = "accel")]
            Cipher::Ring(c) => c.algorithm(),
        }
    }

    #[inline]
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &mut [u8; ICV_LEN],
    ) -> Result<(), AeadError> {
        match self {
            Cipher::RustCrypto(c) => c.seal(nonce, aad, data, icv),
            #[cfg(feature = "accel")]
            Cipher::Ring(c) => c.seal(nonce, aad, data, icv),
        }
    }

    #[inline]
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &[u8; ICV_LEN],
    ) -> Result<(), AeadError> {
        match self {
            Cipher::RustCrypto(c) => c.open(nonce, aad, data, icv),
            #[cfg(feature = "accel")]
            Cipher::Ring(c) => c.open(nonce, aad, data, icv),
        }
    }
}
