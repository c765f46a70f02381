//! Mbuf pools, one per NUMA socket (and shape): ports on the same socket share it, so a packet
//! received on one port can be transmitted on another without a copy.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::eal::Eal;
use crate::error::DpdkError;
use crate::ffi::{self, MempoolPtr};

/// Shape of the mbuf pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolConfig {
    /// Mbufs per pool. `None` (the default): derived from the port's queues and rings by
    /// [`crate::DpdkPortConfig::mbufs`], and the pool is the port's own (its exception path
    /// shares it). `Some(n)`: exactly `n`, checked against the port's rings, and the pool is
    /// shared by every port on the NUMA socket with the same shape — then size it for every
    /// Rx/Tx descriptor of every port on the socket, plus `cache` per lcore, plus what is in
    /// flight in batches and rings: opening a port whose rings would bring the sharing ports'
    /// total to `n` or more fails, naming each port's share. DPDK's pools work best with
    /// `2^k - 1`.
    pub mbufs: Option<u32>,
    /// Per-lcore cache of the pool (DPDK's `cache_size`, at most 512).
    pub cache: u32,
    /// Bytes per mbuf after the headroom (the largest frame plus ESP trailer and ICV).
    pub data_room: u16,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self { mbufs: None, cache: 256, data_room: 2048 }
    }
}

/// Mbufs of a pool whose count is not given and cannot be derived from a port
/// ([`Mempool::for_socket`] with `mbufs: None`); also the least a derived count is.
pub const DEFAULT_MBUFS: u32 = 8191;

/// Numbers the pools' names (`rte_mempool` names are unique per process).
static POOL_SEQ: AtomicU32 = AtomicU32::new(0);

/// A DPDK mbuf pool (`rte_pktmbuf_pool_create`). `Copy`; pools live until the process exits.
#[derive(Clone, Copy, Debug)]
pub struct Mempool {
    mp: MempoolPtr,
    socket: i32,
    cfg: MempoolConfig,
}

/// Pools by socket, shape and owning port (`None`: shared by the socket's ports).
type PoolKey = (i32, MempoolConfig, Option<String>);
static POOLS: Mutex<Option<HashMap<PoolKey, Mempool>>> = Mutex::new(None);

/// What the ports sharing a pool hold in their rings at most, by pool (its address) and device.
static COMMITTED: Mutex<Option<HashMap<usize, BTreeMap<String, u64>>>> = Mutex::new(None);

impl Mempool {
    /// Records that `device`'s rings hold up to `ring_mbufs` mbufs of this pool (replacing
    /// what `device` recorded before), unless the ports sharing the pool would then hold all
    /// of it: a port whose Rx rings cannot be refilled stops receiving (`rx_nombuf`). Undone
    /// by [`Self::release`] when the port closes.
    pub(crate) fn commit(&self, device: &str, ring_mbufs: u64) -> Result<(), DpdkError> {
        let mut all = COMMITTED.lock().unwrap_or_else(|e| e.into_inner());
        let ports = all.get_or_insert_with(HashMap::new).entry(self.mp.as_ptr() as usize).or_default();
        let others = ports.iter().filter(|(d, _)| d.as_str() != device);
        let held = others.clone().map(|(_, n)| n).sum::<u64>() + ring_mbufs;
        let mbufs = u64::from(self.cfg.mbufs.unwrap_or(DEFAULT_MBUFS));
        if held >= mbufs {
            let sharing: Vec<String> = others
                .map(|(d, n)| format!("{d}: {n}"))
                .chain(std::iter::once(format!("{device}: {ring_mbufs}")))
                .collect();
            return Err(DpdkError::bad(
                "mempool.mbufs",
                mbufs,
                format!(
                    "the ports sharing this pool on socket {} hold up to {} mbufs in their rings ({}): \
                     make it more than that, or leave `mbufs` unset to give each port its own pool",
                    self.socket,
                    held,
                    sharing.join(", ")
                ),
            ));
        }
        ports.insert(device.to_string(), ring_mbufs);
        Ok(())
    }

