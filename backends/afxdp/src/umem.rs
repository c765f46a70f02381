//! UMEM — the packet memory one AF_XDP socket shares with the kernel — and [`XdpBuf`], the
//! [`PacketBuf`] over one of its frames.
//!
//! A UMEM is an anonymous mapping cut into `frames` equal, power-of-two sized frames ("aligned
//! chunk mode"). Every frame is in exactly one place at a time: the kernel (fill ring → Rx ring,
//! or Tx ring → completion ring), one [`XdpBuf`], or the UMEM's free list. That exclusive
//! ownership is what makes handing out `&mut [u8]` over shared memory sound.
//!
//! The kernel writes a received frame at `frame + XDP_PACKET_HEADROOM (256) + umem headroom`, so
//! every received buffer starts with at least 256 bytes of headroom — room for the outer
//! Ethernet, IPv6, UDP and ESP headers that encapsulation prepends.
//!
//! Buffers may be dropped on any thread (a stage dropping a packet, another shard after a
//! software dispatch): the free list is a lock-free bounded queue.
//!
//! Jumbo frames (an MTU larger than one frame) arrive as chains of descriptors (AF_XDP
//! multi-buffer). The pipeline's buffers are contiguous, so the UMEM has a second region after
//! the frames: `jumbo` slots of `span` adjacent frames each, with their own free list. A chain
//! is copied into one slot (the Rx frames go straight back to the free list); a slot goes out
//! as one descriptor per frame it covers, chained with `XDP_PKT_CONTD`. Nothing is allocated
//! per packet: the slots are part of the mapping.
//!
//! A buffer may outlive its queue (held by a stage while the port is torn down), so the mapping
//! is not unmapped when the queue closes but when the last frame comes home: each half of the
//! queue counts exactly how many frames it left with the kernel (fill/Rx, Tx/completion), and
//! once the socket is closed, the frame that brings the free list up to `frames − those` unmaps
//! the area. Until a buffer is dropped the memory stays valid; the small `Umem` header itself is
//! never freed (a late `put_frame` may still read it). A queue that ever saw a descriptor it
//! could not place keeps its mapping for the life of the process rather than risk a dangling
//! buffer.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crossbeam_queue::ArrayQueue;
use wirespeed_core::{BufError, BufWindow, PacketBuf, PacketMeta};

use crate::sys::{self, Mmap};

/// Frames-with-the-kernel count of a half that has not closed yet (or lost track of a frame).
const UNKNOWN: u32 = u32::MAX;

/// A registered-or-registrable UMEM area and its free frames.
pub(crate) struct Umem {
    base: NonNull<u8>,
    len: usize,
    frame_size: u32,
    /// Regular frames: indices `0..frames`.
    frames: u32,
    free: ArrayQueue<u32>,
    /// Jumbo slots: `jumbo` runs of `span` frames after the regular ones; slot `s` starts at
    /// frame index `frames + s * span`.
    jumbo: u32,
    span: u32,
    jumbo_free: ArrayQueue<u32>,
    /// Units (regular frames and jumbo slots) the Rx half (fill + Rx rings) left with the kernel when it closed.
    kernel_rx: AtomicU32,
    /// Units the Tx half (Tx + completion rings) left with the kernel when it closed.
    kernel_tx: AtomicU32,
    /// The socket is closed: the kernel no longer touches the area.
    closed: AtomicBool,
    unmapped: AtomicBool,
}

// SAFETY: the area is shared, but each frame is accessed only by its one owner (the kernel, one
// `XdpBuf`, or nobody while on the free list); everything else is atomics and a concurrent queue.
unsafe impl Send for Umem {}
// SAFETY: as above.
unsafe impl Sync for Umem {}

