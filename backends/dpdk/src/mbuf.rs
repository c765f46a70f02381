//! [`Mbuf`]: wirespeed's [`PacketBuf`] over a DPDK `rte_mbuf`, and the burst Rx/Tx that move
//! mbufs between DPDK and [`Batch`]es without copying or allocating.
//!
//! The packet bytes are the mbuf's own data room: nothing is copied on Rx or Tx. Reads of the
//! data pointer and length use field offsets the C shim reports (`offsetof`, so no DPDK layout
//! is hard-coded here); changes of the packet's extent go through DPDK's own
//! `rte_pktmbuf_prepend/adj/append/trim`. Dropping an [`Mbuf`] returns it to its mempool.
//!
//! Headroom: DPDK reserves `RTE_PKTMBUF_HEADROOM` (128 bytes in Debian's build) before every
//! received packet, which covers the largest ESP tunnel encapsulation wirespeed prepends (outer
//! Ethernet 14 + IPv6 40 + UDP 8 + ESP 8 + IV 8 = 78 bytes); [`crate::DpdkPort::new`] checks it is at
//! least [`wirespeed_core::pool::MIN_HEADROOM`].
#![allow(unsafe_code)]

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::LazyLock;

use wirespeed_core::{Batch, BufError, BufWindow, PacketBuf, PacketMeta, meta::flags};

use crate::ffi::{self, MbufLayout, RteMbuf, RteMempool, off};
use crate::mempool::Mempool;

static LAYOUT: LazyLock<MbufLayout> = LazyLock::new(ffi::mbuf_layout);

/// Bytes of every mbuf's private area (`priv_size` of the pools [`crate::Mempool`] creates):
/// room for the packet's [`PacketMeta`], rounded up to DPDK's `RTE_MBUF_PRIV_ALIGN` (8).
pub(crate) const META_PRIV_SIZE: u16 = (std::mem::size_of::<PacketMeta>().div_ceil(8) * 8) as u16;

/// One packet in a DPDK mbuf (single segment), its [`PacketMeta`] in the mbuf's private area.
///
/// The handle is 16 bytes: the mbuf pointer, the Rx port and queue, and whether the metadata
/// was built. Rx writes only these (it reads the mbuf header once, to check the mbuf is one
/// segment of a pool with a private area); the data pointer and length are read from the mbuf
/// header when asked for (the header is the line DPDK's Rx just wrote, so these reads hit L1).
///
/// The [`PacketMeta`] lives in the mbuf's private area (right after `struct rte_mbuf`, every
/// pool of this crate reserves [`META_PRIV_SIZE`] bytes there) and is built lazily, on the
/// first [`PacketBuf::meta`]/[`PacketBuf::meta_mut`], from the port and queue and the NIC's
/// RSS hash. A packet that is only forwarded (no stage looks at its metadata) costs Rx no
/// metadata writes, as in `testpmd --forward-mode=io`.
pub struct Mbuf {
    m: NonNull<RteMbuf>,
    /// Rx port (bits 0-15), Rx queue (bits 16-31) and [`META_READY`] (the private area holds a
    /// valid [`PacketMeta`], written once before any reference to it is handed out): one word,
    /// so Rx stores it with one instruction.
    tag: Cell<u64>,
}

/// [`Mbuf::tag`]'s bit: the metadata was built.
const META_READY: u64 = 1 << 32;

// SAFETY: an Mbuf owns its rte_mbuf (and so its private area) exclusively (refcount 1, single
// segment, never shared), and freeing an mbuf from any thread is allowed (the mempool is
// multi-producer/multi-consumer).
unsafe impl Send for Mbuf {}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf").field("len", &self.len()).field("headroom", &self.headroom()).finish()
    }
}

