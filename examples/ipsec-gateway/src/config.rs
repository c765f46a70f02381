//! The gateway's configuration file: TOML read with serde into plain text-level structs
//! ([`FileConfig`]), then validated up front into a [`GatewayConfig`] whose fields are the
//! library's own types (addresses, prefixes, SA configs, steering plan). Every problem is a
//! [`ConfigError`] naming the key (`sa[2].key`) and the bad value, so `run` can refuse a broken
//! file before it touches a port (exit code 2), never panic on one.
//!
//! The format, key by key, is documented in the example files under `configs/`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wirespeed_core::rss::{HashTypes, RssConfig, RssGroup, SteeringPlan, SteeringRule, SymmetricMode};
use wirespeed_core::runtime::IdlePolicy;
use wirespeed_stages::esp::aead::{builtin_providers, fastest_provider};
use wirespeed_stages::esp::{
    AeadAlgorithm, Direction, EspMode, IpPrefix, Lifetime, Limits, PolicyAction, SaConfig,
    SecurityAssociation, SecurityPolicy, Selector, UdpEncap,
};

/// A configuration that cannot be used. Each variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A pcap input capture that cannot be opened (`check` and `run` look before starting).
    #[error("{key}: cannot open {}: {source}", path.display())]
    Input {
        /// The key: `interfaces.lan.port.input`.
        key: String,
        /// The capture, resolved against the configuration file's directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or a key the format does not have, or a value of the wrong type (the message
    /// from the TOML parser names the key and shows the line).
    #[error("{path}: {message}")]
    Syntax {
        /// The file (or `<text>`).
        path: String,
        /// What the parser said.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{key} = {value}: {reason}")]
    Invalid {
        /// Dotted key with indices: `sa[1].spi`.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A required key is absent.
    #[error("{key}: missing ({reason})")]
    Missing {
        /// The key.
        key: String,
        /// Why it is needed.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, value: impl std::fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
}

// ---------------------------------------------------------------------------------------------
// The file as written (serde).
// ---------------------------------------------------------------------------------------------

/// The configuration file as written: the TOML structure, values still text.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[gateway]`: name, shards, cores, stats interval, control socket.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// `[interfaces.lan]` and `[interfaces.wan]`.
    pub interfaces: Interfaces,
    /// `[rss]`.
    #[serde(default)]
    pub rss: RssSection,
    /// `[steering]`.
    #[serde(default)]
    pub steering: SteeringSection,
    /// `[management]`.
    #[serde(default)]
    pub management: ManagementSection,
    /// `[[routes]]`.
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
    /// `[[neighbors]]`.
    #[serde(default)]
    pub neighbors: Vec<NeighborEntry>,
    /// `[[policies]]` (the SPD, first match wins).
    #[serde(default)]
    pub policies: Vec<PolicyEntry>,
    /// `[[sa]]` (the static SAD).
    #[serde(default)]
    pub sa: Vec<SaEntry>,
    /// `[icmp]`: ICMP errors from the data plane.
    #[serde(default)]
    pub icmp: IcmpSection,
    /// `[keying]`: SAs from an IKE daemon besides `[[sa]]` ([`crate::keying`]).
    #[serde(default)]
    pub keying: crate::keying::KeyingSection,
    /// `[runtime]`: how the shards behave.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// `[reassembly]`: outer IPv4 and IPv6 reassembly before decryption.
    #[serde(default)]
    pub reassembly: ReassemblySection,
}

/// `[reassembly]`: outer IPv4 and IPv6 reassembly of ESP and UDP fragments addressed to the
/// gateway, before decryption (RFC 4301 §5.2), per data shard ([`wirespeed_stages::reasm`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReassemblySection {
    /// Reassemble (default true); false passes the fragments on (ESP drops them as malformed,
    /// UDP ones go to the control plane).
    pub enabled: bool,
    /// Datagrams reassembled at once per data shard: 1 to 1024, default 32.
    pub contexts: usize,
    /// Seconds a datagram may take to arrive whole, from its first fragment: 0.1 to 30,
    /// default 2.
    pub timeout: f64,
}

impl Default for ReassemblySection {
    fn default() -> Self {
        Self { enabled: true, contexts: 32, timeout: 2.0 }
    }
}

/// `[icmp]`: what the gateway answers with ICMP / ICMPv6 errors (Time Exceeded, Destination
/// Unreachable, Fragmentation Needed / Packet Too Big for packets that do not fit a tunnel).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IcmpSection {
    /// Send errors (default true); false drops those packets silently (counted).
    pub errors: bool,
    /// Errors per second per data shard and path (token bucket, burst the same): 0 (none) to
    /// [`MAX_ICMP_RATE`], default 100.
    pub rate: u32,
}

impl Default for IcmpSection {
    fn default() -> Self {
        Self { errors: true, rate: 100 }
    }
}

/// `[runtime]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// What an idle shard does: `spin` (lowest latency, a core per shard), `busy-poll` (spin,
    /// with the kernel's preferred busy polling on AF_XDP sockets), `block` (sleep until
    /// traffic arrives: next to no CPU when idle) or `adaptive` (spin briefly, then block).
    pub idle: String,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self { idle: "spin".into() }
    }
}

/// `[gateway]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// Name shown in logs and metrics.
    pub name: String,
    /// Data shards (threads); the control plane runs on one more.
    pub shards: usize,
    /// Cores to pin the data shards to (one per shard); empty: the runtime's default.
    pub cores: Vec<usize>,
    /// Seconds between stats lines (0: none).
    pub stats_interval: f64,
    /// Unix socket for live SA and route updates (none when absent).
    pub control_socket: Option<PathBuf>,
    /// Group (numeric gid) allowed to use the control socket besides root and the gateway's
    /// own user; the socket is then `0660` and owned by it (else `0600`).
    pub control_group: Option<u32>,
    /// Buffers in the pool.
    pub buffers: usize,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            name: "ipsec-gateway".into(),
            shards: 2,
            cores: Vec::new(),
            stats_interval: 1.0,
            control_socket: None,
            control_group: None,
            buffers: 8192,
        }
    }
}

/// `[interfaces]`: the two sides of the gateway.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Interfaces {
    /// The protected side (cleartext).
    pub lan: InterfaceEntry,
    /// The untrusted side (ESP).
    pub wan: InterfaceEntry,
}

impl Default for Interfaces {
    fn default() -> Self {
        Self {
            lan: InterfaceEntry {
                mac: "02:00:00:00:00:01".into(),
                addresses: Vec::new(),
                port: PortConfig::Mem(MemPortConfig::default()),
            },
            wan: InterfaceEntry {
                mac: "02:00:00:00:00:02".into(),
                addresses: Vec::new(),
                port: PortConfig::Mem(MemPortConfig::default()),
            },
        }
    }
}