impl Umem {
    /// Maps `frames` frames of `frame_size` bytes and `jumbo` slots of `span` frames each, all
    /// free. The header lives until process exit; the area until the queue has closed and every
    /// frame has come home (module docs).
    pub(crate) fn new(frames: u32, frame_size: u32, jumbo: u32, span: u32) -> io::Result<&'static Umem> {
        let (jumbo, span) = if jumbo == 0 || span == 0 { (0, 1) } else { (jumbo, span) };
        let chunks = frames as usize + jumbo as usize * span as usize;
        let (base, len) = Mmap::anonymous(chunks * frame_size as usize)?.into_raw();
        let free = ArrayQueue::new(frames as usize);
        for f in 0..frames {
            let _ = free.push(f);
        }
        let jumbo_free = ArrayQueue::new(jumbo.max(1) as usize);
        for s in 0..jumbo {
            let _ = jumbo_free.push(frames + s * span);
        }
        Ok(Box::leak(Box::new(Umem {
            base,
            len,
            frame_size,
            frames,
            free,
            jumbo,
            span,
            jumbo_free,
            kernel_rx: AtomicU32::new(UNKNOWN),
            kernel_tx: AtomicU32::new(UNKNOWN),
            closed: AtomicBool::new(false),
            unmapped: AtomicBool::new(false),
        })))
    }

    /// The Rx half closed leaving `frames` with the kernel (`None`: it lost track of one).
    pub(crate) fn rx_closed(&self, frames: Option<u32>) {
        self.kernel_rx.store(frames.unwrap_or(UNKNOWN), Ordering::SeqCst);
    }

    /// The Tx half closed leaving `frames` with the kernel (`None`: it lost track of one).
    pub(crate) fn tx_closed(&self, frames: Option<u32>) {
        self.kernel_tx.store(frames.unwrap_or(UNKNOWN), Ordering::SeqCst);
    }

    /// The socket is closed (after both halves): unmap now if every frame is home, else when
    /// the last buffer drops.
    pub(crate) fn socket_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.try_unmap();
    }

    /// True once the area has been unmapped (tests).
    #[cfg(test)]
    pub(crate) fn is_unmapped(&self) -> bool {
        self.unmapped.load(Ordering::SeqCst)
    }

    #[cold]
    fn try_unmap(&self) {
        let (rx, tx) = (self.kernel_rx.load(Ordering::SeqCst), self.kernel_tx.load(Ordering::SeqCst));
        if rx == UNKNOWN || tx == UNKNOWN {
            return;
        }
        // Frames are with the kernel (which no longer uses them), on the free list, or in a
        // buffer; with none in a buffer, nothing can touch the area any more.
        let home = (self.frames + self.jumbo).saturating_sub(rx.saturating_add(tx)) as usize;
        if self.free.len() + self.jumbo_free.len() >= home
            && self.unmapped.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            // SAFETY: `base`/`len` are the mapping `new` created; the CAS makes this the only
            // unmap; the socket is closed so the kernel no longer accesses it, and every frame
            // is on the free list or was left with the kernel, so no `XdpBuf` refers to it.
            unsafe { sys::unmap(self.base, self.len) };
        }
    }

    /// Registers the area with socket `fd` (`XDP_UMEM_REG`) with `headroom` extra bytes the
    /// kernel leaves before each received packet.
    pub(crate) fn register(&self, fd: RawFd, headroom: u32) -> io::Result<()> {
        let reg = libc::xdp_umem_reg {
            addr: self.base.as_ptr() as u64,
            len: self.len as u64,
            chunk_size: self.frame_size,
            headroom,
            flags: 0,
            tx_metadata_len: 0,
        };
        sys::setsockopt(fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)
    }

    /// Frame size in bytes.
    pub(crate) fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// Frames on the free list now.
    pub(crate) fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Takes a free frame index.
    #[inline]
    pub(crate) fn take_frame(&self) -> Option<u32> {
        self.free.pop()
    }

    /// Takes a free jumbo slot: the index of its first frame.
    #[inline]
    pub(crate) fn take_jumbo(&self) -> Option<u32> {
        self.jumbo_free.pop()
    }

    /// Jumbo slots on their free list now.
    pub(crate) fn free_jumbo(&self) -> usize {
        self.jumbo_free.len()
    }

    /// Jumbo slots in the area (0 when the port needs none).
    pub(crate) fn jumbo_slots(&self) -> u32 {
        self.jumbo
    }

    /// Bytes of a jumbo slot.
    pub(crate) fn jumbo_size(&self) -> usize {
        self.span as usize * self.frame_size as usize
    }

    /// The jumbo slot (0-based) frame `f` belongs to, or `None` for a regular frame (or an
    /// index past the area).
    #[inline]
    pub(crate) fn jumbo_slot_of(&self, f: u32) -> Option<u32> {
        let s = f.checked_sub(self.frames)? / self.span;
        (s < self.jumbo).then_some(s)
    }

    /// First frame of jumbo slot `s`.
    #[inline]
    pub(crate) fn jumbo_head(&self, s: u32) -> u32 {
        self.frames + s * self.span
    }

    /// Bytes of the buffer starting at frame `f`: a frame, or a jumbo slot.
    #[inline]
    fn capacity_of(&self, f: u32) -> usize {
        if f < self.frames { self.frame_size as usize } else { self.jumbo_size() }
    }

    /// Returns frame `f` (or the jumbo slot starting at `f`) to its free list.
    #[inline]
    pub(crate) fn put_frame(&self, f: u32) {
        // Cannot overflow: each queue holds every frame (slot) and each is returned once.
        if f < self.frames {
            let _ = self.free.push(f);
        } else {
            let _ = self.jumbo_free.push(f);
        }
        // SeqCst pairs with `socket_closed`: either it sees this frame home, or this sees it
        // closed and checks again.
        if self.closed.load(Ordering::SeqCst) {
            self.try_unmap();
        }
    }

    /// UMEM address of the start of frame `f`.
    #[inline]
    pub(crate) fn frame_addr(&self, f: u32) -> u64 {
        u64::from(f) * u64::from(self.frame_size)
    }

    /// Splits a kernel descriptor address into (frame, offset in frame), or `None` when it does
    /// not lie in this UMEM.
    #[inline]
    pub(crate) fn locate(&self, addr: u64, len: u32) -> Option<(u32, BufWindow)> {
        let fs = u64::from(self.frame_size);
        let frame = addr / fs;
        let off = (addr % fs) as usize;
        if frame >= u64::from(self.frames) {
            return None;
        }
        Some((frame as u32, self.window(off, len as usize)?))
    }

    /// The frame index (regular or inside a jumbo slot) UMEM address `addr` lies in, or `None`
    /// past the area.
    #[inline]
    pub(crate) fn chunk_of(&self, addr: u64) -> Option<u32> {
        let c = addr / u64::from(self.frame_size);
        let chunks = u64::from(self.frames) + u64::from(self.jumbo) * u64::from(self.span);
        (c < chunks).then_some(c as u32)
    }

    /// A window of `len` bytes at offset `head` of a frame; `None` when it crosses the frame end.
    #[inline]
    pub(crate) fn window(&self, head: usize, len: usize) -> Option<BufWindow> {
        BufWindow::new(head, len, self.frame_size as usize).ok()
    }

    /// A window of `len` bytes at offset `head` of a jumbo slot; `None` when it does not fit.
    #[inline]
    pub(crate) fn jumbo_window(&self, head: usize, len: usize) -> Option<BufWindow> {
        BufWindow::new(head, len, self.jumbo_size()).ok()
    }

    /// A buffer owning frame `frame` (of this UMEM: from [`Umem::take_frame`] or
    /// [`Umem::locate`]), its packet at `win` (from [`Umem::window`] or [`Umem::locate`], so
    /// inside the frame) — or the jumbo slot starting at `frame` (from [`Umem::take_jumbo`]),
    /// `win` from [`Umem::jumbo_window`].
    #[inline]
    pub(crate) fn buf(&'static self, frame: u32, win: BufWindow, meta: PacketMeta) -> XdpBuf {
        XdpBuf { umem: self, frame, win, meta }
    }
}