impl Mbuf {
    /// Takes an empty mbuf from `pool` (headroom reserved), or `None` when the pool is empty.
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: `pool.raw()` is a live mempool (pools are never freed).
        let m = unsafe { ffi::ws_pktmbuf_alloc(pool.raw().as_ptr()) };
        let m = NonNull::new(m)?;
        Some(Mbuf::wrap(m, 0, 0))
    }

    /// An mbuf from `pool` holding a copy of `bytes` (for injecting test traffic and templates).
    pub fn from_bytes(pool: &Mempool, bytes: &[u8]) -> Result<Option<Mbuf>, BufError> {
        let Some(mut m) = Mbuf::alloc(pool) else { return Ok(None) };
        m.copy_from(bytes)?;
        Ok(Some(m))
    }

    /// The RSS hash the NIC stored in the mbuf (`RTE_MBUF_F_RX_RSS_HASH`), if any.
    #[inline]
    pub fn hw_rss_hash(&self) -> Option<u32> {
        let l = &*LAYOUT;
        // SAFETY: `m` is a live mbuf we own; the offsets are the C compiler's own for
        // rte_mbuf.ol_flags (u64) and rte_mbuf.hash.rss (u32).
        unsafe {
            let base = self.m.as_ptr().cast::<u8>();
            let ol = base.add(l.ol_flags as usize).cast::<u64>().read_unaligned();
            (ol & l.rss_flag != 0).then(|| base.add(l.rss as usize).cast::<u32>().read_unaligned())
        }
    }

    /// Stores `hash` as the mbuf's RSS hash and sets `RTE_MBUF_F_RX_RSS_HASH`, as a NIC does
    /// (for tests of the hardware-hash self-test) and mirrors it into the metadata.
    pub fn set_hw_rss_hash(&mut self, hash: u32) {
        // SAFETY: `m` is a live mbuf we own exclusively.
        unsafe { ffi::ws_mbuf_set_rss(self.m.as_ptr(), hash) };
        if self.meta_ready() {
            let meta = self.meta_mut();
            meta.rss_hash = Some(hash);
            meta.flags |= flags::HW_RSS;
        } // else the lazy initialisation reads it from the mbuf.
    }

    /// Where the metadata lives: the mbuf's private area.
    #[inline]
    fn meta_ptr(&self) -> *mut PacketMeta {
        // SAFETY: the private area starts `sizeof(struct rte_mbuf)` bytes after the mbuf (DPDK's
        // `rte_mbuf_to_priv`) and is at least META_PRIV_SIZE bytes long: every pool of this crate
        // reserves that, and Rx refuses mbufs of other pools with less (`rx_burst`). The mbuf is
        // cache-line aligned and sizeof(rte_mbuf) a multiple of the cache line, so the pointer is
        // aligned for PacketMeta.
        unsafe { self.m.as_ptr().cast::<u8>().add(off::PRIV).cast::<PacketMeta>() }
    }

    /// Builds the metadata of a received packet: port, queue and the NIC's RSS hash.
    #[cold]
    #[inline(never)]
    fn init_meta(&self) {
        let tag = self.tag.get();
        let mut meta = PacketMeta::received(tag as u16, (tag >> 16) as u16);
        if let Some(hash) = self.hw_rss_hash() {
            meta.rss_hash = Some(hash);
            meta.flags |= flags::HW_RSS;
        }
        // SAFETY: the private area is ours (we own the mbuf) and large enough (`meta_ptr`);
        // `meta_ready` is false, so no reference to it was ever handed out (they are only
        // created after it is set below) and this write cannot alias one; `Mbuf` is not `Sync`,
        // so no other thread reaches it.
        unsafe { self.meta_ptr().write(meta) };
        self.tag.set(tag | META_READY);
    }

    /// Wraps an mbuf we own; the metadata is built on first use from `rx_port`/`rx_queue`.
    #[inline(always)]
    fn wrap(m: NonNull<RteMbuf>, rx_port: u16, rx_queue: u16) -> Mbuf {
        Mbuf::wrap_tagged(m, rx_tag(rx_port, rx_queue))
    }

    /// [`Mbuf::wrap`] with the tag [`rx_tag`] computed once per burst.
    #[inline(always)]
    fn wrap_tagged(m: NonNull<RteMbuf>, tag: u64) -> Mbuf {
        Mbuf { m, tag: Cell::new(tag) }
    }

    /// The metadata was built.
    #[inline(always)]
    fn meta_ready(&self) -> bool {
        self.tag.get() & META_READY != 0
    }

    /// The data pointer and length of `m`.
    #[inline(always)]
    fn extent(&self) -> (NonNull<u8>, u16) {
        // SAFETY: `m` is a live mbuf; buf_addr (void *), data_off and data_len (u16) are read at
        // their offsets (`off`, checked against the C compiler's); buf_addr + data_off is inside
        // the mbuf's buffer by DPDK's invariant, and never null.
        unsafe {
            let base = self.m.as_ptr().cast::<u8>();
            let buf = base.add(off::BUF_ADDR).cast::<*mut u8>().read_unaligned();
            let head = base.add(off::DATA_OFF).cast::<u16>().read_unaligned();
            let len = base.add(off::DATA_LEN).cast::<u16>().read_unaligned();
            (NonNull::new_unchecked(buf.add(head as usize)), len)
        }
    }

    /// Gives up ownership: the caller must hand the pointer to DPDK (Tx) or free it.
    #[inline]
    fn into_raw(self) -> *mut RteMbuf {
        let m = self.m.as_ptr();
        std::mem::forget(self);
        m
    }

    #[inline]
    fn field_u16(&self, off: usize) -> u16 {
        // SAFETY: `m` is a live mbuf; `off` is the offsetof of a u16 field of rte_mbuf.
        unsafe { self.m.as_ptr().cast::<u8>().add(off).cast::<u16>().read_unaligned() }
    }

    /// Bytes of the mbuf's data buffer (`buf_len`).
    #[inline]
    fn capacity(&self) -> usize {
        usize::from(self.field_u16(off::BUF_LEN))
    }

    /// Where the packet sits in the data buffer: the checks and errors of [`PacketBuf`] come
    /// from this window (as for every backend); DPDK's own calls then move the mbuf's fields.
    #[inline]
    fn window(&self) -> BufWindow {
        let head = usize::from(self.field_u16(off::DATA_OFF));
        // DPDK keeps data_off + data_len <= buf_len; were it ever broken, the empty window at
        // offset 0 refuses every prepend and growth instead of trusting the fields.
        BufWindow::new(head, self.len(), self.capacity()).unwrap_or_default()
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it is freed once, here, back to its mempool.
        unsafe { ffi::ws_pktmbuf_free(self.m.as_ptr()) }
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let (data, len) = self.extent();
        // SAFETY: a single-segment mbuf holds `data_len` initialised bytes at its data pointer;
        // the slice lives no longer than `&self`, during which nothing else touches the mbuf.
        unsafe { std::slice::from_raw_parts(data.as_ptr(), usize::from(len)) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let (data, len) = self.extent();
        // SAFETY: as in `data`, and `&mut self` makes the access exclusive (we own the mbuf,
        // refcount 1).
        unsafe { std::slice::from_raw_parts_mut(data.as_ptr(), usize::from(len)) }
    }

    #[inline]
    fn len(&self) -> usize {
        usize::from(self.field_u16(off::DATA_LEN))
    }

    #[inline]
    fn headroom(&self) -> usize {
        self.window().headroom()
    }

    #[inline]
    fn tailroom(&self) -> usize {
        self.window().tailroom(self.capacity())
    }

    fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        let available = self.headroom();
        self.window().prepend(n)?;
        // SAFETY: we own the mbuf; n ≤ headroom ≤ u16::MAX (checked by the window), so
        // rte_pktmbuf_prepend succeeds.
        let p = unsafe { ffi::ws_pktmbuf_prepend(self.m.as_ptr(), n as u16) };
        if p.is_null() {
            return Err(BufError::NoHeadroom { needed: n, available });
        }
        Ok(&mut self.data_mut()[..n])
    }

    fn trim_front(&mut self, n: usize) -> Result<(), BufError> {
        let len = self.len();
        self.window().trim_front(n)?;
        // SAFETY: we own the mbuf; n ≤ data_len (checked by the window), so rte_pktmbuf_adj
        // succeeds.
        let p = unsafe { ffi::ws_pktmbuf_adj(self.m.as_ptr(), n as u16) };
        if p.is_null() {
            return Err(BufError::TooShort { trim: n, len });
        }
        Ok(())
    }

    fn set_len(&mut self, len: usize) -> Result<(), BufError> {
        let cur = self.len();
        let capacity = self.capacity();
        self.window().set_len(len, capacity)?;
        if len > cur {
            // SAFETY: we own the mbuf; the growth fits the tailroom (checked by the window).
            let p = unsafe { ffi::ws_pktmbuf_append(self.m.as_ptr(), (len - cur) as u16) };
            if p.is_null() {
                return Err(BufError::NoTailroom { wanted: len, capacity: cur + self.tailroom() });
            }
        } else if len < cur {
            // SAFETY: we own the mbuf; cur - len ≤ data_len.
            let rc = unsafe { ffi::ws_pktmbuf_trim(self.m.as_ptr(), (cur - len) as u16) };
            if rc != 0 {
                return Err(BufError::TooShort { trim: cur - len, len: cur });
            }
        }
        Ok(())
    }

    #[inline]
    fn meta(&self) -> &PacketMeta {
        if !self.meta_ready() {
            self.init_meta();
        }
        // SAFETY: `meta_ready` is set, so `init_meta` wrote a valid value into the private area
        // we own, and nothing writes it again except through `&mut self` (`meta_mut`), which
        // cannot overlap the lifetime of this shared reference.
        unsafe { &*self.meta_ptr() }
    }

    #[inline]
    fn meta_mut(&mut self) -> &mut PacketMeta {
        if !self.meta_ready() {
            self.init_meta();
        }
        // SAFETY: `meta_ready` is set, so the value is initialised; `&mut self` is exclusive and
        // the private area belongs to this mbuf alone.
        unsafe { &mut *self.meta_ptr() }
    }

    #[inline]
    fn out_port(&self) -> u16 {
        // Unbuilt metadata is that of a received packet: out_port 0.
        if self.meta_ready() { self.meta().out_port } else { 0 }
    }
}