/// `[interfaces.lan]` / `[interfaces.wan]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InterfaceEntry {
    /// This gateway's MAC on the interface.
    pub mac: String,
    /// Own addresses with prefix length (`"10.1.0.1/16"`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The backend and its settings.
    pub port: PortConfig,
}

/// `[interfaces.X.port]`: which backend carries the interface, tagged by `backend`. AF_XDP and
/// DPDK take their backend crate's own settings struct.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum PortConfig {
    /// Capture files (offline) or, with the `live` feature, a live interface through libpcap.
    Pcap(PcapPortConfig),
    /// In-memory queues: tests and embedding (frames injected and collected by the caller).
    Mem(MemPortConfig),
    /// A Linux interface through AF_XDP sockets (`wirespeed-afxdp`): `interface`, `queues`,
    /// `mode` and the rest of [`wirespeed_afxdp::AfXdpPortConfig`]. `port_id` is set by the
    /// gateway (0 for LAN, 1 for WAN).
    Afxdp(wirespeed_afxdp::AfXdpPortConfig),
    /// A DPDK ethdev (`wirespeed-dpdk`): `eal` arguments, `device`, `queues` and the rest of
    /// `wirespeed_dpdk::DpdkPortConfig`. `port_index` is set by the gateway.
    #[cfg(feature = "dpdk")]
    Dpdk(wirespeed_dpdk::DpdkPortConfig),
    /// `backend = "dpdk"` in a binary built without the `dpdk` feature: parsed so that validation
    /// can say how to get it, never opened.
    #[cfg(not(feature = "dpdk"))]
    Dpdk(DpdkNotBuilt),
}

/// The settings of a `backend = "dpdk"` port when ipsec-gateway is built without its `dpdk`
/// feature: accepted by the parser and refused by validation with that reason.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct DpdkNotBuilt {}

impl<'de> Deserialize<'de> for DpdkNotBuilt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Self {})
    }
}

/// `backend = "mem"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MemPortConfig {
    /// Frames each Rx and Tx queue holds.
    pub ring_size: usize,
}

impl Default for MemPortConfig {
    fn default() -> Self {
        Self { ring_size: 1024 }
    }
}

impl PortConfig {
    /// The backend's name as written in the file.
    pub fn backend(&self) -> &'static str {
        match self {
            PortConfig::Pcap(_) => "pcap",
            PortConfig::Mem(_) => "mem",
            PortConfig::Afxdp(_) => "afxdp",
            PortConfig::Dpdk(_) => "dpdk",
        }
    }
}

/// `backend = "pcap"`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PcapPortConfig {
    /// Capture to read (offline); spread over the shards by the steering plan.
    pub input: Option<PathBuf>,
    /// Capture to write (one file for all shards).
    pub output: Option<PathBuf>,
    /// Live interface (needs the binary built with the `live` feature).
    pub iface: Option<String>,
}

/// `[rss]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RssSection {
    /// `"ms"` (Microsoft key), `"6d5a"` or hex bytes.
    pub key: String,
    /// `none`, `key`, `xor`, `or-xor`, `sort`.
    pub symmetric: String,
    /// Hash type names (`ipv4-esp`, ...) or `["all"]`.
    pub hash_types: Vec<String>,
    /// RETA entries (power of two).
    pub reta_size: usize,
}

impl Default for RssSection {
    fn default() -> Self {
        Self { key: "ms".into(), symmetric: "sort".into(), hash_types: vec!["all".into()], reta_size: 128 }
    }
}

/// `[steering]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SteeringSection {
    /// Extra rules ahead of the management rules (the library's `SteeringRule` format).
    pub rules: Vec<SteeringRule>,
}

/// `[management]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ManagementSection {
    /// Interface the control plane answers on (`lan` or `wan`).
    pub interface: String,
    /// TCP port of the HTTP endpoint (`GET /metrics`).
    pub http_port: u16,
    /// IPv4 default gateway of the management interface.
    pub gateway_v4: Option<String>,
    /// IPv6 default gateway of the management interface.
    pub gateway_v6: Option<String>,
    /// Also serve `/metrics` on the host's network stack at this address (`"127.0.0.1:9100"`).
    pub host_listen: Option<String>,
}

impl Default for ManagementSection {
    fn default() -> Self {
        Self {
            interface: "lan".into(),
            http_port: 9000,
            gateway_v4: None,
            gateway_v6: None,
            host_listen: None,
        }
    }
}

/// `[[routes]]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// Destination prefix.
    pub prefix: String,
    /// Next-hop router; absent: directly connected.
    pub via: Option<String>,
}

/// `[[neighbors]]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NeighborEntry {
    /// Its address.
    pub ip: String,
    /// Its MAC.
    pub mac: String,
    /// Where it is (`lan` or `wan`).
    pub interface: String,
}

/// `[[policies]]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// Name (inbound SAs refer to it).
    pub name: String,
    /// Inner source prefix (LAN side).
    pub src: String,
    /// Inner destination prefix (remote side).
    pub dst: String,
    /// IP protocol number; absent: any.
    pub proto: Option<u8>,
    /// Source port range `[lo, hi]`; absent: any.
    pub src_ports: Option<[u16; 2]>,
    /// Destination port range; absent: any.
    pub dst_ports: Option<[u16; 2]>,
    /// `protect`, `bypass` or `discard`.
    pub action: String,
    /// Protect: the outbound SAs (one per shard), by SPI.
    #[serde(default)]
    pub sas: Vec<u32>,
}

/// `[[sa]]`: one static SA.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SaEntry {
    /// SPI (TOML allows `0x4000`).
    pub spi: u32,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Outbound: the shard that alone uses the SA.
    pub shard: Option<usize>,
    /// `aes128gcm`, `aes256gcm` or `chacha20poly1305`.
    pub aead: String,
    /// Key material (key ‖ 4-byte salt) as hex.
    pub key: Option<String>,
    /// Or a file holding it as hex (relative paths are relative to the config file).
    pub key_file: Option<PathBuf>,
    /// `tunnel` or `transport`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Tunnel: this gateway's address (outer source outbound, outer destination inbound).
    pub local: Option<String>,
    /// Tunnel: the peer's address.
    pub remote: Option<String>,
    /// UDP encapsulation (NAT-T) port of outbound packets; absent: plain ESP.
    pub nat_t_port: Option<u16>,
    /// Extended sequence numbers.
    #[serde(default)]
    pub esn: bool,
    /// Anti-replay window in packets (inbound).
    pub replay_window: Option<u32>,
    /// Inbound: the policy whose traffic this SA may carry (decrypted packets must match its
    /// selector reversed); absent: any inner packet.
    pub policy: Option<String>,
    /// Lifetimes.
    #[serde(default)]
    pub lifetime: LifetimeEntry,
    /// AEAD provider: `fastest` (default: the fastest compiled in for this CPU), or a provider
    /// name (`rustcrypto`; `ring` with the `accel` feature).
    pub provider: Option<String>,
    /// Outer MTU: packets whose encapsulation would exceed it are answered with ICMP
    /// Fragmentation Needed / Packet Too Big (`[icmp]`) or dropped, and counted.
    pub mtu: Option<u16>,
    /// Clamp the MSS option of TCP SYN segments through this SA to at most this value.
    #[serde(default)]
    pub mss_clamp: Option<u16>,
    /// Outbound with an `mtu`: fragment IPv4 packets with DF clear that do not fit before
    /// encryption, each fragment its own ESP packet (default true, as Linux does); false
    /// drops them (`esp_mtu_exceeded`).
    #[serde(default = "default_true")]
    pub fragment: bool,
}

