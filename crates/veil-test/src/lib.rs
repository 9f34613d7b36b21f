//! Test support shared by Veil's test suites (std and flate2 only, no
//! workspace crate, so any crate can use it without a dependency cycle).
#![allow(clippy::print_stderr)] // tests say when they skip

pub mod hostile;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The real-file corpus (scripts/fetch-corpus.sh), from `VEIL_CORPUS`.
/// `None` (the test skips) when unset, unless `VEIL_REQUIRE_CORPUS` is set,
/// as in CI, where a missing corpus fails the test.
pub fn corpus() -> Option<PathBuf> {
    match std::env::var("VEIL_CORPUS") {
        Ok(p) => Some(PathBuf::from(p)),
        Err(_) => {
            assert!(
                std::env::var("VEIL_REQUIRE_CORPUS").is_err(),
                "VEIL_REQUIRE_CORPUS is set but VEIL_CORPUS is not"
            );
            eprintln!("VEIL_CORPUS not set; skipping");
            None
        }
    }
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

/// Relative path -> bytes for every file below `root` (empty if absent).
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    files(root)
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&p).expect("read file");
            (rel, bytes)
        })
        .collect()
}

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("veil-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch folder");
    d
}

/// Creates a key file with `veil key new` and returns its path.
pub fn new_key(veil: &str, dir: &Path) -> PathBuf {
    let key = dir.join("k.key");
    let ok = std::process::Command::new(veil)
        .args(["key", "new"])
        .arg(&key)
        .output()
        .expect("run veil key new")
        .status
        .success();
    assert!(ok, "veil key new failed");
    key
}

/// The head volumes with faces (scripts/fetch-heads.sh), from `VEIL_HEADS`
/// or else `target/heads` of the workspace. `None` (the test skips, saying
/// so) when they are missing, unless `VEIL_REQUIRE_HEADS` is set, as in CI.
pub fn heads() -> Option<PathBuf> {
    let dir = std::env::var_os("VEIL_HEADS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/heads"));
    if dir.join("ch2bet.nii.gz").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("VEIL_REQUIRE_HEADS").is_none(),
        "VEIL_REQUIRE_HEADS is set but the heads are missing (scripts/fetch-heads.sh)"
    );
    eprintln!("head volumes missing (scripts/fetch-heads.sh); skipping");
    None
}
