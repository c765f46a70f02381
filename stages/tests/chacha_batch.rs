//! The batch ChaCha20-Poly1305 provider ([`BatchChaCha`]) against RustCrypto's
//! `chacha20poly1305` (through the [`RustCrypto`] provider) on random keys, nonces, AAD and
//! lengths, batched and single, seal and open, including forged tags (rejected, data left as
//! it was). RFC 8439's vectors are the module's unit tests; RFC 7634's ESP vector runs through
//! every built-in provider in `tests/esp_vectors.rs`.
//!
//! Every code path ([`ChaChaPath`]: AVX-512, AVX2) the CPU has is run, forced with
//! [`BatchChaChaForced`]; the lengths cover every ChaCha20 block (64 B) and kernel-call
//! (8 and 16 blocks) boundary up to 4099 bytes. Skipped (with a message) on CPUs without AVX2.

mod aead_batch;

use aead_batch::{check_batch, check_one_length};
use proptest::prelude::*;
use wirespeed_stages::esp::*;

const CC: AeadAlgorithm = AeadAlgorithm::ChaCha20Poly1305;

fn cipher(p: &dyn AeadProvider, key: &[u8]) -> Box<dyn EspAead> {
    p.new_aead(CC, key).expect("cipher")
}

fn available() -> bool {
    if !BatchChaCha.supports(CC) {
        eprintln!("skipped: this CPU has no AVX2");
        return false;
    }
    true
}

/// The paths this CPU can run, widest first.
fn paths() -> Vec<ChaChaPath> {
    ChaChaPath::ALL.into_iter().filter(|p| p.available()).collect()
}

/// Lengths on both sides of every 64-byte block boundary up to 1100 bytes (past sixteen
/// blocks, one AVX-512 call), every 16-byte Poly1305 block up to 300, and every block boundary
/// in steps of 512 up to 4099, with the ESP sizes the benches use.
fn boundary_lengths() -> Vec<usize> {
    aead_batch::boundary_lengths(|b| (b % 64 == 0 && b <= 1100) || b % 512 == 0)
}

/// Long AAD (40..300 bytes) exercises Poly1305's padding.
fn packets() -> impl Strategy<Value = Vec<aead_batch::Packet>> {
    aead_batch::packets(130, 1100, boundary_lengths(), 40..300)
}

/// Seal and open of one packet of each boundary length, on every path, equal to RustCrypto; a
/// forged tag is refused and leaves the ciphertext as it was.
#[test]
fn every_path_every_boundary_length() {
    if !available() {
        return;
    }
    let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(29) ^ 0xa5).collect();
    let reference = cipher(&RustCrypto, &key);
    for path in paths() {
        let ours = cipher(&BatchChaChaForced(path), &key);
        assert!(format!("{ours:?}").contains(path.name()), "{ours:?} runs {path:?}");
        for len in boundary_lengths() {
            check_one_length(&*ours, &*reference, len, &format!("{path:?}"));
        }
    }
}

/// Every path is offered exactly where the CPU has it, and [`BatchChaCha`] runs the widest.
#[test]
fn forced_paths_follow_the_cpu() {
    for path in ChaChaPath::ALL {
        assert_eq!(ChaChaPath::from_name(path.name()), Some(path));
        let p = BatchChaChaForced(path);
        assert_eq!(p.supports(CC), path.available(), "{path:?}");
        match p.new_aead(CC, &[0; 32]) {
            Ok(c) => assert!(format!("{c:?}").contains(path.name())),
            Err(e) => assert_eq!(e, AeadError::Unsupported(CC)),
        }
    }
    assert_eq!(ChaChaPath::from_name("sse"), None);
    if std::env::var_os(CHACHA_PATH_ENV).is_none() {
        assert_eq!(ChaChaPath::selected(), ChaChaPath::best());
        if let Some(best) = ChaChaPath::best() {
            let c = BatchChaCha.new_aead(CC, &[0; 32]).unwrap();
            assert!(format!("{c:?}").contains(best.name()), "{c:?}");
        }
    }
}

/// AES-GCM is not offered, a wrong key length is refused, and the fastest provider for
/// ChaCha20-Poly1305 is this one on its AVX-512 path, ring (if built) before its AVX2 path.
#[test]
fn scope_and_selection() {
    for alg in [AeadAlgorithm::Aes128Gcm, AeadAlgorithm::Aes256Gcm] {
        assert!(!BatchChaCha.supports(alg));
        assert_eq!(BatchChaCha.new_aead(alg, &[0; 32]).unwrap_err(), AeadError::Unsupported(alg));
    }
    if available() {
        let want = if ChaChaPath::selected() == Some(ChaChaPath::Avx512) || cfg!(not(feature = "accel")) {
            "batch-chacha"
        } else {
            "ring"
        };
        assert_eq!(fastest_provider(CC).name(), want, "path {:?}", ChaChaPath::selected());
        assert_eq!(
            BatchChaCha.new_aead(CC, &[0; 31]).unwrap_err(),
            AeadError::BadKeyLength { algorithm: CC, expected: 36, got: 35 }
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Batch seal equals RustCrypto packet by packet; batch open restores; a flipped tag bit
    /// fails that packet only and leaves its ciphertext as it was.
    #[test]
    fn batch_matches_rustcrypto(key in any::<[u8; 32]>(), path in any::<prop::sample::Index>(), pkts in packets(), forge in any::<prop::sample::Index>()) {
        if !available() {
            return Ok(());
        }
        let paths = paths();
        let ours = cipher(&BatchChaChaForced(paths[path.index(paths.len())]), &key);
        let reference = cipher(&RustCrypto, &key);
        check_batch(&*ours, &*reference, &pkts, forge.index(pkts.len()))?;
    }
}