/// What [`rx_burst`] dropped: chained mbufs and mbufs of a foreign pool without room for the
/// metadata.
#[derive(Debug, Default)]
pub(crate) struct RxDrops {
    /// Chained (multi-segment) mbufs, which a `PacketBuf` cannot represent.
    pub too_large: u64,
    /// Mbufs of another pool whose private area is smaller than [`META_PRIV_SIZE`] (possible
    /// only on vdevs that pass on mbufs other code allocated, such as `net_ring`).
    pub no_meta_room: u64,
}

/// Receives up to `out.remaining()` packets from `port`/`queue` into `out`, recording the port
/// index `meta_port` and the queue for their (lazily built) metadata. `pool` is the queue's
/// mempool: mbufs from it are known to have the metadata's private area. Chained mbufs and
/// mbufs of a pool without that area are freed and counted in `drops`. Returns how many packets
/// were appended and their bytes.
#[inline]
pub(crate) fn rx_burst(
    port: u16,
    queue: u16,
    meta_port: u16,
    pool: *mut RteMempool,
    out: &mut Batch<Mbuf>,
    drops: &mut RxDrops,
) -> (usize, u64) {
    let want = out.remaining().min(wirespeed_core::BATCH_SIZE);
    let mut raw = [MaybeUninit::<*mut RteMbuf>::uninit(); wirespeed_core::BATCH_SIZE];
    // SAFETY: `raw` has room for `want` pointers; the queue is owned by the caller's shard
    // (one thread), as rte_eth_rx_burst requires.
    let n = unsafe { ffi::ws_rx_burst(port, queue, raw.as_mut_ptr().cast(), want as u16) } as usize;
    let n = n.min(want);
    // SAFETY: rte_eth_rx_burst stored `n` mbuf pointers at the front of `raw`.
    let raw: &[*mut RteMbuf] = unsafe { std::slice::from_raw_parts(raw.as_ptr().cast(), n) };
    // One pass over the headers DPDK just wrote: anything but a single segment of `pool`? And
    // the bytes received, from the same cache line. (A separate loop from the one filling the
    // batch: this one vectorises.)
    let mut odd = 0usize;
    let mut bytes = 0u64;
    for &m in raw {
        // SAFETY: every pointer rte_eth_rx_burst returned is a live mbuf now owned by us; nb_segs,
        // data_len (u16) and pool (pointer) are read at their offsets (`off`).
        let (segs, len, mp) = unsafe {
            let base = m.cast::<u8>();
            (
                base.add(off::NB_SEGS).cast::<u16>().read_unaligned(),
                base.add(off::DATA_LEN).cast::<u16>().read_unaligned(),
                base.add(off::POOL).cast::<*mut RteMempool>().read_unaligned(),
            )
        };
        odd |= usize::from(segs ^ 1) | (mp as usize ^ pool as usize);
        bytes += u64::from(len);
    }
    let before = out.len();
    if odd == 0 {
        let tag = rx_tag(meta_port, queue);
        for &m in raw {
            // SAFETY: rte_eth_rx_burst returns non-null pointers for the `n` it reports.
            let m = unsafe { NonNull::new_unchecked(m) };
            // `n` ≤ `want` ≤ `out.remaining()`, so this never gives the packet back (were it to,
            // dropping it frees the mbuf).
            let _ = out.push(Mbuf::wrap_tagged(m, tag));
        }
        (n, bytes)
    } else {
        rx_filter(raw, pool, rx_tag(meta_port, queue), out, drops);
        let got = out.as_slice().get(before..).unwrap_or_default();
        (got.len(), got.iter().map(|p| p.len() as u64).sum())
    }
}