fn default_true() -> bool {
    true
}

fn default_mode() -> String {
    "tunnel".into()
}

/// `lifetime = { soft_packets = ..., hard_seconds = ... }`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LifetimeEntry {
    /// Soft limit: packets.
    pub soft_packets: Option<u64>,
    /// Soft limit: bytes.
    pub soft_bytes: Option<u64>,
    /// Soft limit: seconds.
    pub soft_seconds: Option<u64>,
    /// Hard limit: packets.
    pub hard_packets: Option<u64>,
    /// Hard limit: bytes.
    pub hard_bytes: Option<u64>,
    /// Hard limit: seconds.
    pub hard_seconds: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// The validated configuration.
// ---------------------------------------------------------------------------------------------

/// Which side of the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// Protected (cleartext) side: output port 0.
    Lan = 0,
    /// Untrusted (ESP) side: output port 1.
    Wan = 1,
}

impl Side {
    /// The output port index the forward stage uses for this side.
    pub const fn port(self) -> u16 {
        self as u16
    }

    /// `lan` / `wan`.
    pub const fn name(self) -> &'static str {
        match self {
            Side::Lan => "lan",
            Side::Wan => "wan",
        }
    }

    fn parse(key: &str, s: &str) -> Result<Self, ConfigError> {
        match s {
            "lan" => Ok(Side::Lan),
            "wan" => Ok(Side::Wan),
            _ => Err(invalid(key, format!("{s:?}"), "want \"lan\" or \"wan\"")),
        }
    }
}

/// One interface, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// MAC.
    pub mac: [u8; 6],
    /// Own addresses with prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Backend settings.
    pub port: PortConfig,
}

/// A route, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination.
    pub prefix: IpPrefix,
    /// Next hop (`None`: connected).
    pub via: Option<IpAddr>,
}

/// A static neighbor, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborConfig {
    /// Address.
    pub ip: IpAddr,
    /// MAC.
    pub mac: [u8; 6],
    /// Side.
    pub side: Side,
}

/// A named SPD entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPolicy {
    /// Name.
    pub name: String,
    /// The policy.
    pub policy: SecurityPolicy,
}

/// The management plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Management {
    /// Interface the control plane answers on.
    pub side: Side,
    /// TCP port of `/metrics`.
    pub http_port: u16,
    /// Default gateways.
    pub gateway_v4: Option<std::net::Ipv4Addr>,
    /// IPv6 default gateway.
    pub gateway_v6: Option<std::net::Ipv6Addr>,
    /// Host-side `/metrics` listener.
    pub host_listen: Option<std::net::SocketAddr>,
}

/// A complete, checked configuration: everything `gateway::build` needs.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Name.
    pub name: String,
    /// Data shards.
    pub shards: usize,
    /// Core per shard (empty: default placement).
    pub cores: Vec<usize>,
    /// Stats line interval (`None`: no stats lines).
    pub stats_interval: Option<Duration>,
    /// Unix control socket.
    pub control_socket: Option<PathBuf>,
    /// Group allowed on the control socket (besides root and the gateway's user).
    pub control_group: Option<u32>,
    /// Buffers in the pool.
    pub buffers: usize,
    /// LAN interface.
    pub lan: Interface,
    /// WAN interface.
    pub wan: Interface,
    /// RSS key, mode and hash types.
    pub rss: RssConfig,
    /// RETA size.
    pub reta_size: usize,
    /// Steering plan of each port: extra rules, then management traffic to queue `shards`,
    /// then RSS over the data queues `0..shards`.
    pub steering: SteeringPlan,
    /// Management plane.
    pub management: Management,
    /// Routes.
    pub routes: Vec<Route>,
    /// Static neighbors.
    pub neighbors: Vec<NeighborConfig>,
    /// The SPD.
    pub policies: Vec<NamedPolicy>,
    /// The SAD.
    pub sas: Vec<SaConfig>,
    /// ICMP errors: `Some(rate)` per second per shard and path when enabled.
    pub icmp_rate: Option<u32>,
    /// Where more SAs come from (`[keying]`).
    pub keying: crate::keying::Keying,
    /// What idle shards do (`[runtime] idle`).
    pub idle: IdlePolicy,
    /// Outer IPv4 and IPv6 reassembly (`[reassembly]`; `None`: off).
    pub reassembly: Option<wirespeed_stages::ReasmConfig>,
    /// ESP packets with an unknown SPI held per data shard, and for how long (`[keying]
    /// hold_unknown_spi`; `None`: off).
    pub unknown_spi_hold: Option<(usize, std::time::Duration)>,
}

impl GatewayConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_toml(&text, path.parent(), &path.display().to_string())
    }

    /// Parses and validates TOML text; `base` resolves relative key files, `origin` names the
    /// text in errors.
    pub fn from_toml(text: &str, base: Option<&Path>, origin: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Syntax { path: origin.to_string(), message: e.to_string() })?;
        file.validate(base)
    }

    /// The management plane's interface.
    pub fn management_interface(&self) -> &Interface {
        match self.management.side {
            Side::Lan => &self.lan,
            Side::Wan => &self.wan,
        }
    }

    /// The interface of `side`.
    pub fn interface(&self, side: Side) -> &Interface {
        match side {
            Side::Lan => &self.lan,
            Side::Wan => &self.wan,
        }
    }

    /// Every own address (both interfaces).
    pub fn own_addresses(&self) -> Vec<IpAddr> {
        self.lan.addresses.iter().chain(&self.wan.addresses).map(|(a, _)| *a).collect()
    }
}

