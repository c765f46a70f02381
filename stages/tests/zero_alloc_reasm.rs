//! Zero heap allocation in IPv4 reassembly after warm-up: fragments in order and reversed,
//! duplicates, overlaps and datagrams left to time out, 10 000 rounds, counted by a global
//! allocator that counts allocations made on the test's thread.

use std::net::Ipv4Addr;
use std::time::Duration;

use wirespeed_alloc_counter::{CountingAlloc, allocations_during};
use wirespeed_core::wire::checksum::checksum;
use wirespeed_core::{Batch, BufferPool, DropReason, PacketBuf, PoolBuf, PoolConfig, ShardCtx, Stage};
use wirespeed_stages::classify::{Classify, ClassifyConfig};
use wirespeed_stages::reasm::{ReasmConfig, Reassemble};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// The frame of the fragment `[off, off + len)` of a 1500-byte ESP datagram `id` to 192.0.2.1.
fn fragment(id: u16, off: usize, len: usize, more: bool) -> Vec<u8> {
    let mut f = vec![0u8; 34 + len];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let h = &mut f[14..34];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&((off / 8) as u16 | if more { 0x2000 } else { 0 }).to_be_bytes());
    h[8] = 64;
    h[9] = 50;
    h[12..16].copy_from_slice(&[192, 0, 2, 2]);
    h[16..20].copy_from_slice(&[192, 0, 2, 1]);
    let c = checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    for (i, b) in f[34..].iter_mut().enumerate() {
        *b = (off + i) as u8 | 1;
    }
    f
}

#[test]
fn reassembly_allocates_nothing() {
    let pool = BufferPool::new(PoolConfig { buffers: 512, ..PoolConfig::default() }).unwrap();
    let cfg = ClassifyConfig { own_ipv4: vec![Ipv4Addr::new(192, 0, 2, 1)], ..ClassifyConfig::default() };
    let mut classify = Classify::new(cfg.clone());
    let mut stage =
        Reassemble::<PoolBuf>::new(cfg, ReasmConfig { contexts: 8, ..ReasmConfig::default() }).unwrap();
    let mut cx = ShardCtx::new(0);
    // One round: a datagram in order, one reversed with a duplicate, one overlapping, one
    // left incomplete (it times out on a later round).
    let round: Vec<Vec<Vec<u8>>> = vec![
        vec![fragment(1, 0, 800, true), fragment(1, 800, 680, false)],
        vec![fragment(2, 800, 680, false), fragment(2, 800, 680, false), fragment(2, 0, 800, true)],
        vec![fragment(3, 0, 800, true), fragment(3, 400, 800, true)],
        vec![fragment(4, 0, 800, true)],
    ];
    let mut batch: Batch<PoolBuf> = Batch::new();
    let mut out = 0u64;
    let mut once = |cx: &mut ShardCtx, batch: &mut Batch<PoolBuf>| {
        for frames in &round {
            for f in frames {
                let mut p = pool.alloc().expect("a buffer");
                p.copy_from(f).unwrap();
                batch.push(p).ok();
            }
            classify.process(cx, batch);
            stage.process(cx, batch);
            out += batch.len() as u64;
            batch.clear();
        }
        cx.now += Duration::from_secs(3);
    };
    for _ in 0..100 {
        once(&mut cx, &mut batch);
    }
    assert_eq!(allocations_during(|| drop(std::hint::black_box(Box::new(7u64)))), 1);
    let n = allocations_during(|| {
        for _ in 0..10_000 {
            once(&mut cx, &mut batch);
        }
    });
    assert_eq!(n, 0, "{n} heap allocations in 10 000 rounds");
    assert_eq!(out, 2 * 10_100, "{}", cx.counters);
    assert_eq!(cx.counters.drops_of(DropReason::ReasmDuplicate), 10_100);
    assert_eq!(cx.counters.drops_of(DropReason::ReasmOverlap), 2 * 10_100);
    // Every round's incomplete datagram times out on the next one.
    assert_eq!(cx.counters.drops_of(DropReason::ReasmTimeout), 10_099);
}
