//! # wirespeed-pcap
//!
//! Capture files as a wirespeed port. [`CaptureReader`] reads classic pcap (either byte order,
//! micro- or nanosecond) and pcapng (any number of sections and interfaces, per-interface link
//! type and timestamp resolution) in pure Rust, one [`Frame`] at a time into a reused buffer;
//! [`Frame::l3`] finds the network header behind any supported [`LinkType`] (Ethernet with
//! VLAN/QinQ tags, raw IPv4/IPv6, Linux cooked SLL and SLL2, BSD null and OpenBSD loop), and
//! [`Frame::to_ethernet`] normalises a frame into Ethernet II, which is what pipeline stages
//! parse. [`PcapWriter`] writes pcap files. [`PcapPort`] puts both behind the
//! [`wirespeed_core::Port`] contract: one Rx queue per input file, or one file spread over the
//! queues by the same RSS steering engine as a NIC's and the software dispatcher's
//! ([`PcapPortBuilder::spread_input`] with a `wirespeed_core::rss::SteeringEngine`), Tx writing
//! per-queue or shared output files. Live capture through libpcap is the opt-in `live` feature
//! (`LivePort`); the default build needs no C library.
//!
//! Reading and writing allocate nothing per frame, and no length read from a file is trusted
//! before it is checked against [`MAX_RECORD`]: a truncated or corrupt file ends in a
//! [`PcapError`] naming the file, the offset and the field, never in a panic.
//!
//! ```
//! use wirespeed_pcap::{CaptureReader, LinkType, PcapWriter, WriterOptions};
//!
//! # fn main() -> Result<(), wirespeed_pcap::PcapError> {
//! // A raw-IP capture holding one IPv4 header (RFC 791 layout, 20 bytes).
//! let ipv4 = [0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1];
//! let opts = WriterOptions { link: LinkType::Raw, ..WriterOptions::default() };
//! let mut writer = PcapWriter::with_options_named(Vec::new(), opts, "example")?;
//! writer.write_frame(&ipv4, 1_700_000_000_000_001_000)?;
//! let file = writer.into_inner()?;
//!
//! let mut reader = CaptureReader::from_reader(std::io::Cursor::new(file))?;
//! let frame = reader.next_frame().expect("one frame")?;
//! assert_eq!((frame.link, frame.ts_nanos), (LinkType::Raw, 1_700_000_000_000_001_000));
//! assert_eq!(frame.l3(), Some((0x0800, 0)));
//!
//! // Normalised for the pipeline: zero MACs, EtherType IPv4, then the packet.
//! let mut eth = [0u8; 64];
//! let n = frame.to_ethernet(&mut eth).expect("fits");
//! assert_eq!(&eth[12..14], &[0x08, 0x00]);
//! assert_eq!(&eth[14..n], &ipv4);
//! assert!(reader.next_frame().is_none());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod error;
pub mod link;
#[cfg(feature = "live")]
pub mod live;
pub mod port;
pub mod reader;
pub mod writer;

pub use error::PcapError;
pub use link::{LinkType, NormalizeError};
#[cfg(feature = "live")]
pub use live::{LiveConfig, LivePort, LiveRx, LiveTx};
pub use port::{PcapOutput, PcapPort, PcapPortBuilder, PcapRx, PcapStatus, PcapTx, TxTimestamp, queue_file};
pub use reader::{CaptureFormat, CaptureReader, Frame, MAX_RECORD, to_ethernet};
pub use writer::{PcapWriter, TsResolution, WriterOptions};
