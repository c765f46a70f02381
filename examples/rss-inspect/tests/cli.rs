//! `rss-inspect` end to end: the Microsoft RSS vectors and the symmetric-mode vectors of core's
//! `rss` tests through `hash`, errors naming the line, and `pcap` over every file of the tcpdump
//! corpus (testing/corpus/tcpdump) without a panic.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rss-inspect"))
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rss-inspect");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn stdout_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
}

/// Microsoft RSS verification suite (IPv4 and IPv6 tables): source, destination, ports, and
/// the 2-tuple and 4-tuple hashes under the Microsoft key.
const MS: &[(&str, &str, u16, u16, &str, &str)] = &[
    ("66.9.149.187", "161.142.100.80", 2794, 1766, "0x323e8fc2", "0x51ccc178"),
    ("199.92.111.2", "65.69.140.83", 14230, 4739, "0xd718262a", "0xc626b0ea"),
    ("24.19.198.95", "12.22.207.184", 12898, 38024, "0xd2d0a5de", "0x5c2b394a"),
    ("38.27.205.30", "209.142.163.6", 48228, 2217, "0x82989176", "0xafc7327f"),
    ("153.39.163.191", "202.188.127.2", 44251, 1303, "0x5d1809c5", "0x10e828a2"),
    ("3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 2794, 1766, "0x2cc18cd5", "0x40207d3d"),
    ("3ffe:501:8::260:97ff:fe40:efab", "ff02::1", 14230, 4739, "0x0f0c461c", "0xdde51bbf"),
    (
        "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
        "fe80::200:f8ff:fe21:67cf",
        44251,
        38024,
        "0x4b61e985",
        "0x02d1feef",
    ),
];

#[test]
fn hash_microsoft_vectors() {
    let mut input = String::new();
    let mut want = Vec::new();
    for (s, d, sp, dp, h2, h4) in MS {
        input += &format!("{s} {d}\n{s} {d} {sp} {dp}\n");
        want.push(h2.to_string());
        want.push(h4.to_string());
    }
    let o = run_with_stdin(&["hash"], &input);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout_lines(&o), want);
    // Explicit key, same result.
    let o = run_with_stdin(
        &[
            "hash",
            "--key",
            "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa",
        ],
        &input,
    );
    assert_eq!(stdout_lines(&o), want);
}

/// The symmetric-mode vectors of Microsoft row 1 (as in `core/src/rss/tests.rs`), in both
/// directions.
#[test]
fn hash_symmetric_modes() {
    let input = "66.9.149.187 161.142.100.80\n66.9.149.187 161.142.100.80 2794 1766\n\
                 161.142.100.80 66.9.149.187\n161.142.100.80 66.9.149.187 1766 2794\n";
    for (mode, h2, h4) in [
        ("key", "0x0a590a59", "0x9fcc9fcc"),
        ("xor", "0x887bd7bc", "0xac2b58ca"),
        ("or-xor", "0x277806fe", "0xa65524fa"),
        ("sort", "0x323e8fc2", "0x759c4e0e"),
    ] {
        let o = run_with_stdin(&["hash", "--symmetric", mode], input);
        assert_eq!(stdout_lines(&o), [h2, h4, h2, h4], "mode {mode}");
    }
    // `--key 6d5a` without a mode is the same as `--symmetric key`.
    let o = run_with_stdin(&["hash", "--key", "6d5a"], input);
    assert_eq!(stdout_lines(&o), ["0x0a590a59", "0x9fcc9fcc", "0x0a590a59", "0x9fcc9fcc"]);
}

#[test]
fn hash_queues_and_esp() {
    // 0x51ccc178 & 127 = 120 → 120 % 4 = 0; & 63 = 56 → 56 % 3 = 2.
    let o = run_with_stdin(&["hash", "--queues", "4"], "66.9.149.187 161.142.100.80 2794 1766\n");
    assert_eq!(stdout_lines(&o), ["0x51ccc178 0"]);
    let o = run_with_stdin(
        &["hash", "--queues", "3", "--reta-size", "64"],
        "66.9.149.187 161.142.100.80 2794 1766\n",
    );
    assert_eq!(stdout_lines(&o), ["0x51ccc178 2"]);
    // ESP: src ‖ dst ‖ SPI, decimal and hex give the same hash.
    let o = run_with_stdin(&["hash"], "10.0.0.1 10.0.0.2 esp 0x1000\n10.0.0.1 10.0.0.2 ESP 4096\n");
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], lines[1]);
}

