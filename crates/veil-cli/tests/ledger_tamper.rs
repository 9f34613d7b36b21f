//! Tampering with the ledger directly in the database, on SQLite and on
//! PostgreSQL: editing (with and without recomputing the leaf hash),
//! deleting (with and without renumbering), inserting, reordering and
//! truncating entries. `veil ledger verify` must exit 1 and name the
//! position every time, and the untouched log must verify.

#[path = "../../veil-release/tests/common/mod.rs"]
mod common;

use std::path::Path;

use veil_store::{Store, Val};

fn veil(home: &Path, db: Option<&str>, args: &[&str]) -> (i32, String) {
    veil_test::output(veil_test::veil_command(env!("CARGO_BIN_EXE_veil"), home, db).args(args))
}

/// A log of 6 entries (3 patients x 2 studies, one of them refused) with a
/// checkpoint over all of them.
fn populate(home: &Path, db: Option<&str>, corpus: &Path) {
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"t\"\nversion = \"1\"\n").unwrap();
    let r = recipe.to_str().unwrap();
    let ok = |(code, out): (i32, String)| assert_eq!(code, 0, "{out}");
    ok(veil(home, db, &["init"]));
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
    assert_eq!(code, 0, "two studies refused by consent (exit 0): {out}");
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
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let url = veil_store::create_pg_database(&base, &format!("veil_tamper_{}", std::process::id()))
        .unwrap();
    let home = veil_test::scratch("tamper-pg");
    assert_eq!(suite(Some(&url), &home, &corpus), 8);
    // the same schema on both engines
    let mut s = Store::open(Some(&url), &home).unwrap();
    assert_eq!(s.backend(), "postgresql");
    assert_eq!(s.schema_version().unwrap(), 7);
    std::fs::remove_dir_all(&home).unwrap();
}

// ---- issue 22 (4): a ledger anchored outside its database ----
//
// The attacks below leave every stored row and signature consistent, so
// `ledger verify` alone passes after each of them (asserted, to show the
// hole): only a checkpoint note saved outside the site before the attack
// catches them.

/// Re-signs `entries` (leaf JSON, in order) with `key` as a forger holding
/// a key would: positions, leaf hashes and signed heads all consistent.
fn signed_rows(
    key: &veil_ledger::LedgerKey,
    entries: &[String],
) -> Vec<veil_store::veil_ledger_row::StoredRow> {
    let mut f = veil_ledger::Frontier::new();
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut entry = veil_ledger::Entry::from_leaf(e).unwrap();
            entry.seq = i as u64;
            let data = String::from_utf8(entry.to_leaf()).unwrap();
            let lh = veil_ledger::merkle::leaf_hash(data.as_bytes());
            f.push(lh);
            veil_store::veil_ledger_row::StoredRow {
                seq: i as i64,
                entry: data,
                leaf_hash: veil_ledger::hex(&lh),
                head_sig: key.sign_head(i as u64 + 1, &f.root()),
            }
        })
        .collect()
}

fn replace_log(s: &mut Store, rows: &[veil_store::veil_ledger_row::StoredRow]) {
    s.exec("DELETE FROM ledger", &[]).unwrap();
    for r in rows {
        s.insert_ledger_row(r).unwrap();
    }
}

