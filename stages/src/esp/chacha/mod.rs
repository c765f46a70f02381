//! A batch ChaCha20-Poly1305 ([`BatchChaCha`], RFC 8439 / RFC 7634) on AVX-512 or AVX2: the
//! provider ESP uses for ChaCha20-Poly1305 when the CPU has them
//! ([`crate::esp::aead::fastest_provider`]).
//!
//! Why our own: ring's ChaCha20-Poly1305 (BoringSSL's AVX2 assembly) handles one packet at a
//! time and was 82 % of the ESP time, while OpenSSL runs AVX-512 on the same CPU. Here a batch
//! is one stream of ChaCha20 blocks:
//! - **ChaCha20 across packets, state-transposed**: sixteen (AVX-512, [`ChaChaPath::Avx512`])
//!   or eight (AVX2, [`ChaChaPath::Avx2`]) blocks per kernel call, one block per 32-bit lane,
//!   each lane with its own nonce and counter, so the lanes are filled with the blocks of
//!   several packets (the Poly1305 keys of sixteen packets are one call; a 1420-byte packet's
//!   23 data blocks share calls with its neighbours') and no lane idles on a short tail.
//! - **Poly1305 across packets too**: on the AVX-512 path eight packets at a time, one per
//!   64-bit lane, in radix 2^44 with IFMA's 52-bit multiply-adds (no powers of `r` needed: each
//!   lane is its own chain; full blocks are loaded 64 bytes per packet and transposed in
//!   registers). On the AVX2 path scalar in radix 2^64 (`poly1305.rs`), two packets per loop
//!   so that the CPU overlaps the two multiply chains. Measured (perf, Zen 4 EPYC, ESP
//!   encrypt of 1420-byte packets): the IFMA lanes took Poly1305 from about 45 % of the
//!   samples (scalar, two chains) to about 18 %.
//! - Groups of sixteen packets keep their data in L1 between the passes.
//!
//! Constant time by construction: ChaCha20 is adds, xors and rotates; Poly1305 is
//! multiplications and carries with a masked final subtraction; branches and indices depend on
//! lengths only. The tag is compared as one 128-bit xor; only the verdict (public: the packet
//! is dropped or not) is branched on, and a packet whose tag fails is left undecrypted.
//!
//! Correctness: RFC 8439's vectors (block function §2.3.2, encryption §2.4.2, Poly1305 §2.5.2,
//! key generation §2.6.2, AEAD §2.8.2) in this module's tests, RFC 7634 Appendix A through the
//! ESP layer (`tests/esp_vectors.rs`), and proptests against RustCrypto's `chacha20poly1305`
//! and `poly1305` on random keys, nonces, AAD and lengths (around every block and lane-group
//! boundary), batched and single, on every path ([`BatchChaChaForced`]), in
//! `tests/chacha_batch.rs`.
//!
//! `unsafe` is confined to `x86.rs` (register loads and stores, calls into `#[target_feature]`
//! functions after run-time detection); this file and `poly1305.rs` are safe code.

use zeroize::Zeroize;

use super::aead::{AeadAlgorithm, AeadError, AeadJob, AeadProvider, EspAead, ICV_LEN, NONCE_LEN, SALT_LEN};

mod poly1305;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Environment variable that selects the code path of [`BatchChaCha`]: `avx512` or `avx2`
/// (read once, at the first key expansion). A path the CPU lacks, or an unknown value, falls
/// back to the widest path the CPU has. For tests and measurements; tests that must run a
/// given path use [`BatchChaChaForced`], which refuses a path the CPU lacks.
pub const PATH_ENV: &str = "WIRESPEED_CHACHA_PATH";

/// Largest plaintext: the 32-bit block counter starts at 1 (RFC 8439 §2.8: 2^38 - 64 bytes).
const MAX_LEN: usize = ((1u64 << 32) - 1) as usize * 64;

/// The code paths of the batch ChaCha20-Poly1305, widest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChaChaPath {
    /// AVX-512F and AVX-512 IFMA: ChaCha20 sixteen blocks per kernel call in 512-bit
    /// registers (`vprold` rotates); Poly1305 eight packets at a time, one per 64-bit lane, in
    /// radix 2^44 with 52-bit multiply-adds (`vpmadd52luq`/`vpmadd52huq`).
    Avx512,
    /// AVX2: ChaCha20 eight blocks per kernel call in 256-bit registers; Poly1305 scalar, two
    /// packets at a time.
    Avx2,
}

