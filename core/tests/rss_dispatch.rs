//! Steering, software dispatch, rebalancing and source-port choice, on real captures (the
//! tcpdump test corpus, testing/corpus/tcpdump) and deterministic synthetic traffic.

use std::net::IpAddr;
use std::path::PathBuf;

use wirespeed_core::IpPrefix;
use wirespeed_core::backend::mem::{MemConfig, MemPort};
use wirespeed_core::backend::{Port, RxQueue};
use wirespeed_core::batch::Batch;
use wirespeed_core::buf::PacketBuf;
use wirespeed_core::epoch::Publisher;
use wirespeed_core::pool::{BufferPool, PoolBuf, PoolConfig};
use wirespeed_core::rss::*;
use wirespeed_core::stats::ShardCtx;
use wirespeed_core::verdict::DropReason;
use wirespeed_pcap::{CaptureReader, LinkType};

fn corpus_dir() -> PathBuf {
    wirespeed_test_corpus::dir()
}

/// Every Ethernet frame of the classic-pcap files of the corpus, with the file name.
fn corpus_ethernet_frames() -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} unreadable ({e}); set WIRESPEED_CORPUS", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for p in names {
        // pcap and pcapng, through the pcap backend's reader; unreadable files are skipped (the
        // corpus holds deliberately broken ones), as are frames after a read error.
        let Ok(mut r) = CaptureReader::open(&p) else { continue };
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        while let Some(Ok(f)) = r.next_frame() {
            if f.link == LinkType::Ethernet && f.data.len() <= 2000 {
                out.push((name.clone(), f.data.to_vec()));
            }
        }
    }
    out
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// A plan that uses every action: management rules, a drop rule (LLDP), an ESP group, and
/// a default group.
fn test_plan() -> SteeringPlan {
    let mut plan = SteeringPlan::management_default(3, RssGroup::new(vec![0, 1, 2]), &[]);
    plan.rules.push(SteeringRule {
        name: "lldp".into(),
        matches: Match { ethertype: Some(0x88cc), ..Match::default() },
        action: SteeringAction::Drop,
    });
    plan.rules.push(SteeringRule {
        name: "esp".into(),
        matches: Match { ip_proto: Some(wirespeed_core::wire::ip_proto::ESP), ..Match::default() },
        action: SteeringAction::Rss(RssGroup { queues: vec![1, 2], reta_size: 64 }),
    });
    plan
}

/// The reference decision: bit-serial Toeplitz, first matching rule, RETA lookup — written
/// apart from the engine.
fn reference_queue(frame: &[u8], hasher: &RssHasher, plan: &SteeringPlan, reta: &Reta) -> Option<u16> {
    let info = PacketInfo::parse_ethernet(frame);
    let hash = info
        .tuple
        .and_then(|t| HashInput::build(&t, hasher.types(), hasher.mode()))
        .map(|i| toeplitz_reference(hasher.key(), i.as_bytes()))
        .unwrap_or(0);
    match plan.rules.iter().find(|r| r.matches.matches(&info)).map(|r| &r.action) {
        Some(SteeringAction::Queue(q)) => Some(*q),
        Some(SteeringAction::Drop) => None,
        Some(SteeringAction::Rss(g)) => Some(g.reta().expect("group").queue(hash)),
        None => Some(reta.queue(hash)),
    }
}

