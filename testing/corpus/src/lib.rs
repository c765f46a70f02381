//! The tcpdump test suite's captures (`tcpdump/`, 830 files, BSD licence in `tcpdump/LICENSE`),
//! vendored into the repository so every test that reads real traffic finds it from a plain
//! clone. One place decides where the corpus is: `WIRESPEED_CORPUS` overrides (a directory of
//! captures), otherwise this crate's own `tcpdump/` folder.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// The corpus directory. Panics with the path it tried when the directory is missing: the corpus
/// is part of the repository, so a missing one is a broken checkout, not a reason to skip.
pub fn dir() -> PathBuf {
    let d = std::env::var_os("WIRESPEED_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tcpdump")));
    assert!(
        d.is_dir(),
        "tcpdump corpus not found at {} (it is vendored in testing/corpus/tcpdump; WIRESPEED_CORPUS overrides)",
        d.display()
    );
    d
}

/// One capture of the corpus by file name; panics when it is missing (see [`dir`]).
pub fn file(name: &str) -> PathBuf {
    let f = dir().join(name);
    assert!(f.is_file(), "corpus file {} missing", f.display());
    f
}

/// Every file of the corpus except the licence, sorted by name.
pub fn files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("corpus directory unreadable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "LICENSE"))
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_vendored_corpus_is_complete() {
        assert_eq!(super::files().len(), 830);
        assert!(super::dir().join("LICENSE").is_file());
    }
}