impl ChaChaPath {
    /// Every path, widest first.
    pub const ALL: [ChaChaPath; 2] = [ChaChaPath::Avx512, ChaChaPath::Avx2];

    /// Short stable name (`avx512`, `avx2`), as [`PATH_ENV`] takes it.
    pub const fn name(self) -> &'static str {
        match self {
            ChaChaPath::Avx512 => "avx512",
            ChaChaPath::Avx2 => "avx2",
        }
    }

    /// The path named `name` ([`ChaChaPath::name`]).
    pub fn from_name(name: &str) -> Option<ChaChaPath> {
        ChaChaPath::ALL.into_iter().find(|p| p.name() == name)
    }

    /// True when this CPU can run the path.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                ChaChaPath::Avx2 => has!("avx2"),
                ChaChaPath::Avx512 => has!("avx2") && has!("avx512f") && has!("avx512ifma"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The widest path this CPU has, if any.
    pub fn best() -> Option<ChaChaPath> {
        ChaChaPath::ALL.into_iter().find(|p| p.available())
    }

    /// The path [`BatchChaCha`] uses: [`PATH_ENV`] if it names an available path, else
    /// [`ChaChaPath::best`]. Decided once per process.
    pub fn selected() -> Option<ChaChaPath> {
        static SELECTED: std::sync::OnceLock<Option<ChaChaPath>> = std::sync::OnceLock::new();
        *SELECTED.get_or_init(|| {
            std::env::var(PATH_ENV)
                .ok()
                .and_then(|v| ChaChaPath::from_name(v.trim()))
                .filter(|p| p.available())
                .or_else(ChaChaPath::best)
        })
    }
}

/// The batch ChaCha20-Poly1305 provider (RFC 7634; needs AVX2, detected at run time —
/// [`BatchChaCha::detected`]). It runs the widest [`ChaChaPath`] the CPU has
/// ([`ChaChaPath::selected`]; [`PATH_ENV`] overrides it).
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchChaCha;

/// [`BatchChaCha`] on exactly the given path, so that every path is tested and measured on
/// one machine. Its ciphers are [`AeadError::Unsupported`] when the CPU lacks the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchChaChaForced(pub ChaChaPath);

impl BatchChaCha {
    /// True when this CPU can run it.
    pub fn detected() -> bool {
        ChaChaPath::Avx2.available()
    }
}

fn supports(algorithm: AeadAlgorithm, path: Option<ChaChaPath>) -> bool {
    algorithm == AeadAlgorithm::ChaCha20Poly1305 && path.is_some_and(ChaChaPath::available)
}

fn make(
    algorithm: AeadAlgorithm,
    key: &[u8],
    path: Option<ChaChaPath>,
) -> Result<Box<dyn EspAead>, AeadError> {
    if !supports(algorithm, path) {
        return Err(AeadError::Unsupported(algorithm));
    }
    let key: &[u8; 32] = key.try_into().map_err(|_| AeadError::BadKeyLength {
        algorithm,
        expected: algorithm.keymat_len(),
        got: key.len() + SALT_LEN,
    })?;
    #[cfg(target_arch = "x86_64")]
    if let Some(kernel) = path.and_then(x86::Kernel::new) {
        return Ok(Box::new(ChaChaKey { key: x86::key_words(key), kernel }));
    }
    let _ = key;
    Err(AeadError::Unsupported(algorithm))
}

impl AeadProvider for BatchChaCha {
    fn name(&self) -> &str {
        "batch-chacha"
    }

    fn supports(&self, algorithm: AeadAlgorithm) -> bool {
        supports(algorithm, ChaChaPath::selected())
    }

    fn new_aead(&self, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn EspAead>, AeadError> {
        make(algorithm, key, ChaChaPath::selected())
    }
}

impl AeadProvider for BatchChaChaForced {
    fn name(&self) -> &str {
        match self.0 {
            ChaChaPath::Avx512 => "batch-chacha-avx512",
            ChaChaPath::Avx2 => "batch-chacha-avx2",
        }
    }

    fn supports(&self, algorithm: AeadAlgorithm) -> bool {
        supports(algorithm, Some(self.0))
    }

