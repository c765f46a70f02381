//! The `NETLINK_XFRM` socket (Linux) and a non-blocking follower that dumps the kernel's SA and
//! policy databases and then follows their multicast events into a [`Mirror`].
//!
//! This module holds the crate's only `unsafe`: the socket system calls.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use zeroize::{Zeroize, Zeroizing};

use crate::mirror::{Applied, Mirror};
use crate::msg::{self, Builder};
use crate::wire::group;

/// `NETLINK_XFRM`.
const NETLINK_XFRM: libc::c_int = 6;

/// The socket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Missing `CAP_NET_ADMIN` (needed to dump XFRM state and join its multicast groups).
    #[error("{op}: permission denied: mirroring the kernel's XFRM database needs CAP_NET_ADMIN")]
    PermissionDenied {
        /// What failed.
        op: &'static str,
    },
    /// The kernel has no `xfrm_user` (CONFIG_XFRM_USER).
    #[error("{op}: NETLINK_XFRM not supported by this kernel (CONFIG_XFRM_USER): {source}")]
    Unsupported {
        /// What failed.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// Another system call error.
    #[error("{op}: {source}")]
    Io {
        /// What failed.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The kernel answered a request with an error.
    #[error("{op}: kernel refused: {source}")]
    Kernel {
        /// What failed.
        op: &'static str,
        /// The errno as an error.
        source: io::Error,
    },
    /// The initial dump did not finish in time.
    #[error("XFRM dump not finished after {0:?}")]
    Timeout(Duration),
}

fn err(op: &'static str, e: io::Error) -> SocketError {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => SocketError::PermissionDenied { op },
        Some(libc::EPROTONOSUPPORT) | Some(libc::EAFNOSUPPORT) => SocketError::Unsupported { op, source: e },
        _ => SocketError::Io { op, source: e },
    }
}

/// What a receive returned.
#[derive(Debug)]
pub enum Received<'a> {
    /// A datagram of one or more netlink messages.
    Datagram(&'a [u8]),
    /// Nothing to read now.
    WouldBlock,
    /// The kernel dropped multicast messages (`ENOBUFS`) or a datagram was truncated: the
    /// mirror must resynchronise by dumping again.
    Overrun,
}

/// A non-blocking `NETLINK_XFRM` socket.
#[derive(Debug)]
pub struct XfrmSocket {
    fd: OwnedFd,
    /// Receive buffer; SA notifications carry keys, so what a datagram left in it is wiped
    /// before the next receive and when the socket is dropped.
    buf: Zeroizing<Vec<u8>>,
    last: usize,
}

/// Bit mask of multicast groups for `sockaddr_nl.nl_groups`.
pub fn group_mask(groups: &[u32]) -> u32 {
    groups.iter().filter(|&&g| (1..=32).contains(&g)).fold(0, |m, &g| m | 1 << (g - 1))
}

impl XfrmSocket {
    /// Opens a socket joined to `groups` (`XFRMNLGRP_*`; joining needs CAP_NET_ADMIN).
    pub fn open(groups: &[u32]) -> Result<Self, SocketError> {
        // SAFETY: plain socket(2) call with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                NETLINK_XFRM,
            )
        };
        if raw < 0 {
            return Err(err("socket(AF_NETLINK, NETLINK_XFRM)", io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // 4 MiB of receive buffer so bursts of notifications (10 000 SAs installed at once)
        // do not overrun; SO_RCVBUFFORCE needs CAP_NET_ADMIN, fall back to SO_RCVBUF.
        let size: libc::c_int = 4 << 20;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: `size` outlives the call and its length is given.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = group_mask(groups);
        // SAFETY: `sa` is a valid sockaddr_nl of the given length.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(err("bind(NETLINK_XFRM groups)", io::Error::last_os_error()));
        }
        Ok(Self { fd, buf: Zeroizing::new(vec![0; 1 << 16]), last: 0 })
    }

    /// Sends `bytes` (one or more netlink messages) to the kernel.
    pub fn send(&self, bytes: &[u8]) -> Result<(), SocketError> {
        // SAFETY: all-zero sockaddr_nl is "the kernel".
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `bytes` and `sa` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(err("sendto(NETLINK_XFRM)", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Receives one datagram without blocking (wiping the previous one first).
    pub fn recv(&mut self) -> Result<Received<'_>, SocketError> {
        self.buf[..self.last].zeroize();
        self.last = 0;
        // SAFETY: the buffer is valid for writes of its length.
        let n = unsafe {
            libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), libc::MSG_TRUNC)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(Received::WouldBlock),
                Some(libc::ENOBUFS) => Ok(Received::Overrun),
                _ => Err(err("recv(NETLINK_XFRM)", e)),
            };
        }
        let n = n as usize;
        self.last = n.min(self.buf.len());
        if n > self.buf.len() {
            return Ok(Received::Overrun);
        }
        Ok(Received::Datagram(&self.buf[..n]))
    }

    /// Waits until the socket is readable or `timeout` passes; `true` when readable.
    pub fn wait(&self, timeout: Duration) -> Result<bool, SocketError> {
        let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(false);
            }
            return Err(err("poll(NETLINK_XFRM)", e));
        }
        Ok(r > 0)
    }
}

