//! Reader and writer against hand-built files (see `common`) and real captures of the tcpdump
//! test corpus: byte orders, timestamp resolutions, every link type, pcapng sections and
//! interfaces, the writer round trip, and truncated / corrupt input.

mod common;

use std::io::Cursor;

use common::*;
use wirespeed_pcap::{
    CaptureFormat, CaptureReader, LinkType, MAX_RECORD, PcapError, PcapWriter, TsResolution, WriterOptions,
};

fn reader(bytes: Vec<u8>) -> Result<CaptureReader, PcapError> {
    CaptureReader::from_reader_named(Cursor::new(bytes), "test.pcap")
}

/// Reads every frame as (data, link, ts, orig, interface); panics on errors.
fn all_frames(r: &mut CaptureReader) -> Vec<(Vec<u8>, LinkType, u64, u32, u32)> {
    let mut v = Vec::new();
    while let Some(f) = r.next_frame() {
        let f = f.unwrap();
        v.push((f.data.to_vec(), f.link, f.ts_nanos, f.orig_len, f.interface));
    }
    v
}

#[test]
fn classic_both_byte_orders_and_resolutions() {
    let a = ethernet(0x0800, &IPV4_UDP);
    let b = ethernet(0x86dd, &ipv6_udp());
    for big in [false, true] {
        for (magic, nano) in [(0xa1b2_c3d4u32, false), (0xa1b2_3c4d, true)] {
            let frac = if nano { 123_456_789 } else { 123_456 };
            let recs = [
                Rec { sec: 1_700_000_000, frac, data: &a, orig: a.len() as u32 },
                Rec { sec: 1_700_000_001, frac: 0, data: &b[..40], orig: b.len() as u32 },
            ];
            let mut r = reader(classic(big, magic, 1, &recs)).unwrap();
            assert_eq!(r.format(), CaptureFormat::Pcap { nanosecond: nano, big_endian: big });
            assert_eq!(r.link_type(), Some(LinkType::Ethernet));
            let frames = all_frames(&mut r);
            let ts0 = 1_700_000_000_000_000_000 + if nano { 123_456_789 } else { 123_456_000 };
            assert_eq!(
                frames,
                vec![
                    (a.clone(), LinkType::Ethernet, ts0, a.len() as u32, 0),
                    (b[..40].to_vec(), LinkType::Ethernet, 1_700_000_001_000_000_000, b.len() as u32, 0),
                ],
                "big={big} nano={nano}"
            );
            assert_eq!(r.frames_read(), 2);
        }
    }
}

#[test]
fn kuznetzov_modified_pcap_records() {
    let a = ethernet(0x0800, &IPV4_UDP);
    let recs = [Rec { sec: 5, frac: 6, data: &a, orig: 99 }, Rec { sec: 7, frac: 8, data: &a, orig: 98 }];
    let mut r = reader(classic(false, 0xa1b2_cd34, 1, &recs)).unwrap();
    let f = all_frames(&mut r);
    assert_eq!(f.len(), 2);
    assert_eq!((f[1].0.as_slice(), f[1].2, f[1].3), (&a[..], 7_000_008_000, 98));
}