    fn new_aead(&self, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn EspAead>, AeadError> {
        make(algorithm, key, Some(self.0))
    }
}

/// An expanded key of the batch ChaCha20-Poly1305 and the kernel it runs.
#[cfg(target_arch = "x86_64")]
struct ChaChaKey {
    key: [u32; 8],
    kernel: x86::Kernel,
}

#[cfg(target_arch = "x86_64")]
impl Drop for ChaChaKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

#[cfg(target_arch = "x86_64")]
impl std::fmt::Debug for ChaChaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchChaCha({})", self.kernel.path().name())
    }
}

#[cfg(target_arch = "x86_64")]
impl EspAead for ChaChaKey {
    fn algorithm(&self) -> AeadAlgorithm {
        AeadAlgorithm::ChaCha20Poly1305
    }

    fn provider_name(&self) -> &str {
        "batch-chacha"
    }

    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &mut [u8; ICV_LEN],
    ) -> Result<(), AeadError> {
        crate::esp::aead::seal_one(self, nonce, aad, data, icv)
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &[u8; ICV_LEN],
    ) -> Result<(), AeadError> {
        crate::esp::aead::open_one(self, nonce, aad, data, icv)
    }

    fn seal_batch(&self, jobs: &mut [AeadJob<'_>]) {
        x86::seal_all(self.kernel, &self.key, jobs)
    }

    fn open_batch(&self, jobs: &mut [AeadJob<'_>]) {
        x86::open_all(self.kernel, &self.key, jobs)
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::poly1305::{Poly1305, aead_tag};
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn kernels() -> Vec<x86::Kernel> {
        let k: Vec<_> = ChaChaPath::ALL.into_iter().filter_map(x86::Kernel::new).collect();
        if k.is_empty() {
            eprintln!("skipped: this CPU has no AVX2");
        }
        k
    }

    const LADIES: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";

    /// RFC 8439 §2.3.2: the block function, in every lane of a full kernel call.
    #[test]
    fn rfc8439_2_3_2_block() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let nonce: [u8; 12] = hex("000000090000004a00000000").try_into().unwrap();
        let want = hex("10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e
             d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e");
        for k in kernels() {
            for n in [1, 8, 9, 16] {
                let ks = x86::keystream(k, &key, &nonce, 1, n);
                assert_eq!(&ks[0][..], &want[..], "{k:?}, {n} lanes");
            }
        }
    }

    /// RFC 8439 §2.4.2: encryption with counter 1 (two blocks and a partial one), the
    /// keystream of consecutive counters across lanes.
    #[test]
    fn rfc8439_2_4_2_encryption() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let nonce: [u8; 12] = hex("000000000000004a00000000").try_into().unwrap();
        let want = hex("6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b
             f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8
             07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736
             5af90bbf74a35be6b40b8eedf2785e42874d");
        for k in kernels() {
            for lanes in [2, 12] {
                let ks = x86::keystream(k, &key, &nonce, 1, lanes);
                let ct: Vec<u8> = LADIES.iter().zip(ks.iter().flatten()).map(|(p, k)| p ^ k).collect();
                assert_eq!(ct, want, "{k:?}");
            }
        }
    }

    /// RFC 8439 §2.5.2: Poly1305 of "Cryptographic Forum Research Group".
    #[test]
    fn rfc8439_2_5_2_poly1305() {
        let key: [u8; 32] =
            hex("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b").try_into().unwrap();
        let mut p = Poly1305::new(&key);
        p.message(b"Cryptographic Forum Research Group");
        assert_eq!(p.finish().to_vec(), hex("a8061dc1305136c6c22b8baf0c0127a9"));
    }

    /// RFC 8439 §2.6.2: the Poly1305 key is block 0's first 32 bytes.
    #[test]
    fn rfc8439_2_6_2_key_generation() {
        let key: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
        let nonce: [u8; 12] = hex("000000000001020304050607").try_into().unwrap();
        let want = hex("8ad5a08b905f81cc815040274ab29471a833b637e3fd0da508dbb8e2fdd1a646");
        for k in kernels() {
            assert_eq!(&x86::keystream(k, &key, &nonce, 0, 1)[0][..32], &want[..], "{k:?}");
        }
    }

    /// RFC 8439 §2.8.2: the AEAD, through the provider on every path (seal, open, forgery).
    #[test]
    fn rfc8439_2_8_2_aead() {
        let key: Vec<u8> = (0x80..=0x9f).collect();
        let nonce: [u8; 12] = hex("070000004041424344454647").try_into().unwrap();
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let want = hex("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
             3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
             92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
             3ff4def08e4b7a9de576d26586cec64b6116");
        let want_tag = hex("1ae10b594f09e26a7e902ecbd0600691");
        for path in ChaChaPath::ALL.into_iter().filter(|p| p.available()) {
            let c = BatchChaChaForced(path).new_aead(AeadAlgorithm::ChaCha20Poly1305, &key).unwrap();
            let mut d = LADIES.to_vec();
            let mut tag = [0u8; 16];
            c.seal(&nonce, &aad, &mut d, &mut tag).unwrap();
            assert_eq!(d, want, "{path:?}");
            assert_eq!(tag.to_vec(), want_tag, "{path:?}");
            let key32: [u8; 32] = x86::keystream(
                x86::Kernel::new(path).unwrap(),
                &key.clone().try_into().unwrap(),
                &nonce,
                0,
                1,
            )[0][..32]
                .try_into()
                .unwrap();
            assert_eq!(aead_tag(&key32, &aad, &want).to_vec(), want_tag);
            c.open(&nonce, &aad, &mut d, &tag).unwrap();
            assert_eq!(d, LADIES);
            c.seal(&nonce, &aad, &mut d, &mut tag).unwrap();
            tag[15] ^= 1;
            assert_eq!(c.open(&nonce, &aad, &mut d, &tag), Err(AeadError::AuthFailed));
            assert_eq!(d, want, "a forged packet is left as it came");
        }
    }

    /// Poly1305's reduction at its edges: h and the blocks at or near p = 2^130 - 5 (all-ones
    /// blocks, r and s at their largest), against the `poly1305` crate.
    #[test]
    fn poly1305_reduction_edges() {
        use ::poly1305::universal_hash::KeyInit;
        for key in [[0xffu8; 32], [0u8; 32], {
            let mut k = [0xffu8; 32];
            k[16..].fill(0);
            k
        }] {
            for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 64, 255, 256, 1024] {
                for fill in [0xffu8, 0x00, 0xfb, 0x05] {
                    let msg = vec![fill; len];
                    let mut p = Poly1305::new(&key);
                    p.message(&msg);
                    let want = ::poly1305::Poly1305::new(&key.into()).compute_unpadded(&msg);
                    assert_eq!(p.finish().to_vec(), want.to_vec(), "key {key:02x?} len {len} fill {fill:#x}");
                }
            }
        }
    }

    proptest::proptest! {
        /// Poly1305 equals the `poly1305` crate on random keys and messages (all lengths to
        /// 300 bytes, partial last blocks included), and the AEAD padding and the two-chain
        /// loop equal the one-chain code.
        #[test]
        fn poly1305_matches_rustcrypto(key in proptest::prelude::any::<[u8; 32]>(), msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), other in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            use ::poly1305::universal_hash::KeyInit;
            let mut p = Poly1305::new(&key);
            p.message(&msg);
            let want = ::poly1305::Poly1305::new(&key.into()).compute_unpadded(&msg);
            proptest::prop_assert_eq!(p.finish().to_vec(), want.to_vec());
            let common = msg.len().min(other.len()) & !15;
            let (mut a, mut b) = (Poly1305::new(&key), Poly1305::new(&[7; 32]));
            Poly1305::padded2(&mut a, &msg[..common], &mut b, &other[..common]);
            a.padded(&msg[common..]);
            b.padded(&other[common..]);
            a.lengths(3, msg.len());
            b.lengths(3, other.len());
            let mut padded = msg.clone();
            padded.resize(msg.len().div_ceil(16) * 16, 0);
            padded.extend_from_slice(&3u64.to_le_bytes());
            padded.extend_from_slice(&(msg.len() as u64).to_le_bytes());
            let want = ::poly1305::Poly1305::new(&key.into()).compute_unpadded(&padded);
            proptest::prop_assert_eq!(a.finish().to_vec(), want.to_vec());
            let mut c = Poly1305::new(&[7; 32]);
            c.padded(&other);
            c.lengths(3, other.len());
            proptest::prop_assert_eq!(b.finish(), c.finish());
        }
    }
}