fn write_key(path: &Path, seed: &[u8; 32]) {
    use std::os::unix::fs::PermissionsExt;
    veil_io::atomic::write_all(path, format!("{}\n", veil_ledger::hex(seed)).as_bytes()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn anchored_suite(db: Option<&str>, home: &Path, corpus: &Path) {
    let ok = |(code, out): (i32, String)| {
        assert_eq!(code, 0, "{out}");
        out
    };
    populate(home, db, corpus);
    // the site publishes a note of its 9 entries (3 pin the recipient,
    // the consent and the default; 6 decisions), and its verifier key
    let published = home.join("elsewhere");
    let note = published.join("head-9.note");
    let n = note.to_str().unwrap();
    let out = ok(veil(home, db, &["ledger", "checkpoint", "--out", n]));
    assert!(out.contains("checkpoint of 9 entries"), "{out}");
    let text = std::fs::read_to_string(&note).unwrap();
    let pubkey = ok(veil(home, db, &["ledger", "pubkey"])).trim().to_string();
    // a C2SP checkpoint: origin (the key's name), size, base64 root, blank
    // line, `— name base64(key id || signature)`; the verifier key is
    // `name+keyid+base64(0x01 || key)`
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].starts_with("veil-ledger/"), "{text}");
    assert_eq!(lines[1], "9");
    assert_eq!(lines[2].len(), 44, "{text}");
    assert_eq!(lines[3], "");
    assert!(lines[4].starts_with(&format!("— {} ", lines[0])), "{text}");
    let parts: Vec<&str> = pubkey.splitn(3, '+').collect();
    assert_eq!(parts.len(), 3, "{pubkey}");
    assert_eq!(parts[0], lines[0]);
    assert_eq!(parts[1].len(), 8, "{pubkey}");

    // an untampered log that grew after the note passes, with the site's
    // key or with only the published verifier key
    ok(veil(home, db, &["retention", "run", "--now", "2100-01-01"]));
    let out = ok(veil(home, db, &["ledger", "verify", "--checkpoint", n]));
    assert!(
        out.contains("13 entries") && out.contains("1 checkpoint notes matched"),
        "{out}"
    );
    let out = ok(veil(
        home,
        db,
        &["ledger", "verify", "--pubkey", &pubkey, "--checkpoint", n],
    ));
    assert!(out.contains("1 checkpoint notes matched"), "{out}");
    let keyfile = published.join("ledger.pub");
    veil_io::atomic::write_all(&keyfile, format!("{pubkey}\n").as_bytes()).unwrap();
    ok(veil(
        home,
        db,
        &[
            "ledger",
            "verify",
            "--pubkey",
            keyfile.to_str().unwrap(),
            "--checkpoint",
            n,
            n,
        ],
    ));

    let mut store = Store::open(db, home).unwrap();
    let rows = store.ledger_rows().unwrap();
    assert_eq!(rows.len(), 13);
    let cps = store.checkpoints().unwrap();
    let key_path = home.join("ledger.key");
    let seed: [u8; 32] = veil_ledger::unhex(&std::fs::read_to_string(&key_path).unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let site_key = veil_ledger::LedgerKey::from_seed(seed);
    let entries: Vec<String> = rows.iter().map(|r| r.entry.clone()).collect();

    let restore = |s: &mut Store| {
        replace_log(s, &rows);
        s.exec("DELETE FROM checkpoints", &[]).unwrap();
        for c in &cps {
            s.insert_checkpoint(c).unwrap();
        }
        write_key(&key_path, &seed);
        s.exec(
            "UPDATE key_records SET value = ? WHERE role = 'ledger'",
            &[Val::t(veil_ledger::hex(
                site_key.verifying_key().as_bytes(),
            ))],
        )
        .unwrap();
        let (code, out) = veil(home, db, &["ledger", "verify", "--checkpoint", n]);
        assert_eq!(code, 0, "restored: {out}");
    };
    // (name, attack, what the message must say, first bad position)
    type Attack<'a> = Box<dyn Fn(&mut Store) + 'a>;
    let cases: Vec<(&str, Attack, &str, u64)> = vec![
        (
            "truncate the tail and delete the checkpoints",
            Box::new(|s: &mut Store| {
                s.exec("DELETE FROM ledger WHERE seq >= ?", &[Val::i(7)])
                    .unwrap();
                s.exec("DELETE FROM checkpoints", &[]).unwrap();
            }),
            "covers 9 entries but the log has 7: entries from position 7 on were removed (truncated)",
            7,
        ),
        (
            "fork after position 6, re-signed with the site's key",
            Box::new(|s: &mut Store| {
                let mut forked = entries[..7].to_vec();
                for e in &entries[7..] {
                    forked.push(e.replace("\"acme\"", "\"elsewhere\""));
                }
                assert_ne!(forked, entries);
                replace_log(s, &signed_rows(&site_key, &forked));
                s.exec("DELETE FROM checkpoints", &[]).unwrap();
            }),
            "the log's first 9 entries do not match the checkpoint note",
            8,
        ),
        (
            "rewrite everything under a freshly generated key",
            Box::new(|s: &mut Store| {
                // a refusal disappears, the rest is renumbered and re-signed
                let fresh = [0x5a; 32];
                let kept: Vec<String> = entries
                    .iter()
                    .filter(|e| !e.contains("\"refusal\""))
                    .cloned()
                    .collect();
                assert!(kept.len() < entries.len());
                let forger = veil_ledger::LedgerKey::from_seed(fresh);
                replace_log(s, &signed_rows(&forger, &kept));
                s.exec("DELETE FROM checkpoints", &[]).unwrap();
                write_key(&key_path, &fresh);
                // the forger also records the new public key in the store,
                // which every command checks against the key file
                s.exec(
                    "UPDATE key_records SET value = ? WHERE role = 'ledger'",
                    &[Val::t(veil_ledger::hex(forger.verifying_key().as_bytes()))],
                )
                .unwrap();
            }),
            "the note is not signed by",
            0,
        ),
    ];
    for (name, attack, what, pos) in &cases {
        attack(&mut store);
        // the hole: everything the database holds is consistent
        let (code, out) = veil(home, db, &["ledger", "verify"]);
        assert_eq!(code, 0, "{name}: without a note the attack passes: {out}");
        // the note kept elsewhere catches it, and says what
        let (code, out) = veil(home, db, &["ledger", "verify", "--checkpoint", n]);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(
            out.contains("ledger TAMPERED") && out.contains(what),
            "{name}: {out}"
        );
        let (code, out) = veil(home, db, &["ledger", "verify", "--json", "--checkpoint", n]);
        assert_eq!(code, 1, "{name}: {out}");
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(j["first_bad_position"], *pos, "{name}: {out}");
        // an auditor holding only the published key catches it too
        let (code, out) = veil(
            home,
            db,
            &["ledger", "verify", "--pubkey", &pubkey, "--checkpoint", n],
        );
        assert_eq!(code, 1, "{name}, auditor: {out}");
        restore(&mut store);
    }

    // a note that cannot be read as one is not a verdict: exit 2, named
    let bad = published.join("bad.note");
    veil_io::atomic::write_all(&bad, text.replace('—', "-").as_bytes()).unwrap();
    let (code, out) = veil(
        home,
        db,
        &["ledger", "verify", "--checkpoint", bad.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("bad.note") && out.contains("em dash"), "{out}");
    let (code, out) = veil(home, db, &["ledger", "verify", "--pubkey", "nonsense"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--pubkey"), "{out}");
}

#[test]
fn issue_22_anchored_ledger_detects_truncation_fork_and_rewrite_on_sqlite() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("anchor-sqlite");
    anchored_suite(None, &home, &corpus);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_22_anchored_ledger_detects_truncation_fork_and_rewrite_on_postgresql() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let url = veil_store::create_pg_database(&base, &format!("veil_anchor_{}", std::process::id()))
        .unwrap();
    let home = veil_test::scratch("anchor-pg");
    anchored_suite(Some(&url), &home, &corpus);
    std::fs::remove_dir_all(&home).unwrap();
}
