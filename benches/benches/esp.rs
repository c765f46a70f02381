//! ESP encapsulation / decapsulation, one packet per iteration, full transform: outer IPv4
//! header, ESP header and IV, padding and trailer, AEAD, ICV, L2 header move — in place in a
//! pool buffer with a 14-byte Ethernet header in front (tunnel mode, IPv4 in IPv4).
//!
//! The number in an id is the size of the inner IP packet handed to ESP (the bytes the peers'
//! raw-AEAD numbers encrypt), and the throughput is that many bytes per packet. Ids:
//! `esp/{encrypt,decrypt}_{aes128gcm,chacha20poly1305}[_accel]/{64,1420}` — `_accel` is the
//! ring provider, compiled with `--features accel`. The batch ids are described at
//! [`bench_esp_batch`], the hand-off ids at [`bench_esp_handoff`].
//!
//! Per-iteration set-up included in the time: encrypt restores the 42 bytes of Ethernet + IP +
//! UDP header of the inner packet (the rest is re-encrypted as is); decrypt copies the whole ESP
//! packet back (the decryption destroyed it; ≈ 1.5 KB memcpy, a few ns) and runs without the
//! replay window, which would otherwise reject the repeated sequence number (the window check
//! and update cost a few ns).
//!
//! Target features: see the repository's `.cargo/config.toml` and BENCHMARKS.md.
//!
//! Every id also runs under `cpu/esp/...`: the same routine timed by the bench thread's CPU time
//! (`wirespeed_benches::ThreadCpuTime`), whose throughput is per CPU-second.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput};
use wirespeed_benches::{Clock, thread_cpu_time};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{BATCH_SIZE, Batch, BufferPool, PacketBuf, PoolBuf, PoolConfig, ShardCtx, Stage};
use wirespeed_stages::esp::*;

const SIZES_ENCRYPT: [usize; 2] = [64, 1420];
const SIZES_DECRYPT: [usize; 1] = [1420];

/// Ethernet + IPv4/UDP packet of `inner_len` bytes from 10.0.0.1 to 10.9.0.9.
fn frame(inner_len: usize) -> Vec<u8> {
    wirespeed_benches::udp4_frame(inner_len, [10, 0, 0, 1], [10, 9, 0, 9])
}

/// The SA of this bench for `provider`, or `None` (with a note on stderr) when the provider
/// refuses it: a bench case is only built for the providers that take its algorithm.
fn sa(alg: AeadAlgorithm, provider: &ProviderRef, direction: Direction) -> Option<SecurityAssociation> {
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let peer: IpAddr = "198.51.100.7".parse().unwrap();
    let km: Vec<u8> = (0..alg.keymat_len()).map(|i| i as u8 ^ 0xa5).collect();
    // Loopback: the inbound SA is the peer's (local = peer).
    let (local, remote) = if direction == Direction::Inbound { (peer, gw) } else { (gw, peer) };
    let mut c = SaConfig::tunnel(0x1000, direction, alg, &km, local, remote);
    c.provider = provider.clone();
    c.replay_window = 0;
    SecurityAssociation::new(&c)
        .map_err(|e| {
            eprintln!("note: {} refuses {}: {e}; its bench ids are skipped", provider.name(), alg.name())
        })
        .ok()
}

/// The built-in providers that take `alg` on this machine (asked, not assumed).
fn supporting(alg: AeadAlgorithm) -> impl Iterator<Item = ProviderRef> {
    builtin_providers().into_iter().filter(move |p| p.supports(alg))
}

/// The providers under their historical id suffixes: RustCrypto (none), ring (`_accel`).
fn providers() -> Vec<(ProviderRef, &'static str)> {
    builtin_providers()
        .into_iter()
        .filter_map(|p| match p.name() {
            "rustcrypto" => Some((p, "")),
            "ring" => Some((p, "_accel")),
            _ => None,
        })
        .collect()
}

