//! Issue 17, "Progress, logs, messages and exit codes".
//!
//! - Under a pseudo-terminal (python3's `pty`), `veil deid` and `veil
//!   verify --pixels` draw a bar whose counts never go back and end at the
//!   total. Before, deid's counter jumped back (worker threads set the
//!   position out of order) and verify showed no progress at all.
//! - `-vv --log-format json`: every line on stderr is a JSON object, and no
//!   planted value (in the files, and in a folder's name) appears in them.
//! - The README's table of bad inputs (input, message, exit status) is the
//!   one these commands print: the test runs each case and compares;
//!   `VEIL_BLESS=1` rewrites the table instead.
//! - The exit status table of `veil --help` is the README's; `veil
//!   --version` names the commit; `veil explain` has a header row.
//!
//! Needs VEIL_CORPUS, python3, dcmodify (dcmtk) and, when run as root,
//! setpriv (to read a folder of mode 000 as a user without
//! CAP_DAC_OVERRIDE would).

use std::path::{Path, PathBuf};
use std::process::Command;

const VEIL: &str = env!("CARGO_BIN_EXE_veil");

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `n` small, readable corpus images with a Patient's Name and pixels,
/// in a stable order.
fn pick(n: usize) -> Option<Vec<PathBuf>> {
    let corpus = veil_test::corpus()?;
    let mut all = veil_test::files(&corpus);
    all.sort();
    let mut out = Vec::new();
    for p in all {
        if out.len() == n {
            break;
        }
        if std::fs::metadata(&p).map(|m| m.len()).unwrap_or(u64::MAX) > 1 << 20 {
            continue;
        }
        let Ok(f) = veil_io::read(&p) else { continue };
        let ds = &f.dataset;
        if f.is_dicomdir()
            || f.meta.is_none()
            || ds.get(veil_core::Tag(0x7FE0, 0x0010)).is_none()
            || ds.get(veil_core::Tag(0x0010, 0x0010)).is_none()
        {
            continue;
        }
        out.push(p);
    }
    assert_eq!(out.len(), n, "the corpus has {n} small images");
    Some(out)
}

/// Copies `files` into `dir` as 000.dcm, 001.dcm, ...
fn copy_into(files: &[PathBuf], dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, f) in files.iter().enumerate() {
        std::fs::copy(f, dir.join(format!("{i:03}.dcm"))).unwrap();
    }
}

/// Runs `veil ARGS` under a pseudo-terminal (160 columns) and returns
/// everything it wrote there and its exit status.
fn under_pty(home: &Path, args: &[String]) -> (String, i32) {
    const PTY: &str = r#"
import fcntl, os, pty, struct, sys, termios
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    os.execv(sys.argv[1], sys.argv[1:])
out = bytearray()
while True:
    try:
        b = os.read(fd, 65536)
    except OSError:
        break
    if not b:
        break
    out += b
_, st = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(st))
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(PTY)
        .arg(VEIL)
        .args(args)
        .env("VEIL_HOME", home)
        .env("TERM", "xterm")
        .env_remove("VEIL_KEY")
        .env_remove("VEIL_KEY_FILE")
        .output()
        .expect("python3");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

/// The text with terminal escape sequences removed (CSI sequences).
fn strip_escapes(t: &str) -> String {
    let mut out = String::new();
    let mut it = t.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            if it.peek() == Some(&'[') {
                it.next();
                for d in it.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&d) {
                        break;
                    }
                }
            } else {
                it.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every "DONE/TOTAL files" the bar drew, in order.
fn counts(screen: &str) -> Vec<(usize, usize)> {
    let text = strip_escapes(screen);
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[1] == "files")
        .filter_map(|w| {
            let (d, t) = w[0].split_once('/')?;
            Some((d.parse().ok()?, t.parse().ok()?))
        })
        .collect()
}

/// The drawn counts never decrease, and the last is `total` of `total`.
fn assert_rises_to(what: &str, screen: &str, total: usize) {
    let c = counts(screen);
    assert!(!c.is_empty(), "{what}: no progress drawn:\n{screen}");
    for w in c.windows(2) {
        assert!(
            w[1].0 >= w[0].0,
            "{what}: the count went back from {:?} to {:?}: {c:?}",
            w[0],
            w[1]
        );
    }
    assert_eq!(
        c.last(),
        Some(&(total, total)),
        "{what}: the bar ends at the total: {c:?}"
    );
}

