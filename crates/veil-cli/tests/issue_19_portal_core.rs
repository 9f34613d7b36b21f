//! Issue 19: `veil portal invite` and `veil staff add`, on SQLite and on
//! PostgreSQL (when `VEIL_TEST_PG_URL` is set). The link printed is
//! redeemed and signed in with through veil-portal, as the web layer
//! will; the patient ID and the password never reach stdout, stderr (even
//! with `-v`) or the database.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use veil_core::Phi;
use veil_ledger::{Entry, Event};
use veil_portal::{Invitation, Portal, Secret};

const PID: &str = "PAT-19-SECRET-ID";
const PASSWORD: &str = "staff password 19 long";

/// Runs `veil` with `stdin`; (exit code, stdout, stderr) apart.
fn veil(home: &Path, db: Option<&str>, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut c: Command = veil_test::veil_command(env!("CARGO_BIN_EXE_veil"), home, db);
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run veil");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Every byte of the home's files (the SQLite database and its WAL).
fn home_bytes(home: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for f in veil_test::files(home) {
        all.extend(std::fs::read(f).unwrap());
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn suite(db: Option<&str>, home: &Path) {
    let (code, _, err) = veil(home, db, &["init"], "");
    assert_eq!(code, 0, "{err}");

    // no veil.toml: the error says what is missing
    let (code, out, err) = veil(home, db, &["portal", "invite", "--patient-id", PID], "");
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.contains("veil.toml") && err.contains("public_url"),
        "{err}"
    );
    assert!(!err.contains(PID), "{err}");
    // a veil.toml without [portal]
    veil_io::atomic::write_all(
        &home.join("veil.toml"),
        b"[console]\nlisten = \"127.0.0.1:8444\"\n",
    )
    .unwrap();
    let (code, _, err) = veil(home, db, &["portal", "invite", "--patient-id", PID], "");
    assert_eq!(code, 2);
    assert!(err.contains("no [portal] public_url"), "{err}");
    // a wrong one names the field
    veil_io::atomic::write_all(
        &home.join("veil.toml"),
        b"[portal]\nlisten = \"127.0.0.1:8443\"\npublic_url = \"ftp://x\"\n",
    )
    .unwrap();
    let (code, _, err) = veil(home, db, &["portal", "invite", "--patient-id", PID], "");
    assert_eq!(code, 2);
    assert!(
        err.contains("portal.public_url: expected http(s)://"),
        "{err}"
    );

    // --config elsewhere; the last line of stdout is the link
    let cfg = home.join("elsewhere.toml");
    veil_io::atomic::write_all(
        &cfg,
        b"[portal]\nlisten = \"127.0.0.1:8443\"\npublic_url = \"http://127.0.0.1:8443/\"\n\n[console]\nlisten = \"127.0.0.1:8444\"\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let (code, out, err) = veil(
        home,
        db,
        &[
            "-vv",
            "portal",
            "invite",
            "--patient-id",
            PID,
            "--expires-days",
            "3",
            "--config",
            c,
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("invitation issued"), "{err}");
    assert!(err.contains("INFO"), "-vv logs the step: {err}");
    let url = out.lines().last().unwrap().to_string();
    let token = url
        .strip_prefix("http://127.0.0.1:8443/invite/")
        .unwrap_or_else(|| panic!("{url}"))
        .to_string();
    assert_eq!(token.len(), 43, "{url}");
    for (what, text) in [("stdout", &out), ("stderr", &err)] {
        assert!(!text.contains(PID), "the patient ID is in {what}: {text}");
    }
    // the same with the JSON log format
    let (code, out2, err) = veil(
        home,
        db,
        &[
            "-v",
            "--log-format",
            "json",
            "portal",
            "invite",
            "--patient-id",
            PID,
            "--config",
            c,
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains(PID) && !out2.contains(PID), "{err}");
    let token2 = out2
        .lines()
        .last()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(token, token2, "every invitation has its own token");

    // staff add: the password from stdin, checked, never echoed
    let (code, _, err) = veil(
        home,
        db,
        &["staff", "add", "alice", "--role", "reviewer"],
        "",
    );
    assert_eq!(code, 2);
    assert!(err.contains("no password"), "{err}");
    let (code, _, err) = veil(
        home,
        db,
        &["staff", "add", "alice", "--role", "reviewer"],
        "short\n",
    );
    assert_eq!(code, 2);
    assert!(err.contains("too short: 12 characters at least"), "{err}");
    let (code, _, err) = veil(
        home,
        db,
        &["staff", "add", "alice", "--role", "root"],
        "x\n",
    );
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = veil(
        home,
        db,
        &["-v", "staff", "add", "alice", "--role", "reviewer"],
        &format!("{PASSWORD}\nnext line ignored\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("staff account alice added (role reviewer)"),
        "{out}"
    );
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "{out}{err}"
    );
    let (code, _, err) = veil(
        home,
        db,
        &["staff", "add", "alice", "--role", "admin"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");

    // the link works (through the library, as the web layer will use it),
    // once; the staff password signs in; both leave the ledger verifiable
    {
        let mut site = veil_release::Site::open(db, home).unwrap();
        let portal = Portal::default();
        let pw = Secret::from("patient password 19");
        let t = now();
        let pref = Invitation::redeem(
            &mut site,
            &portal.limits,
            &Secret::new(token.clone()),
            &pw,
            t,
        )
        .unwrap();
        assert_eq!(pref, site.patient_ref(&Phi::new(PID.to_string())));
        assert!(Invitation::redeem(
            &mut site,
            &portal.limits,
            &Secret::new(token.clone()),
            &pw,
            t
        )
        .is_err());
        veil_portal::sign_in_patient(&mut site, &portal, &Phi::new(PID.into()), &pw, None, t)
            .unwrap();
        veil_portal::sign_in_staff(
            &mut site,
            &portal,
            "alice",
            &Secret::from(PASSWORD),
            None,
            t,
        )
        .unwrap();
        let staff: Vec<Entry> = site
            .store
            .ledger_rows()
            .unwrap()
            .iter()
            .map(|r| Entry::from_leaf(&r.entry).unwrap())
            .filter(|e| e.event == Event::StaffAction)
            .collect();
        let got: Vec<(&str, &str, bool)> = staff
            .iter()
            .map(|e| {
                (
                    e.operator.as_str(),
                    e.reason.as_str(),
                    e.patient_ref.as_deref() == Some(pref.as_str()),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "tester",
                    "portal invitation issued (expires in 3 days)",
                    true
                ),
                (
                    "tester",
                    "portal invitation issued (expires in 14 days)",
                    true
                ),
                ("tester", "staff account alice added (role reviewer)", false),
                ("alice", "signed in to the console", false),
            ]
        );
    }
    let (code, out, err) = veil(home, db, &["ledger", "verify"], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ledger OK: 4 entries"), "{out}");
    // the audit exports know the new event
    let (code, out, err) = veil(home, db, &["ledger", "export", "--format", "dicom"], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("csd-code=\"110114\"").count(), 4, "{out}");
    let (code, out, err) = veil(home, db, &["ledger", "export", "--format", "fhir"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("110114"), "{out}");

    // nothing typed reaches the database (SQLite: its files; PostgreSQL:
    // the text of every portal row)
    let mut stored = home_bytes(home);
    if db.is_some() {
        let mut s = veil_store::Store::open(db, home).unwrap();
        for t in [
            "portal_invitations",
            "portal_patients",
            "portal_staff",
            "portal_sessions",
            "portal_attempts",
            "ledger",
        ] {
            for r in s.query(&format!("SELECT * FROM {t}"), &[]).unwrap() {
                for v in r {
                    stored.extend(v.text().unwrap_or_default().bytes());
                    stored.push(b'\n');
                }
            }
        }
        assert!(contains(&stored, &veil_portal::token_hash(&token)));
    }
    for s in [
        PID,
        PASSWORD,
        "patient password 19",
        token.as_str(),
        token2.as_str(),
    ] {
        assert!(!contains(&stored, s), "stored in clear: {s}");
    }

    // staff list, disable (sessions end, sign-in refused), enable
    let (code, out, _) = veil(home, db, &["staff", "list"], "");
    assert_eq!(code, 0);
    assert_eq!(out, "alice  reviewer  no-code  active\n1 staff account\n");
    let (code, out, err) = veil(home, db, &["staff", "disable", "alice"], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("staff account alice disabled; ledger position 4"),
        "{out}"
    );
    let (_, out, _) = veil(home, db, &["staff", "list"], "");
    assert!(
        out.starts_with("alice  reviewer  no-code  disabled\n"),
        "{out}"
    );
    {
        let mut site = veil_release::Site::open(db, home).unwrap();
        let r = veil_portal::sign_in_staff(
            &mut site,
            &Portal::default(),
            "alice",
            &Secret::from(PASSWORD),
            None,
            now(),
        );
        assert!(r.is_err(), "a disabled account cannot sign in");
    }
    let (code, _, err) = veil(home, db, &["staff", "disable", "bob"], "");
    assert_eq!(code, 2);
    assert!(err.contains("no staff account bob"), "{err}");
    let (code, out, _) = veil(home, db, &["staff", "enable", "alice"], "");
    assert_eq!(code, 0);
    assert!(
        out.starts_with("staff account alice enabled; ledger position 5"),
        "{out}"
    );
    let (code, out, _) = veil(home, db, &["ledger", "verify"], "");
    assert_eq!(code, 0, "{out}");
}

#[test]
fn issue_19_portal_cli_sqlite() {
    let home = veil_test::scratch("cli19-portal");
    suite(None, &home);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_19_portal_cli_postgresql() {
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let url = veil_store::create_pg_database(&base, &format!("veil_cli19_{}", std::process::id()))
        .unwrap();
    let home = veil_test::scratch("cli19-portal-pg");
    suite(Some(&url), &home);
    std::fs::remove_dir_all(&home).unwrap();
}