impl GatewayConfig {
    /// Checks that every pcap input capture can be opened for reading: a missing input is a
    /// [`ConfigError::Input`] before any port or shard exists. Not part of [`Self::load`], so a
    /// configuration can be loaded before the captures it reads are written (the demo does).
    pub fn check_inputs(&self) -> Result<(), ConfigError> {
        for (side, itf) in [("lan", &self.lan), ("wan", &self.wan)] {
            if let PortConfig::Pcap(PcapPortConfig { input: Some(path), .. }) = &itf.port
                && let Err(source) = std::fs::File::open(path)
            {
                let key = format!("interfaces.{side}.port.input");
                return Err(ConfigError::Input { key, path: path.clone(), source });
            }
        }
        Ok(())
    }
}

impl FileConfig {
    /// Checks every value and builds the typed configuration.
    pub fn validate(&self, base: Option<&Path>) -> Result<GatewayConfig, ConfigError> {
        let g = &self.gateway;
        if !(1..=64).contains(&g.shards) {
            return Err(invalid("gateway.shards", g.shards, "want 1..=64"));
        }
        if !g.cores.is_empty() && g.cores.len() != g.shards {
            return Err(invalid(
                "gateway.cores",
                format!("{:?}", g.cores),
                format!("want one core per shard ({})", g.shards),
            ));
        }
        let mut seen_cores = BTreeSet::new();
        for (i, &c) in g.cores.iter().enumerate() {
            if c > MAX_CORE {
                return Err(invalid(
                    format!("gateway.cores[{i}]"),
                    c,
                    format!("want a core id 0..={MAX_CORE}"),
                ));
            }
            if !seen_cores.insert(c) {
                let first = g.cores.iter().position(|&x| x == c).unwrap_or(0);
                return Err(invalid(
                    format!("gateway.cores[{i}]"),
                    c,
                    format!("gateway.cores[{first}] is the same core; one core per shard"),
                ));
            }
        }
        if !g.stats_interval.is_finite()
            || !(g.stats_interval == 0.0
                || (MIN_STATS_INTERVAL..=MAX_STATS_INTERVAL).contains(&g.stats_interval))
        {
            return Err(invalid(
                "gateway.stats_interval",
                g.stats_interval,
                format!("want 0 (none) or {MIN_STATS_INTERVAL}..={MAX_STATS_INTERVAL} seconds"),
            ));
        }
        if self.icmp.rate > MAX_ICMP_RATE {
            return Err(invalid(
                "icmp.rate",
                self.icmp.rate,
                format!("want 0 (none) to {MAX_ICMP_RATE} errors per second per data shard and path"),
            ));
        }
        let reassembly = self.reassembly.validate()?;
        buffers(g.buffers, g.shards)?;
        let lan = interface("interfaces.lan", &self.interfaces.lan, base)?;
        let wan = interface("interfaces.wan", &self.interfaces.wan, base)?;
        own_addresses_distinct(&lan, &wan)?;
        if lan.mac == wan.mac {
            return Err(invalid(
                "interfaces.wan.mac",
                &self.interfaces.wan.mac,
                "same MAC as the LAN interface",
            ));
        }
        if lan.port.backend() != wan.port.backend() {
            return Err(invalid(
                "interfaces.wan.port.backend",
                wan.port.backend(),
                format!("both interfaces must use one backend (lan uses {})", lan.port.backend()),
            ));
        }
        kernel_bypass_ports(&lan.port, &wan.port, g.shards)?;

        // RSS and steering.
        let r = &self.rss;
        let key =
            wirespeed_core::rss::parse_key(&r.key).map_err(|e| invalid("rss.key", &r.key, e.to_string()))?;
        let mode: SymmetricMode = r
            .symmetric
            .parse()
            .map_err(|_| invalid("rss.symmetric", &r.symmetric, "want none|key|xor|or-xor|sort"))?;
        let types = HashTypes::from_names(&r.hash_types)
            .map_err(|e| invalid("rss.hash_types", format!("{:?}", r.hash_types), e.to_string()))?;
        let rss = RssConfig { key, mode, types };
        wirespeed_core::rss::RssHasher::new(&rss)
            .map_err(|e| invalid("rss.key", &r.key, format!("unusable with these hash types: {e}")))?;
        if r.reta_size == 0 || !r.reta_size.is_power_of_two() || r.reta_size > 512 {
            return Err(invalid("rss.reta_size", r.reta_size, "want a power of two up to 512"));
        }
        let m = &self.management;
        let management = Management {
            side: Side::parse("management.interface", &m.interface)?,
            http_port: nonzero_port("management.http_port", m.http_port)?,
            gateway_v4: m
                .gateway_v4
                .as_deref()
                .map(|s| s.parse().map_err(|_| invalid("management.gateway_v4", s, "not an IPv4 address")))
                .transpose()?,
            gateway_v6: m
                .gateway_v6
                .as_deref()
                .map(|s| s.parse().map_err(|_| invalid("management.gateway_v6", s, "not an IPv6 address")))
                .transpose()?,
            host_listen: m
                .host_listen
                .as_deref()
                .map(|s| s.parse().map_err(|_| invalid("management.host_listen", s, "want address:port")))
                .transpose()?,
        };
        let own: Vec<IpAddr> = lan.addresses.iter().chain(&wan.addresses).map(|(a, _)| *a).collect();
        let mut default = RssGroup::first(g.shards as u16);
        default.reta_size = r.reta_size;
        let mut steering = SteeringPlan::management_default(g.shards as u16, default, &own);
        let mut rules = self.steering.rules.clone();
        rules.append(&mut steering.rules);
        steering.rules = rules;
        steering.validate(g.shards as u16 + 1).map_err(|e| {
            invalid("steering.rules", format!("{} rules", self.steering.rules.len()), e.to_string())
        })?;

        // Routes and neighbors.
        let mut routes = Vec::new();
        for (i, rt) in self.routes.iter().enumerate() {
            let prefix = prefix(&format!("routes[{i}].prefix"), &rt.prefix)?;
            let via = rt.via.as_deref().map(|v| address(&format!("routes[{i}].via"), v)).transpose()?;
            if let Some(v) = via
                && v.is_ipv4() != prefix.addr.is_ipv4()
            {
                return Err(invalid(format!("routes[{i}].via"), v, "address family differs from the prefix"));
            }
            if let Some(v) = via
                && own.contains(&v)
            {
                return Err(invalid(format!("routes[{i}].via"), v, "is this gateway's own address"));
            }
            if let Some(j) = routes.iter().position(|r: &Route| r.prefix == prefix) {
                return Err(invalid(
                    format!("routes[{i}].prefix"),
                    &rt.prefix,
                    format!("routes[{j}] has the same prefix; one route per prefix"),
                ));
            }
            routes.push(Route { prefix, via });
        }
        let mut neighbors = Vec::new();
        for (i, n) in self.neighbors.iter().enumerate() {
            let ip = address(&format!("neighbors[{i}].ip"), &n.ip)?;
            if let Some(j) = neighbors.iter().position(|m: &NeighborConfig| m.ip == ip) {
                return Err(invalid(
                    format!("neighbors[{i}].ip"),
                    &n.ip,
                    format!("neighbors[{j}] has the same address; one MAC and side per neighbor"),
                ));
            }
            if own.contains(&ip) {
                return Err(invalid(format!("neighbors[{i}].ip"), &n.ip, "is this gateway's own address"));
            }
            let nmac = mac(&format!("neighbors[{i}].mac"), &n.mac)?;
            if nmac[0] & 1 != 0 || nmac == [0; 6] {
                return Err(invalid(format!("neighbors[{i}].mac"), &n.mac, "want a unicast, non-zero MAC"));
            }
            neighbors.push(NeighborConfig {
                ip,
                mac: nmac,
                side: Side::parse(&format!("neighbors[{i}].interface"), &n.interface)?,
            });
        }
        // A next hop is resolved by ARP / Neighbor Discovery when it is on a connected subnet;
        // anywhere else it needs a static neighbor.
        let connected = |v: IpAddr| {
            lan.addresses
                .iter()
                .chain(&wan.addresses)
                .any(|&(a, len)| wirespeed_core::IpPrefix::new(a, len).contains(&v) && a != v)
        };
        for (i, rt) in routes.iter().enumerate() {
            if let Some(v) = rt.via
                && !neighbors.iter().any(|n| n.ip == v)
                && !connected(v)
            {
                return Err(invalid(
                    format!("routes[{i}].via"),
                    v,
                    "not on a connected subnet of an interface, and no [[neighbors]] entry (where is it, what is its MAC?)",
                ));
            }
        }

        // SAD first (policies refer to SPIs), then SPD.
        let mut sas = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, e) in self.sa.iter().enumerate() {
            let sa = sa_config(i, e, g.shards, base)?;
            let dir = matches!(sa.direction, Direction::Inbound);
            if !seen.insert((dir, sa.spi)) {
                let j = sas
                    .iter()
                    .position(|s: &SaConfig| {
                        s.spi == sa.spi && matches!(s.direction, Direction::Inbound) == dir
                    })
                    .unwrap_or(0);
                return Err(invalid(
                    format!("sa[{i}].spi"),
                    format!("{:#x}", sa.spi),
                    format!("duplicate SPI in this direction (sa[{j}] has it too)"),
                ));
            }
            // Key hygiene (SECURITY.md): two SAs under one key would both count sequence
            // numbers, hence AEAD nonces, from 1 under it. Compared without the salt.
            let cipher_key = |c: &SaConfig| c.keymat[..c.algorithm.key_len()].to_vec();
            if let Some(j) = sas.iter().position(|s: &SaConfig| {
                s.algorithm.key_len() == sa.algorithm.key_len() && cipher_key(s) == cipher_key(&sa)
            }) {
                return Err(invalid(
                    format!("sa[{i}].key"),
                    format!("<{} bytes>", sa.keymat.len()),
                    format!(
                        "same key as sa[{j}] (spi {:#x}); every SA needs its own key (nonce reuse)",
                        sas[j].spi
                    ),
                ));
            }
            if let EspMode::Tunnel { local, .. } = sa.mode
                && !local.is_unspecified()
                && !own.contains(&local)
            {
                return Err(invalid(
                    format!("sa[{i}].local"),
                    local,
                    "not an address of this gateway (interfaces.lan/wan.addresses)",
                ));
            }
            sas.push(sa);
        }
        let mut policies = Vec::new();
        let mut names = BTreeSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            if !names.insert(p.name.as_str()) {
                return Err(invalid(format!("policies[{i}].name"), &p.name, "duplicate policy name"));
            }
            policies.push(NamedPolicy { name: p.name.clone(), policy: policy(i, p, &sas, g.shards)? });
        }
        // Inbound SAs now that policies exist: attach the reversed selector.
        for (i, e) in self.sa.iter().enumerate() {
            if let Some(name) = &e.policy {
                let key = format!("sa[{i}].policy");
                if e.direction != "inbound" {
                    return Err(invalid(key, name, "only inbound SAs check a policy"));
                }
                let p = policies
                    .iter()
                    .find(|p| &p.name == name)
                    .ok_or_else(|| invalid(&key, name, "no such policy"))?;
                if !matches!(p.policy.action, PolicyAction::Protect { .. }) {
                    return Err(invalid(key, name, "not a protect policy"));
                }
                sas[i].selector = Some(reversed(&p.policy.selector));
            }
        }

        let idle = self.runtime.idle.parse::<IdlePolicy>().map_err(|_| {
            invalid("runtime.idle", &self.runtime.idle, "want spin, busy-poll, block or adaptive")
        })?;
        Ok(GatewayConfig {
            idle,
            reassembly,
            name: g.name.clone(),
            shards: g.shards,
            cores: g.cores.clone(),
            stats_interval: (g.stats_interval > 0.0).then(|| Duration::from_secs_f64(g.stats_interval)),
            // Relative to the configuration file, like captures and key files.
            control_socket: g.control_socket.as_ref().map(|p| match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p.clone(),
            }),
            control_group: g.control_group,
            buffers: g.buffers,
            lan,
            wan,
            rss,
            reta_size: r.reta_size,
            steering,
            management,
            routes,
            neighbors,
            policies,
            sas,
            icmp_rate: (self.icmp.errors && self.icmp.rate > 0).then_some(self.icmp.rate),
            keying: self.keying.validate(g.shards)?,
            unknown_spi_hold: self.keying.unknown_spi_hold()?,
        })
    }
}

