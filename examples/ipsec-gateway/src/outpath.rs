//! Output paths from the command line: the output must be a directory (or not exist yet) and
//! every capture in it a regular file (or not exist yet). Anything else — a FIFO, a device such
//! as `/dev/null`, a socket — is refused with an error naming the path and what it is, instead
//! of blocking on open (a FIFO with no reader) or failing with an unrelated "File exists".

use std::io;
use std::path::{Path, PathBuf};

use crate::demo::DemoError as GatewayError;

/// What a non-regular file is, for the error message.
fn kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

fn refuse(path: &Path, why: String) -> GatewayError {
    GatewayError::File { path: path.to_path_buf(), why }
}

/// Checks that `dir` is a directory or absent, and each of `files` (paths inside it the run
/// will write) is a regular file or absent. Symbolic links are followed, as opening would.
/// The check runs before anything is created; it guards against operator mistakes, not
/// against someone racing to replace the files.
pub fn check_output_paths(dir: &Path, files: &[PathBuf]) -> Result<(), GatewayError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(m) => {
            return Err(refuse(dir, format!("output must be a directory, this is {}", kind(m.file_type()))));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(dir, e.to_string())),
    }
    for f in files {
        match std::fs::metadata(f) {
            Ok(m) if m.is_file() => {}
            Ok(m) => {
                return Err(refuse(
                    f,
                    format!(
                        "exists and is {}, not a regular file; refusing to write a capture there",
                        kind(m.file_type())
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(refuse(f, e.to_string())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wirespeed-outpath-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn directories_and_regular_files_pass() {
        let d = scratch("ok");
        std::fs::write(d.join("input.pcap"), b"old").unwrap();
        check_output_paths(&d, &[d.join("input.pcap"), d.join("output-q0.pcap")]).unwrap();
        check_output_paths(&d.join("new"), &[d.join("new/input.pcap")]).unwrap();
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn devices_files_and_fifos_are_refused() {
        let e = check_output_paths(Path::new("/dev/null"), &[]).unwrap_err().to_string();
        assert!(e.contains("/dev/null") && e.contains("character device"), "{e}");
        let d = scratch("bad");
        let file = d.join("plain");
        std::fs::write(&file, b"x").unwrap();
        let e = check_output_paths(&file, &[]).unwrap_err().to_string();
        assert!(e.contains("must be a directory") && e.contains("regular file"), "{e}");
        std::fs::create_dir(d.join("input.pcap")).unwrap();
        let e = check_output_paths(&d, &[d.join("input.pcap")]).unwrap_err().to_string();
        assert!(e.contains("input.pcap") && e.contains("a directory"), "{e}");
        #[cfg(unix)]
        {
            let fifo = d.join("output-q1.pcap");
            let ok = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success();
            assert!(ok, "mkfifo");
            let e = check_output_paths(&d, &[fifo]).unwrap_err().to_string();
            assert!(e.contains("output-q1.pcap") && e.contains("FIFO"), "{e}");
        }
        let _ = std::fs::remove_dir_all(d);
    }
}
