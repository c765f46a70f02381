//! [`AfXdpPort`]: the XDP program on an interface plus one AF_XDP socket per claimed queue,
//! exposed through the core [`Port`]/[`RxQueue`]/[`TxQueue`] traits.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use wirespeed_core::backend::{Port, PortError, PortInfo, QueueClaims, RxQueue, ShardOwned, TxQueue};
use wirespeed_core::runtime::IdlePolicy;
use wirespeed_core::{BATCH_SIZE, Batch, BufWindow, DropReason, PacketBuf, PacketMeta};

use wirespeed_core::rss::{Applied, Reta, RssConfig, RssControl, RssError, SteeringPlan, SymmetricMode};

use crate::bpf;
use crate::btf;
use crate::config::{AfXdpPortConfig, XdpMode};
use crate::error::AfXdpError;
use crate::ethtool::{self, HwItem, HwReport, Placed};
use crate::program;
use crate::ring::{Ring, RingLevel};
use crate::sys;
use crate::umem::{Umem, XdpBuf};

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver's receive path (`XDP_FLAGS_DRV_MODE`).
    Driver,
    /// Generic XDP on the skb (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

/// How one queue's socket moves packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// The NIC DMAs straight into UMEM (`XDP_ZEROCOPY`).
    ZeroCopy,
    /// The kernel copies between its buffers and UMEM (`XDP_COPY`).
    Copy,
}

/// What the port got from the kernel, and why it settled for less when it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachReport {
    /// Interface.
    pub interface: String,
    /// Where the program runs.
    pub attach: AttachMode,
    /// Why driver mode was not used (when `attach` is `Generic`).
    pub driver_mode_refused: Option<String>,
    /// Whether the driver's RSS hash reaches each packet's metadata (`rx_hash = true`).
    pub rx_hash: RxHashState,
    /// Per claimed queue: how its socket is bound and, for copy mode under `auto`, why
    /// zero-copy was refused.
    pub queues: Vec<(u16, BindMode, Option<String>)>,
}

/// Whether the XDP program hands the driver's RSS hash to the sockets
/// (`bpf_xdp_metadata_rx_hash` into XDP metadata, then [`PacketMeta::rss_hash`] with the
/// `HW_RSS` flag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RxHashState {
    /// Not asked for (`rx_hash = false`).
    Off,
    /// The device-bound program with the RX-hash prologue runs in driver mode.
    On,
    /// Asked for and not in effect, with the reason (no BTF or kfunc, generic XDP, refused).
    Unavailable(String),
}

impl std::fmt::Display for AttachReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: XDP in {:?} mode", self.interface, self.attach)?;
        if let Some(r) = &self.driver_mode_refused {
            write!(f, " (driver mode refused: {r})")?;
        }
        match &self.rx_hash {
            RxHashState::Off => {}
            RxHashState::On => write!(f, "; RX hash from the driver")?,
            RxHashState::Unavailable(why) => write!(f, "; no RX hash ({why})")?,
        }
        for (q, m, why) in &self.queues {
            write!(f, "; queue {q}: {m:?}")?;
            if let Some(w) = why {
                write!(f, " (zero-copy refused: {w})")?;
            }
        }
        Ok(())
    }
}

/// The program attached to the interface. Detaches when the last holder (the port or one of
/// its queues) drops: closing the `bpf_link` fd is the detach, so it also happens when a shard
/// panics (its queues drop while unwinding) or the process dies.
struct Attachment {
    _link: OwnedFd,
    map: OwnedFd,
    _prog: OwnedFd,
}

/// An AF_XDP port: the XDP redirect program on one interface and a socket per claimed queue.
pub struct AfXdpPort {
    cfg: AfXdpPortConfig,
    ifindex: u32,
    mac: [u8; 6],
    mtu: usize,
    /// Frames per jumbo slot when the MTU needs multi-buffer (`None`: one frame holds a frame).
    jumbo_span: Option<u32>,
    queues: u16,
    claims: QueueClaims,
    xdp: Option<Arc<Attachment>>,
    report: AttachReport,
}

impl std::fmt::Debug for AfXdpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpPort").field("report", &self.report).finish()
    }
}

