//! Issue 17, guard rails: ordinary mistakes that used to turn into a
//! privacy incident or a silent surprise, each run with the `veil` binary
//! on real corpus files.
//! - a review folder inside an input is refused (its un-reviewed copies
//!   and the pixel page's "before" thumbnails would be read again, and
//!   travel with the input), as one inside OUT is;
//! - a consent typo (recipient, category, purpose) is an error naming the
//!   known ones, `--force` records it anyway; `veil release --purpose` with
//!   an unregistered purpose is an error before anything is logged;
//! - report paths: `-` is standard output, a symlink or a FIFO is written
//!   through, never replaced;
//! - a second `veil deid` with another key (or recipe) into the same OUT is
//!   refused unless `--force-new-key`, and OUT's marker is not an output.
//!
//! The other two guard rails of the issue were already in place and have
//! their tests: retention deletes only in folders Veil published into
//! (`issue_22_release.rs`, `issue_22_retention_deletes_only_what_the_ledger_released`)
//! and `veil verify --source --strict` fails an unpaired output
//! (`verify_everywhere.rs`, `issue_16_own_values_count_everywhere_and_unpaired_outputs_are_searched`).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

const VEIL: &str = env!("CARGO_BIN_EXE_veil");

fn veil(home: &Path, args: &[&str]) -> (i32, String) {
    veil_test::output(veil_test::veil_command(VEIL, home, None).args(args))
}

