//! The only place that declares the C shim (`shim/shim.h`): `extern "C"` items, the shim's own
//! `#[repr(C)]` structs, and safe wrappers for the calls that take no mbuf pointers.
//!
//! The Rust side never sees a DPDK struct: the shim copies what is needed into structs declared
//! in `shim.h` (and mirrored here field for field), or reports field offsets it computed with
//! `offsetof` ([`MbufLayout`]). Mbuf pointers are handled in [`crate::mbuf`].
//!
//! Every wrapper here may only be called after the EAL was initialised: the crate reaches them
//! only through a [`crate::Eal`] (which exists only after `rte_eal_init` succeeded) or through a
//! port built from one.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::marker::{PhantomData, PhantomPinned};

/// `struct rte_mbuf`, opaque.
#[repr(C)]
pub(crate) struct RteMbuf {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// `struct rte_mempool`, opaque.
#[repr(C)]
pub(crate) struct RteMempool {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// A pointer to a mempool that lives for the rest of the process (pools are never freed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MempoolPtr(std::ptr::NonNull<RteMempool>);

// SAFETY: an rte_mempool is a thread-safe object (its default ops are multi-producer /
// multi-consumer rings) and is never freed, so the pointer may move between threads.
unsafe impl Send for MempoolPtr {}
// SAFETY: as above; every operation on the pool is safe from any thread.
unsafe impl Sync for MempoolPtr {}

impl MempoolPtr {
    /// The raw pointer, for the shim.
    pub(crate) fn as_ptr(self) -> *mut RteMempool {
        self.0.as_ptr()
    }
}

/// `struct ws_mbuf_layout` (shim.h): rte_mbuf field offsets as the C compiler laid them out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MbufLayout {
    pub buf_addr: u32,
    pub data_off: u32,
    pub data_len: u32,
    pub pkt_len: u32,
    pub buf_len: u32,
    pub ol_flags: u32,
    pub rss: u32,
    pub port: u32,
    pub nb_segs: u32,
    pub rss_flag: u64,
    pub headroom: u32,
}

/// `struct ws_dev_info` (shim.h).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct DevInfo {
    pub driver_name: [c_char; 32],
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub reta_size: u16,
    pub hash_key_size: u8,
    pub socket_id: i32,
    pub max_rx_pktlen: u32,
    pub flow_type_rss_offloads: u64,
    pub flow_type_rss_dpdk: u64,
    pub min_mtu: u16,
    pub max_mtu: u16,
}

impl Default for DevInfo {
    fn default() -> Self {
        Self {
            driver_name: [0; 32],
            max_rx_queues: 0,
            max_tx_queues: 0,
            reta_size: 0,
            hash_key_size: 0,
            socket_id: -1,
            max_rx_pktlen: 0,
            flow_type_rss_offloads: 0,
            flow_type_rss_dpdk: 0,
            min_mtu: 0,
            max_mtu: 0,
        }
    }
}

impl DevInfo {
    /// The driver name as a Rust string.
    pub fn driver(&self) -> String {
        let bytes: Vec<u8> = self.driver_name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// `struct ws_link` (shim.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Link {
    pub speed_mbps: u32,
    pub up: u8,
    pub full_duplex: u8,
    pub autoneg: u8,
}

/// `struct ws_stats` (shim.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// `struct ws_flow_rule` (shim.h): one steering rule in the terms rte_flow can express.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlowRule {
    pub has_ethertype: u8,
    pub ethertype: u16,
    pub has_vlan: u8,
    pub vlan: u16,
    pub ip_version: u8,
    pub has_proto: u8,
    pub proto: u8,
    pub has_src: u8,
    pub has_dst: u8,
    pub src: [u8; 16],
    pub src_mask: [u8; 16],
    pub dst: [u8; 16],
    pub dst_mask: [u8; 16],
    pub has_dscp: u8,
    pub dscp: u8,
    pub l4: u8,
    pub has_sport: u8,
    pub has_dport: u8,
    pub sport: u16,
    pub dport: u16,
    pub has_spi: u8,
    pub spi: u32,
    pub has_icmp_type: u8,
    pub icmp_type: u8,
    pub action: u8,
    pub queue: u16,
    pub n_queues: u16,
    pub queues: *const u16,
    pub rss_types: u32,
    pub key: *const u8,
    pub key_len: u8,
    pub symmetric: u8,
    pub priority: u32,
}

