//! Reading classic pcap and pcapng captures, one frame at a time, into a reused buffer.
//!
//! Formats (both byte orders each):
//! - classic pcap (`a1b2c3d4` microsecond, `a1b23c4d` nanosecond, and the `a1b2cd34` variant of
//!   Alexey Kuznetzov's patched libpcap, whose records carry 8 extra bytes);
//! - pcapng (draft-ietf-opsawg-pcapng): Section Header, Interface Description (link type,
//!   `if_tsresol`, `if_tsoffset`), Enhanced Packet, Simple Packet and the obsolete Packet block;
//!   every other block is skipped; any number of sections, each with its own byte order.
//!
//! Lengths read from the file are checked before anything is used: a record or block larger
//! than [`MAX_RECORD`] (plus room for pcapng options) is an error, so a corrupt length never
//! turns into a huge allocation. The reader owns one fixed input buffer (about 384 KiB), reads
//! the file into it in large chunks and hands frames out as slices of it: no allocation and no
//! copy per frame.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::error::PcapError;
use crate::link::{self, LinkType, NormalizeError};

/// Largest packet record accepted, in bytes (libpcap's `MAXIMUM_SNAPLEN`, 256 KiB).
pub const MAX_RECORD: u32 = 256 * 1024;
/// Largest pcapng block accepted: a maximal packet plus room for options.
const MAX_BLOCK: u32 = MAX_RECORD + 64 * 1024;
/// Most interfaces one pcapng section may describe.
const MAX_INTERFACES: usize = 1 << 16;
/// Input buffer: holds the largest block accepted plus room to read ahead in large chunks.
const INPUT_BUFFER: usize = MAX_BLOCK as usize + 64 * 1024;

const MAGIC_MICRO: u32 = 0xa1b2_c3d4;
const MAGIC_NANO: u32 = 0xa1b2_3c4d;
const MAGIC_KUZNETZOV: u32 = 0xa1b2_cd34;
const BLOCK_SHB: u32 = 0x0a0d_0d0a;
const BLOCK_IDB: u32 = 1;
const BLOCK_PB: u32 = 2;
const BLOCK_SPB: u32 = 3;
const BLOCK_EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// One captured frame, borrowed from the reader until the next call to
/// [`CaptureReader::next_frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The bytes as captured (possibly fewer than [`Frame::orig_len`]), link header included.
    pub data: &'a [u8],
    /// Link-layer type of `data`.
    pub link: LinkType,
    /// Capture time in nanoseconds since the Unix epoch (0 for pcapng Simple Packet Blocks,
    /// which carry no time).
    pub ts_nanos: u64,
    /// Length of the frame on the wire.
    pub orig_len: u32,
    /// pcapng interface index within its section (0 for classic pcap).
    pub interface: u32,
}

impl Frame<'_> {
    /// EtherType of the network header and its offset in [`Frame::data`], past the link header,
    /// VLAN/QinQ tags and LLC/SNAP; `None` when there is none (too short, non-IP address
    /// family, 802.2 without SNAP, ...).
    #[inline]
    pub fn l3(&self) -> Option<(u16, usize)> {
        link::network_header(self.link, self.data)
    }

    /// Length of the frame once normalised into Ethernet by [`Frame::to_ethernet`].
    #[inline]
    pub fn ethernet_len(&self) -> Result<usize, NormalizeError> {
        link::ethernet_len(self.link, self.data)
    }

    /// Writes the frame into `out` as an Ethernet II frame (zero MACs and the payload's EtherType
    /// replace any other link header) and returns its length.
    #[inline]
    pub fn to_ethernet(&self, out: &mut [u8]) -> Result<usize, NormalizeError> {
        link::normalize_to_ethernet(self.link, self.data, out)
    }
}

/// [`Frame::to_ethernet`] as a free function that only says whether it worked.
#[inline]
pub fn to_ethernet(frame: &Frame<'_>, out: &mut [u8]) -> Option<usize> {
    frame.to_ethernet(out).ok()
}