/// The tag of a packet received on `port`/`queue` whose metadata is not built yet.
#[inline(always)]
fn rx_tag(port: u16, queue: u16) -> u64 {
    u64::from(port) | u64::from(queue) << 16
}

/// [`rx_burst`]'s slow path: keeps the single-segment mbufs with room for the metadata, freeing
/// and counting the others.
#[cold]
#[inline(never)]
fn rx_filter(
    raw: &[*mut RteMbuf],
    pool: *mut RteMempool,
    tag: u64,
    out: &mut Batch<Mbuf>,
    drops: &mut RxDrops,
) {
    for &m in raw {
        let Some(m) = NonNull::new(m) else { continue };
        let b = Mbuf::wrap_tagged(m, tag);
        if b.field_u16(off::NB_SEGS) != 1 {
            drops.too_large += 1;
            continue; // dropped here: back to the pool
        }
        // SAFETY: `m` is a live mbuf; pool is a pointer field at its offset (`off`).
        let mp = unsafe { m.as_ptr().cast::<u8>().add(off::POOL).cast::<*mut RteMempool>().read_unaligned() };
        if mp != pool && b.field_u16(off::PRIV_SIZE) < META_PRIV_SIZE {
            drops.no_meta_room += 1;
            continue;
        }
        let _ = out.push(b);
    }
}

