//! # wirespeed-stages
//!
//! The stages every wirespeed appliance reuses, each generic over
//! [`wirespeed_core::PacketBuf`] so they run unchanged on every backend.
#![forbid(unsafe_code)]
pub mod esp;