/// Each supported link type, as a hand-built record carrying the same IPv4 or IPv6 packet: the
/// network header is found at the right offset and normalisation gives the expected Ethernet.
#[test]
fn every_link_type_finds_l3_and_normalises() {
    let v6 = ipv6_udp();
    let sll = |proto: u16, payload: &[u8]| {
        // packet type 0 (to us), ARPHRD_ETHER, 6-byte address, 2 bytes padding, protocol.
        let mut f = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 9, 0, 0];
        f.extend_from_slice(&proto.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let sll2 = |proto: u16, payload: &[u8]| {
        let mut f = proto.to_be_bytes().to_vec();
        f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 2, 0, 0, 0, 0, 9, 0, 0]);
        f.extend_from_slice(payload);
        f
    };
    let vlan_v6 = {
        let mut p = vec![0x00, 0x2a, 0x86, 0xdd];
        p.extend_from_slice(&v6);
        p
    };
    // (LINKTYPE value, link type, frame, EtherType, network header offset, network packet)
    type Case = (u32, LinkType, Vec<u8>, u16, usize, Vec<u8>);
    let cases: Vec<Case> = vec![
        (1, LinkType::Ethernet, ethernet(0x0800, &IPV4_UDP), 0x0800, 14, IPV4_UDP.to_vec()),
        (1, LinkType::Ethernet, ethernet(0x8100, &vlan_v6), 0x86dd, 18, v6.clone()),
        (101, LinkType::Raw, IPV4_UDP.to_vec(), 0x0800, 0, IPV4_UDP.to_vec()),
        (101, LinkType::Raw, v6.clone(), 0x86dd, 0, v6.clone()),
        (12, LinkType::Raw, v6.clone(), 0x86dd, 0, v6.clone()),
        (14, LinkType::Raw, IPV4_UDP.to_vec(), 0x0800, 0, IPV4_UDP.to_vec()),
        (228, LinkType::Ipv4, IPV4_UDP.to_vec(), 0x0800, 0, IPV4_UDP.to_vec()),
        (229, LinkType::Ipv6, v6.clone(), 0x86dd, 0, v6.clone()),
        (113, LinkType::LinuxSll, sll(0x0800, &IPV4_UDP), 0x0800, 16, IPV4_UDP.to_vec()),
        (113, LinkType::LinuxSll, sll(0x8100, &vlan_v6), 0x86dd, 20, v6.clone()),
        (276, LinkType::LinuxSll2, sll2(0x86dd, &v6), 0x86dd, 20, v6.clone()),
        (0, LinkType::Null, [&2u32.to_le_bytes()[..], &IPV4_UDP].concat(), 0x0800, 4, IPV4_UDP.to_vec()),
        (0, LinkType::Null, [&30u32.to_be_bytes()[..], &v6].concat(), 0x86dd, 4, v6.clone()),
        (108, LinkType::Loop, [&24u32.to_be_bytes()[..], &v6].concat(), 0x86dd, 4, v6.clone()),
    ];
    for (raw, link, frame, ethertype, off, l3) in cases {
        for big in [false, true] {
            let recs = [Rec { sec: 1, frac: 2, data: &frame, orig: frame.len() as u32 }];
            let mut r = reader(classic(big, 0xa1b2_c3d4, raw, &recs)).unwrap();
            let f = r.next_frame().unwrap().unwrap();
            assert_eq!(f.link, link, "link type {raw}");
            assert_eq!(f.l3(), Some((ethertype, off)), "link type {raw}");
            assert_eq!(&f.data[off..], &l3[..], "link type {raw}");
            let mut out = [0u8; 256];
            let n = f.to_ethernet(&mut out).unwrap();
            assert_eq!(Ok(n), f.ethernet_len());
            assert_eq!(wirespeed_pcap::to_ethernet(&f, &mut out), Some(n));
            let eth = &out[..n];
            if link == LinkType::Ethernet {
                assert_eq!(eth, &frame[..]);
            } else {
                assert_eq!(&eth[..12], &[0; 12], "synthesised MACs are zero");
            }
            // Whatever the link type, the normalised frame parses as Ethernet to the same packet.
            let (et, l3_off) = wirespeed_pcap::link::network_header(LinkType::Ethernet, eth).unwrap();
            assert_eq!((et, &eth[l3_off..]), (ethertype, &l3[..]), "link type {raw}");
        }
    }
}

#[test]
fn unsupported_link_type_names_type_and_file() {
    let path = temp_path("radiotap.pcap");
    std::fs::write(&path, classic(false, 0xa1b2_c3d4, 127, &[])).unwrap();
    let e = CaptureReader::open(&path).unwrap_err();
    assert!(matches!(e, PcapError::UnsupportedLinkType { link_type: 127, interface: None, .. }));
    let msg = e.to_string();
    assert!(msg.contains("unsupported link type 127") && msg.contains("radiotap.pcap"), "{msg}");
    {
        let p = corpus_file("unsupported-link-type-160.pcap");
        let e = CaptureReader::open(&p).unwrap_err();
        assert!(e.to_string().contains("unsupported link type 160"), "{e}");
    }
}

