//! The ESP data path allocates nothing: after warm-up, 10 000 batches of 8 packets (and 300
//! full batches of 32 with every built-in provider, batch seal/open) through
//! [`EspEncrypt`] and then [`EspDecrypt`] (AES-128-GCM tunnel and ChaCha20-Poly1305 NAT-T tunnel,
//! mixed in each batch) make zero heap allocations, counted by a global allocator. (Batches of 8
//! small packets keep the debug-build run short; batch size does not change the code path.)

use std::net::IpAddr;
use std::sync::Arc;

use wirespeed_core::epoch::Publisher;
use wirespeed_core::{Batch, BufferPool, PacketBuf, PoolBuf, PoolConfig, ShardCtx, Stage};
use wirespeed_stages::esp::*;

use wirespeed_alloc_counter::{CountingAlloc, start_counting, stop_counting};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn udp4(dst: [u8; 4], payload_len: usize) -> Vec<u8> {
    let total = 28 + payload_len;
    let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1];
    p.extend_from_slice(&dst);
    p.extend_from_slice(&[
        0x30,
        0x39,
        0x00,
        0x35,
        ((8 + payload_len) >> 8) as u8,
        (8 + payload_len) as u8,
        0,
        0,
    ]);
    p.extend((0..payload_len).map(|i| i as u8));
    p
}

/// Copies each of `frames` into a buffer from `pool` and appends it to `batch`.
fn push_copies<'a>(
    pool: &BufferPool,
    batch: &mut Batch<PoolBuf>,
    frames: impl IntoIterator<Item = &'a Vec<u8>>,
) {
    for f in frames {
        let mut b = pool.alloc().expect("pool");
        b.copy_from(f).unwrap();
        let _ = batch.push(b);
    }
}

#[test]
fn encrypt_and_decrypt_allocate_nothing_after_warm_up() {
    zero_alloc_rounds(default_provider(), 8, 10_000);
}

/// Full 32-packet batches through the batch seal/open path of every built-in provider.
#[test]
fn full_batches_allocate_nothing_with_every_provider() {
    for provider in builtin_providers() {
        zero_alloc_rounds(provider, wirespeed_core::BATCH_SIZE, 300);
    }
}

fn zero_alloc_rounds(provider: ProviderRef, per_batch: usize, rounds: usize) {
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let peer: IpAddr = "198.51.100.7".parse().unwrap();
    let gcm = AeadAlgorithm::Aes128Gcm;
    let cc = AeadAlgorithm::ChaCha20Poly1305;
    let km = |a: AeadAlgorithm| vec![0x5a; a.keymat_len()];
    let mut sas = Vec::new();
    for (spi, alg, natt) in [(0x10u32, gcm, false), (0x20, cc, true)] {
        for dir in [Direction::Outbound { shard: 0 }, Direction::Inbound] {
            // Loopback: the inbound SA is the peer's view (local = peer).
            let (local, remote) = if dir == Direction::Inbound { (peer, gw) } else { (gw, peer) };
            let mut c = SaConfig::tunnel(spi, dir, alg, &km(alg), local, remote)
                .with_provider(if provider.supports(alg) { provider.clone() } else { default_provider() });
            if natt {
                c.udp_encap = Some(UdpEncap::default());
            }
            sas.push(Arc::new(SecurityAssociation::new(&c).unwrap()));
        }
    }
    let prefix = |last: u8| IpPrefix::new(IpAddr::from([10, 9, 0, last]), 32);
    let spd = Spd::new(vec![
        SecurityPolicy {
            selector: Selector::between(IpPrefix::any_v4(), prefix(1)),
            action: PolicyAction::Protect { spis: vec![0x10] },
        },
        SecurityPolicy {
            selector: Selector::between(IpPrefix::any_v4(), prefix(2)),
            action: PolicyAction::Protect { spis: vec![0x20] },
        },
    ]);
    let mut publisher = Publisher::new(SaSet::new(sas, &spd).unwrap());
    let mut enc = EspEncrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
    let mut dec = EspDecrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
    let pool = BufferPool::new(PoolConfig { buffers: 1024, data_room: 2048, headroom: 256 }).unwrap();
    let templates: Vec<Vec<u8>> =
        (0..per_batch).map(|i| udp4([10, 9, 0, 1 + (i % 2) as u8], [18, 64, 200][i % 3])).collect();
    let mut cx = ShardCtx::new(0);
    let mut batch: Batch<PoolBuf> = Batch::new();
    let mut round = |cx: &mut ShardCtx, batch: &mut Batch<PoolBuf>| {
        push_copies(&pool, batch, &templates);
        enc.process(cx, batch);
        dec.process(cx, batch);
        assert_eq!(batch.len(), per_batch);
        batch.clear();
    };
    for _ in 0..100 {
        round(&mut cx, &mut batch);
    }
    start_counting();
    for _ in 0..rounds {
        round(&mut cx, &mut batch);
    }
    let allocs = stop_counting();
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    assert_eq!(enc.stats().encrypted, ((100 + rounds) * per_batch) as u64);
    assert_eq!(dec.stats().decrypted, ((100 + rounds) * per_batch) as u64);
    assert_eq!(allocs, 0, "heap allocations on the ESP path ({})", provider.name());
}