/// stdout and stderr apart, for the tests of `-`.
fn veil_split(home: &Path, cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let o = veil_test::veil_command(VEIL, home, None)
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Copies a few real images (CT and MR, none held for review) into `dir`.
fn inputs(corpus: &Path, dir: &Path) -> Vec<PathBuf> {
    let names = [
        "pydicom-3.0.2/pydicom__data__test_files__CT_small.dcm",
        "pydicom-3.0.2/pydicom__data__test_files__MR_small.dcm",
    ];
    std::fs::create_dir_all(dir).unwrap();
    names
        .iter()
        .map(|n| {
            let to = dir.join(Path::new(n).file_name().unwrap());
            std::fs::copy(corpus.join(n), &to).unwrap();
            to
        })
        .collect()
}

/// The number of ledger entries, as `veil ledger verify --json` counts them.
fn ledger_size(home: &Path) -> u64 {
    let (code, out) = veil(home, &["ledger", "verify", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["entries"].as_u64().unwrap()
}

#[test]
fn issue_17_a_review_folder_inside_an_input_or_out_is_refused() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let tmp = veil_test::scratch("i17-review-inside");
    let key = veil_test::new_key(VEIL, &tmp);
    let input = tmp.join("in");
    inputs(&corpus, &input);
    let before = veil_test::tree(&input);
    let out = tmp.join("out");
    for review in [input.join("held"), input.join("sub/held"), out.join("held")] {
        let (code, msg) = veil(
            &tmp,
            &[
                "deid",
                &s(&input),
                "--out",
                &s(&out),
                "--key",
                &s(&key),
                "--review",
                &s(&review),
            ],
        );
        assert_eq!(code, 2, "{msg}");
        assert!(msg.contains("must not be inside"), "{msg}");
        assert!(!review.exists(), "nothing was written to the review folder");
    }
    assert_eq!(veil_test::tree(&input), before, "the input is untouched");
    assert!(veil_test::files(&out).is_empty(), "nothing in OUT");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// A site with recipient `acme-ai` (category ai-vendor, purpose
/// ai-training) and one patient's study in `home/in`.
fn site(corpus: &Path, home: &Path) -> PathBuf {
    veil_test::ok(veil(home, &["init"]));
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"t\"\nversion = \"1\"\n").unwrap();
    veil_test::ok(veil(
        home,
        &[
            "recipient",
            "add",
            "acme-ai",
            "--purpose",
            "ai-training",
            "--category",
            "ai-vendor",
            "--recipe",
            &s(&recipe),
            "--retention-days",
            "30",
        ],
    ));
    let input = home.join("in");
    inputs(corpus, &input);
    input
}

#[test]
fn issue_17_consent_typos_are_errors_naming_the_known_ones() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("i17-consent-typo");
    let input = site(&corpus, &home);
    let n0 = ledger_size(&home);
    for (args, unknown, known) in [
        (
            vec!["--recipient", "acme_ai"],
            "unknown recipient acme_ai",
            "acme-ai",
        ),
        (
            vec!["--category", "ai_vendor"],
            "unknown category ai_vendor",
            "ai-vendor",
        ),
        (
            vec!["--purpose", "ai-trainig"],
            "unknown purpose ai-trainig",
            "ai-training",
        ),
    ] {
        let mut a = vec!["consent", "set", "1CT1", "--deny"];
        a.extend(&args);
        let (code, msg) = veil(&home, &a);
        assert_eq!(code, 2, "{msg}");
        assert!(
            msg.contains(unknown) && msg.contains(known) && msg.contains("nothing recorded"),
            "{msg}"
        );
        assert_eq!(ledger_size(&home), n0, "nothing logged for a typo");
    }
    // --force records a provision for a recipient registered later
    let (code, msg) = veil(
        &home,
        &[
            "consent",
            "set",
            "1CT1",
            "--deny",
            "--recipient",
            "later-co",
            "--force",
        ],
    );
    assert_eq!(code, 0, "{msg}");
    assert_eq!(ledger_size(&home), n0 + 1);
    let (code, list) = veil(&home, &["consent", "list", "--patient-id", "1CT1"]);
    assert_eq!(code, 0, "{list}");
    assert!(list.contains("deny recipient later-co"), "{list}");
    let n1 = ledger_size(&home);

    // a release for an unregistered purpose: an error before anything is
    // logged (it used to write a refusal per study into the ledger)
    let out = home.join("out");
    let (code, msg) = veil(
        &home,
        &[
            "release",
            "--recipient",
            "acme-ai",
            "--purpose",
            "ai-trainig",
            &s(&input),
            "--out",
            &s(&out),
        ],
    );
    assert_eq!(code, 2, "{msg}");
    assert!(
        msg.contains("not registered for purpose ai-trainig") && msg.contains("ai-training"),
        "{msg}"
    );
    assert_eq!(ledger_size(&home), n1, "nothing logged");
    assert!(veil_test::files(&out).is_empty(), "nothing in OUT");
    // and a misspelt recipient names the known ones
    let (code, msg) = veil(
        &home,
        &[
            "release",
            "--recipient",
            "acme_ai",
            "--purpose",
            "ai-training",
            &s(&input),
            "--out",
            &s(&out),
        ],
    );
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("known recipients: acme-ai"), "{msg}");
    assert_eq!(ledger_size(&home), n1, "nothing logged");
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_17_report_paths_write_through_links_fifos_and_dash() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let tmp = veil_test::scratch("i17-report-paths");
    let key = veil_test::new_key(VEIL, &tmp);
    let input = tmp.join("in");
    inputs(&corpus, &input);
    let out = tmp.join("out");

    // a symbolic link to the report file: the link stays, its target gets
    // the report (an atomic rename used to replace the link itself)
    let real = tmp.join("reports/real.json");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    veil_io::atomic::write_all(&real, b"old").unwrap();
    let link = tmp.join("report.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (code, msg) = veil(
        &tmp,
        &[
            "deid",
            &s(&input),
            "--out",
            &s(&out),
            "--key",
            &s(&key),
            "--report",
            &s(&link),
        ],
    );
    assert_eq!(code, 0, "{msg}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced by a file"
    );
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&real).unwrap()).unwrap();
    assert_eq!(rep["counts"]["written"], 2, "{rep}");

    // a FIFO: written through, still a FIFO afterwards
    let fifo = tmp.join("verify.fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let reader = {
        let f = fifo.clone();
        std::thread::spawn(move || std::fs::read(f).unwrap())
    };
    let (code, msg) = veil(
        &tmp,
        &[
            "verify",
            &s(&out),
            "--source",
            &s(&input),
            "--json",
            &s(&fifo),
        ],
    );
    let is_fifo = std::fs::symlink_metadata(&fifo)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false);
    assert!(is_fifo, "the FIFO was replaced: {msg}");
    assert_eq!(code, 0, "{msg}");
    let got = reader.join().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(v["summary"]["files"], 2, "{v}");

    // `-`: the report on standard output (parseable), the summary on
    // standard error, no file named `-`
    let (code, stdout, stderr) = veil_split(
        &tmp,
        &tmp,
        &["verify", &s(&out), "--source", &s(&input), "--json", "-"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is the JSON report");
    assert_eq!(v["summary"]["files"], 2);
    assert!(stderr.contains("veil verify"), "{stderr}");
    assert!(!tmp.join("-").exists(), "no file named -");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn issue_17_a_second_deid_with_another_key_or_recipe_is_refused() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let tmp = veil_test::scratch("i17-out-marker");
    let key1 = veil_test::new_key(VEIL, &tmp);
    let key2 = tmp.join("k2.key");
    veil_test::ok(veil(&tmp, &["key", "new", &s(&key2)]));
    let input = tmp.join("in");
    inputs(&corpus, &input);
    let out = tmp.join("out");
    let deid = |key: &Path, extra: &[&str]| {
        let mut a = vec![
            "deid".to_string(),
            s(&input),
            "--out".into(),
            s(&out),
            "--key".into(),
            s(key),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        veil(&tmp, &a)
    };
    let (code, msg) = deid(&key1, &[]);
    assert_eq!(code, 0, "{msg}");
    let first = veil_test::tree(&out);
    assert_eq!(first.len(), 2);
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(".veil-out.json")).unwrap()).unwrap();
    // the marker holds the key id, never the key
    let k1 = std::fs::read_to_string(&key1).unwrap();
    assert!(!marker.to_string().contains(k1.trim()));
    assert_eq!(marker["recipe_sha256"], "builtin");

    // the same settings again: a resumable rerun, accepted
    let (code, msg) = deid(&key1, &[]);
    assert_eq!(code, 0, "{msg}");
    assert!(msg.contains("2 already done"), "{msg}");

    // another key: refused, OUT unchanged
    let (code, msg) = deid(&key2, &[]);
    assert_eq!(code, 2, "{msg}");
    assert!(
        msg.contains("--force-new-key") && msg.contains(marker["key_id"].as_str().unwrap()),
        "{msg}"
    );
    assert_eq!(veil_test::tree(&out), first);
    // another recipe: refused too
    let recipe = tmp.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"other\"\n").unwrap();
    let (code, msg) = deid(&key1, &["--recipe", &s(&recipe)]);
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("recipe"), "{msg}");
    assert_eq!(veil_test::tree(&out), first);

    // the marker is not an output: verify sees only the two objects
    let (code, msg) = veil(&tmp, &["verify", &s(&out), "--source", &s(&input)]);
    assert_eq!(code, 0, "{msg}");
    let json = tmp.join("v.json");
    veil(
        &tmp,
        &[
            "verify",
            &s(&out),
            "--source",
            &s(&input),
            "--json",
            &s(&json),
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["summary"]["files"], 2, "{}", v["summary"]);

    // --force-new-key: written, and the marker keeps both
    let (code, msg) = deid(&key2, &["--force-new-key"]);
    assert_eq!(code, 0, "{msg}");
    assert_eq!(veil_test::files(&out).len(), 4, "two pseudonym sets now");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(".veil-out.json")).unwrap()).unwrap();
    assert_eq!(m["earlier"][0]["key_id"], marker["key_id"]);
    assert_ne!(m["key_id"], marker["key_id"]);

    // `veil release` into a used OUT is refused
    let home = tmp.join("home");
    let rin = site(&corpus, &home);
    let (code, msg) = veil(
        &home,
        &[
            "release",
            "--recipient",
            "acme-ai",
            "--purpose",
            "ai-training",
            &s(&rin),
            "--out",
            &s(&out),
        ],
    );
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("OUT is not empty"), "{msg}");
    std::fs::remove_dir_all(&tmp).unwrap();
}