#[test]
fn progress_counts_rise_monotonically_to_the_total_on_a_terminal() {
    let Some(files) = pick(48) else { return };
    let tmp = veil_test::scratch("progress-pty");
    let home = tmp.join("home");
    let key = veil_test::new_key(VEIL, &tmp);
    let input = tmp.join("in");
    copy_into(&files, &input);
    let out = tmp.join("out");
    let (screen, code) = under_pty(
        &home,
        &[
            "deid".into(),
            s(&input),
            "--out".into(),
            s(&out),
            "--key".into(),
            s(&key),
            "--jobs".into(),
            "2".into(),
        ],
    );
    assert!(code == 0 || code == 1, "deid ran: {code}\n{screen}");
    assert_rises_to("veil deid", &screen, files.len());
    // the rate is a plain number of files per second, not "40,581.6135/s"
    let plain = strip_escapes(&screen);
    assert!(
        plain.contains(" files/s"),
        "the bar shows its rate: {plain}"
    );

    // verify --pixels (OCR) over part of the output: its own bar
    let few = tmp.join("few");
    std::fs::create_dir_all(&few).unwrap();
    let outs = veil_test::files(&out);
    for (i, f) in outs.iter().take(6).enumerate() {
        std::fs::copy(f, few.join(format!("{i}.dcm"))).unwrap();
    }
    let (screen, code) = under_pty(
        &home,
        &[
            "verify".into(),
            s(&few),
            "--pixels".into(),
            "--jobs".into(),
            "2".into(),
        ],
    );
    assert!(code == 0 || code == 1, "verify ran: {code}\n{screen}");
    assert_rises_to("veil verify --pixels", &screen, 6);

    // -q: no bar at all
    let (screen, _) = under_pty(
        &home,
        &[
            "-q".into(),
            "verify".into(),
            s(&few),
            "--jobs".into(),
            "1".into(),
        ],
    );
    assert!(counts(&screen).is_empty(), "-q draws nothing: {screen}");
}

/// Planted values: none may appear in any log line.
const NAME: &str = "ZORBLAX^QUENTIN";
const PID: &str = "55501234";
const COMMENT: &str = "Dr Qvuxmerlyn saw ZORBLAX";
const FOLDER: &str = "ZORBLAX_55501234";

/// Panics if `text` holds a planted string or a 6-character piece of one.
fn assert_clean(what: &str, text: &str) {
    let hay = text.to_lowercase();
    for p in [NAME, PID, COMMENT, FOLDER] {
        let chars: Vec<char> = p.to_lowercase().chars().collect();
        for i in 0..chars.len().saturating_sub(5) {
            let piece: String = chars[i..i + 6].iter().collect();
            assert!(!hay.contains(&piece), "{what} holds {piece:?}:\n{text}");
        }
    }
}

/// Every stderr line is a JSON object with a level and a message.
fn json_lines(what: &str, stderr: &str) -> usize {
    let mut n = 0;
    for l in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {l}"));
        assert!(
            v["level"].is_string() && v["message"].is_string(),
            "{what}: {l}"
        );
        n += 1;
    }
    n
}