impl Default for FlowRule {
    fn default() -> Self {
        Self {
            has_ethertype: 0,
            ethertype: 0,
            has_vlan: 0,
            vlan: 0,
            ip_version: 0,
            has_proto: 0,
            proto: 0,
            has_src: 0,
            has_dst: 0,
            src: [0; 16],
            src_mask: [0; 16],
            dst: [0; 16],
            dst_mask: [0; 16],
            has_dscp: 0,
            dscp: 0,
            l4: 0,
            has_sport: 0,
            has_dport: 0,
            sport: 0,
            dport: 0,
            has_spi: 0,
            spi: 0,
            has_icmp_type: 0,
            icmp_type: 0,
            action: 0,
            queue: 0,
            n_queues: 0,
            queues: std::ptr::null(),
            rss_types: 0,
            key: std::ptr::null(),
            key_len: 0,
            symmetric: 0,
            priority: 0,
        }
    }
}

// The shim's structs, pinned: the same sizes and offsets are `_Static_assert`ed in `shim.h`, so
// a change on either side that the other does not follow fails the build (LP64 values:
// `FlowRule` holds pointers).
macro_rules! assert_layout {
    ($t:ty, size $size:literal, $($field:ident @ $off:literal),* $(,)?) => {
        const _: () = {
            assert!(std::mem::size_of::<$t>() == $size, concat!("size of ", stringify!($t)));
            $( assert!(std::mem::offset_of!($t, $field) == $off, concat!("offset of ", stringify!($t), ".", stringify!($field))); )*
        };
    };
}
assert_layout!(MbufLayout, size 56, buf_addr @ 0, data_off @ 4, data_len @ 8, pkt_len @ 12, buf_len @ 16, ol_flags @ 20, rss @ 24, port @ 28, nb_segs @ 32, rss_flag @ 40, headroom @ 48);
assert_layout!(DevInfo, size 72, driver_name @ 0, max_rx_queues @ 32, max_tx_queues @ 34, reta_size @ 36, hash_key_size @ 38, socket_id @ 40, max_rx_pktlen @ 44, flow_type_rss_offloads @ 48, flow_type_rss_dpdk @ 56, min_mtu @ 64, max_mtu @ 66);
assert_layout!(Link, size 8, speed_mbps @ 0, up @ 4, full_duplex @ 5, autoneg @ 6);
assert_layout!(Stats, size 64, ipackets @ 0, opackets @ 8, ibytes @ 16, obytes @ 24, imissed @ 32, ierrors @ 40, oerrors @ 48, rx_nombuf @ 56);
#[cfg(target_pointer_width = "64")]
assert_layout!(FlowRule, size 136, has_ethertype @ 0, ethertype @ 2, has_vlan @ 4, vlan @ 6, ip_version @ 8, has_proto @ 9, proto @ 10, has_src @ 11, has_dst @ 12, src @ 13, src_mask @ 29, dst @ 45, dst_mask @ 61, has_dscp @ 77, dscp @ 78, l4 @ 79, has_sport @ 80, has_dport @ 81, sport @ 82, dport @ 84, has_spi @ 86, spi @ 88, has_icmp_type @ 92, icmp_type @ 93, action @ 94, queue @ 96, n_queues @ 98, queues @ 104, rss_types @ 112, key @ 120, key_len @ 128, symmetric @ 129, priority @ 132);

/// Declares the shim's functions; without DPDK (`cfg(wirespeed_dpdk_absent)`) the same names are
/// stubs returning an error value, never reached because [`crate::Eal::init`] fails first.
macro_rules! shim {
    ($( fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)? ; )*) => {
        #[cfg(not(wirespeed_dpdk_absent))]
        unsafe extern "C" {
            $( pub(crate) fn $name($($arg: $ty),*) $(-> $ret)?; )*
        }
        $(
            #[cfg(wirespeed_dpdk_absent)]
            #[allow(clippy::missing_safety_doc)]
            pub(crate) unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
                $( let _ = $arg; )*
                Absent::absent()
            }
        )*
    };
}