/// Receive queues of `interface` in the calling thread's network namespace: the driver's
/// channel count (`ETHTOOL_GCHANNELS`, combined + receive-only), else the `rx-N` queues in
/// sysfs (which shows the namespace it was mounted in).
pub fn rx_queue_count(interface: &str) -> std::io::Result<u16> {
    if let Ok(ch) = ethtool::channels(interface)
        && ch.rx_queues() > 0
    {
        return Ok(ch.rx_queues().min(u32::from(u16::MAX)) as u16);
    }
    let n = std::fs::read_dir(format!("/sys/class/net/{interface}/queues"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Ok(n.max(1) as u16)
}

/// True when this kernel can open AF_XDP sockets (`CONFIG_XDP_SOCKETS`); the error says why
/// not (not compiled in, not permitted).
pub fn probe() -> Result<(), AfXdpError> {
    sys::xsk_socket().map(drop).map_err(|e| AfXdpError::Unsupported(format!("socket(AF_XDP): {e}")))
}

impl AfXdpPort {
    /// Loads the XDP program, attaches it to `cfg.interface` as `cfg.mode` allows, and prepares
    /// `cfg.queues` queues (sockets are opened when a shard claims its queue).
    pub fn open(cfg: AfXdpPortConfig) -> Result<Self, AfXdpError> {
        cfg.validate()?;
        probe()?;
        let name = cfg.interface.clone();
        let ifindex = sys::if_index(&name)
            .map_err(|source| AfXdpError::NoInterface { interface: name.clone(), source })?;
        let sys_err = |op: &'static str| {
            let name = name.clone();
            move |source| AfXdpError::Syscall { interface: name, queue: None, op, source }
        };
        // ioctls, not sysfs: they answer for the calling thread's network namespace.
        let mac = sys::if_hwaddr(&name).map_err(sys_err("SIOCGIFHWADDR"))?;
        let mtu = sys::if_mtu(&name).map_err(sys_err("SIOCGIFMTU"))? as usize;
        // A frame holds the headroom and the whole Ethernet frame (14 bytes of header on top of
        // the MTU; a VLAN tag would take 4 more, which the kernel then drops as too large).
        // With the RX hash, a frame carries an 8-byte prefix to the socket.
        let prefix = if cfg.rx_hash && cfg.mode != XdpMode::Skb { program::META_LEN } else { 0 };
        let max_mtu = |frame: u32| (frame - cfg.rx_headroom()) as usize - 14 - prefix;
        let jumbo_span = if mtu > max_mtu(cfg.frame_size) && cfg.multi_buffer {
            // A jumbo slot holds the headroom, the frame with a VLAN tag, and room for what
            // encapsulation appends (ESP trailer and ICV).
            let bytes = cfg.rx_headroom() as usize + mtu + 14 + 4 + prefix + JUMBO_TAILROOM;
            Some(bytes.div_ceil(cfg.frame_size as usize) as u32)
        } else {
            None
        };
        if mtu > max_mtu(cfg.frame_size) && jumbo_span.is_none_or(|s| s > MAX_CHAIN) {
            return Err(AfXdpError::MtuTooLarge {
                interface: name,
                mtu,
                frame_size: cfg.frame_size,
                headroom: cfg.rx_headroom(),
                max_mtu: max_mtu(cfg.frame_size),
                max_mtu_4k: max_mtu(4096),
                why: if cfg.multi_buffer {
                    "a jumbo buffer would span more than 16 frames, the longest chain the kernel sends"
                } else {
                    "multi_buffer = false (set it to true for AF_XDP multi-buffer, XDP_USE_SG, kernel 6.6+)"
                },
            });
        }
        let hw_queues = rx_queue_count(&name).map_err(sys_err("count queues"))?;
        let queues = match cfg.queues {
            Some(q) if q > hw_queues => {
                return Err(AfXdpError::BadConfig {
                    field: "queues",
                    value: q.to_string(),
                    why: "more queues than the interface has receive queues",
                });
            }
            Some(q) => q,
            None => hw_queues,
        };
        let map = bpf::create_xskmap(u32::from(hw_queues)).map_err(sys_err("create XSKMAP"))?;
        let insns = program::assemble(&cfg.kernel_pass, map.as_raw_fd(), None);
        let prog =
            bpf::load_xdp(&insns, "ws_xsk_redirect", jumbo_span.is_some(), None).map_err(|source| {
                if jumbo_span.is_some() && source.raw_os_error() == Some(libc::EINVAL) {
                    AfXdpError::MultiBufferUnsupported {
                        interface: name.clone(),
                        mtu,
                        step: "loading the XDP program with BPF_F_XDP_HAS_FRAGS",
                        hint: "kernels before 5.18 have no multi-buffer XDP",
                        max_mtu: max_mtu(cfg.frame_size),
                        source,
                    }
                } else {
                    AfXdpError::Syscall {
                        interface: name.clone(),
                        queue: None,
                        op: "load XDP program",
                        source,
                    }
                }
            })?;
        // The RX-hash variant: bound to the device (the kfunc needs it), so driver mode only.
        let mut rx_hash = RxHashState::Off;
        let mut hash_prog = None;
        if cfg.rx_hash {
            rx_hash = RxHashState::Unavailable("generic (SKB) XDP has no driver metadata".into());
            if cfg.mode != XdpMode::Skb {
                match btf::vmlinux_func_id("bpf_xdp_metadata_rx_hash") {
                    Err(e) => {
                        rx_hash = RxHashState::Unavailable(format!("kfunc bpf_xdp_metadata_rx_hash: {e}"))
                    }
                    Ok(id) => {
                        let insns = program::assemble(&cfg.kernel_pass, map.as_raw_fd(), Some(id));
                        match bpf::load_xdp(&insns, "ws_xsk_rxhash", jumbo_span.is_some(), Some(ifindex)) {
                            Ok(p) => hash_prog = Some(p),
                            Err(e) => {
                                rx_hash =
                                    RxHashState::Unavailable(format!("load device-bound XDP program: {e}"))
                            }
                        }
                    }
                }
            }
        }
        let hash_loaded = hash_prog.is_some();
        let (link, attach, refused, prog) = attach(prog, hash_prog, ifindex, cfg.mode, &name)?;
        if hash_loaded {
            rx_hash = match (&refused, attach) {
                (_, AttachMode::Driver) => RxHashState::On,
                (Some(why), _) => RxHashState::Unavailable(format!("driver mode refused: {why}")),
                (None, _) => RxHashState::Unavailable("generic (SKB) XDP has no driver metadata".into()),
            };
        }
        let report = AttachReport {
            interface: name.clone(),
            attach,
            driver_mode_refused: refused,
            rx_hash,
            queues: Vec::new(),
        };
        let claims = QueueClaims::new(name, queues);
        Ok(Self {
            cfg,
            ifindex,
            mac,
            mtu,
            jumbo_span,
            queues,
            claims,
            xdp: Some(Arc::new(Attachment { _link: link, map, _prog: prog })),
            report,
        })
    }

    /// What was attached and how each claimed queue is bound.
    pub fn report(&self) -> &AttachReport {
        &self.report
    }

    /// Channel counts from the driver (`ETHTOOL_GCHANNELS`).
    pub fn channels(&self) -> std::io::Result<ethtool::Channels> {
        ethtool::channels(&self.cfg.interface)
    }

    /// Programs the port's RSS configuration into the NIC as far as the driver allows: 4-tuple
    /// hash fields, the Toeplitz key, the indirection table and symmetric hashing. Symmetric
    /// modes the NIC has no form for (`sort`, `or-xor`) and every refused item are reported as
    /// left to the software dispatcher.
    pub fn apply_rss(&mut self, rss: &RssConfig, reta: &Reta) -> HwReport {
        let mut report = HwReport::default();
        let name = &self.cfg.interface;
        let symmetric = match rss.mode {
            SymmetricMode::Xor => true,
            SymmetricMode::None | SymmetricMode::Key => false,
            other => {
                report.items.push(HwItem {
                    item: format!("symmetric mode {other:?}"),
                    placed: Placed::Software("NICs hash symmetrically only by xor".into()),
                });
                false
            }
        };
        ethtool::apply_rss(name, &rss.key, reta, symmetric, &mut report);
        report
    }

    /// Compiles the plan's rules to ntuple filters where the driver takes them; reports each
    /// rule as hardware or software (the software dispatcher runs the rest, and the whole plan
    /// when the driver has no ntuple support).
    pub fn apply_plan(&mut self, plan: &SteeringPlan) -> HwReport {
        let mut report = HwReport::default();
        ethtool::apply_plan(&self.cfg.interface, plan, &mut report);
        report
    }

    /// Where the shards owning this port's queues should run (queue `q` → shard `q` → the
    /// core at `shard_cores[q]`, on the NIC's NUMA node), pointing each queue's interrupt at that
    /// core when `set_irqs`; every mismatch is in the report (see [`crate::placement`]).
    pub fn placement(&self, set_irqs: bool) -> crate::placement::PlacementReport {
        crate::placement::place(&self.cfg.interface, self.queues, set_irqs)
    }

    /// The configuration the port was opened with.
    pub fn config(&self) -> &AfXdpPortConfig {
        &self.cfg
    }

    /// Opens, binds and registers the socket of `queue`.
    fn open_queue(&mut self, queue: u16) -> Result<(XdpRx, XdpTx), AfXdpError> {
        let Some(xdp) = self.xdp.clone() else {
            unreachable!("the attachment is only taken in Drop");
        };
        let cfg = &self.cfg;
        let name = cfg.interface.clone();
        let err = |op: &'static str| {
            let name = name.clone();
            move |source| AfXdpError::Syscall { interface: name, queue: Some(queue), op, source }
        };
        let fd = sys::xsk_socket().map_err(err("socket(AF_XDP)"))?;
        let raw = fd.as_raw_fd();
        let (jumbo, span) = match self.jumbo_span {
            Some(span) => (cfg.jumbo_buffers, span),
            None => (0, 0),
        };
        let umem = Umem::new(cfg.frames, cfg.frame_size, jumbo, span).map_err(err("map UMEM"))?;
        umem.register(raw, cfg.headroom).map_err(err("XDP_UMEM_REG"))?;
        sys::setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_FILL_RING, &cfg.fill_ring)
            .map_err(err("XDP_UMEM_FILL_RING"))?;
        sys::setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_COMPLETION_RING, &cfg.completion_ring)
            .map_err(err("XDP_UMEM_COMPLETION_RING"))?;
        sys::setsockopt(raw, libc::SOL_XDP, libc::XDP_RX_RING, &cfg.rx_ring).map_err(err("XDP_RX_RING"))?;
        sys::setsockopt(raw, libc::SOL_XDP, libc::XDP_TX_RING, &cfg.tx_ring).map_err(err("XDP_TX_RING"))?;
        // Copy mode sends at most this many descriptors per kick (32 unless the kernel, 6.17+,
        // lets us raise it): a whole ring's worth means one kick drains any backlog the device
        // accepts. Older kernels refuse the option (ENOPROTOOPT): they keep 32.
        let tx_budget = match sys::setsockopt(raw, libc::SOL_XDP, sys::XDP_MAX_TX_SKB_BUDGET, &cfg.tx_ring) {
            Ok(()) => cfg.tx_ring,
            Err(_) => sys::DEFAULT_TX_BUDGET,
        };
        let off = sys::mmap_offsets(raw).map_err(err("XDP_MMAP_OFFSETS"))?;
        let fill = Ring::<u64>::map(raw, &off.fr, cfg.fill_ring, libc::XDP_UMEM_PGOFF_FILL_RING, true)
            .map_err(err("mmap fill ring"))?;
        let comp =
            Ring::<u64>::map(raw, &off.cr, cfg.completion_ring, libc::XDP_UMEM_PGOFF_COMPLETION_RING, false)
                .map_err(err("mmap completion ring"))?;
        let rx =
            Ring::<libc::xdp_desc>::map(raw, &off.rx, cfg.rx_ring, libc::XDP_PGOFF_RX_RING as u64, false)
                .map_err(err("mmap rx ring"))?;
        let tx = Ring::<libc::xdp_desc>::map(raw, &off.tx, cfg.tx_ring, libc::XDP_PGOFF_TX_RING as u64, true)
            .map_err(err("mmap tx ring"))?;

        let wake = if cfg.need_wakeup { libc::XDP_USE_NEED_WAKEUP } else { 0 };
        let sg = if self.jumbo_span.is_some() { libc::XDP_USE_SG } else { 0 };
        let wake = wake | sg;
        let max_mtu = (cfg.frame_size - cfg.rx_headroom()) as usize - 14;
        let mtu = self.mtu;
        // A copy-mode bind refused with EINVAL while asking for XDP_USE_SG: a kernel before 6.6.
        let bind_err = |op: &'static str| {
            let name = name.clone();
            move |source: std::io::Error| {
                if sg != 0 && source.raw_os_error() == Some(libc::EINVAL) {
                    AfXdpError::MultiBufferUnsupported {
                        interface: name,
                        mtu,
                        step: "binding the socket with XDP_USE_SG",
                        hint: "kernels before 6.6 have no AF_XDP multi-buffer",
                        max_mtu,
                        source,
                    }
                } else {
                    AfXdpError::Syscall { interface: name, queue: Some(queue), op, source }
                }
            }
        };
        let (bind, why) = match (cfg.mode, self.report.attach) {
            (XdpMode::Skb, _) | (_, AttachMode::Generic) => {
                bind_retry(raw, self.ifindex, u32::from(queue), libc::XDP_COPY | wake)
                    .map_err(bind_err("bind (copy)"))?;
                let why =
                    (cfg.mode == XdpMode::Auto).then(|| "the program runs in generic (SKB) mode".to_string());
                (BindMode::Copy, why)
            }
            (mode, AttachMode::Driver) => {
                match bind_retry(raw, self.ifindex, u32::from(queue), libc::XDP_ZEROCOPY | wake) {
                    Ok(()) => (BindMode::ZeroCopy, None),
                    Err(e) if mode == XdpMode::Zerocopy => {
                        return Err(AfXdpError::ZeroCopyUnavailable {
                            interface: name,
                            queue,
                            reason: format!("bind with XDP_ZEROCOPY: {e}"),
                        });
                    }
                    Err(e) => {
                        bind_retry(raw, self.ifindex, u32::from(queue), libc::XDP_COPY | wake)
                            .map_err(bind_err("bind (copy)"))?;
                        let why =
                            (mode == XdpMode::Auto).then(|| format!("driver refused XDP_ZEROCOPY: {e}"));
                        (BindMode::Copy, why)
                    }
                }
            }
        };
        let sock = Arc::new(Socket { fd, xdp, queue, _umem: ClosesUmem(umem) });
        // Descriptors the largest frame takes: a jumbo frame empties the fill ring that many
        // times faster, so the fill target starts that many times higher.
        let room = (cfg.frame_size - cfg.rx_headroom()) as usize;
        let chain = if self.jumbo_span.is_some() { (self.mtu + 14 + 8).div_ceil(room) as u32 } else { 1 };
        let tx_level = (bind == BindMode::Copy).then(|| tx.level());
        let mut rxq = XdpRx {
            sock: sock.clone(),
            umem,
            fill_target: (initial_fill_target(cfg) * chain).min(cfg.fill_ring),
            fill_ring: cfg.fill_ring,
            fill,
            rx,
            tx_level,
            meta: PacketMeta::received(cfg.port_id, queue),
            rx_head: cfg.rx_headroom() as usize,
            rx_hash: self.report.rx_hash == RxHashState::On,
            hash_stats: RxHashStats::default(),
            multi_buffer: self.jumbo_span.is_some(),
            too_large: 0,
            jumbo_exhausted: 0,
            bad_descs: 0,
            in_kernel: 0,
            lost: false,
            kernel_dropped: 0,
            calls: 0,
            need_wakeup: cfg.need_wakeup,
            busy_poll: false,
            idle_policy: IdlePolicy::Spin,
            idle_error: None,
            _owned: ShardOwned::default(),
        };
        rxq.refill();
        bpf::xskmap_set(&sock.xdp.map, u32::from(queue), raw).map_err(err("insert socket into XSKMAP"))?;
        // Validated with the configuration (headroom at most half a frame); checked again here
        // because every buffer the Tx side makes trusts it.
        let tx_win = umem.window(cfg.rx_headroom() as usize, 0).ok_or_else(|| AfXdpError::BadConfig {
            field: "headroom",
            value: cfg.rx_headroom().to_string(),
            why: "leaves no room in a frame",
        })?;
        let txq = XdpTx {
            sock,
            umem,
            tx,
            comp,
            tx_win,
            jumbo_pending: vec![0; jumbo as usize],
            in_kernel: 0,
            lost: false,
            need_wakeup: cfg.need_wakeup,
            bind,
            tx_budget,
            tx_wait: std::time::Duration::from_micros(u64::from(cfg.tx_wait_us)),
            stalled: false,
            stats: TxStats::default(),
            _owned: ShardOwned::default(),
        };
        self.report.queues.push((queue, bind, why));
        Ok((rxq, txq))
    }
}