#[test]
fn dispatcher_matches_reference_on_corpus() {
    let frames = corpus_ethernet_frames();
    assert!(frames.len() > 5000, "only {} corpus frames", frames.len());
    let cfg = RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() };
    let hasher = RssHasher::new(&cfg).expect("config");
    let plan = test_plan();
    let engine = SteeringEngine::new(hasher.clone(), plan.clone(), 4).expect("plan");
    // A deliberately uneven default RETA, to catch an engine that ignores it.
    let reta = Reta::weighted(128, &[(0, 5), (1, 2), (2, 1)]).expect("reta");
    let mut publisher = Publisher::new(engine.default_reta().expect("reta"));
    let sub = publisher.subscribe();
    publisher.publish(reta.clone());

    let pool = BufferPool::new(PoolConfig { buffers: 2048, ..PoolConfig::default() }).expect("pool");
    let (mut port, handle) = MemPort::new(MemConfig { ring_size: 1024, ..MemConfig::default() }, pool);
    let (mut rx, _tx) = port.queue_pair(0).expect("queue");
    let fabric: DispatchFabric<PoolBuf> = DispatchFabric::new(1, 4, 64).expect("fabric");
    let mut disp =
        fabric.dispatcher(0, wirespeed_core::sync::Arc::new(engine), sub, Some(0)).expect("dispatcher");
    let mut receivers: Vec<_> = (0..4).map(|s| fabric.receiver(s).expect("receiver")).collect();

    let mut cx = ShardCtx::new(0);
    let mut delivered: Vec<Vec<u32>> = vec![Vec::new(); 4];
    let mut expected_drops = 0u64;
    let mut per_queue = [0u64; 4];
    for (chunk_start, chunk) in
        (0..frames.len()).step_by(512).map(|s| (s, &frames[s..(s + 512).min(frames.len())]))
    {
        for (_, f) in chunk {
            handle.inject(0, f).expect("inject");
        }
        let mut seq = chunk_start as u32;
        let mut batch: Batch<PoolBuf> = Batch::new();
        loop {
            let n = rx.rx_burst(&mut batch);
            if n == 0 {
                break;
            }
            for p in batch.iter_mut() {
                p.meta_mut().user = seq;
                seq += 1;
            }
            disp.dispatch(&mut cx, &mut batch);
            for p in batch.drain(..) {
                delivered[0].push(p.meta().user);
            }
            for (s, r) in receivers.iter_mut().enumerate() {
                let mut b: Batch<PoolBuf> = Batch::new();
                while r.rx_burst(&mut b) > 0 {
                    for p in b.drain(..) {
                        assert_eq!(p.data(), &frames[p.meta().user as usize].1[..], "bytes travel unchanged");
                        delivered[s].push(p.meta().user);
                    }
                }
            }
        }
    }
    // Every packet where the reference says, in order, none lost.
    let mut want: Vec<Vec<u32>> = vec![Vec::new(); 4];
    for (i, (_, f)) in frames.iter().enumerate() {
        match reference_queue(f, &hasher, &plan, &reta) {
            Some(q) => {
                want[usize::from(q)].push(i as u32);
                per_queue[usize::from(q)] += 1;
            }
            None => expected_drops += 1,
        }
    }
    for s in 0..4 {
        if delivered[s] != want[s] {
            let first = delivered[s].iter().zip(&want[s]).position(|(a, b)| a != b).unwrap_or(0);
            let idx = want[s].get(first).copied().unwrap_or(0) as usize;
            panic!("shard {s}: first difference at packet {idx} of {}", frames[idx].0);
        }
    }
    assert_eq!(cx.counters.drops_of(DropReason::SteeringDrop), expected_drops);
    assert_eq!(cx.counters.handed_off, per_queue[1] + per_queue[2] + per_queue[3]);
    assert_eq!(cx.counters.drops_of(DropReason::DispatchRingFull), 0);
    // The capture mix exercises every queue, management included.
    assert!(per_queue.iter().all(|&n| n > 100), "per queue {per_queue:?}");
    // Load counters saw every default-group packet.
    let in_default: u64 = disp.load().packets().iter().sum();
    assert!(in_default > 0 && in_default < frames.len() as u64);
    // End-of-input signalling.
    assert!(!receivers[1].at_end());
    disp.close();
    assert!(receivers.iter().all(|r| r.at_end()));
}

#[test]
fn full_ring_drops_are_counted() {
    let hasher = RssHasher::new(&RssConfig::default()).expect("config");
    // Everything to queue 1.
    let engine =
        SteeringEngine::new(hasher, SteeringPlan::rss_only(RssGroup::new(vec![1])), 2).expect("plan");
    let mut publisher = Publisher::new(engine.default_reta().expect("reta"));
    let fabric: DispatchFabric<PoolBuf> = DispatchFabric::new(1, 2, 1).expect("fabric");
    let mut disp = fabric
        .dispatcher(0, wirespeed_core::sync::Arc::new(engine), publisher.subscribe(), Some(0))
        .expect("dispatcher");
    let pool = BufferPool::new(PoolConfig::default()).expect("pool");
    let frame = wirespeed_core::backend::null::udp4_frame(128);
    let mut cx = ShardCtx::new(0);
    for _ in 0..3 {
        let mut b: Batch<PoolBuf> = Batch::new();
        for _ in 0..32 {
            let mut p = pool.alloc().expect("buffer");
            p.copy_from(&frame).expect("copy");
            let _ = b.push(p);
        }
        disp.dispatch(&mut cx, &mut b);
        assert!(b.is_empty());
    }
    // The ring holds one batch; the other two were dropped and counted.
    assert_eq!(cx.counters.handed_off, 32);
    assert_eq!(cx.counters.drops_of(DropReason::DispatchRingFull), 64);
    let mut rx = fabric.receiver(1).expect("receiver");
    let mut out: Batch<PoolBuf> = Batch::new();
    assert_eq!(rx.rx_burst(&mut out), 32);
}

