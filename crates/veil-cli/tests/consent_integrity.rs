//! Issue 22: consent that cannot silently vanish, and recipients that cannot
//! be re-pointed, on SQLite and PostgreSQL.
//!
//! * A second consent import never erases another patient's record, and
//!   re-importing a file changes nothing.
//! * A database writer (no key) who deletes a deny, flips it to a permit,
//!   inserts a permit, changes a site default, or points a recipient at
//!   another key or recipe is detected: the release refuses the patient or
//!   does not run, with a reason that says so. Each attack is made with
//!   plain SQL on the store, as `ledger_tamper.rs` does.

#[path = "../../veil-release/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use veil_store::{Store, Val};

use veil_test::ok;

fn veil(home: &Path, db: Option<&str>, args: &[&str]) -> (i32, String) {
    veil_test::output(veil_test::veil_command(env!("CARGO_BIN_EXE_veil"), home, db).args(args))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Patients and their studies: A is denied, C has said nothing.
const PATIENTS: [(&str, &str); 2] = [
    ("INTEG-A", "1.2.826.0.1.3680043.9.7776.1"),
    ("INTEG-C", "1.2.826.0.1.3680043.9.7776.3"),
];

/// A store with recipients acme (ai-vendor) and uni, both for
/// ai-training, research and teaching; defaults ai-training opt-out,
/// research opt-in, none for teaching (opt-in); and a deny of patient A for
/// acme. Returns the input folder.
fn setup(home: &Path, db: Option<&str>, corpus: &Path) -> PathBuf {
    ok(veil(home, db, &["init"]));
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"t\"\nversion = \"1\"\n").unwrap();
    for (name, cat) in [("acme", "ai-vendor"), ("uni", "research")] {
        ok(veil(
            home,
            db,
            &[
                "recipient",
                "add",
                name,
                "--purpose",
                "ai-training",
                "--purpose",
                "research",
                "--purpose",
                "teaching",
                "--category",
                cat,
                "--recipe",
                s(&recipe),
                "--retention-days",
                "30",
            ],
        ));
    }
    ok(veil(
        home,
        db,
        &["consent", "default", "ai-training", "opt-out"],
    ));
    ok(veil(
        home,
        db,
        &["consent", "default", "research", "opt-in"],
    ));
    ok(veil(
        home,
        db,
        &[
            "consent",
            "set",
            PATIENTS[0].0,
            "--deny",
            "--recipient",
            "acme",
        ],
    ));
    let srcs = common::sources(corpus);
    let input = home.join("in");
    for (i, (p, st)) in PATIENTS.iter().enumerate() {
        common::plant(&srcs[i % 2], &input.join(format!("{i}.dcm")), p, st, 1);
    }
    input
}

/// Runs a release of `input` for acme into a fresh folder.
fn release(home: &Path, db: Option<&str>, input: &Path, purpose: &str, out: &str) -> (i32, String) {
    veil(
        home,
        db,
        &[
            "release",
            "--recipient",
            "acme",
            "--purpose",
            purpose,
            s(input),
            "--out",
            s(&home.join(out)),
        ],
    )
}