/// Binds, retrying for up to a second while the queue is busy: the kernel releases a closed
/// socket's hold on its queue in deferred work, so a queue reopened right after a close (a
/// restarted shard) can see `EBUSY` for a moment.
fn bind_retry(fd: RawFd, ifindex: u32, queue: u32, flags: u16) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match sys::xsk_bind(fd, ifindex, queue, flags) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// Attaches `prog` — or in driver mode `hash_prog` when given (device-bound, with the RX-hash
/// prologue) — as `mode` allows; returns the link, where it runs, why driver mode was refused,
/// and the program attached.
fn attach(
    prog: OwnedFd,
    hash_prog: Option<OwnedFd>,
    ifindex: u32,
    mode: XdpMode,
    name: &str,
) -> Result<(OwnedFd, AttachMode, Option<String>, OwnedFd), AfXdpError> {
    let generic =
        |refused: Option<String>, prog: OwnedFd| match bpf::link_xdp(&prog, ifindex, bpf::XDP_FLAGS_SKB_MODE)
        {
            Ok(l) => Ok((l, AttachMode::Generic, refused, prog)),
            Err(source) => Err(AfXdpError::Attach {
                interface: name.into(),
                tried: if mode == XdpMode::Skb { "generic" } else { "driver, then generic" }.into(),
                source,
            }),
        };
    if mode == XdpMode::Skb {
        return generic(None, prog);
    }
    let drv = hash_prog.as_ref().unwrap_or(&prog);
    match bpf::link_xdp(drv, ifindex, bpf::XDP_FLAGS_DRV_MODE) {
        Ok(l) => Ok((l, AttachMode::Driver, None, hash_prog.unwrap_or(prog))),
        Err(source) if mode == XdpMode::Zerocopy => {
            Err(AfXdpError::Attach { interface: name.into(), tried: "driver".into(), source })
        }
        Err(e) => generic(Some(e.to_string()), prog),
    }
}