#[test]
fn management_plan_routes_control_traffic() {
    let own = [ip("192.0.2.1"), ip("2001:db8::1")];
    let plan = SteeringPlan::management_default(7, RssGroup::first(4), &own);
    plan.validate(8).expect("valid");
    assert!(matches!(plan.validate(4), Err(RssError::QueueOutOfRange { queue: 7, .. })));
    let engine =
        SteeringEngine::new(RssHasher::new(&RssConfig::default()).expect("cfg"), plan, 8).expect("plan");
    let reta = engine.default_reta().expect("reta");
    let info = |tuple: FlowTuple, ethertype: u16| PacketInfo {
        ethertype,
        tuple: Some(tuple),
        ..PacketInfo::default()
    };
    let q = |p: &PacketInfo| engine.decide(p, &reta).queue();
    let v4 = |t| info(t, wirespeed_core::wire::ETHERTYPE_IPV4);
    let v6 = |t| info(t, wirespeed_core::wire::ETHERTYPE_IPV6);
    let peer = ip("198.51.100.9");
    // ARP.
    assert_eq!(
        q(&PacketInfo { ethertype: wirespeed_core::wire::ETHERTYPE_ARP, ..PacketInfo::default() }),
        Some(7)
    );
    // ICMP to us → mgmt; transit ICMP → data.
    let icmp = |d| FlowTuple {
        src: peer,
        dst: d,
        proto: wirespeed_core::wire::ip_proto::ICMP,
        l4: L4::Icmp { ty: 8, code: 0 },
    };
    assert_eq!(q(&v4(icmp(own[0]))), Some(7));
    assert!(q(&v4(icmp(ip("203.0.113.5")))).is_some_and(|x| x < 4));
    // ND from anyone → mgmt.
    let nd = FlowTuple {
        src: ip("fe80::2"),
        dst: ip("ff02::1"),
        proto: wirespeed_core::wire::ip_proto::ICMPV6,
        l4: L4::Icmp { ty: 135, code: 0 },
    };
    assert_eq!(q(&v6(nd)), Some(7));
    // IKE 500, IKE on 4500 with the marker → mgmt; ESP-in-UDP on 4500 → data.
    assert_eq!(q(&v4(FlowTuple::udp(peer, own[0], 500, 500))), Some(7));
    let mut ike_natt = v4(FlowTuple::udp(peer, own[0], 4500, 4500));
    ike_natt.non_esp_marker = true;
    assert_eq!(q(&ike_natt), Some(7));
    let natt = FlowTuple {
        src: peer,
        dst: own[0],
        proto: wirespeed_core::wire::ip_proto::UDP,
        l4: L4::UdpEsp { sport: 4500, dport: 4500, spi: 9 },
    };
    assert!(q(&v4(natt)).is_some_and(|x| x < 4));
    // SSH and BGP (both directions) to us → mgmt; SSH through us → data.
    assert_eq!(q(&v6(FlowTuple::tcp(ip("2001:db8::9"), own[1], 40000, 22))), Some(7));
    assert_eq!(q(&v4(FlowTuple::tcp(peer, own[0], 179, 40000))), Some(7));
    assert_eq!(q(&v4(FlowTuple::tcp(peer, own[0], 40000, 179))), Some(7));
    assert!(q(&v4(FlowTuple::tcp(peer, ip("203.0.113.5"), 40000, 22))).is_some_and(|x| x < 4));
}

#[test]
fn prefixes_and_ranges() {
    let p: IpPrefix = "10.1.0.0/16".parse().expect("prefix");
    assert!(p.contains(&ip("10.1.200.3")) && !p.contains(&ip("10.2.0.1")) && !p.contains(&ip("::1")));
    let z: IpPrefix = "::/0".parse().expect("prefix");
    assert!(z.contains(&ip("2001:db8::1")) && !z.contains(&ip("1.2.3.4")));
    assert!("10.0.0.0/33".parse::<IpPrefix>().is_err());
    assert!("banana".parse::<IpPrefix>().is_err());
    assert_eq!("192.0.2.1".parse::<IpPrefix>().expect("host").len, 32);
}

#[test]
fn reta_builders() {
    let rr = Reta::round_robin(8, 3).expect("reta");
    assert_eq!(rr.entries(), &[0, 1, 2, 0, 1, 2, 0, 1]);
    assert!(Reta::round_robin(12, 2).is_err());
    assert!(Reta::round_robin(1024, 2).is_err());
    let w = Reta::weighted(128, &[(0, 3), (1, 1)]).expect("reta");
    assert_eq!(w.entries().iter().filter(|q| **q == 0).count(), 96);
    // Interleaved, not in blocks: every window of 4 entries has queue 1 once.
    assert!(w.entries().chunks(4).all(|c| c.iter().filter(|q| **q == 1).count() == 1));
    let odd = Reta::weighted(64, &[(4, 1), (5, 1), (6, 1)]).expect("reta");
    let counts: Vec<usize> =
        [4, 5, 6].iter().map(|q| odd.entries().iter().filter(|e| *e == q).count()).collect();
    assert_eq!(counts.iter().sum::<usize>(), 64);
    assert!(counts.iter().all(|c| *c == 21 || *c == 22));
    assert!(Reta::weighted(64, &[(0, 0)]).is_err());
    assert_eq!(odd.queues(), vec![4, 5, 6]);
    assert!(odd.validate(6).is_err() && odd.validate(7).is_ok());
}