/// Transmits packets from the front of `batch` on `port`/`queue`; sent ones leave the batch
/// (DPDK frees them after transmission), the rest stay. Returns how many were sent and their
/// bytes.
#[inline]
pub(crate) fn tx_burst(port: u16, queue: u16, batch: &mut Batch<Mbuf>) -> (usize, u64) {
    let n = batch.len();
    if n == 0 {
        return (0, 0);
    }
    let mut raw = [MaybeUninit::<*mut RteMbuf>::uninit(); wirespeed_core::BATCH_SIZE];
    let mut bytes = 0u64;
    for (slot, b) in raw.iter_mut().zip(batch.iter()) {
        slot.write(b.m.as_ptr());
        bytes += b.len() as u64;
    }
    let n = n.min(wirespeed_core::BATCH_SIZE);
    // SAFETY: `raw[..n]` are initialised with live mbufs owned by `batch`; the PMD takes
    // ownership of the first `sent`, which we then forget (not free); the queue is owned by the
    // caller's shard.
    let sent = unsafe { ffi::ws_tx_burst(port, queue, raw.as_mut_ptr().cast(), n as u16) } as usize;
    let sent = sent.min(n);
    if sent < n {
        bytes -= batch.as_slice()[sent..].iter().map(|b| b.len() as u64).sum::<u64>();
    }
    for b in batch.drain(..sent) {
        let _ = b.into_raw();
    }
    (sent, bytes)
}
