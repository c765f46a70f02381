//! The other end of the wire, for tests and benchmarks: move a thread into a network namespace
//! and send and receive raw Ethernet frames there through an `AF_PACKET` socket.

use std::io;

use crate::sys;

/// Moves the calling thread into network namespace `name` (as created by `ip netns add`).
/// Sockets the thread opens afterwards, and interface names it resolves, are that namespace's.
pub fn enter_netns(name: &str) -> io::Result<()> {
    sys::setns_net(&format!("/run/netns/{name}"))
}

/// A raw socket on one interface that sends and receives whole Ethernet frames.
pub struct RawSocket {
    sock: sys::PacketSocket,
}

impl RawSocket {
    /// Opens a socket on `interface` (in the calling thread's namespace) seeing every EtherType.
    pub fn open(interface: &str) -> io::Result<Self> {
        let sock = sys::PacketSocket::open(sys::if_index(interface)?)?;
        // Frames go straight to the driver: the benchmark measures the path under test, not the
        // sender's qdisc.
        let _ = sock.set_option(libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1);
        // Root may exceed net.core.rmem_max/wmem_max; others get what the limits allow.
        for (force, plain) in
            [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)]
        {
            if sock.set_option(libc::SOL_SOCKET, force, 8 << 20).is_err() {
                let _ = sock.set_option(libc::SOL_SOCKET, plain, 8 << 20);
            }
        }
        Ok(Self { sock })
    }

    /// Sends one frame; `Ok(false)` when the device queue is full right now (try again).
    pub fn send(&self, frame: &[u8]) -> io::Result<bool> {
        self.sock.send(frame)
    }

    /// Receives one frame that arrived on the interface (frames sent from this side are
    /// skipped), waiting up to `timeout_ms`; `Ok(None)` on timeout.
    pub fn recv(&self, buf: &mut [u8], timeout_ms: i32) -> io::Result<Option<usize>> {
        self.sock.recv(buf, timeout_ms)
    }
}
