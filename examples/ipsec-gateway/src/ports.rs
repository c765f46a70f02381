//! Opening the ports a configuration names. `mem` ports are made by the embedding program (tests)
//! and passed to [`crate::gateway::build`] directly; this module opens `pcap` ports.
//!
//! A capture file has one input, but the gateway has one queue per shard plus the management
//! queue: the pcap port spreads the input over them with the gateway's own [`Steering`] (the
//! same RSS key, symmetric mode, RETA and management rules a NIC would apply), so offline runs
//! land every packet on the shard a NIC would have chosen.

use std::path::Path;
use std::sync::{Arc, RwLock};

use wirespeed_core::BufferPool;
use wirespeed_pcap::{Frame, PcapOutput, PcapPort, TxTimestamp};

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
    /// All steering slots are taken (too many pcap gateways in one process).
    #[error("more than {SLOTS} pcap ports spread their input at once")]
    NoSteeringSlot,
}

/// Open pcap ports; keep this alive while the gateway runs (it holds the steering the ports'
/// readers consult).
#[derive(Debug)]
pub struct PcapPorts {
    /// The ports, for [`crate::gateway::build`] (take them with `Option::take`).
    pub ports: Option<GatewayPorts<PcapPort>>,
    _slot: SteerSlot,
}

/// Opens both pcap ports of `cfg`: each input spread over the queues by the steering plan, all
/// queues of a port writing one shared output capture.
pub fn open_pcap(
    cfg: &GatewayConfig,
    pool: &BufferPool,
    steering: Steering,
) -> Result<PcapPorts, PortOpenError> {
    let slot = SteerSlot::take(Arc::new(steering))?;
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
            b = b.spread_input(input, slot.steer());
        }
        if let Some(output) = &p.output {
            b = b.output(PcapOutput::Shared(output.clone()));
        }
        b.build().map_err(|source| PortOpenError::Pcap { side: side.name(), source })
    };
    let lan = open(Side::Lan)?;
    let wan = open(Side::Wan)?;
    Ok(PcapPorts { ports: Some(GatewayPorts { lan, wan }), _slot: slot })
}

/// True when `path` exists and is a regular file (outputs must not be FIFOs or devices).
pub fn is_regular_or_absent(path: &Path) -> bool {
    std::fs::metadata(path).map_or(true, |m| m.is_file())
}

// The pcap port takes its spreading function as a plain `fn` pointer. Until it accepts the
// steering engine itself, each open port set borrows one of a few static slots, and the `fn` of
// that slot looks the engine up (a read lock per frame, uncontended).
const SLOTS: usize = 16;

#[allow(clippy::type_complexity)]
static ENGINES: [RwLock<Option<Arc<Steering>>>; SLOTS] = [const { RwLock::new(None) }; SLOTS];

#[derive(Debug)]
struct SteerSlot(usize);

impl SteerSlot {
    fn take(s: Arc<Steering>) -> Result<Self, PortOpenError> {
        for (i, e) in ENGINES.iter().enumerate() {
            let Ok(mut g) = e.write() else { continue };
            if g.is_none() {
                *g = Some(s);
                return Ok(Self(i));
            }
        }
        Err(PortOpenError::NoSteeringSlot)
    }

    fn steer(&self) -> wirespeed_pcap::Steer {
        const FNS: [wirespeed_pcap::Steer; SLOTS] = [
            steer::<0>,
            steer::<1>,
            steer::<2>,
            steer::<3>,
            steer::<4>,
            steer::<5>,
            steer::<6>,
            steer::<7>,
            steer::<8>,
            steer::<9>,
            steer::<10>,
            steer::<11>,
            steer::<12>,
            steer::<13>,
            steer::<14>,
            steer::<15>,
        ];
        FNS[self.0]
    }
}

impl Drop for SteerSlot {
    fn drop(&mut self) {
        if let Ok(mut g) = ENGINES[self.0].write() {
            *g = None;
        }
    }
}

/// The queue of a frame under slot `I`'s steering; frames the plan drops go to the management
/// queue, where the control shard counts them.
fn steer<const I: usize>(f: &Frame<'_>) -> u32 {
    let Ok(g) = ENGINES[I].read() else { return 0 };
    match g.as_ref() {
        Some(s) => s.queue(f.data).map_or(s.management_queue(), u16::from) as u32,
        None => 0,
    }
}
