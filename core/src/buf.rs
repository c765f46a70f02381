//! The packet buffer contract every backend's buffer type implements.

use crate::meta::PacketMeta;

/// Why a buffer operation could not be done. Carries the numbers that did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BufError {
    /// `prepend` needed more headroom than the buffer has left.
    #[error("no headroom: needed {needed} bytes, {available} available")]
    NoHeadroom {
        /// Bytes asked for.
        needed: usize,
        /// Headroom left.
        available: usize,
    },
    /// `set_len`/`extend` needed more room than the buffer has.
    #[error("no tailroom: wanted length {wanted}, capacity {capacity}")]
    NoTailroom {
        /// Length asked for.
        wanted: usize,
        /// Largest possible length.
        capacity: usize,
    },
    /// `trim_front` asked for more bytes than the packet holds.
    #[error("packet too short: trimming {trim} bytes of {len}")]
    TooShort {
        /// Bytes asked to trim.
        trim: usize,
        /// Packet length.
        len: usize,
    },
}

/// A packet buffer: bytes with headroom before and tailroom after, plus [`PacketMeta`].
///
/// Implemented by pool buffers ([`crate::PoolBuf`]), AF_XDP UMEM frames and DPDK mbufs. Stages
/// are generic over it, so the same stage code runs on every backend with static dispatch.
/// Dropping a buffer returns it to wherever it came from.
pub trait PacketBuf: Send + 'static {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Bytes free before the packet (for encapsulation headers).
    fn headroom(&self) -> usize;
    /// Bytes free after the packet (for trailers).
    fn tailroom(&self) -> usize;
    /// Grows the packet at the front by `n` bytes and returns the new front `n` bytes.
    fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError>;
    /// Removes `n` bytes from the front (decapsulation).
    fn trim_front(&mut self, n: usize) -> Result<(), BufError>;
    /// Sets the packet length, growing into tailroom or shrinking. New bytes are unspecified.
    fn set_len(&mut self, len: usize) -> Result<(), BufError>;
    /// The metadata.
    fn meta(&self) -> &PacketMeta;
    /// The metadata, writable.
    fn meta_mut(&mut self) -> &mut PacketMeta;

    /// The port the packet leaves by ([`PacketMeta::out_port`]). Backends whose metadata is
    /// built lazily override it to answer without building it.
    #[inline]
    fn out_port(&self) -> u16 {
        self.meta().out_port
    }

    /// Packet length in bytes.
    #[inline]
    fn len(&self) -> usize {
        self.data().len()
    }

    /// True for a zero-length packet.
    #[inline]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Grows the packet at the back by `n` bytes and returns them.
    #[inline]
    fn extend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        let old = self.len();
        self.set_len(old + n)?;
        Ok(&mut self.data_mut()[old..])
    }

    /// A fresh, empty buffer from wherever this one came from (its pool, UMEM or mempool),
    /// with fresh metadata, for a stage that turns one packet into several (IPv4
    /// fragmentation); `None` when none is free or the backend cannot hand one out here (the
    /// default). Buffers come from the backend's own memory: no heap allocation.
    #[inline]
    fn alloc_like(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// Replaces the packet with `bytes` (keeps the headroom where it is).
    #[inline]
    fn copy_from(&mut self, bytes: &[u8]) -> Result<(), BufError> {
        self.set_len(bytes.len())?;
        self.data_mut().copy_from_slice(bytes);
        Ok(())
    }
}

/// Where a packet sits in its buffer: `head` bytes of headroom, then `len` packet bytes, inside
/// a buffer of `capacity` bytes (the rest is tailroom). The bounds arithmetic of [`PacketBuf`],
/// written once for every backend's buffer type (pool buffers, AF_XDP UMEM frames, DPDK mbufs):
/// each check and each [`BufError`] comes from here.
///
/// A window keeps `head + len <= capacity` for the capacity it was made with
/// ([`BufWindow::new`] checks it; the mutators keep it when given the same capacity), so a
/// backend may index its storage with [`BufWindow::range`] without checking again.
///
/// ```
/// use wirespeed_core::buf::{BufError, BufWindow};
///
/// let mut w = BufWindow::new(128, 0, 384)?;
/// w.set_len(60, 384)?;
/// assert_eq!(w.prepend(14)?, 114..128); // the new front bytes
/// assert_eq!((w.headroom(), w.len(), w.tailroom(384)), (114, 74, 196));
/// assert_eq!(w.prepend(115), Err(BufError::NoHeadroom { needed: 115, available: 114 }));
/// assert_eq!(w.set_len(271, 384), Err(BufError::NoTailroom { wanted: 271, capacity: 270 }));
/// w.trim_front(34)?;
/// assert_eq!(w.range(), 148..188);
/// assert!(BufWindow::new(300, 100, 384).is_err());
/// # Ok::<(), BufError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufWindow {
    head: u32,
    len: u32,
}

