//! Interoperability with an independent ESP implementation: scapy's `scapy.layers.ipsec`
//! (Debian's python3-scapy 2.5, on `cryptography`), driven through
//! `tests/esp_interop_peer.py`. Packets scapy encrypts must decrypt in wirespeed's
//! [`EspDecrypt`] to the original inner packet, and packets wirespeed's [`EspEncrypt`] produces
//! must decrypt in scapy — for AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305 (scapy 2.5 has
//! both AEADs natively), tunnel mode with IPv4 and IPv6 inner and outer headers (and mixed), with
//! and without RFC 3948 UDP encapsulation.
//!
//! Needs `/usr/bin/python3` with scapy (`apt-get install python3-scapy python3-cryptography`,
//! done by `.ci/run`). Without it the test fails with that instruction, unless
//! `WIRESPEED_SKIP_INTEROP=1` is set.

mod esp_common;

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use esp_common::{buf, hex, to_hex, udp4, udp6};
use wirespeed_core::epoch::Publisher;
use wirespeed_core::{Batch, PacketBuf, ShardCtx, Stage};
use wirespeed_stages::esp::*;

const PYTHON: &str = "/usr/bin/python3";

struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start() -> Option<Peer> {
        let probe = Command::new(PYTHON).args(["-c", "import scapy.layers.ipsec, cryptography"]).output();
        if !probe.as_ref().is_ok_and(|o| o.status.success()) {
            if std::env::var("WIRESPEED_SKIP_INTEROP").as_deref() == Ok("1") {
                eprintln!("esp_interop: scapy missing, skipped because WIRESPEED_SKIP_INTEROP=1");
                return None;
            }
            panic!(
                "the ESP interoperability test needs scapy for {PYTHON}: \
                 `apt-get install -y python3-scapy python3-cryptography` \
                 (or set WIRESPEED_SKIP_INTEROP=1 to skip it); probe said: {probe:?}"
            );
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/esp_interop_peer.py");
        let mut child = Command::new(PYTHON)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the scapy peer");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Some(Peer { child, stdin, stdout })
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        op: &str,
        alg: AeadAlgorithm,
        keymat: &[u8],
        spi: u32,
        seq: u64,
        src: IpAddr,
        dst: IpAddr,
        natt: bool,
        pkt: &[u8],
    ) -> Vec<u8> {
        let alg = match alg {
            AeadAlgorithm::Aes128Gcm | AeadAlgorithm::Aes256Gcm => "AES-GCM",
            AeadAlgorithm::ChaCha20Poly1305 => "CHACHA20-POLY1305",
        };
        let req = format!(
            "{{\"op\": \"{op}\", \"alg\": \"{alg}\", \"keymat\": \"{}\", \"spi\": {spi}, \"seq\": {seq}, \
             \"src\": \"{src}\", \"dst\": \"{dst}\", \"natt\": {natt}, \"pkt\": \"{}\"}}\n",
            to_hex(keymat),
            to_hex(pkt)
        );
        self.stdin.write_all(req.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let line = line.trim();
        match line.strip_prefix("{\"ok\": \"").and_then(|s| s.strip_suffix("\"}")) {
            Some(h) => hex(h),
            None => panic!("scapy {op} failed: {line}"),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keymat(alg: AeadAlgorithm, seed: u8) -> Vec<u8> {
    (0..alg.keymat_len()).map(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7)).collect()
}

fn inner_packets(v6: bool) -> Vec<Vec<u8>> {
    // Lengths chosen so every padding amount (0..=3) occurs, plus a 1400-byte payload.
    [0usize, 1, 2, 3, 17, 64, 1400]
        .iter()
        .map(|&n| {
            let payload: Vec<u8> = (0..n).map(|i| (i * 13 + 5) as u8).collect();
            if v6 {
                udp6(
                    [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                    [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                    1234,
                    5678,
                    &payload,
                )
            } else {
                udp4([10, 0, 0, 1], [10, 9, 0, 9], 1234, 5678, &payload)
            }
        })
        .collect()
}

fn run_case(peer: &mut Peer, alg: AeadAlgorithm, inner_v6: bool, outer_v6: bool, natt: bool) -> usize {
    let (gw, remote): (IpAddr, IpAddr) = if outer_v6 {
        ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap())
    } else {
        ("192.0.2.1".parse().unwrap(), "198.51.100.7".parse().unwrap())
    };
    let km_out = keymat(alg, 1);
    let km_in = keymat(alg, 2);
    let mut out_cfg = SaConfig::tunnel(0x5001, Direction::Outbound { shard: 0 }, alg, &km_out, gw, remote);
    let mut in_cfg = SaConfig::tunnel(0x6001, Direction::Inbound, alg, &km_in, gw, remote);
    if natt {
        out_cfg.udp_encap = Some(UdpEncap::default());
        in_cfg.udp_encap = Some(UdpEncap::default());
    }
    let any = if inner_v6 { IpPrefix::any_v6() } else { IpPrefix::any_v4() };
    let spd = Spd::new(vec![SecurityPolicy {
        selector: Selector::between(any, any),
        action: PolicyAction::Protect { spis: vec![0x5001] },
    }]);
    let set = SaSet::new(
        [
            Arc::new(SecurityAssociation::new(&out_cfg).unwrap()),
            Arc::new(SecurityAssociation::new(&in_cfg).unwrap()),
        ],
        &spd,
    )
    .unwrap();
    let mut publisher = Publisher::new(set);
    let mut enc = EspEncrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
    let mut dec = EspDecrypt::new(publisher.subscribe()).with_framing(Framing::Ip);
    let mut cx = ShardCtx::new(0);
    let mut n = 0;
    for (i, inner) in inner_packets(inner_v6).iter().enumerate() {
        let seq = i as u64 + 1;
        // scapy → wirespeed.
        let esp = peer.call("encrypt", alg, &km_in, 0x6001, seq, remote, gw, natt, inner);
        let mut batch: Batch<_> = Batch::new();
        batch.push(buf(&esp)).unwrap();
        dec.process(&mut cx, &mut batch);
        assert_eq!(batch.len(), 1, "{alg:?} v6={inner_v6}/{outer_v6} natt={natt}: dropped: {}", cx.counters);
        assert_eq!(to_hex(batch.as_slice()[0].data()), to_hex(inner), "scapy → wirespeed, {alg:?}");
        // wirespeed → scapy.
        let mut batch: Batch<_> = Batch::new();
        batch.push(buf(inner)).unwrap();
        enc.process(&mut cx, &mut batch);
        assert_eq!(batch.len(), 1, "encrypt dropped: {}", cx.counters);
        let wire = batch.as_slice()[0].data().to_vec();
        let plain = peer.call("decrypt", alg, &km_out, 0x5001, seq, gw, remote, natt, &wire);
        assert_eq!(to_hex(&plain), to_hex(inner), "wirespeed → scapy, {alg:?}");
        n += 2;
    }
    assert_eq!(cx.counters.total_drops(), 0);
    n
}

#[test]
fn scapy_interop_both_directions() {
    let Some(mut peer) = Peer::start() else { return };
    let mut packets = 0;
    for alg in [AeadAlgorithm::Aes128Gcm, AeadAlgorithm::Aes256Gcm, AeadAlgorithm::ChaCha20Poly1305] {
        for (inner_v6, outer_v6) in [(false, false), (true, true), (false, true), (true, false)] {
            for natt in [false, true] {
                packets += run_case(&mut peer, alg, inner_v6, outer_v6, natt);
            }
        }
    }
    assert_eq!(packets, 3 * 4 * 2 * 7 * 2);
}
