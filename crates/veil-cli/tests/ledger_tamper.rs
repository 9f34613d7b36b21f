//! Tampering with the ledger directly in the database, on SQLite and on
//! PostgreSQL: editing (with and without recomputing the leaf hash),
//! deleting (with and without renumbering), inserting, reordering and
//! truncating entries. `veil ledger verify` must exit 1 and name the
//! position every time, and the untouched log must verify.
#![allow(clippy::print_stderr)] // says when PostgreSQL is skipped

#[path = "../../veil-release/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

use veil_store::{Store, Val};

fn veil(home: &Path, db: Option<&str>, args: &[&str]) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_veil"));
    c.env("VEIL_HOME", home)
        .env_remove("VEIL_DB_URL")
        .args(args);
    if let Some(d) = db {
        c.env("VEIL_DB_URL", d);
    }
    let o = c.output().expect("run veil");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (o.status.code().unwrap_or(-1), out + &err)
}

/// A log of 6 entries (3 patients x 2 studies, one of them refused) with a
/// checkpoint over all of them.
fn populate(home: &Path, db: Option<&str>, corpus: &Path) {
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"t\"\nversion = \"1\"\n").unwrap();
    let r = recipe.to_str().unwrap();
    let ok = |(code, out): (i32, String)| assert_eq!(code, 0, "{out}");
    ok(veil(
        home,
        db,
        &[
            "recipient",
            "add",
            "acme",
            "--purpose",
            "ai-training",
            "--recipe",
            r,
            "--retention-days",
            "30",
        ],
    ));
    ok(veil(
        home,
        db,
        &["consent", "default", "ai-training", "opt-out"],
    ));
    ok(veil(
        home,
        db,
        &[
            "consent",
            "set",
            "TAMPER-P2",
            "--deny",
            "--recipient",
            "acme",
        ],
    ));
    let srcs = common::sources(corpus);
    let input = home.join("in");
    for p in 0..3 {
        for (s, src) in srcs.iter().enumerate() {
            common::plant(
                src,
                &input.join(format!("{p}{s}.dcm")),
                &format!("TAMPER-P{p}"),
                &format!("1.2.826.0.1.3680043.9.7778.{p}.{s}"),
                1,
            );
        }
    }
    let (code, out) = veil(
        home,
        db,
        &[
            "release",
            "--recipient",
            "acme",
            "--purpose",
            "ai-training",
            input.to_str().unwrap(),
            "--out",
            home.join("out").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "two studies are refused: {out}");
    assert!(out.contains("6 studies: 4 released"), "{out}");
    ok(veil(home, db, &["ledger", "checkpoint"]));
}

fn rehash(entry: &str) -> String {
    veil_ledger::hex(&veil_ledger::merkle::leaf_hash(entry.as_bytes()))
}

/// Moves rows with seq >= from by `by` (two steps, so no unique-key clash
/// on either engine).
fn shift(s: &mut Store, from: i64, by: i64) {
    s.exec(
        "UPDATE ledger SET seq = -seq - 1000 WHERE seq >= ?",
        &[Val::i(from)],
    )
    .unwrap();
    s.exec(
        "UPDATE ledger SET seq = -(seq + 1000) + ? WHERE seq < 0",
        &[Val::i(by)],
    )
    .unwrap();
}

type Tamper = Box<dyn Fn(&mut Store)>;

