//! Capture files as a wirespeed [`Port`]: Rx replays input files, Tx writes output files.
//!
//! **Queues.** A file is one ordered stream, so a port has one Rx queue per input file: N input
//! files give N queues, and queue `q` replays file `q`. A port may be given more queues than
//! inputs (e.g. an output-only port); the Rx of such a queue is at its end from the start.
//!
//! Alternatively one file can be *spread* over all queues ([`PcapPortBuilder::spread_input`]),
//! like a NIC's RSS: every Rx queue reads the file on its own and keeps the frames that a
//! [`Steer`] — normally the RSS [`SteeringEngine`](wirespeed_core::rss::SteeringEngine), so the
//! same key, symmetric mode and RETA as a NIC and the software dispatcher — assigns to its
//! index. Nothing is shared between the queues; each one parses every frame's headers but copies
//! only its own frames (Ethernet captures; other link types are normalised first). Frames the
//! steering drops, or sends to a queue the port does not have, are counted once (by queue 0) as
//! [`DropReason::SteeringDrop`].
//!
//! **Output.** [`PcapOutput`] chooses what Tx does with packets:
//! - [`PcapOutput::PerQueue`]: one writer per Tx queue, files named by [`queue_file`]
//!   (`out.pcap` → `out-q0.pcap`, `out-q1.pcap`, ...). Nothing is shared between shards, the
//!   dataplane way; the order within each file is the order its shard sent.
//! - [`PcapOutput::Shared`]: every Tx queue appends to one file through a mutex taken once per
//!   burst; bursts of different shards interleave in the file.
//! - [`PcapOutput::Discard`]: Tx frees the buffers (like `/dev/null`).
//!
//! Rx copies each frame into a pool buffer, normalised to Ethernet ([`crate::Frame::to_ethernet`])
//! with [`PacketMeta::received`] metadata. Frames it cannot take are counted and handed to the
//! pipeline by [`RxQueue::take_drops`]: pool exhausted → [`DropReason::PoolExhausted`], larger
//! than a buffer → [`DropReason::TooLarge`], link header without an EtherType or from an
//! unsupported pcapng interface → [`DropReason::Unsupported`], cut-short frame or file →
//! [`DropReason::Truncated`]. A read error that ends a file (truncation, corruption, I/O) ends
//! that queue and is kept in the port's [`PcapStatus`]; so are Tx write errors.
//!
//! Tx timestamps come from [`TxTimestamp`] (wall clock by default): packet metadata has no room
//! for the capture time of the input.
//!
//! Neither Rx nor Tx allocates per packet: frames go through the reader's reused buffer into
//! pool buffers, and out through the writer's fixed buffer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use wirespeed_core::rss::Steer;
use wirespeed_core::{
    Batch, BufferPool, DropReason, PacketBuf, PacketMeta, PoolBuf, Port, PortError, PortInfo, RxQueue,
    TxQueue,
};

use crate::error::PcapError;
use crate::link::NormalizeError;
use crate::reader::CaptureReader;
use crate::writer::{PcapWriter, WriterOptions};

/// Where a [`PcapPort`]'s transmitted packets go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PcapOutput {
    /// Freed without being written.
    Discard,
    /// One file per Tx queue, named by [`queue_file`] from this base path.
    PerQueue(PathBuf),
    /// One file shared by every Tx queue.
    Shared(PathBuf),
}

/// Timestamps written for transmitted packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TxTimestamp {
    /// The wall clock when the burst was written (one reading per burst).
    #[default]
    WallClock,
    /// Always this value (nanoseconds since the Unix epoch): reproducible output files.
    Constant(u64),
}

/// The file Tx queue `queue` writes under [`PcapOutput::PerQueue`]: `-q<queue>` inserted before
/// the extension of `base` (`out.pcap` → `out-q0.pcap`; no extension → `.pcap` added).
pub fn queue_file(base: &Path, queue: u16) -> PathBuf {
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = base.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "pcap".into());
    base.with_file_name(format!("{stem}-q{queue}.{ext}"))
}

#[derive(Debug, Default)]
struct QueueStatus {
    rx_error: Mutex<Option<PcapError>>,
    tx_error: Mutex<Option<PcapError>>,
    rx_frames: AtomicU64,
    tx_frames: AtomicU64,
}

