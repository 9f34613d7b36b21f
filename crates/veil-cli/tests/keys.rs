//! Issue 22 items 2 and 9: keys are never created implicitly, a store
//! refuses another home's keys, the keys can be backed up and restored,
//! the ledger reads with its public key alone, files are private, child
//! processes get no secret.
#![allow(clippy::print_stderr)] // says when PostgreSQL is skipped

#[path = "../../veil-release/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

/// Runs `veil` with `home` as VEIL_HOME, `extra` environment variables and
/// nothing inherited that points at keys or a database.
fn veil_env(home: &Path, db: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let mut c = veil_test::veil_command(env!("CARGO_BIN_EXE_veil"), home, db);
    c.envs(env.iter().copied()).args(args);
    veil_test::output(&mut c)
}

fn veil(home: &Path, args: &[&str]) -> (i32, String) {
    veil_env(home, None, &[], args)
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

use veil_test::ok;

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A recipient `acme` (ai-training, opt-out default) and KEYS-DENY's deny.
fn setup_site(home: &Path, db: Option<&str>, env: &[(&str, &str)]) {
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"t\"\nversion = \"1\"\n").unwrap();
    ok(veil_env(
        home,
        db,
        env,
        &[
            "recipient",
            "add",
            "acme",
            "--purpose",
            "ai-training",
            "--recipe",
            &s(&recipe),
            "--retention-days",
            "30",
        ],
    ));
    ok(veil_env(
        home,
        db,
        env,
        &["consent", "default", "ai-training", "opt-out"],
    ));
    ok(veil_env(
        home,
        db,
        env,
        &[
            "consent",
            "set",
            "KEYS-DENY",
            "--deny",
            "--recipient",
            "acme",
        ],
    ));
}

/// Two studies: KEYS-DENY's (denied) and KEYS-OK's (released under the
/// opt-out default).
fn inputs(home: &Path, corpus: &Path) -> PathBuf {
    let srcs = common::sources(corpus);
    let input = home.join("in");
    common::plant(
        &srcs[0],
        &input.join("deny.dcm"),
        "KEYS-DENY",
        "1.2.826.0.1.3680043.9.7781.1",
        1,
    );
    common::plant(
        &srcs[1],
        &input.join("ok.dcm"),
        "KEYS-OK",
        "1.2.826.0.1.3680043.9.7781.2",
        1,
    );
    input
}

fn release(home: &Path, input: &Path, out: &Path, env: &[(&str, &str)]) -> (i32, String) {
    veil_env(
        home,
        None,
        env,
        &[
            "release",
            "--recipient",
            "acme",
            "--purpose",
            "ai-training",
            &s(input),
            "--out",
            &s(out),
        ],
    )
}

/// The denied study is refused and the other released.
fn one_refused_one_released(r: (i32, String), out: &Path) {
    let (code, text) = r;
    assert_eq!(code, 0, "one study refused by consent (exit 0): {text}");
    assert!(
        text.contains("2 studies: 1 released (1 instance), 1 excluded (1 consent)"),
        "{text}"
    );
    assert_eq!(common::output_studies(out).len(), 1);
}