/// xorshift64*, so the synthetic traffic is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Skewed synthetic traffic (RETA entries of queue 0 get four times the new flows), rebalanced
/// every 50 ticks: the imbalance falls below 1.1 and no flow ever changes queue.
#[test]
fn rebalancer_evens_skewed_load_without_moving_flows() {
    let hasher = RssHasher::new(&RssConfig::default()).expect("config");
    let queues = [0u16, 1, 2, 3];
    let mut reta = Reta::round_robin(128, 4).expect("reta");
    let rebalancer = Rebalancer { idle: 10, max_moves: 4, target: 1.03, by_bytes: false };
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    struct Flow {
        tuple: FlowTuple,
        ends: u64,
        queue: Option<u16>,
    }
    let mut flows: Vec<Flow> = Vec::new();
    let mut load = RetaLoad::new(128);
    let mut window = [0u64; 4];
    let (mut first_window, mut moves_total) = (None, 0usize);
    let ticks = 30_000u64;
    for now in 0..ticks {
        // Two new flows per tick; a flow whose entry is not initially on queue 0 is kept only
        // one time in four, so queue 0's entries see four times the arrivals.
        let mut born = 0;
        while born < 2 {
            let t = FlowTuple::tcp(
                IpAddr::from((rng.next() as u32).to_be_bytes()),
                IpAddr::from((rng.next() as u32).to_be_bytes()),
                rng.below(65536) as u16,
                443,
            );
            let h = hasher.hash_tuple(&t).expect("hash");
            if !h.is_multiple_of(4) && rng.below(4) != 0 {
                continue;
            }
            flows.push(Flow { tuple: t, ends: now + 5 + rng.below(40), queue: None });
            born += 1;
        }
        // Every live flow sends one packet per tick (gaps of 1 < idle interval 10).
        for f in flows.iter_mut() {
            let h = hasher.hash_tuple(&f.tuple).expect("hash");
            let q = reta.queue(h);
            match f.queue {
                None => f.queue = Some(q),
                Some(prev) => assert_eq!(prev, q, "a flow changed queue mid-flow at tick {now}"),
            }
            load.record(reta.index(h), 100, now);
            window[usize::from(q)] += 1;
        }
        flows.retain(|f| f.ends > now);
        // The first 2000 ticks run unbalanced, to measure the skew.
        if now >= 2000 && now % 50 == 49 {
            let moves = rebalancer.rebalance(&mut reta, &queues, &load, now);
            for m in &moves {
                assert!(load.last_seen()[m.entry].is_none_or(|t| now - t >= 10), "moved a busy entry");
                assert_ne!(m.from, m.to);
            }
            moves_total += moves.len();
            load.decay();
        }
        if now % 2000 == 1999 {
            let im = imbalance(&window);
            eprintln!("tick {now}: per-queue packets {window:?}, imbalance {im:.3}");
            first_window.get_or_insert(im);
            window = [0; 4];
            if now + 1 == ticks {
                assert!(im < 1.1, "final imbalance {im:.3}");
            }
        }
    }
    let first = first_window.expect("measured");
    assert!(first > 1.5, "traffic was not skewed to begin with ({first:.3})");
    assert!(moves_total > 0);
}

#[test]
fn picked_source_port_brings_replies_home() {
    for mode in SymmetricMode::ALL {
        let hasher = RssHasher::new(&RssConfig { mode, ..RssConfig::default() }).expect("config");
        let reta = Reta::round_robin(128, 6).expect("reta");
        let template = FlowTuple::tcp(ip("192.0.2.1"), ip("198.51.100.7"), 0, 179);
        for wanted in 0..6 {
            let port = pick_source_port(&hasher, &reta, &template, wanted, 32768..=60999).expect("a port");
            assert!((32768..=60999).contains(&port));
            // The reply, as it will arrive: 198.51.100.7:179 → 192.0.2.1:port.
            let reply = FlowTuple::tcp(ip("198.51.100.7"), ip("192.0.2.1"), 179, port);
            let h = toeplitz_reference(
                hasher.key(),
                HashInput::build(&reply, hasher.types(), mode).expect("input").as_bytes(),
            );
            assert_eq!(reta.queue(h), wanted, "{mode:?}");
            // And it is the first such port.
            assert!((32768..port).all(|p| {
                let r = FlowTuple::tcp(ip("198.51.100.7"), ip("192.0.2.1"), 179, p);
                reta.queue(hasher.hash_tuple(&r).unwrap_or(0)) != wanted
            }));
        }
    }
    // Hash types without ports: every port hashes alike, so either the first works or none.
    let hasher =
        RssHasher::new(&RssConfig { types: HashTypes::IPV4, ..RssConfig::default() }).expect("config");
    let reta = Reta::round_robin(128, 6).expect("reta");
    let template = FlowTuple::tcp(ip("192.0.2.1"), ip("198.51.100.7"), 0, 179);
    let home = reta.queue(hasher.hash_tuple(&template.reversed()).unwrap_or(0));
    assert_eq!(pick_source_port(&hasher, &reta, &template, home, 1000..=1010), Some(1000));
    assert_eq!(pick_source_port(&hasher, &reta, &template, (home + 1) % 6, 1000..=1010), None);
    // Engine's decision for a packet agrees with the hasher + RETA directly.
    let engine =
        SteeringEngine::new(hasher.clone(), SteeringPlan::rss_only(RssGroup::first(6)), 6).expect("plan");
    let info = PacketInfo {
        ethertype: wirespeed_core::wire::ETHERTYPE_IPV4,
        tuple: Some(template.reversed()),
        ..PacketInfo::default()
    };
    assert!(matches!(engine.decide(&info, &reta), SteeringDecision::Queue { queue, .. } if queue == home));
}

