//! [`EspDecrypt::with_unknown_spi_hold`]: ESP packets whose SPI has no SA yet (a rekeyed SA
//! not yet published to the shard) are held, decrypted once the SA appears, dropped as
//! `EspNoSa` when it does not appear in time or the hold is full, and as `Shutdown` at the end.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use wirespeed_core::epoch::Publisher;
use wirespeed_core::{Batch, BufferPool, DropReason, PacketBuf, PoolBuf, PoolConfig, ShardCtx, Stage};
use wirespeed_stages::esp::*;

const SPI: u32 = 0x4242;

fn udp4(tag: u8) -> Vec<u8> {
    let payload = 40;
    let total = 28 + payload;
    let mut p = vec![0x45, 0, 0, total as u8, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 9, 0, 1];
    p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, (8 + payload) as u8, 0, 0]);
    p.extend((0..payload).map(|_| tag));
    p
}

struct Setup {
    pool: BufferPool,
    enc: EspEncrypt,
    /// The decrypt side's SA publisher (starts without the inbound SA).
    dec_pub: Publisher<SaSet>,
    inbound: Arc<SecurityAssociation>,
}

fn setup() -> Setup {
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let peer: IpAddr = "198.51.100.7".parse().unwrap();
    let alg = AeadAlgorithm::Aes128Gcm;
    let km = vec![0x5a; alg.keymat_len()];
    let out = SaConfig::tunnel(SPI, Direction::Outbound { shard: 0 }, alg, &km, gw, peer);
    // Loopback: the inbound SA is the peer's view (local = peer).
    let inb = SaConfig::tunnel(SPI, Direction::Inbound, alg, &km, peer, gw);
    let out = Arc::new(SecurityAssociation::new(&out).unwrap());
    let inbound = Arc::new(SecurityAssociation::new(&inb).unwrap());
    let spd = Spd::new(vec![SecurityPolicy {
        selector: Selector::between(IpPrefix::any_v4(), IpPrefix::new(IpAddr::from([10, 9, 0, 0]), 16)),
        action: PolicyAction::Protect { spis: vec![SPI] },
    }]);
    let mut enc_pub = Publisher::new(SaSet::new(vec![out], &spd).unwrap());
    let enc = EspEncrypt::new(enc_pub.subscribe()).with_framing(Framing::Ip);
    let dec_pub = Publisher::new(SaSet::empty());
    let pool = BufferPool::new(PoolConfig { buffers: 512, data_room: 2048, headroom: 256 }).unwrap();
    Setup { pool, enc, dec_pub, inbound }
}

impl Setup {
    fn decrypter(&mut self, hold: Option<(usize, Duration)>) -> EspDecrypt {
        let d = EspDecrypt::new(self.dec_pub.subscribe()).with_framing(Framing::Ip);
        match hold {
            Some((n, t)) => d.with_unknown_spi_hold(n, t),
            None => d,
        }
    }

    /// ESP packets carrying `udp4(tag)` for each tag, in a batch.
    fn esp(&mut self, cx: &mut ShardCtx, tags: impl IntoIterator<Item = u8>) -> Batch<PoolBuf> {
        let mut batch = Batch::new();
        for tag in tags {
            let mut b = self.pool.alloc().expect("pool");
            b.copy_from(&udp4(tag)).unwrap();
            assert!(batch.push(b).is_ok(), "room");
        }
        self.enc.process(cx, &mut batch);
        assert!(batch.iter().all(|p| p.data()[9] == 50), "ESP");
        batch
    }

    fn publish_sa(&mut self) {
        let set = SaSet::new(vec![self.inbound.clone()], &Spd::new(vec![])).unwrap();
        self.dec_pub.publish(set);
    }
}

/// The hold most tests use: 64 packets for 50 ms.
const HOLD: Option<(usize, Duration)> = Some((64, Duration::from_millis(50)));

/// One shard's decrypt side: the fixture, a decrypter with a given hold, and the shard context.
struct Shard {
    s: Setup,
    dec: EspDecrypt,
    cx: ShardCtx,
}

impl Shard {
    fn new(hold: Option<(usize, Duration)>) -> Self {
        let mut s = setup();
        let dec = s.decrypter(hold);
        Shard { s, dec, cx: ShardCtx::new(0) }
    }