/// Container format of a capture, as found in its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic libpcap format.
    Pcap {
        /// Timestamps in nanoseconds (magic `a1b23c4d`) instead of microseconds.
        nanosecond: bool,
        /// Written big-endian.
        big_endian: bool,
    },
    /// pcapng.
    PcapNg,
}

/// Timestamp resolution of a pcapng interface (`if_tsresol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TsUnit {
    /// 10^-n seconds.
    Pow10(u8),
    /// 2^-n seconds.
    Pow2(u8),
}

impl TsUnit {
    fn from_option(v: u8) -> TsUnit {
        if v & 0x80 != 0 { TsUnit::Pow2(v & 0x7f) } else { TsUnit::Pow10(v) }
    }

    #[inline]
    fn to_nanos(self, ts: u64) -> u64 {
        match self {
            TsUnit::Pow10(n) if n <= 9 => ts.saturating_mul(10u64.pow(9 - n as u32)),
            TsUnit::Pow10(n) => match 10u128.checked_pow(n as u32 - 9) {
                Some(d) => (ts as u128 / d) as u64,
                None => 0,
            },
            TsUnit::Pow2(n) => ((ts as u128 * 1_000_000_000) >> n).min(u64::MAX as u128) as u64,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    /// The link type, or the unsupported raw value.
    link: Result<LinkType, u32>,
    snaplen: u32,
    unit: TsUnit,
    /// `if_tsoffset`, seconds.
    offset_s: i64,
}

#[derive(Debug)]
enum Format {
    Classic { big: bool, nanos: bool, link: LinkType, record_header: usize, snaplen: u32 },
    Ng { big: bool, interfaces: Vec<Interface> },
}

/// Where the current frame sits in the reader's buffer.
#[derive(Clone, Copy, Debug)]
struct Located {
    start: usize,
    len: usize,
    link: LinkType,
    ts_nanos: u64,
    orig_len: u32,
    interface: u32,
}

/// The snap length frames are cut to: the header's, or [`MAX_RECORD`] when it is 0 (pcapng: no
/// limit) or larger (libpcap treats both the same way).
fn effective_snaplen(snaplen: u32) -> u32 {
    if snaplen == 0 || snaplen > MAX_RECORD { MAX_RECORD } else { snaplen }
}

#[inline]
fn bytes<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    // Callers check lengths first; a short slice reads as zeros rather than panicking.
    b.get(at..at + N).and_then(|s| s.try_into().ok()).unwrap_or([0; N])
}

#[inline]
fn rd16(b: &[u8], at: usize, big: bool) -> u16 {
    let v = bytes::<2>(b, at);
    if big { u16::from_be_bytes(v) } else { u16::from_le_bytes(v) }
}

#[inline]
fn rd32(b: &[u8], at: usize, big: bool) -> u32 {
    let v = bytes::<4>(b, at);
    if big { u32::from_be_bytes(v) } else { u32::from_le_bytes(v) }
}

#[inline]
fn rd64(b: &[u8], at: usize, big: bool) -> u64 {
    let v = bytes::<8>(b, at);
    if big { u64::from_be_bytes(v) } else { u64::from_le_bytes(v) }
}

/// The byte source and the fixed buffer frames are read into; `buf[pos..end]` is read but not
/// yet consumed.
struct Input {
    src: Box<dyn Read + Send>,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
}

impl Input {
    /// Makes `n` bytes (at most the buffer's size) available at `pos` unless the source ends
    /// first; returns how many are available, up to `n`.
    fn fill(&mut self, n: usize) -> io::Result<usize> {
        if self.end - self.pos < n {
            // Move the unconsumed tail (less than one item) to the front, then read ahead as
            // much as the source gives.
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            while self.end < n {
                match self.src.read(&mut self.buf[self.end..]) {
                    Ok(0) => break,
                    Ok(k) => self.end += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((self.end - self.pos).min(n))
    }
}

/// A pcap or pcapng file being read frame by frame.
///
/// ```no_run
/// # fn main() -> Result<(), wirespeed_pcap::PcapError> {
/// let mut reader = wirespeed_pcap::CaptureReader::open("trace.pcapng")?;
/// while let Some(frame) = reader.next_frame() {
///     let frame = frame?;
///     println!("{} bytes at {} ns, network header {:?}", frame.data.len(), frame.ts_nanos, frame.l3());
/// }
/// # Ok(()) }
/// ```
pub struct CaptureReader {
    input: Input,
    file: String,
    format: Format,
    /// Bytes consumed so far (for error context).
    offset: u64,
    finished: bool,
    frames: u64,
}

impl std::fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("file", &self.file)
            .field("format", &self.format())
            .field("offset", &self.offset)
            .field("frames", &self.frames)
            .finish()
    }
}

impl CaptureReader {
    /// Opens a capture file and reads its file header (pcap) or first section header (pcapng).
    ///
    /// A classic pcap file whose link type is not supported is refused here with
    /// [`PcapError::UnsupportedLinkType`].
    pub fn open(path: impl AsRef<Path>) -> Result<CaptureReader, PcapError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file =
            File::open(path).map_err(|source| PcapError::Io { file: name.clone(), op: "open", source })?;
        CaptureReader::from_reader_named(file, name)
    }

