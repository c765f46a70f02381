//! Anti-replay: an RFC 6479 bitmap window and RFC 4303 Appendix A ESN inference.
//!
//! The window is a ring of 64-bit blocks. Advancing the right edge clears whole blocks (at most
//! the ring's size, however far it jumps), so both the check and the update are O(1) and touch
//! one or two cache lines. The check runs *before* decryption (cheap rejection of replays and of
//! stale packets) and the update runs only *after* the ICV verified, so a forged packet can never
//! move the window (RFC 4303 §3.4.3).

/// Default window: 1024 packets (RFC 6479 recommends going well beyond RFC 4303's 64 at
/// multi-gigabit rates, where reordering across cores and queues is common).
pub const DEFAULT_WINDOW: u32 = 1024;
/// Largest window accepted (keeps ESN inference unambiguous and the bitmap small: 8 KiB).
pub const MAX_WINDOW: u32 = 1 << 16;

/// Why the replay check rejected a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Already received.
    Replay,
    /// Left of the window (or sequence number 0, which ESP never sends).
    TooOld,
}

/// A sliding anti-replay window over 64-bit (extended) sequence numbers.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    bits: Box<[u64]>,
    /// Highest authenticated sequence number; 0 before the first packet.
    top: u64,
    window: u64,
}

impl ReplayWindow {
    /// A window accepting sequence numbers up to `window - 1` behind the highest seen.
    /// `window` is clamped to `1..=MAX_WINDOW`.
    pub fn new(window: u32) -> Self {
        let window = window.clamp(1, MAX_WINDOW) as u64;
        // One block more than the window needs, so the block holding `top` never aliases one
        // still inside the window; a power of two so the block index is a mask.
        let blocks = (window.div_ceil(64) + 1).next_power_of_two() as usize;
        Self { bits: vec![0u64; blocks].into_boxed_slice(), top: 0, window }
    }

    /// A window as if every sequence number from 1 to `top` had been received: the next
    /// accepted is `top + 1` or later (after a restart, where what the window held is lost but
    /// its right edge was reported). `top` 0 is [`ReplayWindow::new`].
    pub fn resumed(window: u32, top: u64) -> Self {
        let mut w = Self::new(window);
        if top > 0 {
            w.bits.fill(!0);
            // The block of `top` only up to `top`: later numbers in it are still to come (an
            // advance within one block clears nothing).
            let bit = top & 63;
            let mask = low_bits(bit);
            let i = ((top >> 6) & w.mask()) as usize;
            w.bits[i] = mask;
            w.top = top;
        }
        w
    }

    /// Window size in packets.
    pub fn window(&self) -> u32 {
        self.window as u32
    }

    /// Highest authenticated sequence number (0 before any).
    pub fn top(&self) -> u64 {
        self.top
    }

    #[inline]
    fn mask(&self) -> u64 {
        self.bits.len() as u64 - 1
    }

    /// Checks `seq` without changing the window.
    #[inline]
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= self.window {
            return Err(ReplayError::TooOld);
        }
        let block = ((seq >> 6) & self.mask()) as usize;
        if self.bits[block] & (1u64 << (seq & 63)) != 0 { Err(ReplayError::Replay) } else { Ok(()) }
    }

    /// Records `seq` as received. Call only after the packet authenticated and
    /// [`ReplayWindow::check`] accepted it.
    #[inline]
    pub fn update(&mut self, seq: u64) {
        let mask = self.mask();
        if seq > self.top {
            let old_block = self.top >> 6;
            let new_block = seq >> 6;
            let n = (new_block - old_block).min(self.bits.len() as u64);
            for i in 1..=n {
                self.bits[((old_block + i) & mask) as usize] = 0;
            }
            self.top = seq;
        }
        self.bits[((seq >> 6) & mask) as usize] |= 1u64 << (seq & 63);
    }

    /// The full 64-bit sequence number of a packet carrying the low 32 bits `seq_lo`, inferred
    /// from the window per RFC 4303 Appendix A2.2 (ESN). The result is then checked and, once the
    /// packet authenticates, recorded like any other.
    #[inline]
    pub fn infer_esn(&self, seq_lo: u32) -> u64 {
        let w = self.window as u32;
        let tl = self.top as u32;
        let th = (self.top >> 32) as u32;
        let hi: u64 = if tl >= w - 1 {
            // Case A: the window lies within one 2^32 subspace.
            if seq_lo >= tl - (w - 1) { th as u64 } else { th as u64 + 1 }
        } else {
            // Case B: the window spans two subspaces.
            if seq_lo >= tl.wrapping_sub(w - 1) {
                // In the upper part of the previous subspace (none exists before the first wrap).
                (th as u64).saturating_sub(1)
            } else {
                th as u64
            }
        };
        (hi << 32) | seq_lo as u64
    }
}