#[test]
fn hash_bad_line_names_it() {
    let o =
        run_with_stdin(&["hash"], "66.9.149.187 161.142.100.80\n\n66.9.149.187 banana\n1.2.3.4 5.6.7.8\n");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 3"), "{err}");
    assert_eq!(stdout_lines(&o), ["0x323e8fc2"], "lines before the error are printed");
    for bad in
        ["1.2.3.4 ::1\n", "1.2.3.4 5.6.7.8 80\n", "1.2.3.4 5.6.7.8 70000 80\n", "1.2.3.4 5.6.7.8 esp zz\n"]
    {
        let o = run_with_stdin(&["hash"], bad);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("line 1"), "{bad}");
    }
    let o = run_with_stdin(&["hash", "--symmetric", "mirror"], "");
    assert_eq!(o.status.code(), Some(2));
    let o = run_with_stdin(&["hash", "--key", "abc"], "");
    assert_eq!(o.status.code(), Some(2));
    let o = run_with_stdin(&["hash", "--queues", "4", "--reta-size", "100"], "");
    assert_eq!(o.status.code(), Some(2));
}

fn corpus_dir() -> PathBuf {
    wirespeed_test_corpus::dir()
}

/// Every corpus file: success, or a clean error (exit 1 with a message) — never a panic.
#[test]
fn pcap_never_panics_on_the_corpus() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} unreadable ({e}); set WIRESPEED_CORPUS", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    assert!(files.len() > 800, "{} files", files.len());
    let (mut ok, mut refused) = (0, 0);
    for f in &files {
        let o = bin().arg("pcap").arg(f).arg("--dump").output().expect("run");
        match o.status.code() {
            Some(0) => ok += 1,
            Some(1) => {
                assert!(!o.stderr.is_empty(), "{}: exit 1 without a message", f.display());
                refused += 1;
            }
            other => panic!("{}: exit {other:?}\n{}", f.display(), String::from_utf8_lossy(&o.stderr)),
        }
    }
    // About a third of the corpus uses link types without an IP layer the reader takes
    // (802.15.4, Bluetooth, USB, ...): those are refused with "unsupported link type".
    assert!(ok > 500, "{ok} files read, {refused} refused");
}

/// The dump of a capture: one line per packet, fields as specified, and its hashes agree with
/// `hash` on the same tuples.
#[test]
fn pcap_dump_lines_agree_with_hash() {
    let f = corpus_dir().join("ISAKMP_sa_setup.pcap");
    let o = bin().args(["pcap"]).arg(&f).args(["--dump", "--queues", "3"]).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = stdout_lines(&o);
    let dump: Vec<Vec<&str>> =
        lines.iter().filter(|l| !l.starts_with('#')).map(|l| l.split(' ').collect()).collect();
    assert!(!dump.is_empty());
    let mut input = String::new();
    for (i, f) in dump.iter().enumerate() {
        assert_eq!(f.len(), 8, "{f:?}");
        assert_eq!(f[0], (i + 1).to_string());
        if f[4] != "-" && (f[3] == "6" || f[3] == "17") {
            input += &format!("{} {} {} {}\n", f[1], f[2], f[4], f[5]);
        }
    }
    assert!(!input.is_empty());
    let h = run_with_stdin(&["hash", "--queues", "3"], &input);
    let want: Vec<String> = dump
        .iter()
        .filter(|f| f[4] != "-" && (f[3] == "6" || f[3] == "17"))
        .map(|f| format!("{} {}", f[6], f[7]))
        .collect();
    assert_eq!(stdout_lines(&h), want);
    assert!(lines.iter().any(|l| l.contains("imbalance (max/mean)")));
}

/// Inputs that are not captures, or cannot be read at all, are refused with exit 1 and a
/// message naming the path and the cause. (Permissions are not used to make a file unreadable:
/// root reads `chmod 000` files, so such a test passes vacuously in CI. A directory and a
/// missing file fail for root too.)
#[test]
fn pcap_refuses_non_captures_and_unreadable_paths() {
    let cases: [(&str, &str); 4] = [
        (concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"), "not a pcap or pcapng file"),
        ("/nonexistent/file.pcap", "open failed"),
        (env!("CARGO_MANIFEST_DIR"), "Is a directory"),
        ("/dev/null", "truncated at byte 0"),
    ];
    for (path, why) in cases {
        let o = bin().args(["pcap", path]).output().expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{path}: {err}");
        assert!(err.contains(path) && err.contains(why), "{path}: want {why:?}, got {err:?}");
        assert!(o.stdout.is_empty(), "{path}: nothing on stdout");
    }
}
