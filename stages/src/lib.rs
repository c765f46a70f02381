//! # wirespeed-stages
//!
//! The stages every wirespeed appliance reuses, each generic over
//! [`wirespeed_core::PacketBuf`] so they run unchanged on every backend: [`Classify`] (fill the
//! metadata, drop malformed frames), [`Punt`] (traffic for the appliance to the control plane),
//! [`Forward`] (LPM routing, TTL, MAC rewrite; with [`IcmpErrors`], ICMP errors instead of
//! silent drops), [`Resolving`] (forward with next hops learned at run time in [`Neighbors`],
//! holding packets while they resolve), [`MssClamp`] (TCP MSS clamping), [`EspEncrypt`] /
//! [`EspDecrypt`] (IPsec ESP), and the smoltcp [`ControlPlane`].
//!
//! An appliance mixes them with its own stages in one statically composed pipeline; its own
//! drops get their own counted reasons:
//!
//! ```
//! use wirespeed_core::backend::null::{NullConfig, NullPort};
//! use wirespeed_core::{Batch, BufferPool, DropReason, PacketBuf, Pipeline, PoolConfig, Port, ShardCtx, Stage};
//! use wirespeed_stages::{Classify, ClassifyConfig};
//!
//! /// The appliance's firewall: drops UDP to port 2048.
//! struct Firewall(DropReason);
//! impl<B: PacketBuf> Stage<B> for Firewall {
//!     fn process(&mut self, cx: &mut ShardCtx, batch: &mut Batch<B>) {
//!         let reason = self.0;
//!         batch.keep_or_drop(cx, |p| if p.meta().dst_port == 2048 { Err(reason) } else { Ok(()) });
//!     }
//! }
//!
//! let denied = DropReason::register("firewall_denied")?;
//! let pool = BufferPool::new(PoolConfig::default())?;
//! let mut port = NullPort::new(NullConfig { copy: true, ..NullConfig::default() }, pool);
//! let (rx, tx) = port.queue_pair(0)?;
//! let mut pipeline = Pipeline::new(rx, tx, (Classify::new(ClassifyConfig::default()), Firewall(denied)));
//! let mut cx = ShardCtx::new(0);
//! pipeline.run_once(&mut cx);
//! assert_eq!(cx.counters.drops_of(denied), 32); // the null port's frames are UDP to 2048
//! assert!(cx.counters.to_string().contains("firewall_denied=32"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
// `deny`, not `forbid`: the one SIMD kernel (`esp::gcm`) allows it in its own module.
#![deny(unsafe_code)]

pub mod classify;
pub mod control;
pub mod esp;
pub mod forward;
pub mod frag;
pub mod icmp;
pub mod mss;
pub mod reasm;

pub use classify::{Classify, ClassifyConfig};
pub use control::{ControlConfig, ControlPlane, Punt, PuntQueue};
pub use esp::{
    AeadAlgorithm, Direction, EspDecrypt, EspEncrypt, EspMode, EspStats, Framing, PolicyAction, SaConfig,
    SaSet, SecurityAssociation, SecurityPolicy, Selector, ShardSas, Spd,
};
pub use forward::{Fib, FibBuilder, FibError, Forward, HoldConfig, Neighbor, Neighbors, NextHop, Resolving};
pub use icmp::{IcmpConfig, IcmpErrors};
pub use mss::MssClamp;
pub use reasm::{ReasmConfig, ReasmConfigError, ReasmStats, Reassemble};
