//! A batch AES-GCM ([`BatchGcm`]) on AES-NI and PCLMULQDQ, VAES/VPCLMULQDQ or AVX-512: the
//! provider ESP uses for AES-128/256-GCM when the CPU has them
//! ([`crate::esp::aead::fastest_provider`]).
//!
//! Three code paths ([`GcmPath`]), the widest the CPU has chosen at run time:
//! - **[`GcmPath::Avx512`]** (`avx512.rs`; AVX-512F/BW/VL, VAES, VPCLMULQDQ): each packet in
//!   **one stitched pass**: four 512-bit registers hold sixteen counter blocks, their AES rounds
//!   and the GHASH multiplications of the resulting ciphertext (by `H^32..H^1`, precomputed per
//!   SA up to `H^52` so that the AAD, the last chunk and the lengths block share a reduction)
//!   run side by side — one GHASH reduction per 32 blocks, the data read and written once.
//!   Tails are masked loads and stores. Packets are independent chains the CPU overlaps.
//! - **[`GcmPath::Vaes256`]** and **[`GcmPath::AesNi`]** (`x86.rs`): a CTR pass and a GHASH
//!   pass per group of packets, as described below.
//!
//! Why batching (the two-pass paths): one small packet is a latency-bound chain (a 64-byte ESP
//! payload is six dependent AES block chains and a seven-block GHASH), so sealing packets one
//! at a time leaves the AES and carry-less multiply units mostly idle. Here a batch is
//! processed as one stream:
//! - **AES-CTR across packets**: the counter blocks of up to eight packets (the tag mask
//!   `E(K, J0)` of each and its data blocks) are queued eight at a time and encrypted with the
//!   rounds of all eight interleaved, so the AES unit's pipeline stays full whatever the packet
//!   sizes; a long packet fills the queue by itself.
//! - **GHASH aggregated eight blocks per reduction** with precomputed powers `H^1..H^8`
//!   (in the POLYVAL representation of RFC 8452 Appendix A, which avoids bit reflection), and
//!   packets of a group are independent chains the CPU overlaps.
//! - Groups of eight packets keep their data in L1 between the CTR and GHASH passes.
//!
//! Constant time by construction: AES-NI and PCLMULQDQ take data-independent time, there are no
//! tables, and branches and indices depend only on lengths (public). The tag is compared by
//! OR-ing the XOR of all bytes; only the final verdict (public: the packet is dropped or not)
//! is branched on, and a packet whose tag fails is left undecrypted.
//!
//! On the 512-bit path a packet is decrypted while its GHASH is computed (one pass); when the
//! tag then fails, the CTR pass is run again, which restores the ciphertext: a packet whose tag
//! fails is left as it came on every path.
//!
//! Correctness: the published vectors (draft-mcgrew-gcm-test-01 through the ESP layer in
//! `tests/esp_vectors.rs`, NIST GCM test cases here) and a proptest comparing seal and open
//! with RustCrypto's `aes-gcm` on random keys, nonces, AAD and lengths (around every block,
//! register and chunk boundary), batched and single, on every path ([`BatchGcmForced`]), in
//! `tests/gcm_batch.rs`.
//!
//! `unsafe` is confined to this module: the 16-byte conversions between `__m128i` and byte
//! arrays (every bit pattern is valid for both), the 512-bit path's loads and stores through
//! pointers (masked to the bytes of the slice), and the calls into `#[target_feature]`
//! functions, which are only entered after run-time CPU detection.
#![allow(unsafe_code)]

use super::aead::{AeadAlgorithm, AeadError, AeadJob, AeadProvider, EspAead, ICV_LEN, NONCE_LEN};

/// Environment variable that selects the code path of [`BatchGcm`]: `avx512`, `vaes256` or
/// `aesni` (read once, at the first key expansion). A path the CPU lacks, or an unknown
/// value, falls back to the widest path the CPU has. For tests and measurements; tests that
/// must run a given path use [`BatchGcmForced`], which refuses a path the CPU lacks.
pub const PATH_ENV: &str = "WIRESPEED_GCM_PATH";

/// The code paths of the batch AES-GCM, widest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GcmPath {
    /// 512-bit VAES and VPCLMULQDQ with AVX-512F/BW/VL: CTR and GHASH in one stitched pass,
    /// sixteen blocks per iteration.
    Avx512,
    /// 256-bit VAES and VPCLMULQDQ with AVX2: CTR across packets, then GHASH.
    Vaes256,
    /// 128-bit AES-NI and PCLMULQDQ (SSE4.1, SSSE3): CTR across packets, then GHASH.
    AesNi,
}

impl GcmPath {
    /// Every path, widest first.
    pub const ALL: [GcmPath; 3] = [GcmPath::Avx512, GcmPath::Vaes256, GcmPath::AesNi];