/// Errors and frame counts of a [`PcapPort`]'s queues, readable while the queues run on their
/// shards. `Clone` (a shared handle).
#[derive(Clone, Debug)]
pub struct PcapStatus {
    queues: Arc<[QueueStatus]>,
}

impl PcapStatus {
    fn new(queues: u16) -> Self {
        Self { queues: (0..queues).map(|_| QueueStatus::default()).collect() }
    }

    fn queue(&self, q: u16) -> Option<&QueueStatus> {
        self.queues.get(q as usize)
    }

    /// Takes the error that ended Rx queue `queue`'s input early, if any.
    pub fn take_rx_error(&self, queue: u16) -> Option<PcapError> {
        self.queue(queue)?.rx_error.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Takes the first write error of Tx queue `queue`, if any.
    pub fn take_tx_error(&self, queue: u16) -> Option<PcapError> {
        self.queue(queue)?.tx_error.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Frames Rx queue `queue` has handed to its pipeline.
    pub fn rx_frames(&self, queue: u16) -> u64 {
        self.queue(queue).map_or(0, |s| s.rx_frames.load(Ordering::Relaxed))
    }

    /// Frames Tx queue `queue` has written (or discarded, with [`PcapOutput::Discard`]).
    pub fn tx_frames(&self, queue: u16) -> u64 {
        self.queue(queue).map_or(0, |s| s.tx_frames.load(Ordering::Relaxed))
    }

    fn set_rx_error(&self, queue: u16, e: PcapError) {
        if let Some(s) = self.queue(queue) {
            let mut slot = s.rx_error.lock().unwrap_or_else(PoisonError::into_inner);
            slot.get_or_insert(e);
        }
    }

    fn set_tx_error(&self, queue: u16, e: PcapError) {
        if let Some(s) = self.queue(queue) {
            let mut slot = s.tx_error.lock().unwrap_or_else(PoisonError::into_inner);
            slot.get_or_insert(e);
        }
    }
}

enum Input {
    Path(PathBuf),
    Reader(CaptureReader),
}

/// Builder of a [`PcapPort`]; see [`PcapPort::builder`].
pub struct PcapPortBuilder {
    pool: BufferPool,
    name: Option<String>,
    port_id: u16,
    inputs: Vec<Input>,
    output: PcapOutput,
    queues: Option<u16>,
    mac: Option<[u8; 6]>,
    writer: WriterOptions,
    tx_timestamp: TxTimestamp,
    spread: Option<(PathBuf, Arc<dyn Steer>)>,
}

impl PcapPortBuilder {
    /// Port name in [`PortInfo`] (default: the first input's path, else `pcap<port_id>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Port index stamped into [`PacketMeta::rx_port`] (default 0).
    pub fn port_id(mut self, port_id: u16) -> Self {
        self.port_id = port_id;
        self
    }

    /// Adds an input file: it becomes the Rx of the next queue.
    pub fn input(mut self, path: impl Into<PathBuf>) -> Self {
        self.inputs.push(Input::Path(path.into()));
        self
    }

    /// Adds an already opened capture as the Rx of the next queue.
    pub fn input_reader(mut self, reader: CaptureReader) -> Self {
        self.inputs.push(Input::Reader(reader));
        self
    }

    /// Spreads one input over every queue instead of one input per queue: queue `q` replays the
    /// frames of `path` whose Ethernet form `steer` assigns to queue `q` — pass the
    /// [`SteeringEngine`](wirespeed_core::rss::SteeringEngine) (or an `Arc` of it) to get the
    /// NIC's and the dispatcher's choice, or any `Fn(&[u8]) -> u16`. Set the queue count with
    /// [`PcapPortBuilder::queues`]; cannot be combined with [`PcapPortBuilder::input`].
    ///
    /// ```
    /// use wirespeed_core::rss::{RssConfig, SteeringEngine, SymmetricMode};
    /// # let input = std::env::temp_dir().join(format!("spread-doc-{}.pcap", std::process::id()));
    /// # wirespeed_pcap::PcapWriter::create(&input)?.flush()?;
    /// let engine = SteeringEngine::rss_only(&RssConfig { mode: SymmetricMode::Sort, ..RssConfig::default() }, 2)?;
    /// let pool = wirespeed_core::BufferPool::new(wirespeed_core::PoolConfig::default())?;
    /// let port = wirespeed_pcap::PcapPort::builder(pool).spread_input(&input, engine).queues(2).build()?;
    /// # std::fs::remove_file(&input)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spread_input(mut self, path: impl Into<PathBuf>, steer: impl Steer + 'static) -> Self {
        self.spread = Some((path.into(), Arc::new(steer)));
        self
    }

    /// Where Tx writes (default [`PcapOutput::Discard`]).
    pub fn output(mut self, output: PcapOutput) -> Self {
        self.output = output;
        self
    }

    /// Number of queue pairs (default: the number of inputs, at least 1). Must not be below the
    /// number of inputs. A queue beyond the inputs has an Rx that is at its end from the start
    /// and a Tx like any other: the output of a shard that receives from a software dispatcher
    /// (`wirespeed_core::rss::DispatchRx`) rather than from the port.
    pub fn queues(mut self, queues: u16) -> Self {
        self.queues = Some(queues);
        self
    }

    /// MAC address reported in [`PortInfo`] (default `02:00:00:00:ca:<port_id>`).
    pub fn mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = Some(mac);
        self
    }

