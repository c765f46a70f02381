//! The ESP round trip of the `esp` and `jumbo` tests: the ESP gateway stages of
//! `wirespeed-test-esp` (classify → ESP decrypt → ESP encrypt → forward) on an AF_XDP port on
//! the veth's local end, the LAN host and the tunnel peer both behind its peer end.

use std::time::{Duration, Instant};

use wirespeed_afxdp::peer::{RawSocket, enter_netns};
use wirespeed_afxdp::{AfXdpPort, AfXdpPortConfig};
use wirespeed_core::{BufferPool, PacketBuf, Pipeline, PoolConfig, Port, ShardCtx};
use wirespeed_stages::esp::AeadAlgorithm;
use wirespeed_test_esp::EspGateway;

use super::Veth;

/// Sends `frame` from the peer end of `veth` (inside its namespace) and returns the first frame
/// that comes back within 3 s.
fn exchange(veth: &Veth, frame: Vec<u8>) -> Option<Vec<u8>> {
    let (ns, dev) = (veth.ns.clone(), veth.peer.clone());
    std::thread::spawn(move || {
        enter_netns(&ns).unwrap();
        let s = RawSocket::open(&dev).unwrap();
        assert!(s.send(&frame).unwrap());
        let mut buf = vec![0u8; 16384];
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Some(n) = s.recv(&mut buf, 50).unwrap() {
                return Some(buf[..n].to_vec());
            }
        }
        None
    })
    .join()
    .unwrap()
}

/// One ESP round trip through the gateway stages (AES-256-GCM SAs) on an AF_XDP port on
/// `veth.local`; the peer's buffers come from a pool of `pool`.
///
/// Outbound: `clear` (a LAN host's frame to the gateway's MAC, `lan_frame`) must come back as
/// the gateway's ESP to the peer, which `check_gateway_esp` sees next and the peer decrypts to
/// `clear`. Inbound: the peer encrypts `reply` (`reply_frame`) into the
/// gateway's inbound SA, `check_peer_esp` sees that ESP frame, and it must come back decrypted
/// and forwarded to the LAN host. The gateway drops nothing and receives both frames.
pub fn round_trip(
    veth: &Veth,
    pool: PoolConfig,
    clear: Vec<u8>,
    reply: Vec<u8>,
    check_gateway_esp: impl FnOnce(&[u8]),
    check_peer_esp: impl FnOnce(&[u8]),
) {
    let (gw_mac, peer_mac) = (veth.local_mac(), veth.peer_mac());
    // The LAN host and the tunnel peer both sit behind the peer end of the veth.
    let host_mac = peer_mac;

    let mut gw = EspGateway::new(AeadAlgorithm::Aes256Gcm, host_mac, peer_mac);
    let mut port = AfXdpPort::open(AfXdpPortConfig::new(&veth.local)).unwrap();
    let (rx, tx) = port.queue_pair(0).unwrap();
    let mut pipeline = Pipeline::new(rx, tx, gw.stages(gw_mac));
    let mut cx = ShardCtx::new(0);
    let now = cx.now;
    let mut serve = |frame: Vec<u8>| {
        std::thread::scope(|s| {
            let peer_thread = s.spawn(|| exchange(veth, frame));
            while !peer_thread.is_finished() {
                pipeline.run_once(&mut cx);
            }
            peer_thread.join().unwrap()
        })
    };

    let f = serve(clear.clone()).expect("the encrypted frame came back");
    EspGateway::assert_encrypted(&f, peer_mac);
    check_gateway_esp(&f);
    let pool = BufferPool::new(pool).unwrap();
    let mut pb = pool.alloc().unwrap();
    pb.copy_from(&f).unwrap();
    gw.peer_decrypt(&mut pb, now);
    assert_eq!(&pb.data()[14..], &clear[14..], "the peer decrypts the original packet");

    let mut rb = pool.alloc().unwrap();
    rb.copy_from(&reply).unwrap();
    gw.peer_encrypt(&mut rb, now);
    check_peer_esp(rb.data());
    rb.data_mut()[0..6].copy_from_slice(&gw_mac);
    rb.data_mut()[6..12].copy_from_slice(&peer_mac);
    let f = serve(rb.data().to_vec()).expect("the decrypted frame came back");
    EspGateway::assert_decrypted(&f, &reply, host_mac);
    assert_eq!(cx.counters.total_drops(), 0, "{}", cx.counters);
    assert_eq!(cx.counters.rx_packets, 2);
}