impl ReassemblySection {
    /// The stage's configuration, `None` when off; out-of-range values are refused.
    fn validate(&self) -> Result<Option<wirespeed_stages::ReasmConfig>, ConfigError> {
        use wirespeed_stages::ReasmConfig;
        let (lo, hi) = (ReasmConfig::CONTEXTS.start(), ReasmConfig::CONTEXTS.end());
        if !ReasmConfig::CONTEXTS.contains(&self.contexts) {
            return Err(invalid("reassembly.contexts", self.contexts, format!("want {lo} to {hi}")));
        }
        let (tlo, thi) =
            (ReasmConfig::TIMEOUT.start().as_secs_f64(), ReasmConfig::TIMEOUT.end().as_secs_f64());
        if !self.timeout.is_finite() || !(tlo..=thi).contains(&self.timeout) {
            return Err(invalid("reassembly.timeout", self.timeout, format!("want {tlo} to {thi} seconds")));
        }
        let cfg = ReasmConfig { contexts: self.contexts, timeout: Duration::from_secs_f64(self.timeout) };
        // Rounding cannot leave the range the checks above kept, but the stage checks again.
        cfg.validate().map_err(|e| invalid("reassembly", self.timeout, e.to_string()))?;
        Ok(self.enabled.then_some(cfg))
    }
}

