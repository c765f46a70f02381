//! Errors of the DPDK backend. Each names the device, call or field that failed.

use wirespeed_core::PortError;

/// What went wrong talking to DPDK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpdkError {
    /// This build has no DPDK (libdpdk was not found through pkg-config when it was compiled).
    #[error(
        "DPDK is not installed: wirespeed-dpdk was built without libdpdk (install libdpdk-dev >= 22.11 and pkg-config, then rebuild)"
    )]
    NotInstalled,
    /// `rte_eal_init` failed.
    #[error("EAL init with arguments `{args}` failed: {message} (errno {errno})")]
    EalInit {
        /// The arguments given.
        args: String,
        /// Positive errno.
        errno: i32,
        /// DPDK's message.
        message: String,
    },
    /// The EAL is already running with other arguments (it can be initialised once per process).
    #[error("EAL already initialised with `{running}`; cannot re-initialise with `{requested}`")]
    EalArgsDiffer {
        /// Arguments of the running EAL.
        running: String,
        /// Arguments asked for now.
        requested: String,
    },
    /// No ethdev with that name, and probing its devargs did not create one.
    #[error("no DPDK port named `{device}` ({why})")]
    NoSuchDevice {
        /// Device name.
        device: String,
        /// What was tried.
        why: String,
    },
    /// A DPDK call on a port failed.
    #[error("port {device}: {call} failed: {message} (errno {errno})")]
    Port {
        /// Device name.
        device: String,
        /// The DPDK function.
        call: &'static str,
        /// Positive errno.
        errno: i32,
        /// DPDK's message.
        message: String,
    },
    /// A mempool could not be created.
    #[error("mempool `{name}` ({mbufs} mbufs on socket {socket}) could not be created: {message}")]
    Mempool {
        /// Pool name.
        name: String,
        /// Mbufs asked for.
        mbufs: u32,
        /// NUMA socket.
        socket: i32,
        /// DPDK's message.
        message: String,
    },
    /// A configuration value is out of range.
    #[error("bad DPDK port configuration: `{field}` = {value}: {why}")]
    BadConfig {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is allowed.
        why: String,
    },
}

impl DpdkError {
    pub(crate) fn port(device: &str, call: &'static str, rc: i32) -> Self {
        let errno = rc.abs();
        DpdkError::Port { device: device.into(), call, errno, message: crate::ffi::strerror(errno) }
    }

    pub(crate) fn bad(field: &'static str, value: impl std::fmt::Display, why: impl Into<String>) -> Self {
        DpdkError::BadConfig { field, value: value.to_string(), why: why.into() }
    }
}

impl From<DpdkError> for PortError {
    fn from(e: DpdkError) -> Self {
        let port = match &e {
            DpdkError::NoSuchDevice { device, .. } | DpdkError::Port { device, .. } => device.clone(),
            _ => "dpdk".into(),
        };
        PortError::Backend { port, message: e.to_string() }
    }
}
