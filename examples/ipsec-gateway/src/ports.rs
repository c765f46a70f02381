//! Opening the ports a configuration names. `mem` ports are made by the embedding program (tests)
//! and passed to [`crate::gateway::build`] directly; this module opens `pcap` ports.
//!
//! A capture file has one input, but the gateway has one queue per shard plus the management
//! queue: the pcap port spreads the input over them with the gateway's own [`Steering`] (the
//! same RSS key, symmetric mode, RETA and management rules a NIC would apply), so offline runs
//! land every packet on the shard a NIC would have chosen.

use std::sync::Arc;

use wirespeed_core::BufferPool;
use wirespeed_pcap::{PcapOutput, PcapPort, TxTimestamp};

use crate::config::{GatewayConfig, PortConfig, Side};
use crate::gateway::{GatewayPorts, Steering, queues_per_port};

/// Why a port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PortOpenError {
    /// The capture files.
    #[error("interfaces.{side}.port: {source}")]
    Pcap {
        /// Which interface.
        side: &'static str,
        /// The error.
        source: wirespeed_pcap::PcapError,
    },
    /// A backend this function does not open.
    #[error("interfaces.{side}.port: backend `{backend}` {why}")]
    Unsupported {
        /// Which interface.
        side: &'static str,
        /// The backend.
        backend: &'static str,
        /// Why.
        why: &'static str,
    },
}

/// Opens both pcap ports of `cfg`: each input spread over the queues by the steering plan, all
/// queues of a port writing one shared output capture.
pub fn open_pcap(
    cfg: &GatewayConfig,
    pool: &BufferPool,
    steering: Steering,
) -> Result<GatewayPorts<PcapPort>, PortOpenError> {
    let steering = Arc::new(steering);
    let open = |side: Side| -> Result<PcapPort, PortOpenError> {
        let itf = cfg.interface(side);
        let PortConfig::Pcap(p) = &itf.port else {
            return Err(PortOpenError::Unsupported {
                side: side.name(),
                backend: itf.port.backend(),
                why: "is not opened from a file (pass its ports to gateway::build)",
            });
        };
        if p.iface.is_some() {
            return Err(PortOpenError::Unsupported {
                side: side.name(),
                backend: "pcap",
                why: "live `iface`: a libpcap handle is one queue and the gateway needs one per shard; \
                      use capture files, or AF_XDP/DPDK for live traffic",
            });
        }
        let mut b = PcapPort::builder(*pool)
            .name(format!("{}-{}", cfg.name, side.name()))
            .port_id(side.port())
            .mac(itf.mac)
            .queues(queues_per_port(cfg))
            .tx_timestamp(TxTimestamp::Constant(1_764_000_000_000_000_000));
        if let Some(input) = &p.input {
            b = b.spread_input(input, steering.clone());
        }
        if let Some(output) = &p.output {
            b = b.output(PcapOutput::Shared(output.clone()));
        }
        b.build().map_err(|source| PortOpenError::Pcap { side: side.name(), source })
    };
    let lan = open(Side::Lan)?;
    let wan = open(Side::Wan)?;
    Ok(GatewayPorts { lan, wan })
}
