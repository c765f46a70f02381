//! # wirespeed-stages
//!
//! The stages every wirespeed appliance reuses, each generic over
//! [`wirespeed_core::PacketBuf`] so they run unchanged on every backend.
// `deny`, not `forbid`: the one SIMD kernel (`esp::gcm`) allows it in its own module.
#![deny(unsafe_code)]

pub mod classify;
pub mod control;
pub mod esp;
pub mod forward;

pub use classify::{Classify, ClassifyConfig};
pub use control::{ControlConfig, ControlPlane, Punt, PuntQueue};
pub use esp::{
    AeadAlgorithm, Direction, EspDecrypt, EspEncrypt, EspMode, EspStats, PolicyAction, SaConfig, SaSet,
    SecurityPolicy, Selector, ShardSas, Spd,
};
pub use forward::{Fib, FibBuilder, Forward, NextHop};