/// A steering plan as the gateway's TOML configuration writes it, and back.
#[cfg(feature = "serde")]
#[test]
fn steering_plan_toml_round_trip() {
    let text = r#"
        [[rules]]
        name = "arp"
        match = { ethertype = 0x0806 }
        action = { queue = 3 }

        [[rules]]
        name = "ike"
        match = { ip_proto = 17, dst = "192.0.2.1", dst_port = { lo = 500, hi = 500 } }
        action = { queue = 3 }

        [[rules]]
        name = "tunnels"
        match = { ip_proto = 50, src = "198.51.100.0/24" }
        action = { rss = { queues = [1, 2], reta_size = 64 } }

        [[rules]]
        name = "lldp"
        match = { ethertype = 0x88cc }
        action = "drop"

        [default]
        queues = [0, 1, 2]
    "#;
    let plan: SteeringPlan = toml::from_str(text).expect("plan parses");
    assert_eq!(plan.rules.len(), 4);
    assert_eq!(plan.rules[0].action, SteeringAction::Queue(3));
    assert_eq!(plan.rules[1].matches.dst, Some(IpPrefix::host(ip("192.0.2.1"))));
    assert_eq!(plan.rules[2].matches.src, Some("198.51.100.0/24".parse().expect("prefix")));
    assert_eq!(plan.rules[2].action, SteeringAction::Rss(RssGroup { queues: vec![1, 2], reta_size: 64 }));
    assert_eq!(plan.rules[3].action, SteeringAction::Drop);
    assert_eq!(plan.default, RssGroup::new(vec![0, 1, 2]));
    plan.validate(4).expect("valid");
    let back: SteeringPlan = toml::from_str(&toml::to_string(&plan).expect("serialise")).expect("reparse");
    assert_eq!(back, plan);
    // The management default plan survives the trip too.
    let m = SteeringPlan::management_default(7, RssGroup::first(4), &[ip("2001:db8::1")]);
    let back: SteeringPlan = toml::from_str(&toml::to_string(&m).expect("serialise")).expect("reparse");
    assert_eq!(back, m);
    // Errors name the problem.
    let bad = toml::from_str::<SteeringPlan>(
        "[default]\nqueues = [0]\n[[rules]]\nname = \"x\"\naction = { queue = 1 }\nmatch = { dst = \"10.0.0.0/40\" }\n",
    );
    assert!(bad.is_err_and(|e| e.to_string().contains("10.0.0.0/40")));
    let cfg: RssConfig =
        toml::from_str("key = \"6d5a\"\nmode = \"or-xor\"\ntypes = [\"ipv4\", \"ipv4-esp\"]\n")
            .expect("rss config");
    assert_eq!(cfg.mode, SymmetricMode::OrXor);
    assert_eq!(cfg.key, SYMMETRIC_KEY.to_vec());
    assert_eq!(cfg.types, HashTypes::IPV4.union(HashTypes::IPV4_ESP));
    let back: RssConfig = toml::from_str(&toml::to_string(&cfg).expect("serialise")).expect("reparse");
    assert_eq!(back, cfg);
    let all: RssConfig = toml::from_str("types = [\"all\"]\nkey = \"ms\"").expect("config");
    assert_eq!(all, RssConfig::default());
    assert!(toml::from_str::<RssConfig>("types = [\"ipv5\"]").is_err_and(|e| e.to_string().contains("ipv5")));
    assert!(toml::from_str::<RssConfig>("key = \"xyz\"").is_err_and(|e| e.to_string().contains("xyz")));
}

