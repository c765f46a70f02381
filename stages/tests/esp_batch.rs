//! The batch path of the ESP stages (frame all, seal/open all, finish in order): within one
//! batch, a forged packet is dropped alone (`EspAuthFailed`), a packet repeated later in the
//! same batch is caught by the replay window (`EspReplay`) although both passed the check before
//! the batch was opened, and every other packet decrypts — with every built-in provider.

mod esp_common;

use std::net::IpAddr;
use std::sync::Arc;

use esp_common::{buf, udp4};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{BATCH_SIZE, Batch, DropReason, PacketBuf, PoolBuf, ShardCtx, Stage};
use wirespeed_stages::esp::*;

fn pair(provider: ProviderRef) -> (EspEncrypt, EspDecrypt, Publisher<SaSet>) {
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let peer: IpAddr = "198.51.100.7".parse().unwrap();
    let alg = AeadAlgorithm::Aes128Gcm;
    let km = [0x3cu8; 20];
    let o = SaConfig::tunnel(9, Direction::Outbound { shard: 0 }, alg, &km, gw, peer)
        .with_provider(provider.clone());
    let i = SaConfig::tunnel(9, Direction::Inbound, alg, &km, peer, gw).with_provider(provider);
    let spd = Spd::new(vec![SecurityPolicy {
        selector: Selector::between(IpPrefix::any_v4(), IpPrefix::any_v4()),
        action: PolicyAction::Protect { spis: vec![9] },
    }]);
    let sas =
        [Arc::new(SecurityAssociation::new(&o).unwrap()), Arc::new(SecurityAssociation::new(&i).unwrap())];
    let mut publisher = Publisher::new(SaSet::new(sas, &spd).unwrap());
    let enc = EspEncrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
    let dec = EspDecrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
    (enc, dec, publisher)
}

#[test]
fn forged_and_replayed_packets_inside_one_batch() {
    for provider in builtin_providers().into_iter().filter(|p| p.supports(AeadAlgorithm::Aes128Gcm)) {
        let name = provider.name().to_string();
        let (mut enc, mut dec, _p) = pair(provider);
        let mut cx = ShardCtx::new(0);
        // 30 packets of assorted sizes, encrypted in one batch.
        let inner: Vec<Vec<u8>> =
            (0..30).map(|i| udp4([10, 0, 0, 1], [10, 9, 0, 9], 1, 2, &vec![i as u8; i * 37])).collect();
        let mut batch: Batch<PoolBuf> = Batch::new();
        for p in &inner {
            batch.push(buf(p)).unwrap();
        }
        enc.process(&mut cx, &mut batch);
        assert_eq!(batch.len(), 30, "{name}: {}", cx.counters);
        let esp: Vec<Vec<u8>> = batch.iter().map(|b| b.data().to_vec()).collect();
        // Inbound batch: all 30, packet 7 forged (last ICV byte), packet 3 again at the end,
        // packet 12 again right after itself.
        let mut forged = esp[7].clone();
        *forged.last_mut().unwrap() ^= 1;
        let mut order: Vec<&[u8]> = esp.iter().map(Vec::as_slice).collect();
        order[7] = &forged;
        order.insert(13, &esp[12]);
        order.push(&esp[3]);
        assert_eq!(order.len(), BATCH_SIZE);
        let mut batch: Batch<PoolBuf> = Batch::new();
        for p in &order {
            batch.push(buf(p)).unwrap();
        }
        dec.process(&mut cx, &mut batch);
        let out: Vec<Vec<u8>> = batch.iter().map(|b| b.data().to_vec()).collect();
        let want: Vec<Vec<u8>> =
            inner.iter().enumerate().filter(|(i, _)| *i != 7).map(|(_, p)| p.clone()).collect();
        assert_eq!(out, want, "{name}: every genuine packet once, in order");
        assert_eq!(cx.counters.drops_of(DropReason::EspAuthFailed), 1, "{name}");
        assert_eq!(cx.counters.drops_of(DropReason::EspReplay), 2, "{name}");
        assert_eq!(dec.stats().decrypted, 29, "{name}");
    }
}