impl Drop for AfXdpPort {
    fn drop(&mut self) {
        // Queues still running keep their own reference; the program detaches with the last.
        self.xdp = None;
    }
}

impl Port for AfXdpPort {
    type Rx = XdpRx;
    type Tx = XdpTx;
    type Buf = XdpBuf;

    fn info(&self) -> PortInfo {
        let buf = match self.jumbo_span {
            Some(span) => span * self.cfg.frame_size,
            None => self.cfg.frame_size,
        };
        let room = (buf - self.cfg.rx_headroom()) as usize;
        PortInfo {
            name: self.cfg.interface.clone(),
            queues: self.queues,
            mac: self.mac,
            max_frame: (self.mtu + 14).min(room),
        }
    }

    fn queue_pair(&mut self, queue: u16) -> Result<(XdpRx, XdpTx), PortError> {
        self.claims.claim(queue)?;
        self.open_queue(queue)
            .map_err(|e| PortError::Backend { port: self.cfg.interface.clone(), message: e.to_string() })
    }

    fn rss(&mut self) -> Option<&mut dyn RssControl> {
        Some(self)
    }
}

fn device_err(e: std::io::Error) -> RssError {
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        RssError::Device("unsupported by this driver".into())
    } else {
        RssError::Device(e.to_string())
    }
}

impl RssControl for AfXdpPort {
    fn set_key(&mut self, key: &[u8]) -> Result<(), RssError> {
        ethtool::set_key(&self.cfg.interface, key).map_err(device_err)
    }

    fn set_reta(&mut self, reta: &Reta) -> Result<(), RssError> {
        ethtool::set_reta(&self.cfg.interface, reta).map_err(device_err)
    }

    fn apply_steering(&mut self, plan: &SteeringPlan) -> Result<Applied, RssError> {
        let mut report = HwReport::default();
        let (in_hardware, in_software) = ethtool::apply_plan(&self.cfg.interface, plan, &mut report);
        Ok(Applied { in_hardware, in_software })
    }
}

/// One queue's socket, shared by its Rx and Tx halves (both on the owning shard).
struct Socket {
    fd: OwnedFd,
    xdp: Arc<Attachment>,
    queue: u16,
    /// Declared last, so it drops after `fd` is closed: then the UMEM may be unmapped.
    _umem: ClosesUmem,
}

/// Tells the UMEM its socket is closed (see `umem`'s module docs on when it is unmapped).
struct ClosesUmem(&'static Umem);

impl Drop for ClosesUmem {
    fn drop(&mut self) {
        self.0.socket_closed();
    }
}

impl Socket {
    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Closing the socket removes it from the XSKMAP too; clearing first means no frame is
        // redirected to a socket that is going away (they fall back to XDP_PASS).
        let _ = bpf::xskmap_clear(&self.xdp.map, u32::from(self.queue));
    }
}

/// Kernel statistics of one socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Frames the kernel dropped for this socket (no fill buffer, too large).
    pub rx_dropped: u64,
    /// Rx descriptors the kernel found invalid.
    pub rx_invalid_descs: u64,
    /// Tx descriptors the kernel found invalid.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the Rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was found empty.
    pub rx_fill_ring_empty: u64,
    /// Times the Tx ring was found empty when woken.
    pub tx_ring_empty: u64,
}

/// What the driver's RSS hash did on one queue (see [`XdpRx::rx_hash_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxHashStats {
    /// Packets that arrived with the driver's hash.
    pub hashed: u64,
    /// Packets whose hash the driver refused (`bpf_xdp_metadata_rx_hash` failed).
    pub refused: u64,
    /// The errno of the last refusal (`EOPNOTSUPP`: the driver has no hash; `ENODATA`: none for
    /// this packet).
    pub last_errno: u16,
    /// Packets without metadata from the program (it could not make room for it).
    pub missing: u64,
    /// The hash type (`xdp_rss_hash_type`) of the last hashed packet: `L3`/`L4` bits, IPv4/IPv6.
    pub last_type: u16,
}

