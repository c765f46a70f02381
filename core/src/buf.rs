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

    /// Replaces the packet with `bytes` (keeps the headroom where it is).
    #[inline]
    fn copy_from(&mut self, bytes: &[u8]) -> Result<(), BufError> {
        self.set_len(bytes.len())?;
        self.data_mut().copy_from_slice(bytes);
        Ok(())
    }
}