fn bench_esp<M: Clock>(c: &mut Criterion<M>) {
    let pool = BufferPool::new(PoolConfig { buffers: 256, data_room: 2048, headroom: 256 }).unwrap();
    let mut g = c.benchmark_group(M::group("esp"));
    let now = Instant::now();
    for (provider, suffix) in providers() {
        for alg in [AeadAlgorithm::Aes128Gcm, AeadAlgorithm::ChaCha20Poly1305] {
            if !provider.supports(alg) {
                continue;
            }
            for n in SIZES_ENCRYPT {
                let Some(sa) = sa(alg, &provider, Direction::Outbound { shard: 0 }) else { continue };
                let mut st = SaState::new(&sa);
                let tmpl = frame(n);
                let mut b: PoolBuf = pool.alloc().unwrap();
                b.copy_from(&tmpl).unwrap();
                g.throughput(Throughput::Bytes(n as u64));
                g.bench_function(BenchmarkId::new(format!("encrypt_{}{suffix}", alg.name()), n), |bench| {
                    bench.iter(|| {
                        restore_headers(&mut b, &tmpl);
                        if st.seq() > u32::MAX as u64 / 2 {
                            st.set_seq(0);
                        }
                        let r = encapsulate(&mut b, 14, &sa, &mut st, now, |_| {});
                        debug_assert!(r.is_ok());
                        black_box(b.data().len())
                    })
                });
            }
            for n in SIZES_DECRYPT {
                let (Some(out), Some(inb)) = (
                    sa(alg, &provider, Direction::Outbound { shard: 0 }),
                    sa(alg, &provider, Direction::Inbound),
                ) else {
                    continue;
                };
                let mut st_out = SaState::new(&out);
                let mut b: PoolBuf = pool.alloc().unwrap();
                b.copy_from(&frame(n)).unwrap();
                encapsulate(&mut b, 14, &out, &mut st_out, now, |_| {}).unwrap();
                let esp = b.data().to_vec();
                let loc = locate_esp(&esp, 14, NAT_T_PORT).unwrap().unwrap();
                let mut st = SaState::new(&inb);
                // Check once, outside the timing, that the packet really decrypts.
                assert_eq!(
                    decapsulate(&mut b, 14, &loc, &inb, &mut st, now, |_| {}),
                    Ok(Decapsulated::Packet)
                );
                assert_eq!(b.data(), &frame(n)[..]);
                g.throughput(Throughput::Bytes(n as u64));
                g.bench_function(BenchmarkId::new(format!("decrypt_{}{suffix}", alg.name()), n), |bench| {
                    bench.iter(|| {
                        b.reset();
                        b.copy_from(&esp).unwrap();
                        let r = decapsulate(&mut b, 14, &loc, &inb, &mut st, now, |_| {});
                        debug_assert_eq!(r, Ok(Decapsulated::Packet));
                        black_box(b.data().len())
                    })
                });
            }
        }
    }
    g.finish();
}

/// A stage pair on one tunnel SA (outbound from the gateway, and the peer's inbound) with the
/// given provider, no replay window; `None` when the provider refuses the algorithm.
fn stages(alg: AeadAlgorithm, provider: &ProviderRef) -> Option<(EspEncrypt, EspDecrypt, Publisher<SaSet>)> {
    let out = Arc::new(sa(alg, provider, Direction::Outbound { shard: 0 })?);
    let inb = Arc::new(sa(alg, provider, Direction::Inbound)?);
    let spd = Spd::new(vec![SecurityPolicy {
        selector: Selector::between(IpPrefix::any_v4(), IpPrefix::any_v4()),
        action: PolicyAction::Protect { spis: vec![0x1000] },
    }]);
    let mut publisher = Publisher::new(SaSet::new([out, inb], &spd).unwrap());
    let enc = EspEncrypt::new(publisher.subscribe());
    let dec = EspDecrypt::new(publisher.subscribe());
    Some((enc, dec, publisher))
}

/// Makes `b` the inner packet `tmpl` again after an encryption: its length, metadata and the
/// 42 bytes of Ethernet, IPv4 and UDP header (the payload is re-encrypted as it is).
#[inline]
fn restore_headers(b: &mut PoolBuf, tmpl: &[u8]) {
    b.reset();
    b.set_len(tmpl.len()).unwrap();
    b.data_mut()[..42].copy_from_slice(&tmpl[..42]);
}

/// A full batch of copies of `tmpl` from `pool`.
fn full_batch(pool: &BufferPool, tmpl: &[u8]) -> Batch<PoolBuf> {
    let mut batch = Batch::new();
    for _ in 0..BATCH_SIZE {
        let mut b = pool.alloc().unwrap();
        b.copy_from(tmpl).unwrap();
        batch.push(b).unwrap();
    }
    batch
}

/// Runs `f` `iters` times; the elapsed wall time, or this thread's CPU time when `cpu` (the
/// `cpu/` groups), for the ids that must leave set-up work out of the time.
fn timed(iters: u64, cpu: bool, mut f: impl FnMut()) -> Duration {
    let (w, c) = (Instant::now(), thread_cpu_time());
    for _ in 0..iters {
        f();
    }
    if cpu { thread_cpu_time() - c } else { w.elapsed() }
}