/// Rx half of one queue: owns the fill and Rx rings.
pub struct XdpRx {
    sock: Arc<Socket>,
    umem: &'static Umem,
    /// Frames the fill and Rx rings may hold together: starts at an eighth of the UMEM (times
    /// the descriptors of the largest frame with multi-buffer, at most the fill ring) and
    /// doubles (up to the fill ring) each time the kernel nearly ran out of fill buffers, so a
    /// queue that only transmits does not park half its frames where nothing arrives.
    fill_target: u32,
    fill_ring: u32,
    fill: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    /// The Tx ring's backlog (copy mode): an empty poll kicks the kernel while descriptors wait
    /// there, so a burst the device pushed back goes out even when no more traffic arrives.
    tx_level: Option<RingLevel>,
    meta: PacketMeta,
    /// Where received packets start in a frame or jumbo slot.
    rx_head: usize,
    /// The program writes the driver's RSS hash into XDP metadata before each packet.
    rx_hash: bool,
    hash_stats: RxHashStats,
    /// Bound with `XDP_USE_SG`: a packet may arrive as a chain of descriptors.
    multi_buffer: bool,
    /// Chains longer than a jumbo slot (dropped as `too_large`).
    too_large: u64,
    /// Chains that found no free jumbo slot (dropped as `pool_exhausted`).
    jumbo_exhausted: u64,
    bad_descs: u64,
    /// Frames on the fill and Rx rings (submitted to fill, not yet read from Rx).
    in_kernel: u32,
    /// A descriptor named no frame of ours: the count above can no longer be trusted.
    lost: bool,
    kernel_dropped: u64,
    calls: u32,
    need_wakeup: bool,
    /// `IdlePolicy::PreferBusyPoll` is on: every Rx poll drives the device's NAPI.
    busy_poll: bool,
    idle_policy: IdlePolicy,
    idle_error: Option<String>,
    _owned: ShardOwned,
}

impl Drop for XdpRx {
    fn drop(&mut self) {
        self.umem.rx_closed((!self.lost).then_some(self.in_kernel));
    }
}

impl Drop for XdpTx {
    fn drop(&mut self) {
        self.umem.tx_closed((!self.lost).then_some(self.in_kernel));
    }
}

impl std::fmt::Debug for XdpRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpRx").field("queue", &self.sock.queue).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for XdpTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpTx")
            .field("queue", &self.sock.queue)
            .field("bind", &self.bind)
            .finish_non_exhaustive()
    }
}

impl XdpRx {
    /// Moves free frames to the fill ring, keeping at most `fill_target` with the kernel.
    #[inline]
    fn refill(&mut self) {
        if self.in_kernel >= self.fill_target {
            return;
        }
        // The kernel nearly ran dry since the last top-up: packets arrive faster than the
        // target covers, so let more frames wait for them.
        if self.fill_target < self.fill_ring
            && self.in_kernel > 0
            && self.fill.unconsumed() < self.fill_target / 4
        {
            self.fill_target = (self.fill_target * 2).min(self.fill_ring);
        }
        let want = self.fill.free(BATCH_SIZE as u32).min(self.fill_target - self.in_kernel);
        let mut n = 0;
        while n < want {
            let Some(f) = self.umem.take_frame() else { break };
            if !self.fill.write(n, self.umem.frame_addr(f)) {
                // Not below `free`: cannot happen (n < want), but never overwrite a slot.
                self.umem.put_frame(f);
                break;
            }
            n += 1;
        }
        if n > 0 {
            self.fill.submit(n);
            self.in_kernel += n;
        }
    }

    /// Queue index.
    pub fn queue(&self) -> u16 {
        self.sock.queue
    }

    /// The kernel's counters for this socket.
    pub fn socket_stats(&self) -> std::io::Result<SocketStats> {
        let s = sys_stats(self.sock.raw())?;
        Ok(s)
    }

    /// UMEM frames on the free list now (neither in the kernel nor held by a buffer).
    pub fn free_frames(&self) -> usize {
        self.umem.free_frames()
    }

    /// Jumbo buffers on their free list now (0 when the MTU needs no multi-buffer).
    pub fn free_jumbo_buffers(&self) -> usize {
        self.umem.free_jumbo()
    }

    /// True when the socket is bound with `XDP_USE_SG`: frames larger than one UMEM frame
    /// arrive as chains and are gathered into jumbo buffers.
    pub fn multi_buffer(&self) -> bool {
        self.multi_buffer
    }

    /// Frames the fill and Rx rings may hold now (grows under load, up to `fill_ring`).
    pub fn fill_target(&self) -> u32 {
        self.fill_target
    }

    /// The idle policy the queue was given, and why the kernel refused part of it (busy-poll
    /// socket options) if it did.
    pub fn idle_policy(&self) -> (IdlePolicy, Option<&str>) {
        (self.idle_policy, self.idle_error.as_deref())
    }

    /// Reads the RX-hash prefix the program put in front of `b`'s frame into its
    /// [`PacketMeta`] and strips it.
    #[inline]
    fn take_hash(&mut self, b: &mut XdpBuf) {
        let Some(m) = b.data().get(..program::META_LEN) else {
            self.hash_stats.missing += 1;
            return;
        };
        let hash = u32::from_ne_bytes([m[0], m[1], m[2], m[3]]);
        let status = u32::from_ne_bytes([m[4], m[5], m[6], m[7]]);
        // Cannot fail: the packet is at least the prefix long (checked above).
        let _ = b.trim_front(program::META_LEN);
        match status & 0xffff_0000 {
            program::META_HASH_OK => {
                self.hash_stats.hashed += 1;
                self.hash_stats.last_type = status as u16;
                let meta = b.meta_mut();
                meta.rss_hash = Some(hash);
                meta.flags |= wirespeed_core::meta::flags::HW_RSS;
            }
            program::META_HASH_ERR => {
                self.hash_stats.refused += 1;
                self.hash_stats.last_errno = status as u16;
            }
            _ => self.hash_stats.missing += 1,
        }
    }

    /// What the driver's RSS hash did on this queue so far (all zero unless the port's
    /// [`AttachReport::rx_hash`] is [`RxHashState::On`]).
    pub fn rx_hash_stats(&self) -> RxHashStats {
        self.hash_stats
    }

    /// Copies the chain in Rx descriptors `first..end` (`total` bytes) into a jumbo slot; every
    /// frame of the chain goes back to the free list. `None` (counted) when the chain is longer
    /// than a slot or every slot is in use.
    fn gather(&mut self, first: u32, end: u32, total: usize) -> Option<XdpBuf> {
        // The RX-hash prefix on the first buffer is stripped, not copied.
        let total = if self.rx_hash { total.saturating_sub(program::META_LEN) } else { total };
        let mut dst = match self.umem.jumbo_window(self.rx_head, total) {
            None => {
                self.too_large += 1;
                None
            }
            Some(win) => match self.umem.take_jumbo() {
                Some(slot) => Some(self.umem.buf(slot, win, self.meta)),
                None => {
                    self.jumbo_exhausted += 1;
                    None
                }
            },
        };
        let mut at = 0;
        for k in first..end {
            let Some((frame, win)) = self.rx.read(k).and_then(|d| self.umem.locate(d.addr, d.len)) else {
                // A kernel bug if ever: the frame cannot be recovered, the packet is incomplete.
                self.bad_descs += 1;
                self.lost = true;
                dst = None;
                continue;
            };
            // Owning the fragment for the copy returns its frame to the free list after it.
            let mut frag = self.umem.buf(frame, win, self.meta);
            if k == first && self.rx_hash {
                // The metadata sits before the first buffer of the chain.
                self.take_hash(&mut frag);
                if let Some(d) = dst.as_mut() {
                    *d.meta_mut() = *frag.meta();
                }
            }
            // The lengths add up to `total`, the window's length, so the range is always there.
            if let Some(to) = dst.as_mut().and_then(|d| d.data_mut().get_mut(at..at + frag.len())) {
                to.copy_from_slice(frag.data());
            }
            at += frag.len();
        }
        dst
    }

