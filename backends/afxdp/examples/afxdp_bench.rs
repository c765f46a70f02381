//! The wirespeed side of the AF_XDP forwarding comparison (`tools/afxdp-bench.sh`): one shard
//! of the core runtime forwarding queue 0 of `IN` to queue 0 of `OUT` through AF_XDP — the same
//! per-packet work as the C peer `benches/peers/afxdp_fwd.c` (each frame copied into a frame of
//! OUT's UMEM by the Tx queue, MAC addresses swapped), copy-mode sockets with need_wakeup.
//! Root only; the script runs it inside the forwarder's network namespace.
//!
//! With `esp` the shard runs the ESP gateway's stages instead (classify → ESP decrypt → ESP
//! encrypt (AES-256-GCM) → forward, the `wirespeed-test-esp` fixture): frames from the LAN host
//! 10.0.1.5 to the remote network 10.9.0.0/16 leave OUT encrypted in a tunnel to the peer —
//! what a tunnel costs over real I/O.
//!
//! ```text
//! afxdp_bench IN OUT drv|skb [IDLE] [CPU] [swap|esp]
//! IDLE: spin (default) | busy-poll | block | adaptive;  CPU: core of the shard (default 0)
//! ```
//!
//! Prints `wirespeed rx N tx N txfull N drops N` (cumulative) every second until killed.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("afxdp_bench: AF_XDP is Linux only");
}

#[cfg(target_os = "linux")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig, XdpBuf, XdpMode};
    use wirespeed_core::runtime::{IdlePolicy, Pinning, Runtime, RuntimeConfig};
    use wirespeed_core::{DropReason, LoopOptions, PacketBuf, PerPacket, Pipeline, Port, ShardCtx, Verdict};

    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: afxdp_bench IN OUT drv|skb [spin|busy-poll|block|adaptive] [CPU]".into());
    }
    let mode = match args[3].as_str() {
        "drv" => XdpMode::Copy,
        "skb" => XdpMode::Skb,
        other => return Err(format!("mode {other}: want drv or skb").into()),
    };
    let idle: IdlePolicy = args.get(4).map_or(Ok(IdlePolicy::Spin), |s| s.parse())?;
    let cpu: usize = args.get(5).map_or(Ok(0), |s| s.parse())?;
    let esp = match args.get(6).map(String::as_str) {
        None | Some("swap") => false,
        Some("esp") => true,
        Some(other) => return Err(format!("work {other}: want swap or esp").into()),
    };

    let open = |name: &str| -> Result<AfXdpPort, Box<dyn std::error::Error>> {
        let mut cfg = AfXdpPortConfig::new(name);
        cfg.mode = mode;
        Ok(AfXdpPort::open(cfg)?)
    };
    let (mut input, mut output) = (open(&args[1])?, open(&args[2])?);
    let (in_rx, in_tx) = input.queue_pair(0)?;
    let (out_rx, out_tx) = output.queue_pair(0)?;
    println!(
        "wirespeed: {} -> {}; {}; {}; idle {idle}; {}",
        args[1],
        args[2],
        input.report(),
        output.report(),
        if esp { "ESP gateway stages (AES-256-GCM)" } else { "MAC swap" }
    );
    let cfg = RuntimeConfig {
        shards: 1,
        pinning: Pinning::Cores(vec![cpu]),
        loop_options: LoopOptions { idle, ..LoopOptions::default() },
        name: "wirespeed-fwd".into(),
        ..RuntimeConfig::default()
    };
    let swap = PerPacket(|_: &mut ShardCtx, p: &mut XdpBuf| {
        let d = p.data_mut();
        for i in 0..6 {
            d.swap(i, i + 6);
        }
        Verdict::Continue
    });
    // The gateway's tables (for `esp`) live as long as the run. The LAN host and the tunnel
    // peer get any MACs: the sink counts every frame.
    let (host, peer) = ([0x02, 0, 0, 0, 0, 0x05], [0x02, 0, 0, 0, 0, 0x07]);
    let mut gw =
        wirespeed_test_esp::EspGateway::new(wirespeed_stages::esp::AeadAlgorithm::Aes256Gcm, host, peer);
    let rt = if esp {
        let stages = gw.stages(input.info().mac);
        Runtime::builder(cfg).shard(move |_| Pipeline::new(in_rx, out_tx, stages)).launch()?
    } else {
        Runtime::builder(cfg).shard(move |_| Pipeline::new(in_rx, out_tx, swap)).launch()?
    };
    // The halves the shard does not use stay open (their sockets carry the other direction).
    let _keep = (in_tx, out_rx, input, output, gw);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        if let Some(ctl) = rt.control(0) {
            let _ = ctl.send(wirespeed_core::Command::PublishStats);
        }
        let s = &rt.stats()[0].counters;
        println!(
            "wirespeed rx {} tx {} txfull {} rxfull {} drops {}",
            s.rx_packets,
            s.tx_packets,
            s.drops_of(DropReason::TxFull),
            s.drops_of(DropReason::RxRingFull),
            s.total_drops()
        );
    }
}
