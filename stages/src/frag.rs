//! IPv4 fragmentation (RFC 791 §2.3, §3.2; RFC 1812 §5.2.6; RFC 4301 §8.1 / RFC 4459 for a
//! tunnel): an IPv4 packet with DF clear that does not fit a tunnel's MTU is split into
//! fragments that do, each then encrypted as its own ESP packet, and the peer's kernel
//! reassembles them after decryption ("fragment before encryption").
//!
//! [`plan_v4`] checks the packet and sizes the fragments; [`FragPlan::write`] writes fragment
//! `n` into a buffer and [`FragPlan::first_in_place`] turns the packet itself into the first
//! fragment, so the caller reuses the packet's buffer and takes one buffer per further fragment
//! from its backend ([`wirespeed_core::PacketBuf::alloc_like`]): no heap allocation.
//!
//! Every fragment keeps the packet's identification, protocol, TTL and TOS; its offset counts
//! from the packet's own offset (a fragment may be fragmented again) and More Fragments is set
//! on all but the last, which keeps the packet's own MF. The first fragment carries all
//! options; the others only those whose copy flag is set (RFC 791 §3.1), padded with
//! End-of-Options to a 4-byte boundary. Each header gets its checksum.

use wirespeed_core::wire::checksum::{fold, ones_sum};

/// Why a packet cannot be fragmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FragError {
    /// Not a well-formed IPv4 packet: short, bad header length, total length beyond the bytes,
    /// malformed options, or an offset that the fragments would push past the 13-bit field.
    #[error("not a well-formed IPv4 packet to fragment")]
    Malformed,
    /// Don't Fragment is set.
    #[error("don't fragment is set")]
    DontFragment,
    /// It fits: nothing to do.
    #[error("the packet fits the MTU")]
    Fits,
    /// The MTU leaves no room for 8 bytes of payload behind a fragment's header.
    #[error("MTU {mtu} leaves no room for a fragment")]
    MtuTooSmall {
        /// The MTU asked for.
        mtu: usize,
    },
}

/// Longest IPv4 header (60 bytes).
const MAX_HDR: usize = 60;

/// How one IPv4 packet splits into fragments of at most an MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragPlan {
    /// The first fragment's header length (the packet's own, all options).
    first_hdr: usize,
    /// The other fragments' header: the fixed 20 bytes plus the copied options, padded.
    rest_hdr: [u8; MAX_HDR],
    rest_hdr_len: usize,
    /// Payload bytes of the first fragment and of each further one but the last (multiples
    /// of 8).
    first_payload: usize,
    rest_payload: usize,
    /// Payload bytes of the whole packet.
    payload: usize,
    /// The packet's own fragment offset (bytes) and More Fragments flag.
    offset: usize,
    more: bool,
    count: usize,
}

/// Plans the fragmentation of the IPv4 packet `ip` (starting at its header; bytes beyond its
/// total length are ignored) into fragments of at most `mtu` bytes.
pub fn plan_v4(ip: &[u8], mtu: usize) -> Result<FragPlan, FragError> {
    let h = ip.get(..20).ok_or(FragError::Malformed)?;
    if h[0] >> 4 != 4 {
        return Err(FragError::Malformed);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < 20 || total < ihl || total > ip.len() {
        return Err(FragError::Malformed);
    }
    let flags = u16::from_be_bytes([h[6], h[7]]);
    if total <= mtu {
        return Err(FragError::Fits);
    }
    if flags & 0x4000 != 0 {
        return Err(FragError::DontFragment);
    }
    let more = flags & 0x2000 != 0;
    let offset = usize::from(flags & 0x1fff) * 8;
    let payload = total - ihl;
    // The last fragment's offset must fit the 13-bit field (in 8-byte units), and the
    // reassembled datagram the 16-bit total length.
    if offset + payload > usize::from(u16::MAX) - 20 {
        return Err(FragError::Malformed);
    }
    let mut rest_hdr = [0u8; MAX_HDR];
    rest_hdr[..20].copy_from_slice(&ip[..20]);
    let mut n = 20;
    // Options (RFC 791 §3.1): End of list, No-op, or type ‖ length ‖ value.
    let opts = &ip[20..ihl];
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            ty => {
                let len = usize::from(*opts.get(i + 1).ok_or(FragError::Malformed)?);
                if len < 2 || i + len > opts.len() {
                    return Err(FragError::Malformed);
                }
                if ty & 0x80 != 0 {
                    rest_hdr[n..n + len].copy_from_slice(&opts[i..i + len]);
                    n += len;
                }
                i += len;
            }
        }
    }
    // Pad with End of Options List (zeros) to a multiple of 4.
    let rest_hdr_len = n.div_ceil(4) * 4;
    let unit = |hdr: usize| mtu.checked_sub(hdr).map(|r| r & !7).filter(|&r| r >= 8);
    let (Some(first_payload), Some(rest_payload)) = (unit(ihl), unit(rest_hdr_len)) else {
        return Err(FragError::MtuTooSmall { mtu });
    };
    // `total > mtu`, so the payload does not fit the first fragment.
    let count = 1 + (payload - first_payload).div_ceil(rest_payload);
    Ok(FragPlan {
        first_hdr: ihl,
        rest_hdr,
        rest_hdr_len,
        first_payload,
        rest_payload,
        payload,
        offset,
        more,
        count,
    })
}