const NO_FRAME: u32 = u32::MAX;

/// A packet in a UMEM frame. Dropping it returns the frame to its UMEM's free list, from which
/// the owning queue refills the kernel's fill ring.
pub struct XdpBuf {
    umem: &'static Umem,
    frame: u32,
    /// Where the packet sits in the frame (inside it: see [`Umem::buf`]).
    win: BufWindow,
    meta: PacketMeta,
}

impl std::fmt::Debug for XdpBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpBuf")
            .field("frame", &self.frame)
            .field("head", &self.win.headroom())
            .field("len", &self.win.len())
            .field("meta", &self.meta)
            .finish()
    }
}

// `XdpBuf` is `Send` (and `Sync`) through its fields: the UMEM is shared read-only apart from
// the frames, each of which is touched only by the one buffer that owns it.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<XdpBuf>();
};

impl XdpBuf {
    /// True when `self` lives in `umem`.
    #[inline]
    pub(crate) fn is_in(&self, umem: &Umem) -> bool {
        std::ptr::eq(self.umem, umem)
    }

    /// Gives up the frame (or jumbo slot) without returning it to the free list (it goes to
    /// the Tx ring) and returns `(frame, addr, len)`: its first frame and the packet's UMEM
    /// address and length (a jumbo packet crosses frame boundaries: the caller splits it).
    #[inline]
    pub(crate) fn into_desc(mut self) -> (u32, u64, u32) {
        let f = std::mem::replace(&mut self.frame, NO_FRAME);
        (f, self.umem.frame_addr(f) + self.win.headroom() as u64, self.win.len() as u32)
    }

