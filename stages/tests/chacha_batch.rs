//! The batch ChaCha20-Poly1305 provider ([`BatchChaCha`]) against RustCrypto's
//! `chacha20poly1305` (through the [`RustCrypto`] provider) on random keys, nonces, AAD and
//! lengths, batched and single, seal and open, including forged tags (rejected, data left as
//! it was). RFC 8439's vectors are the module's unit tests; RFC 7634's ESP vector runs through
//! every built-in provider in `tests/esp_vectors.rs`.
//!
//! Every code path ([`ChaChaPath`]: AVX-512, AVX2) the CPU has is run, forced with
//! [`BatchChaChaForced`]; the lengths cover every ChaCha20 block (64 B) and kernel-call
//! (8 and 16 blocks) boundary up to 4099 bytes. Skipped (with a message) on CPUs without AVX2.

use proptest::prelude::*;
use wirespeed_stages::esp::aead::{AeadJob, ICV_LEN, NONCE_LEN};
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
/// in steps of 64 up to 4099, with the ESP sizes the benches use.
fn boundary_lengths() -> Vec<usize> {
    let mut v: Vec<usize> = (0..=80).collect();
    for b in (96..=4096).step_by(16) {
        if (b % 64 == 0 && b <= 1100) || b % 512 == 0 || b < 300 || [1424, 1440, 1456].contains(&b) {
            v.extend([b - 1, b, b + 1]);
        }
    }
    v.extend([4095, 4097, 4098, 4099]);
    v.sort_unstable();
    v.dedup();
    v
}

/// A batch of packets: (nonce, aad, plaintext).
type Packet = ([u8; NONCE_LEN], Vec<u8>, Vec<u8>);

fn packets() -> impl Strategy<Value = Vec<Packet>> {
    let len = prop_oneof![
        3 => 0usize..130,
        2 => 130usize..1100,
        3 => prop::sample::select(boundary_lengths()),
        1 => 1100usize..=4099,
    ];
    // ESP's AAD is 8 or 12 bytes; other lengths exercise Poly1305's padding.
    let aad_len = prop_oneof![4 => 0usize..40, 1 => 40usize..300];
    let pkt = (any::<[u8; NONCE_LEN]>(), aad_len, any::<u8>(), len, any::<u8>()).prop_map(
        |(n, aad_len, aad_seed, len, seed)| {
            let aad = (0..aad_len).map(|i| (i as u8).wrapping_mul(aad_seed) ^ 0x5a).collect();
            (n, aad, (0..len).map(|i| (i as u8).wrapping_mul(seed) ^ seed).collect())
        },
    );
    prop::collection::vec(pkt, 1..=40)
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
            let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| (i + len) as u8);
            let aad = [len as u8; 8];
            let pt: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let (mut want, mut want_tag) = (pt.clone(), [0u8; ICV_LEN]);
            reference.seal(&nonce, &aad, &mut want, &mut want_tag).unwrap();
            let (mut d, mut tag) = (pt.clone(), [0u8; ICV_LEN]);
            ours.seal(&nonce, &aad, &mut d, &mut tag).unwrap();
            assert_eq!(d, want, "{path:?} ciphertext of {len} bytes");
            assert_eq!(tag, want_tag, "{path:?} tag of {len} bytes");
            ours.open(&nonce, &aad, &mut d, &tag).unwrap();
            assert_eq!(d, pt, "{path:?} open of {len} bytes");
            let mut d = want.clone();
            tag[len % ICV_LEN] ^= 1;
            assert_eq!(ours.open(&nonce, &aad, &mut d, &tag), Err(AeadError::AuthFailed));
            assert_eq!(d, want, "{path:?}: a forged packet of {len} bytes stays as it was");
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
        let mut want: Vec<(Vec<u8>, [u8; ICV_LEN])> = Vec::new();
        for (n, aad, pt) in &pkts {
            let mut d = pt.clone();
            let mut t = [0u8; ICV_LEN];
            reference.seal(n, aad, &mut d, &mut t).unwrap();
            want.push((d, t));
        }
        let mut data: Vec<Vec<u8>> = pkts.iter().map(|p| p.2.clone()).collect();
        let mut tags = vec![[0u8; ICV_LEN]; pkts.len()];
        {
            let mut jobs: Vec<AeadJob<'_>> = pkts
                .iter()
                .zip(data.iter_mut())
                .zip(tags.iter_mut())
                .map(|(((n, aad, _), d), t)| AeadJob::new(*n, aad, d, t))
                .collect();
            ours.seal_batch(&mut jobs);
            prop_assert!(jobs.iter().all(|j| j.result.is_ok()));
        }
        for (i, (d, t)) in data.iter().zip(&tags).enumerate() {
            prop_assert_eq!(d, &want[i].0, "ciphertext of packet {}", i);
            prop_assert_eq!(t, &want[i].1, "tag of packet {}", i);
        }
        // Single-packet seal agrees too.
        let (n, aad, pt) = &pkts[0];
        let mut d = pt.clone();
        let mut t = [0u8; ICV_LEN];
        ours.seal(n, aad, &mut d, &mut t).unwrap();
        prop_assert_eq!((&d, &t), (&want[0].0, &want[0].1));
        // Open the batch with one forged tag.
        let bad = forge.index(pkts.len());
        tags[bad][bad % ICV_LEN] ^= 0x80;
        let results: Vec<_> = {
            let mut jobs: Vec<AeadJob<'_>> = pkts
                .iter()
                .zip(data.iter_mut())
                .zip(tags.iter_mut())
                .map(|(((n, aad, _), d), t)| AeadJob::new(*n, aad, d, t))
                .collect();
            ours.open_batch(&mut jobs);
            jobs.iter().map(|j| j.result).collect()
        };
        for (i, r) in results.iter().enumerate() {
            if i == bad {
                prop_assert_eq!(*r, Err(AeadError::AuthFailed));
                prop_assert_eq!(&data[i], &want[i].0, "a forged packet is not decrypted");
            } else {
                prop_assert_eq!(*r, Ok(()));
                prop_assert_eq!(&data[i], &pkts[i].2);
            }
        }
        // The reference refuses the forgery as well.
        let mut d = want[bad].0.clone();
        prop_assert!(reference.open(&pkts[bad].0, &pkts[bad].1, &mut d, &tags[bad]).is_err());
    }
}
