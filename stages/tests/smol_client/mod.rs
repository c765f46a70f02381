//! A smoltcp TCP client for the control-plane tests (`control.rs`, `control_attacks.rs`;
//! included with `mod smol_client;`): a second smoltcp interface whose device the test feeds by
//! hand (frames for the client into `inbox`, what it sends taken from `outbox`), with one TCP
//! socket reading the management port.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

/// The client's device: frames in, frames out, nothing else.
#[derive(Default)]
pub struct ClientDev {
    /// Frames the client receives, oldest first.
    pub inbox: VecDeque<Vec<u8>>,
    /// Frames the client sent.
    pub outbox: Vec<Vec<u8>>,
}

pub struct ClientRx(Vec<u8>);
impl phy::RxToken for ClientRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

pub struct ClientTx<'a>(&'a mut Vec<Vec<u8>>);
impl phy::TxToken for ClientTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl phy::Device for ClientDev {
    type RxToken<'a> = ClientRx;
    type TxToken<'a> = ClientTx<'a>;
    fn receive(&mut self, _t: Instant) -> Option<(ClientRx, ClientTx<'_>)> {
        let f = self.inbox.pop_front()?;
        Some((ClientRx(f), ClientTx(&mut self.outbox)))
    }
    fn transmit(&mut self, _t: Instant) -> Option<ClientTx<'_>> {
        Some(ClientTx(&mut self.outbox))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

/// A client at `mac` / `ip`/24 with one TCP socket (8 KiB in, 1 KiB out).
pub struct Client {
    pub dev: ClientDev,
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub tcp: SocketHandle,
}

impl Client {
    pub fn new(mac: [u8; 6], ip: [u8; 4]) -> Self {
        let mut dev = ClientDev::default();
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ethernet(EthernetAddress(mac))),
            &mut dev,
            Instant::ZERO,
        );
        iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::from(Ipv4Addr::from(ip)), 24)).unwrap());
        let mut sockets = SocketSet::new(Vec::new());
        let tcp = sockets.add(tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 8192]),
            tcp::SocketBuffer::new(vec![0; 1024]),
        ));
        Self { dev, iface, sockets, tcp }
    }

    /// The TCP socket.
    pub fn socket(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket<'static>>(self.tcp)
    }

    /// Connects the socket to `ip`:`port` from local port `local`.
    pub fn connect(&mut self, ip: [u8; 4], port: u16, local: u16) {
        let s = self.sockets.get_mut::<tcp::Socket<'static>>(self.tcp);
        s.connect(self.iface.context(), (IpAddress::from(Ipv4Addr::from(ip)), port), local).unwrap();
    }

    /// One poll of the interface at `now`.
    pub fn poll(&mut self, now: Instant) {
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
    }

    /// Appends what the socket received to `text`; true once something was received and the
    /// server closed its side (the whole answer is in).
    pub fn read_into(&mut self, text: &mut Vec<u8>) -> bool {
        let s = self.socket();
        while s.can_recv() {
            s.recv(|b| {
                text.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        !text.is_empty() && !s.may_recv()
    }
}
