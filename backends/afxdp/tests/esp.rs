//! ESP round trip on AF_XDP: the ESP gateway stages (classify → ESP decrypt → ESP encrypt →
//! forward) run unchanged on UMEM frames. The peer namespace plays both the LAN host and the
//! remote tunnel end: it sends a cleartext frame, which must come back as ESP that the peer's
//! SA decrypts to the original; then it sends ESP, which must come back decrypted and routed.
#![cfg(target_os = "linux")]

mod common;

use wirespeed_core::PoolConfig;
use wirespeed_test_esp::{lan_frame, reply_frame};

#[test]
fn esp_round_trip_through_the_gateway_stages() {
    require_kernel!();
    let veth = common::Veth::new(1);
    let gw_mac = veth.local_mac();
    // Outbound: 10.0.1.5 → 10.9.0.9 leaves as ESP to the peer. Inbound: the peer's ESP for
    // 10.9.0.9 → 10.0.1.5 comes back decrypted, TTL one less.
    common::esp::round_trip(
        &veth,
        PoolConfig { buffers: 64, ..PoolConfig::default() },
        lan_frame(gw_mac, 200, 0),
        reply_frame(gw_mac, 300, 0),
        |f| assert_eq!(&f[6..12], &gw_mac),
        |_| {},
    );
}
