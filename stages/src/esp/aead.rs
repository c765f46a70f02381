//! AEAD providers for ESP: the [`EspAead`] trait and its implementations.
//!
//! ESP with a combined-mode cipher (RFC 4106 AES-GCM, RFC 7634 ChaCha20-Poly1305) needs exactly
//! one primitive: seal or open a byte range *in place* with a 12-byte nonce (4-byte salt from the
//! key material ‖ 8-byte explicit IV), the ESP header as AAD and a detached 16-byte ICV. That is
//! what [`EspAead`] is, so a provider is a thin adapter and never copies the payload.
//!
//! A provider is a value implementing [`AeadProvider`]: it turns an algorithm and a key into
//! a boxed [`EspAead`]. Built in:
//! - [`RustCrypto`] (default, pure Rust): `aes-gcm` and `chacha20poly1305` through the
//!   `aead` 0.6 `AeadInOut` detached API. AES-NI/PCLMULQDQ (AES-GCM) and AVX2 (ChaCha20,
//!   Poly1305) are detected at run time by those crates, so the library stays portable; building
//!   with `-C target-cpu=x86-64-v3 -C target-feature=+aes,+pclmulqdq` lets the compiler inline
//!   the accelerated paths and is what the benches use (see the repository `.cargo/config.toml`).
//! - `Ring` (feature `accel`): ring's BoringSSL-derived assembly (AES-GCM with AVX/VAES and
//!   CLMUL, ChaCha20-Poly1305 with AVX2). Also detects CPU features at run time.
//! - [`super::gcm::BatchGcm`]: this crate's batch AES-GCM (AES-NI + PCLMULQDQ, VAES-256 or a
//!   512-bit stitched AVX-512 path, detected at run time); AES-GCM only.
//! - [`super::chacha::BatchChaCha`]: this crate's batch ChaCha20-Poly1305 (AVX-512 or AVX2,
//!   detected at run time), ChaCha20 across the packets of a batch; ChaCha20-Poly1305 only.
//!
//! Third-party providers (hardware offload, …) implement the same trait outside this crate; see
//! the example on [`AeadProvider`]. The choice is per SA ([`crate::esp::SaConfig::provider`]),
//! [`fastest_provider`] picks the best built-in one for the CPU. The ESP stages hand a provider
//! a whole batch of packets of one SA at a time ([`EspAead::seal_batch`]), so the virtual call
//! is paid once per batch, and a provider that interleaves packets can do so.

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

/// A source of [`EspAead`] ciphers: given an algorithm and a key, it expands the key into an
/// object that seals and opens packets. This is the plug-in point for crypto, in the style of
/// rustls' `CryptoProvider`: the built-in providers ([`RustCrypto`], `Ring` with the `accel`
/// feature, [`super::gcm::BatchGcm`]) are ordinary values implementing it, and a third party
/// (a hardware offload, a FIPS module, a test double) implements it outside this crate and
/// hands it to [`crate::esp::SaConfig::provider`] — no fork, no enum to extend.
///
/// A provider is shared by every SA that names it (an `Arc<dyn AeadProvider>`); the ciphers
/// it makes are shared read-only by every shard.
///
/// ```
/// use std::sync::Arc;
/// use wirespeed_stages::esp::aead::{AeadAlgorithm, AeadError, AeadProvider, EspAead, ICV_LEN, NONCE_LEN};
/// use wirespeed_stages::esp::{Direction, SaConfig, SecurityAssociation};
///
/// /// A provider that only counts how many keys were expanded, then delegates to RustCrypto
/// /// (stand-in for a hardware offload's driver).
/// #[derive(Debug, Default)]
/// struct Counting(std::sync::atomic::AtomicUsize);
///
/// impl AeadProvider for Counting {
///     fn name(&self) -> &str {
///         "counting"
///     }
///     fn new_aead(&self, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn EspAead>, AeadError> {
///         self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         wirespeed_stages::esp::aead::RustCrypto.new_aead(algorithm, key)
///     }
/// }
///
/// let provider = Arc::new(Counting::default());
/// let gw = "192.0.2.1".parse()?;
/// let peer = "198.51.100.7".parse()?;
/// let cfg = SaConfig::tunnel(0x42, Direction::Inbound, AeadAlgorithm::Aes128Gcm, &[1; 20], gw, peer)
///     .with_provider(provider.clone());
/// let sa = SecurityAssociation::new(&cfg)?;
/// assert_eq!(sa.cipher().provider_name(), "rustcrypto");
/// assert_eq!(provider.0.load(std::sync::atomic::Ordering::Relaxed), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait AeadProvider: Send + Sync + std::fmt::Debug {
    /// Short stable name, for logs and stats (`rustcrypto`, `ring`, `batch-gcm`, …).
    fn name(&self) -> &str;

    /// True when this provider can build ciphers of `algorithm` on this machine (a provider
    /// may depend on CPU features or on a device being present).
    fn supports(&self, algorithm: AeadAlgorithm) -> bool {
        let _ = algorithm;
        true
    }

    /// Expands `key` (the cipher key only; the salt stays with the SA) for `algorithm`. A key
    /// of the wrong length is [`AeadError::BadKeyLength`]; an algorithm the provider does not
    /// implement is [`AeadError::Unsupported`].
    fn new_aead(&self, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn EspAead>, AeadError>;
}

