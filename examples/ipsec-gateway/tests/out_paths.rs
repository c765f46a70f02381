//! `ipsec-gateway demo --out D` with output paths that are not regular files (issue 13 item 6):
//! a clear error, promptly — not a process blocked forever opening a FIFO, nor "File exists".

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the demo with `--out dir`; fails the test if it has not exited after 60 s.
fn demo_out(dir: &std::path::Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipsec-gateway"))
        .args(["demo", "--shards", "1", "--out"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ipsec-gateway");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ipsec-gateway demo --out {} still running after 60 s (blocked?)", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn out_dev_null_is_refused_as_not_a_directory() {
    let (code, err) = demo_out(std::path::Path::new("/dev/null"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/dev/null") && err.contains("must be a directory"), "{err}");
    assert!(!err.contains("File exists"), "{err}");
}

#[cfg(unix)]
#[test]
fn fifo_in_place_of_a_capture_is_refused_without_blocking() {
    let dir: PathBuf = std::env::temp_dir().join(format!("wirespeed-fifo-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("lan-in.pcap");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success(), "mkfifo");
    let (code, err) = demo_out(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("lan-in.pcap") && err.contains("FIFO"), "{err}");
}