/// Batch ids: `esp/{encrypt,decrypt}_batch32_{alg}/{size}`: 32 packets per iteration through
/// the [`EspEncrypt`] / [`EspDecrypt`] stage (SPD lookup, framing, one batch seal/open per
/// SA), with the provider `fastest_provider()` picks here; `…_{alg}_{provider}` ids run the
/// same with each built-in provider, for comparison in one run. Set-up in the time: encrypt
/// restores the 42 header bytes of each packet, decrypt copies each ESP packet back. The batch
/// AES-GCM's code path can be chosen with `WIRESPEED_GCM_PATH` (`avx512`, `vaes256`, `aesni`),
/// the batch ChaCha20-Poly1305's with `WIRESPEED_CHACHA_PATH` (`avx512`, `avx2`).
fn bench_esp_batch<M: Clock>(c: &mut Criterion<M>) {
    let pool = BufferPool::new(PoolConfig { buffers: 256, data_room: 2048, headroom: 256 }).unwrap();
    let mut g = c.benchmark_group(M::group("esp"));
    let cases = [
        (AeadAlgorithm::Aes128Gcm, 64, true),
        (AeadAlgorithm::Aes128Gcm, 1420, false),
        (AeadAlgorithm::Aes128Gcm, 64, false),
        (AeadAlgorithm::Aes128Gcm, 1420, true),
        (AeadAlgorithm::ChaCha20Poly1305, 1420, false),
        (AeadAlgorithm::ChaCha20Poly1305, 1420, true),
    ];
    for (alg, n, decrypt) in cases {
        let fastest = fastest_provider(alg);
        let mut runs: Vec<(ProviderRef, String)> = vec![(fastest, String::new())];
        runs.extend(supporting(alg).map(|p| {
            let name = format!("_{}", p.name().replace('-', "_"));
            (p, name)
        }));
        for (provider, suffix) in runs {
            let Some((mut enc, mut dec, _publisher)) = stages(alg, &provider) else { continue };
            let tmpl = frame(n);
            let mut cx = ShardCtx::new(0);
            let mut batch = full_batch(&pool, &tmpl);
            g.throughput(Throughput::Elements(BATCH_SIZE as u64));
            let dir = if decrypt { "decrypt" } else { "encrypt" };
            let id = BenchmarkId::new(format!("{dir}_batch32_{}{suffix}", alg.name()), n);
            if !decrypt {
                g.bench_function(id, |bench| {
                    bench.iter(|| {
                        batch.iter_mut().for_each(|b| restore_headers(b, &tmpl));
                        enc.process(&mut cx, &mut batch);
                        debug_assert_eq!(batch.len(), BATCH_SIZE);
                        black_box(batch.len())
                    })
                });
            } else {
                enc.process(&mut cx, &mut batch);
                let esp: Vec<u8> = batch.as_slice()[0].data().to_vec();
                // Check once, outside the timing, that the packets really decrypt.
                dec.process(&mut cx, &mut batch);
                assert_eq!(batch.len(), BATCH_SIZE, "{}", cx.counters);
                assert_eq!(batch.as_slice()[0].data(), &tmpl[..]);
                g.bench_function(id, |bench| {
                    bench.iter(|| {
                        for b in batch.iter_mut() {
                            b.reset();
                            b.copy_from(&esp).unwrap();
                        }
                        dec.process(&mut cx, &mut batch);
                        debug_assert_eq!(batch.len(), BATCH_SIZE);
                        black_box(batch.len())
                    })
                });
            }
        }
    }
    g.finish();
}