/// An Rx-only shard ([`DispatchWorker`]) on its own thread
/// feeding three owner shards on theirs, through the shard runtime loop: every packet arrives
/// exactly once, at its owner, in order; the owners see the end of input and finish.
#[test]
fn dispatch_worker_feeds_owner_threads() {
    use wirespeed_core::runtime::{LoopOptions, ShardControl, run_shard};
    use wirespeed_core::sync::Arc as SArc;

    struct Owner {
        rx: DispatchRx<PoolBuf>,
        seen: Vec<(u32, u16)>,
        engine: SArc<SteeringEngine>,
        reta: Reta,
    }
    impl wirespeed_core::runtime::Worker for Owner {
        fn poll(&mut self, _cx: &mut ShardCtx) -> wirespeed_core::runtime::Poll {
            let mut b: Batch<PoolBuf> = Batch::new();
            let n = self.rx.rx_burst(&mut b);
            for p in b.drain(..) {
                let q = self.engine.decide_frame(p.data(), &self.reta).queue().unwrap_or(u16::MAX);
                self.seen
                    .push((u32::from_be_bytes([p.data()[26], p.data()[27], p.data()[28], p.data()[29]]), q));
            }
            match n {
                0 if self.rx.at_end() => wirespeed_core::runtime::Poll::Finished,
                0 => wirespeed_core::runtime::Poll::Idle,
                n => wirespeed_core::runtime::Poll::Busy(n),
            }
        }
    }

    let hasher = RssHasher::new(&RssConfig::default()).expect("config");
    let engine =
        SArc::new(SteeringEngine::new(hasher, SteeringPlan::rss_only(RssGroup::first(3)), 3).expect("plan"));
    let reta = engine.default_reta().expect("reta");
    let mut publisher = Publisher::new(reta.clone());
    let fabric: DispatchFabric<PoolBuf> = DispatchFabric::new(1, 3, 4).expect("fabric");
    let pool = BufferPool::new(PoolConfig { buffers: 8192, ..PoolConfig::default() }).expect("pool");
    let (mut port, handle) = MemPort::new(MemConfig { ring_size: 4096, ..MemConfig::default() }, pool);
    let (rx, _tx) = port.queue_pair(0).expect("queue");
    // 3000 frames, source address = sequence number.
    for i in 0..3000u32 {
        let mut f = wirespeed_core::backend::null::udp4_frame(80);
        f[26..30].copy_from_slice(&i.to_be_bytes());
        handle.inject(0, &f).expect("inject");
    }
    // The mem port is "live" (never at end); this one ends once everything injected was read.
    struct Finite(wirespeed_core::backend::mem::MemRx, wirespeed_core::backend::mem::MemHandle);
    impl RxQueue for Finite {
        type Buf = PoolBuf;
        fn rx_burst(&mut self, out: &mut Batch<PoolBuf>) -> usize {
            self.0.rx_burst(out)
        }
        fn at_end(&self) -> bool {
            self.1.rx_pending(0) == 0
        }
    }
    let worker = DispatchWorker::new(
        Finite(rx, handle.clone()),
        fabric.dispatcher(0, engine.clone(), publisher.subscribe(), None).expect("dispatcher"),
    );
    let opts = LoopOptions { exit_when_finished: true, ..LoopOptions::default() };
    let rx_thread = std::thread::spawn(move || {
        let ctl = ShardControl::new(0, 4);
        let mut w = worker;
        let mut cx = ShardCtx::new(0);
        run_shard(&ctl, &mut w, &mut cx, &opts);
        cx.counters
    });
    let owners: Vec<_> = (0..3)
        .map(|s| {
            let mut o = Owner {
                rx: fabric.receiver(s).expect("rx"),
                seen: Vec::new(),
                engine: engine.clone(),
                reta: reta.clone(),
            };
            std::thread::spawn(move || {
                let ctl = ShardControl::new(s, 4);
                let mut cx = ShardCtx::new(s);
                run_shard(&ctl, &mut o, &mut cx, &opts);
                o.seen
            })
        })
        .collect();
    let rx_counters = rx_thread.join().expect("rx shard");
    let mut total = 0;
    for (s, h) in owners.into_iter().enumerate() {
        let seen = h.join().expect("owner");
        assert!(seen.iter().all(|(_, q)| usize::from(*q) == s), "shard {s} got another's packet");
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "shard {s}: out of order");
        total += seen.len() as u64;
    }
    // A ring of 4 batches can fill while an owner is descheduled: those are counted drops.
    assert_eq!(total + rx_counters.drops_of(DropReason::DispatchRingFull), 3000);
    assert_eq!(rx_counters.handed_off, total);
    // Handed-off packets are received by their owners: the Rx shard keeps only what it dropped.
    assert_eq!(rx_counters.rx_packets + rx_counters.handed_off, 3000);
    assert_eq!(rx_counters.rx_packets, rx_counters.total_drops());
}