    /// Options of the output files (link type must stay Ethernet: Rx normalises to it).
    pub fn writer_options(mut self, opts: WriterOptions) -> Self {
        self.writer = opts;
        self
    }

    /// Timestamps written by Tx (default [`TxTimestamp::WallClock`]).
    pub fn tx_timestamp(mut self, ts: TxTimestamp) -> Self {
        self.tx_timestamp = ts;
        self
    }

    /// Opens every input and creates every output file.
    pub fn build(self) -> Result<PcapPort, PcapError> {
        let queues = self.queues.unwrap_or(self.inputs.len().max(1) as u16);
        if queues == 0 {
            return Err(PcapError::InvalidConfig {
                field: "queues",
                why: "a port needs at least one queue".into(),
            });
        }
        if (queues as usize) < self.inputs.len() {
            return Err(PcapError::InvalidConfig {
                field: "queues",
                why: format!("{queues} queues for {} input files (one file per queue)", self.inputs.len()),
            });
        }
        if self.writer.link != crate::LinkType::Ethernet {
            return Err(PcapError::InvalidConfig {
                field: "writer_options.link",
                why: format!("Tx writes Ethernet frames, not {}", self.writer.link),
            });
        }
        if self.spread.is_some() && !self.inputs.is_empty() {
            return Err(PcapError::InvalidConfig {
                field: "spread_input",
                why: "one input spread over the queues excludes per-queue inputs".into(),
            });
        }
        let name = self.name.clone().unwrap_or_else(|| match (self.inputs.first(), &self.spread) {
            (Some(Input::Path(p)), _) | (None, Some((p, _))) => p.display().to_string(),
            (Some(Input::Reader(r)), _) => r.name().to_string(),
            (None, None) => format!("pcap{}", self.port_id),
        });
        check_not_overwriting_inputs(
            &self.inputs,
            self.spread.as_ref().map(|(p, _)| p),
            &self.output,
            queues,
        )?;
        let mut rx: Vec<Option<CaptureReader>> = Vec::with_capacity(queues as usize);
        if let Some((path, _)) = &self.spread {
            for _ in 0..queues {
                rx.push(Some(CaptureReader::open(path)?));
            }
        }
        for input in self.inputs {
            rx.push(Some(match input {
                Input::Path(p) => CaptureReader::open(p)?,
                Input::Reader(r) => r,
            }));
        }
        rx.resize_with(queues as usize, || None);
        let tx: Vec<Sink> = match &self.output {
            PcapOutput::Discard => (0..queues).map(|_| Sink::Discard).collect(),
            PcapOutput::PerQueue(base) => (0..queues)
                .map(|q| PcapWriter::create_with(queue_file(base, q), self.writer).map(Sink::Own))
                .collect::<Result<_, _>>()?,
            PcapOutput::Shared(path) => {
                let w = Arc::new(Mutex::new(PcapWriter::create_with(path, self.writer)?));
                (0..queues).map(|_| Sink::Shared(w.clone())).collect()
            }
        };
        Ok(PcapPort {
            name,
            port_id: self.port_id,
            pool: self.pool,
            mac: self.mac.unwrap_or([0x02, 0, 0, 0, 0xca, self.port_id as u8]),
            queues: rx.into_iter().zip(tx).map(Some).collect(),
            status: PcapStatus::new(queues),
            tx_timestamp: self.tx_timestamp,
            steer: self.spread.map(|(_, steer)| steer),
        })
    }
}