fn patient_ref(home: &Path, pid: &str) -> String {
    let out = ok(veil(home, &["disclosures", "--patient-id", pid, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["patient_ref"].as_str().unwrap().to_string()
}

/// Issue 22 item 2, and the key backup/restore procedure of the README:
/// a missing site.key is a hard error naming the file (on main it was
/// silently recreated, KEYS-DENY's consent stopped matching, and the
/// denied study was released); restoring the backed-up files brings back
/// the same patient references and a verifying ledger.
#[test]
fn issue_22_missing_site_key_is_a_hard_error_and_backup_restores_it() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("keys-backup");
    let init = ok(veil(&home, &["init"]));
    assert!(init.contains("site key   created"), "{init}");
    setup_site(&home, None, &[]);
    let input = inputs(&home, &corpus);
    one_refused_one_released(
        release(&home, &input, &home.join("out1"), &[]),
        &home.join("out1"),
    );
    let deny_ref = patient_ref(&home, "KEYS-DENY");
    let ok_ref = patient_ref(&home, "KEYS-OK");

    // back up: copy the key files (README "Keys: backup and restore")
    let backup = home.join("backup");
    std::fs::create_dir_all(backup.join("keys")).unwrap();
    for k in ["site.key", "ledger.key", "keys/acme.key"] {
        std::fs::copy(home.join(k), backup.join(k)).unwrap();
    }
    for k in ["site.key", "ledger.key", "keys/acme.key"] {
        std::fs::remove_file(home.join(k)).unwrap();
    }

    // every command that needs the site key stops, naming the file
    let out2 = home.join("out2");
    let (code, text) = release(&home, &input, &out2, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(&s(&home.join("site.key"))), "{text}");
    assert!(
        text.contains("veil init") && text.contains("backup"),
        "{text}"
    );
    assert!(
        !home.join("site.key").exists(),
        "no key is created implicitly"
    );
    assert!(
        !home.join("ledger.key").exists(),
        "no key is created implicitly"
    );
    assert!(
        common::output_studies(&out2).is_empty(),
        "the denied study is not released"
    );
    for args in [
        &["ledger", "verify"][..],
        &["disclosures", "--patient-id", "KEYS-DENY"],
        &["consent", "set", "KEYS-OK", "--permit"],
    ] {
        let (code, text) = veil(&home, args);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains("site.key"), "{args:?}: {text}");
    }
    assert!(!home.join("site.key").exists());
    // `veil init` does not paper over it either: the store records the key
    let (code, text) = veil(&home, &["init"]);
    assert_eq!(code, 2, "{text}");
    assert!(!home.join("site.key").exists(), "{text}");

    // restore: copy the files back (0600), and everything matches again
    for k in ["site.key", "ledger.key", "keys/acme.key"] {
        std::fs::copy(backup.join(k), home.join(k)).unwrap();
    }
    assert_eq!(patient_ref(&home, "KEYS-DENY"), deny_ref);
    assert_eq!(patient_ref(&home, "KEYS-OK"), ok_ref);
    let v = ok(veil(&home, &["ledger", "verify"]));
    assert!(v.contains("ledger OK"), "{v}");
    one_refused_one_released(release(&home, &input, &out2, &[]), &out2);
    let again = ok(veil(&home, &["init"]));
    assert!(again.contains("already initialized"), "{again}");
    std::fs::remove_dir_all(&home).unwrap();
}

/// Issue 22 item 2: `ledger verify` on a home without keys creates none
/// (on main it created ledger.key and site.key).
#[test]
fn issue_22_ledger_verify_creates_no_key() {
    let home = veil_test::scratch("keys-verify-creates-none");
    let (code, text) = veil(&home, &["ledger", "verify"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("site.key") && text.contains("veil init"),
        "{text}"
    );
    assert!(!home.join("ledger.key").exists());
    assert!(!home.join("site.key").exists());
    std::fs::remove_dir_all(&home).unwrap();
}

/// Issue 22 (must do): the ledger key can live apart
/// (`VEIL_LEDGER_KEY_FILE`); without the secret key, reading and verifying
/// work from the public key recorded at init, and appending fails with the
/// reason.
#[test]
fn issue_22_ledger_key_apart_reads_need_only_the_public_key() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("keys-ledger-apart");
    let vault = home.join("vault");
    let lk = vault.join("ledger.key");
    let with_key = [("VEIL_LEDGER_KEY_FILE", lk.to_str().unwrap())];
    ok(veil_env(&home, None, &with_key, &["init"]));
    assert!(lk.is_file() && !home.join("ledger.key").exists());
    #[cfg(unix)]
    assert_eq!((mode(&lk), mode(&vault)), (0o600, 0o700));
    setup_site(&home, None, &with_key);
    let input = inputs(&home, &corpus);
    let out1 = home.join("out1");
    one_refused_one_released(release(&home, &input, &out1, &with_key), &out1);

    // without the secret key: verify, disclosures work
    let v = ok(veil(&home, &["ledger", "verify"]));
    assert!(v.contains("ledger OK"), "{v}");
    let d = ok(veil(&home, &["disclosures", "--patient-id", "KEYS-DENY"]));
    assert!(d.contains("signed head valid"), "{d}");
    assert!(!home.join("ledger.key").exists(), "not created");
    // appending needs it
    let out2 = home.join("out2");
    let (code, text) = release(&home, &input, &out2, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("ledger signing key") && text.contains("VEIL_LEDGER_KEY_FILE"),
        "{text}"
    );
    let (code, text) = veil(&home, &["ledger", "checkpoint"]);
    assert_eq!(code, 2, "{text}");
    // another ledger key is refused: the store recorded the public key
    let other = home.join("other.key");
    veil_test::new_key(env!("CARGO_BIN_EXE_veil"), &home);
    std::fs::rename(home.join("k.key"), &other).unwrap();
    let (code, text) = veil_env(
        &home,
        None,
        &[("VEIL_LEDGER_KEY_FILE", other.to_str().unwrap())],
        &["ledger", "verify"],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("key mismatch"), "{text}");
    std::fs::remove_dir_all(&home).unwrap();
}

/// Issue 22 item 2 on SQLite: a store used with another home's keys is
/// refused (on main the other home's site.key was used silently, and no
/// consent of the store matched).
#[test]
fn issue_22_store_with_another_homes_keys_is_refused_on_sqlite() {
    let a = veil_test::scratch("keys-home-a");
    let b = veil_test::scratch("keys-home-b");
    ok(veil(&a, &["init"]));
    ok(veil(&b, &["init"]));
    let db = s(&a.join("veil.db"));
    ok(veil_env(
        &a,
        Some(&db),
        &[],
        &["consent", "set", "KEYS-X", "--deny"],
    ));
    let (code, text) = veil_env(
        &b,
        Some(&db),
        &[],
        &["consent", "set", "KEYS-X", "--permit"],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("key mismatch"), "{text}");
    assert!(text.contains(&s(&b.join("site.key"))), "{text}");
    for h in [a, b] {
        std::fs::remove_dir_all(&h).unwrap();
    }
}

/// The same on PostgreSQL, the case of the issue: one database, two
/// VEIL_HOMEs.
#[test]
fn issue_22_store_with_another_homes_keys_is_refused_on_postgresql() {
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let url = veil_store::create_pg_database(&base, &format!("veil_keys_{}", std::process::id()))
        .unwrap();
    let a = veil_test::scratch("keys-pg-a");
    let b = veil_test::scratch("keys-pg-b");
    ok(veil_env(&a, Some(&url), &[], &["init"]));
    ok(veil_env(
        &a,
        Some(&url),
        &[],
        &["consent", "set", "KEYS-X", "--deny"],
    ));
    // a home without keys: init refuses to create keys for this store
    let (code, text) = veil_env(&b, Some(&url), &[], &["init"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("site.key"), "{text}");
    assert!(!b.join("site.key").exists());
    // a home with its own keys (set up on its own store) is refused
    ok(veil(&b, &["init"]));
    let (code, text) = veil_env(
        &b,
        Some(&url),
        &[],
        &["consent", "set", "KEYS-X", "--permit"],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("key mismatch"), "{text}");
    // the right home still works
    ok(veil_env(&a, Some(&url), &[], &["ledger", "verify"]));
    for h in [a, b] {
        std::fs::remove_dir_all(&h).unwrap();
    }
}

/// A store written before key records: opening it with whatever keys are
/// present is refused until `veil key adopt` has checked them against its
/// consents; adopt refuses keys that do not reproduce the references.
#[test]
fn issue_22_store_without_key_records_needs_adopt() {
    let home = veil_test::scratch("keys-adopt");
    ok(veil(&home, &["init"]));
    ok(veil(&home, &["consent", "set", "KEYS-X", "--deny"]));
    // forget the records, as in a store from before this change
    let mut st = veil_store::Store::open(None, &home).unwrap();
    st.exec("DELETE FROM key_records", &[]).unwrap();
    drop(st);
    let (code, text) = veil(&home, &["consent", "set", "KEYS-Y", "--deny"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("veil key adopt"), "{text}");
    // a wrong site key is not adopted
    std::fs::rename(home.join("site.key"), home.join("site.key.real")).unwrap();
    veil_test::new_key(env!("CARGO_BIN_EXE_veil"), &home);
    std::fs::rename(home.join("k.key"), home.join("site.key")).unwrap();
    let (code, text) = veil(&home, &["key", "adopt"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("does not reproduce"), "{text}");
    std::fs::rename(home.join("site.key.real"), home.join("site.key")).unwrap();
    let text = ok(veil(&home, &["key", "adopt"]));
    assert!(text.contains("all 1 consent references"), "{text}");
    ok(veil(&home, &["consent", "set", "KEYS-Y", "--deny"]));
    std::fs::remove_dir_all(&home).unwrap();
}

/// Issue 22 item 9: VEIL_HOME, veil.db and its companions, keys/, key
/// files, --report, verify and risk reports, consent and ledger exports are
/// private; an existing looser home is tightened (on main: 0755/0644).
#[cfg(unix)]
#[test]
fn issue_22_files_are_private() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let root = veil_test::scratch("keys-modes");
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = ok(veil(&home, &["init"]));
    assert!(text.contains("initialized"), "{text}");
    assert_eq!(mode(&home), 0o700, "an existing looser home is tightened");
    setup_site(&home, None, &[]);
    // (-wal and -shm exist only while a connection is open: the store's
    // unit test checks them)
    for (p, m) in [
        ("veil.db", 0o600),
        ("site.key", 0o600),
        ("ledger.key", 0o600),
        ("keys", 0o700),
        ("keys/acme.key", 0o600),
    ] {
        assert_eq!(mode(&home.join(p)), m, "{p}");
    }
    // a home loosened later is tightened again on the next command, and said
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = ok(veil(&home, &["ledger", "verify"]));
    assert!(text.contains("tightened to 700"), "{text}");
    assert_eq!(mode(&home), 0o700);

    let exp = root.join("consents.json");
    ok(veil(&home, &["consent", "export", "--out", &s(&exp)]));
    let audit = root.join("audit.json");
    ok(veil(
        &home,
        &["ledger", "export", "--format", "fhir", "--out", &s(&audit)],
    ));
    let src = corpus
        .join("pydicom-3.0.2")
        .join("pydicom__data__test_files__CT_small.dcm");
    let key = veil_test::new_key(env!("CARGO_BIN_EXE_veil"), &root);
    let out = root.join("out");
    let report = root.join("report.json");
    let (code, text) = veil(
        &home,
        &[
            "deid",
            &s(&src),
            "--out",
            &s(&out),
            "--key",
            &s(&key),
            "--report",
            &s(&report),
        ],
    );
    assert!(code == 0 || code == 1, "{text}");
    let (vj, vh) = (root.join("verify.json"), root.join("verify.html"));
    let (code, text) = veil(
        &home,
        &[
            "verify",
            &s(&out),
            "--source",
            &s(&src),
            "--json",
            &s(&vj),
            "--html",
            &s(&vh),
        ],
    );
    assert!(code == 0 || code == 1, "{text}");
    let (rj, rh) = (root.join("risk.json"), root.join("risk.html"));
    let (code, text) = veil(
        &home,
        &["risk", &s(&out), "--json", &s(&rj), "--html", &s(&rh)],
    );
    assert!(code == 0 || code == 1, "{text}");
    for p in [&exp, &audit, &report, &vj, &vh, &rj, &rh] {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// Issue 22 item 9: dciodvfy (any tool Veil runs) does not inherit
/// VEIL_KEY or the database password (on main it did).
#[cfg(unix)]
#[test]
fn issue_22_children_get_no_secret_env() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let root = veil_test::scratch("keys-child-env");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let dump = root.join("child-env.txt");
    let tool = bin.join("dciodvfy");
    veil_io::atomic::write_all(
        &tool,
        format!("#!/bin/sh\nenv >> '{}'\nexit 0\n", dump.display()).as_bytes(),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = corpus
        .join("pydicom-3.0.2")
        .join("pydicom__data__test_files__CT_small.dcm");
    let key_hex = "ab".repeat(32);
    let out = root.join("out");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [
        ("VEIL_KEY", key_hex.as_str()),
        ("VEIL_DB_PASSWORD", "pw-should-not-leak"),
        ("PATH", path.as_str()),
    ];
    let (code, text) = veil_env(&root, None, &env, &["deid", &s(&src), "--out", &s(&out)]);
    assert!(code == 0 || code == 1, "{text}");
    let (code, text) = veil_env(
        &root,
        None,
        &env,
        &["verify", &s(&out), "--source", &s(&src), "--dciodvfy"],
    );
    assert!(code == 0 || code == 1, "{text}");
    let seen = std::fs::read_to_string(&dump).expect("the fake dciodvfy ran");
    assert!(seen.contains("PATH="), "the dump holds the environment");
    assert!(!seen.contains("VEIL_KEY"), "VEIL_KEY leaked to a child");
    assert!(!seen.contains(&key_hex));
    assert!(!seen.contains("pw-should-not-leak"));
    std::fs::remove_dir_all(&root).unwrap();
}

/// Issue 22 item 9: a database URL with a password is refused, and the
/// password is not echoed (on main it was used, and visible in `ps`).
#[test]
fn issue_22_password_in_db_url_is_refused() {
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let home = veil_test::scratch("keys-url-password");
    ok(veil(&home, &["init"]));
    let with_pw = base.replacen("postgres://postgres@", "postgres://postgres:hunter22@", 1);
    assert_ne!(with_pw, base, "the test URL has the expected shape");
    let (code, text) = veil_env(&home, Some(&with_pw), &[], &["ledger", "verify"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("VEIL_DB_PASSWORD_FILE"), "{text}");
    assert!(!text.contains("hunter22"), "{text}");
    std::fs::remove_dir_all(&home).unwrap();
}

/// Issue 22 item 9: PostgreSQL over TLS. `verify-full` against the test
/// CA connects (and the session is encrypted); an unrelated CA is refused;
/// `verify-ca` skips the host name that `verify-full` checks; the password
/// comes from VEIL_DB_PASSWORD_FILE. Needs the TLS server of
/// `VEIL_PG_SSL=1 scripts/pg.sh start` (VEIL_TEST_PG_TLS_URL/_DIR).
#[test]
fn issue_22_postgresql_over_tls() {
    let (Ok(base), Ok(dir)) = (
        std::env::var("VEIL_TEST_PG_TLS_URL"),
        std::env::var("VEIL_TEST_PG_TLS_DIR"),
    ) else {
        assert!(
            std::env::var("VEIL_REQUIRE_PG").is_err(),
            "VEIL_REQUIRE_PG is set but VEIL_TEST_PG_TLS_URL/_DIR are not"
        );
        eprintln!("VEIL_TEST_PG_TLS_URL not set; skipping");
        return;
    };
    let dir = PathBuf::from(dir);
    let ca = s(&dir.join("ca.crt"));
    let wrong = s(&dir.join("wrong-ca.crt"));
    let full = format!("{base}?sslmode=verify-full&sslrootcert={ca}");
    let name = format!("veil_tls_{}", std::process::id());
    let url = veil_store::create_pg_database(&full, &name).unwrap();
    assert!(url.contains("sslmode=verify-full"), "{url}");

    let home = veil_test::scratch("keys-tls");
    ok(veil_env(&home, Some(&url), &[], &["init"]));
    let mut st = veil_store::Store::open(Some(&url), &home).unwrap();
    let r = st
        .query(
            "SELECT CAST(ssl AS TEXT) FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap();
    assert_eq!(r[0][0].text(), Some("true"), "{r:?}");
    // the `veil` role below works on the tables `postgres` created
    st.batch(
        "GRANT ALL ON SCHEMA public TO veil; GRANT ALL ON ALL TABLES IN SCHEMA public TO veil",
    )
    .unwrap();
    drop(st);

    // the wrong CA: refused, nothing run
    let bad = url.replace(&ca, &wrong);
    let (code, text) = veil_env(&home, Some(&bad), &[], &["ledger", "verify"]);
    assert_eq!(code, 2, "{text}");
    // the certificate names localhost, not 127.0.0.1: verify-full refuses
    // the address, verify-ca (chain only) accepts it
    let by_ip = url.replace("@localhost:", "@127.0.0.1:");
    let (code, text) = veil_env(&home, Some(&by_ip), &[], &["ledger", "verify"]);
    assert_eq!(code, 2, "verify-full checks the name: {text}");
    let ca_only = by_ip.replace("sslmode=verify-full", "sslmode=verify-ca");
    ok(veil_env(&home, Some(&ca_only), &[], &["ledger", "verify"]));
    // the server accepts TLS only: sslmode=disable cannot connect
    let plain = url.replace("sslmode=verify-full", "sslmode=disable");
    assert_eq!(
        veil_env(&home, Some(&plain), &[], &["ledger", "verify"]).0,
        2
    );

    // the `veil` role needs its password: from the file, never the URL
    let as_veil = url.replacen("postgres://postgres@", "postgres://veil@", 1);
    let pw_file = s(&dir.join("veil.password"));
    let (code, text) = veil_env(&home, Some(&as_veil), &[], &["ledger", "verify"]);
    assert_eq!(code, 2, "no password, no connection: {text}");
    assert!(text.contains("VEIL_DB_PASSWORD_FILE"), "{text}");
    let pw = std::fs::read_to_string(dir.join("veil.password")).unwrap();
    let t = ok(veil_env(
        &home,
        Some(&as_veil),
        &[("VEIL_DB_PASSWORD_FILE", &pw_file)],
        &["ledger", "verify"],
    ));
    assert!(t.contains("ledger OK"), "{t}");
    ok(veil_env(
        &home,
        Some(&as_veil),
        &[("VEIL_DB_PASSWORD", pw.trim())],
        &["ledger", "verify"],
    ));
    std::fs::remove_dir_all(&home).unwrap();
}