impl FragPlan {
    /// Number of fragments (at least 2).
    pub fn count(&self) -> usize {
        self.count
    }

    /// Where fragment `n`'s payload starts in the packet's payload, and its length.
    fn span(&self, n: usize) -> (usize, usize) {
        if n == 0 {
            return (0, self.first_payload);
        }
        let start = self.first_payload + (n - 1) * self.rest_payload;
        (start, self.rest_payload.min(self.payload - start))
    }

    /// Length of fragment `n` (header included).
    pub fn len(&self, n: usize) -> usize {
        let hdr = if n == 0 { self.first_hdr } else { self.rest_hdr_len };
        hdr + self.span(n).1
    }

    /// Never true: a plan has at least two fragments (for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Sets total length, flags / offset and checksum of the fragment header `h` (length
    /// `hdr`) for fragment `n`.
    fn finish_header(&self, h: &mut [u8], hdr: usize, n: usize) {
        let (start, len) = self.span(n);
        let last = n + 1 == self.count;
        let off = ((self.offset + start) / 8) as u16;
        let mf = if !last || self.more { 0x2000 } else { 0 };
        h[0] = 0x40 | (hdr / 4) as u8;
        h[2..4].copy_from_slice(&((hdr + len) as u16).to_be_bytes());
        h[6..8].copy_from_slice(&(mf | off).to_be_bytes());
        h[10..12].fill(0);
        let c = fold(ones_sum(0, &h[..hdr]));
        h[10..12].copy_from_slice(&c.to_be_bytes());
    }

    /// Writes fragment `n` (1 ≤ n < count) of the packet `ip` into `out` (at least
    /// [`FragPlan::len`]`(n)` bytes); returns its length. `ip` must be the packet the plan was
    /// made for.
    pub fn write(&self, ip: &[u8], n: usize, out: &mut [u8]) -> usize {
        debug_assert!(n >= 1 && n < self.count);
        let hdr = self.rest_hdr_len;
        let (start, len) = self.span(n);
        out[..hdr].copy_from_slice(&self.rest_hdr[..hdr]);
        let from = self.first_hdr + start;
        out[hdr..hdr + len].copy_from_slice(&ip[from..from + len]);
        self.finish_header(&mut out[..hdr], hdr, n);
        hdr + len
    }

