//! Thin, checked wrappers over the Linux system calls the backend uses: the AF_XDP socket and its
//! socket options, `mmap` of rings and UMEM, wakeups, `ioctl(SIOCETHTOOL)`, a raw `AF_PACKET`
//! socket (the test and benchmark traffic generator) and `setns`.
//!
//! Every function here returns `io::Error` from `errno`; callers attach the context (which
//! interface, which queue, which option).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// `SOL_XDP` option (6.17+): most descriptors one copy-mode `sendto` sends (32 to the Tx ring's
/// size). Not in `libc` yet.
pub(crate) const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// What one copy-mode `sendto` sends at most where the kernel has no `XDP_MAX_TX_SKB_BUDGET`.
pub(crate) const DEFAULT_TX_BUDGET: u32 = 32;

/// `SOL_SOCKET` busy-poll options (`asm-generic/socket.h`; not all in `libc` yet).
pub(crate) const SO_BUSY_POLL: libc::c_int = 46;
pub(crate) const SO_PREFER_BUSY_POLL: libc::c_int = 69;
pub(crate) const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// Waits up to `timeout` for `fd` to become readable (`ppoll`, so sub-millisecond timeouts
/// work); `Ok(true)` when it is. An interrupted wait counts as a timeout.
pub(crate) fn wait_readable(fd: RawFd, timeout: std::time::Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: one valid pollfd and a valid timespec for the duration of the call; no signal mask.
    let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EINTR) { Ok(false) } else { Err(e) };
    }
    Ok(r > 0 && pfd.revents & libc::POLLIN != 0)
}