/// The whole loop: the dispatcher counts per-entry load and reports it; the control side
/// rebalances idle entries and publishes the new RETA by epoch; the dispatcher adopts it at its
/// next batch and the moved entries' new flows go to the cold queue.
#[test]
fn load_reports_drive_rebalancing_through_epoch() {
    use std::time::Duration;
    let hasher = RssHasher::new(&RssConfig::default()).expect("config");
    let engine = wirespeed_core::sync::Arc::new(
        SteeringEngine::new(
            hasher.clone(),
            SteeringPlan::rss_only(RssGroup { queues: vec![0, 1], reta_size: 8 }),
            2,
        )
        .expect("plan"),
    );
    let mut reta = engine.default_reta().expect("reta");
    let mut publisher = Publisher::new(reta.clone());
    let fabric: DispatchFabric<PoolBuf> = DispatchFabric::new(1, 2, 64).expect("fabric");
    let mut disp = fabric.dispatcher(0, engine.clone(), publisher.subscribe(), Some(0)).expect("dispatcher");
    let (tx, rx) = load_channel(8);
    disp.report_load(tx, 4);
    let pool = BufferPool::new(PoolConfig::default()).expect("pool");
    // Frames of flows that all hash to queue-0 entries under the initial RETA.
    let frames: Vec<Vec<u8>> = (1000..3000u16)
        .filter_map(|sport| {
            let mut f = wirespeed_core::backend::null::udp4_frame(64);
            f[34..36].copy_from_slice(&sport.to_be_bytes());
            let info = PacketInfo::parse_ethernet(&f);
            let h = hasher.hash_tuple(&info.tuple?)?;
            (reta.queue(h) == 0).then_some(f)
        })
        .take(32)
        .collect();
    assert_eq!(frames.len(), 32);
    let batch_of = |frames: &[Vec<u8>]| {
        let mut b: Batch<PoolBuf> = Batch::new();
        for f in frames {
            let mut p = pool.alloc().expect("buffer");
            p.copy_from(f).expect("copy");
            let _ = b.push(p);
        }
        b
    };
    let mut cx = ShardCtx::new(0);
    let t0 = cx.now;
    for _ in 0..4 {
        let mut b = batch_of(&frames);
        disp.dispatch(&mut cx, &mut b);
        assert_eq!(b.len(), 32, "all local (queue 0)");
    }
    assert_eq!(cx.counters.handed_off, 0);
    // The 4th batch sent the report of the first four; a 5th changes nothing about it.
    cx.now = t0 + Duration::from_millis(1);
    let mut b = batch_of(&frames[..1]);
    disp.dispatch(&mut cx, &mut b);
    let load = rx.take().expect("a report");
    assert_eq!(load.packets().iter().sum::<u64>(), 128);
    assert_eq!(load.per_queue(&reta, false), vec![128, 0]);
    // Control side: 1 s later every entry is idle; rebalance and publish.
    let rebalancer = Rebalancer { idle: 500_000_000, max_moves: 8, target: 1.05, by_bytes: false };
    let now = load.last_seen().iter().flatten().max().copied().unwrap_or(0) + 1_000_000_000;
    let moves = rebalancer.rebalance(&mut reta, &[0, 1], &load, now);
    rx.recycle(load);
    assert!(!moves.is_empty());
    assert!(moves.iter().all(|m| m.from == 0 && m.to == 1));
    let v = publisher.publish(reta.clone());
    // Next batch: the dispatcher adopts the new RETA; packets of moved entries go to shard 1.
    let moved: std::collections::HashSet<usize> = moves.iter().map(|m| m.entry).collect();
    let expect_moved = frames
        .iter()
        .filter(|f| {
            let h = hasher.hash_tuple(&PacketInfo::parse_ethernet(f).tuple.expect("tuple")).expect("hash");
            moved.contains(&reta.index(h))
        })
        .count() as u64;
    assert!(expect_moved > 0);
    let mut b = batch_of(&frames);
    disp.dispatch(&mut cx, &mut b);
    assert!(publisher.adopted_by_all(v));
    assert_eq!(cx.counters.handed_off, expect_moved);
    assert_eq!(b.len() as u64, 32 - expect_moved);
}

