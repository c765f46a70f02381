//! Mbuf pools, one per NUMA socket (and shape): ports on the same socket share it, so a packet
//! received on one port can be transmitted on another without a copy.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::eal::Eal;
use crate::error::DpdkError;
use crate::ffi::{self, MempoolPtr};

/// Shape of the mbuf pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolConfig {
    /// Mbufs per pool (per NUMA socket). Size for every Rx/Tx descriptor of every port on the
    /// socket, plus `cache` per lcore, plus what is in flight in batches and rings.
    pub mbufs: u32,
    /// Per-lcore cache of the pool (DPDK's `cache_size`, at most 512).
    pub cache: u32,
    /// Bytes per mbuf after the headroom (the largest frame plus ESP trailer and ICV).
    pub data_room: u16,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self { mbufs: 8191, cache: 256, data_room: 2048 }
    }
}

/// A DPDK mbuf pool (`rte_pktmbuf_pool_create`). `Copy`; pools live until the process exits.
#[derive(Clone, Copy, Debug)]
pub struct Mempool {
    mp: MempoolPtr,
    socket: i32,
    cfg: MempoolConfig,
}

static POOLS: Mutex<Option<HashMap<(i32, MempoolConfig), Mempool>>> = Mutex::new(None);

impl Mempool {
    /// The pool of `socket` with shape `cfg`, created on first use and shared afterwards.
    pub fn for_socket(eal: &Eal, socket: i32, cfg: MempoolConfig) -> Result<Mempool, DpdkError> {
        let _ = eal;
        if cfg.mbufs == 0 {
            return Err(DpdkError::bad("mempool.mbufs", cfg.mbufs, "at least one mbuf"));
        }
        if cfg.cache > 512 || cfg.cache > cfg.mbufs / 2 {
            return Err(DpdkError::bad("mempool.cache", cfg.cache, "at most 512 and at most half of mbufs"));
        }
        if cfg.data_room < 64 {
            return Err(DpdkError::bad("mempool.data_room", cfg.data_room, "at least 64 bytes"));
        }
        let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
        let pools = pools.get_or_insert_with(HashMap::new);
        if let Some(p) = pools.get(&(socket, cfg)) {
            return Ok(*p);
        }
        let name = format!("ws_mbuf_s{}_{}", socket.max(0), pools.len());
        let cname =
            CString::new(name.clone()).map_err(|_| DpdkError::bad("mempool", &name, "NUL in name"))?;
        // The data room DPDK wants includes the headroom it reserves in front of every packet.
        let room = u32::from(cfg.data_room) + eal.mbuf_headroom() as u32;
        let room = u16::try_from(room).map_err(|_| {
            DpdkError::bad("mempool.data_room", cfg.data_room, "data room + headroom must fit 65535")
        })?;
        let mp = ffi::pktmbuf_pool_create(&cname, cfg.mbufs, cfg.cache, room, socket).ok_or_else(|| {
            DpdkError::Mempool {
                name: name.clone(),
                mbufs: cfg.mbufs,
                socket,
                message: ffi::strerror(ffi::errno()),
            }
        })?;
        let p = Mempool { mp, socket, cfg };
        pools.insert((socket, cfg), p);
        Ok(p)
    }

    /// The NUMA socket the pool's memory is on.
    pub fn socket(&self) -> i32 {
        self.socket
    }

    /// The pool's shape.
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