    /// Kicks the kernel's Tx path when the Tx ring holds a backlog (copy mode).
    #[inline]
    fn kick_tx_backlog(&self) {
        if self.tx_level.as_ref().is_some_and(|t| t.unconsumed() > 0) {
            sys::kick_tx(self.sock.raw());
        }
    }
}

/// First fill target: an eighth of the UMEM, at least two batches, at most the fill ring.
fn initial_fill_target(cfg: &AfXdpPortConfig) -> u32 {
    (cfg.frames / 8).max(2 * BATCH_SIZE as u32).min(cfg.fill_ring)
}

fn sys_stats(fd: RawFd) -> std::io::Result<SocketStats> {
    let s = sys::xdp_statistics(fd)?;
    Ok(SocketStats {
        rx_dropped: s.rx_dropped,
        rx_invalid_descs: s.rx_invalid_descs,
        tx_invalid_descs: s.tx_invalid_descs,
        rx_ring_full: s.rx_ring_full,
        rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
        tx_ring_empty: s.tx_ring_empty_descs,
    })
}

impl RxQueue for XdpRx {
    type Buf = XdpBuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Batch<XdpBuf>) -> usize {
        self.refill();
        if self.busy_poll {
            // Preferred busy polling: the device's NAPI runs in this call, on this core.
            sys::kick_rx(self.sock.raw());
        }
        // Descriptors, not packets, when chains may arrive: the loop stops at a full batch.
        let max = if self.multi_buffer { self.rx.size() } else { out.remaining() as u32 };
        let n = self.rx.ready(max);
        if n == 0 {
            if !self.busy_poll && self.need_wakeup && self.fill.needs_wakeup() {
                sys::kick_rx(self.sock.raw());
            }
            // One kick per empty poll while the Tx ring holds a backlog (bounded: a poll).
            self.kick_tx_backlog();
            return 0;
        }
        let mut got = 0;
        let mut i = 0;
        while i < n && out.remaining() > 0 {
            // `i < n` and `n` came from `ready`, so every read succeeds.
            let Some(d) = self.rx.read(i) else {
                self.lost = true;
                break;
            };
            if d.options & libc::XDP_PKT_CONTD != 0 {
                // A chain: its descriptors up to the first without XDP_PKT_CONTD.
                let mut end = i + 1;
                let mut total = d.len as usize;
                let complete = loop {
                    let Some(e) = (end < n).then(|| self.rx.read(end)).flatten() else { break false };
                    end += 1;
                    total += e.len as usize;
                    if e.options & libc::XDP_PKT_CONTD == 0 {
                        break true;
                    }
                };
                if !complete {
                    // The kernel publishes a chain at once; the rest comes with the next poll.
                    break;
                }
                if let Some(b) = self.gather(i, end, total) {
                    let _ = out.push(b);
                    got += 1;
                }
                i = end;
                continue;
            }
            i += 1;
            match self.umem.locate(d.addr, d.len) {
                Some((frame, win)) => {
                    let mut b = self.umem.buf(frame, win, self.meta);
                    if self.rx_hash {
                        self.take_hash(&mut b);
                    }
                    let _ = out.push(b);
                    got += 1;
                }
                None => {
                    // A kernel bug if ever: the frame cannot be recovered.
                    self.bad_descs += 1;
                    self.lost = true;
                }
            }
        }
        self.rx.release(i);
        self.in_kernel -= i;
        got
    }

    /// `PreferBusyPoll` sets `SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` and `SO_BUSY_POLL_BUDGET`
    /// on the socket and makes every Rx poll a busy poll; a refusal is kept for
    /// [`XdpRx::idle_policy`] and the queue spins as under `Spin`. The other policies need
    /// nothing from the socket.
    fn set_idle_policy(&mut self, policy: IdlePolicy) {
        self.idle_policy = policy;
        self.busy_poll = false;
        self.idle_error = None;
        if let IdlePolicy::PreferBusyPoll { usecs, budget } = policy {
            let fd = self.sock.raw();
            let set = |name, what, v: u32| {
                sys::setsockopt(fd, libc::SOL_SOCKET, name, &(v.min(i32::MAX as u32) as libc::c_int))
                    .map_err(|e| format!("{what}: {e}"))
            };
            match set(sys::SO_PREFER_BUSY_POLL, "SO_PREFER_BUSY_POLL", 1)
                .and_then(|()| set(sys::SO_BUSY_POLL, "SO_BUSY_POLL", usecs))
                .and_then(|()| set(sys::SO_BUSY_POLL_BUDGET, "SO_BUSY_POLL_BUDGET", budget))
            {
                Ok(()) => self.busy_poll = true,
                Err(e) => self.idle_error = Some(e),
            }
        }
    }

    /// Sleeps in `poll()` on the socket until a frame arrives or `timeout` passes, after giving
    /// the kernel fill buffers and sending any Tx backlog.
    fn wait(&mut self, timeout: std::time::Duration) -> bool {
        self.refill();
        if self.rx.ready(1) > 0 {
            return true;
        }
        self.kick_tx_backlog();
        sys::wait_readable(self.sock.raw(), timeout).is_ok()
    }

    fn take_drops(&mut self) -> Option<(DropReason, u64)> {
        if self.bad_descs > 0 {
            return Some((DropReason::MalformedL2, std::mem::take(&mut self.bad_descs)));
        }
        if self.too_large > 0 {
            return Some((DropReason::TooLarge, std::mem::take(&mut self.too_large)));
        }
        if self.jumbo_exhausted > 0 {
            return Some((DropReason::PoolExhausted, std::mem::take(&mut self.jumbo_exhausted)));
        }
        // The kernel's drop counter costs a syscall: look every 1024 bursts.
        self.calls = self.calls.wrapping_add(1);
        if !self.calls.is_multiple_of(1024) {
            return None;
        }
        let s = sys_stats(self.sock.raw()).ok()?;
        let total = s.rx_dropped + s.rx_ring_full;
        let new = total.saturating_sub(self.kernel_dropped);
        self.kernel_dropped = total;
        (new > 0).then_some((DropReason::PoolExhausted, new))
    }
}

