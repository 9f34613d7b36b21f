//! Test support shared by Veil's test suites (std and flate2 only, no
//! workspace crate, so any crate can use it without a dependency cycle).
#![allow(clippy::print_stderr)] // tests say when they skip

pub mod hostile;
pub mod peers;

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

/// The throwaway PostgreSQL server's URL (scripts/pg.sh), from
/// `VEIL_TEST_PG_URL`. `None` (the test skips) when unset, unless
/// `VEIL_REQUIRE_PG` is set, as in CI, where a missing server fails the
/// test: a PostgreSQL variant must never pass by skipping there.
pub fn pg_url() -> Option<String> {
    match std::env::var("VEIL_TEST_PG_URL") {
        Ok(u) => Some(u),
        Err(_) => {
            assert!(
                std::env::var("VEIL_REQUIRE_PG").is_err(),
                "VEIL_REQUIRE_PG is set but VEIL_TEST_PG_URL is not"
            );
            eprintln!("VEIL_TEST_PG_URL not set; skipping");
            None
        }
    }
}

/// The throwaway S3-compatible server (scripts/seaweedfs.sh): its endpoint
/// and bucket, from `VEIL_TEST_S3_ENDPOINT` and `VEIL_TEST_S3_BUCKET`
/// (credentials come from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`).
/// `None` (the test skips) when unset, unless `VEIL_REQUIRE_S3` is set, as
/// in CI, where a missing server fails the test.
pub fn s3_endpoint() -> Option<(String, String)> {
    match (
        std::env::var("VEIL_TEST_S3_ENDPOINT"),
        std::env::var("VEIL_TEST_S3_BUCKET"),
    ) {
        (Ok(e), Ok(b)) => Some((e, b)),
        _ => {
            assert!(
                std::env::var("VEIL_REQUIRE_S3").is_err(),
                "VEIL_REQUIRE_S3 is set but VEIL_TEST_S3_ENDPOINT or VEIL_TEST_S3_BUCKET is not"
            );
            eprintln!("VEIL_TEST_S3_ENDPOINT not set; skipping");
            None
        }
    }
}

/// Veil's bookkeeping files in OUT and review folders (`veil_io::OUT_MARKER`,
/// `veil_io::REVIEW_INDEX`): not content, so [`files`] leaves them out.
pub const BOOKKEEPING: [&str; 2] = [".veil-out.json", ".veil-review.json"];

/// Every regular file below `dir`, sorted, but Veil's [`BOOKKEEPING`].
pub fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if !BOOKKEEPING.iter().any(|b| e.file_name() == *b) {
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

/// The `veil` binary (`bin`: the test's `env!("CARGO_BIN_EXE_veil")`) set
/// up as a site runs it: `$VEIL_HOME` is `home`, the store is `db` or the
/// home's SQLite, and `USER` is fixed (the ledger's operator). Secrets and
/// key locations are never inherited from the shell that runs the tests (a
/// developer's `VEIL_KEY` or `VEIL_LEDGER_KEY_FILE` would change what is
/// tested); a test that needs one sets it on the returned command.
pub fn veil_command(bin: &str, home: &Path, db: Option<&str>) -> std::process::Command {
    let mut c = std::process::Command::new(bin);
    c.env("VEIL_HOME", home).env("USER", "tester");
    for k in [
        "VEIL_DB_URL",
        "VEIL_LEDGER_KEY_FILE",
        "VEIL_KEY",
        "VEIL_KEY_FILE",
        "VEIL_DB_PASSWORD",
        "VEIL_DB_PASSWORD_FILE",
    ] {
        c.env_remove(k);
    }
    if let Some(d) = db {
        c.env("VEIL_DB_URL", d);
    }
    c
}

/// Runs a command to its end: its exit code (-1 when killed by a signal)
/// and its stdout followed by its stderr.
pub fn output(c: &mut std::process::Command) -> (i32, String) {
    let o = c.output().expect("run the command");
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code().unwrap_or(-1), text)
}

/// The output of a command that must succeed (exit 0), else the test
/// fails showing it.
pub fn ok((code, out): (i32, String)) -> String {
    assert_eq!(code, 0, "{out}");
    out
}