/// A shared handle to a provider, as SA configurations hold it.
pub type ProviderRef = std::sync::Arc<dyn AeadProvider>;

/// The default provider: [`RustCrypto`] (pure Rust, always available).
pub fn default_provider() -> ProviderRef {
    std::sync::Arc::new(RustCrypto)
}

/// Every provider compiled into this build that works on this CPU, fastest first per the
/// benches in `benches/benches/esp.rs`: the batch AES-GCM [`super::gcm::BatchGcm`] (AES-GCM
/// only, when the CPU has AES-NI and PCLMULQDQ), the batch ChaCha20-Poly1305
/// [`super::chacha::BatchChaCha`] (ChaCha20-Poly1305 only) when it runs its AVX-512 + IFMA
/// path, ring (feature `accel`), the batch ChaCha20-Poly1305 on its AVX2 path (slower than
/// ring's AVX2 assembly, faster than RustCrypto), RustCrypto.
// Entries depend on features and the CPU, hence pushes rather than `vec![]`.
#[allow(clippy::vec_init_then_push)]
pub fn builtin_providers() -> Vec<ProviderRef> {
    let mut v: Vec<ProviderRef> = Vec::new();
    if super::gcm::BatchGcm::detected() {
        v.push(std::sync::Arc::new(super::gcm::BatchGcm));
    }
    let chacha = super::chacha::BatchChaCha::detected();
    let chacha_wide =
        chacha && super::chacha::ChaChaPath::selected() == Some(super::chacha::ChaChaPath::Avx512);
    if chacha_wide {
        v.push(std::sync::Arc::new(super::chacha::BatchChaCha));
    }
    #[cfg(feature = "accel")]
    v.push(std::sync::Arc::new(Ring));
    if chacha && !chacha_wide {
        v.push(std::sync::Arc::new(super::chacha::BatchChaCha));
    }
    v.push(std::sync::Arc::new(RustCrypto));
    v
}

/// The fastest correct provider for `algorithm` on this CPU, among those compiled in (see
/// [`builtin_providers`]). This is what an appliance should use unless configured otherwise.
pub fn fastest_provider(algorithm: AeadAlgorithm) -> ProviderRef {
    builtin_providers().into_iter().find(|p| p.supports(algorithm)).unwrap_or_else(default_provider)
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
    /// The provider does not implement the algorithm (on this machine).
    #[error("the AEAD provider does not support {0:?} here")]
    Unsupported(AeadAlgorithm),
    /// The ICV did not verify.
    #[error("ICV verification failed")]
    AuthFailed,
    /// The provider refused the input (too long for the algorithm).
    #[error("AEAD input rejected by the provider")]
    Rejected,
    /// The job was not processed (a batch implementation left it untouched).
    #[error("AEAD job not processed")]
    NotProcessed,
}

/// One packet of a batch for [`EspAead::seal_batch`] / [`EspAead::open_batch`]: the nonce, the
/// AAD (the ESP header, or SPI ‖ ESN high ‖ low), the bytes to encrypt or decrypt in place and
/// the ICV (written by seal, read by open). The provider stores the outcome in `result`.
#[derive(Debug)]
pub struct AeadJob<'a> {
    /// Salt ‖ explicit IV.
    pub nonce: [u8; NONCE_LEN],
    /// Additional authenticated data (8 or 12 bytes in ESP).
    pub aad: &'a [u8],
    /// Plaintext (seal) or ciphertext (open), transformed in place.
    pub data: &'a mut [u8],
    /// The ICV: output of seal, input of open.
    pub icv: &'a mut [u8; ICV_LEN],
    /// Outcome, set by the provider ([`AeadError::NotProcessed`] until then).
    pub result: Result<(), AeadError>,
}

