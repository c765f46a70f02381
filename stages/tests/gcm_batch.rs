//! The batch AES-GCM provider ([`BatchGcm`]) against the GCM specification's test cases and,
//! differentially, against RustCrypto's `aes-gcm` (through the [`RustCrypto`] provider) on
//! random keys, nonces, AAD and lengths, batched and single, seal and open, including forged
//! tags (rejected, data left as it was).
//!
//! Every code path ([`GcmPath`]: AVX-512, VAES-256, AES-NI) the CPU has is run, forced with
//! [`BatchGcmForced`]; the lengths cover every block, register (64 B) and chunk (256 B)
//! boundary. Skipped (with a message) on CPUs without AES-NI/PCLMULQDQ.

mod aead_batch;
mod esp_common;

use aead_batch::{check_batch, check_one_length};
use esp_common::{hex, to_hex};
use proptest::prelude::*;
use wirespeed_stages::esp::aead::{ICV_LEN, NONCE_LEN};
use wirespeed_stages::esp::*;

fn cipher(p: &dyn AeadProvider, alg: AeadAlgorithm, key: &[u8]) -> Box<dyn EspAead> {
    p.new_aead(alg, key).expect("cipher")
}

fn available() -> bool {
    if !BatchGcm.supports(AeadAlgorithm::Aes128Gcm) {
        eprintln!("skipped: this CPU has no AES-NI/PCLMULQDQ");
        return false;
    }
    true
}

/// Test cases 2, 3, 4, 15 and 16 of McGrew & Viega, "The Galois/Counter Mode of Operation
/// (GCM)", Appendix B (the vectors draft-mcgrew-gcm-test-01 builds on). (key, iv, aad, pt, ct, tag)
const SPEC: [(&str, &str, &str, &str, &str, &str); 5] = [
    (
        "00000000000000000000000000000000",
        "000000000000000000000000",
        "",
        "00000000000000000000000000000000",
        "0388dace60b6a392f328c2b971b2fe78",
        "ab6e47d42cec13bdf53a67b21257bddf",
    ),
    (
        "feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
        "4d5c2af327cd64a62cf35abd2ba6fab4",
    ),
    (
        "feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
        "5bc94fbc3221a5db94fae95ae7121a47",
    ),
    (
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
        "b094dac5d93471bdec1a502270e3cc6c",
    ),
    (
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        "76fc6ece0f4e1768cddf8853bb2d551b",
    ),
];

#[test]
fn gcm_spec_test_cases() {
    if !available() {
        return;
    }
    for (i, (k, iv, aad, pt, ct, tag)) in SPEC.iter().enumerate() {
        let key = hex(k);
        let alg = if key.len() == 16 { AeadAlgorithm::Aes128Gcm } else { AeadAlgorithm::Aes256Gcm };
        let nonce: [u8; NONCE_LEN] = hex(iv).try_into().unwrap();
        let aad = hex(aad);
        let forced: Vec<BatchGcmForced> = paths().into_iter().map(BatchGcmForced).collect();
        let mut providers: Vec<&dyn AeadProvider> = vec![&BatchGcm, &BatchGcmAesNi, &RustCrypto];
        providers.extend(forced.iter().map(|p| p as &dyn AeadProvider));
        for p in providers {
            let c = cipher(p, alg, &key);
            let mut data = hex(pt);
            let mut icv = [0u8; ICV_LEN];
            c.seal(&nonce, &aad, &mut data, &mut icv).unwrap();
            assert_eq!(to_hex(&data), *ct, "case {i} ({})", p.name());
            assert_eq!(to_hex(&icv), *tag, "case {i} ({})", p.name());
            c.open(&nonce, &aad, &mut data, &icv).unwrap();
            assert_eq!(to_hex(&data), *pt, "case {i} ({})", p.name());
        }
    }
}

/// The paths this CPU can run, widest first.
fn paths() -> Vec<GcmPath> {
    GcmPath::ALL.into_iter().filter(|p| p.available()).collect()
}

