//! Fixtures of the kernel-backend tests.
#![allow(dead_code)]

#[cfg(target_os = "linux")]
pub mod netns;
