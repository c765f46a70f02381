//! `rss-inspect`: the RSS hash and queue of tuples and of every packet of a capture, under any
//! key, symmetric mode and RETA — exactly what wirespeed's software dispatcher (and a NIC
//! programmed with the same configuration) computes.
//!
//! ```text
//! rss-inspect hash [--key ms|6d5a|HEX] [--symmetric none|key|xor|or-xor|sort] [--queues Q [--reta-size N]]
//!     reads lines `SRC DST`, `SRC DST SPORT DPORT` or `SRC DST esp SPI` from stdin and prints
//!     `0x%08x` (and ` QUEUE` with --queues) for each
//! rss-inspect pcap FILE [--key ..] [--symmetric ..] [--queues Q] [--reta-size N] [--dump] [--top N]
//!     packets per queue, imbalance and top flows of a capture; with --dump one line per packet:
//!     `INDEX SRC DST PROTO SPORT DPORT HASH QUEUE`
//! ```
//!
//! Hash types: all of them (IPv4/IPv6 2-tuple, TCP/UDP 4-tuple, ESP and NAT-T `src ‖ dst ‖ SPI`,
//! fragments 2-tuple); with a key shorter than 40 bytes, the IPv4 ones only. The RETA is
//! round-robin over the queues (128 entries unless `--reta-size`); a packet no hash type
//! applies to (non-IP) takes entry 0.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::process::ExitCode;

use wirespeed_core::rss::{
    FlowTuple, HashTypes, MS_KEY, PacketInfo, Reta, RssConfig, RssHasher, SymmetricMode,
};

const USAGE: &str = "\
usage: rss-inspect hash [--key ms|6d5a|HEX] [--symmetric none|key|xor|or-xor|sort] [--queues Q [--reta-size N]]
         reads `SRC DST`, `SRC DST SPORT DPORT` or `SRC DST esp SPI` lines from stdin
       rss-inspect pcap FILE [--key ..] [--symmetric ..] [--queues Q] [--reta-size N] [--dump] [--top N]
         (--queues defaults to 4 for pcap)";

/// Command-line options shared by both subcommands.
struct Options {
    key: Vec<u8>,
    mode: SymmetricMode,
    queues: Option<u16>,
    reta_size: usize,
    dump: bool,
    top: usize,
    file: Option<String>,
}

/// Why the command failed: a usage error (exit 2) or a run-time one (exit 1).
enum Failure {
    Usage(String),
    Run(String),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("rss-inspect: {m}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Run(m)) => {
            eprintln!("rss-inspect: {m}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(Failure::Usage("a subcommand is needed".into()));
    };
    if cmd == "-h" || cmd == "--help" {
        println!("{USAGE}");
        return Ok(());
    }
    let opts = parse_options(rest)?;
    match cmd.as_str() {
        "hash" => {
            if opts.file.is_some() || opts.dump {
                return Err(Failure::Usage("`hash` takes no file and no --dump".into()));
            }
            hash_lines(&opts)
        }
        "pcap" => pcap(&opts),
        other => Err(Failure::Usage(format!("unknown subcommand `{other}`"))),
    }
}

fn parse_options(args: &[String]) -> Result<Options, Failure> {
    let mut o = Options {
        key: MS_KEY.to_vec(),
        mode: SymmetricMode::None,
        queues: None,
        reta_size: 128,
        dump: false,
        top: 10,
        file: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value =
            |name: &str| it.next().cloned().ok_or_else(|| Failure::Usage(format!("{name} needs a value")));
        match a.as_str() {
            "--key" => o.key = parse_key(&value("--key")?)?,
            "--symmetric" => {
                o.mode = value("--symmetric")?.parse().map_err(|e| Failure::Usage(format!("{e}")))?
            }
            "--queues" => {
                let v = value("--queues")?;
                let q: u16 =
                    v.parse().map_err(|_| Failure::Usage(format!("--queues `{v}` is not a number")))?;
                if q == 0 {
                    return Err(Failure::Usage("--queues must be at least 1".into()));
                }
                o.queues = Some(q);
            }
            "--reta-size" => {
                let v = value("--reta-size")?;
                o.reta_size =
                    v.parse().map_err(|_| Failure::Usage(format!("--reta-size `{v}` is not a number")))?;
            }
            "--top" => {
                let v = value("--top")?;
                o.top = v.parse().map_err(|_| Failure::Usage(format!("--top `{v}` is not a number")))?;
            }
            "--dump" => o.dump = true,
            f if !f.starts_with("--") && o.file.is_none() => o.file = Some(f.to_string()),
            other => return Err(Failure::Usage(format!("unexpected argument `{other}`"))),
        }
    }
    Ok(o)
}

/// `ms`, `6d5a`, or hex bytes (optionally `0x`-prefixed, `:` or `-` separated).
fn parse_key(s: &str) -> Result<Vec<u8>, Failure> {
    let key = wirespeed_core::rss::parse_key(s).map_err(|e| Failure::Usage(format!("--key: {e}")))?;
    if key.len() < 16 {
        return Err(Failure::Usage(format!(
            "--key of {} bytes is too short: at least 16 (IPv4) or 40 (IPv6)",
            key.len()
        )));
    }
    Ok(key)
}

fn hasher(o: &Options) -> Result<RssHasher, Failure> {
    let types = if o.key.len() >= 40 {
        HashTypes::ALL
    } else {
        [HashTypes::IPV4_TCP, HashTypes::IPV4_UDP, HashTypes::IPV4_ESP, HashTypes::IPV4_NATT]
            .into_iter()
            .fold(HashTypes::IPV4, HashTypes::union)
    };
    RssHasher::new(&RssConfig { key: o.key.clone(), mode: o.mode, types })
        .map_err(|e| Failure::Usage(e.to_string()))
}

fn reta(o: &Options, queues: u16) -> Result<Reta, Failure> {
    Reta::round_robin(o.reta_size, queues).map_err(|e| Failure::Usage(format!("--reta-size: {e}")))
}

/// Writes to stdout; a closed pipe (`| head`) ends the run quietly.
fn out_err(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::Run(String::new())
    } else {
        Failure::Run(format!("writing output: {e}"))
    }
}