#[test]
fn open_errors_name_the_file() {
    let e = CaptureReader::open("/nonexistent/wirespeed.pcap").unwrap_err();
    assert!(matches!(e, PcapError::Io { op: "open", .. }));
    assert!(e.to_string().contains("/nonexistent/wirespeed.pcap"), "{e}");
    let e = reader(b"\x7fELF and more bytes to follow".to_vec()).unwrap_err();
    assert!(matches!(e, PcapError::NotACapture { magic: 0x7f454c46, .. }), "{e}");
    let mut hdr = classic(false, 0xa1b2_c3d4, 1, &[]);
    hdr[4] = 1; // version 1.4
    assert!(matches!(reader(hdr).unwrap_err(), PcapError::Corrupt { field: "version_major", .. }));
}

/// Several interfaces with different link types and timestamp resolutions, unknown blocks,
/// a Simple Packet Block, a packet on an unsupported interface, and a second section in the
/// other byte order.
#[test]
fn pcapng_sections_interfaces_and_resolutions() {
    let eth = ethernet(0x0800, &IPV4_UDP);
    let v6 = ipv6_udp();
    let mut ng = Ng::new();
    ng.shb(false)
        .idb(1, 0, None, None) // 0: Ethernet, default µs
        .block(0x0000_0bad, b"custom block, skipped") // unknown type
        .idb(101, 65535, Some(9), None) // 1: raw, ns
        .idb(113, 0, Some(0x80 | 10), Some(100)) // 2: SLL, 2^-10 s, +100 s offset
        .idb(127, 0, None, None) // 3: radiotap, unsupported
        .epb(0, 1_700_000_000_123_456, &eth, eth.len() as u32)
        .block(5, &[0; 20]) // Interface Statistics Block, skipped
        .epb(1, 1_700_000_000_123_456_789, &v6[..30], v6.len() as u32)
        .epb(3, 1, &[0; 8], 8)
        .epb(
            2,
            3 * 1024 + 512,
            &[&[0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00][..], &IPV4_UDP].concat(),
            48,
        )
        .spb(&eth, eth.len() as u32)
        .shb(true)
        .idb(108, 0, Some(6), None) // new section: interface 0 is now OpenBSD loop, big-endian
        .epb(0, 42, &[&24u32.to_be_bytes()[..], &v6].concat(), 56);
    let mut r = reader(ng.bytes()).unwrap();
    assert_eq!(r.format(), CaptureFormat::PcapNg);
    let mut got = Vec::new();
    let mut unsupported = 0;
    while let Some(f) = r.next_frame() {
        match f {
            Ok(f) => got.push((f.link, f.ts_nanos, f.orig_len, f.interface, f.data.len(), f.l3())),
            Err(e) => {
                assert!(e.is_recoverable(), "{e}");
                assert!(matches!(
                    e,
                    PcapError::UnsupportedLinkType { link_type: 127, interface: Some(3), .. }
                ));
                assert!(e.to_string().contains("pcapng interface 3"), "{e}");
                unsupported += 1;
            }
        }
    }
    assert_eq!(unsupported, 1);
    assert_eq!(
        got,
        vec![
            (LinkType::Ethernet, 1_700_000_000_123_456_000, 46, 0, 46, Some((0x0800, 14))),
            (LinkType::Raw, 1_700_000_000_123_456_789, 52, 1, 30, Some((0x86dd, 0))),
            (LinkType::LinuxSll, 100_000_000_000 + 3_500_000_000, 48, 2, 48, Some((0x0800, 16))),
            // SPB: no timestamp, interface 0, captured length from the block.
            (LinkType::Ethernet, 0, 46, 0, 46, Some((0x0800, 14))),
            (LinkType::Loop, 42_000, 56, 0, 56, Some((0x86dd, 4))),
        ]
    );
}