fn suite(db: Option<&str>, home: &Path, corpus: &Path) -> usize {
    populate(home, db, corpus);
    let (code, out) = veil(home, db, &["ledger", "verify"]);
    assert_eq!(code, 0, "untouched log verifies: {out}");
    let mut store = Store::open(db, home).unwrap();
    let rows = store.ledger_rows().unwrap();
    // 3 change entries (recipient, default, consent) then the 6 decisions
    assert_eq!(rows.len(), 9);
    let cases: Vec<(&str, Tamper, u64)> = vec![
        (
            "edit",
            Box::new(|s: &mut Store| {
                s.exec("UPDATE ledger SET entry = REPLACE(entry, '\"acme\"', '\"evil\"') WHERE seq = 5", &[]).unwrap();
            }),
            5,
        ),
        (
            "edit and recompute the leaf hash",
            Box::new(|s: &mut Store| {
                let e = s
                    .query("SELECT entry FROM ledger WHERE seq = 7", &[])
                    .unwrap()[0][0]
                    .text()
                    .unwrap()
                    .replace("\"ai-training\"", "\"research\"");
                s.exec(
                    "UPDATE ledger SET entry = ?, leaf_hash = ? WHERE seq = 7",
                    &[Val::t(e.clone()), Val::t(rehash(&e))],
                )
                .unwrap();
            }),
            7,
        ),
        (
            "delete",
            Box::new(|s: &mut Store| {
                s.exec("DELETE FROM ledger WHERE seq = 6", &[]).unwrap();
            }),
            6,
        ),
        (
            "delete and renumber",
            Box::new(|s: &mut Store| {
                s.exec("DELETE FROM ledger WHERE seq = 4", &[]).unwrap();
                shift(s, 5, -1);
            }),
            4,
        ),
        (
            "insert",
            Box::new(|s: &mut Store| {
                let r = s
                    .query("SELECT entry, head_sig FROM ledger WHERE seq = 5", &[])
                    .unwrap();
                let e = r[0][0]
                    .text()
                    .unwrap()
                    .replace("\"release\"", "\"refusal\"");
                let sig = r[0][1].text().unwrap().to_string();
                shift(s, 5, 1);
                s.exec(
                    "INSERT INTO ledger (seq, entry, leaf_hash, head_sig) VALUES (5, ?, ?, ?)",
                    &[Val::t(e.clone()), Val::t(rehash(&e)), Val::t(sig)],
                )
                .unwrap();
            }),
            5,
        ),
        (
            "reorder",
            Box::new(|s: &mut Store| {
                s.exec("UPDATE ledger SET seq = -1 WHERE seq = 6", &[])
                    .unwrap();
                s.exec("UPDATE ledger SET seq = 6 WHERE seq = 7", &[])
                    .unwrap();
                s.exec("UPDATE ledger SET seq = 7 WHERE seq = -1", &[])
                    .unwrap();
            }),
            6,
        ),
        (
            "truncate after a checkpoint",
            Box::new(|s: &mut Store| {
                s.exec("DELETE FROM ledger WHERE seq = 8", &[]).unwrap();
            }),
            8,
        ),
        (
            "delete the first entry",
            Box::new(|s: &mut Store| {
                s.exec("DELETE FROM ledger WHERE seq = 0", &[]).unwrap();
            }),
            0,
        ),
    ];
    let mut detected = 0;
    for (name, tamper, pos) in &cases {
        tamper(&mut store);
        let (code, out) = veil(home, db, &["ledger", "verify", "--json"]);
        assert_eq!(code, 1, "{name}: verify must fail: {out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["first_bad_position"], *pos, "{name}: {out}");
        let (_, text) = veil(home, db, &["ledger", "verify"]);
        assert!(
            text.contains(&format!("first bad position {pos}")),
            "{name}: {text}"
        );
        // a checkpoint is refused over a tampered log
        assert_eq!(veil(home, db, &["ledger", "checkpoint"]).0, 1, "{name}");
        detected += 1;
        // restore
        store.exec("DELETE FROM ledger", &[]).unwrap();
        for r in &rows {
            store.insert_ledger_row(r).unwrap();
        }
        let (code, out) = veil(home, db, &["ledger", "verify"]);
        assert_eq!(code, 0, "{name}: restored log verifies: {out}");
    }
    detected
}

#[test]
fn tampering_is_detected_and_located_on_sqlite() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("tamper-sqlite");
    assert_eq!(suite(None, &home, &corpus), 8);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn tampering_is_detected_and_located_on_postgresql() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let Ok(base) = std::env::var("VEIL_TEST_PG_URL") else {
        assert!(
            std::env::var("VEIL_REQUIRE_PG").is_err(),
            "VEIL_REQUIRE_PG is set but VEIL_TEST_PG_URL is not"
        );
        eprintln!("VEIL_TEST_PG_URL not set; skipping");
        return;
    };
    let url = veil_store::create_pg_database(&base, &format!("veil_tamper_{}", std::process::id()))
        .unwrap();
    let home = veil_test::scratch("tamper-pg");
    assert_eq!(suite(Some(&url), &home, &corpus), 8);
    // the same schema on both engines
    let mut s = Store::open(Some(&url), &home).unwrap();
    assert_eq!(s.backend(), "postgresql");
    assert_eq!(s.schema_version().unwrap(), 2);
    std::fs::remove_dir_all(&home).unwrap();
}
