//! Writing classic pcap files (buffered, no allocation per frame).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::PcapError;
use crate::link::LinkType;
use crate::reader::MAX_RECORD;

/// Write buffer in front of the output.
const WRITE_BUFFER: usize = 64 * 1024;

/// Timestamp resolution of a written file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TsResolution {
    /// Microseconds (magic `a1b2c3d4`): what every tool reads.
    #[default]
    Micro,
    /// Nanoseconds (magic `a1b23c4d`).
    Nano,
}

/// Options of a [`PcapWriter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// Link type written in the file header; frames must already be of this type.
    pub link: LinkType,
    /// Timestamp resolution.
    pub resolution: TsResolution,
    /// Longest frame stored; longer frames are cut to it (their original length is kept).
    pub snaplen: u32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self { link: LinkType::Ethernet, resolution: TsResolution::Micro, snaplen: MAX_RECORD }
    }
}

/// A classic pcap file being written, in the host's byte order (as libpcap writes).
///
/// ```
/// # fn main() -> Result<(), wirespeed_pcap::PcapError> {
/// let mut w = wirespeed_pcap::PcapWriter::new(Vec::new())?;
/// w.write_frame(&[0u8; 60], 1_700_000_000_123_456_000)?;
/// let bytes = w.into_inner()?;
/// assert_eq!(bytes.len(), 24 + 16 + 60);
/// # Ok(()) }
/// ```
pub struct PcapWriter<W: Write = File> {
    out: BufWriter<W>,
    file: String,
    opts: WriterOptions,
    frames: u64,
}

impl<W: Write> std::fmt::Debug for PcapWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapWriter")
            .field("file", &self.file)
            .field("opts", &self.opts)
            .field("frames", &self.frames)
            .finish()
    }
}

impl PcapWriter<File> {
    /// Creates (or truncates) `path` and writes an Ethernet, microsecond pcap header.
    pub fn create(path: impl AsRef<Path>) -> Result<PcapWriter<File>, PcapError> {
        PcapWriter::create_with(path, WriterOptions::default())
    }

    /// Creates (or truncates) `path` with the given options.
    pub fn create_with(path: impl AsRef<Path>, opts: WriterOptions) -> Result<PcapWriter<File>, PcapError> {
        let name = path.as_ref().display().to_string();
        let file = File::create(path.as_ref()).map_err(|source| PcapError::Io {
            file: name.clone(),
            op: "create",
            source,
        })?;
        PcapWriter::with_options_named(file, opts, name)
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes an Ethernet, microsecond pcap header to `out` (named `<writer>` in errors).
    pub fn new(out: W) -> Result<PcapWriter<W>, PcapError> {
        PcapWriter::with_options_named(out, WriterOptions::default(), "<writer>")
    }

    /// Writes a pcap header with the given options to `out`, naming it `name` in errors.
    pub fn with_options_named(
        out: W,
        opts: WriterOptions,
        name: impl Into<String>,
    ) -> Result<PcapWriter<W>, PcapError> {
        let mut w = PcapWriter {
            out: BufWriter::with_capacity(WRITE_BUFFER, out),
            file: name.into(),
            opts,
            frames: 0,
        };
        let magic = match opts.resolution {
            TsResolution::Micro => 0xa1b2_c3d4u32,
            TsResolution::Nano => 0xa1b2_3c4d,
        };
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&magic.to_ne_bytes());
        h[4..6].copy_from_slice(&2u16.to_ne_bytes());
        h[6..8].copy_from_slice(&4u16.to_ne_bytes());
        // thiszone and sigfigs stay 0, as every modern writer does.
        h[16..20].copy_from_slice(&opts.snaplen.to_ne_bytes());
        h[20..24].copy_from_slice(&opts.link.raw().to_ne_bytes());
        w.put(&h)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), PcapError> {
        self.out.write_all(bytes).map_err(|source| PcapError::Io {
            file: self.file.clone(),
            op: "write",
            source,
        })
    }

    /// Appends one frame captured at `ts_nanos` (nanoseconds since the Unix epoch; times past
    /// 2106 are clamped to the largest the format holds).
    #[inline]
    pub fn write_frame(&mut self, data: &[u8], ts_nanos: u64) -> Result<(), PcapError> {
        let orig = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.write_frame_with_len(data, ts_nanos, orig)
    }

    /// Appends one frame whose length on the wire was `orig_len` (at least `data.len()` is
    /// recorded when it is smaller).
    #[inline]
    pub fn write_frame_with_len(
        &mut self,
        data: &[u8],
        ts_nanos: u64,
        orig_len: u32,
    ) -> Result<(), PcapError> {
        let incl = data.len().min(self.opts.snaplen as usize);
        let orig = orig_len.max(u32::try_from(data.len()).unwrap_or(u32::MAX));
        let secs = (ts_nanos / 1_000_000_000).min(u32::MAX as u64) as u32;
        let nanos = (ts_nanos % 1_000_000_000) as u32;
        let frac = match self.opts.resolution {
            TsResolution::Micro => nanos / 1000,
            TsResolution::Nano => nanos,
        };
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_ne_bytes());
        h[4..8].copy_from_slice(&frac.to_ne_bytes());
        h[8..12].copy_from_slice(&(incl as u32).to_ne_bytes());
        h[12..16].copy_from_slice(&orig.to_ne_bytes());
        self.put(&h)?;
        self.put(&data[..incl])?;
        self.frames += 1;
        Ok(())
    }

    /// Pushes buffered frames to the output.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        self.out.flush().map_err(|source| PcapError::Io { file: self.file.clone(), op: "flush", source })
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// The options in force.
    pub fn options(&self) -> WriterOptions {
        self.opts
    }

    /// Flushes and returns the output.
    pub fn into_inner(self) -> Result<W, PcapError> {
        let file = self.file;
        self.out.into_inner().map_err(|e| PcapError::Io { file, op: "flush", source: e.into_error() })
    }
}