impl AsFd for XfrmSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for XfrmSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    DumpingSas,
    DumpingPolicies,
    Following,
}

/// What one [`Follower::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Polled {
    /// The desired state changed: publish [`Mirror::configs`] and [`Mirror::spd`].
    pub changed: bool,
    /// Datagrams read.
    pub datagrams: usize,
    /// A multicast overrun started a resynchronisation.
    pub resync: bool,
}

/// Dumps the SA and policy databases, then follows their events, feeding a [`Mirror`]. Never
/// blocks in [`Follower::poll`]: put its descriptor in the appliance's event loop, or call it
/// periodically.
#[derive(Debug)]
pub struct Follower {
    sock: XfrmSocket,
    mirror: Mirror,
    phase: Phase,
    seq: u32,
    builder: Builder,
    overruns: u64,
    /// An overrun happened while a dump was running: dump again once it ends.
    redump: bool,
    /// The initial dumps ended (pre-existing outbound SAs were retired).
    started: bool,
}

impl Follower {
    /// Opens the socket (groups SA, POLICY, EXPIRE, ACQUIRE) and requests the SA dump.
    /// Subscribing first means no event between the dump and the subscription is lost (events
    /// that race the dump are applied idempotently).
    pub fn start(mirror: Mirror) -> Result<Self, SocketError> {
        let sock = XfrmSocket::open(&[group::SA, group::POLICY, group::EXPIRE, group::ACQUIRE])?;
        let mut f = Self {
            sock,
            mirror,
            phase: Phase::DumpingSas,
            seq: 0,
            builder: Builder::new(),
            overruns: 0,
            redump: false,
            started: false,
        };
        f.request_dump(false)?;
        Ok(f)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn request_dump(&mut self, policies: bool) -> Result<(), SocketError> {
        let seq = self.next_seq();
        self.builder.clear();
        if policies {
            msg::dump_policies(&mut self.builder, seq);
        } else {
            msg::dump_sas(&mut self.builder, seq);
        }
        self.sock.send(self.builder.bytes())
    }

    /// The mirror.
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// The mirror, mutably (to drain refusals).
    pub fn mirror_mut(&mut self) -> &mut Mirror {
        &mut self.mirror
    }

    /// The socket (to wait on, or to send feedback with [`XfrmSocket::send`]).
    pub fn socket(&self) -> &XfrmSocket {
        &self.sock
    }

    /// Whether the initial (or a resynchronising) dump has completed.
    pub fn synced(&self) -> bool {
        self.phase == Phase::Following
    }

    /// Multicast overruns survived (each one resynchronised).
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// Reads and applies everything available now.
    pub fn poll(&mut self) -> Result<Polled, SocketError> {
        let mut out = Polled::default();
        loop {
            let (changed, done) = match self.sock.recv()? {
                Received::WouldBlock => return Ok(out),
                Received::Overrun => {
                    // Events were lost: dump everything again and sweep what disappeared. A
                    // dump already running must end first (the kernel runs one at a time).
                    self.overruns += 1;
                    out.resync = true;
                    self.mirror.begin_resync();
                    if self.phase == Phase::Following {
                        self.phase = Phase::DumpingSas;
                        self.request_dump(false)?;
                    } else {
                        self.redump = true;
                    }
                    continue;
                }
                Received::Datagram(d) => {
                    out.datagrams += 1;
                    if self.phase != Phase::Following
                        && let Some((seq, errno)) = msg::first_error(d)
                        && seq == self.seq
                    {
                        let source = io::Error::from_raw_os_error(-errno);
                        return Err(match -errno {
                            libc::EPERM | libc::EACCES => SocketError::PermissionDenied { op: "XFRM dump" },
                            _ => SocketError::Kernel { op: "XFRM dump", source },
                        });
                    }
                    self.mirror.apply_datagram(d)
                }
            };
            out.changed |= changed;
            if done && self.redump {
                self.redump = false;
                self.phase = Phase::DumpingSas;
                self.request_dump(false)?;
            } else if done {
                match self.phase {
                    Phase::DumpingSas => {
                        self.phase = Phase::DumpingPolicies;
                        self.request_dump(true)?;
                    }
                    Phase::DumpingPolicies => {
                        self.phase = Phase::Following;
                        out.changed |= self.mirror.end_resync() == Applied::Changed;
                        if !self.started {
                            // Outbound SAs that predate us may have been used by an earlier run.
                            self.started = true;
                            out.changed |= self.mirror.retire_preexisting_outbound() == Applied::Changed;
                        }
                    }
                    Phase::Following => {}
                }
            }
        }
    }

    /// Polls until the dumps completed (blocking up to `timeout`).
    pub fn sync(&mut self, timeout: Duration) -> Result<Polled, SocketError> {
        let deadline = Instant::now() + timeout;
        let mut total = Polled::default();
        loop {
            let p = self.poll()?;
            total.changed |= p.changed;
            total.resync |= p.resync;
            total.datagrams += p.datagrams;
            if self.synced() {
                return Ok(total);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SocketError::Timeout(timeout));
            }
            self.sock.wait(left.min(Duration::from_millis(100)))?;
        }
    }
}