    /// ESP packets carrying `udp4(tag)` for each tag, through the decrypter: what it passes on.
    fn receive(&mut self, tags: impl IntoIterator<Item = u8>) -> Batch<PoolBuf> {
        let mut batch = self.s.esp(&mut self.cx, tags);
        self.dec.process(&mut self.cx, &mut batch);
        batch
    }

    /// Services the decrypter into `out` (packets it releases are appended).
    fn service_into(&mut self, out: &mut Batch<PoolBuf>) {
        Stage::<PoolBuf>::service(&mut self.dec, &mut self.cx, out);
    }

    /// Services the decrypter: the packets it releases.
    fn service(&mut self) -> Batch<PoolBuf> {
        let mut out = Batch::new();
        self.service_into(&mut out);
        out
    }
}

fn tags(batch: &Batch<PoolBuf>) -> Vec<u8> {
    batch
        .iter()
        .map(|p| {
            assert_eq!(p.data()[..28], udp4(0)[..28], "decrypted header");
            p.data()[28]
        })
        .collect()
}

#[test]
fn held_packets_are_decrypted_once_their_sa_appears() {
    let mut sh = Shard::new(HOLD);
    let batch = sh.receive(1..=4);
    assert!(batch.is_empty());
    assert_eq!(Stage::<PoolBuf>::held(&sh.dec), 4);
    assert_eq!(sh.cx.counters.total_drops(), 0, "{}", sh.cx.counters);
    assert_eq!(sh.dec.stats().held, 4);
    // Nothing changed: nothing to do.
    assert!(!sh.dec.needs_service(sh.cx.now));

    sh.s.publish_sa();
    assert!(sh.dec.needs_service(sh.cx.now));
    let batch = sh.service();
    assert_eq!(tags(&batch), [1, 2, 3, 4]);
    assert_eq!(sh.dec.held(), 0);
    assert_eq!(sh.dec.stats().decrypted, 4);
    assert_eq!(sh.dec.stats().hold_resolved, 4);
    assert_eq!(sh.cx.counters.total_drops(), 0, "{}", sh.cx.counters);
    assert!(!sh.dec.needs_service(sh.cx.now));
}

#[test]
fn held_packets_go_ahead_of_the_batch_that_finds_their_sa() {
    let mut sh = Shard::new(HOLD);
    sh.receive(1..=3);
    assert_eq!(sh.dec.held(), 3);
    sh.s.publish_sa();
    let batch = sh.receive(4..=6);
    assert_eq!(tags(&batch), [1, 2, 3, 4, 5, 6]);
    assert_eq!(sh.dec.held(), 0);
    assert_eq!(sh.cx.counters.total_drops(), 0, "{}", sh.cx.counters);
}

#[test]
fn a_full_batch_leaves_decrypted_packets_held_until_there_is_room() {
    let mut sh = Shard::new(HOLD);
    sh.receive(0..2);
    assert_eq!(sh.dec.held(), 2);
    sh.s.publish_sa();
    let full = wirespeed_core::BATCH_SIZE as u8;
    let batch = sh.receive(2..2 + full);
    // The batch was full: the held packets were decrypted first but wait for room.
    assert_eq!(tags(&batch), (2..2 + full).collect::<Vec<_>>());
    assert_eq!(sh.dec.held(), 2);
    assert!(sh.dec.needs_service(sh.cx.now));
    let empty = sh.service();
    assert_eq!(tags(&empty), [0, 1]);
    assert_eq!(sh.dec.stats().decrypted, 2 + u64::from(full));
    assert_eq!(sh.cx.counters.total_drops(), 0, "{}", sh.cx.counters);
}

#[test]
fn packets_whose_sa_does_not_appear_in_time_are_dropped_as_no_sa() {
    let mut sh = Shard::new(HOLD);
    let mut batch = sh.receive(1..=5);
    assert_eq!(sh.dec.held(), 5);
    sh.cx.now += Duration::from_millis(49);
    assert!(!sh.dec.needs_service(sh.cx.now));
    sh.cx.now += Duration::from_millis(1);
    assert!(sh.dec.needs_service(sh.cx.now));
    sh.service_into(&mut batch);
    assert!(batch.is_empty());
    assert_eq!(sh.dec.held(), 0);
    assert_eq!(sh.cx.counters.drops_of(DropReason::EspNoSa), 5);
    assert_eq!(sh.cx.counters.total_drops(), 5);
    assert_eq!(sh.dec.stats().hold_expired, 5);
    // The SA appearing later changes nothing.
    sh.s.publish_sa();
    assert!(!sh.dec.needs_service(sh.cx.now));
}