/// The reason of the latest entry about a patient.
fn last_reason(home: &Path, db: Option<&str>, patient: &str) -> String {
    let out = ok(veil(
        home,
        db,
        &["disclosures", "--patient-id", patient, "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let es = v["entries"].as_array().unwrap();
    es.last().unwrap()["entry"]["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

fn patient_ref(home: &Path, db: Option<&str>, patient: &str) -> String {
    let out = ok(veil(
        home,
        db,
        &["disclosures", "--patient-id", patient, "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["patient_ref"].as_str().unwrap().to_string()
}

/// Inserts a consent row the way a database writer would, on the schema
/// before (no version column) or after this change.
fn insert_consent(st: &mut Store, id: &str, pref: &str, provisions: &str) {
    let with_version = st.exec(
        "INSERT INTO consents (id, version, patient_ref, patient_id, patient_system, status, date_time, provisions, source, updated_at) VALUES (?, 1, ?, 'X', NULL, 'active', NULL, ?, 'fhir-import', '2025-01-01T00:00:00Z')",
        &[Val::t(id), Val::t(pref), Val::t(provisions)],
    );
    if with_version.is_err() {
        st.exec(
            "INSERT INTO consents (id, patient_ref, patient_id, patient_system, status, date_time, provisions, source, updated_at) VALUES (?, ?, 'X', NULL, 'active', NULL, ?, 'fhir-import', '2025-01-01T00:00:00Z')",
            &[Val::t(id), Val::t(pref), Val::t(provisions)],
        )
        .unwrap();
    }
}

type Attack = fn(&mut Store, &Path, Option<&str>);

/// The attacks and what each must lead to: (name, attack, purpose of the
/// release after it, expectation).
enum Expect {
    /// Patient A is refused because its rows differ from the ledger; C is
    /// decided as before.
    PatientRefused(&'static str),
    /// The release does not run; the error says this.
    Error(&'static str),
}

fn attacks() -> Vec<(&'static str, Attack, &'static str, Expect)> {
    vec![
        (
            "delete a deny row",
            |st, _, _| {
                st.exec("DELETE FROM consents", &[]).unwrap();
            },
            "ai-training",
            Expect::PatientRefused(PATIENTS[0].0),
        ),
        (
            "flip deny to permit",
            |st, _, _| {
                st.exec(
                    "UPDATE consents SET provisions = REPLACE(provisions, '\"deny\"', '\"permit\"')",
                    &[],
                )
                .unwrap();
            },
            "ai-training",
            Expect::PatientRefused(PATIENTS[0].0),
        ),
        (
            "insert a permit row",
            |st, home, db| {
                // C's keyed reference is in the ledger (from the baseline
                // refusal): all a database writer needs
                let pref = patient_ref(home, db, PATIENTS[1].0);
                insert_consent(
                    st,
                    "forged",
                    &pref,
                    r#"[{"decision":"permit","actor":null,"purpose":null,"start":null,"end":null,"study_uid":null}]"#,
                );
            },
            "research",
            Expect::PatientRefused(PATIENTS[1].0),
        ),
        (
            "change a site default from opt-in to opt-out",
            |st, _, _| {
                st.exec(
                    "UPDATE site_defaults SET mode = 'opt-out' WHERE purpose = 'research'",
                    &[],
                )
                .unwrap();
            },
            "research",
            Expect::Error("site default for research does not match the ledger"),
        ),
        (
            "add a site default",
            |st, _, _| {
                st.exec(
                    "INSERT INTO site_defaults (purpose, mode) VALUES ('teaching', 'opt-out')",
                    &[],
                )
                .unwrap();
            },
            "teaching",
            Expect::Error("site default for teaching does not match the ledger"),
        ),
        (
            "point the recipient at another key",
            |st, _, _| {
                let r = st
                    .query(
                        "SELECT key_file, key_id FROM recipients WHERE name = 'uni'",
                        &[],
                    )
                    .unwrap();
                st.exec(
                    "UPDATE recipients SET key_file = ?, key_id = ? WHERE name = 'acme'",
                    &[r[0][0].clone(), r[0][1].clone()],
                )
                .unwrap();
            },
            "ai-training",
            Expect::Error(
                "recipient acme: its key file does not match the key pinned in the ledger",
            ),
        ),
        (
            "change the recipient's recipe",
            |st, _, _| {
                st.exec(
                    // a valid recipe that keeps the original dates
                    "UPDATE recipients SET recipe_toml = 'name = \"t\"\nversion = \"1\"\noptions = [\"retain-long-full-dates\"]\n' WHERE name = 'acme'",
                    &[],
                )
                .unwrap();
            },
            "ai-training",
            Expect::Error(
                "recipient acme: its recipe does not match the recipe pinned in the ledger",
            ),
        ),
        (
            "change the recipient's category",
            |st, _, _| {
                st.exec(
                    "UPDATE recipients SET category = 'research' WHERE name = 'acme'",
                    &[],
                )
                .unwrap();
            },
            "ai-training",
            Expect::Error("recipient acme: its registration"),
        ),
    ]
}

/// Runs every attack on a fresh store (`db(i)` gives attack i's URL) and
/// fails naming every attack that went undetected.
fn db_writer_suite(tag: &str, db: &dyn Fn(usize) -> Option<String>, corpus: &Path) {
    let mut undetected = Vec::new();
    for (i, (name, attack, purpose, expect)) in attacks().into_iter().enumerate() {
        let one = std::panic::AssertUnwindSafe(|| {
            attack_once(tag, i, name, attack, purpose, expect, db, corpus)
        });
        if std::panic::catch_unwind(one).is_err() {
            undetected.push(name);
        }
    }
    assert!(undetected.is_empty(), "not detected: {undetected:?}");
}

#[allow(clippy::too_many_arguments)]
fn attack_once(
    tag: &str,
    i: usize,
    name: &str,
    attack: Attack,
    purpose: &str,
    expect: Expect,
    db: &dyn Fn(usize) -> Option<String>,
    corpus: &Path,
) {
    {
        let home = veil_test::scratch(&format!("integ-{tag}-{i}"));
        let url = db(i);
        let db = url.as_deref();
        let input = setup(&home, db, corpus);
        // baseline: A refused by its deny, C released (opt-out) for
        // ai-training; both refused for research (opt-in)
        let (code, out) = release(&home, db, &input, "ai-training", "base1");
        // refusals by consent only: the patients' choices carried out, exit 0
        assert_eq!(code, 0, "{name}: {out}");
        assert!(out.contains("2 studies: 1 released"), "{name}: {out}");
        let (code, out) = release(&home, db, &input, "research", "base2");
        assert_eq!(code, 0, "{name}: {out}");
        assert!(out.contains("2 studies: 0 released"), "{name}: {out}");

        let mut st = Store::open(db, &home).unwrap();
        attack(&mut st, &home, db);
        drop(st);
        let (code, out) = release(&home, db, &input, purpose, "after");
        match expect {
            Expect::PatientRefused(p) => {
                assert_eq!(code, 1, "{name}: {out}");
                let released = if purpose == "ai-training" && p == PATIENTS[0].0 {
                    1
                } else {
                    0
                };
                assert!(
                    out.contains(&format!("2 studies: {released} released")),
                    "{name}: the tampered patient must not be released: {out}"
                );
                let why = last_reason(&home, db, p);
                assert!(
                    why.contains("differ from the ledger"),
                    "{name}: refusal reason: {why}"
                );
                // and no new version is built on the changed rows
                let (code, out) = veil(
                    &home,
                    db,
                    &["consent", "set", p, "--deny", "--recipient", "uni"],
                );
                assert_eq!(code, 2, "{name}: {out}");
                assert!(out.contains("differ from the ledger"), "{name}: {out}");
                assert!(!out.contains(p), "{name}: no patient ID in errors: {out}");
            }
            Expect::Error(msg) => {
                assert_eq!(code, 2, "{name}: the release must not run: {out}");
                assert!(out.contains(msg), "{name}: {out}");
                let after = home.join("after");
                assert!(
                    !after.exists() || common::output_studies(&after).is_empty(),
                    "{name}: nothing released"
                );
            }
        }
        // the ledger itself was not touched and still verifies
        ok(veil(&home, db, &["ledger", "verify"]));
        std::fs::remove_dir_all(&home).unwrap();
    }
}

#[test]
fn issue_22_db_writer_changes_to_consent_defaults_and_recipients_are_detected_on_sqlite() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    db_writer_suite("sqlite", &|_| None, &corpus);
}

#[test]
fn issue_22_db_writer_changes_to_consent_defaults_and_recipients_are_detected_on_postgresql() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    db_writer_suite(
        "pg",
        &|i| {
            Some(
                veil_store::create_pg_database(
                    &base,
                    &format!("veil_integ_{}_{i}", std::process::id()),
                )
                .unwrap(),
            )
        },
        &corpus,
    );
}

/// An R4 Consent without an id: `decision` for every recipient.
fn consent_file(path: &Path, id: Option<&str>, patient: &str, decision: &str) {
    let id = id.map(|i| format!(r#""id":"{i}","#)).unwrap_or_default();
    let t = format!(
        r#"{{"resourceType":"Consent",{id}"status":"active","patient":{{"identifier":{{"value":"{patient}"}}}},"provision":{{"type":"{decision}"}}}}"#
    );
    veil_io::atomic::write_all(path, t.as_bytes()).unwrap();
}

fn consent_import_suite(tag: &str, db: Option<&str>, corpus: &Path) {
    let home = veil_test::scratch(&format!("integ-import-{tag}"));
    let input = setup(&home, db, corpus);
    // a deny of C from one file, a permit of another patient from another
    // file, neither with an id (both used to become "import-0", the second
    // erasing the first)
    let (f1, f2) = (home.join("c1.json"), home.join("c2.json"));
    consent_file(&f1, None, PATIENTS[1].0, "deny");
    consent_file(&f2, None, "INTEG-B", "permit");
    ok(veil(&home, db, &["consent", "import", s(&f1)]));
    ok(veil(&home, db, &["consent", "import", s(&f2)]));
    // under the opt-out default, C's deny still holds
    let (code, out) = release(&home, db, &input, "ai-training", "o1");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("2 studies: 0 released") && out.contains("2 consent"),
        "C's deny must survive the second import: {out}"
    );
    // re-importing a file is idempotent: nothing new, nothing logged
    let before = ok(veil(&home, db, &["ledger", "export", "--format", "fhir"]));
    let out = ok(veil(&home, db, &["consent", "import", s(&f1)]));
    assert!(out.contains("0 new versions, 1 unchanged"), "{out}");
    let after = ok(veil(&home, db, &["ledger", "export", "--format", "fhir"]));
    assert_eq!(before, after);

    // the same FHIR id from two sources: two records, not one
    let (f3, f4) = (home.join("c3.json"), home.join("c4.json"));
    consent_file(&f3, Some("c-1"), PATIENTS[1].0, "permit");
    consent_file(&f4, Some("c-1"), "INTEG-B", "deny");
    ok(veil(
        &home,
        db,
        &["consent", "import", s(&f3), "--source", "his"],
    ));
    ok(veil(
        &home,
        db,
        &["consent", "import", s(&f4), "--source", "ris"],
    ));
    let export = ok(veil(&home, db, &["consent", "export"]));
    assert!(
        export.contains("his/c-1") && export.contains("ris/c-1"),
        "{export}"
    );
    // C now has a deny (default source) and a permit (his) at the same
    // rank: deny wins the tie
    let (_, out) = release(&home, db, &input, "ai-training", "o2");
    assert!(out.contains("2 studies: 0 released"), "{out}");
    // a newer version of the same record replaces it as current, and the
    // old version is kept
    consent_file(&f3, Some("c-1"), PATIENTS[1].0, "deny");
    let out = ok(veil(
        &home,
        db,
        &["consent", "import", s(&f3), "--source", "his"],
    ));
    assert!(out.contains("1 new versions"), "{out}");
    let mut st = Store::open(db, &home).unwrap();
    let n = st
        .query("SELECT COUNT(*) FROM consents WHERE id = 'his/c-1'", &[])
        .unwrap();
    assert_eq!(n[0][0].int(), Some(2), "both versions kept");
    drop(st);
    // the same id from the same source for another patient is refused
    consent_file(&f4, Some("c-1"), PATIENTS[0].0, "permit");
    let (code, out) = veil(&home, db, &["consent", "import", s(&f4), "--source", "his"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("another patient"), "{out}");
    assert!(
        !out.contains(PATIENTS[0].0),
        "no patient ID in errors: {out}"
    );
    ok(veil(&home, db, &["ledger", "verify"]));
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_22_a_second_consent_import_keeps_other_patients_records_on_sqlite() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    consent_import_suite("sqlite", None, &corpus);
}

#[test]
fn issue_22_a_second_consent_import_keeps_other_patients_records_on_postgresql() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let url =
        veil_store::create_pg_database(&base, &format!("veil_integ_import_{}", std::process::id()))
            .unwrap();
    consent_import_suite("pg", Some(&url), &corpus);
}

#[test]
fn issue_22_recipient_key_rotation_is_explicit_and_pinned() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("integ-rotate");
    let input = setup(&home, None, &corpus);
    let old = std::fs::read_to_string(home.join("keys/acme.key")).unwrap();
    let out = ok(veil(&home, None, &["recipient", "rotate-key", "acme"]));
    let new_file = home.join("keys/acme.k2.key");
    let new = std::fs::read_to_string(&new_file).unwrap();
    assert_ne!(old, new);
    assert!(
        !out.contains(new.trim()) && !out.contains(old.trim()),
        "keys never printed"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&new_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // releases use the new key
    let (code, out) = release(&home, None, &input, "ai-training", "o1");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 studies: 1 released"), "{out}");
    // the rotation is logged, with the new key's id
    let new_id = veil_deid::Key::load(&new_file).unwrap().id();
    let mut st = Store::open(None, &home).unwrap();
    let logged = st
        .query("SELECT entry FROM ledger ORDER BY seq", &[])
        .unwrap()
        .iter()
        .filter_map(|r| r[0].text().map(str::to_string))
        .filter(|e| e.contains("\"recipient-key-rotation\""))
        .collect::<Vec<_>>();
    assert_eq!(logged.len(), 1);
    assert!(logged[0].contains(&new_id));
    // pointing acme back at its old key (file and id) is a change outside
    // Veil: the pin is the new key's
    let old_file = home.join("keys/acme.key");
    let old_id = veil_deid::Key::load(&old_file).unwrap().id();
    st.exec(
        "UPDATE recipients SET key_file = ?, key_id = ? WHERE name = 'acme'",
        &[Val::t(s(&old_file)), Val::t(old_id)],
    )
    .unwrap();
    drop(st);
    let (code, out) = release(&home, None, &input, "ai-training", "o2");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("its key file does not match the key pinned in the ledger"),
        "{out}"
    );
    // an unknown recipient cannot be rotated
    assert_eq!(
        veil(&home, None, &["recipient", "rotate-key", "nobody"]).0,
        2
    );
    ok(veil(&home, None, &["ledger", "verify"]));
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_22_a_store_from_before_the_change_is_adopted_once() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("integ-adopt");
    // rows as an older Veil wrote them: no ledger entry covers them
    ok(veil(&home, None, &["init"]));
    let key = home.join("keys/acme.key");
    std::fs::create_dir_all(home.join("keys")).unwrap();
    ok(veil(&home, None, &["key", "new", s(&key)]));
    let key_id = veil_deid::Key::load(&key).unwrap().id();
    let mut st = Store::open(None, &home).unwrap();
    st.exec(
        "INSERT INTO recipients (name, category, contact, address, purposes, recipe_toml, recipe_label, key_file, key_id, retention_days, created_at) VALUES ('acme', NULL, NULL, NULL, '[\"ai-training\"]', 'name = \"t\"\n', 't', ?, ?, 30, '2025-01-01T00:00:00Z')",
        &[Val::t(s(&key)), Val::t(key_id)],
    )
    .unwrap();
    st.exec(
        "INSERT INTO site_defaults (purpose, mode) VALUES ('ai-training', 'opt-out')",
        &[],
    )
    .unwrap();
    drop(st);
    let input = home.join("in");
    let srcs = common::sources(&corpus);
    common::plant(
        &srcs[0],
        &input.join("a.dcm"),
        PATIENTS[1].0,
        PATIENTS[1].1,
        1,
    );
    let (code, out) = release(&home, None, &input, "ai-training", "o1");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no ledger entry pins"), "{out}");
    let out = ok(veil(&home, None, &["consent", "adopt"]));
    assert!(
        out.contains("logged 1 recipients, 1 site defaults and 0 consent versions"),
        "{out}"
    );
    let (code, out) = release(&home, None, &input, "ai-training", "o2");
    assert_eq!(code, 0, "{out}");
    // once only: later changes outside Veil cannot be adopted
    let (code, out) = veil(&home, None, &["consent", "adopt"]);
    assert_eq!(code, 2, "{out}");
    ok(veil(&home, None, &["ledger", "verify"]));
    std::fs::remove_dir_all(&home).unwrap();
}