fn hash_lines(o: &Options) -> Result<(), Failure> {
    let h = hasher(o)?;
    let reta = match o.queues {
        Some(q) => Some(reta(o, q)?),
        None => None,
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (n, line) in stdin.lock().lines().enumerate() {
        let lineno = n + 1;
        let line = line.map_err(|e| Failure::Run(format!("line {lineno}: reading stdin: {e}")))?;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let tuple = parse_tuple(text).map_err(|m| Failure::Run(format!("line {lineno}: {m}: `{text}`")))?;
        let hash = h.hash_tuple(&tuple).ok_or_else(|| {
            Failure::Run(format!("line {lineno}: IPv6 needs a key of at least 40 bytes: `{text}`"))
        })?;
        let r = match &reta {
            Some(r) => writeln!(out, "0x{hash:08x} {}", r.queue(hash)),
            None => writeln!(out, "0x{hash:08x}"),
        };
        match r.map_err(out_err) {
            Err(Failure::Run(m)) if m.is_empty() => return Ok(()),
            r => r?,
        }
    }
    match out.flush().map_err(out_err) {
        Err(Failure::Run(m)) if m.is_empty() => Ok(()),
        r => r,
    }
}

/// `SRC DST` | `SRC DST SPORT DPORT` | `SRC DST esp SPI`.
fn parse_tuple(s: &str) -> Result<FlowTuple, String> {
    let f: Vec<&str> = s.split_whitespace().collect();
    let addr = |t: &str| t.parse::<IpAddr>().map_err(|_| format!("`{t}` is not an IP address"));
    let (src, dst) = match f.as_slice() {
        [a, b, ..] => (addr(a)?, addr(b)?),
        _ => return Err("expected `SRC DST`, `SRC DST SPORT DPORT` or `SRC DST esp SPI`".into()),
    };
    if src.is_ipv4() != dst.is_ipv4() {
        return Err("source and destination are of different address families".into());
    }
    let port = |t: &str| t.parse::<u16>().map_err(|_| format!("`{t}` is not a port (0-65535)"));
    match f.as_slice() {
        [_, _] => Ok(FlowTuple::ip(src, dst, 0)),
        [_, _, esp, spi] if esp.eq_ignore_ascii_case("esp") => Ok(FlowTuple::esp(src, dst, parse_spi(spi)?)),
        [_, _, sp, dp] => Ok(FlowTuple::tcp(src, dst, port(sp)?, port(dp)?)),
        _ => Err("expected `SRC DST`, `SRC DST SPORT DPORT` or `SRC DST esp SPI`".into()),
    }
}

fn parse_spi(t: &str) -> Result<u32, String> {
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("`{t}` is not an SPI (decimal or 0x-hex, 32 bits)"))
}

/// Flow key for the top-flows table.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: Option<u16>,
    dport: Option<u16>,
    spi: Option<u32>,
}

struct FlowStat {
    packets: u64,
    bytes: u64,
    hash: Option<u32>,
    queue: u16,
}