#[test]
fn pcapng_simple_packet_block_honours_snaplen() {
    let eth = ethernet(0x0800, &IPV4_UDP);
    let mut ng = Ng::new();
    ng.shb(true).idb(1, 20, None, None).spb(&eth[..20], eth.len() as u32);
    let mut r = reader(ng.bytes()).unwrap();
    let f = r.next_frame().unwrap().unwrap();
    assert_eq!((f.data, f.orig_len), (&eth[..20], 46));
}

#[test]
fn pcapng_structural_errors() {
    let eth = ethernet(0x0800, &IPV4_UDP);
    // Packet on an interface never described.
    let mut ng = Ng::new();
    ng.shb(false).idb(1, 0, None, None).epb(4, 0, &eth, 46);
    let mut r = reader(ng.bytes()).unwrap();
    let e = r.next_frame().unwrap().unwrap_err();
    assert!(matches!(e, PcapError::Corrupt { field: "interface_id", value: 4, .. }), "{e}");
    assert!(r.next_frame().is_none(), "a fatal error ends the stream");

    // Captured length larger than the block.
    let mut ng = Ng::new();
    ng.shb(false).idb(1, 0, None, None).epb(0, 0, &eth, 46);
    let mut bytes = ng.bytes();
    let caplen_at = bytes.len() - (12 + 20 + 48 + 12) + 8 + 12;
    bytes[caplen_at..caplen_at + 4].copy_from_slice(&1000u32.to_le_bytes());
    let e = reader(bytes).unwrap().next_frame().unwrap().unwrap_err();
    assert!(matches!(e, PcapError::Corrupt { field: "captured_packet_length", .. }), "{e}");

    // Trailing length differs from the leading one.
    let mut ng = Ng::new();
    ng.shb(false).idb(1, 0, None, None);
    let mut bytes = ng.bytes();
    let n = bytes.len();
    bytes[n - 4] ^= 0x10;
    let e = reader(bytes).unwrap().next_frame().unwrap().unwrap_err();
    assert!(matches!(e, PcapError::Corrupt { field: "trailing block_total_length", .. }), "{e}");

    // Block length below the minimum, or not a multiple of 4.
    for bad in [8u32, 30] {
        let mut ng = Ng::new();
        ng.shb(false);
        let mut bytes = ng.bytes();
        bytes.extend_from_slice(&6u32.to_le_bytes());
        bytes.extend_from_slice(&bad.to_le_bytes());
        bytes.extend_from_slice(&[0; 64]);
        let e = reader(bytes).unwrap().next_frame().unwrap().unwrap_err();
        assert!(matches!(e, PcapError::Corrupt { field: "block_total_length", .. }), "{e}");
    }

    // Byte-order magic wrong.
    let mut ng = Ng::new();
    ng.shb(false);
    let mut bytes = ng.bytes();
    bytes[8] = 0;
    assert!(matches!(reader(bytes).unwrap_err(), PcapError::Corrupt { field: "byte_order_magic", .. }));
}

#[test]
fn hostile_lengths_are_refused_before_allocating() {
    // A classic record claiming 4 GiB.
    let mut bytes = classic(false, 0xa1b2_c3d4, 1, &[]);
    bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    let e = reader(bytes).unwrap().next_frame().unwrap().unwrap_err();
    assert!(
        matches!(e, PcapError::RecordTooLarge { len: 0xffff_ffff, max, .. } if max == MAX_RECORD as u64),
        "{e}"
    );
    // One byte over the limit is refused, the limit itself is accepted.
    for (len, ok) in [(MAX_RECORD, true), (MAX_RECORD + 1, false)] {
        let data = vec![0u8; len as usize];
        let recs = [Rec { sec: 0, frac: 0, data: &data, orig: len }];
        let r =
            reader(classic(true, 0xa1b2_c3d4, 1, &recs)).unwrap().next_frame().unwrap().map(|f| f.data.len());
        assert_eq!(r.is_ok(), ok, "{len}");
    }
    // A pcapng packet block claiming 4 GiB, and an unknown block of 4 GiB that is skipped
    // (without buffering) until the file ends.
    let mut ng = Ng::new();
    ng.shb(false).idb(1, 0, None, None);
    let mut bytes = ng.bytes();
    bytes.extend_from_slice(&6u32.to_le_bytes());
    bytes.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    let e = reader(bytes).unwrap().next_frame().unwrap().unwrap_err();
    assert!(matches!(e, PcapError::RecordTooLarge { .. }), "{e}");
    let mut bytes = ng.bytes();
    bytes.extend_from_slice(&0x0badu32.to_le_bytes());
    bytes.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    bytes.extend_from_slice(&[0; 100]);
    let e = reader(bytes).unwrap().next_frame().unwrap().unwrap_err();
    assert!(matches!(e, PcapError::Truncated { what: "block", got: 100, .. }), "{e}");
}