#[cfg(wirespeed_dpdk_absent)]
trait Absent {
    fn absent() -> Self;
}

#[cfg(wirespeed_dpdk_absent)]
mod absent_values {
    use super::Absent;
    impl Absent for () {
        fn absent() {}
    }
    impl Absent for i32 {
        fn absent() -> Self {
            -19 // -ENODEV
        }
    }
    macro_rules! zero {
        ($($t:ty),*) => { $( impl Absent for $t { fn absent() -> Self { 0 } } )* };
    }
    zero!(u8, u16, u32, u64);
    impl<T> Absent for *mut T {
        fn absent() -> Self {
            std::ptr::null_mut()
        }
    }
    impl<T> Absent for *const T {
        fn absent() -> Self {
            std::ptr::null()
        }
    }
}

shim! {
    fn ws_mbuf_layout_get(out: *mut MbufLayout);
    fn ws_eal_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
    fn ws_errno() -> c_int;
    fn ws_strerror(err: c_int) -> *const c_char;
    fn ws_thread_register() -> c_int;
    fn ws_thread_unregister();
    fn ws_lcore_id() -> c_uint;
    fn ws_socket_id() -> c_int;
    fn ws_socket_count() -> c_uint;
    fn ws_socket_id_by_idx(idx: c_uint) -> c_int;
    fn ws_pktmbuf_pool_create(name: *const c_char, n: c_uint, cache: c_uint, data_room: u16, socket: c_int) -> *mut RteMempool;
    fn ws_mempool_avail_count(mp: *const RteMempool) -> c_uint;
    fn ws_mempool_in_use_count(mp: *const RteMempool) -> c_uint;
    fn ws_pktmbuf_alloc(mp: *mut RteMempool) -> *mut RteMbuf;
    fn ws_pktmbuf_pool_of(m: *const RteMbuf) -> *mut RteMempool;
    fn ws_pktmbuf_free(m: *mut RteMbuf);
    fn ws_pktmbuf_prepend(m: *mut RteMbuf, len: u16) -> *mut u8;
    fn ws_pktmbuf_adj(m: *mut RteMbuf, len: u16) -> *mut u8;
    fn ws_pktmbuf_append(m: *mut RteMbuf, len: u16) -> *mut u8;
    fn ws_pktmbuf_trim(m: *mut RteMbuf, len: u16) -> c_int;
    fn ws_mbuf_set_rss(m: *mut RteMbuf, hash: u32);
    fn ws_rx_burst(port: u16, queue: u16, pkts: *mut *mut RteMbuf, n: u16) -> u16;
    fn ws_tx_burst(port: u16, queue: u16, pkts: *mut *mut RteMbuf, n: u16) -> u16;
    fn ws_eth_dev_count_avail() -> u16;
    fn ws_eth_dev_get_port_by_name(name: *const c_char, port: *mut u16) -> c_int;
    fn ws_dev_probe(devargs: *const c_char) -> c_int;
    fn ws_eth_dev_info(port: u16, out: *mut DevInfo) -> c_int;
    fn ws_eth_dev_configure(
        port: u16,
        nb_rx: u16,
        nb_tx: u16,
        rss: c_int,
        ws_types: u32,
        key: *const u8,
        key_len: u8,
        mtu: u16,
    ) -> c_int;
    fn ws_eth_rx_queue_setup(port: u16, queue: u16, nb_desc: u16, socket: c_int, mp: *mut RteMempool) -> c_int;
    fn ws_eth_tx_queue_setup(port: u16, queue: u16, nb_desc: u16, socket: c_int) -> c_int;
    fn ws_eth_dev_start(port: u16) -> c_int;
    fn ws_eth_dev_stop(port: u16) -> c_int;
    fn ws_eth_promiscuous_enable(port: u16) -> c_int;
    fn ws_eth_dev_get_mtu(port: u16, mtu: *mut u16) -> c_int;
    fn ws_eth_macaddr_get(port: u16, mac: *mut u8) -> c_int;
    fn ws_eth_link_get_nowait(port: u16, out: *mut Link) -> c_int;
    fn ws_eth_stats_get(port: u16, out: *mut Stats) -> c_int;
    fn ws_eth_xstats_count(port: u16) -> c_int;
    fn ws_eth_xstats_names(port: u16, names: *mut c_char, stride: c_uint, n: c_uint) -> c_int;
    fn ws_eth_xstats_values(port: u16, values: *mut u64, n: c_uint) -> c_int;
    fn ws_eth_rss_hash_update(port: u16, key: *const u8, key_len: u8, ws_types: u32) -> c_int;
    fn ws_eth_rss_hash_conf_get(port: u16, key: *mut u8, key_len: *mut u8, hf: *mut u64) -> c_int;
    fn ws_eth_reta_update(port: u16, reta: *const u16, size: u16) -> c_int;
    fn ws_eth_reta_query(port: u16, reta: *mut u16, size: u16) -> c_int;
    fn ws_flow_validate(port: u16, rule: *const FlowRule, err: *mut c_char, err_len: usize) -> c_int;
    fn ws_flow_create(port: u16, rule: *const FlowRule, err: *mut c_char, err_len: usize) -> *mut c_void;
    fn ws_flow_destroy(port: u16, flow: *mut c_void) -> c_int;
    fn ws_softrss_v4(src: u32, dst: u32, l4_word: u32, with_l4: c_int, key: *const u8) -> u32;
    fn ws_softrss_v6(src: *const u8, dst: *const u8, l4_word: u32, with_l4: c_int, key: *const u8) -> u32;
}

