//! Batch robustness (issue 22): one writer per OUT, storage failures stop
//! the run and a rerun completes it exactly, symbolic links in the inputs
//! are not followed, and containment in OUT is checked on resolved paths.
#![allow(clippy::print_stderr)] // tests say when they skip and what they measured

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const VEIL: &str = env!("CARGO_BIN_EXE_veil");

/// Relative path -> sha256 of every file below `root` (empty if absent).
fn digests(root: &Path) -> BTreeMap<String, String> {
    veil_test::tree(root)
        .into_iter()
        .map(|(rel, bytes)| {
            let h = Sha256::digest(&bytes);
            let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
            (rel, hex)
        })
        .collect()
}

/// `veil deid INPUTS --out OUT --key KEY --jobs 1 [extra]`.
fn deid(inputs: &[&Path], out: &Path, key: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(VEIL);
    c.arg("deid");
    for i in inputs {
        c.arg(i);
    }
    c.arg("--out")
        .arg(out)
        .arg("--key")
        .arg(key)
        .args(["--jobs", "1"])
        .args(extra);
    c
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// OUT with its review folder, as one map (review entries prefixed).
fn out_and_review(out: &Path) -> BTreeMap<String, String> {
    let mut m = digests(out);
    let mut review = out.as_os_str().to_owned();
    review.push(".review");
    for (rel, h) in digests(Path::new(&review)) {
        m.insert(format!("review:{rel}"), h);
    }
    m
}

#[test]
fn issue_22_second_deid_into_a_locked_out_is_refused_and_the_first_completes() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let tmp = veil_test::scratch("issue22-lock");
    let key = veil_test::new_key(VEIL, &tmp);
    let lone = tmp.join("lone");
    let lone_run = deid(&[&corpus], &lone, &key, &[]).output().unwrap();
    let expected = out_and_review(&lone);
    assert!(expected.len() > 200, "{}", text(&lone_run));

    let out = tmp.join("out");
    let first = deid(&[&corpus], &out, &key, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // start the second run once the first holds OUT (or, without a lock,
    // once it has started writing)
    let start = Instant::now();
    while !out.join(".veil-lock").exists()
        && veil_test::files(&out).is_empty()
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let second = deid(&[&corpus], &out, &key, &[]).output().unwrap();
    let first = first.wait_with_output().unwrap();
    assert_eq!(
        second.status.code(),
        Some(3),
        "second run: {}",
        text(&second)
    );
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another veil run is writing this output folder (pid "),
        "{err}"
    );
    assert_eq!(
        first.status.code(),
        lone_run.status.code(),
        "first run: {}",
        text(&first)
    );
    let got = out_and_review(&out);
    let missing = expected.keys().filter(|k| !got.contains_key(*k)).count();
    assert_eq!(missing, 0, "{missing} outputs missing");
    assert_eq!(got, expected, "the tree differs from a lone run's");

    // a lock left by a killed run is taken over, and said so
    veil_io::atomic::write_all(&out.join(".veil-lock"), b"pid 4000000 on host gone\n").unwrap();
    let again = deid(&[&corpus], &out, &key, &[]).output().unwrap();
    assert_eq!(
        again.status.code(),
        lone_run.status.code(),
        "{}",
        text(&again)
    );
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("taking over a stale lock"), "{err}");
    assert!(err.contains("pid 4000000 on host gone"), "{err}");
    assert_eq!(out_and_review(&out), expected);
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` at `dir`; `None` where mounting is not
    /// permitted (the test then skips, unless VEIL_REQUIRE_TMPFS is set).
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes}"))
            .arg("tmpfs")
            .arg(dir)
            .output();
        match o {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var_os("VEIL_REQUIRE_TMPFS").is_none(),
                    "VEIL_REQUIRE_TMPFS is set but a tmpfs cannot be mounted: {why}"
                );
                eprintln!("cannot mount a tmpfs ({why}); skipping the disk-full test");
                None
            }
        }
    }

    fn resize(&self, bytes: u64) {
        let ok = Command::new("mount")
            .args(["-o"])
            .arg(format!("remount,size={bytes}"))
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn issue_22_disk_full_stops_with_its_own_exit_code_and_a_rerun_completes_exactly() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let tmp = veil_test::scratch("issue22-full");
    let key = veil_test::new_key(VEIL, &tmp);
    // reference: an uninterrupted run with room enough
    let full = tmp.join("full");
    let full_report = tmp.join("full.json");
    let reference = deid(&[&corpus], &full, &key, &["--report"])
        .arg(&full_report)
        .output()
        .unwrap();
    let expected = out_and_review(&full);
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&full_report).unwrap()).unwrap();
    // bytes written for the first `n` inputs (in input order)
    let written = |n: usize| -> u64 {
        let rows = rep["files"].as_array().unwrap();
        rows.iter()
            .take(n)
            .filter_map(|f| match f["status"].as_str() {
                Some("written") => Some(full.join(f["output"].as_str().unwrap())),
                Some("review") => Some(tmp.join("full.review").join(f["output"].as_str().unwrap())),
                _ => None,
            })
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    };
    let size = written(usize::MAX);
    // outputs are committed 256 inputs at a time: room for the first 256
    // and half of the rest, so the run fails after committing some
    let first = written(256);
    assert!(first < size, "the corpus fits one chunk");
    let room = first + (size - first) / 2;
    eprintln!("outputs: {size} bytes, first chunk {first}; tmpfs of {room}");
    let Some(fs) = Tmpfs::mount(&tmp.join("mnt"), room) else {
        std::fs::remove_dir_all(&tmp).unwrap();
        return;
    };
    let out = tmp.join("mnt/out");
    let report = tmp.join("report.json");
    let failed = deid(&[&corpus], &out, &key, &["--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(4), "{}", text(&failed));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("storage failure") && err.contains("no space left"),
        "{err}"
    );
    // nothing partial, and what is there is the reference's
    let partial = out_and_review(&out);
    assert!(!partial.is_empty() && partial.len() < expected.len());
    for (rel, h) in &partial {
        assert!(!rel.contains(".veil-tmp-"), "temporary left: {rel}");
        assert_eq!(Some(h), expected.get(rel), "{rel} is not the reference's");
    }
    eprintln!(
        "disk full after {} of {} outputs",
        partial.len(),
        expected.len()
    );

    // space freed: the rerun completes the tree as an uninterrupted run
    fs.resize(size * 2);
    let rerun = deid(&[&corpus], &out, &key, &["--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(
        rerun.status.code(),
        reference.status.code(),
        "{}",
        text(&rerun)
    );
    assert_eq!(out_and_review(&out), expected, "the rerun's tree differs");
    drop(fs);
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// Two corpus files with different SOP Instance UIDs.
fn two_dicoms(corpus: &Path) -> (PathBuf, PathBuf) {
    let mut found: Vec<(PathBuf, String)> = Vec::new();
    for p in veil_test::files(corpus) {
        let Ok(f) = veil_io::read(&p) else { continue };
        if f.is_dicomdir() {
            continue;
        }
        let uid = |e| f.dataset.ascii(veil_core::Tag(0x0020, e));
        if uid(0x000D).is_none() || uid(0x000E).is_none() {
            continue;
        }
        let Some(sop) = f.dataset.ascii(veil_core::Tag(0x0008, 0x0018)) else {
            continue;
        };
        if found.iter().all(|(_, s)| *s != sop) {
            found.push((p, sop));
        }
        if found.len() == 2 {
            break;
        }
    }
    let b = found.pop().unwrap().0;
    (found.pop().unwrap().0, b)
}

#[test]
fn issue_22_symlinks_in_inputs_are_not_followed_unless_asked_and_stay_inside() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let tmp = veil_test::scratch("issue22-links");
    let key = veil_test::new_key(VEIL, &tmp);
    let (a, b) = two_dicoms(&corpus);
    let inp = tmp.join("in");
    std::fs::create_dir_all(inp.join("sub")).unwrap();
    std::fs::copy(&a, inp.join("sub/a.dcm")).unwrap();
    // a DICOM outside the tree, linked from inside
    std::fs::create_dir_all(tmp.join("elsewhere")).unwrap();
    std::fs::copy(&b, tmp.join("elsewhere/b.dcm")).unwrap();
    std::os::unix::fs::symlink(tmp.join("elsewhere/b.dcm"), inp.join("outside-link")).unwrap();
    // a loop, and a second name of a file inside
    std::os::unix::fs::symlink(&inp, inp.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(inp.join("sub/a.dcm"), inp.join("alias")).unwrap();

    let run = |out: &str, extra: &[&str]| {
        let report = tmp.join(format!("{out}.json"));
        let o = deid(&[&inp], &tmp.join(out), &key, extra)
            .arg("--report")
            .arg(&report)
            .output()
            .unwrap();
        let rep: serde_json::Value = std::fs::read(&report)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        (o, rep)
    };
    // what was skipped, by input name relative to `in`, and why
    let skipped = |rep: &serde_json::Value| -> Vec<(String, String)> {
        rep["files"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|f| f["status"] == "skipped")
            .map(|f| {
                let p = f["input"].as_str().unwrap();
                let rel = Path::new(p).strip_prefix(&inp).unwrap();
                (rel.display().to_string(), f["why"].as_str().unwrap().into())
            })
            .collect()
    };

    // default: no link followed; only the real file is released
    let (o, rep) = run("plain", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("3 symlinks skipped"), "{stdout}");
    let released = out_and_review(&tmp.join("plain"));
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(rep["counts"]["skipped"], 3);
    let s = skipped(&rep);
    let names: Vec<&str> = s.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["alias", "outside-link", "sub/loop"]);
    assert!(
        s.iter().all(|(_, why)| why.contains("not followed")),
        "{s:?}"
    );
    // discovered paths appear only in the site-local report
    let console = format!("{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(!console.contains("outside-link") && !console.contains("loop"));

    // --follow-symlinks: inside the inputs only; the loop is passed over
    let (o, rep) = run("follow", &["--follow-symlinks"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        out_and_review(&tmp.join("follow")),
        out_and_review(&tmp.join("plain"))
    );
    let s = skipped(&rep);
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0].0, "outside-link");
    assert!(s[0].1.contains("outside the inputs"), "{s:?}");
    assert_eq!(s[1].0, "sub/loop");
    assert!(s[1].1.contains("loop"), "{s:?}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn issue_22_report_and_review_inside_out_are_refused_on_resolved_paths() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let tmp = veil_test::scratch("issue22-inside");
    let key = veil_test::new_key(VEIL, &tmp);
    let (a, _) = two_dicoms(&corpus);
    let inp = tmp.join("in");
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::copy(&a, inp.join("a.dcm")).unwrap();
    let out = tmp.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&out, tmp.join("link-to-out")).unwrap();
    let cases: [(&str, PathBuf); 4] = [
        // `nothing` does not exist: `nothing/..` is resolved lexically
        ("--report", tmp.join("nothing/../out/report.json")),
        ("--report", tmp.join("link-to-out/report.json")),
        ("--review", tmp.join("x/../out/review")),
        ("--review", tmp.join("link-to-out/review")),
    ];
    for (flag, path) in cases {
        let o = deid(&[&inp], &out, &key, &[flag])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{flag} {path:?}: {}", text(&o));
        assert!(
            veil_test::files(&out).is_empty(),
            "{flag} {path:?}: something was written into OUT"
        );
    }
    // outside OUT (through `..` that leaves it) is fine
    let o = deid(&[&inp], &out, &key, &["--report"])
        .arg(tmp.join("out/../report.json"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(tmp.join("report.json").is_file());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn issue_22_an_unreadable_subfolder_is_quarantined_and_the_batch_goes_on() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let tmp = veil_test::scratch("issue22-unreadable");
    let (a, b) = two_dicoms(&corpus);
    let inp = tmp.join("in");
    std::fs::create_dir_all(inp.join("locked")).unwrap();
    std::fs::copy(&a, inp.join("a.dcm")).unwrap();
    std::fs::copy(&b, inp.join("locked/b.dcm")).unwrap();
    let outs = tmp.join("outs");
    std::fs::create_dir_all(&outs).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(&outs, 0o777).unwrap();
    mode(&inp.join("locked"), 0o000).unwrap();
    // root reads any folder: run as nobody there
    let uid = Command::new("id").arg("-u").output().unwrap();
    let mut c = if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", VEIL]);
        c
    } else {
        Command::new(VEIL)
    };
    let report = outs.join("r.json");
    let o = c
        .arg("deid")
        .arg(&inp)
        .arg("--out")
        .arg(outs.join("out"))
        .arg("--report")
        .arg(&report)
        .env("VEIL_KEY", "11".repeat(32))
        .output()
        .unwrap();
    mode(&inp.join("locked"), 0o755).unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(rep["counts"]["quarantined"], 1);
    let files = rep["files"].as_array().unwrap();
    let q = files.iter().find(|f| f["status"] == "quarantined").unwrap();
    assert_eq!(q["input"], inp.join("locked").display().to_string());
    assert_eq!(
        q["reason"]["detail"],
        "folder cannot be listed: permission denied"
    );
    assert_eq!(
        out_and_review(&outs.join("out")).len(),
        1,
        "the rest is released"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn issue_22_release_into_a_locked_out_is_refused() {
    let tmp = veil_test::scratch("issue22-release-lock");
    let out = tmp.join("out");
    let held = veil_io::lock::OutLock::acquire(&out).unwrap();
    let inp = tmp.join("in");
    std::fs::create_dir_all(&inp).unwrap();
    let o = Command::new(VEIL)
        .args(["release", "--recipient", "r", "--purpose", "p", "--out"])
        .arg(&out)
        .arg(&inp)
        .env("VEIL_HOME", tmp.join("home"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("another veil run is writing this output folder"),
        "{err}"
    );
    drop(held);
    assert!(
        veil_test::files(&out).is_empty(),
        "nothing written, lock released"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}
