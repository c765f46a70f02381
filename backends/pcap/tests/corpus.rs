//! Every file of the tcpdump test corpus (`testing/corpus/tcpdump`, the captures of tcpdump's own
//! regression suite, BSD licence) goes through the reader: nothing may panic, every file ends in
//! a full read, an unsupported-link-type error or a corrupt/truncated-file error.

mod common;

use std::path::PathBuf;

use common::corpus_dir;
use wirespeed_pcap::{CaptureReader, PcapError};

#[derive(Debug, Default)]
struct Tally {
    full: usize,
    unsupported: usize,
    corrupt: usize,
    not_capture: usize,
    frames: u64,
    frames_with_l3: u64,
    mixed: usize,
}

#[test]
fn whole_tcpdump_corpus_reads_without_panic() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut t = Tally::default();
    let verbose = std::env::var_os("CORPUS_VERBOSE").is_some();
    let mut out = vec![0u8; 300 * 1024];
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut reader = match CaptureReader::open(path) {
            Ok(r) => r,
            Err(PcapError::UnsupportedLinkType { .. }) => {
                t.unsupported += 1;
                continue;
            }
            Err(e @ PcapError::NotACapture { .. }) => {
                if verbose {
                    eprintln!("{name}: {e}");
                }
                t.not_capture += 1;
                continue;
            }
            Err(e) => {
                if verbose {
                    eprintln!("{name}: open: {e}");
                }
                t.corrupt += 1;
                continue;
            }
        };
        let (mut unsupported, mut fatal, mut frames) = (0u64, None, 0u64);
        while let Some(r) = reader.next_frame() {
            match r {
                Ok(f) => {
                    frames += 1;
                    t.frames += 1;
                    assert!(f.data.len() <= wirespeed_pcap::MAX_RECORD as usize);
                    if let Some((_, off)) = f.l3() {
                        assert!(off <= f.data.len(), "{name}: l3 offset past the frame");
                        t.frames_with_l3 += 1;
                    }
                    if let Ok(n) = f.to_ethernet(&mut out) {
                        assert_eq!(Ok(n), f.ethernet_len());
                    }
                }
                Err(e) if e.is_recoverable() => unsupported += 1,
                Err(e) => fatal = Some(e),
            }
        }
        match (fatal, unsupported) {
            (Some(e), _) => {
                if verbose {
                    eprintln!("{name}: after {frames} frames: {e}");
                }
                t.corrupt += 1
            }
            (None, 0) => t.full += 1,
            (None, _) if frames > 0 => {
                t.mixed += 1;
                t.full += 1
            }
            (None, _) => t.unsupported += 1,
        }
    }
    println!("tcpdump corpus: {} files: {t:?}", files.len());
    // Every file lands in exactly one bucket.
    assert_eq!(t.full + t.unsupported + t.corrupt + t.not_capture, files.len());
    // Observed on the 830 captures (+ LICENSE): 552 read fully (9373 frames, 8840 with a network
    // header), 278 of unsupported link types (radiotap, PPP, HDLC, frame relay, ...), none
    // corrupt. The bounds leave a little room, not a lot.
    assert!(t.full >= 540, "only {} of {} files read fully", t.full, files.len());
    assert!(t.full * 100 >= files.len() * 65, "about two thirds of the corpus must be readable");
    assert!(t.corrupt <= 5, "{} files failed as corrupt", t.corrupt);
    assert!(t.frames >= 9000 && t.frames_with_l3 >= 8500, "{t:?}");
}