mod batch_hash {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn tuple() -> impl Strategy<Value = FlowTuple> {
        (
            any::<bool>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            0usize..6,
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
        )
            .prop_map(|(v6, s, d, kind, sp, dp, spi)| {
                let (src, dst) = if v6 {
                    (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)))
                } else {
                    let s4: [u8; 4] = s[..4].try_into().unwrap_or_default();
                    let d4: [u8; 4] = d[..4].try_into().unwrap_or_default();
                    (IpAddr::V4(Ipv4Addr::from(s4)), IpAddr::V4(Ipv4Addr::from(d4)))
                };
                match kind {
                    0 => FlowTuple::tcp(src, dst, sp, dp),
                    1 => FlowTuple::udp(src, dst, sp, dp),
                    2 => FlowTuple::esp(src, dst, spi),
                    3 => FlowTuple { src, dst, proto: 17, l4: L4::UdpEsp { sport: sp, dport: 4500, spi } },
                    4 => FlowTuple { src, dst, proto: 1, l4: L4::Icmp { ty: 8, code: 0 } },
                    _ => FlowTuple::ip(src, dst, 47),
                }
            })
    }

    proptest! {
        /// The batch path (inputs grouped by length, one batch Toeplitz per group) gives exactly
        /// the per-tuple hash, under every symmetric mode and with some hash types disabled, for
        /// any number of tuples (several rounds) with gaps.
        #[test]
        fn batch_hash_equals_per_tuple_hash(
            tuples in proptest::collection::vec(proptest::option::weighted(0.9, tuple()), 0..80),
            mode in 0usize..5,
            v4_only in any::<bool>(),
        ) {
            let mode = [SymmetricMode::None, SymmetricMode::Key, SymmetricMode::Xor, SymmetricMode::OrXor, SymmetricMode::Sort][mode];
            let types = if v4_only { HashTypes::from_names(&["ipv4", "ipv4-tcp", "ipv4-esp"]).unwrap() } else { HashTypes::ALL };
            let h = RssHasher::new(&RssConfig { mode, types, ..RssConfig::default() }).unwrap();
            let mut out = vec![Some(0xdead_beef); tuples.len()];
            h.hash_batch(&mut HashBatch::new(), tuples.iter().map(Option::as_ref), &mut out);
            for (t, o) in tuples.iter().zip(&out) {
                let want = t.as_ref().and_then(|t| h.hash_tuple(t));
                prop_assert_eq!(*o, want);
                if let Some(t) = t {
                    prop_assert_eq!(*o, h.hash_tuple_reference(t), "bit-serial reference");
                }
            }
        }
    }

    /// `decide_batch` makes the per-packet decisions on the corpus, rules included.
    #[test]
    fn decide_batch_equals_decide_on_corpus() {
        let frames = corpus_ethernet_frames();
        let hasher =
            RssHasher::new(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() }).unwrap();
        let engine = SteeringEngine::new(hasher, test_plan(), 4).unwrap();
        let reta = Reta::weighted(128, &[(0, 5), (1, 2), (2, 1)]).unwrap();
        let infos: Vec<PacketInfo> = frames.iter().map(|(_, f)| PacketInfo::parse_ethernet(f)).collect();
        let mut out = vec![SteeringDecision::Drop { rule: 0 }; infos.len()];
        engine.decide_batch(&infos, &reta, &mut DecideScratch::new(), &mut out);
        for (i, (p, d)) in infos.iter().zip(&out).enumerate() {
            assert_eq!(*d, engine.decide(p, &reta), "packet {i} of {}", frames[i].0);
        }
    }

    /// `decide_frames` (the dispatcher's fused parse + decide) makes the per-packet decisions on
    /// the corpus, with and without rules, under every symmetric mode and with the 4-tuple hash
    /// types on or off.
    #[test]
    fn decide_frames_equals_decide_on_corpus() {
        let frames = corpus_ethernet_frames();
        let reta = Reta::weighted(128, &[(0, 5), (1, 2), (2, 1)]).unwrap();
        for mode in [
            SymmetricMode::None,
            SymmetricMode::Key,
            SymmetricMode::Xor,
            SymmetricMode::OrXor,
            SymmetricMode::Sort,
        ] {
            for types in [HashTypes::ALL, HashTypes::from_names(&["ipv4", "ipv4-tcp", "ipv6"]).unwrap()] {
                for plan in [test_plan(), SteeringPlan::rss_only(RssGroup::first(3))] {
                    let hasher = RssHasher::new(&RssConfig { mode, types, ..RssConfig::default() }).unwrap();
                    let engine = SteeringEngine::new(hasher, plan, 4).unwrap();
                    let mut out = vec![SteeringDecision::Drop { rule: 0 }; frames.len()];
                    let n = engine.decide_frames(
                        frames.iter().map(|(_, f)| f.as_slice()),
                        &reta,
                        &mut DecideScratch::new(),
                        &mut out,
                    );
                    assert_eq!(n, frames.len());
                    for (i, ((name, f), d)) in frames.iter().zip(&out).enumerate() {
                        assert_eq!(
                            *d,
                            engine.decide(&PacketInfo::parse_ethernet(f), &reta),
                            "frame {i} ({name}), {mode:?}"
                        );
                    }
                }
            }
        }
    }

    proptest! {
        /// `decide_frames` equals parse-then-`decide` on IPv4/IPv6 frames with random header bytes
        /// (so the fast path's every check is crossed both ways: EtherType, version/IHL, fragment
        /// bits, protocol, NAT-T port, total length), any count (several rounds), any mode.
        #[test]
        fn decide_frames_equals_decide_on_mutated_frames(
            muts in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec((12usize..60, any::<u8>()), 0..4), 0usize..4),
                0..70,
            ),
            mode in 0usize..5,
            rules in any::<bool>(),
        ) {
            let mode = [SymmetricMode::None, SymmetricMode::Key, SymmetricMode::Xor, SymmetricMode::OrXor, SymmetricMode::Sort][mode];
            let hasher = RssHasher::new(&RssConfig { mode, ..RssConfig::default() }).unwrap();
            let plan = if rules { test_plan() } else { SteeringPlan::rss_only(RssGroup::first(4)) };
            let engine = SteeringEngine::new(hasher, plan, 4).unwrap();
            let reta = engine.default_reta().unwrap();
            let frames: Vec<Vec<u8>> = muts
                .iter()
                .map(|(tcp, edits, special)| {
                    let mut f = wirespeed_core::backend::null::udp4_frame(64);
                    if *tcp {
                        f[23] = 6;
                    }
                    match special {
                        1 => f[36..38].copy_from_slice(&4500u16.to_be_bytes()),
                        2 => f[20] |= 0x20, // more fragments
                        3 => f[16..18].copy_from_slice(&21u16.to_be_bytes()),
                        _ => {}
                    }
                    for &(at, v) in edits {
                        f[at] = v;
                    }
                    f
                })
                .collect();
            let mut out = vec![SteeringDecision::Drop { rule: 0 }; frames.len()];
            let n = engine.decide_frames(frames.iter().map(|f| f.as_slice()), &reta, &mut DecideScratch::new(), &mut out);
            prop_assert_eq!(n, frames.len());
            for (f, d) in frames.iter().zip(&out) {
                prop_assert_eq!(*d, engine.decide(&PacketInfo::parse_ethernet(f), &reta));
            }
        }
    }
}
