//! The DPDK Environment Abstraction Layer: initialised once per process, with arguments from
//! configuration.

use std::cell::Cell;
use std::ffi::CString;
use std::sync::{Mutex, OnceLock};

use crate::error::DpdkError;
use crate::ffi;

/// The running EAL. Exists only after `rte_eal_init` succeeded; every port is built through it.
#[derive(Debug)]
pub struct Eal {
    args: Vec<String>,
    sockets: Vec<i32>,
    pub(crate) layout: ffi::MbufLayout,
}

static EAL: OnceLock<Result<Eal, DpdkError>> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// EAL arguments for tests and benches on virtual devices: no hugepages, no PCI scan, no shared
/// runtime directory, 1 GiB of memory, on the cores of this process. Add `--vdev=…` arguments.
pub const TEST_EAL_ARGS: [&str; 6] = ["--no-huge", "-m", "1024", "--no-pci", "--no-shconf", "--log-level=5"];

impl Eal {
    /// Initialises the EAL with `args` (without the program name), once per process.
    ///
    /// Later calls with the same arguments return the running EAL; with other arguments they
    /// fail with [`DpdkError::EalArgsDiffer`] (DPDK cannot be initialised twice). A failed init
    /// is remembered: DPDK cannot retry it in the same process either.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<&'static Eal, DpdkError> {
        let requested: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        let eal = EAL.get_or_init(|| Self::start(&requested));
        match eal {
            Ok(e) if e.args == requested => Ok(e),
            Ok(e) => {
                Err(DpdkError::EalArgsDiffer { running: e.args.join(" "), requested: requested.join(" ") })
            }
            Err(err) => Err(err.clone()),
        }
    }

    /// The running EAL, if [`Eal::init`] succeeded.
    pub fn get() -> Option<&'static Eal> {
        EAL.get().and_then(|r| r.as_ref().ok())
    }

    fn start(args: &[String]) -> Result<Eal, DpdkError> {
        if cfg!(wirespeed_dpdk_absent) {
            return Err(DpdkError::NotInstalled);
        }
        let bad = |a: &String| DpdkError::bad("eal", a, "EAL arguments cannot contain NUL bytes");
        let mut argv = vec![CString::new("wirespeed").map_err(|_| bad(&String::new()))?];
        for a in args {
            argv.push(CString::new(a.as_str()).map_err(|_| bad(a))?);
        }
        let rc = ffi::eal_init(&argv);
        if rc < 0 {
            let errno = -rc;
            return Err(DpdkError::EalInit { args: args.join(" "), errno, message: ffi::strerror(errno) });
        }
        let layout = ffi::mbuf_layout();
        Ok(Eal { args: args.to_vec(), sockets: ffi::sockets(), layout })
    }

    /// The arguments the EAL was started with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// NUMA sockets DPDK found.
    pub fn sockets(&self) -> &[i32] {
        &self.sockets
    }

    /// Ports DPDK probed.
    pub fn port_count(&self) -> u16 {
        ffi::eth_dev_count_avail()
    }

    /// mbuf headroom DPDK reserves before received packets (`RTE_PKTMBUF_HEADROOM`).
    pub fn mbuf_headroom(&self) -> usize {
        self.layout.headroom as usize
    }

    /// Makes the calling thread an EAL thread (an lcore id, mempool caches) if it is not one.
    /// Queues call this on first use, so shard threads need not; idempotent.
    pub fn register_thread(&self) -> Result<(), DpdkError> {
        ensure_thread_registered()
    }
}

/// Per-thread registration state; gives a registered thread's lcore id back when it exits, so
/// shard threads that come and go do not use up the EAL's lcore table.
struct Registration {
    tried: Cell<bool>,
    registered: Cell<bool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.registered.get() {
            ffi::thread_unregister();
        }
    }
}

thread_local! {
    static REGISTRATION: Registration = const { Registration { tried: Cell::new(false), registered: Cell::new(false) } };
}

/// Registers the current thread with the EAL once (see [`Eal::register_thread`]).
#[inline]
pub(crate) fn ensure_thread_registered() -> Result<(), DpdkError> {
    if REGISTRATION.try_with(|r| r.tried.get()).unwrap_or(true) {
        return Ok(());
    }
    register_slow()
}

#[cold]
fn register_slow() -> Result<(), DpdkError> {
    // Tried once per thread: a thread the EAL has no lcore slot for still works, only without
    // mempool caches.
    let _ = REGISTRATION.try_with(|r| r.tried.set(true));
    if ffi::lcore_id() == u32::MAX {
        let rc = ffi::thread_register();
        if rc < 0 {
            return Err(DpdkError::port("eal", "rte_thread_register", rc));
        }
        let _ = REGISTRATION.try_with(|r| r.registered.set(true));
    }
    Ok(())
}

/// The NUMA socket of the calling thread (0 when unknown).
pub(crate) fn current_socket() -> i32 {
    ffi::socket_id().max(0)
}
