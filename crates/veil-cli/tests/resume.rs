//! A run killed with SIGKILL part-way leaves no partial output, and
//! re-running the same command finishes the job without rewriting finished
//! files: the result equals an uninterrupted run, byte for byte.
#![allow(clippy::print_stderr)] // tests report what they measured

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `bytes` is the reference output, or a complete output of the same
/// instance (a duplicate input that the killed run released first).
fn same_instance(rel: &str, bytes: &[u8], want: Option<&Vec<u8>>) {
    let want = want.unwrap_or_else(|| panic!("unexpected output {rel}"));
    if bytes == want.as_slice() {
        return;
    }
    let a = veil_io::read_bytes(bytes.to_vec()).expect("a complete, parsable output");
    let b = veil_io::read_bytes(want.clone()).unwrap();
    let sop = veil_core::Tag(0x0008, 0x0018);
    assert_eq!(
        a.dataset.ascii(sop),
        b.dataset.ascii(sop),
        "{rel}: another instance"
    );
}

/// What a killed run leaves besides outputs, and the rerun removes: its
/// temporaries and its OUT lock file.
fn left_by_killed_run(name: &str) -> bool {
    name.starts_with(".veil-tmp-") || name == ".veil-lock"
}

/// Finished outputs (not temporaries) below `root`.
fn count(root: &Path) -> usize {
    veil_test::files(root)
        .iter()
        .filter(|p| !left_by_killed_run(&p.file_name().unwrap().to_string_lossy()))
        .count()
}

#[test]
fn kill_9_then_rerun_finishes_the_job() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let tmp = veil_test::scratch("resume");
    let veil = env!("CARGO_BIN_EXE_veil");
    let key = veil_test::new_key(veil, &tmp);
    let deid = |out: &PathBuf| {
        let mut c = Command::new(veil);
        c.arg("deid")
            .arg(&corpus)
            .arg("--out")
            .arg(out)
            .arg("--key")
            .arg(&key);
        c.args(["--jobs", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    // reference: one uninterrupted run
    let full = tmp.join("full");
    deid(&full).status().unwrap();
    let expected = veil_test::tree(&full);
    let expected_review = veil_test::tree(&tmp.join("full.review"));

    // interrupted run
    let out = tmp.join("out");
    let mut child = deid(&out).spawn().unwrap();
    let start = Instant::now();
    // outputs appear a chunk at a time; kill as soon as the first chunk is
    // committed, while the next one is in flight
    while count(&out) + count(&tmp.join("out.review")) < 1
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = veil_test::tree(&out);
    let finished = partial
        .keys()
        .chain(veil_test::tree(&tmp.join("out.review")).keys())
        .filter(|r| !left_by_killed_run(r.rsplit('/').next().unwrap()))
        .count();
    eprintln!(
        "killed after {finished} finished outputs of {}",
        expected.len() + expected_review.len()
    );
    // whatever is there is complete and is the reference file
    for (rel, bytes) in &partial {
        if left_by_killed_run(rel.rsplit('/').next().unwrap()) {
            continue; // a temporary or lock of the killed run, removed by the rerun
        }
        same_instance(rel, bytes, expected.get(rel));
    }
    // rerun: finishes, reports the finished files as already done
    let res = deid(&out).stdout(Stdio::piped()).output().unwrap();
    let summary = String::from_utf8_lossy(&res.stdout);
    let done: usize = summary
        .split(", ")
        .find_map(|p| p.strip_suffix(" already done"))
        .and_then(|n| n.trim().parse().ok())
        .expect("summary names the files already done");
    assert_eq!(done, finished, "{summary}");
    for (got, want) in [
        (veil_test::tree(&out), &expected),
        (veil_test::tree(&tmp.join("out.review")), &expected_review),
    ] {
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "rerun produced other files than an uninterrupted run"
        );
        for (rel, bytes) in &got {
            same_instance(rel, bytes, want.get(rel));
        }
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}