/// Tx half of one queue: owns the Tx and completion rings.
pub struct XdpTx {
    sock: Arc<Socket>,
    umem: &'static Umem,
    tx: Ring<libc::xdp_desc>,
    comp: Ring<u64>,
    /// An empty packet after the same headroom as received ones.
    tx_win: BufWindow,
    /// Per jumbo slot: its descriptors on the Tx and completion rings (the slot goes home when
    /// the last completes). Empty without multi-buffer.
    jumbo_pending: Vec<u8>,
    /// Frames and jumbo slots on the Tx and completion rings (submitted, not yet reclaimed).
    in_kernel: u32,
    /// A completion named no frame of ours: the count above can no longer be trusted.
    lost: bool,
    need_wakeup: bool,
    bind: BindMode,
    /// Descriptors one copy-mode kick sends at most (`XDP_MAX_TX_SKB_BUDGET`, else 32).
    tx_budget: u32,
    /// How long a burst waits on a full ring without progress ([`AfXdpPortConfig::tx_wait_us`]).
    tx_wait: std::time::Duration,
    /// The last wait gave up (no progress for `tx_wait`): bursts do not wait again until the
    /// kernel takes or completes a descriptor.
    stalled: bool,
    stats: TxStats,
    _owned: ShardOwned,
}

/// What the Tx half did to get packets out (see [`XdpTx::tx_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxStats {
    /// `sendto` kicks issued by the Tx half.
    pub kicks: u64,
    /// Kicks after which the kernel left descriptors on the ring (the device pushed back, or
    /// the per-kick budget ran out).
    pub backlogged: u64,
    /// Bursts that left packets unsent for want of room (Tx ring or UMEM frames), after
    /// kicking and, unless the queue was stalled or `tx_wait_us` is 0, waiting.
    pub ring_full: u64,
    /// Bursts that found no room and waited for it (kicking, reclaiming, yielding the core).
    pub waits: u64,
    /// Waits that gave up: the kernel took no descriptor and completed none for `tx_wait_us`.
    pub wait_timeouts: u64,
}

/// Most kicks one call makes while the kernel keeps taking descriptors off the Tx ring.
const MAX_KICKS: u32 = 8;

impl XdpTx {
    /// Returns completed Tx frames to the free list, and jumbo slots whose last descriptor
    /// completed.
    #[inline]
    fn reclaim(&mut self) -> u32 {
        let n = self.comp.ready(self.comp.size());
        for i in 0..n {
            let Some(addr) = self.comp.read(i) else {
                self.lost = true;
                break;
            };
            let Some(c) = self.umem.chunk_of(addr) else {
                self.lost = true;
                continue;
            };
            match self.umem.jumbo_slot_of(c) {
                None => {
                    self.umem.put_frame(c);
                    self.in_kernel -= 1;
                }
                Some(s) => match self.jumbo_pending.get_mut(s as usize) {
                    Some(p) if *p > 0 => {
                        *p -= 1;
                        if *p == 0 {
                            self.umem.put_frame(self.umem.jumbo_head(s));
                            self.in_kernel -= 1;
                        }
                    }
                    _ => self.lost = true,
                },
            }
        }
        if n > 0 {
            self.comp.release(n);
            // The device moves again: a full ring is worth waiting on.
            self.stalled = false;
        }
        n
    }

    /// Writes the packet at UMEM `addr` (`len` bytes) as Tx descriptors from slot `at` on: one
    /// per frame it covers, all but the last flagged `XDP_PKT_CONTD`. Returns how many.
    #[inline]
    fn write_chain(&mut self, at: u32, mut addr: u64, mut len: u32) -> u32 {
        // Frame sizes are powers of two (validated): the frame's end by masking, not dividing.
        let fs = u64::from(self.umem.frame_size());
        let mut n = 0;
        loop {
            let to_frame_end = fs - (addr & (fs - 1));
            let l = u64::from(len).min(to_frame_end) as u32;
            len -= l;
            let options = if len > 0 { libc::XDP_PKT_CONTD } else { 0 };
            if !self.tx.write(at + n, libc::xdp_desc { addr, len: l, options }) {
                // Cannot happen (checked against the free count); if it did, the frame is lost.
                self.lost = true;
            }
            n += 1;
            addr += u64::from(l);
            if len == 0 || l == 0 {
                return n;
            }
        }
    }

    /// Gets what is on the Tx ring to the kernel. Zero-copy: one wakeup when the driver asks
    /// for it (it sends asynchronously). Copy mode: the kernel sends synchronously in `sendto`,
    /// at most `tx_budget` descriptors per call, and stops early when the device pushes back —
    /// so kick again while descriptors remain and the last kick moved some, at most
    /// [`MAX_KICKS`] times; what is left waits for the next burst or empty Rx poll.
    #[inline]
    fn kick(&mut self) {
        if self.bind == BindMode::ZeroCopy {
            if !self.need_wakeup || self.tx.needs_wakeup() {
                self.stats.kicks += 1;
                sys::kick_tx(self.sock.raw());
            }
            return;
        }
        let mut left = self.tx.unconsumed();
        let mut kicks = 0;
        while left > 0 && kicks < MAX_KICKS {
            sys::kick_tx(self.sock.raw());
            kicks += 1;
            let now = self.tx.unconsumed();
            if now >= left {
                break;
            }
            left = now;
            // The device moves again: a full ring is worth waiting on.
            self.stalled = false;
        }
        self.stats.kicks += u64::from(kicks);
        if left > 0 && kicks > 0 {
            self.stats.backlogged += 1;
        }
    }

    /// Kick and reclaim counters of this queue.
    pub fn tx_stats(&self) -> TxStats {
        self.stats
    }

    /// Descriptors one copy-mode kick may send: the Tx ring's size where the kernel takes
    /// `XDP_MAX_TX_SKB_BUDGET` (6.17+), else its fixed 32.
    pub fn tx_budget(&self) -> u32 {
        self.tx_budget
    }

    /// Descriptors on the Tx ring the kernel has not taken yet.
    pub fn tx_backlog(&self) -> u32 {
        self.tx.unconsumed()
    }

    /// An empty buffer from this queue's UMEM (with the same headroom as received ones), for
    /// packets the application originates; `None` when every frame is in use.
    pub fn alloc(&self) -> Option<XdpBuf> {
        let f = self.umem.take_frame()?;
        Some(self.umem.buf(f, self.tx_win, PacketMeta::default()))
    }

    /// How this queue's socket is bound.
    pub fn bind_mode(&self) -> BindMode {
        self.bind
    }

    /// Queue index.
    pub fn queue(&self) -> u16 {
        self.sock.queue
    }
}

/// Bytes a jumbo slot keeps after the largest frame, for what encapsulation appends.
const JUMBO_TAILROOM: usize = 256;

/// Most frames a jumbo slot may span: a chain the kernel sends as one skb has at most
/// `MAX_SKB_FRAGS` (17) descriptors.
const MAX_CHAIN: u32 = 16;

/// Shortest frame the Tx queue hands to the kernel: an Ethernet header.
const MIN_FRAME: usize = 14;

/// Why [`XdpTx::enqueue`] stopped before the end of the batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Everything went on the ring.
    Done,
    /// No room: the Tx ring is full, or every frame (jumbo slot) of the UMEM is in flight.
    /// Waiting may help.
    Room,
    /// The next packet cannot be sent at all (shorter than an Ethernet header, or larger than
    /// any buffer of ours): waiting would not help.
    Unsendable,
}

