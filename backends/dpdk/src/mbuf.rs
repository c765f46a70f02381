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

use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::LazyLock;

use wirespeed_core::{Batch, BufError, BufWindow, PacketBuf, PacketMeta, meta::flags};

use crate::ffi::{self, MbufLayout, RteMbuf};
use crate::mempool::Mempool;

static LAYOUT: LazyLock<MbufLayout> = LazyLock::new(ffi::mbuf_layout);

/// One packet in a DPDK mbuf (single segment), with wirespeed's [`PacketMeta`] beside it.
///
/// The data pointer and length are cached beside the mbuf pointer (read once at Rx, refreshed
/// after every change of extent), so the per-packet reads of the hot path (`len`, `data`) stay
/// in the batch array instead of chasing the mbuf header.
///
/// The [`PacketMeta`] is built lazily, on the first [`PacketBuf::meta`]/[`PacketBuf::meta_mut`]:
/// Rx records only the port and queue, and the NIC's RSS hash is read from the mbuf then. A
/// packet that is only forwarded (no stage looks at its metadata) costs Rx no metadata writes
/// and no extra mbuf reads, as in `testpmd --forward-mode=io`.
pub struct Mbuf {
    m: NonNull<RteMbuf>,
    data: NonNull<u8>,
    len: u16,
    rx_port: u16,
    rx_queue: u16,
    /// `meta` holds a valid value (written once, before any reference to it is handed out).
    meta_ready: Cell<bool>,
    meta: UnsafeCell<MaybeUninit<PacketMeta>>,
}

// SAFETY: an Mbuf owns its rte_mbuf exclusively (refcount 1, single segment, never shared), and
// freeing an mbuf from any thread is allowed (the mempool is multi-producer/multi-consumer).
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
        Some(Mbuf::wrap(m, &LAYOUT, 0, 0))
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
        if self.meta_ready.get() {
            let meta = self.meta_mut();
            meta.rss_hash = Some(hash);
            meta.flags |= flags::HW_RSS;
        } // else the lazy initialisation reads it from the mbuf.
    }

    /// Builds the metadata of a received packet: port, queue and the NIC's RSS hash.
    #[cold]
    #[inline(never)]
    fn init_meta(&self) {
        let mut meta = PacketMeta::received(self.rx_port, self.rx_queue);
        if let Some(hash) = self.hw_rss_hash() {
            meta.rss_hash = Some(hash);
            meta.flags |= flags::HW_RSS;
        }
        // SAFETY: `meta_ready` is false, so no reference to `meta` was ever handed out (they are
        // only created after it is set below) and this write cannot alias one; `Mbuf` is not
        // `Sync`, so no other thread reaches this cell.
        unsafe { (*self.meta.get()).write(meta) };
        self.meta_ready.set(true);
    }

    /// Wraps an mbuf we own, reading its data pointer and length; the metadata is built on
    /// first use from `rx_port`/`rx_queue`.
    #[inline]
    fn wrap(m: NonNull<RteMbuf>, l: &MbufLayout, rx_port: u16, rx_queue: u16) -> Mbuf {
        let (data, len) = Mbuf::extent(m, l);
        Mbuf {
            m,
            data,
            len,
            rx_port,
            rx_queue,
            meta_ready: Cell::new(false),
            meta: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The data pointer and length of `m`.
    #[inline]
    fn extent(m: NonNull<RteMbuf>, l: &MbufLayout) -> (NonNull<u8>, u16) {
        // SAFETY: `m` is a live mbuf; buf_addr (void *), data_off and data_len (u16) are read at
        // the offsets the C compiler reported; buf_addr + data_off is inside the mbuf's buffer
        // by DPDK's invariant, and never null.
        unsafe {
            let base = m.as_ptr().cast::<u8>();
            let buf = base.add(l.buf_addr as usize).cast::<*mut u8>().read_unaligned();
            let off = base.add(l.data_off as usize).cast::<u16>().read_unaligned();
            let len = base.add(l.data_len as usize).cast::<u16>().read_unaligned();
            (NonNull::new_unchecked(buf.add(off as usize)), len)
        }
    }

    /// Re-reads the data pointer and length after DPDK changed them.
    fn refresh(&mut self) {
        (self.data, self.len) = Mbuf::extent(self.m, &LAYOUT);
    }

    /// Gives up ownership: the caller must hand the pointer to DPDK (Tx) or free it.
    #[inline]
    fn into_raw(self) -> *mut RteMbuf {
        let m = self.m.as_ptr();
        std::mem::forget(self);
        m
    }

    #[inline]
    fn field_u16(&self, off: u32) -> u16 {
        // SAFETY: `m` is a live mbuf; `off` is the offsetof of a u16 field of rte_mbuf.
        unsafe { self.m.as_ptr().cast::<u8>().add(off as usize).cast::<u16>().read_unaligned() }
    }

    /// Bytes of the mbuf's data buffer (`buf_len`).
    #[inline]
    fn capacity(&self) -> usize {
        usize::from(self.field_u16(LAYOUT.buf_len))
    }

    /// Where the packet sits in the data buffer: the checks and errors of [`PacketBuf`] come
    /// from this window (as for every backend); DPDK's own calls then move the mbuf's fields.
    #[inline]
    fn window(&self) -> BufWindow {
        let head = usize::from(self.field_u16(LAYOUT.data_off));
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
        // SAFETY: a single-segment mbuf holds `data_len` initialised bytes at its data pointer
        // (both cached in `wrap`/`refresh`, after every change); the slice lives no longer than
        // `&self`, during which nothing else touches the mbuf.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), usize::from(self.len)) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes the access exclusive (we own the mbuf,
        // refcount 1).
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), usize::from(self.len)) }
    }

    #[inline]
    fn len(&self) -> usize {
        usize::from(self.len)
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
        self.refresh();
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
        self.refresh();
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
        self.refresh();
        Ok(())
    }

    #[inline]
    fn meta(&self) -> &PacketMeta {
        if !self.meta_ready.get() {
            self.init_meta();
        }
        // SAFETY: `meta_ready` is set, so `init_meta` wrote a valid value, and nothing writes
        // through the cell again except through `&mut self` (`meta_mut`), which cannot overlap
        // the lifetime of this shared reference.
        unsafe { (*self.meta.get()).assume_init_ref() }
    }

    #[inline]
    fn meta_mut(&mut self) -> &mut PacketMeta {
        if !self.meta_ready.get() {
            self.init_meta();
        }
        // SAFETY: `meta_ready` is set, so the value is initialised; `&mut self` is exclusive.
        unsafe { self.meta.get_mut().assume_init_mut() }
    }

    #[inline]
    fn out_port(&self) -> u16 {
        // Unbuilt metadata is that of a received packet: out_port 0.
        if self.meta_ready.get() { self.meta().out_port } else { 0 }
    }
}