/// Every prefix of a valid file reads without panic: the frames before the cut come out intact,
/// then either a clean end (cut on a record boundary) or a `Truncated` error.
#[test]
fn every_truncation_is_an_error_or_a_clean_end() {
    let eth = ethernet(0x0800, &IPV4_UDP);
    let v6 = ethernet(0x86dd, &ipv6_udp());
    let recs = [
        Rec { sec: 1, frac: 1, data: &eth, orig: 46 },
        Rec { sec: 2, frac: 2, data: &v6, orig: v6.len() as u32 },
        Rec { sec: 3, frac: 3, data: &eth, orig: 46 },
    ];
    let mut ng = Ng::new();
    ng.shb(false)
        .idb(1, 0, None, None)
        .epb(0, 1, &eth, 46)
        .block(0xbad, &[1; 10])
        .epb(0, 2, &v6, v6.len() as u32)
        .shb(true)
        .idb(1, 0, None, None)
        .epb(0, 3, &eth, 46);
    for file in [classic(false, 0xa1b2_c3d4, 1, &recs), classic(true, 0xa1b2_3c4d, 1, &recs), ng.bytes()] {
        let full = all_frames(&mut reader(file.clone()).unwrap());
        assert_eq!(full.len(), 3);
        let mut clean_ends = 0;
        for cut in 0..file.len() {
            let Ok(mut r) = reader(file[..cut].to_vec()) else { continue };
            let mut frames = Vec::new();
            let mut err = None;
            while let Some(f) = r.next_frame() {
                match f {
                    Ok(f) => frames.push((f.data.to_vec(), f.link, f.ts_nanos, f.orig_len, f.interface)),
                    Err(e) => err = Some(e),
                }
            }
            assert!(frames.len() < 3 && frames[..] == full[..frames.len()], "cut {cut}");
            match err {
                Some(PcapError::Truncated { .. }) => {}
                Some(e) => panic!("cut {cut}: unexpected {e}"),
                None => clean_ends += 1,
            }
        }
        assert!(clean_ends >= 3, "record boundaries end cleanly");
    }
}

/// Deterministic byte flips over a valid pcapng and pcap file: never a panic, never a frame
/// longer than the limit.
#[test]
fn corrupted_bytes_never_panic() {
    let eth = ethernet(0x0800, &IPV4_UDP);
    let mut ng = Ng::new();
    ng.shb(false)
        .idb(1, 0, Some(9), Some(-5))
        .epb(0, 7, &eth, 46)
        .spb(&eth, 46)
        .idb(113, 0, None, None)
        .epb(1, 9, &eth, 46);
    let recs = [Rec { sec: 1, frac: 1, data: &eth, orig: 46 }, Rec { sec: 2, frac: 2, data: &eth, orig: 46 }];
    let mut state = 0x2545_f491_4f6c_dd1du64; // xorshift64 seed
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for base in [ng.bytes(), classic(false, 0xa1b2_c3d4, 1, &recs)] {
        for _ in 0..3000 {
            let mut f = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() % f.len() as u64) as usize;
                f[i] = next() as u8;
            }
            if let Ok(mut r) = reader(f) {
                let mut n = 0;
                while let Some(res) = r.next_frame() {
                    if let Ok(fr) = res {
                        assert!(fr.data.len() <= MAX_RECORD as usize);
                        let _ = fr.l3();
                        let mut out = [0u8; 128];
                        let _ = fr.to_ethernet(&mut out);
                    }
                    n += 1;
                    assert!(n < 100, "reader must make progress");
                }
            }
        }
    }
}

