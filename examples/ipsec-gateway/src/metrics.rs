//! `/metrics` on the host's own network stack, for operators whose monitoring reaches the host
//! rather than the data-plane ports (the control plane serves the same text in-band on the
//! management address).
//!
//! `GET /metrics` answers the Prometheus text, `GET /` one help line; other paths are 404, other
//! methods 405. One request per connection (`Connection: close`).
//!
//! # Why a server of its own
//!
//! The listener faces whoever reaches the host, so it must stay answerable under abuse: slow
//! clients (slowloris), idle connections, huge headers. `tiny_http`, the usual small server,
//! runs each connection on a pooled thread and spawns a new thread whenever all are busy, with
//! no cap, so idle connections cost a thread each. This server is one thread with non-blocking
//! sockets, looking at every connection in turn: a slow or idle client never blocks another.
//! Its limits:
//!
//! - at most [`MetricsLimits::max_connections`] connections; when full, a new one replaces the
//!   oldest connection that has not finished sending its request;
//! - the request head (request line and headers) is at most [`MetricsLimits::max_head`] bytes
//!   (more: `431` and close) and must arrive within [`MetricsLimits::request_timeout`] of the
//!   connection (else it is closed: whatever its rate, a client holds a slot that long at most);
//! - the reply must be taken within [`MetricsLimits::reply_timeout`].
//!
//! Parsing is `httparse`'s (the parser under hyper), not hand-written.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Limits of the host-side `/metrics` server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsLimits {
    /// Connections held at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers), bytes.
    pub max_head: usize,
    /// Time from accepting a connection to having its whole request head.
    pub request_timeout: Duration,
    /// Time to send the reply.
    pub reply_timeout: Duration,
}

impl Default for MetricsLimits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            max_head: 8 * 1024,
            request_timeout: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(10),
        }
    }
}

/// A running metrics server; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0 picks one) and serves `text` (see
    /// [`crate::gateway::Gateway::metrics_handle`]) with the default [`MetricsLimits`].
    pub fn start(addr: SocketAddr, text: Arc<Mutex<String>>) -> std::io::Result<Self> {
        Self::start_with(addr, text, MetricsLimits::default())
    }

    /// Listens on `addr` and serves `text` within `limits`.
    pub fn start_with(
        addr: SocketAddr,
        text: Arc<Mutex<String>>,
        limits: MetricsLimits,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || serve_loop(&listener, &text, limits, &flag))?;
        Ok(Self { addr, stop, thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Conn {
    stream: TcpStream,
    accepted: Instant,
    /// Request head read so far (reading), or the reply (writing).
    buf: Vec<u8>,
    /// Bytes of the reply already sent; `None` while reading the request.
    sent: Option<usize>,
    /// When the reply started.
    replying: Instant,
}

enum Step {
    /// Keep the connection; `true` if anything moved.
    Keep(bool),
    /// Close it.
    Close,
}

fn serve_loop(listener: &TcpListener, text: &Mutex<String>, limits: MetricsLimits, stop: &AtomicBool) {
    let mut conns: Vec<Conn> = Vec::with_capacity(limits.max_connections);
    let mut idle_rounds = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        // Accept everything pending.
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    busy = true;
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    if conns.len() >= limits.max_connections.max(1) {
                        // Full: the oldest connection still sending its request makes room (one
                        // that is being answered keeps its slot).
                        match conns
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| c.sent.is_none())
                            .min_by_key(|(_, c)| c.accepted)
                        {
                            Some((i, _)) => drop(conns.swap_remove(i)),
                            None => continue,
                        }
                    }
                    let now = Instant::now();
                    conns.push(Conn { stream, accepted: now, buf: Vec::new(), sent: None, replying: now });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let mut i = 0;
        while i < conns.len() {
            match step(&mut conns[i], text, &limits, now) {
                Step::Keep(moved) => {
                    busy |= moved;
                    i += 1;
                }
                Step::Close => {
                    busy = true;
                    let c = conns.swap_remove(i);
                    let _ = c.stream.shutdown(std::net::Shutdown::Both);
                }
            }
        }
        // Back off from 1 ms after activity to 20 ms when nothing happens.
        idle_rounds = if busy { 0 } else { (idle_rounds + 1).min(20) };
        std::thread::sleep(Duration::from_millis(u64::from(idle_rounds.max(1))));
    }
}

fn step(c: &mut Conn, text: &Mutex<String>, limits: &MetricsLimits, now: Instant) -> Step {
    if let Some(sent) = c.sent {
        if now >= c.replying + limits.reply_timeout {
            return Step::Close;
        }
        return match c.stream.write(&c.buf[sent..]) {
            Ok(0) => Step::Close,
            Ok(n) if sent + n == c.buf.len() => Step::Close,
            Ok(n) => {
                c.sent = Some(sent + n);
                Step::Keep(true)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                Step::Keep(false)
            }
            Err(_) => Step::Close,
        };
    }
    if now >= c.accepted + limits.request_timeout {
        return Step::Close;
    }
    let mut chunk = [0u8; 2048];
    let room = (limits.max_head + 1).saturating_sub(c.buf.len()).min(chunk.len());
    let n = match c.stream.read(&mut chunk[..room]) {
        Ok(0) => return Step::Close,
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
            return Step::Keep(false);
        }
        Err(_) => return Step::Close,
    };
    c.buf.extend_from_slice(&chunk[..n]);
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let reply = match req.parse(&c.buf) {
        Ok(httparse::Status::Complete(_)) => answer(req.method.unwrap_or(""), req.path.unwrap_or(""), text),
        Ok(httparse::Status::Partial) if c.buf.len() > limits.max_head => response(
            "431 Request Header Fields Too Large",
            &[],
            &format!("request head over {} bytes\n", limits.max_head),
        ),
        Ok(httparse::Status::Partial) => return Step::Keep(true),
        Err(httparse::Error::TooManyHeaders) => {
            response("431 Request Header Fields Too Large", &[], "more than 32 headers\n")
        }
        Err(e) => response("400 Bad Request", &[], &format!("{e}\n")),
    };
    c.buf = reply;
    c.sent = Some(0);
    c.replying = now;
    Step::Keep(true)
}

fn answer(method: &str, path: &str, text: &Mutex<String>) -> Vec<u8> {
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let body = text.lock().map(|t| t.clone()).unwrap_or_default();
            response("200 OK", &[("Content-Type", "text/plain; version=0.0.4")], &body)
        }
        ("GET", "/") => {
            response("200 OK", &[("Content-Type", "text/plain")], "ipsec-gateway: GET /metrics\n")
        }
        ("GET", _) => response("404 Not Found", &[], "not found: try GET /metrics\n"),
        _ => response("405 Method Not Allowed", &[("Allow", "GET")], "only GET\n"),
    }
}

fn response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}