/// Refuses an output file that is one of the inputs: creating it would truncate the input.
fn check_not_overwriting_inputs(
    inputs: &[Input],
    spread: Option<&PathBuf>,
    output: &PcapOutput,
    queues: u16,
) -> Result<(), PcapError> {
    let outputs: Vec<PathBuf> = match output {
        PcapOutput::Discard => return Ok(()),
        PcapOutput::PerQueue(base) => (0..queues).map(|q| queue_file(base, q)).collect(),
        PcapOutput::Shared(path) => vec![path.clone()],
    };
    let paths = inputs.iter().filter_map(|i| match i {
        Input::Path(p) => Some(p),
        Input::Reader(_) => None,
    });
    for input in paths.chain(spread) {
        let Ok(input) = std::fs::canonicalize(input) else { continue };
        if let Some(out) = outputs.iter().find(|o| std::fs::canonicalize(o).is_ok_and(|o| o == input)) {
            return Err(PcapError::InvalidConfig {
                field: "output",
                why: format!("{} is also an input; writing it would destroy the input", out.display()),
            });
        }
    }
    Ok(())
}

/// A port backed by capture files. See the [module documentation](self) for queues and output.
///
/// Run a queue until [`Poll::Finished`](wirespeed_core::Poll::Finished) (the runtime does):
/// that is when the file has ended *and* every drop count has reached the shard counters.
///
/// ```no_run
/// use wirespeed_core::{BufferPool, Pipeline, Poll, PoolConfig, Port, ShardCtx, Worker};
/// use wirespeed_pcap::{PcapOutput, PcapPort};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = BufferPool::new(PoolConfig::default())?;
/// let mut port = PcapPort::new(pool, ["in.pcapng"], PcapOutput::Shared("out.pcap".into()))?;
/// let status = port.status();
/// let (rx, tx) = port.queue_pair(0)?;
/// let mut pipeline = Pipeline::new(rx, tx, ());
/// let mut cx = ShardCtx::new(0);
/// while pipeline.poll(&mut cx) != Poll::Finished {}
/// pipeline.drain(&mut cx); // flushes the output file
/// if let Some(e) = status.take_rx_error(0) {
///     eprintln!("input ended early: {e}");
/// }
/// # Ok(()) }
/// ```
pub struct PcapPort {
    name: String,
    port_id: u16,
    pool: BufferPool,
    mac: [u8; 6],
    queues: Vec<Option<(Option<CaptureReader>, Sink)>>,
    status: PcapStatus,
    tx_timestamp: TxTimestamp,
    steer: Option<Arc<dyn Steer>>,
}

impl std::fmt::Debug for PcapPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapPort").field("name", &self.name).field("queues", &self.queues.len()).finish()
    }
}

impl PcapPort {
    /// A builder drawing Rx buffers from `pool`.
    pub fn builder(pool: BufferPool) -> PcapPortBuilder {
        PcapPortBuilder {
            pool,
            name: None,
            port_id: 0,
            inputs: Vec::new(),
            output: PcapOutput::Discard,
            queues: None,
            mac: None,
            writer: WriterOptions::default(),
            tx_timestamp: TxTimestamp::WallClock,
            spread: None,
        }
    }

    /// A port with one queue per input file, writing to `output`.
    pub fn new<P: Into<PathBuf>>(
        pool: BufferPool,
        inputs: impl IntoIterator<Item = P>,
        output: PcapOutput,
    ) -> Result<PcapPort, PcapError> {
        inputs.into_iter().fold(PcapPort::builder(pool), |b, p| b.input(p)).output(output).build()
    }

    /// Handle to the queues' errors and frame counts.
    pub fn status(&self) -> PcapStatus {
        self.status.clone()
    }
}