/// A negative errno from DPDK, or `rte_errno` when a call returned a bare failure.
pub(crate) fn strerror(err: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string
    // (never NULL); we copy it out at once.
    let p = unsafe { ws_strerror(err) };
    if p.is_null() {
        return format!("error {err}");
    }
    // SAFETY: non-null, NUL-terminated (see above).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// `rte_errno` of this thread.
pub(crate) fn errno() -> i32 {
    // SAFETY: reads a thread-local integer.
    unsafe { ws_errno() }
}

/// The mbuf field offsets (valid before EAL init: pure `offsetof`).
pub(crate) fn mbuf_layout() -> MbufLayout {
    let mut l = MbufLayout::default();
    // SAFETY: `l` is a valid, writable ws_mbuf_layout.
    unsafe { ws_mbuf_layout_get(&mut l) };
    l
}

/// `rte_eal_init` with `args` (the first is the program name). Returns the number of arguments
/// parsed, or a negative errno.
pub(crate) fn eal_init(args: &[CString]) -> i32 {
    let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    // SAFETY: argv holds `args.len()` valid NUL-terminated strings plus a NULL terminator and
    // outlives the call; rte_eal_init may permute argv but does not write into the strings. The
    // caller (Eal::init) makes sure this runs once per process.
    let rc = unsafe { ws_eal_init(args.len() as c_int, argv.as_mut_ptr()) };
    if rc < 0 { -errno() } else { rc }
}

/// Registers the calling (non-EAL) thread with the EAL so it gets an lcore id and mempool
/// caches. Returns 0 or a negative errno.
pub(crate) fn thread_register() -> i32 {
    // SAFETY: EAL is initialised (module contract); registering twice is harmless.
    let rc = unsafe { ws_thread_register() };
    if rc < 0 { -errno() } else { 0 }
}

/// Gives the calling thread's lcore id back (threads registered by [`thread_register`]).
pub(crate) fn thread_unregister() {
    // SAFETY: called once, on a thread that registered, as it exits.
    unsafe { ws_thread_unregister() }
}

/// lcore id of the calling thread (`u32::MAX` = LCORE_ID_ANY: not an EAL thread).
pub(crate) fn lcore_id() -> u32 {
    // SAFETY: reads a per-thread variable.
    unsafe { ws_lcore_id() }
}

/// NUMA socket of the calling thread.
pub(crate) fn socket_id() -> i32 {
    // SAFETY: reads a per-thread variable.
    unsafe { ws_socket_id() }
}

/// The NUMA sockets the EAL found.
pub(crate) fn sockets() -> Vec<i32> {
    // SAFETY: EAL initialised (module contract).
    let n = unsafe { ws_socket_count() };
    // SAFETY: idx < count.
    (0..n).map(|i| unsafe { ws_socket_id_by_idx(i) }).filter(|s| *s >= 0).collect()
}

/// `rte_pktmbuf_pool_create`; `None` on failure (see [`errno`]).
pub(crate) fn pktmbuf_pool_create(
    name: &CStr,
    n: u32,
    cache: u32,
    data_room: u16,
    socket: i32,
) -> Option<MempoolPtr> {
    // SAFETY: `name` is NUL-terminated and only read during the call (DPDK copies it).
    let mp = unsafe { ws_pktmbuf_pool_create(name.as_ptr(), n, cache, data_room, socket) };
    std::ptr::NonNull::new(mp).map(MempoolPtr)
}

/// Ports the EAL probed.
pub(crate) fn eth_dev_count_avail() -> u16 {
    // SAFETY: EAL initialised (module contract).
    unsafe { ws_eth_dev_count_avail() }
}

/// Port id of a device name (`net_null0`, `0000:3b:00.0`).
pub(crate) fn port_by_name(name: &CStr) -> Option<u16> {
    let mut port = 0u16;
    // SAFETY: `name` NUL-terminated, `port` writable.
    let rc = unsafe { ws_eth_dev_get_port_by_name(name.as_ptr(), &mut port) };
    (rc == 0).then_some(port)
}

/// Hot-plugs a device from a devargs string (`net_null5`, `0000:3b:00.0,rxq_cqe_comp_en=1`).
pub(crate) fn dev_probe(devargs: &CStr) -> i32 {
    // SAFETY: `devargs` NUL-terminated, read during the call.
    unsafe { ws_dev_probe(devargs.as_ptr()) }
}

/// Device capabilities.
pub(crate) fn dev_info(port: u16) -> Result<DevInfo, i32> {
    let mut d = DevInfo::default();
    // SAFETY: `d` is a valid, writable ws_dev_info.
    let rc = unsafe { ws_eth_dev_info(port, &mut d) };
    if rc == 0 { Ok(d) } else { Err(rc) }
}

/// `rte_eth_dev_configure` (RSS on with `key`/`types` when `rss`; `mtu` 0: the driver's default).
pub(crate) fn dev_configure(
    port: u16,
    nb_rx: u16,
    nb_tx: u16,
    rss: bool,
    types: u32,
    key: &[u8],
    mtu: u16,
) -> i32 {
    // SAFETY: `key` is valid for `key.len()` (≤ 255, checked by the caller) bytes during the call;
    // DPDK copies it.
    unsafe {
        ws_eth_dev_configure(
            port,
            nb_rx,
            nb_tx,
            c_int::from(rss),
            types,
            key.as_ptr(),
            key.len().min(255) as u8,
            mtu,
        )
    }
}

/// `rte_eth_rx_queue_setup` with the port's default Rx configuration.
///
pub(crate) fn rx_queue_setup(port: u16, queue: u16, nb_desc: u16, socket: i32, mp: MempoolPtr) -> i32 {
    // SAFETY: `mp` is a mempool created by rte_pktmbuf_pool_create that is never freed.
    unsafe { ws_eth_rx_queue_setup(port, queue, nb_desc, socket, mp.as_ptr()) }
}

/// `rte_eth_tx_queue_setup` with the port's default Tx configuration.
pub(crate) fn tx_queue_setup(port: u16, queue: u16, nb_desc: u16, socket: i32) -> i32 {
    // SAFETY: plain values; DPDK validates the port and queue ids.
    unsafe { ws_eth_tx_queue_setup(port, queue, nb_desc, socket) }
}

/// `rte_eth_dev_start`.
pub(crate) fn dev_start(port: u16) -> i32 {
    // SAFETY: DPDK validates the port id.
    unsafe { ws_eth_dev_start(port) }
}

/// `rte_eth_dev_stop`.
pub(crate) fn dev_stop(port: u16) -> i32 {
    // SAFETY: DPDK validates the port id.
    unsafe { ws_eth_dev_stop(port) }
}

/// `rte_eth_promiscuous_enable`.
pub(crate) fn promiscuous_enable(port: u16) -> i32 {
    // SAFETY: DPDK validates the port id.
    unsafe { ws_eth_promiscuous_enable(port) }
}

/// The port's MTU (`rte_eth_dev_get_mtu`: the IP MTU, Ethernet header not counted), or `None`
/// when the driver cannot say.
pub(crate) fn mtu(port: u16) -> Option<u16> {
    let mut mtu = 0u16;
    // SAFETY: DPDK validates the port id; `mtu` is a valid place for the one u16 it writes.
    let rc = unsafe { ws_eth_dev_get_mtu(port, &mut mtu) };
    (rc == 0 && mtu > 0).then_some(mtu)
}

/// The port's MAC address.
pub(crate) fn macaddr(port: u16) -> [u8; 6] {
    let mut mac = [0u8; 6];
    // SAFETY: `mac` has room for the 6 bytes the shim writes.
    unsafe { ws_eth_macaddr_get(port, mac.as_mut_ptr()) };
    mac
}

/// Link state without waiting.
pub(crate) fn link(port: u16) -> Result<Link, i32> {
    let mut l = Link::default();
    // SAFETY: `l` is a valid, writable ws_link.
    let rc = unsafe { ws_eth_link_get_nowait(port, &mut l) };
    if rc == 0 { Ok(l) } else { Err(rc) }
}

/// Basic port counters.
pub(crate) fn stats(port: u16) -> Result<Stats, i32> {
    let mut s = Stats::default();
    // SAFETY: `s` is a valid, writable ws_stats.
    let rc = unsafe { ws_eth_stats_get(port, &mut s) };
    if rc == 0 { Ok(s) } else { Err(rc) }
}

/// Names of the extended statistics, in id order.
pub(crate) fn xstat_names(port: u16) -> Result<Vec<String>, i32> {
    const STRIDE: usize = 64;
    // SAFETY: DPDK validates the port id; NULL/0 asks for the count.
    let n = unsafe { ws_eth_xstats_count(port) };
    if n < 0 {
        return Err(n);
    }
    let mut buf = vec![0 as c_char; n as usize * STRIDE];
    // SAFETY: `buf` holds `n` entries of STRIDE bytes; the shim writes NUL-terminated names
    // of at most STRIDE bytes each and no more than `n` of them.
    let got = unsafe { ws_eth_xstats_names(port, buf.as_mut_ptr(), STRIDE as c_uint, n as c_uint) };
    if got < 0 || got > n {
        return Err(if got < 0 { got } else { -7 });
    }
    Ok(buf
        .chunks(STRIDE)
        .take(got as usize)
        .map(|c| {
            let bytes: Vec<u8> = c.iter().take_while(|b| **b != 0).map(|b| *b as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect())
}

/// Values of the extended statistics into `out` (indexed by id); returns how many were filled.
pub(crate) fn xstat_values(port: u16, out: &mut [u64]) -> i32 {
    // SAFETY: `out` holds `out.len()` writable u64s; the shim writes at most that many, by id
    // (ids ≥ len fall back to their position, which is < len).
    unsafe { ws_eth_xstats_values(port, out.as_mut_ptr(), out.len() as c_uint) }
}

/// `rte_eth_dev_rss_hash_update`.
pub(crate) fn rss_hash_update(port: u16, key: &[u8], types: u32) -> i32 {
    // SAFETY: `key` valid for its length (≤ 255, checked by the caller) during the call.
    unsafe { ws_eth_rss_hash_update(port, key.as_ptr(), key.len().min(255) as u8, types) }
}

/// `rte_eth_dev_rss_hash_conf_get`: the key (`key_len` bytes) and DPDK hash-function bits.
pub(crate) fn rss_hash_conf(port: u16, key_len: u8) -> Result<(Vec<u8>, u64), i32> {
    let mut key = vec![0u8; usize::from(key_len)];
    let mut len = key_len;
    let mut hf = 0u64;
    // SAFETY: `key` has room for `len` bytes; `len` and `hf` are writable.
    let rc = unsafe { ws_eth_rss_hash_conf_get(port, key.as_mut_ptr(), &mut len, &mut hf) };
    if rc != 0 {
        return Err(rc);
    }
    key.truncate(len as usize);
    Ok((key, hf))
}

/// `rte_eth_dev_rss_reta_update` with a full table.
pub(crate) fn reta_update(port: u16, reta: &[u16]) -> i32 {
    // SAFETY: `reta` valid for its length (≤ 512, checked by the caller and the shim).
    unsafe { ws_eth_reta_update(port, reta.as_ptr(), reta.len() as u16) }
}

/// `rte_eth_dev_rss_reta_query` of `size` entries.
pub(crate) fn reta_query(port: u16, size: u16) -> Result<Vec<u16>, i32> {
    let mut reta = vec![0u16; size as usize];
    // SAFETY: `reta` has room for `size` entries.
    let rc = unsafe { ws_eth_reta_query(port, reta.as_mut_ptr(), size) };
    if rc == 0 { Ok(reta) } else { Err(rc) }
}

fn err_text(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `rte_flow_validate` of a rule; `Err(message)` when refused.
pub(crate) fn flow_validate(port: u16, rule: &FlowRule) -> Result<(), String> {
    let mut err = [0 as c_char; 256];
    // SAFETY: `rule`'s `queues`/`key` pointers (set by crate::flow) are valid for `n_queues` /
    // `key_len` elements for the duration of the call; `err` has room for `err.len()` bytes.
    let rc = unsafe { ws_flow_validate(port, rule, err.as_mut_ptr(), err.len()) };
    if rc == 0 { Ok(()) } else { Err(err_text(&err)) }
}

/// `rte_flow_create`; the handle is destroyed by [`flow_destroy`].
pub(crate) fn flow_create(port: u16, rule: &FlowRule) -> Result<FlowHandle, String> {
    let mut err = [0 as c_char; 256];
    // SAFETY: as in flow_validate; DPDK copies what it keeps.
    let f = unsafe { ws_flow_create(port, rule, err.as_mut_ptr(), err.len()) };
    if f.is_null() { Err(err_text(&err)) } else { Ok(FlowHandle(f)) }
}

/// An `rte_flow *` owned by the port that created it.
#[derive(Debug)]
pub(crate) struct FlowHandle(*mut c_void);

// SAFETY: the handle is an opaque token passed back to rte_flow_destroy on the control path.
unsafe impl Send for FlowHandle {}

/// `rte_flow_destroy`.
pub(crate) fn flow_destroy(port: u16, flow: FlowHandle) -> i32 {
    // SAFETY: `flow` came from rte_flow_create on this port and is destroyed once (moved in).
    unsafe { ws_flow_destroy(port, flow.0) }
}

/// DPDK's `rte_softrss` over DPDK's own IPv4 tuple (`rte_ipv4_tuple`, host-order words).
pub(crate) fn softrss_v4(src: u32, dst: u32, l4_word: Option<u32>, key: &[u8; 40]) -> u32 {
    // SAFETY: `key` is 40 bytes, the most rte_softrss reads for an IPv4 tuple.
    unsafe { ws_softrss_v4(src, dst, l4_word.unwrap_or(0), c_int::from(l4_word.is_some()), key.as_ptr()) }
}

/// DPDK's `rte_softrss` over DPDK's own IPv6 tuple (`rte_thash_load_v6_addrs`).
pub(crate) fn softrss_v6(src: &[u8; 16], dst: &[u8; 16], l4_word: Option<u32>, key: &[u8; 40]) -> u32 {
    // SAFETY: both addresses are 16 bytes; the 40-byte key covers the 36-byte input + 4.
    unsafe {
        ws_softrss_v6(
            src.as_ptr(),
            dst.as_ptr(),
            l4_word.unwrap_or(0),
            c_int::from(l4_word.is_some()),
            key.as_ptr(),
        )
    }
}

/// Mempool occupancy: (available, in use).
pub(crate) fn mempool_counts(mp: MempoolPtr) -> (u32, u32) {
    // SAFETY: `mp` is a live mempool (never freed).
    unsafe { (ws_mempool_avail_count(mp.as_ptr()), ws_mempool_in_use_count(mp.as_ptr())) }
}
