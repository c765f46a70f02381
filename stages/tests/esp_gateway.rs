//! ESP inside the gateway pipeline, on `mem` ports: classify → ESP → forward, both ways.
//! Outbound: a cleartext frame from the LAN matches the SPD, is encapsulated and routed to the
//! peer by its *outer* address. Inbound: the peer's ESP frame is decapsulated and the inner
//! packet routed to the LAN host. Shows that the ESP stages keep `PacketMeta` right for the stages
//! after them, and how the lead's ipsec-gateway wires them. The gateway and the peer come from
//! the fixture shared with the AF_XDP and DPDK ESP tests (`wirespeed-test-esp`).

use wirespeed_core::backend::mem::{MemConfig, MemPort};
use wirespeed_core::{BufferPool, PacketBuf, Pipeline, PoolConfig, Port, ShardCtx};
use wirespeed_stages::esp::AeadAlgorithm;
use wirespeed_test_esp::{EspGateway, lan_frame, reply_frame};

const MAC_LAN: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa0];
const HOST: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf1];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xf2];

#[test]
fn gateway_encrypts_lan_traffic_and_decrypts_tunnel_traffic() {
    let mut gw = EspGateway::new(AeadAlgorithm::Aes256Gcm, HOST, PEER_MAC);
    let pool = BufferPool::new(PoolConfig { buffers: 512, ..PoolConfig::default() }).unwrap();
    let (mut port, h) =
        MemPort::new(MemConfig { name: "mem0".into(), mac: MAC_LAN, ..MemConfig::default() }, pool);
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut pipeline = Pipeline::new(rx, tx, gw.stages(MAC_LAN));
    let mut cx = ShardCtx::new(0);

    // Outbound: LAN host 10.0.1.5 → 10.9.0.9 gets encrypted and sent to the peer.
    let clear = lan_frame(MAC_LAN, 100, 0);
    h.inject(0, &clear).unwrap();
    assert_eq!(pipeline.run_once(&mut cx), 1);
    let out = h.drain_tx(0);
    assert_eq!(out.len(), 1, "{}", cx.counters);
    EspGateway::assert_encrypted(&out[0], PEER_MAC);

    // The peer's view of it: its inbound SA decrypts our packet to the original.
    let mut pb = pool.alloc().unwrap();
    pb.copy_from(&out[0]).unwrap();
    gw.peer_decrypt(&mut pb, cx.now);
    assert_eq!(&pb.data()[14..], &clear[14..], "inner packet intact (its TTL is the sender's)");

    // Inbound: the peer sends 10.9.0.9 → 10.0.1.5 in SPI 0x2001; it comes out to the host.
    let reply = reply_frame(MAC_LAN, 300, 0);
    let mut rb = pool.alloc().unwrap();
    rb.copy_from(&reply).unwrap();
    gw.peer_encrypt(&mut rb, cx.now);
    h.inject(0, rb.data()).unwrap();
    assert_eq!(pipeline.run_once(&mut cx), 1);
    let out = h.drain_tx(0);
    assert_eq!(out.len(), 1, "{}", cx.counters);
    EspGateway::assert_decrypted(&out[0], &reply, HOST);
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
}

// Compile-time check: the gateway's pipeline, with a report closure, is `Send` (it can be built
// on the control thread and moved to its shard).
const _: fn() = || {
    fn assert_send<T: Send>() {}
    fn with_report(
        p: Pipeline<
            wirespeed_core::backend::mem::MemRx,
            wirespeed_core::backend::mem::MemTx,
            wirespeed_test_esp::GatewayStages,
        >,
    ) -> impl Send {
        p.with_report(|s| s.get::<wirespeed_stages::esp::EspEncrypt>().map(|e| *e.stats()))
    }
    assert_send::<
        Pipeline<
            wirespeed_core::backend::mem::MemRx,
            wirespeed_core::backend::mem::MemTx,
            wirespeed_test_esp::GatewayStages,
        >,
    >();
    let _ = with_report;
};