    #[inline]
    fn frame_bytes(&self) -> *mut u8 {
        debug_assert!(self.frame < self.umem.frames || self.umem.jumbo_slot_of(self.frame).is_some());
        // SAFETY: `frame` is a frame of this UMEM or the first frame of one of its jumbo slots
        // (an `XdpBuf` is only built for those), so the offset stays inside the mapping.
        unsafe { self.umem.base.as_ptr().add(self.umem.frame_addr(self.frame) as usize) }
    }

    /// Total bytes of the frame, or of the jumbo slot (headroom + data + tailroom).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.umem.capacity_of(self.frame)
    }

    /// True when the packet lives in a jumbo slot (it was received as a chain of descriptors,
    /// or copied there to be sent as one).
    pub fn is_jumbo(&self) -> bool {
        self.frame >= self.umem.frames
    }
}

impl XdpBuf {
    /// The packet's UMEM address and length, as `into_desc` would give them.
    #[inline]
    pub(crate) fn desc(&self) -> (u64, u32) {
        (self.umem.frame_addr(self.frame) + self.win.headroom() as u64, self.win.len() as u32)
    }
}

impl Drop for XdpBuf {
    #[inline]
    fn drop(&mut self) {
        if self.frame != NO_FRAME {
            self.umem.put_frame(self.frame);
        }
    }
}

impl PacketBuf for XdpBuf {
    /// A free frame of the same UMEM, its (empty) packet after the same headroom as this one.
    #[inline]
    fn alloc_like(&self) -> Option<Self> {
        let win = self.umem.window(self.win.headroom(), 0)?;
        let f = self.umem.take_frame()?;
        Some(self.umem.buf(f, win, PacketMeta::default()))
    }

    #[inline]
    fn len(&self) -> usize {
        self.win.len()
    }