/// Opens an `AF_XDP` socket.
pub(crate) fn xsk_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; the returned fd is checked before wrapping.
    let fd = cvt(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, &value)` for any plain-old-data option value.
pub(crate) fn setsockopt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a valid, initialised `T` for the duration of the call and its exact size
    // is passed; the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The ring offsets of an AF_XDP socket (`XDP_MMAP_OFFSETS`).
pub(crate) fn mmap_offsets(fd: RawFd) -> io::Result<libc::xdp_mmap_offsets> {
    // SAFETY: `xdp_mmap_offsets` is plain integers; all-zero is a valid value.
    let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: `off` and `len` are valid for writes of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&mut off as *mut libc::xdp_mmap_offsets).cast(),
            &mut len,
        )
    })?;
    if len as usize != std::mem::size_of::<libc::xdp_mmap_offsets>() {
        // Kernels before 5.4 answer with the v1 layout (no flags word); need-wakeup needs 5.4.
        return Err(io::Error::new(io::ErrorKind::Unsupported, "kernel predates AF_XDP ring flags (5.4)"));
    }
    Ok(off)
}

/// The kernel's counters of an AF_XDP socket (`XDP_STATISTICS`).
pub(crate) fn xdp_statistics(fd: RawFd) -> io::Result<libc::xdp_statistics> {
    // SAFETY: plain integers; all-zero is valid.
    let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
    // SAFETY: `st` and `len` are valid for writes of the sizes given; a shorter (older) answer
    // leaves the remaining counters at zero.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
            (&mut st as *mut libc::xdp_statistics).cast(),
            &mut len,
        )
    })?;
    Ok(st)
}

/// `bind()` of an AF_XDP socket to `(ifindex, queue)` with `flags` (`XDP_COPY`, `XDP_ZEROCOPY`,
/// `XDP_USE_NEED_WAKEUP`).
pub(crate) fn xsk_bind(fd: RawFd, ifindex: u32, queue: u32, flags: u16) -> io::Result<()> {
    // SAFETY: plain integers; all-zero is valid.
    let mut sa: libc::sockaddr_xdp = unsafe { std::mem::zeroed() };
    sa.sxdp_family = libc::AF_XDP as u16;
    sa.sxdp_flags = flags;
    sa.sxdp_ifindex = ifindex;
    sa.sxdp_queue_id = queue;
    // SAFETY: `sa` is a valid sockaddr_xdp and its size is passed.
    cvt(unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_xdp).cast(),
            std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Kicks the kernel to transmit what is on the Tx ring (copy mode, or when it asked for a
/// wakeup). Transient conditions (ring busy, no buffers, link down) are not errors: the
/// descriptors stay on the ring and the next kick sends them.
pub(crate) fn kick_tx(fd: RawFd) {
    // SAFETY: a zero-length send with null buffer and address is the documented AF_XDP Tx kick.
    let _ = unsafe { libc::sendto(fd, std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
}

/// Kicks the kernel to refill from the fill ring (when it asked for a wakeup).
pub(crate) fn kick_rx(fd: RawFd) {
    // SAFETY: a zero-length non-blocking receive is the documented AF_XDP fill-ring wakeup.
    let _ = unsafe {
        libc::recvfrom(
            fd,
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
}

/// A shared read-write memory mapping, unmapped on drop.
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; the types built on it (rings, UMEM) decide who touches
// which bytes, and they are `!Sync` or synchronise through the ring protocol.
unsafe impl Send for Mmap {}
// SAFETY: as above; `Mmap` itself only exposes the base pointer and length.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `fd` at page offset `offset` (an AF_XDP ring).
    pub(crate) fn ring(fd: RawFd, len: usize, offset: u64) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping chosen by the kernel; failure is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                offset as libc::off_t,
            )
        };
        Self::checked(p, len)
    }

    /// Maps `len` bytes of zeroed anonymous memory (a UMEM area).
    pub(crate) fn anonymous(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh private anonymous mapping chosen by the kernel; failure is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Self::checked(p, len)
    }

    fn checked(p: *mut libc::c_void, len: usize) -> io::Result<Self> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p.cast::<u8>())
            .map(|ptr| Self { ptr, len })
            .ok_or_else(|| io::Error::other("mmap returned null"))
    }

    /// Base address.
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Gives up ownership: the caller unmaps with [`unmap`] when it knows nothing uses it.
    pub(crate) fn into_raw(self) -> (NonNull<u8>, usize) {
        let me = std::mem::ManuallyDrop::new(self);
        (me.ptr, me.len)
    }
}

/// Unmaps a mapping taken with [`Mmap::into_raw`].
///
/// # Safety
/// `(ptr, len)` must come from `Mmap::into_raw`, be unmapped only once, and nothing may access
/// the memory afterwards.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the caller guarantees the mapping is ours, still mapped and no longer used.
    unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and nobody else unmaps.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Interface index of `name` in the calling thread's network namespace.
pub(crate) fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 { Err(io::Error::last_os_error()) } else { Ok(i) }
}

/// `ioctl(SIOCETHTOOL)` on `ifname` with `data` as the ethtool command buffer (its first `u32` is
/// the command). The kernel reads and may write the whole buffer.
pub(crate) fn ethtool(ifname: &str, data: &mut [u8]) -> io::Result<()> {
    let sock = datagram_socket()?;
    let mut ifr = ifreq(ifname)?;
    ifr.ifr_ifru.ifru_data = data.as_mut_ptr().cast();
    // SAFETY: `ifr` names the interface and points at `data`, which is valid for reads and
    // writes for the whole call; callers size `data` for the command they put in it.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut ifr) }).map(drop)
}

/// An `ifreq` naming `ifname`.
fn ifreq(ifname: &str) -> io::Result<libc::ifreq> {
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "interface name too long"));
    }
    // SAFETY: plain integers and unions of them; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

/// MAC address of `ifname` (`SIOCGIFHWADDR`), in the calling thread's network namespace (unlike
/// sysfs, which shows the namespace it was mounted in).
pub(crate) fn if_hwaddr(ifname: &str) -> io::Result<[u8; 6]> {
    let sock = datagram_socket()?;
    let mut ifr = ifreq(ifname)?;
    // SAFETY: `ifr` is a valid ifreq naming the interface; the kernel fills `ifru_hwaddr`.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut ifr) })?;
    // SAFETY: SIOCGIFHWADDR succeeded, so the union holds `ifru_hwaddr`.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

/// MTU of `ifname` (`SIOCGIFMTU`), in the calling thread's network namespace.
pub(crate) fn if_mtu(ifname: &str) -> io::Result<u32> {
    let sock = datagram_socket()?;
    let mut ifr = ifreq(ifname)?;
    // SAFETY: `ifr` is a valid ifreq naming the interface; the kernel fills `ifru_mtu`.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU as _, &mut ifr) })?;
    // SAFETY: SIOCGIFMTU succeeded, so the union holds `ifru_mtu`.
    Ok(unsafe { ifr.ifr_ifru.ifru_mtu }.max(0) as u32)
}

fn datagram_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is checked before wrapping.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Moves the calling thread into the network namespace at `path` (`/run/netns/NAME`).
pub(crate) fn setns_net(path: &str) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    // SAFETY: `f` is an open namespace file for the duration of the call; setns only affects the
    // calling thread (its fs/files are not shared-changed for CLONE_NEWNET).
    cvt(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// A raw `AF_PACKET` socket bound to one interface: sends and receives whole Ethernet frames.
pub(crate) struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens and binds a socket seeing every EtherType on `ifindex`.
    pub(crate) fn open(ifindex: u32) -> io::Result<Self> {
        let all = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
        // SAFETY: plain syscall; the fd is checked before wrapping.
        let fd = cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, all) })?;
        // SAFETY: fresh fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain integers; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = all as u16;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and its size is passed.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(Self { fd })
    }

    /// Sets an option of level `SOL_PACKET`/`SOL_SOCKET`.
    pub(crate) fn set_option(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        setsockopt(self.fd.as_raw_fd(), level, name, &value)
    }

    /// Sends one frame; `Ok(false)` when the socket would block.
    pub(crate) fn send(&self, frame: &[u8]) -> io::Result<bool> {
        // SAFETY: `frame` is valid for reads of its length for the whole call.
        let r = unsafe {
            libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), libc::MSG_DONTWAIT)
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => Ok(false),
                _ => Err(e),
            };
        }
        Ok(true)
    }

    /// Receives one frame that arrived on the interface (frames this host sent are skipped),
    /// waiting at most `timeout_ms`; `Ok(None)` on timeout.
    pub(crate) fn recv(&self, buf: &mut [u8], timeout_ms: i32) -> io::Result<Option<usize>> {
        loop {
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            if cvt(unsafe { libc::poll(&mut pfd, 1, timeout_ms) })? == 0 {
                return Ok(None);
            }
            // SAFETY: plain integers; all-zero is valid.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut alen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf`, `sll` and `alen` are valid for writes of the sizes given.
            let r = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut alen,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    continue;
                }
                return Err(e);
            }
            if sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(r as usize));
        }
    }
}