/// Hand-off ids: `esp/encrypt_batch32_aes128gcm_handoff/{64,1420}`: the 32 packets of
/// `esp/encrypt_batch32_aes128gcm/…` arrive on a shard that does not own the SA
/// ([`EspEncrypt::with_handoff`]): its encrypt stage hands them to the owner's queue, the owner
/// pops them into a batch and encrypts them (the fastest provider here). Both shards run on the
/// bench thread, so the difference to the direct id is the hop's own work (SPD decision,
/// flagging, queue push and pop), not the cache-line transfer between two cores a real hop also
/// pays. Set-up in the time as for the direct id.
fn bench_esp_handoff<M: Clock>(c: &mut Criterion<M>) {
    let pool = BufferPool::new(PoolConfig { buffers: 256, data_room: 2048, headroom: 256 }).unwrap();
    let mut g = c.benchmark_group(M::group("esp"));
    let alg = AeadAlgorithm::Aes128Gcm;
    for n in [64usize, 1420] {
        let Some((owner, _dec, mut publisher)) = stages(alg, &fastest_provider(alg)) else { continue };
        let queues: Vec<wirespeed_core::queue::SharedQueue<PoolBuf>> =
            (0..2).map(|_| wirespeed_core::queue::SharedQueue::new(4 * BATCH_SIZE)).collect();
        let mut owner = owner.with_handoff(queues.clone());
        let mut other = EspEncrypt::new(publisher.subscribe()).with_handoff(queues.clone());
        let (mut cx0, mut cx1) = (ShardCtx::new(0), ShardCtx::new(1));
        let tmpl = frame(n);
        let mut batch = full_batch(&pool, &tmpl);
        g.throughput(Throughput::Elements(BATCH_SIZE as u64));
        let id = BenchmarkId::new(format!("encrypt_batch32_{}_handoff", alg.name()), n);
        g.bench_function(id, |bench| {
            bench.iter(|| {
                batch.iter_mut().for_each(|b| restore_headers(b, &tmpl));
                other.process(&mut cx1, &mut batch);
                debug_assert!(batch.is_empty());
                while let Some(b) = queues[0].pop() {
                    let _ = batch.push(b);
                }
                owner.process(&mut cx0, &mut batch);
                debug_assert_eq!(batch.len(), BATCH_SIZE);
                black_box(batch.len())
            })
        });
        assert_eq!(
            (batch.len(), cx0.counters.total_drops(), cx1.counters.total_drops()),
            (BATCH_SIZE, 0, 0),
            "every packet handed over and encrypted"
        );
        publisher.reclaim();
    }
    g.finish();
}

/// Raw AEAD ids, the like-for-like of the intel-ipsec-mb peer (`benches/peers/ipsecmb_gcm_peer.c`):
/// `esp/aead_{seal,open}_batch32_aes128gcm_{path}/{size}`: one `seal_batch` / `open_batch` of
/// 32 in-place buffers of `size` bytes (8-byte AAD), on each [`GcmPath`] of the batch AES-GCM
/// this CPU has (`avx512`, `vaes256`, `aesni`); no ESP framing. Open verifies real tags.
/// Wall time, and the bench thread's CPU time under `cpu/esp/...`, as every id.
fn bench_aead_batch<M: Clock>(c: &mut Criterion<M>) {
    use wirespeed_stages::esp::aead::{AeadJob, ICV_LEN};
    let cpu = M::PREFIX == "cpu/";
    let mut g = c.benchmark_group(M::group("esp"));
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    let alg = AeadAlgorithm::Aes128Gcm;
    let key: Vec<u8> = (0..16u8).collect();
    for path in GcmPath::ALL.into_iter().filter(|p| p.available()) {
        let aead = BatchGcmForced(path).new_aead(alg, &key).expect("cipher");
        for n in [64usize, 1420] {
            let aad = [7u8; 8];
            let mut bufs = vec![vec![0x5au8; n]; BATCH_SIZE];
            let mut tags = vec![[0u8; ICV_LEN]; BATCH_SIZE];
            let nonce = |i: usize| -> [u8; 12] { std::array::from_fn(|j| (i + j) as u8) };
            let run = |seal: bool, bufs: &mut [Vec<u8>], tags: &mut [[u8; ICV_LEN]]| {
                let mut jobs: arrayvec::ArrayVec<AeadJob<'_>, BATCH_SIZE> = bufs
                    .iter_mut()
                    .zip(tags.iter_mut())
                    .enumerate()
                    .map(|(i, (d, t))| AeadJob::new(nonce(i), &aad, d, t))
                    .collect();
                if seal {
                    aead.seal_batch(&mut jobs);
                } else {
                    aead.open_batch(&mut jobs);
                }
                jobs.iter().all(|j| j.result.is_ok())
            };
            g.bench_function(
                BenchmarkId::new(format!("aead_seal_batch32_aes128gcm_{}", path.name()), n),
                |b| b.iter_custom(|iters| timed(iters, cpu, || assert!(run(true, &mut bufs, &mut tags)))),
            );
            // Sealed once more, then opened and sealed again in turn so every open verifies.
            g.bench_function(
                BenchmarkId::new(format!("aead_open_batch32_aes128gcm_{}", path.name()), n),
                |b| {
                    b.iter_custom(|iters| {
                        let mut spent = Duration::ZERO;
                        for _ in 0..iters {
                            assert!(run(true, &mut bufs, &mut tags));
                            spent += timed(1, cpu, || assert!(run(false, &mut bufs, &mut tags)));
                        }
                        spent
                    })
                },
            );
        }
    }
    g.finish();
}

wirespeed_benches::wall_and_cpu_main!(bench_esp, bench_esp_batch, bench_esp_handoff, bench_aead_batch);
