//! RSS-aware tuple choice for connections the appliance originates.
//!
//! When a shard opens a connection (an IKE initiator, a BGP session, a health check), the
//! replies come back through the NIC's RSS, which may deliver them to another shard. Choosing
//! the local source port so that the *reply* tuple hashes to this shard's queue keeps the whole
//! conversation on one core without any hand-off.

use std::ops::RangeInclusive;

use super::hash::{FlowTuple, L4, RssHasher};
use super::reta::Reta;

/// A source port in `ports` for the outgoing flow `template` (its source port is ignored) such
/// that the reply — `template` reversed, arriving on the port with `hasher` and `reta` — lands
/// on `wanted_queue`. Ports are tried in ascending order; `None` when no port of the range
/// works (e.g. the hash types exclude ports and the 2-tuple goes elsewhere) or the template has
/// no ports.
pub fn pick_source_port(
    hasher: &RssHasher,
    reta: &Reta,
    template: &FlowTuple,
    wanted_queue: u16,
    ports: RangeInclusive<u16>,
) -> Option<u16> {
    let (_, dport) = template.ports()?;
    ports.into_iter().find(|&sport| {
        let mut out = *template;
        out.l4 = match template.l4 {
            L4::UdpEsp { spi, .. } => L4::UdpEsp { sport, dport, spi },
            _ => L4::Ports { sport, dport },
        };
        let reply = out.reversed();
        reta.queue(hasher.hash_tuple(&reply).unwrap_or(0)) == wanted_queue
    })
}