/// Lengths on both sides of every block (16), register (64), chunk (256) and batch-of-chunks
/// boundary up to 4099 bytes, and of the ESP packet sizes the benches use.
fn boundary_lengths() -> Vec<usize> {
    aead_batch::boundary_lengths(|b| b % 64 == 0)
}

/// Longer AAD (past 16 blocks, 240..300 bytes) takes its own GHASH groups.
fn packets() -> impl Strategy<Value = Vec<aead_batch::Packet>> {
    aead_batch::packets(100, 600, boundary_lengths(), 240..300)
}

/// Seal and open of one packet of each boundary length, on every path and both key sizes,
/// equal to RustCrypto; a forged tag is refused and leaves the ciphertext as it was.
#[test]
fn every_path_every_boundary_length() {
    if !available() {
        return;
    }
    for path in paths() {
        for alg in [AeadAlgorithm::Aes128Gcm, AeadAlgorithm::Aes256Gcm] {
            let key: Vec<u8> = (0..alg.key_len() as u8).map(|i| i.wrapping_mul(29) ^ 0xa5).collect();
            let ours = cipher(&BatchGcmForced(path), alg, &key);
            assert!(format!("{ours:?}").contains(path.name()), "{ours:?} runs {path:?}");
            let reference = cipher(&RustCrypto, alg, &key);
            for len in boundary_lengths() {
                check_one_length(&*ours, &*reference, len, &format!("{path:?} {alg:?}"));
            }
        }
    }
}

/// Every path is offered exactly where the CPU has it, and [`BatchGcm`] runs the widest.
#[test]
fn forced_paths_follow_the_cpu() {
    let alg = AeadAlgorithm::Aes128Gcm;
    for path in GcmPath::ALL {
        assert_eq!(GcmPath::from_name(path.name()), Some(path));
        let p = BatchGcmForced(path);
        assert_eq!(p.supports(alg), path.available(), "{path:?}");
        match p.new_aead(alg, &[0; 16]) {
            Ok(c) => assert!(format!("{c:?}").contains(path.name())),
            Err(e) => assert_eq!(e, AeadError::Unsupported(alg)),
        }
    }
    assert_eq!(GcmPath::from_name("sse"), None);
    if std::env::var_os(PATH_ENV).is_none() {
        assert_eq!(GcmPath::selected(), GcmPath::best());
        if let Some(best) = GcmPath::best() {
            let c = BatchGcm.new_aead(alg, &[0; 16]).unwrap();
            assert!(format!("{c:?}").contains(best.name()), "{c:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Batch seal equals RustCrypto packet by packet; batch open restores; a flipped tag bit
    /// fails that packet only and leaves its ciphertext as it was.
    #[test]
    fn batch_matches_rustcrypto(key in prop::collection::vec(any::<u8>(), 32), aes256 in any::<bool>(), path in any::<prop::sample::Index>(), pkts in packets(), forge in any::<prop::sample::Index>()) {
        if !available() {
            return Ok(());
        }
        let alg = if aes256 { AeadAlgorithm::Aes256Gcm } else { AeadAlgorithm::Aes128Gcm };
        let key = &key[..alg.key_len()];
        // Every code path the CPU has: AVX-512, VAES/VPCLMULQDQ, 128-bit AES-NI.
        let paths = paths();
        let ours = cipher(&BatchGcmForced(paths[path.index(paths.len())]), alg, key);
        let reference = cipher(&RustCrypto, alg, key);
        check_batch(&*ours, &*reference, &pkts, forge.index(pkts.len()))?;
    }
}

#[test]
fn chacha_is_not_offered() {
    let cc = AeadAlgorithm::ChaCha20Poly1305;
    assert!(!BatchGcm.supports(cc));
    assert_eq!(BatchGcm.new_aead(cc, &[0; 32]).unwrap_err(), AeadError::Unsupported(cc));
    assert!(fastest_provider(cc).supports(cc));
    if available() {
        assert_eq!(fastest_provider(AeadAlgorithm::Aes128Gcm).name(), "batch-gcm");
        assert!(matches!(
            BatchGcm.new_aead(AeadAlgorithm::Aes128Gcm, &[0; 15]),
            Err(AeadError::BadKeyLength { .. })
        ));
    }
}
