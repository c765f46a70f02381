//! Errors of the AF_XDP backend.

use std::io;

/// Why an AF_XDP port or queue could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// A configuration field has a value the backend cannot use.
    #[error("afxdp config: `{field}` = {value}: {why}")]
    BadConfig {
        /// Field name.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        why: &'static str,
    },
    /// The interface does not exist (in this network namespace).
    #[error("interface {interface}: {source}")]
    NoInterface {
        /// Interface name.
        interface: String,
        /// Underlying error.
        source: io::Error,
    },
    /// The kernel has no AF_XDP (built without `CONFIG_XDP_SOCKETS`) or it is not Linux.
    #[error("AF_XDP is not available: {0}")]
    Unsupported(String),
    /// A system call failed.
    #[error("{interface} queue {queue:?}: {op}: {source}")]
    Syscall {
        /// Interface name.
        interface: String,
        /// Queue, when the call was for one.
        queue: Option<u16>,
        /// What was being done.
        op: &'static str,
        /// Underlying error.
        source: io::Error,
    },
    /// The XDP program could not be attached in any allowed mode.
    #[error("{interface}: cannot attach the XDP program ({tried}): {source}")]
    Attach {
        /// Interface name.
        interface: String,
        /// Modes tried.
        tried: String,
        /// The last error.
        source: io::Error,
    },
    /// The interface's MTU does not fit one UMEM frame and multi-buffer cannot take it either:
    /// switched off (`multi_buffer = false`), or a jumbo buffer would span more frames than a
    /// chain may have.
    #[error(
        "{interface}: MTU {mtu} does not fit a {frame_size}-byte UMEM frame (largest MTU {max_mtu} with \
         {headroom} bytes of headroom) and multi-buffer cannot take it: {why}; lower the MTU, or \
         raise frame_size to 4096 (MTU up to {max_mtu_4k} without multi-buffer)"
    )]
    MtuTooLarge {
        /// Interface name.
        interface: String,
        /// Its MTU.
        mtu: usize,
        /// UMEM frame size.
        frame_size: u32,
        /// Bytes before the packet in each frame.
        headroom: u32,
        /// Largest MTU that fits.
        max_mtu: usize,
        /// Largest MTU that fits a 4096-byte frame with the same headroom.
        max_mtu_4k: usize,
        /// Why multi-buffer does not help.
        why: &'static str,
    },
    /// The MTU needs AF_XDP multi-buffer and the kernel or the driver refused a step of it.
    #[error(
        "{interface}: MTU {mtu} needs AF_XDP multi-buffer, and {step} failed: {source} ({hint}); \
         lower the MTU to {max_mtu} or set frame_size = 4096 to do without"
    )]
    MultiBufferUnsupported {
        /// Interface name.
        interface: String,
        /// Its MTU.
        mtu: usize,
        /// The refused step: loading the XDP program with frags, or binding with `XDP_USE_SG`.
        step: &'static str,
        /// What the refusal most likely means.
        hint: &'static str,
        /// Largest MTU one frame holds.
        max_mtu: usize,
        /// The kernel's error.
        source: io::Error,
    },
    /// `mode = "zerocopy"` was asked for and the driver cannot do it.
    #[error("{interface} queue {queue}: zero-copy unavailable: {reason}")]
    ZeroCopyUnavailable {
        /// Interface name.
        interface: String,
        /// Queue.
        queue: u16,
        /// Why.
        reason: String,
    },
}
