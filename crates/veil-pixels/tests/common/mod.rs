//! Shared by the test files: where the corpus is.
#![allow(dead_code, clippy::print_stderr)]

use std::path::{Path, PathBuf};

/// The real-file corpus: `VEIL_CORPUS`, else the workspace's
/// `target/corpus/base`. `None` (skip) if absent, unless
/// `VEIL_REQUIRE_CORPUS` is set (CI), where absence fails.
pub fn corpus() -> Option<PathBuf> {
    let p = std::env::var_os("VEIL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/corpus/base"));
    if p.is_dir() {
        return Some(p);
    }
    assert!(
        std::env::var_os("VEIL_REQUIRE_CORPUS").is_none(),
        "VEIL_REQUIRE_CORPUS is set but the corpus is missing"
    );
    eprintln!("corpus not found; skipping");
    None
}

/// Every regular file below `dir`, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// A corpus file by the end of its name.
pub fn find(corpus: &Path, suffix: &str) -> PathBuf {
    files(corpus)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("corpus file *{suffix} missing"))
}
