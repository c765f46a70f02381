//! Kernel fixtures for the AF_XDP tests: the veth/netns fixtures of `wirespeed-test-netns`
//! (shared with wirespeed-afxdp's tests) with this crate's AF_XDP probe.
#![allow(dead_code)]

pub use wirespeed_test_netns::Veth;

/// `Some(reason)` when kernel tests cannot run here: not root, or no AF_XDP in this kernel.
pub fn skip_reason() -> Option<String> {
    wirespeed_test_netns::skip_reason(wirespeed_afxdp::probe)
}

/// Skips the test, printing why, when kernel tests cannot run — or fails it when
/// `WIRESPEED_AFXDP_REQUIRE_KERNEL` is set (CI runs as root, where a skip would hide a problem).
#[macro_export]
macro_rules! require_kernel {
    () => {
        if !wirespeed_test_netns::kernel_ready(support::netns::skip_reason(), module_path!()) {
            return;
        }
    };
}