/// Receives up to `out.remaining()` packets from `port`/`queue` into `out`, recording the port
/// index `meta_port` and the queue for their (lazily built) metadata. Chained (multi-segment) mbufs,
/// which a `PacketBuf` cannot represent, are freed and counted in `too_large`.
#[inline]
pub(crate) fn rx_burst(
    port: u16,
    queue: u16,
    meta_port: u16,
    out: &mut Batch<Mbuf>,
    too_large: &mut u64,
) -> usize {
    let want = out.remaining().min(wirespeed_core::BATCH_SIZE);
    let mut raw: [*mut RteMbuf; wirespeed_core::BATCH_SIZE] =
        [std::ptr::null_mut(); wirespeed_core::BATCH_SIZE];
    // SAFETY: `raw` has room for `want` pointers; the queue is owned by the caller's shard
    // (one thread), as rte_eth_rx_burst requires.
    let n = unsafe { ffi::ws_rx_burst(port, queue, raw.as_mut_ptr(), want as u16) } as usize;
    // A local copy, so the offsets stay in registers instead of being reloaded from the static
    // after every store into the batch.
    let l = *LAYOUT;
    let before = out.len();
    for &m in &raw[..n.min(want)] {
        let Some(m) = NonNull::new(m) else { continue };
        let b = Mbuf::wrap(m, &l, meta_port, queue);
        if b.field_u16(l.nb_segs) != 1 {
            *too_large += 1;
            continue; // dropped here: back to the pool
        }
        // `want` ≤ `out.remaining()`, so this never gives the packet back (were it to, dropping
        // it frees the mbuf).
        let _ = out.push(b);
    }
    out.len() - before
}

/// Transmits packets from the front of `batch` on `port`/`queue`; sent ones leave the batch
/// (DPDK frees them after transmission), the rest stay. Returns how many were sent.
#[inline]
pub(crate) fn tx_burst(port: u16, queue: u16, batch: &mut Batch<Mbuf>) -> usize {
    let n = batch.len();
    if n == 0 {
        return 0;
    }
    let mut raw: [*mut RteMbuf; wirespeed_core::BATCH_SIZE] =
        [std::ptr::null_mut(); wirespeed_core::BATCH_SIZE];
    for (slot, b) in raw.iter_mut().zip(batch.iter()) {
        *slot = b.m.as_ptr();
    }
    // SAFETY: `raw[..n]` are live mbufs owned by `batch`; the PMD takes ownership of the first
    // `sent`, which we then forget (not free); the queue is owned by the caller's shard.
    let sent = unsafe { ffi::ws_tx_burst(port, queue, raw.as_mut_ptr(), n as u16) } as usize;
    let sent = sent.min(n);
    for b in batch.drain(..sent) {
        let _ = b.into_raw();
    }
    sent
}