    /// Reads a capture from any byte stream (named `<reader>` in errors).
    pub fn from_reader(src: impl Read + Send + 'static) -> Result<CaptureReader, PcapError> {
        CaptureReader::from_reader_named(src, "<reader>")
    }

    /// Reads a capture from any byte stream, naming it `name` in errors.
    pub fn from_reader_named(
        src: impl Read + Send + 'static,
        name: impl Into<String>,
    ) -> Result<CaptureReader, PcapError> {
        let mut r = CaptureReader {
            input: Input {
                src: Box::new(src),
                buf: vec![0; INPUT_BUFFER].into_boxed_slice(),
                pos: 0,
                end: 0,
            },
            file: name.into(),
            format: Format::Ng { big: false, interfaces: Vec::new() },
            offset: 0,
            finished: false,
            frames: 0,
        };
        let magic = r.read_array::<4>("file header")?;
        if u32::from_le_bytes(magic) == BLOCK_SHB {
            r.read_section_header(0)?;
            return Ok(r);
        }
        let (big, m) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
            (m @ (MAGIC_MICRO | MAGIC_NANO | MAGIC_KUZNETZOV), _) => (false, m),
            (_, m @ (MAGIC_MICRO | MAGIC_NANO | MAGIC_KUZNETZOV)) => (true, m),
            (_, m) => return Err(PcapError::NotACapture { file: r.file, magic: m }),
        };
        let hdr = r.read_array::<20>("file header")?;
        let major = rd16(&hdr, 0, big);
        if major != 2 {
            return Err(r.corrupt(
                0,
                "version_major",
                major as u64,
                "only version 2 of the pcap format exists",
            ));
        }
        let raw_link = rd32(&hdr, 16, big);
        let link = LinkType::from_raw(raw_link).ok_or_else(|| PcapError::UnsupportedLinkType {
            file: r.file.clone(),
            link_type: raw_link & 0xffff,
            interface: None,
        })?;
        let record_header = if m == MAGIC_KUZNETZOV { 24 } else { 16 };
        let snaplen = effective_snaplen(rd32(&hdr, 12, big));
        r.format = Format::Classic { big, nanos: m == MAGIC_NANO, link, record_header, snaplen };
        Ok(r)
    }

    /// The container format.
    pub fn format(&self) -> CaptureFormat {
        match self.format {
            Format::Classic { big, nanos, .. } => CaptureFormat::Pcap { nanosecond: nanos, big_endian: big },
            Format::Ng { .. } => CaptureFormat::PcapNg,
        }
    }