impl<'a> AeadJob<'a> {
    /// A job not processed yet.
    pub fn new(
        nonce: [u8; NONCE_LEN],
        aad: &'a [u8],
        data: &'a mut [u8],
        icv: &'a mut [u8; ICV_LEN],
    ) -> Self {
        Self { nonce, aad, data, icv, result: Err(AeadError::NotProcessed) }
    }
}

/// An in-place, detached-tag AEAD as ESP uses it. Implementations hold an expanded key and are
/// immutable after construction, so one instance is shared read-only by every shard.
///
/// The single-packet [`seal`](EspAead::seal) / [`open`](EspAead::open) are required; the batch
/// forms default to a loop over them, and a provider that can interleave packets (pipelined
/// AES rounds, multi-lane Poly1305, an offload queue) overrides them. The ESP stages call the
/// batch forms, once per SA and batch (inbound ESN SAs excepted: their packets are opened one
/// by one, in order, since each one's high sequence bits are inferred from the replay window the
/// previous one left).
pub trait EspAead: Send + Sync + std::fmt::Debug {
    /// The algorithm.
    fn algorithm(&self) -> AeadAlgorithm;

    /// Name of the provider that made this cipher.
    fn provider_name(&self) -> &str;

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

    /// Seals every job, setting each job's `result`.
    fn seal_batch(&self, jobs: &mut [AeadJob<'_>]) {
        for j in jobs {
            j.result = self.seal(&j.nonce, j.aad, j.data, j.icv);
        }
    }

    /// Opens every job, setting each job's `result` (a failed job's data is garbage).
    fn open_batch(&self, jobs: &mut [AeadJob<'_>]) {
        for j in jobs {
            j.result = self.open(&j.nonce, j.aad, j.data, j.icv);
        }
    }
}

/// The pure-Rust provider (`aes-gcm`, `chacha20poly1305`); the default. AES-NI/PCLMULQDQ and
/// AVX2 are detected at run time by those crates.
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCrypto;

impl AeadProvider for RustCrypto {
    fn name(&self) -> &str {
        "rustcrypto"
    }
    fn new_aead(&self, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn EspAead>, AeadError> {
        Ok(Box::new(RustCryptoAead::new(algorithm, key)?))
    }
}

/// The ring provider (feature `accel`): BoringSSL-derived assembly, AES-GCM with AVX/VAES and
/// CLMUL, ChaCha20-Poly1305 with AVX2.
#[cfg(feature = "accel")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Ring;

#[cfg(feature = "accel")]
impl AeadProvider for Ring {
    fn name(&self) -> &str {
        "ring"
    }
    fn new_aead(&self, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn EspAead>, AeadError> {
        Ok(Box::new(RingAead::new(algorithm, key)?))
    }
}

/// A RustCrypto cipher (made by [`RustCrypto`]).
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
/// One packet through a provider whose real work is its batch path: `seal` as a batch of one.
pub(crate) fn seal_one(
    aead: &dyn EspAead,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    data: &mut [u8],
    icv: &mut [u8; ICV_LEN],
) -> Result<(), AeadError> {
    let mut job = [AeadJob::new(*nonce, aad, data, icv)];
    aead.seal_batch(&mut job);
    job[0].result
}

/// `open` as a batch of one (see [`seal_one`]).
pub(crate) fn open_one(
    aead: &dyn EspAead,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    data: &mut [u8],
    icv: &[u8; ICV_LEN],
) -> Result<(), AeadError> {
    let mut icv = *icv;
    let mut job = [AeadJob::new(*nonce, aad, data, &mut icv)];
    aead.open_batch(&mut job);
    job[0].result
}

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
    fn provider_name(&self) -> &str {
        "rustcrypto"
    }

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

/// A ring cipher (made by [`Ring`], feature `accel`).
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
    fn provider_name(&self) -> &str {
        "ring"
    }

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