#[test]
fn json_logs_parse_and_hold_no_planted_value() {
    let Some(files) = pick(4) else { return };
    let tmp = veil_test::scratch("logs-json");
    let home = tmp.join("home");
    let key = veil_test::new_key(VEIL, &tmp);
    // a patient's folder, holding planted copies, a non-DICOM note and
    // a truncated copy (quarantined)
    let input = tmp.join("in");
    let patient = input.join(FOLDER);
    copy_into(&files, &patient);
    for i in 0..files.len() {
        let f = patient.join(format!("{i:03}.dcm"));
        let ok = veil_core::tool_command("dcmodify")
            .args(["-nb", "-imt", "-m"])
            .arg(format!("(0010,0010)={NAME}"))
            .arg("-m")
            .arg(format!("(0010,0020)={PID}"))
            .arg("-i")
            .arg(format!("(0020,4000)={COMMENT}"))
            .arg(&f)
            .status()
            .expect("dcmodify")
            .success();
        assert!(ok, "dcmodify");
    }
    veil_io::atomic::write_all(&patient.join(format!("{FOLDER}.txt")), NAME.as_bytes()).unwrap();
    let whole = std::fs::read(patient.join("000.dcm")).unwrap();
    veil_io::atomic::write_all(
        &patient.join(format!("{FOLDER}-cut.dcm")),
        &whole[..whole.len() * 2 / 3],
    )
    .unwrap();
    let out = tmp.join("out");
    let o = veil_test::veil_command(VEIL, &home, None)
        .args(["-vv", "--log-format", "json", "deid"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{err}");
    // the steps (-v) and each file's outcome (-vv)
    let n = json_lines("deid", &err);
    assert!(n >= files.len() + 2, "{n} log lines:\n{err}");
    assert!(err.contains("\"outcome\":\"written\""), "{err}");
    assert!(err.contains("\"outcome\":\"not-dicom\""), "{err}");
    assert_clean("deid's logs", &err);
    assert_clean("deid's summary", &String::from_utf8_lossy(&o.stdout));

    let o = veil_test::veil_command(VEIL, &home, None)
        .args(["-v", "--log-format", "json", "verify"])
        .arg(&out)
        .arg("--source")
        .arg(&input)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(json_lines("verify", &err) >= 2, "{err}");
    assert_clean("verify's logs", &err);

    // an error is a JSON event too
    let o = veil_test::veil_command(VEIL, &home, None)
        .args(["--log-format", "json", "deid"])
        .arg(tmp.join("missing"))
        .arg("--out")
        .arg(tmp.join("out2"))
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(json_lines("error", &err), 1, "{err}");
    assert!(err.contains("\"level\":\"ERROR\""), "{err}");
}

/// One row of the bad-input table.
struct Case {
    input: &'static str,
    args: &'static [&'static str],
    /// Needs a folder that cannot be listed.
    unreadable: bool,
}

/// `veil ARGS` in `dir`; as a user without CAP_DAC_OVERRIDE when
/// `unreadable` and running as root.
fn run_in(dir: &Path, home: &Path, args: &[&str], unreadable: bool) -> (i32, String) {
    let root = rustix_is_root();
    let mut c = if unreadable && root {
        let mut c = Command::new("setpriv");
        c.args(["--bounding-set", "-dac_override,-dac_read_search", VEIL]);
        c
    } else {
        Command::new(VEIL)
    };
    c.current_dir(dir)
        .env("VEIL_HOME", home)
        .env_remove("VEIL_KEY")
        .env_remove("VEIL_KEY_FILE")
        .args(["-q"])
        .args(args);
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Whether the tests run as root (who reads a mode-000 folder anyway).
fn rustix_is_root() -> bool {
    let o = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim() == "0"
}

/// The message as one table cell: lines joined, TOML's source excerpt
/// (lines of `|` and `^`) left out, `|` escaped.
fn cell(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.contains(" | "))
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

const BEGIN: &str = "<!-- bad-inputs: generated by crates/veil-cli/tests/progress_logs.rs; VEIL_BLESS=1 to update -->";
const END: &str = "<!-- bad-inputs end -->";

#[test]
fn the_readme_table_of_bad_inputs_is_what_veil_says() {
    let Some(files) = pick(1) else { return };
    let tmp = veil_test::scratch("bad-inputs");
    let home = tmp.join("home");
    let key = veil_test::new_key(VEIL, &tmp);
    let w = |name: &str, bytes: &[u8]| veil_io::atomic::write_all(&tmp.join(name), bytes).unwrap();
    let ct = std::fs::read(&files[0]).unwrap();
    std::fs::copy(&key, tmp.join("site.key")).unwrap();
    w("ct.dcm", &ct);
    w("empty.dcm", b"");
    w("notes.txt", b"not an image\n");
    // the header whole, the pixel data cut short
    w("truncated.dcm", &ct[..ct.len() - ct.len() / 3]);
    std::fs::copy(&key, tmp.join("loose.key")).unwrap();
    let mode = |p: &str, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("loose.key", 0o644);
    w("typo.toml", b"name = \"site\"\nstirct = true\n");
    std::fs::create_dir_all(tmp.join("scans")).unwrap();
    std::fs::copy(&files[0], tmp.join("scans/a.dcm")).unwrap();
    std::fs::create_dir_all(tmp.join("study/locked")).unwrap();
    std::fs::copy(&files[0], tmp.join("study/a.dcm")).unwrap();
    std::fs::copy(&files[0], tmp.join("study/locked/b.dcm")).unwrap();
    mode("scans", 0o000);
    mode("study/locked", 0o000);

    const K: &str = "--key=site.key";
    let cases = [
        Case {
            input: "a missing path",
            args: &["deid", "missing.dcm", "--out", "out", K],
            unreadable: false,
        },
        Case {
            input: "an unreadable folder",
            args: &["deid", "scans/", "--out", "out", K],
            unreadable: true,
        },
        Case {
            input: "an unreadable folder inside an input",
            args: &["deid", "study/", "--out", "out", K],
            unreadable: true,
        },
        Case {
            input: "an empty file",
            args: &["deid", "empty.dcm", "--out", "out", K],
            unreadable: false,
        },
        Case {
            input: "a non-DICOM file",
            args: &["deid", "notes.txt", "--out", "out", K],
            unreadable: false,
        },
        Case {
            input: "a truncated DICOM file",
            args: &["deid", "truncated.dcm", "--out", "out", K],
            unreadable: false,
        },
        Case {
            input: "a key with mode 0644",
            args: &["deid", "ct.dcm", "--out", "out", "--key=loose.key"],
            unreadable: false,
        },
        Case {
            input: "a recipe typo",
            args: &["deid", "ct.dcm", "--out", "out", K, "--recipe=typo.toml"],
            unreadable: false,
        },
        Case {
            input: "a review folder inside OUT",
            args: &["deid", "ct.dcm", "--out", "out", K, "--review=out/review"],
            unreadable: false,
        },
    ];
    let mut table =
        String::from("| Input | Command | Message (stderr) | Exit |\n|---|---|---|---|\n");
    for c in &cases {
        let (code, err) = run_in(&tmp, &home, c.args, c.unreadable);
        // every bad input is said, and none is a success
        assert_ne!(code, 0, "{}: {err}", c.input);
        assert!(!cell(&err).is_empty(), "{}: a message", c.input);
        assert!(
            !err.contains("PermissionDenied") && !err.contains("NotFound"),
            "{}: the error kind in words: {err}",
            c.input
        );
        table.push_str(&format!(
            "| {} | `veil {}` | {} | {code} |\n",
            c.input,
            c.args.join(" "),
            cell(&err)
        ));
        // the batch went on past the unreadable subfolder
        if c.input.ends_with("inside an input") {
            assert_eq!(veil_test::files(&tmp.join("out")).len(), 1, "{err}");
        }
        let _ = std::fs::remove_dir_all(tmp.join("out"));
    }
    mode("scans", 0o755);
    mode("study/locked", 0o755);

    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md has no bad-input table between {BEGIN} and {END}");
    };
    let current = &readme[b + BEGIN.len()..e];
    let want = format!("\n{table}");
    if std::env::var_os("VEIL_BLESS").is_some() {
        let new = format!("{}{want}{}", &readme[..b + BEGIN.len()], &readme[e..]);
        veil_io::atomic::write_all(&readme_path, new.as_bytes()).unwrap();
    } else {
        assert_eq!(
            current, want,
            "README's bad-input table differs from what veil prints (VEIL_BLESS=1 updates it)"
        );
    }
}

#[test]
fn one_exit_status_table_in_help_and_readme() {
    let o = Command::new(VEIL).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    let start = help
        .find("Exit status (every command):")
        .expect("--help has the table");
    let table = help[start..].trim_end();
    for code in 0..=4 {
        assert!(
            table.contains(&format!("\n  {code}  ")),
            "status {code}: {table}"
        );
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    assert!(
        readme.contains(&format!("```text\n{table}\n```")),
        "README.md holds the table of `veil --help` in a text block:\n{table}"
    );
}

#[test]
fn version_names_the_commit() {
    let o = Command::new(VEIL).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let want = format!("veil {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(v.starts_with(&want) && v.ends_with(')'), "{v}");
    let commit = &v[want.len()..v.len() - 1];
    // built from a checkout: its HEAD, else "unknown"
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(h) => assert_eq!(commit, h, "{v}"),
        None => assert_eq!(commit, "unknown", "{v}"),
    }
}

#[test]
fn explain_prints_a_header_row() {
    let Some(files) = pick(1) else { return };
    let o = Command::new(VEIL)
        .arg("explain")
        .arg(&files[0])
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let first: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        first,
        ["ATTRIBUTE", "KEYWORD", "VR", "ACTION", "WHY"],
        "{text}"
    );
}
