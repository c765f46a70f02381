//! Hand-built capture files for the tests, written field by field from the format
//! specifications (libpcap's pcap-savefile(5) and draft-ietf-opsawg-pcapng), independently of
//! the crate's own writer.
#![allow(dead_code)]

use std::path::PathBuf;

/// An IPv4 + UDP packet built per RFC 791 / RFC 768 between the RFC 5737 documentation
/// addresses 192.0.2.1:1234 -> 198.51.100.1:53, with 4 payload bytes.
pub const IPV4_UDP: [u8; 32] = [
    0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 192, 0, 2, 1, 198, 51, 100, 1,
    0x04, 0xd2, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, b'w', b's', b'p', b'd',
];

/// An IPv6 + UDP packet built per RFC 8200 / RFC 768 between the RFC 3849 documentation
/// addresses 2001:db8::1 -> 2001:db8::2, with 4 payload bytes.
pub fn ipv6_udp() -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0, 0, 12, 17, 64];
    v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    v.extend_from_slice(&[0x04, 0xd2, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, b'w', b's', b'p', b'd']);
    v
}

/// An Ethernet II frame (IEEE 802.3 clause 3 layout) around `payload`.
pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Byte-order aware field writer.
#[derive(Clone, Copy)]
pub struct Order {
    pub big: bool,
}

impl Order {
    pub fn u16(self, v: &mut Vec<u8>, x: u16) {
        v.extend_from_slice(&if self.big { x.to_be_bytes() } else { x.to_le_bytes() });
    }
    pub fn u32(self, v: &mut Vec<u8>, x: u32) {
        v.extend_from_slice(&if self.big { x.to_be_bytes() } else { x.to_le_bytes() });
    }
    pub fn u64(self, v: &mut Vec<u8>, x: u64) {
        v.extend_from_slice(&if self.big { x.to_be_bytes() } else { x.to_le_bytes() });
    }
}

/// One classic pcap record: seconds, fraction (µs or ns), data, original length.
pub struct Rec<'a> {
    pub sec: u32,
    pub frac: u32,
    pub data: &'a [u8],
    pub orig: u32,
}

