//! `[runtime] idle`: the shards' idle policy, from the configuration file.

use std::path::Path;

use ipsec_gateway::config::GatewayConfig;
use wirespeed_core::runtime::IdlePolicy;

fn mem_config(extra: &str) -> Result<GatewayConfig, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/mem.toml");
    let text = std::fs::read_to_string(&path).unwrap() + extra;
    GatewayConfig::from_toml(&text, path.parent(), "mem.toml").map_err(|e| e.to_string())
}

#[test]
fn idle_policy_is_read_and_defaults_to_spin() {
    assert_eq!(mem_config("").unwrap().idle, IdlePolicy::Spin);
    for (name, want) in [
        ("spin", IdlePolicy::Spin),
        ("busy-poll", IdlePolicy::BUSY_POLL),
        ("block", IdlePolicy::BLOCK),
        ("adaptive", IdlePolicy::ADAPTIVE),
    ] {
        let c = mem_config(&format!("\n[runtime]\nidle = \"{name}\"\n")).unwrap();
        assert_eq!(c.idle, want, "{name}");
    }
    let e = mem_config("\n[runtime]\nidle = \"doze\"\n").unwrap_err();
    assert!(e.contains("runtime.idle") && e.contains("doze"), "{e}");
}