/// IPv4 fragmentation before encryption (DF clear, over the SA's MTU) takes its fragment
/// buffers from the pool: after warm-up (which makes the stage's spill once), 500 batches of
/// 8 packets of 2 000 bytes, each leaving as 2 ESP packets, allocate nothing.
#[test]
fn fragmentation_allocates_nothing_after_warm_up() {
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let peer: IpAddr = "198.51.100.7".parse().unwrap();
    let alg = AeadAlgorithm::Aes128Gcm;
    let mut out = SaConfig::tunnel(0x10, Direction::Outbound { shard: 0 }, alg, &[0x5a; 20], gw, peer);
    out.mtu = Some(1400);
    let inb = SaConfig::tunnel(0x10, Direction::Inbound, alg, &[0x5a; 20], peer, gw);
    let sas = vec![
        Arc::new(SecurityAssociation::new(&out).unwrap()),
        Arc::new(SecurityAssociation::new(&inb).unwrap()),
    ];
    let spd = Spd::new(vec![SecurityPolicy {
        selector: Selector::between(IpPrefix::any_v4(), IpPrefix::new(IpAddr::from([10, 9, 0, 0]), 16)),
        action: PolicyAction::Protect { spis: vec![0x10] },
    }]);
    let mut publisher = Publisher::new(SaSet::new(sas, &spd).unwrap());
    let mut enc = EspEncrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
    let mut dec = EspDecrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
    let pool = BufferPool::new(PoolConfig { buffers: 1024, data_room: 2048, headroom: 256 }).unwrap();
    // DF clear (`udp4` leaves the flags zero).
    let template = udp4([10, 9, 0, 1], 1972);
    let mut cx = ShardCtx::new(0);
    let mut batch: Batch<PoolBuf> = Batch::new();
    let mut round = |cx: &mut ShardCtx, batch: &mut Batch<PoolBuf>| {
        push_copies(&pool, batch, std::iter::repeat_n(&template, 8));
        enc.process(cx, batch);
        dec.process(cx, batch);
        assert_eq!(batch.len(), 16);
        batch.clear();
    };
    for _ in 0..100 {
        round(&mut cx, &mut batch);
    }
    start_counting();
    for _ in 0..500 {
        round(&mut cx, &mut batch);
    }
    let allocs = stop_counting();
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    assert_eq!(enc.stats().fragments, 600 * 16);
    assert_eq!(allocs, 0, "heap allocations while fragmenting");
}