/// A classic pcap file with `magic` (written in the file's byte order) and `link`.
pub fn classic(big: bool, magic: u32, link: u32, recs: &[Rec<'_>]) -> Vec<u8> {
    let o = Order { big };
    let mut v = Vec::new();
    o.u32(&mut v, magic);
    o.u16(&mut v, 2);
    o.u16(&mut v, 4);
    o.u32(&mut v, 0); // thiszone
    o.u32(&mut v, 0); // sigfigs
    o.u32(&mut v, 65535);
    o.u32(&mut v, link);
    for r in recs {
        o.u32(&mut v, r.sec);
        o.u32(&mut v, r.frac);
        o.u32(&mut v, r.data.len() as u32);
        o.u32(&mut v, r.orig);
        if magic == 0xa1b2_cd34 {
            v.extend_from_slice(&[0; 8]); // ifindex, protocol, pkt_type, pad
        }
        v.extend_from_slice(r.data);
    }
    v
}

/// A pcapng file under construction.
pub struct Ng {
    pub o: Order,
    pub v: Vec<u8>,
}

impl Ng {
    pub fn new() -> Ng {
        Ng { o: Order { big: false }, v: Vec::new() }
    }

    /// A block: type, total length, body padded to 32 bits, total length again.
    pub fn block(&mut self, btype: u32, body: &[u8]) -> &mut Self {
        let padded = body.len().div_ceil(4) * 4;
        let len = 12 + padded as u32;
        let o = self.o;
        o.u32(&mut self.v, btype);
        o.u32(&mut self.v, len);
        self.v.extend_from_slice(body);
        self.v.resize(self.v.len() + padded - body.len(), 0);
        o.u32(&mut self.v, len);
        self
    }

    /// A Section Header Block in byte order `big` (switches the builder to it).
    pub fn shb(&mut self, big: bool) -> &mut Self {
        self.o = Order { big };
        let o = self.o;
        let mut b = Vec::new();
        o.u32(&mut b, 0x1a2b_3c4d);
        o.u16(&mut b, 1);
        o.u16(&mut b, 0);
        o.u64(&mut b, u64::MAX); // section length unknown
        // shb_userappl option (code 4), 9 bytes: exercises option padding.
        o.u16(&mut b, 4);
        o.u16(&mut b, 9);
        b.extend_from_slice(b"wirespeed\0\0\0");
        o.u16(&mut b, 0);
        o.u16(&mut b, 0);
        self.block(0x0a0d_0d0a, &b)
    }

    /// An Interface Description Block, with an `if_name` option first (odd length, padded) and
    /// then the given `if_tsresol` / `if_tsoffset`.
    pub fn idb(&mut self, link: u16, snaplen: u32, tsresol: Option<u8>, tsoffset: Option<i64>) -> &mut Self {
        let o = self.o;
        let mut b = Vec::new();
        o.u16(&mut b, link);
        o.u16(&mut b, 0);
        o.u32(&mut b, snaplen);
        o.u16(&mut b, 2); // if_name
        o.u16(&mut b, 3);
        b.extend_from_slice(b"lo0\0");
        if let Some(r) = tsresol {
            o.u16(&mut b, 9);
            o.u16(&mut b, 1);
            b.extend_from_slice(&[r, 0, 0, 0]);
        }
        if let Some(off) = tsoffset {
            o.u16(&mut b, 14);
            o.u16(&mut b, 8);
            o.u64(&mut b, off as u64);
        }
        o.u16(&mut b, 0);
        o.u16(&mut b, 0);
        self.block(1, &b)
    }

    /// An Enhanced Packet Block.
    pub fn epb(&mut self, iface: u32, ts: u64, data: &[u8], orig: u32) -> &mut Self {
        let o = self.o;
        let mut b = Vec::new();
        o.u32(&mut b, iface);
        o.u32(&mut b, (ts >> 32) as u32);
        o.u32(&mut b, ts as u32);
        o.u32(&mut b, data.len() as u32);
        o.u32(&mut b, orig);
        b.extend_from_slice(data);
        b.resize(b.len().div_ceil(4) * 4, 0);
        // epb_flags option (code 2, 4 bytes): inbound.
        o.u16(&mut b, 2);
        o.u16(&mut b, 4);
        o.u32(&mut b, 1);
        o.u16(&mut b, 0);
        o.u16(&mut b, 0);
        self.block(6, &b)
    }

    /// A Simple Packet Block.
    pub fn spb(&mut self, data: &[u8], orig: u32) -> &mut Self {
        let o = self.o;
        let mut b = Vec::new();
        o.u32(&mut b, orig);
        b.extend_from_slice(data);
        self.block(3, &b)
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.v.clone()
    }
}

/// A unique path under the system temp directory for this test process.
pub fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wirespeed-pcap-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The vendored tcpdump corpus directory (`testing/corpus/tcpdump`).
pub fn corpus_dir() -> PathBuf {
    wirespeed_test_corpus::dir()
}

/// A corpus file (panics when missing: the corpus is part of the repository).
pub fn corpus_file(name: &str) -> PathBuf {
    wirespeed_test_corpus::file(name)
}

/// An Ethernet frame carrying IPv4 (RFC 791, 20-byte header) or IPv6 (RFC 8200) with a TCP
/// (RFC 9293, 20-byte header) or UDP (RFC 768) header and 8 payload bytes; checksums zero.
/// Addresses come from the documentation ranges: 198.18.0.0/15 (RFC 2544) for IPv4,
/// 2001:db8::/32 (RFC 3849) for IPv6, with `src`/`dst` as the host part.
pub fn flow_frame(v6: bool, proto: u8, src: u16, dst: u16, sport: u16, dport: u16) -> Vec<u8> {
    let l4_len = if proto == 6 { 20 } else { 8 } + 8;
    let mut l4 = vec![0u8; l4_len];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        l4[12] = 5 << 4; // data offset
        l4[13] = 0x18; // PSH ACK
    } else {
        l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    }
    let ip = if v6 {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(l4_len as u16).to_be_bytes());
        h.extend_from_slice(&[proto, 64]);
        for host in [src, dst] {
            h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            h.extend_from_slice(&host.to_be_bytes());
        }
        h
    } else {
        let total = (20 + l4_len) as u16;
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        for host in [src, dst] {
            h.extend_from_slice(&[198, 18]);
            h.extend_from_slice(&host.to_be_bytes());
        }
        h
    };
    ethernet(if v6 { 0x86dd } else { 0x0800 }, &[ip, l4].concat())
}