/// Writer then reader: frames, lengths and timestamps come back exactly, for both resolutions,
/// and the written bytes are the pcap layout field for field.
#[test]
fn writer_round_trip_is_byte_exact() {
    let frames: Vec<Vec<u8>> = vec![
        ethernet(0x0800, &IPV4_UDP),
        ethernet(0x86dd, &ipv6_udp()),
        ethernet(0x0800, &[0xab; 1500]),
        ethernet(0x0800, &[0xcd; 9000]),
        vec![0x42; 60],
    ];
    for resolution in [TsResolution::Micro, TsResolution::Nano] {
        let opts = WriterOptions { resolution, ..WriterOptions::default() };
        let mut w = PcapWriter::with_options_named(Vec::new(), opts, "mem").unwrap();
        let ts = |i: usize| 1_700_000_000_000_000_000 + i as u64 * 1_000_000_007;
        for (i, f) in frames.iter().enumerate() {
            w.write_frame(f, ts(i)).unwrap();
        }
        assert_eq!(w.frames_written(), frames.len() as u64);
        let bytes = w.into_inner().unwrap();
        // The same file built field by field from pcap-savefile(5).
        let (magic, div) = match resolution {
            TsResolution::Micro => (0xa1b2_c3d4, 1000),
            TsResolution::Nano => (0xa1b2_3c4d, 1),
        };
        let recs: Vec<Rec<'_>> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| Rec {
                sec: (ts(i) / 1_000_000_000) as u32,
                frac: (ts(i) % 1_000_000_000 / div) as u32,
                data: f,
                orig: f.len() as u32,
            })
            .collect();
        let mut expected = classic(cfg!(target_endian = "big"), magic, 1, &recs);
        expected[16..20].copy_from_slice(&MAX_RECORD.to_ne_bytes()); // snaplen
        assert_eq!(bytes, expected, "{resolution:?}");
        let back = all_frames(&mut reader(bytes).unwrap());
        for (i, (f, got)) in frames.iter().zip(&back).enumerate() {
            let want_ts = ts(i) / div * div;
            assert_eq!(got, &(f.clone(), LinkType::Ethernet, want_ts, f.len() as u32, 0));
        }
    }
}

#[test]
fn writer_cuts_to_snaplen_and_keeps_original_length() {
    let opts = WriterOptions { snaplen: 64, link: LinkType::Raw, ..WriterOptions::default() };
    let mut w = PcapWriter::with_options_named(Vec::new(), opts, "mem").unwrap();
    let big = vec![0x45; 200];
    w.write_frame(&big, 0).unwrap();
    w.write_frame_with_len(&big[..50], 0, 1500).unwrap();
    let mut r = reader(w.into_inner().unwrap()).unwrap();
    assert_eq!(r.link_type(), Some(LinkType::Raw));
    let f = all_frames(&mut r);
    assert_eq!((f[0].0.len(), f[0].3), (64, 200));
    assert_eq!((f[1].0.len(), f[1].3), (50, 1500));
}