    /// Short stable name (`avx512`, `vaes256`, `aesni`), as [`PATH_ENV`] takes it.
    pub const fn name(self) -> &'static str {
        match self {
            GcmPath::Avx512 => "avx512",
            GcmPath::Vaes256 => "vaes256",
            GcmPath::AesNi => "aesni",
        }
    }

    /// The path named `name` ([`GcmPath::name`]).
    pub fn from_name(name: &str) -> Option<GcmPath> {
        GcmPath::ALL.into_iter().find(|p| p.name() == name)
    }

    /// True when this CPU can run the path.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let base = has!("aes") && has!("pclmulqdq") && has!("sse4.1") && has!("ssse3");
            let wide = base && has!("vaes") && has!("vpclmulqdq") && has!("avx2");
            match self {
                GcmPath::AesNi => base,
                GcmPath::Vaes256 => wide,
                GcmPath::Avx512 => wide && has!("avx512f") && has!("avx512bw") && has!("avx512vl"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The widest path this CPU has, if any.
    pub fn best() -> Option<GcmPath> {
        GcmPath::ALL.into_iter().find(|p| p.available())
    }

    /// The path [`BatchGcm`] uses: [`PATH_ENV`] if it names an available path, else
    /// [`GcmPath::best`]. Decided once per process.
    pub fn selected() -> Option<GcmPath> {
        static SELECTED: std::sync::OnceLock<Option<GcmPath>> = std::sync::OnceLock::new();
        *SELECTED.get_or_init(|| {
            std::env::var(PATH_ENV)
                .ok()
                .and_then(|v| GcmPath::from_name(v.trim()))
                .filter(|p| p.available())
                .or_else(GcmPath::best)
        })
    }
}

/// The batch AES-GCM provider (AES-128-GCM and AES-256-GCM; needs AES-NI, PCLMULQDQ and
/// SSE4.1, detected at run time — [`BatchGcm::detected`]). It runs the widest [`GcmPath`] the
/// CPU has ([`GcmPath::selected`]; [`PATH_ENV`] overrides it).
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchGcm;

/// [`BatchGcm`] restricted to 128-bit AES-NI and PCLMULQDQ even where VAES is available: the
/// path older CPUs take, selectable so that it is tested and measured everywhere. The same as
/// `BatchGcmForced(GcmPath::AesNi)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchGcmAesNi;

/// [`BatchGcm`] on exactly the given path, so that every path is tested and measured on one
/// machine. Its ciphers are [`AeadError::Unsupported`] when the CPU lacks the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchGcmForced(pub GcmPath);

impl BatchGcm {
    /// True when this CPU can run it.
    pub fn detected() -> bool {
        GcmPath::AesNi.available()
    }
}

fn supports(algorithm: AeadAlgorithm, path: Option<GcmPath>) -> bool {
    algorithm != AeadAlgorithm::ChaCha20Poly1305 && path.is_some_and(GcmPath::available)
}

fn make(algorithm: AeadAlgorithm, key: &[u8], path: Option<GcmPath>) -> Result<Box<dyn EspAead>, AeadError> {
    let path = match path {
        Some(p) if supports(algorithm, Some(p)) => p,
        _ => return Err(AeadError::Unsupported(algorithm)),
    };
    if key.len() != algorithm.key_len() {
        return Err(AeadError::BadKeyLength {
            algorithm,
            expected: algorithm.keymat_len(),
            got: key.len() + super::aead::SALT_LEN,
        });
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `supports` checked the CPU features `GcmKey::new` and `path` need.
        Ok(Box::new(unsafe { x86::GcmKey::new(algorithm, key, path) }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Err(AeadError::Unsupported(algorithm))
    }
}

impl AeadProvider for BatchGcm {
    fn name(&self) -> &str {
        "batch-gcm"
    }

    fn supports(&self, algorithm: AeadAlgorithm) -> bool {
        supports(algorithm, GcmPath::selected())
    }

    fn new_aead(&self, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn EspAead>, AeadError> {
        make(algorithm, key, GcmPath::selected())
    }
}

impl AeadProvider for BatchGcmAesNi {
    fn name(&self) -> &str {
        "batch-gcm-aesni"
    }

    fn supports(&self, algorithm: AeadAlgorithm) -> bool {
        supports(algorithm, Some(GcmPath::AesNi))
    }

    fn new_aead(&self, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn EspAead>, AeadError> {
        make(algorithm, key, Some(GcmPath::AesNi))
    }
}

impl AeadProvider for BatchGcmForced {
    fn name(&self) -> &str {
        match self.0 {
            GcmPath::Avx512 => "batch-gcm-avx512",
            GcmPath::Vaes256 => "batch-gcm-vaes256",
            GcmPath::AesNi => "batch-gcm-aesni",
        }
    }

    fn supports(&self, algorithm: AeadAlgorithm) -> bool {
        supports(algorithm, Some(self.0))
    }

    fn new_aead(&self, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn EspAead>, AeadError> {
        make(algorithm, key, Some(self.0))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod x86;