    /// The file's link type (classic pcap), or that of the first interface described so far in
    /// the current pcapng section (`None` before its first Interface Description Block or when
    /// it is unsupported).
    pub fn link_type(&self) -> Option<LinkType> {
        match &self.format {
            Format::Classic { link, .. } => Some(*link),
            Format::Ng { interfaces, .. } => interfaces.first().and_then(|i| i.link.ok()),
        }
    }

    /// Name of the input used in errors (the path for [`CaptureReader::open`]).
    pub fn name(&self) -> &str {
        &self.file
    }

    /// Frames returned so far.
    pub fn frames_read(&self) -> u64 {
        self.frames
    }

    /// Bytes of the input consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame; `None` at the end of the file or after an error that ends the stream
    /// (see [`PcapError::is_recoverable`]).
    #[inline]
    pub fn next_frame(&mut self) -> Option<Result<Frame<'_>, PcapError>> {
        if self.finished {
            return None;
        }
        match self.advance() {
            Ok(Some(at)) => {
                self.frames += 1;
                let data = self.input.buf.get(at.start..at.start + at.len).unwrap_or(&[]);
                Some(Ok(Frame {
                    data,
                    link: at.link,
                    ts_nanos: at.ts_nanos,
                    orig_len: at.orig_len,
                    interface: at.interface,
                }))
            }
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(e) => {
                if !e.is_recoverable() {
                    self.finished = true;
                }
                Some(Err(e))
            }
        }
    }

    #[inline]
    fn advance(&mut self) -> Result<Option<Located>, PcapError> {
        match self.format {
            Format::Classic { big, nanos, link, record_header, snaplen } => {
                self.next_record(big, nanos, link, record_header, snaplen)
            }
            Format::Ng { .. } => self.next_block(),
        }
    }

    fn corrupt(&self, offset: u64, field: &'static str, value: u64, why: &'static str) -> PcapError {
        PcapError::Corrupt { file: self.file.clone(), offset, field, value, why }
    }

    fn io_error(&self, source: io::Error) -> PcapError {
        PcapError::Io { file: self.file.clone(), op: "read", source }
    }

    /// Reads exactly `N` bytes; a short read is [`PcapError::Truncated`].
    fn read_array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PcapError> {
        let mut a = [0u8; N];
        match self.read_array_or_eof(&mut a, what)? {
            true => Ok(a),
            false => Err(PcapError::Truncated {
                file: self.file.clone(),
                offset: self.offset,
                what,
                needed: N as u64,
                got: 0,
            }),
        }
    }

    /// Fills `a`; `Ok(false)` when the input ended before its first byte (a clean end),
    /// [`PcapError::Truncated`] when it ended inside.
    fn read_array_or_eof(&mut self, a: &mut [u8], what: &'static str) -> Result<bool, PcapError> {
        let got = self.input.fill(a.len()).map_err(|e| self.io_error(e))?;
        if got == 0 && !a.is_empty() {
            return Ok(false);
        }
        if got < a.len() {
            return Err(PcapError::Truncated {
                file: self.file.clone(),
                offset: self.offset,
                what,
                needed: a.len() as u64,
                got: got as u64,
            });
        }
        let pos = self.input.pos;
        a.copy_from_slice(&self.input.buf[pos..pos + a.len()]);
        self.consume(a.len());
        Ok(true)
    }

    fn consume(&mut self, n: usize) {
        self.input.pos += n;
        self.offset += n as u64;
    }

    /// Consumes the next `len` bytes (at most [`MAX_BLOCK`]) and returns where they start in the
    /// input buffer; they stay there until the next read.
    fn read_body(&mut self, len: usize, what: &'static str, item_start: u64) -> Result<usize, PcapError> {
        if len > MAX_BLOCK as usize {
            // Callers check lengths first; this keeps the buffer bound true regardless.
            return Err(PcapError::RecordTooLarge {
                file: self.file.clone(),
                offset: item_start,
                len: len as u64,
                max: MAX_BLOCK as u64,
            });
        }
        let got = self.input.fill(len).map_err(|e| self.io_error(e))?;
        if got < len {
            return Err(PcapError::Truncated {
                file: self.file.clone(),
                offset: item_start,
                what,
                needed: len as u64,
                got: got as u64,
            });
        }
        let start = self.input.pos;
        self.consume(len);
        Ok(start)
    }

    /// Discards `len` bytes (an unknown pcapng block), a buffer at a time.
    fn skip(&mut self, len: u64, item_start: u64) -> Result<(), PcapError> {
        let mut left = len;
        while left > 0 {
            let want = left.min(self.input.buf.len() as u64) as usize;
            let got = self.input.fill(want).map_err(|e| self.io_error(e))?;
            if got == 0 {
                return Err(PcapError::Truncated {
                    file: self.file.clone(),
                    offset: item_start,
                    what: "block",
                    needed: len,
                    got: len - left,
                });
            }
            self.consume(got);
            left -= got as u64;
        }
        Ok(())
    }

    fn next_record(
        &mut self,
        big: bool,
        nanos: bool,
        link: LinkType,
        header_len: usize,
        snaplen: u32,
    ) -> Result<Option<Located>, PcapError> {
        let start = self.offset;
        let mut h = [0u8; 24];
        if !self.read_array_or_eof(&mut h[..header_len], "record header")? {
            return Ok(None);
        }
        let (sec, frac) = (rd32(&h, 0, big) as u64, rd32(&h, 4, big) as u64);
        let (incl, orig) = (rd32(&h, 8, big), rd32(&h, 12, big));
        if incl > MAX_RECORD {
            return Err(PcapError::RecordTooLarge {
                file: self.file.clone(),
                offset: start,
                len: incl as u64,
                max: MAX_RECORD as u64,
            });
        }
        let at = self.read_body(incl as usize, "packet data", start)?;
        let ts_nanos = sec * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        // A record longer than the file's snap length is cut to it, as libpcap does.
        let len = incl.min(snaplen) as usize;
        Ok(Some(Located { start: at, len, link, ts_nanos, orig_len: orig, interface: 0 }))
    }

    /// Reads the rest of a Section Header Block whose type field (at `start`) was consumed.
    fn read_section_header(&mut self, start: u64) -> Result<(), PcapError> {
        let h = self.read_array::<8>("section header block")?;
        let big = match u32::from_le_bytes(bytes::<4>(&h, 4)) {
            BYTE_ORDER_MAGIC => false,
            m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
            m => {
                return Err(self.corrupt(
                    start + 8,
                    "byte_order_magic",
                    m as u64,
                    "expected 0x1a2b3c4d in either byte order",
                ));
            }
        };
        let len = rd32(&h, 0, big);
        if !(28..=MAX_BLOCK).contains(&len) || !len.is_multiple_of(4) {
            return Err(self.corrupt(
                start,
                "block_total_length",
                len as u64,
                "section header length out of range or not a multiple of 4",
            ));
        }
        let rest = len as usize - 12;
        let at = self.read_body(rest, "section header block", start)?;
        let b = &self.input.buf[at..at + rest];
        let major = rd16(b, 0, big);
        if major != 1 {
            return Err(self.corrupt(start, "major_version", major as u64, "only pcapng version 1 exists"));
        }
        let trailer = rd32(b, rest - 4, big);
        if trailer != len {
            return Err(self.corrupt(
                start,
                "trailing block_total_length",
                trailer as u64,
                "differs from the leading length",
            ));
        }
        match &mut self.format {
            Format::Ng { big: b, interfaces } => {
                *b = big;
                interfaces.clear();
            }
            f @ Format::Classic { .. } => *f = Format::Ng { big, interfaces: Vec::new() },
        }
        Ok(())
    }

    fn next_block(&mut self) -> Result<Option<Located>, PcapError> {
        loop {
            let big = match &self.format {
                Format::Ng { big, .. } => *big,
                Format::Classic { .. } => return Ok(None),
            };
            let start = self.offset;
            let mut t = [0u8; 4];
            if !self.read_array_or_eof(&mut t, "block header")? {
                return Ok(None);
            }
            let btype = if big { u32::from_be_bytes(t) } else { u32::from_le_bytes(t) };
            if btype == BLOCK_SHB {
                self.read_section_header(start)?;
                continue;
            }
            let len = rd32(&self.read_array::<4>("block header")?, 0, big);
            if len < 12 || !len.is_multiple_of(4) {
                return Err(self.corrupt(
                    start,
                    "block_total_length",
                    len as u64,
                    "below 12 or not a multiple of 4",
                ));
            }
            let body = (len - 12) as usize;
            match btype {
                BLOCK_IDB | BLOCK_EPB | BLOCK_SPB | BLOCK_PB => {
                    if len > MAX_BLOCK {
                        if btype == BLOCK_IDB {
                            return Err(self.corrupt(
                                start,
                                "block_total_length",
                                len as u64,
                                "interface description block too large",
                            ));
                        }
                        return Err(PcapError::RecordTooLarge {
                            file: self.file.clone(),
                            offset: start,
                            len: len as u64,
                            max: MAX_BLOCK as u64,
                        });
                    }
                    let at = self.read_body(body + 4, "block", start)?;
                    let trailer = rd32(&self.input.buf[at..at + body + 4], body, big);
                    if trailer != len {
                        return Err(self.corrupt(
                            start,
                            "trailing block_total_length",
                            trailer as u64,
                            "differs from the leading length",
                        ));
                    }
                    if btype == BLOCK_IDB {
                        self.interface_description(at, body, big, start)?;
                        continue;
                    }
                    return self.packet_block(btype, at, body, big, start).map(Some);
                }
                _ => self.skip(body as u64 + 4, start)?,
            }
        }
    }

    fn interface_description(
        &mut self,
        at: usize,
        body: usize,
        big: bool,
        start: u64,
    ) -> Result<(), PcapError> {
        if body < 8 {
            return Err(self.corrupt(
                start,
                "block_total_length",
                body as u64 + 12,
                "interface description block shorter than 20 bytes",
            ));
        }
        let b = &self.input.buf[at..at + body];
        let raw_link = rd16(b, 0, big) as u32;
        let snaplen = rd32(b, 4, big);
        let mut unit = TsUnit::Pow10(6);
        let mut offset_s = 0i64;
        let mut o = 8;
        while o + 4 <= body {
            let code = rd16(b, o, big);
            let olen = rd16(b, o + 2, big) as usize;
            o += 4;
            if code == OPT_END || o + olen > body {
                break;
            }
            match code {
                OPT_IF_TSRESOL if olen >= 1 => unit = TsUnit::from_option(b[o]),
                OPT_IF_TSOFFSET if olen == 8 => offset_s = rd64(b, o, big) as i64,
                _ => {}
            }
            o += (olen + 3) & !3;
        }
        let iface = Interface {
            link: LinkType::from_raw(raw_link).ok_or(raw_link),
            snaplen: effective_snaplen(snaplen),
            unit,
            offset_s,
        };
        let Format::Ng { interfaces, .. } = &mut self.format else { return Ok(()) };
        if interfaces.len() >= MAX_INTERFACES {
            let n = interfaces.len() as u64;
            return Err(self.corrupt(
                start,
                "interface count",
                n,
                "more interface descriptions than any capture has",
            ));
        }
        interfaces.push(iface);
        Ok(())
    }

    fn packet_block(
        &mut self,
        btype: u32,
        at: usize,
        body: usize,
        big: bool,
        start: u64,
    ) -> Result<Located, PcapError> {
        let b = &self.input.buf[at..at + body];
        let (iface_id, ts, caplen, orig_len, data_at) = match btype {
            BLOCK_SPB => {
                if body < 4 {
                    return Err(self.corrupt(
                        start,
                        "block_total_length",
                        body as u64 + 12,
                        "simple packet block shorter than 16 bytes",
                    ));
                }
                (0, None, u32::MAX, rd32(b, 0, big), 4)
            }
            _ => {
                if body < 20 {
                    return Err(self.corrupt(
                        start,
                        "block_total_length",
                        body as u64 + 12,
                        "packet block shorter than 32 bytes",
                    ));
                }
                let iface = if btype == BLOCK_PB { rd16(b, 0, big) as u32 } else { rd32(b, 0, big) };
                let ts = ((rd32(b, 4, big) as u64) << 32) | rd32(b, 8, big) as u64;
                (iface, Some(ts), rd32(b, 12, big), rd32(b, 16, big), 20)
            }
        };
        let Format::Ng { interfaces, .. } = &self.format else {
            return Err(self.corrupt(
                start,
                "block_type",
                btype as u64,
                "packet block outside a pcapng section",
            ));
        };
        let Some(iface) = interfaces.get(iface_id as usize).copied() else {
            return Err(self.corrupt(
                start,
                "interface_id",
                iface_id as u64,
                "no such interface in this section",
            ));
        };
        let room = (body - data_at) as u32;
        let caplen = if btype == BLOCK_SPB {
            // No captured length: the original length, cut by the block and the snap length.
            let snap = if iface.snaplen == 0 { u32::MAX } else { iface.snaplen };
            orig_len.min(room).min(snap)
        } else if caplen > room {
            return Err(self.corrupt(
                start,
                "captured_packet_length",
                caplen as u64,
                "larger than its block",
            ));
        } else {
            caplen
        };
        let link = iface.link.map_err(|raw| PcapError::UnsupportedLinkType {
            file: self.file.clone(),
            link_type: raw,
            interface: Some(iface_id),
        })?;
        let ts_nanos = match ts {
            None => 0,
            Some(ts) => {
                let ns = iface.unit.to_nanos(ts) as i128 + iface.offset_s as i128 * 1_000_000_000;
                ns.clamp(0, u64::MAX as i128) as u64
            }
        };
        Ok(Located {
            start: at + data_at,
            len: caplen as usize,
            link,
            ts_nanos,
            orig_len,
            interface: iface_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_units() {
        assert_eq!(TsUnit::Pow10(6).to_nanos(1_500_000), 1_500_000_000);
        assert_eq!(TsUnit::Pow10(9).to_nanos(7), 7);
        assert_eq!(TsUnit::Pow10(12).to_nanos(7_000), 7);
        assert_eq!(TsUnit::Pow10(127).to_nanos(u64::MAX), 0);
        assert_eq!(TsUnit::Pow10(0).to_nanos(u64::MAX), u64::MAX);
        assert_eq!(TsUnit::Pow2(10).to_nanos(1024), 1_000_000_000);
        assert_eq!(TsUnit::Pow2(127).to_nanos(u64::MAX), 0);
        assert_eq!(TsUnit::from_option(0x8a), TsUnit::Pow2(10));
        assert_eq!(TsUnit::from_option(9), TsUnit::Pow10(9));
    }

    #[test]
    fn not_a_capture_and_empty() {
        let e = CaptureReader::from_reader(&b"Licensed under..."[..]).unwrap_err();
        assert!(matches!(e, PcapError::NotACapture { magic: 0x4c696365, .. }), "{e}");
        let e = CaptureReader::from_reader(&b""[..]).unwrap_err();
        assert!(matches!(e, PcapError::Truncated { needed: 4, got: 0, .. }), "{e}");
    }
}