/// Holding packets for an unknown SPI ([`EspDecrypt::with_unknown_spi_hold`]) and releasing
/// them when their SA appears allocate nothing after warm-up (which makes the hold once): 300
/// rounds of 8 packets held, then decrypted once the SA is published. Publishing and adopting
/// a new SA set (control-side work, once per rekey) are left out of the count.
#[test]
fn spi_hold_allocates_nothing_after_warm_up() {
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let peer: IpAddr = "198.51.100.7".parse().unwrap();
    let alg = AeadAlgorithm::Aes128Gcm;
    let out = SaConfig::tunnel(0x10, Direction::Outbound { shard: 0 }, alg, &[0x5a; 20], gw, peer);
    let inb = SaConfig::tunnel(0x10, Direction::Inbound, alg, &[0x5a; 20], peer, gw);
    let out = Arc::new(SecurityAssociation::new(&out).unwrap());
    let inb = Arc::new(SecurityAssociation::new(&inb).unwrap());
    let spd = Spd::new(vec![SecurityPolicy {
        selector: Selector::between(IpPrefix::any_v4(), IpPrefix::new(IpAddr::from([10, 9, 0, 0]), 16)),
        action: PolicyAction::Protect { spis: vec![0x10] },
    }]);
    let mut enc_pub = Publisher::new(SaSet::new(vec![out], &spd).unwrap());
    let mut enc = EspEncrypt::new(enc_pub.subscribe()).with_framing(Framing::Ip);
    let mut dec_pub = Publisher::new(SaSet::empty());
    let mut dec = EspDecrypt::new(dec_pub.subscribe())
        .with_framing(Framing::Ip)
        .with_unknown_spi_hold(64, std::time::Duration::from_millis(50));
    let pool = BufferPool::new(PoolConfig { buffers: 1024, data_room: 2048, headroom: 256 }).unwrap();
    let template = udp4([10, 9, 0, 1], 64);
    let mut cx = ShardCtx::new(0);
    let mut batch: Batch<PoolBuf> = Batch::new();
    let mut allocs = 0;
    for round in 0..400 {
        let counted = round >= 100;
        // The SA goes away (not counted), packets for it arrive and are held.
        dec_pub.publish(SaSet::empty());
        dec_pub.reclaim();
        dec.sas_mut().refresh();
        if counted {
            start_counting();
        }
        push_copies(&pool, &mut batch, std::iter::repeat_n(&template, 8));
        enc.process(&mut cx, &mut batch);
        dec.process(&mut cx, &mut batch);
        assert!(batch.is_empty());
        if counted {
            allocs += stop_counting();
        }
        assert_eq!(dec.held(), 8);
        // The SA appears (not counted): the held packets leave decrypted.
        dec_pub.publish(SaSet::new(vec![inb.clone()], &Spd::new(vec![])).unwrap());
        dec_pub.reclaim();
        dec.sas_mut().refresh();
        if counted {
            start_counting();
        }
        assert!(Stage::<PoolBuf>::needs_service(&mut dec, cx.now));
        Stage::<PoolBuf>::service(&mut dec, &mut cx, &mut batch);
        assert_eq!(batch.len(), 8);
        batch.clear();
        if counted {
            allocs += stop_counting();
        }
    }
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    assert_eq!(dec.stats().decrypted, 400 * 8);
    assert_eq!(dec.stats().held, 400 * 8);
    assert_eq!(allocs, 0, "heap allocations while holding and releasing");
}

/// Handing packets to the shard that owns their outbound SA ([`EspEncrypt::with_handoff`])
/// allocates nothing: 300 rounds of 8 packets that shard 1 hands over and shard 0 encrypts.
#[test]
fn hand_off_to_the_owning_shard_allocates_nothing() {
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let peer: IpAddr = "198.51.100.7".parse().unwrap();
    let alg = AeadAlgorithm::Aes128Gcm;
    let out = SaConfig::tunnel(0x10, Direction::Outbound { shard: 0 }, alg, &[0x5a; 20], gw, peer);
    let spd = Spd::new(vec![SecurityPolicy {
        selector: Selector::between(IpPrefix::any_v4(), IpPrefix::new(IpAddr::from([10, 9, 0, 0]), 16)),
        action: PolicyAction::Protect { spis: vec![0x10] },
    }]);
    let set = SaSet::new(vec![Arc::new(SecurityAssociation::new(&out).unwrap())], &spd).unwrap();
    let mut publisher = Publisher::new(set);
    let queues: Vec<wirespeed_core::queue::SharedQueue<PoolBuf>> =
        (0..2).map(|_| wirespeed_core::queue::SharedQueue::new(64)).collect();
    let mut owner =
        EspEncrypt::new(publisher.subscribe()).with_framing(Framing::Ip).with_handoff(queues.clone());
    let mut other =
        EspEncrypt::new(publisher.subscribe()).with_framing(Framing::Ip).with_handoff(queues.clone());
    let pool = BufferPool::new(PoolConfig { buffers: 1024, data_room: 2048, headroom: 256 }).unwrap();
    let template = udp4([10, 9, 0, 1], 64);
    let (mut cx0, mut cx1) = (ShardCtx::new(0), ShardCtx::new(1));
    let mut batch: Batch<PoolBuf> = Batch::new();
    let mut allocs = 0;
    for round in 0..400 {
        let counted = round >= 100;
        if counted {
            start_counting();
        }
        push_copies(&pool, &mut batch, std::iter::repeat_n(&template, 8));
        other.process(&mut cx1, &mut batch);
        assert!(batch.is_empty());
        while let Some(b) = queues[0].pop() {
            let _ = batch.push(b);
        }
        owner.process(&mut cx0, &mut batch);
        assert_eq!(batch.len(), 8);
        batch.clear();
        if counted {
            allocs += stop_counting();
        }
    }
    publisher.reclaim();
    assert_eq!((cx0.counters.total_drops(), cx1.counters.total_drops()), (0, 0));
    assert_eq!((other.stats().handed_off, owner.stats().encrypted), (400 * 8, 400 * 8));
    assert_eq!(allocs, 0, "heap allocations while handing off");
}