fn pcap(o: &Options) -> Result<(), Failure> {
    let Some(path) = &o.file else {
        return Err(Failure::Usage("`pcap` needs a FILE".into()));
    };
    let h = hasher(o)?;
    let queues = o.queues.unwrap_or(4);
    let reta = reta(o, queues)?;
    let mut reader = wirespeed_pcap::CaptureReader::open(path).map_err(|e| Failure::Run(e.to_string()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut per_queue = vec![0u64; usize::from(queues)];
    let (mut total, mut non_ip, mut fragments) = (0u64, 0u64, 0u64);
    let mut flows: HashMap<FlowKey, FlowStat> = HashMap::new();
    let mut failure = None;
    while let Some(frame) = reader.next_frame() {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                failure = Some(Failure::Run(e.to_string()));
                break;
            }
        };
        total += 1;
        let info = match frame.l3() {
            Some((ethertype, off)) => PacketInfo::parse_l3(ethertype, frame.data.get(off..).unwrap_or(&[])),
            None => PacketInfo::default(),
        };
        let hash = info.tuple.and_then(|t| h.hash_tuple(&t));
        let queue = reta.queue(hash.unwrap_or(0));
        if let Some(c) = per_queue.get_mut(usize::from(queue)) {
            *c += 1;
        }
        fragments += u64::from(info.fragment);
        let Some(t) = info.tuple else {
            non_ip += 1;
            if o.dump {
                writeln!(out, "{total} - - - - - - {queue}").map_err(out_err)?;
            }
            continue;
        };
        let ports = t.ports();
        let key = FlowKey {
            src: t.src,
            dst: t.dst,
            proto: t.proto,
            sport: ports.map(|p| p.0),
            dport: ports.map(|p| p.1),
            spi: t.spi(),
        };
        let stat = flows.entry(key).or_insert(FlowStat { packets: 0, bytes: 0, hash, queue });
        stat.packets += 1;
        stat.bytes += u64::from(frame.orig_len);
        if o.dump {
            let dash = |v: Option<u16>| v.map_or("-".to_string(), |p| p.to_string());
            let hs = hash.map_or("-".to_string(), |x| format!("0x{x:08x}"));
            let line = writeln!(
                out,
                "{total} {} {} {} {} {} {hs} {queue}",
                t.src,
                t.dst,
                t.proto,
                dash(key.sport),
                dash(key.dport)
            );
            if let Err(e) = line {
                return match out_err(e) {
                    Failure::Run(m) if m.is_empty() => Ok(()),
                    f => Err(f),
                };
            }
        }
    }
    let summary = summary(&mut out, o, path, &h, &per_queue, total, non_ip, fragments, &flows);
    match summary.and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(Failure::Run(format!("writing output: {e}"))),
        Ok(()) => {}
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn summary(
    out: &mut impl Write,
    o: &Options,
    path: &str,
    h: &RssHasher,
    per_queue: &[u64],
    total: u64,
    non_ip: u64,
    fragments: u64,
    flows: &HashMap<FlowKey, FlowStat>,
) -> std::io::Result<()> {
    let w = if o.dump { "# " } else { "" };
    writeln!(
        out,
        "{w}{path}: {total} packets ({non_ip} non-IP, {fragments} fragments), {} flows; mode {}, key {} bytes, RETA {} over {} queues",
        flows.len(),
        h.mode().name(),
        h.key().len(),
        o.reta_size,
        per_queue.len()
    )?;
    for (q, n) in per_queue.iter().enumerate() {
        let pct = if total > 0 { 100.0 * *n as f64 / total as f64 } else { 0.0 };
        writeln!(out, "{w}queue {q}: {n} packets ({pct:.1}%)")?;
    }
    let max = per_queue.iter().copied().max().unwrap_or(0) as f64;
    let mean = total as f64 / per_queue.len().max(1) as f64;
    if mean > 0.0 {
        writeln!(out, "{w}imbalance (max/mean): {:.3}", max / mean)?;
    } else {
        writeln!(out, "{w}imbalance (max/mean): - (no packets)")?;
    }
    let mut top: Vec<(&FlowKey, &FlowStat)> = flows.iter().collect();
    top.sort_by(|a, b| {
        b.1.packets.cmp(&a.1.packets).then(b.1.bytes.cmp(&a.1.bytes)).then_with(|| {
            (a.0.src, a.0.dst, a.0.proto, a.0.sport, a.0.dport, a.0.spi)
                .cmp(&(b.0.src, b.0.dst, b.0.proto, b.0.sport, b.0.dport, b.0.spi))
        })
    });
    if !top.is_empty() && o.top > 0 {
        writeln!(out, "{w}top flows (packets bytes src dst proto sport dport spi hash queue):")?;
    }
    let dash = |v: Option<u16>| v.map_or("-".to_string(), |p| p.to_string());
    for (k, s) in top.into_iter().take(o.top) {
        writeln!(
            out,
            "{w}  {} {} {} {} {} {} {} {} {} {}",
            s.packets,
            s.bytes,
            k.src,
            k.dst,
            k.proto,
            dash(k.sport),
            dash(k.dport),
            k.spi.map_or("-".to_string(), |x| format!("0x{x:08x}")),
            s.hash.map_or("-".to_string(), |x| format!("0x{x:08x}")),
            s.queue
        )?;
    }
    Ok(())
}