/// Highest core id `gateway.cores` accepts.
pub const MAX_CORE: usize = 4095;
/// Shortest non-zero `gateway.stats_interval` (seconds).
pub const MIN_STATS_INTERVAL: f64 = 0.01;
/// Longest `gateway.stats_interval` (seconds): one day.
pub const MAX_STATS_INTERVAL: f64 = 86_400.0;
/// Highest `icmp.rate`: errors per second per data shard and path (each of a shard's
/// forward stages and its encrypt stage has its own bucket, burst = rate).
pub const MAX_ICMP_RATE: u32 = 100_000;
/// Most `gateway.buffers` (about 9.7 GB of packet buffers).
pub const MAX_BUFFERS: usize = 1 << 22;
/// Bytes one pool buffer takes (headroom and data room of the default pool).
pub const BUFFER_BYTES: usize = 2048 + 256;
/// Most `ring_size` of a mem port.
pub const MAX_MEM_RING: usize = 1 << 20;

/// `gateway.buffers`: `256 * shards ..= MAX_BUFFERS`, and the pool must fit in three quarters
/// of the memory available now (`MemAvailable` of `/proc/meminfo`, where readable).
fn buffers(n: usize, shards: usize) -> Result<(), ConfigError> {
    let min = 256 * shards;
    if !(min..=MAX_BUFFERS).contains(&n) {
        return Err(invalid(
            "gateway.buffers",
            n,
            format!("want {min}..={MAX_BUFFERS} (at least 256 per shard)"),
        ));
    }
    if let Some(avail) = mem_available() {
        let need = n as u64 * BUFFER_BYTES as u64;
        if need > avail / 4 * 3 {
            return Err(invalid(
                "gateway.buffers",
                n,
                format!(
                    "{} MiB of buffers, but only {} MiB of memory are available",
                    need >> 20,
                    avail >> 20
                ),
            ));
        }
    }
    Ok(())
}

/// `MemAvailable` in bytes (Linux).
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// No address is configured twice, on one interface or across both.
fn own_addresses_distinct(lan: &Interface, wan: &Interface) -> Result<(), ConfigError> {
    let all: Vec<(String, IpAddr)> = [("interfaces.lan", lan), ("interfaces.wan", wan)]
        .iter()
        .flat_map(|(k, i)| {
            i.addresses.iter().enumerate().map(move |(n, (a, _))| (format!("{k}.addresses[{n}]"), *a))
        })
        .collect();
    for (i, (key, a)) in all.iter().enumerate() {
        if let Some((first, _)) = all[..i].iter().find(|(_, b)| b == a) {
            return Err(invalid(key, a, format!("{first} is the same address")));
        }
    }
    Ok(())
}

/// Validates one SA written as in a `[[sa]]` table against a running configuration (shard
/// count, policy names): what the control socket's `sa add` / `sa rekey` use. `key` names it
/// in errors.
pub fn sa_from_entry(cfg: &GatewayConfig, e: &SaEntry, key: &str) -> Result<SaConfig, ConfigError> {
    let rename = |err: ConfigError| match err {
        ConfigError::Invalid { key: k, value, reason } => {
            ConfigError::Invalid { key: k.replacen("sa[0]", key, 1), value, reason }
        }
        ConfigError::Missing { key: k, reason } => {
            ConfigError::Missing { key: k.replacen("sa[0]", key, 1), reason }
        }
        other => other,
    };
    let mut sa = sa_config(0, e, cfg.shards, None).map_err(rename)?;
    if let EspMode::Tunnel { local, .. } = sa.mode
        && !local.is_unspecified()
        && !cfg.own_addresses().contains(&local)
    {
        return Err(invalid(
            format!("{key}.local"),
            local,
            "not an address of this gateway (interfaces.lan/wan.addresses)",
        ));
    }
    if let Some(name) = &e.policy {
        if e.direction != "inbound" {
            return Err(invalid(format!("{key}.policy"), name, "only inbound SAs check a policy"));
        }
        let p = cfg
            .policies
            .iter()
            .find(|p| &p.name == name)
            .ok_or_else(|| invalid(format!("{key}.policy"), name, "no such policy"))?;
        sa.selector = Some(reversed(&p.policy.selector));
    }
    Ok(sa)
}

/// A selector with source and destination swapped (what the peer's traffic looks like).
pub fn reversed(s: &Selector) -> Selector {
    Selector { src: s.dst, dst: s.src, proto: s.proto, src_ports: s.dst_ports, dst_ports: s.src_ports }
}