    /// Forgets what `device` recorded with [`Self::commit`].
    pub(crate) fn release(&self, device: &str) {
        let mut all = COMMITTED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ports) = all.as_mut().and_then(|a| a.get_mut(&(self.mp.as_ptr() as usize))) {
            ports.remove(device);
        }
    }

    /// The pool of `socket` with shape `cfg`, created on first use and shared afterwards
    /// (`mbufs: None` is [`DEFAULT_MBUFS`]).
    pub fn for_socket(eal: &Eal, socket: i32, cfg: MempoolConfig) -> Result<Mempool, DpdkError> {
        Self::get(eal, socket, cfg, None)
    }

    /// The pool of `socket` with shape `cfg` (`mbufs` resolved): shared by every caller with
    /// the same `socket`, shape and `owner` (`None`: the pool of the socket; `Some(device)`: a
    /// port's own pool, reused when the port is opened again).
    pub(crate) fn get(
        eal: &Eal,
        socket: i32,
        cfg: MempoolConfig,
        owner: Option<&str>,
    ) -> Result<Mempool, DpdkError> {
        let cfg = MempoolConfig { mbufs: Some(cfg.mbufs.unwrap_or(DEFAULT_MBUFS)), ..cfg };
        let mbufs = cfg.mbufs.unwrap_or(DEFAULT_MBUFS);
        if mbufs == 0 {
            return Err(DpdkError::bad("mempool.mbufs", mbufs, "at least one mbuf"));
        }
        if cfg.cache > 512 || cfg.cache > mbufs / 2 {
            return Err(DpdkError::bad("mempool.cache", cfg.cache, "at most 512 and at most half of mbufs"));
        }
        if cfg.data_room < 64 {
            return Err(DpdkError::bad("mempool.data_room", cfg.data_room, "at least 64 bytes"));
        }
        let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
        let pools = pools.get_or_insert_with(HashMap::new);
        let key = (socket, cfg, owner.map(str::to_string));
        if let Some(p) = pools.get(&key) {
            return Ok(*p);
        }
        let name = format!("ws_mbuf_s{}_{}", socket.max(0), POOL_SEQ.fetch_add(1, Ordering::Relaxed));
        let cname =
            CString::new(name.clone()).map_err(|_| DpdkError::bad("mempool", &name, "NUL in name"))?;
        // The data room DPDK wants includes the headroom it reserves in front of every packet.
        let room = u32::from(cfg.data_room) + eal.mbuf_headroom() as u32;
        let room = u16::try_from(room).map_err(|_| {
            DpdkError::bad("mempool.data_room", cfg.data_room, "data room + headroom must fit 65535")
        })?;
        let mp = ffi::pktmbuf_pool_create(&cname, mbufs, cfg.cache, room, socket).ok_or_else(|| {
            DpdkError::Mempool { name: name.clone(), mbufs, socket, message: ffi::strerror(ffi::errno()) }
        })?;
        let p = Mempool { mp, socket, cfg };
        pools.insert(key, p);
        Ok(p)
    }

    /// The NUMA socket the pool's memory is on.
    pub fn socket(&self) -> i32 {
        self.socket
    }

    /// The pool's shape (`mbufs` is always `Some`: the count the pool was created with).
    pub fn config(&self) -> MempoolConfig {
        self.cfg
    }

    /// Mbufs free in the pool (including per-lcore caches).
    pub fn available(&self) -> u32 {
        ffi::mempool_counts(self.mp).0
    }

    /// Mbufs taken from the pool (in flight, in rings, in batches).
    pub fn in_use(&self) -> u32 {
        ffi::mempool_counts(self.mp).1
    }

    pub(crate) fn raw(&self) -> MempoolPtr {
        self.mp
    }
}