impl XdpTx {
    /// Puts what fits of `batch` on the Tx ring, from the front, and kicks the kernel when
    /// anything was written. Returns how many packets went and why it stopped.
    #[inline]
    fn enqueue(&mut self, batch: &mut Batch<XdpBuf>) -> (usize, Stop) {
        let want = batch.len() as u32;
        let mut free = self.tx.free(want);
        // Buffers from another UMEM (another queue or port) are copied into frames of ours
        // (a jumbo slot when too large for a frame); take those first so a shortage stops the
        // burst before anything moves. A foreign buffer too large for ours, a packet shorter
        // than an Ethernet header (which the kernel would reject or a driver drop unseen), or
        // a chain the Tx ring has no room for also ends the burst: it stays in the batch.
        let fs = u64::from(self.umem.frame_size());
        let head = self.tx_win.headroom() as u64;
        let room = self.tx_win.tailroom(fs as usize);
        let jumbo_room =
            if self.umem.jumbo_slots() > 0 { self.tx_win.tailroom(self.umem.jumbo_size()) } else { 0 };
        // Descriptors a packet at `addr` (`len` bytes) takes: one per frame it covers (frame
        // sizes are powers of two: shifts, not divisions, on the per-packet path).
        let shift = fs.trailing_zeros();
        let descs = |addr: u64, len: u32| {
            (((addr + u64::from(len).max(1) - 1) >> shift) - (addr >> shift) + 1) as u32
        };
        let mut spare = [0u32; BATCH_SIZE];
        let mut taken = 0;
        let mut sendable = 0;
        let mut ring = 0;
        let mut stop = Stop::Done;
        for b in batch.iter().take(BATCH_SIZE) {
            if b.len() < MIN_FRAME {
                stop = Stop::Unsendable;
                break;
            }
            let need = if b.is_in(self.umem) {
                let (addr, len) = b.desc();
                descs(addr, len)
            } else {
                descs(head, b.len() as u32)
            };
            if ring + need > free {
                // Chains take more slots than packets: look at the kernel's index once more.
                free = self.tx.free(ring + need);
                if ring + need > free {
                    stop = Stop::Room;
                    break;
                }
            }
            if !b.is_in(self.umem) {
                let f = if b.len() <= room {
                    self.umem.take_frame()
                } else if b.len() <= jumbo_room {
                    self.umem.take_jumbo()
                } else {
                    stop = Stop::Unsendable;
                    break;
                };
                let Some(f) = f else {
                    stop = Stop::Room;
                    break;
                };
                spare[taken] = f;
                taken += 1;
            }
            ring += need;
            sendable += 1;
        }
        let mut used = 0;
        let mut written = 0;
        for b in batch.drain(..sendable) {
            let own = if b.is_in(self.umem) {
                b
            } else {
                let f = spare[used];
                used += 1;
                let win = if self.umem.jumbo_slot_of(f).is_some() {
                    self.umem.jumbo_window(self.tx_win.headroom(), 0)
                } else {
                    Some(self.tx_win)
                };
                // Cannot fail: the headroom fits a frame, and the length was checked against
                // the room of the frame or slot above.
                let mut own = self.umem.buf(f, win.unwrap_or(self.tx_win), *b.meta());
                let _ = own.copy_from(b.data());
                own
            };
            let (frame, addr, len) = own.into_desc();
            let n = self.write_chain(written, addr, len);
            if let Some(p) =
                self.umem.jumbo_slot_of(frame).and_then(|s| self.jumbo_pending.get_mut(s as usize))
            {
                *p = n as u8;
            }
            written += n;
            self.in_kernel += 1;
        }
        if written > 0 {
            self.tx.submit(written);
            self.kick();
        }
        (sendable, stop)
    }

    /// The rest of a burst that found no room: kicks and reclaims until it is all on the ring,
    /// yielding the core between tries (a NAPI thread on this core may be what drains the
    /// device), for as long as the kernel keeps taking descriptors or completing them; gives
    /// up after `tx_wait` without progress and marks the queue stalled. Returns how many more
    /// packets went and why it stopped.
    #[cold]
    fn wait_for_room(&mut self, batch: &mut Batch<XdpBuf>) -> (usize, Stop) {
        self.stats.waits += 1;
        let mut sent = 0;
        let mut last_progress = std::time::Instant::now();
        loop {
            std::thread::yield_now();
            let before = self.tx.unconsumed();
            self.kick();
            let reclaimed = self.reclaim();
            let (n, stop) = self.enqueue(batch);
            sent += n;
            if stop != Stop::Room {
                return (sent, stop);
            }
            let now = std::time::Instant::now();
            if n > 0 || reclaimed > 0 || self.tx.unconsumed() < before {
                last_progress = now;
            } else if now.duration_since(last_progress) >= self.tx_wait {
                self.stalled = true;
                self.stats.wait_timeouts += 1;
                return (sent, stop);
            }
        }
    }
}

impl TxQueue for XdpTx {
    type Buf = XdpBuf;

    /// Sends what it can of `batch`. A full Tx ring is waited out while the kernel makes
    /// progress (see [`crate::AfXdpPortConfig::tx_wait_us`]); what is left in `batch` was
    /// refused (the caller counts it `tx_full`), or cannot be sent at all (a runt, or a packet
    /// larger than any buffer of this UMEM).
    #[inline]
    fn tx_burst(&mut self, batch: &mut Batch<XdpBuf>) -> usize {
        self.reclaim();
        if self.bind == BindMode::Copy && self.tx.unconsumed() > 0 {
            // A backlog from a burst the device pushed back: send it first (order is kept).
            self.kick();
            self.reclaim();
        }
        let (mut sent, mut stop) = self.enqueue(batch);
        if stop == Stop::Room {
            // Ring full: let the kernel make progress, then look again.
            self.kick();
            self.reclaim();
            let (more, why) = self.enqueue(batch);
            sent += more;
            stop = why;
        }
        if stop == Stop::Room {
            if !self.stalled && !self.tx_wait.is_zero() {
                let (more, why) = self.wait_for_room(batch);
                sent += more;
                stop = why;
            }
            if stop == Stop::Room {
                self.stats.ring_full += 1;
            }
        }
        sent
    }

    /// Descriptors on the Tx ring the kernel has not taken (copy mode: a pushed-back backlog
    /// that only further kicks send).
    #[inline]
    fn backlog(&self) -> bool {
        self.bind == BindMode::Copy && self.tx.unconsumed() > 0
    }

    /// Sends a pushed-back backlog (copy mode) and reclaims completions.
    #[inline]
    fn idle(&mut self) {
        if self.bind == BindMode::Copy && self.tx.unconsumed() > 0 {
            self.kick();
        }
        self.reclaim();
    }

    fn flush(&mut self) {
        if self.bind == BindMode::ZeroCopy || self.tx.unconsumed() == 0 {
            sys::kick_tx(self.sock.raw());
        } else {
            self.kick();
        }
        self.reclaim();
    }
}