fn interface(key: &str, e: &InterfaceEntry, base: Option<&Path>) -> Result<Interface, ConfigError> {
    let mac = mac(&format!("{key}.mac"), &e.mac)?;
    if mac[0] & 1 != 0 || mac == [0; 6] {
        return Err(invalid(format!("{key}.mac"), &e.mac, "want a unicast, non-zero MAC"));
    }
    let mut addresses = Vec::new();
    for (i, a) in e.addresses.iter().enumerate() {
        let p = prefix(&format!("{key}.addresses[{i}]"), a)?;
        addresses.push((p.addr, p.len));
    }
    if addresses.len() > 4 {
        return Err(invalid(format!("{key}.addresses"), addresses.len(), "at most 4 addresses"));
    }
    if let PortConfig::Mem(m) = &e.port
        && !(1..=MAX_MEM_RING).contains(&m.ring_size)
    {
        return Err(invalid(
            format!("{key}.port.ring_size"),
            m.ring_size,
            format!("want 1..={MAX_MEM_RING}"),
        ));
    }
    if let PortConfig::Pcap(p) = &e.port {
        if p.iface.is_some() && (p.input.is_some() || p.output.is_some()) {
            return Err(invalid(
                format!("{key}.port.iface"),
                p.iface.as_deref().unwrap_or_default(),
                "a live interface takes no input/output files",
            ));
        }
        if p.iface.is_none() && p.input.is_none() && p.output.is_none() {
            return Err(ConfigError::Missing {
                key: format!("{key}.port.input"),
                reason: "a pcap port needs an input or output file, or a live iface".into(),
            });
        }
        if let Some(i) = &p.iface
            && !cfg!(feature = "live")
        {
            return Err(invalid(
                format!("{key}.port.iface"),
                i,
                "live capture needs ipsec-gateway built with `--features live` (libpcap)",
            ));
        }
    }
    let mut port = e.port.clone();
    if let (PortConfig::Pcap(p), Some(base)) = (&mut port, base) {
        // Capture paths are relative to the configuration file, like key files.
        for f in [&mut p.input, &mut p.output].into_iter().flatten() {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
    }
    Ok(Interface { mac, addresses, port })
}

/// Checks the AF_XDP and DPDK settings of both ports: each port's own fields (through its backend
/// crate's check, the key named under `interfaces.X.port`), then what the gateway needs of the
/// pair: one queue per data shard plus the management queue, two different devices, one EAL.
fn kernel_bypass_ports(lan: &PortConfig, wan: &PortConfig, shards: usize) -> Result<(), ConfigError> {
    let want = shards + 1;
    for (key, port) in [("interfaces.lan.port", lan), ("interfaces.wan.port", wan)] {
        match port {
            PortConfig::Afxdp(p) => {
                p.validate().map_err(|e| match e {
                    wirespeed_afxdp::AfXdpError::BadConfig { field, value, why } => {
                        invalid(format!("{key}.{field}"), value, why)
                    }
                    other => invalid(key, "afxdp", other.to_string()),
                })?;
                if let Some(q) = p.queues
                    && usize::from(q) != want
                {
                    return Err(invalid(
                        format!("{key}.queues"),
                        q,
                        format!("want {want}: one queue per data shard ({shards}) plus the management queue"),
                    ));
                }
            }
            #[cfg(feature = "dpdk")]
            PortConfig::Dpdk(p) => {
                p.check().map_err(|e| match e {
                    wirespeed_dpdk::DpdkError::BadConfig { field, value, why } => {
                        invalid(format!("{key}.{field}"), value, why)
                    }
                    other => invalid(key, "dpdk", other.to_string()),
                })?;
                if usize::from(p.queues) != want {
                    return Err(invalid(
                        format!("{key}.queues"),
                        p.queues,
                        format!(
                            "want {want}: one queue pair per data shard ({shards}) plus the management queue"
                        ),
                    ));
                }
            }
            #[cfg(not(feature = "dpdk"))]
            PortConfig::Dpdk(_) => {
                return Err(invalid(
                    format!("{key}.backend"),
                    "dpdk",
                    "needs ipsec-gateway built with `--features dpdk` (links libdpdk)",
                ));
            }
            PortConfig::Pcap(_) | PortConfig::Mem(_) => {}
        }
    }
    match (lan, wan) {
        (PortConfig::Afxdp(l), PortConfig::Afxdp(w)) if l.interface == w.interface => Err(invalid(
            "interfaces.wan.port.interface",
            &w.interface,
            "the LAN port uses the same interface; each side needs its own",
        )),
        #[cfg(feature = "dpdk")]
        (PortConfig::Dpdk(l), PortConfig::Dpdk(w)) => {
            if l.device == w.device {
                return Err(invalid(
                    "interfaces.wan.port.device",
                    &w.device,
                    "the LAN port uses the same device; each side needs its own",
                ));
            }
            if let (Some(lh), Some(wh)) = (&l.host, &w.host)
                && lh.device() == wh.device()
            {
                return Err(invalid(
                    "interfaces.wan.port.host.iface",
                    &wh.iface,
                    "the LAN port's host path uses the same kernel interface; each side needs its own",
                ));
            }
            if !w.eal.is_empty() && w.eal != l.eal {
                return Err(invalid(
                    "interfaces.wan.port.eal",
                    format!("{:?}", w.eal),
                    "the EAL is initialised once per process: give the LAN port's list or none",
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Parses `02:00:00:00:00:01` (or with `-`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    mac("", s).ok()
}

fn mac(key: &str, s: &str) -> Result<[u8; 6], ConfigError> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return Err(invalid(key, s, "want a MAC like 02:00:00:00:00:01"));
    }
    for (b, p) in m.iter_mut().zip(&parts) {
        *b = u8::from_str_radix(p, 16)
            .ok()
            .filter(|_| p.len() == 2)
            .ok_or_else(|| invalid(key, s, "want a MAC like 02:00:00:00:00:01"))?;
    }
    Ok(m)
}

fn address(key: &str, s: &str) -> Result<IpAddr, ConfigError> {
    s.parse().map_err(|_| invalid(key, s, "not an IP address"))
}

fn prefix(key: &str, s: &str) -> Result<IpPrefix, ConfigError> {
    let (a, l) = s.split_once('/').ok_or_else(|| invalid(key, s, "want address/length, e.g. 10.1.0.0/16"))?;
    let addr = address(key, a)?;
    let len: u8 = l.parse().map_err(|_| invalid(key, s, "prefix length is not a number"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(invalid(key, s, format!("prefix length above {max}")));
    }
    Ok(IpPrefix::new(addr, len))
}

fn nonzero_port(key: &str, p: u16) -> Result<u16, ConfigError> {
    if p == 0 { Err(invalid(key, p, "port 0 is not a port")) } else { Ok(p) }
}

fn port_range(key: &str, r: Option<[u16; 2]>) -> Result<(u16, u16), ConfigError> {
    match r {
        None => Ok((0, u16::MAX)),
        Some([lo, hi]) if lo <= hi => Ok((lo, hi)),
        Some(r) => Err(invalid(key, format!("{r:?}"), "want [lo, hi] with lo <= hi")),
    }
}

fn policy(i: usize, p: &PolicyEntry, sas: &[SaConfig], shards: usize) -> Result<SecurityPolicy, ConfigError> {
    let key = |k: &str| format!("policies[{i}].{k}");
    let src = prefix(&key("src"), &p.src)?;
    let dst = prefix(&key("dst"), &p.dst)?;
    if src.addr.is_ipv4() != dst.addr.is_ipv4() {
        return Err(invalid(key("dst"), &p.dst, "address family differs from src"));
    }
    let selector = Selector {
        src,
        dst,
        proto: p.proto,
        src_ports: port_range(&key("src_ports"), p.src_ports)?,
        dst_ports: port_range(&key("dst_ports"), p.dst_ports)?,
    };
    let action = match p.action.as_str() {
        "bypass" | "discard" if !p.sas.is_empty() => {
            return Err(invalid(
                key("sas"),
                format!("{:?}", p.sas),
                format!("a {} policy names no SAs", p.action),
            ));
        }
        "bypass" => PolicyAction::Bypass,
        "discard" => PolicyAction::Discard,
        "protect" => {
            if p.sas.is_empty() {
                return Err(ConfigError::Missing {
                    key: key("sas"),
                    reason: "a protect policy names its outbound SAs, one per shard".into(),
                });
            }
            let mut covered = vec![false; shards];
            for &spi in &p.sas {
                let sa = sas
                    .iter()
                    .find(|s| s.spi == spi && matches!(s.direction, Direction::Outbound { .. }))
                    .ok_or_else(|| {
                        invalid(key("sas"), format!("{spi:#x}"), "no outbound [[sa]] with this SPI")
                    })?;
                let Direction::Outbound { shard } = sa.direction else { unreachable!("filtered above") };
                if covered[shard] {
                    return Err(invalid(
                        key("sas"),
                        format!("{spi:#x}"),
                        format!("shard {shard} already has an SA here"),
                    ));
                }
                covered[shard] = true;
            }
            if let Some(s) = covered.iter().position(|c| !c) {
                return Err(invalid(
                    key("sas"),
                    format!("{:x?}", p.sas),
                    format!("no outbound SA for shard {s} (every shard needs its own, RFC 9611)"),
                ));
            }
            PolicyAction::Protect { spis: p.sas.clone() }
        }
        other => return Err(invalid(key("action"), other, "want protect, bypass or discard")),
    };
    Ok(SecurityPolicy { selector, action })
}

fn sa_config(i: usize, e: &SaEntry, shards: usize, base: Option<&Path>) -> Result<SaConfig, ConfigError> {
    let key = |k: &str| format!("sa[{i}].{k}");
    if e.spi == 0 {
        return Err(invalid(key("spi"), e.spi, "SPI 0 is reserved"));
    }
    let algorithm = match e.aead.as_str() {
        "aes128gcm" => AeadAlgorithm::Aes128Gcm,
        "aes256gcm" => AeadAlgorithm::Aes256Gcm,
        "chacha20poly1305" => AeadAlgorithm::ChaCha20Poly1305,
        other => return Err(invalid(key("aead"), other, "want aes128gcm, aes256gcm or chacha20poly1305")),
    };
    let direction = match (e.direction.as_str(), e.shard) {
        ("outbound", Some(s)) if s < shards => Direction::Outbound { shard: s },
        ("outbound", Some(s)) => return Err(invalid(key("shard"), s, format!("only {shards} shards"))),
        ("outbound", None) => {
            return Err(ConfigError::Missing {
                key: key("shard"),
                reason: "an outbound SA belongs to exactly one shard".into(),
            });
        }
        ("inbound", None) => Direction::Inbound,
        ("inbound", Some(s)) => {
            return Err(invalid(key("shard"), s, "inbound SAs are steered by SPI, not assigned to a shard"));
        }
        (other, _) => return Err(invalid(key("direction"), other, "want inbound or outbound")),
    };
    let text = match (&e.key, &e.key_file) {
        (Some(k), None) => k.clone(),
        (None, Some(f)) => {
            let path = base.map_or_else(|| f.clone(), |b| b.join(f));
            std::fs::read_to_string(&path)
                .map_err(|err| invalid(key("key_file"), path.display(), err.to_string()))?
                .trim()
                .to_string()
        }
        (Some(_), Some(f)) => {
            return Err(invalid(key("key_file"), f.display(), "give key or key_file, not both"));
        }
        (None, None) => {
            return Err(ConfigError::Missing {
                key: key("key"),
                reason: "an SA needs key material (key or key_file)".into(),
            });
        }
    };
    // Never echo key material into an error message: name its length only.
    let keymat =
        hex(&text).ok_or_else(|| invalid(key("key"), format!("<{} characters>", text.len()), "not hex"))?;
    if keymat.len() != algorithm.keymat_len() {
        return Err(invalid(
            key("key"),
            format!("<{} bytes>", keymat.len()),
            format!("{} needs {} bytes: key ‖ 4-byte salt", algorithm.name(), algorithm.keymat_len()),
        ));
    }
    let mode = match e.mode.as_str() {
        "tunnel" => {
            let local = e.local.as_deref().ok_or_else(|| ConfigError::Missing {
                key: key("local"),
                reason: "a tunnel SA needs this gateway's address".into(),
            })?;
            let remote = e.remote.as_deref().ok_or_else(|| ConfigError::Missing {
                key: key("remote"),
                reason: "a tunnel SA needs the peer's address".into(),
            })?;
            let local = address(&key("local"), local)?;
            let remote = address(&key("remote"), remote)?;
            if local.is_ipv4() != remote.is_ipv4() {
                return Err(invalid(key("remote"), remote, "address family differs from local"));
            }
            EspMode::Tunnel { local, remote }
        }
        "transport" => {
            if e.local.is_some() || e.remote.is_some() {
                return Err(invalid(
                    key("mode"),
                    "transport",
                    "transport SAs take no local/remote endpoints",
                ));
            }
            EspMode::Transport
        }
        other => return Err(invalid(key("mode"), other, "want tunnel or transport")),
    };
    let udp_encap = match e.nat_t_port {
        Some(p) => {
            nonzero_port(&key("nat_t_port"), p)?;
            Some(UdpEncap { src_port: p, dst_port: p })
        }
        None => None,
    };
    let provider = match e.provider.as_deref() {
        None | Some("fastest") => fastest_provider(algorithm),
        Some(name) => builtin_providers().into_iter().find(|p| p.name() == name).ok_or_else(|| {
            let known: Vec<String> = builtin_providers().iter().map(|p| p.name().to_string()).collect();
            invalid(
                key("provider"),
                name,
                format!("want fastest or one of {known:?} (compiled into this build)"),
            )
        })?,
    };
    let l = &e.lifetime;
    let secs = |s: Option<u64>| s.map(Duration::from_secs);
    let mut cfg = SaConfig::new(e.spi, direction, algorithm, &keymat, mode)
        .with_provider(provider)
        .with_udp_encap(udp_encap)
        .with_mtu(e.mtu)
        .with_mss_clamp(e.mss_clamp)
        .with_fragment(e.fragment)
        .with_esn(e.esn)
        .with_lifetime(Lifetime {
            soft: Limits { packets: l.soft_packets, bytes: l.soft_bytes, time: secs(l.soft_seconds) },
            hard: Limits { packets: l.hard_packets, bytes: l.hard_bytes, time: secs(l.hard_seconds) },
        });
    if let Some(w) = e.replay_window {
        cfg = cfg.with_replay_window(w);
    }
    for (soft, hard, name) in [
        (l.soft_packets, l.hard_packets, "packets"),
        (l.soft_bytes, l.hard_bytes, "bytes"),
        (l.soft_seconds, l.hard_seconds, "seconds"),
    ] {
        if let (Some(s), Some(h)) = (soft, hard)
            && s > h
        {
            return Err(invalid(
                key(&format!("lifetime.soft_{name}")),
                s,
                format!("above hard_{name} = {h}"),
            ));
        }
    }
    // The library's own checks (ESN needs a window, window size, families) with the key named.
    SecurityAssociation::new(&cfg)
        .map_err(|err| invalid(key("spi"), format!("{:#x}", e.spi), err.to_string()))?;
    Ok(cfg)
}

/// Hex text (whitespace and `:` ignored, optional `0x`) to bytes.
pub fn hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b':').collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|c| {
            let d = |b: u8| (b as char).to_digit(16);
            Some((d(c[0])? * 16 + d(c[1])?) as u8)
        })
        .collect()
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