#[test]
fn expired_packets_leave_while_younger_ones_stay() {
    let mut sh = Shard::new(HOLD);
    sh.receive(1..=2);
    sh.cx.now += Duration::from_millis(30);
    sh.receive(3..=4);
    assert_eq!(sh.dec.held(), 4);
    sh.cx.now += Duration::from_millis(25);
    let mut batch = Batch::new();
    assert!(sh.dec.needs_service(sh.cx.now));
    sh.service_into(&mut batch);
    assert_eq!(sh.cx.counters.drops_of(DropReason::EspNoSa), 2);
    assert_eq!(sh.dec.held(), 2);
    sh.s.publish_sa();
    sh.service_into(&mut batch);
    assert_eq!(tags(&batch), [3, 4]);
}

#[test]
fn a_full_hold_drops_at_once() {
    let mut sh = Shard::new(Some((2, Duration::from_millis(50))));
    sh.receive(1..=5);
    assert_eq!(sh.dec.held(), 2);
    assert_eq!(sh.cx.counters.drops_of(DropReason::EspNoSa), 3);
    assert_eq!(sh.dec.stats().hold_full, 3);
    sh.s.publish_sa();
    let batch = sh.service();
    assert_eq!(tags(&batch), [1, 2]);
}

#[test]
fn without_a_hold_unknown_spis_are_dropped_at_once() {
    for hold in [None, Some((0, Duration::from_millis(50))), Some((64, Duration::ZERO))] {
        let mut sh = Shard::new(hold);
        let batch = sh.receive(1..=4);
        assert!(batch.is_empty());
        assert_eq!(sh.dec.held(), 0);
        assert_eq!(sh.cx.counters.drops_of(DropReason::EspNoSa), 4, "{hold:?}");
        assert_eq!(sh.dec.stats().held, 0);
        sh.s.publish_sa();
        assert!(!sh.dec.needs_service(sh.cx.now));
    }
}

#[test]
fn finish_drops_held_packets_as_shutdown() {
    let mut sh = Shard::new(HOLD);
    sh.receive(1..=3);
    assert_eq!(sh.dec.held(), 3);
    Stage::<PoolBuf>::finish(&mut sh.dec, &mut sh.cx);
    assert_eq!(sh.dec.held(), 0);
    assert_eq!(sh.cx.counters.drops_of(DropReason::Shutdown), 3);
}

/// A plain [`Pipeline`] releases held packets on an empty poll once their SA is published,
/// and reports them as held meanwhile.
#[test]
fn a_pipeline_releases_held_packets_without_new_input() {
    use wirespeed_core::backend::mem::{MemConfig, MemPort};
    use wirespeed_core::{Pipeline, Port};
    let mut s = setup();
    let dec = s.decrypter(HOLD);
    let mut cx = ShardCtx::new(0);
    let esp = s.esp(&mut cx, 1..=3);
    let (mut port, handle) = MemPort::new(MemConfig::default(), s.pool);
    for p in esp.iter() {
        handle.inject(0, p.data()).unwrap();
    }
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut pipeline = Pipeline::new(rx, tx, dec);
    let mut cx = ShardCtx::new(0);
    assert_eq!(pipeline.run_once(&mut cx), 3);
    assert_eq!((cx.counters.tx_packets, cx.counters.total_drops()), (0, 0));
    assert_eq!(pipeline.stage::<EspDecrypt>().map(|d| d.held()), Some(3));
    assert_eq!(pipeline.run_once(&mut cx), 0);
    assert_eq!(cx.counters.tx_packets, 0, "still held");
    s.publish_sa();
    assert_eq!(pipeline.run_once(&mut cx), 0);
    assert_eq!(cx.counters.tx_packets, 3);
    let out: Vec<u8> = handle.drain_tx(0).iter().map(|f| f[28]).collect();
    assert_eq!(out, [1, 2, 3]);
    assert_eq!(pipeline.stage::<EspDecrypt>().map(|d| d.held()), Some(0));
}
