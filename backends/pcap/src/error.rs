//! Errors of reading and writing captures.

/// What went wrong with a capture file. Every variant names the file (its path, or the name
/// given to [`crate::CaptureReader::from_reader_named`]) and, for reads, the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The operating system refused a read, write, open or create.
    #[error("{file}: {op} failed: {source}")]
    Io {
        /// File.
        file: String,
        /// What was being done (`open`, `read`, `write`, `flush`, `create`).
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The first four bytes are neither a pcap nor a pcapng magic number.
    #[error("{file}: not a pcap or pcapng file (magic {magic:#010x})")]
    NotACapture {
        /// File.
        file: String,
        /// The first four bytes, read big-endian.
        magic: u32,
    },
    /// The file's (or a pcapng interface's) link type is not one this crate handles.
    #[error("{file}: unsupported link type {link_type}{}", interface_suffix(*.interface))]
    UnsupportedLinkType {
        /// File.
        file: String,
        /// The `LINKTYPE_*` value found.
        link_type: u32,
        /// pcapng interface the packet was captured on (`None` for classic pcap).
        interface: Option<u32>,
    },
    /// The file ends inside a header, a packet or a block.
    #[error("{file}: truncated at byte {offset}: {what} needs {needed} bytes, {got} present")]
    Truncated {
        /// File.
        file: String,
        /// Offset where the cut-short item starts.
        offset: u64,
        /// The item (`record header`, `packet data`, `block`, ...).
        what: &'static str,
        /// Bytes the item needs.
        needed: u64,
        /// Bytes that were there.
        got: u64,
    },
    /// A packet record or block is larger than [`crate::MAX_RECORD`]: refused rather than
    /// allocated, since real frames never come close and corrupt lengths often do.
    #[error("{file}: record at byte {offset} claims {len} bytes, more than the {max}-byte limit")]
    RecordTooLarge {
        /// File.
        file: String,
        /// Offset of the record.
        offset: u64,
        /// Length claimed.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A structural field holds an impossible value.
    #[error("{file}: corrupt at byte {offset}: {field} = {value} ({why})")]
    Corrupt {
        /// File.
        file: String,
        /// Offset of the header or block holding the field.
        offset: u64,
        /// The field (`block_total_length`, `version_major`, `interface_id`, ...).
        field: &'static str,
        /// Its value.
        value: u64,
        /// Why it is wrong.
        why: &'static str,
    },
    /// A port was configured in a way that cannot work.
    #[error("pcap port configuration: {field}: {why}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// Live capture through libpcap failed (feature `live`).
    #[error("live capture on {device}: {message}")]
    Live {
        /// Interface name.
        device: String,
        /// libpcap's message.
        message: String,
    },
}

fn interface_suffix(interface: Option<u32>) -> String {
    interface.map(|i| format!(" on pcapng interface {i}")).unwrap_or_default()
}

impl PcapError {
    /// True when reading can go on after this error: a pcapng packet captured on an interface
    /// of an unsupported link type is skipped, the rest of the file is still readable. Every
    /// other error ends the stream (the next [`crate::CaptureReader::next_frame`] returns `None`).
    pub fn is_recoverable(&self) -> bool {
        matches!(self, PcapError::UnsupportedLinkType { interface: Some(_), .. })
    }
}