impl Port for PcapPort {
    type Rx = PcapRx;
    type Tx = PcapTx;
    type Buf = PoolBuf;

    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.name.clone(),
            queues: self.queues.len() as u16,
            mac: self.mac,
            max_frame: self.pool.data_room(),
        }
    }

    fn queue_pair(&mut self, queue: u16) -> Result<(PcapRx, PcapTx), PortError> {
        let queues = self.queues.len() as u16;
        let slot = self.queues.get_mut(queue as usize).ok_or_else(|| PortError::NoSuchQueue {
            port: self.name.clone(),
            queue,
            queues,
        })?;
        let (reader, sink) =
            slot.take().ok_or_else(|| PortError::QueueTaken { port: self.name.clone(), queue })?;
        let rx = PcapRx {
            finished: reader.is_none(),
            reader,
            pool: self.pool,
            port_id: self.port_id,
            queue,
            drops: [0; DROP_KINDS.len()],
            status: self.status.clone(),
            steer: self.steer.clone().map(|s| (s, queues)),
        };
        let tx = PcapTx {
            sink,
            pool: self.pool,
            queue,
            failed: false,
            status: self.status.clone(),
            timestamp: self.tx_timestamp,
        };
        Ok((rx, tx))
    }
}

/// Drop reasons an Rx queue counts, in the order they are reported.
const DROP_KINDS: [DropReason; 5] = [
    DropReason::PoolExhausted,
    DropReason::TooLarge,
    DropReason::Unsupported,
    DropReason::Truncated,
    DropReason::SteeringDrop,
];
const POOL_EXHAUSTED: usize = 0;
const TOO_LARGE: usize = 1;
const UNSUPPORTED: usize = 2;
const TRUNCATED: usize = 3;
const STEERING_DROP: usize = 4;

/// With a spread input: whether `queue` keeps the Ethernet `frame`. A frame the steering drops or
/// sends to a queue the port lacks is nobody's: queue 0 counts it.
#[inline]
fn mine(steer: &Option<(Arc<dyn Steer>, u16)>, queue: u16, frame: &[u8], drops: &mut [u64; 5]) -> bool {
    let Some((steer, queues)) = steer else { return true };
    match steer.queue(frame) {
        Some(q) if q < *queues => q == queue,
        _ => {
            if queue == 0 {
                drops[STEERING_DROP] += 1;
            }
            false
        }
    }
}

/// Rx queue of a [`PcapPort`]: replays one capture file.
pub struct PcapRx {
    reader: Option<CaptureReader>,
    pool: BufferPool,
    port_id: u16,
    queue: u16,
    finished: bool,
    drops: [u64; DROP_KINDS.len()],
    status: PcapStatus,
    /// Spread input: the steering and the port's queue count.
    steer: Option<(Arc<dyn Steer>, u16)>,
}

impl std::fmt::Debug for PcapRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapRx").field("queue", &self.queue).field("finished", &self.finished).finish()
    }
}

impl RxQueue for PcapRx {
    type Buf = PoolBuf;

    fn rx_burst(&mut self, out: &mut Batch<PoolBuf>) -> usize {
        let Some(reader) = self.reader.as_mut() else { return 0 };
        let mut n = 0;
        while !self.finished && !out.is_full() {
            let frame = match reader.next_frame() {
                None => {
                    self.finished = true;
                    break;
                }
                Some(Ok(frame)) => {
                    if frame.link == crate::LinkType::Ethernet
                        && !mine(&self.steer, self.queue, frame.data, &mut self.drops)
                    {
                        continue; // another queue's frame
                    }
                    frame
                }
                Some(Err(e)) => {
                    // With a spread input every queue meets the same bad records: queue 0
                    // counts them.
                    let lost = match e {
                        PcapError::UnsupportedLinkType { .. } => Some(UNSUPPORTED),
                        PcapError::Truncated { .. } => Some(TRUNCATED),
                        PcapError::RecordTooLarge { .. } => Some(TOO_LARGE),
                        _ => None,
                    };
                    if let Some(kind) = lost
                        && (self.steer.is_none() || self.queue == 0)
                    {
                        self.drops[kind] += 1;
                    }
                    if !e.is_recoverable() {
                        self.finished = true;
                        self.status.set_rx_error(self.queue, e);
                    }
                    continue;
                }
            };
            let len = match frame.ethernet_len() {
                Ok(len) => len,
                Err(NormalizeError::Truncated { .. }) => {
                    self.drops[TRUNCATED] += 1;
                    continue;
                }
                Err(_) => {
                    self.drops[UNSUPPORTED] += 1;
                    continue;
                }
            };
            if len > self.pool.data_room() {
                self.drops[TOO_LARGE] += 1;
                continue;
            }
            let Some(mut buf) = self.pool.alloc() else {
                self.drops[POOL_EXHAUSTED] += 1;
                continue;
            };
            if buf.set_len(len).is_err() || frame.to_ethernet(buf.data_mut()).is_err() {
                // Cannot happen after the checks above; counted rather than assumed.
                self.drops[TOO_LARGE] += 1;
                continue;
            }
            if frame.link != crate::LinkType::Ethernet
                && !mine(&self.steer, self.queue, buf.data(), &mut self.drops)
            {
                continue; // another queue's frame (the buffer goes back to the pool)
            }
            *buf.meta_mut() = PacketMeta::received(self.port_id, self.queue);
            // Cannot fail: the loop stops when `out` is full.
            let _ = out.push(buf);
            n += 1;
        }
        if n > 0
            && let Some(s) = self.status.queue(self.queue)
        {
            s.rx_frames.fetch_add(n as u64, Ordering::Relaxed);
        }
        n
    }

