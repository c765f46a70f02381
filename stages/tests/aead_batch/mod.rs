//! Differential checks shared by the batch AEAD provider tests (`gcm_batch.rs`,
//! `chacha_batch.rs`; included with `mod aead_batch;`): one of our ciphers against a reference
//! cipher (RustCrypto) on one packet of each boundary length and on random batches, seal and
//! open, with forged tags refused and their data left as it was.

use std::ops::Range;

use proptest::prelude::*;
use wirespeed_stages::esp::aead::{AeadJob, ICV_LEN, NONCE_LEN};
use wirespeed_stages::esp::{AeadError, EspAead};

/// A batch of packets: (nonce, aad, plaintext).
pub type Packet = ([u8; NONCE_LEN], Vec<u8>, Vec<u8>);

/// Every length up to 80, then both sides of every 16-byte step `b` up to 4096 for which
/// `boundary(b)` holds (the provider's block, register and kernel-call sizes), and 4095..=4099.
pub fn boundary_lengths(boundary: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut v: Vec<usize> = (0..=80).collect();
    for b in (96..=4096).step_by(16) {
        if boundary(b) || b < 300 || [1424, 1440, 1456].contains(&b) {
            v.extend([b - 1, b, b + 1]);
        }
    }
    v.extend([4095, 4097, 4098, 4099]);
    v.sort_unstable();
    v.dedup();
    v
}

/// Batches of 1 to 40 packets: lengths short (below `short`), medium (`short..long`), from
/// `boundaries`, and long (`long..=4099`); AAD of 0..40 bytes (ESP's 8 or 12 among them) or,
/// one time in five, of a length in `long_aad`.
pub fn packets(
    short: usize,
    long: usize,
    boundaries: Vec<usize>,
    long_aad: Range<usize>,
) -> impl Strategy<Value = Vec<Packet>> {
    let len = prop_oneof![
        3 => 0..short,
        2 => short..long,
        3 => prop::sample::select(boundaries),
        1 => long..=4099,
    ];
    let aad_len = prop_oneof![4 => 0usize..40, 1 => long_aad];
    let pkt = (any::<[u8; NONCE_LEN]>(), aad_len, any::<u8>(), len, any::<u8>()).prop_map(
        |(n, aad_len, aad_seed, len, seed)| {
            let aad = (0..aad_len).map(|i| (i as u8).wrapping_mul(aad_seed) ^ 0x5a).collect();
            (n, aad, (0..len).map(|i| (i as u8).wrapping_mul(seed) ^ seed).collect())
        },
    );
    prop::collection::vec(pkt, 1..=40)
}

/// Seal and open of one packet of `len` bytes by `ours` equal to `reference`; a forged tag is
/// refused and leaves the ciphertext as it was. `what` names the case in failures.
pub fn check_one_length(ours: &dyn EspAead, reference: &dyn EspAead, len: usize, what: &str) {
    let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| (i + len) as u8);
    let aad = [len as u8; 8];
    let pt: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
    let (mut want, mut want_tag) = (pt.clone(), [0u8; ICV_LEN]);
    reference.seal(&nonce, &aad, &mut want, &mut want_tag).unwrap();
    let (mut d, mut tag) = (pt.clone(), [0u8; ICV_LEN]);
    ours.seal(&nonce, &aad, &mut d, &mut tag).unwrap();
    assert_eq!(d, want, "{what} ciphertext of {len} bytes");
    assert_eq!(tag, want_tag, "{what} tag of {len} bytes");
    ours.open(&nonce, &aad, &mut d, &tag).unwrap();
    assert_eq!(d, pt, "{what} open of {len} bytes");
    let mut d = want.clone();
    tag[len % ICV_LEN] ^= 1;
    assert_eq!(ours.open(&nonce, &aad, &mut d, &tag), Err(AeadError::AuthFailed));
    assert_eq!(d, want, "{what}: a forged packet of {len} bytes stays as it was");
}

/// Runs `run` (`seal_batch` or `open_batch`) on jobs over `pkts`' nonces and AAD, `data` and
/// `tags`; returns each job's result.
fn run_batch(
    pkts: &[Packet],
    data: &mut [Vec<u8>],
    tags: &mut [[u8; ICV_LEN]],
    run: impl FnOnce(&mut [AeadJob<'_>]),
) -> Vec<Result<(), AeadError>> {
    let mut jobs: Vec<AeadJob<'_>> = pkts
        .iter()
        .zip(data.iter_mut())
        .zip(tags.iter_mut())
        .map(|(((n, aad, _), d), t)| AeadJob::new(*n, aad, d, t))
        .collect();
    run(&mut jobs);
    jobs.iter().map(|j| j.result).collect()
}

/// Batch seal by `ours` equals `reference` packet by packet, and so does a single seal; batch
/// open restores the plaintexts, except packet `forge` (its tag has one bit flipped), which
/// fails alone and keeps its ciphertext; the reference refuses that forgery too.
pub fn check_batch(
    ours: &dyn EspAead,
    reference: &dyn EspAead,
    pkts: &[Packet],
    forge: usize,
) -> Result<(), TestCaseError> {
    let mut want: Vec<(Vec<u8>, [u8; ICV_LEN])> = Vec::new();
    for (n, aad, pt) in pkts {
        let mut d = pt.clone();
        let mut t = [0u8; ICV_LEN];
        reference.seal(n, aad, &mut d, &mut t).unwrap();
        want.push((d, t));
    }
    let mut data: Vec<Vec<u8>> = pkts.iter().map(|p| p.2.clone()).collect();
    let mut tags = vec![[0u8; ICV_LEN]; pkts.len()];
    let sealed = run_batch(pkts, &mut data, &mut tags, |jobs| ours.seal_batch(jobs));
    prop_assert!(sealed.iter().all(|r| r.is_ok()));
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
    tags[forge][forge % ICV_LEN] ^= 0x80;
    let results = run_batch(pkts, &mut data, &mut tags, |jobs| ours.open_batch(jobs));
    for (i, r) in results.iter().enumerate() {
        if i == forge {
            prop_assert_eq!(*r, Err(AeadError::AuthFailed));
            prop_assert_eq!(&data[i], &want[i].0, "a forged packet is not decrypted");
        } else {
            prop_assert_eq!(*r, Ok(()));
            prop_assert_eq!(&data[i], &pkts[i].2);
        }
    }
    // The reference refuses the forgery as well.
    let mut d = want[forge].0.clone();
    prop_assert!(reference.open(&pkts[forge].0, &pkts[forge].1, &mut d, &tags[forge]).is_err());
    Ok(())
}