impl BufWindow {
    /// A window of `len` bytes after `head` bytes of headroom; refused when it does not fit in
    /// `capacity` bytes (or `capacity` exceeds `u32::MAX`).
    #[inline]
    pub fn new(head: usize, len: usize, capacity: usize) -> Result<Self, BufError> {
        let fits = u32::try_from(capacity).is_ok() && head <= capacity && len <= capacity - head;
        if !fits {
            return Err(BufError::NoTailroom { wanted: len, capacity: capacity.saturating_sub(head) });
        }
        Ok(Self { head: head as u32, len: len as u32 })
    }

    /// Headroom: bytes free before the packet.
    #[inline]
    pub const fn headroom(self) -> usize {
        self.head as usize
    }

    /// Packet length.
    #[inline]
    pub const fn len(self) -> usize {
        self.len as usize
    }

    /// True for a zero-length packet.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The packet's bytes within the buffer: `head..head + len`.
    #[inline]
    pub const fn range(self) -> std::ops::Range<usize> {
        self.head as usize..self.head as usize + self.len as usize
    }

    /// Tailroom in a buffer of `capacity` bytes.
    #[inline]
    pub const fn tailroom(self, capacity: usize) -> usize {
        capacity.saturating_sub(self.head as usize + self.len as usize)
    }

    /// Grows the packet at the front by `n` bytes; returns the range of the new front bytes.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Result<std::ops::Range<usize>, BufError> {
        let available = self.head as usize;
        if n > available {
            return Err(BufError::NoHeadroom { needed: n, available });
        }
        self.head -= n as u32;
        self.len += n as u32;
        Ok(self.head as usize..available)
    }

    /// Removes `n` bytes from the front of the packet.
    #[inline]
    pub fn trim_front(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.len as usize {
            return Err(BufError::TooShort { trim: n, len: self.len as usize });
        }
        self.head += n as u32;
        self.len -= n as u32;
        Ok(())
    }

    /// Sets the packet length, within a buffer of `capacity` bytes.
    #[inline]
    pub fn set_len(&mut self, len: usize, capacity: usize) -> Result<(), BufError> {
        let room = capacity.saturating_sub(self.head as usize).min(u32::MAX as usize);
        if len > room {
            return Err(BufError::NoTailroom { wanted: len, capacity: room });
        }
        self.len = len as u32;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every window of small buffers, every operation: the window stays inside the buffer, and
    /// an operation either does exactly what it says or fails leaving the window unchanged.
    #[test]
    fn window_stays_inside_the_buffer() {
        for cap in 0..8usize {
            for head in 0..10usize {
                for len in 0..10usize {
                    let Ok(w) = BufWindow::new(head, len, cap) else {
                        assert!(head + len > cap);
                        continue;
                    };
                    assert!(head + len <= cap);
                    assert_eq!((w.headroom(), w.len(), w.tailroom(cap)), (head, len, cap - head - len));
                    for n in 0..10usize {
                        let mut p = w;
                        match p.prepend(n) {
                            Ok(front) => {
                                assert_eq!(front, head - n..head);
                                assert_eq!((p.headroom(), p.len()), (head - n, len + n));
                            }
                            Err(e) => {
                                assert_eq!(e, BufError::NoHeadroom { needed: n, available: head });
                                assert_eq!(p, w);
                            }
                        }
                        let mut t = w;
                        match t.trim_front(n) {
                            Ok(()) => assert_eq!((t.headroom(), t.len()), (head + n, len - n)),
                            Err(e) => {
                                assert_eq!(e, BufError::TooShort { trim: n, len });
                                assert_eq!(t, w);
                            }
                        }
                        let mut s = w;
                        match s.set_len(n, cap) {
                            Ok(()) => assert_eq!((s.headroom(), s.len()), (head, n)),
                            Err(e) => {
                                assert_eq!(e, BufError::NoTailroom { wanted: n, capacity: cap - head });
                                assert_eq!(s, w);
                            }
                        }
                        for v in [p, t, s] {
                            assert!(v.range().end <= cap, "{v:?} in {cap}");
                        }
                    }
                }
            }
        }
    }
}