    fn at_end(&self) -> bool {
        self.finished && self.drops.iter().all(|&d| d == 0)
    }

    fn take_drops(&mut self) -> Option<(DropReason, u64)> {
        let i = self.drops.iter().position(|&d| d != 0)?;
        Some((DROP_KINDS[i], std::mem::take(&mut self.drops[i])))
    }
}

enum Sink {
    Discard,
    Own(PcapWriter),
    Shared(Arc<Mutex<PcapWriter>>),
}

/// Tx queue of a [`PcapPort`]: writes packets to its output file and frees their buffers.
pub struct PcapTx {
    sink: Sink,
    pool: BufferPool,
    queue: u16,
    failed: bool,
    status: PcapStatus,
    timestamp: TxTimestamp,
}

impl std::fmt::Debug for PcapTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapTx").field("queue", &self.queue).field("failed", &self.failed).finish()
    }
}

/// Writes the packets of `batch` in order; on error, how many were written before it.
#[inline]
fn write_batch(w: &mut PcapWriter, batch: &Batch<PoolBuf>, ts: u64) -> Result<usize, (usize, PcapError)> {
    for (i, p) in batch.iter().enumerate() {
        w.write_frame(p.data(), ts).map_err(|e| (i, e))?;
    }
    Ok(batch.len())
}

impl PcapTx {
    fn now(&self) -> u64 {
        match self.timestamp {
            TxTimestamp::Constant(ts) => ts,
            TxTimestamp::WallClock => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        }
    }
}

impl TxQueue for PcapTx {
    type Buf = PoolBuf;

    fn tx_burst(&mut self, batch: &mut Batch<PoolBuf>) -> usize {
        if self.failed || batch.is_empty() {
            // After a write error the file is unusable: everything stays in the batch and the
            // pipeline counts it as a Tx drop.
            return 0;
        }
        let ts = self.now();
        let result = match &mut self.sink {
            Sink::Discard => Ok(batch.len()),
            Sink::Own(w) => write_batch(w, batch, ts),
            Sink::Shared(w) => write_batch(&mut w.lock().unwrap_or_else(PoisonError::into_inner), batch, ts),
        };
        let sent = match result {
            Ok(n) => n,
            Err((n, e)) => {
                self.failed = true;
                self.status.set_tx_error(self.queue, e);
                n
            }
        };
        self.pool.free_bulk(batch.drain(..sent));
        if let Some(s) = self.status.queue(self.queue) {
            s.tx_frames.fetch_add(sent as u64, Ordering::Relaxed);
        }
        sent
    }

    fn flush(&mut self) {
        let result = match &mut self.sink {
            Sink::Discard => Ok(()),
            Sink::Own(w) => w.flush(),
            Sink::Shared(w) => w.lock().unwrap_or_else(PoisonError::into_inner).flush(),
        };
        if let Err(e) = result {
            self.failed = true;
            self.status.set_tx_error(self.queue, e);
        }
    }
}

impl Drop for PcapTx {
    fn drop(&mut self) {
        // Buffered frames reach the file even when the owner forgot to flush; an error is kept.
        self.flush();
    }
}