#[test]
fn writer_to_file_and_back() {
    let path = temp_path("writer.pcap");
    let mut w = PcapWriter::create(&path).unwrap();
    let f = ethernet(0x0800, &IPV4_UDP);
    for i in 0..1000u64 {
        w.write_frame(&f, i * 1000).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let mut r = CaptureReader::open(&path).unwrap();
    assert_eq!(r.name(), path.display().to_string());
    let frames = all_frames(&mut r);
    assert_eq!(frames.len(), 1000);
    assert!(frames.iter().enumerate().all(|(i, fr)| fr.0 == f && fr.2 == i as u64 * 1000));
    let e = PcapWriter::create("/nonexistent-dir/x.pcap").unwrap_err();
    assert!(
        matches!(e, PcapError::Io { op: "create", .. }) && e.to_string().contains("/nonexistent-dir/x.pcap")
    );
}

/// Real captures of each corpus link type: a little-endian Ethernet capture rewritten by the
/// writer has records identical byte for byte to the original, and the non-Ethernet captures
/// give the expected link type and a network header for every frame.
#[test]
fn corpus_captures_of_each_link_type() {
    // (file, link type, expected EtherTypes of the frames' network headers)
    let cases: [(&str, LinkType, &[u16]); 9] = [
        ("mptcp-v0.pcap", LinkType::Ethernet, &[0x0800]),
        ("802.1ad_QinQ.pcap", LinkType::Ethernet, &[0x0800, 0x86dd, 0x0806]),
        ("LINKTYPE_RAW_ipv4.pcap", LinkType::Raw, &[0x0800]),
        ("LINKTYPE_RAW_ipv6.pcap", LinkType::Raw, &[0x86dd]),
        ("LINKTYPE_IPV4.pcap", LinkType::Ipv4, &[0x0800]),
        ("LINKTYPE_IPV6.pcap", LinkType::Ipv6, &[0x86dd]),
        ("RADIUS-RFC3162.pcap", LinkType::LinuxSll, &[0x0800, 0x86dd]),
        ("tcp-handshake-nano.pcap", LinkType::LinuxSll, &[0x0800, 0x86dd]),
        ("ikev2four.pcap", LinkType::Null, &[0x0800, 0x86dd]),
    ];
    let dir = corpus_dir();
    for (name, link, ethertypes) in cases {
        let mut r = CaptureReader::open(dir.join(name)).unwrap();
        let mut n = 0;
        while let Some(f) = r.next_frame() {
            let f = f.unwrap();
            assert_eq!(f.link, link, "{name}");
            let (et, _) = f.l3().unwrap_or_else(|| panic!("{name}: frame {n} has no network header"));
            assert!(ethertypes.contains(&et), "{name}: frame {n} EtherType {et:#06x}");
            n += 1;
        }
        assert!(n > 0, "{name}");
    }
    // Rewrite an Ethernet capture: same records byte for byte (the header's snaplen may differ).
    let original = std::fs::read(dir.join("mptcp-v0.pcap")).unwrap();
    let mut r = reader(original.clone()).unwrap();
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    while let Some(f) = r.next_frame() {
        let f = f.unwrap();
        w.write_frame_with_len(f.data, f.ts_nanos, f.orig_len).unwrap();
    }
    let rewritten = w.into_inner().unwrap();
    assert_eq!(&rewritten[..16], &original[..16]);
    assert_eq!(&rewritten[20..], &original[20..], "records identical to the original capture");
}

/// The obsolete Packet Block (type 2: 16-bit interface id, 16-bit drops count) still appears in
/// old captures; it reads like an Enhanced Packet Block.
#[test]
fn pcapng_obsolete_packet_block() {
    let eth = ethernet(0x0800, &IPV4_UDP);
    for big in [false, true] {
        let mut ng = Ng::new();
        ng.shb(big).idb(1, 0, None, None).idb(101, 0, Some(9), None);
        let o = ng.o;
        let mut b = Vec::new();
        o.u16(&mut b, 1); // interface 1
        o.u16(&mut b, 7); // drops
        o.u32(&mut b, 0);
        o.u32(&mut b, 123_456_789);
        o.u32(&mut b, IPV4_UDP.len() as u32);
        o.u32(&mut b, 100);
        b.extend_from_slice(&IPV4_UDP);
        ng.block(2, &b).epb(0, 5, &eth, 46);
        let frames = all_frames(&mut reader(ng.bytes()).unwrap());
        assert_eq!(
            frames,
            vec![
                (IPV4_UDP.to_vec(), LinkType::Raw, 123_456_789, 100, 1),
                (eth.clone(), LinkType::Ethernet, 5_000, 46, 0),
            ],
            "big={big}"
        );
    }
}