/// Bits 0..=`bit` set (`bit` < 64).
fn low_bits(bit: u64) -> u64 {
    if bit >= 63 { !0 } else { (1u64 << (bit + 1)) - 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_duplicate_and_stale() {
        let mut w = ReplayWindow::new(64);
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
        for s in [1u64, 3, 2, 100] {
            assert_eq!(w.check(s), Ok(()));
            w.update(s);
            assert_eq!(w.check(s), Err(ReplayError::Replay));
        }
        // 100 - 37 = 63 < 64: inside; 100 - 36 = 64: left of the window.
        assert_eq!(w.check(37), Ok(()));
        assert_eq!(w.check(36), Err(ReplayError::TooOld));
        assert_eq!(w.check(3), Err(ReplayError::TooOld));
    }

    #[test]
    fn a_resumed_window_has_seen_everything_up_to_its_top() {
        for (window, top) in
            [(64u32, 1u64), (64, 63), (64, 64), (128, 1000), (1024, 5_000_000_000), (1024, 6400)]
        {
            let mut w = ReplayWindow::resumed(window, top);
            assert_eq!(w.top(), top);
            // Everything up to the top: seen (or left of the window).
            for s in top.saturating_sub(u64::from(window) + 2).max(1)..=top {
                assert!(w.check(s).is_err(), "window {window} top {top}: {s} accepted");
            }
            // Later numbers, also within the top's 64-bit block, in any order: accepted once.
            for s in [top + 2, top + 1, top + 64, top + 3] {
                assert_eq!(w.check(s), Ok(()), "window {window} top {top}: {s}");
                w.update(s);
                assert_eq!(w.check(s), Err(ReplayError::Replay));
            }
        }
        let w = ReplayWindow::resumed(64, 0);
        assert_eq!((w.top(), w.check(1)), (0, Ok(())), "top 0 is a fresh window");
    }

    /// A resume point from a hostile or corrupt kernel dump (any u64): no panic, everything up
    /// to it refused, and nothing past the end of the sequence space to accept.
    #[test]
    fn a_window_resumed_at_the_end_of_the_sequence_space_refuses_and_does_not_panic() {
        for (window, top) in [(64u32, u64::MAX), (1024, u64::MAX - 3), (MAX_WINDOW, u64::MAX - 1)] {
            let mut w = ReplayWindow::resumed(window, top);
            for s in [0, 1, top - 1, top] {
                assert!(w.check(s).is_err(), "window {window} top {top}: {s} accepted");
            }
            for lo in [0u32, 1, u32::MAX] {
                let s = w.infer_esn(lo);
                if w.check(s).is_ok() {
                    w.update(s);
                    assert!(w.check(s).is_err());
                }
            }
        }
    }

    #[test]
    fn big_jump_clears_stale_bits() {
        let mut w = ReplayWindow::new(1024);
        for s in 1..=1024u64 {
            w.update(s);
        }
        w.update(1_000_000);
        // Bits of the old sequence numbers must not alias the new window.
        for s in 1_000_000 - 1023..1_000_000 {
            assert_eq!(w.check(s), Ok(()), "seq {s}");
        }
        assert_eq!(w.check(1_000_000 - 1024), Err(ReplayError::TooOld));
    }

    #[test]
    fn matches_a_naive_model() {
        // A set-based model of RFC 4303 §3.4.3 against the bitmap, over a pseudo-random walk.
        let win = 128u64;
        let mut w = ReplayWindow::new(win as u32);
        let mut seen = std::collections::BTreeSet::new();
        let mut top = 0u64;
        let mut x = 0x1234_5678u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seq = (top + 40).saturating_sub(x % 200).max(1);
            let model = if seq > top {
                Ok(())
            } else if top - seq >= win {
                Err(ReplayError::TooOld)
            } else if seen.contains(&seq) {
                Err(ReplayError::Replay)
            } else {
                Ok(())
            };
            assert_eq!(w.check(seq), model, "seq {seq} top {top}");
            if model.is_ok() {
                w.update(seq);
                seen.insert(seq);
                top = top.max(seq);
            }
        }
    }

    #[test]
    fn esn_inference_rfc4303_appendix_a() {
        let mut w = ReplayWindow::new(64);
        // Case A, same subspace.
        w.update((5u64 << 32) | 1000);
        assert_eq!(w.infer_esn(990), (5u64 << 32) | 990);
        assert_eq!(w.infer_esn(2000), (5u64 << 32) | 2000);
        // Below the window: must be the next subspace (wrapped).
        assert_eq!(w.infer_esn(10), (6u64 << 32) | 10);
        // Case B: top just after a wrap; late packets from the previous subspace.
        let mut w = ReplayWindow::new(64);
        w.update((7u64 << 32) | 5);
        assert_eq!(w.infer_esn(u32::MAX - 3), (6u64 << 32) | (u32::MAX - 3) as u64);
        assert_eq!(w.infer_esn(3), (7u64 << 32) | 3);
        assert_eq!(w.infer_esn(500), (7u64 << 32) | 500);
        // Before any packet nothing precedes subspace 0.
        let w = ReplayWindow::new(64);
        assert_eq!(w.infer_esn(u32::MAX), u32::MAX as u64);
    }
}