    #[inline]
    fn data(&self) -> &[u8] {
        let r = self.win.range();
        // SAFETY: the window lies inside the frame or slot (`head + len <= capacity`: checked
        // when it was made, kept by `BufWindow`'s mutators for the same capacity), and this
        // buffer exclusively owns the frame or slot, so nobody writes these bytes meanwhile.
        unsafe { std::slice::from_raw_parts(self.frame_bytes().add(r.start), r.len()) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let r = self.win.range();
        // SAFETY: as in `data`; `&mut self` makes the slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.frame_bytes().add(r.start), r.len()) }
    }

    #[inline]
    fn headroom(&self) -> usize {
        self.win.headroom()
    }

    #[inline]
    fn tailroom(&self) -> usize {
        self.win.tailroom(self.capacity())
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        self.win.prepend(n)?;
        Ok(&mut self.data_mut()[..n])
    }

    #[inline]
    fn trim_front(&mut self, n: usize) -> Result<(), BufError> {
        self.win.trim_front(n)
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> Result<(), BufError> {
        self.win.set_len(len, self.capacity())
    }

    #[inline]
    fn meta(&self) -> &PacketMeta {
        &self.meta
    }

    #[inline]
    fn meta_mut(&mut self) -> &mut PacketMeta {
        &mut self.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_arithmetic_respects_frame_bounds() {
        let u = Umem::new(4, 2048, 0, 0).unwrap();
        let f = u.take_frame().unwrap();
        let mut b = u.buf(f, u.window(256, 0).unwrap(), PacketMeta::default());
        assert_eq!(b.headroom(), 256);
        b.copy_from(&[1, 2, 3]).unwrap();
        assert_eq!(b.data(), &[1, 2, 3]);
        b.prepend(2).unwrap().copy_from_slice(&[9, 9]);
        assert_eq!(b.data(), &[9, 9, 1, 2, 3]);
        assert_eq!(b.headroom(), 254);
        assert_eq!(b.tailroom(), 2048 - 254 - 5);
        assert!(matches!(b.prepend(255), Err(BufError::NoHeadroom { needed: 255, available: 254 })));
        b.trim_front(2).unwrap();
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(matches!(b.set_len(2048 - 256 + 1), Err(BufError::NoTailroom { capacity: 1792, .. })));
        assert!(b.trim_front(4).is_err());
        assert_eq!(u.free_frames(), 3);
        drop(b);
        assert_eq!(u.free_frames(), 4, "dropping a buffer returns its frame");
        assert_eq!(u.locate(2048 * 3 + 300, 100), Some((3, u.window(300, 100).unwrap())));
        assert_eq!(u.window(2000, 49), None);
        assert_eq!(u.locate(2048 * 4, 1), None);
        assert_eq!(u.locate(2048 + 2000, 100), None, "crosses the frame end");
    }

    #[test]
    fn alloc_like_takes_a_free_frame_of_the_same_umem() {
        let u = Umem::new(2, 2048, 0, 0).unwrap();
        let f = u.take_frame().unwrap();
        let mut b = u.buf(f, u.window(256, 0).unwrap(), PacketMeta::default());
        b.copy_from(&[1, 2, 3]).unwrap();
        b.meta_mut().out_port = 1;
        let mut c = b.alloc_like().expect("a free frame");
        assert!(c.is_in(u));
        assert_eq!((c.headroom(), c.len()), (256, 0), "the same headroom, empty");
        assert_eq!(c.meta().out_port, 0, "fresh metadata");
        c.copy_from(&[7; 1500]).unwrap();
        assert_eq!(b.data(), &[1, 2, 3], "its own frame");
        assert!(b.alloc_like().is_none(), "no frame left");
        drop(c);
        assert_eq!(u.free_frames(), 1);
    }

    #[test]
    fn jumbo_slots_are_contiguous_buffers_with_their_own_free_list() {
        let u = Umem::new(4, 2048, 2, 5).unwrap();
        assert_eq!((u.jumbo_slots(), u.jumbo_size(), u.free_jumbo()), (2, 10240, 2));
        let s = u.take_jumbo().unwrap();
        assert_eq!(s, 4, "slot 0 starts after the 4 regular frames");
        assert_eq!(u.jumbo_slot_of(s + 4), Some(0));
        assert_eq!(u.jumbo_slot_of(s + 5), Some(1));
        assert_eq!((u.jumbo_slot_of(3), u.jumbo_slot_of(14)), (None, None));
        assert_eq!(u.chunk_of(2048 * 13 + 5), Some(13));
        assert_eq!(u.chunk_of(2048 * 14), None);
        let mut b = u.buf(s, u.jumbo_window(256, 0).unwrap(), PacketMeta::default());
        assert!(b.is_jumbo());
        assert_eq!((b.capacity(), b.tailroom()), (10240, 10240 - 256));
        let big: Vec<u8> = (0..9000u32).map(|i| i as u8).collect();
        b.copy_from(&big).unwrap();
        assert_eq!(b.data(), &big[..]);
        assert_eq!(b.desc(), (2048 * 4 + 256, 9000));
        assert_eq!(u.jumbo_window(256, 10240 - 255), None);
        assert_eq!(u.free_frames(), 4, "a slot takes no regular frame");
        drop(b);
        assert_eq!(u.free_jumbo(), 2, "dropping a jumbo buffer returns its slot");
        // Unmapping counts slots as units: one left with the kernel, the rest home.
        let held = u.buf(u.take_jumbo().unwrap(), u.jumbo_window(256, 0).unwrap(), PacketMeta::default());
        let _with_kernel = u.take_jumbo().unwrap();
        u.rx_closed(Some(0));
        u.tx_closed(Some(1));
        u.socket_closed();
        assert!(!u.is_unmapped(), "a jumbo buffer is still out");
        drop(held);
        assert!(u.is_unmapped());
    }

    #[test]
    fn the_area_is_unmapped_when_the_last_frame_comes_home() {
        let u = Umem::new(8, 2048, 0, 0).unwrap();
        let held = u.buf(u.take_frame().unwrap(), u.window(256, 0).unwrap(), PacketMeta::default());
        let (k1, k2) = (u.take_frame().unwrap(), u.take_frame().unwrap()); // "with the kernel"
        let _ = (k1, k2);
        u.rx_closed(Some(1));
        u.tx_closed(Some(1));
        u.socket_closed();
        assert!(!u.is_unmapped(), "a buffer is still out");
        assert_eq!(held.data().len(), 0);
        drop(held);
        assert!(u.is_unmapped(), "the last buffer home unmaps");

        // A half that lost track of a frame keeps the area mapped for good.
        let u = Umem::new(4, 2048, 0, 0).unwrap();
        u.rx_closed(None);
        u.tx_closed(Some(0));
        u.socket_closed();
        assert!(!u.is_unmapped());
    }
}