    /// Turns the packet `ip` into its first fragment (write the others first: this cuts the
    /// payload); returns the fragment's length.
    pub fn first_in_place(&self, ip: &mut [u8]) -> usize {
        let hdr = self.first_hdr;
        self.finish_header(&mut ip[..hdr], hdr, 0);
        hdr + self.first_payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 UDP packet of `total` bytes with `opts` (a multiple of 4) and `flags`.
    fn packet(total: usize, opts: &[u8], flags: u16) -> Vec<u8> {
        let ihl = 20 + opts.len();
        let mut p = vec![0u8; total];
        p[0] = 0x40 | (ihl / 4) as u8;
        p[1] = 0x10;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0xbeefu16.to_be_bytes());
        p[6..8].copy_from_slice(&flags.to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 9, 0, 1]);
        p[20..ihl].copy_from_slice(opts);
        for (i, b) in p[ihl..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let c = fold(ones_sum(0, &p[..ihl]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// All fragments of `p` at `mtu`.
    fn fragments(p: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let plan = plan_v4(p, mtu).unwrap();
        let mut out = Vec::new();
        for n in 1..plan.count() {
            let mut f = vec![0u8; plan.len(n)];
            assert_eq!(plan.write(p, n, &mut f), plan.len(n));
            out.push(f);
        }
        let mut first = p.to_vec();
        let l = plan.first_in_place(&mut first);
        assert_eq!(l, plan.len(0));
        first.truncate(l);
        out.insert(0, first);
        out
    }

    /// Reassembles `frags` (RFC 791 §3.2 in miniature) and checks each header: checksum,
    /// identification, length, MTU, 8-byte alignment; returns (payload, offset, last MF).
    fn reassemble(frags: &[Vec<u8>], mtu: usize) -> (Vec<u8>, usize, bool) {
        let mut payload = Vec::new();
        let mut first_off = None;
        let mut mf_last = false;
        for (k, f) in frags.iter().enumerate() {
            let ihl = usize::from(f[0] & 0x0f) * 4;
            assert_eq!(f[0] >> 4, 4);
            assert!(f.len() <= mtu, "fragment {k} is {} bytes, MTU {mtu}", f.len());
            assert_eq!(usize::from(u16::from_be_bytes([f[2], f[3]])), f.len());
            assert_eq!(fold(ones_sum(0, &f[..ihl])), 0, "fragment {k}: header checksum");
            assert_eq!(&f[4..6], &[0xbe, 0xef], "identification kept");
            assert_eq!((f[1], f[8], f[9]), (0x10, 64, 17), "TOS, TTL, protocol kept");
            let fl = u16::from_be_bytes([f[6], f[7]]);
            assert_eq!(fl & 0x4000, 0);
            let off = usize::from(fl & 0x1fff) * 8;
            let start = *first_off.get_or_insert(off);
            assert_eq!(off - start, payload.len(), "fragment {k}: offset continues the previous");
            if k + 1 < frags.len() {
                assert_ne!(fl & 0x2000, 0, "MF on all but the last");
                assert_eq!((f.len() - ihl) % 8, 0);
            }
            mf_last = fl & 0x2000 != 0;
            payload.extend_from_slice(&f[ihl..]);
        }
        (payload, first_off.unwrap(), mf_last)
    }

    #[test]
    fn splits_at_eight_byte_boundaries_and_reassembles() {
        for (total, mtu, count) in [
            (1500, 1400, 2),
            (1401, 1400, 2),
            (2000, 1000, 3),
            // 1500 - 20 = 1480 payload; at MTU 500: 480 per fragment -> 4 fragments (480 * 3 + 40).
            (1500, 500, 4),
            (65535, 1438, 47),
            (100, 28, 10),
        ] {
            let p = packet(total, &[], 0);
            let frags = fragments(&p, mtu);
            assert_eq!(frags.len(), count, "{total} at {mtu}");
            let (payload, off, mf) = reassemble(&frags, mtu);
            assert_eq!(payload, &p[20..]);
            assert_eq!((off, mf), (0, false));
        }
    }

    #[test]
    fn boundary_sizes() {
        // MTU 1400: 1380 payload fits 1376 (multiple of 8) in the first fragment.
        let plan = plan_v4(&packet(1401, &[], 0), 1400).unwrap();
        assert_eq!((plan.len(0), plan.len(1), plan.count()), (1396, 25, 2));
        // Exactly at the MTU: nothing to do; one byte over: two fragments.
        assert_eq!(plan_v4(&packet(1400, &[], 0), 1400), Err(FragError::Fits));
        let plan = plan_v4(&packet(1397, &[], 0), 1396).unwrap();
        assert_eq!((plan.len(0), plan.len(1)), (1396, 21));
        // The smallest MTU that leaves 8 bytes: 28.
        assert_eq!(plan_v4(&packet(100, &[], 0), 28).unwrap().len(0), 28);
        assert_eq!(plan_v4(&packet(100, &[], 0), 27), Err(FragError::MtuTooSmall { mtu: 27 }));
        assert_eq!(plan_v4(&packet(100, &[], 0), 0), Err(FragError::MtuTooSmall { mtu: 0 }));
    }

    #[test]
    fn options_copied_by_their_copy_flag() {
        // Security (130, copied, length 11) ‖ NOP ‖ record route (7, not copied, length 7) ‖
        // EOL ‖ pad: 20 bytes of options.
        let mut opts = vec![130, 11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 7, 7, 4, 0, 0, 0, 0, 0];
        opts.truncate(20);
        let p = packet(1000, &opts, 0);
        let frags = fragments(&p, 400);
        assert_eq!(frags[0][0] & 0x0f, 10, "the first fragment has every option");
        assert_eq!(&frags[0][20..40], &opts[..]);
        for f in &frags[1..] {
            // Only the security option, padded to 12 bytes with End of Options.
            assert_eq!(f[0] & 0x0f, 8);
            assert_eq!(&f[20..31], &opts[..11]);
            assert_eq!(f[31], 0);
        }
        let (payload, _, _) = reassemble(&frags, 400);
        assert_eq!(payload, &p[40..]);
    }

    #[test]
    fn a_fragment_fragments_again() {
        // A middle fragment (offset 1480, MF set): its pieces continue at 1480 and the last
        // keeps MF.
        let p = packet(1500, &[], 0x2000 | (1480 / 8));
        let frags = fragments(&p, 600);
        let (payload, off, mf) = reassemble(&frags, 600);
        assert_eq!(payload, &p[20..]);
        assert_eq!((off, mf), (1480, true));
        // The last fragment of a datagram (MF clear) ends with MF clear.
        let p = packet(1500, &[], 1480 / 8);
        let (_, off, mf) = reassemble(&fragments(&p, 600), 600);
        assert_eq!((off, mf), (1480, false));
    }

    #[test]
    fn hostile_inputs_are_refused() {
        let ok = packet(1500, &[], 0);
        assert_eq!(plan_v4(&ok, 1000).unwrap().count(), 2);
        // DF set.
        assert_eq!(plan_v4(&packet(1500, &[], 0x4000), 1000), Err(FragError::DontFragment));
        // Short, wrong version, header length below 20 or beyond the total length.
        assert_eq!(plan_v4(&ok[..19], 1000), Err(FragError::Malformed));
        let mut v6 = ok.clone();
        v6[0] = 0x65;
        assert_eq!(plan_v4(&v6, 1000), Err(FragError::Malformed));
        let mut short_ihl = ok.clone();
        short_ihl[0] = 0x44;
        assert_eq!(plan_v4(&short_ihl, 1000), Err(FragError::Malformed));
        // Total length beyond the bytes there are (a truncated frame).
        assert_eq!(plan_v4(&ok[..1400], 1000), Err(FragError::Malformed));
        let mut tiny_total = ok.clone();
        tiny_total[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(plan_v4(&tiny_total, 1000), Err(FragError::Malformed));
        // Options: a length running past the header, a length below 2.
        assert_eq!(plan_v4(&packet(1500, &[130, 9, 0, 0], 0), 1000), Err(FragError::Malformed));
        assert_eq!(plan_v4(&packet(1500, &[130, 1, 0, 0], 0), 1000), Err(FragError::Malformed));
        assert_eq!(plan_v4(&packet(1500, &[1, 1, 1, 130], 0), 1000), Err(FragError::Malformed));
        // An offset the fragments would push past the largest datagram.
        assert_eq!(plan_v4(&packet(1500, &[], 0x1fff), 1000), Err(FragError::Malformed));
        // A 60-byte header (ten copied router-alert options) leaves MTU 67 no room; 68 fits
        // 8 bytes per fragment (RFC 791's minimum).
        let long = packet(200, &[0x94, 4, 0, 0].repeat(10), 0);
        assert_eq!(plan_v4(&long, 67), Err(FragError::MtuTooSmall { mtu: 67 }));
        let frags = fragments(&long, 68);
        assert_eq!(frags.len(), 18);
        assert_eq!(reassemble(&frags, 68).0, &long[60..]);
    }

    #[test]
    fn bytes_past_the_total_length_are_ignored() {
        // Ethernet padding or a longer buffer: only `total` bytes are fragmented.
        let mut p = packet(1500, &[], 0);
        p.extend_from_slice(&[0xee; 30]);
        let frags = fragments(&p, 1000);
        let (payload, _, _) = reassemble(&frags, 1000);
        assert_eq!(payload, &p[20..1500]);
    }
}
