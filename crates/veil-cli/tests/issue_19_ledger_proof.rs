//! Issue 19: `veil ledger proof` prints a bundle an independent party can
//! check (entry, inclusion proof, checkpoint note, verifier key). The
//! bundles are checked here with the ledger crate's own primitives
//! (`merkle::verify_inclusion`, `NoteVerifier`), not with the code that
//! made them; the browser's check of the same bundles is
//! tests/browser/test_proof.py.
#![allow(clippy::print_stderr)] // says when the corpus is skipped

#[path = "../../veil-release/tests/common/mod.rs"]
mod common;

use std::path::Path;

use veil_ledger::merkle::{leaf_hash, verify_inclusion, Hash};
use veil_ledger::note::parse_checkpoint_text;
use veil_ledger::{unhex32, BundleFailure, NoteVerifier, ProofBundle, SignedNote};
use veil_test::ok;

fn veil(home: &Path, args: &[&str]) -> (i32, String) {
    veil_test::output(veil_test::veil_command(env!("CARGO_BIN_EXE_veil"), home, None).args(args))
}

/// Stdout only (the JSON), the command having succeeded.
fn stdout(home: &Path, args: &[&str]) -> String {
    let o = veil_test::veil_command(env!("CARGO_BIN_EXE_veil"), home, None)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn proof(home: &Path, position: u64) -> ProofBundle {
    let text = stdout(
        home,
        &[
            "ledger",
            "proof",
            "--position",
            &position.to_string(),
            "--json",
        ],
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A site with a recipient, a site default and `consents` consent records:
/// 2 + `consents` ledger entries, no corpus needed.
fn site(home: &Path, consents: usize) {
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"t\"\nversion = \"1\"\n").unwrap();
    ok(veil(home, &["init"]));
    ok(veil(
        home,
        &[
            "recipient",
            "add",
            "acme",
            "--purpose",
            "ai-training",
            "--recipe",
            recipe.to_str().unwrap(),
            "--retention-days",
            "30",
        ],
    ));
    ok(veil(
        home,
        &["consent", "default", "ai-training", "opt-out"],
    ));
    for i in 0..consents {
        add_consent(home, i);
    }
}

fn add_consent(home: &Path, i: usize) {
    ok(veil(
        home,
        &[
            "consent",
            "set",
            &format!("PROOF-P{i}"),
            "--deny",
            "--recipient",
            "acme",
        ],
    ));
}

/// Checks `b` the way an independent party would, with nothing but the
/// ledger crate's primitives and the verifier key `pubkey` obtained apart
/// (`veil ledger pubkey`): the note's signature, its size and root, then
/// the audit path. Returns the signed (size, root).
fn check_independently(b: &ProofBundle, pubkey: &str) -> (u64, Hash) {
    assert_eq!(b.verifier_key, pubkey, "the bundle names the site's key");
    let v = NoteVerifier::parse(pubkey).unwrap();
    let note = SignedNote::parse(b.checkpoint.as_bytes()).unwrap();
    let head = parse_checkpoint_text(v.open(&note).expect("the note verifies")).unwrap();
    assert_eq!(head.origin, v.name());
    assert_eq!(
        (head.size, unhex32(&b.root)),
        (b.tree_size, Some(head.root))
    );
    let path: Vec<Hash> = b.proof.iter().map(|h| unhex32(h).unwrap()).collect();
    assert!(
        verify_inclusion(
            b.index,
            head.size,
            &leaf_hash(b.leaf.as_bytes()),
            &path,
            &head.root
        ),
        "entry {} is in the signed tree",
        b.index
    );
    (head.size, head.root)
}

#[test]
fn every_entry_proves_against_the_latest_checkpoint_and_tampering_fails() {
    let home = veil_test::scratch("issue19-proof");
    site(&home, 3);
    let n = 5u64;

    // no checkpoint yet: said, with what to run (exit 2, could not run)
    let (code, out) = veil(&home, &["ledger", "proof", "--position", "0"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no checkpoint yet"), "{out}");
    assert!(out.contains("run `veil ledger checkpoint`"), "{out}");

    ok(veil(&home, &["ledger", "checkpoint"]));
    let pubkey = stdout(&home, &["ledger", "pubkey"]).trim().to_string();
    let rows = veil_store::Store::open(None, &home)
        .unwrap()
        .ledger_rows()
        .unwrap();
    assert_eq!(rows.len() as u64, n);
    let mut roots = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let b = proof(&home, i as u64);
        assert_eq!(b.index, i as u64);
        assert_eq!(
            b.leaf, row.entry,
            "the leaf is the stored entry, byte for byte"
        );
        assert_eq!(b.tree_size, n);
        roots.push(check_independently(&b, &pubkey));
        assert_eq!(b.verify(), Ok(()));

        // a changed leaf (one character of the entry) is not in the tree
        let mut t = b.clone();
        t.leaf = t.leaf.replacen("\"v\":1", "\"v\":2", 1);
        assert_ne!(t.leaf, b.leaf);
        let path: Vec<Hash> = t.proof.iter().map(|h| unhex32(h).unwrap()).collect();
        let (size, root) = roots[i];
        assert!(!verify_inclusion(
            t.index,
            size,
            &leaf_hash(t.leaf.as_bytes()),
            &path,
            &root
        ));
        assert_eq!(t.verify(), Err(BundleFailure::NotIncluded));
        // the entry claimed at another position
        let mut t = b.clone();
        t.index = (t.index + 1) % n;
        assert_eq!(t.verify(), Err(BundleFailure::NotIncluded));
        // one hex digit of the proof flipped
        let mut t = b.clone();
        let h = &mut t.proof[0];
        let flipped = if h.starts_with('0') { "1" } else { "0" };
        h.replace_range(0..1, flipped);
        assert_eq!(t.verify(), Err(BundleFailure::NotIncluded));
        // the note's size edited: the signature no longer verifies
        let mut t = b.clone();
        t.checkpoint = t.checkpoint.replacen(&format!("\n{n}\n"), "\n4\n", 1);
        assert_eq!(t.verify(), Err(BundleFailure::BadSignature));
        let note = SignedNote::parse(t.checkpoint.as_bytes()).unwrap();
        assert!(NoteVerifier::parse(&pubkey).unwrap().open(&note).is_err());
    }
    assert!(roots.windows(2).all(|w| w[0] == w[1]), "one head for all");

    // the human form carries the same pieces
    let text = stdout(&home, &["ledger", "proof", "--position", "1"]);
    let b = proof(&home, 1);
    for part in [
        &b.leaf,
        &b.root,
        &b.proof[0],
        &b.checkpoint,
        &b.verifier_key,
    ] {
        assert!(text.contains(part.as_str()), "{part} in {text}");
    }

    // an entry appended after the checkpoint is not covered yet
    add_consent(&home, 3);
    let (code, out) = veil(&home, &["ledger", "proof", "--position", "5", "--json"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("position 5 is not covered by the latest checkpoint (size 5)")
            && out.contains("run `veil ledger checkpoint`"),
        "{out}"
    );
    let (code, out) = veil(&home, &["ledger", "proof", "--position", "99"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no ledger entry at position 99"), "{out}");
    // earlier entries still prove against the older checkpoint; after a new
    // one, every entry proves against it
    assert_eq!(proof(&home, 2).tree_size, 5);
    ok(veil(&home, &["ledger", "checkpoint"]));
    for i in 0..=5 {
        let b = proof(&home, i);
        assert_eq!(b.tree_size, 6);
        check_independently(&b, &pubkey);
    }

    // a reading host without the ledger key serves proofs too
    std::fs::rename(home.join("ledger.key"), home.join("ledger.key.away")).unwrap();
    check_independently(&proof(&home, 5), &pubkey);

    // an entry edited in the database: no proof is handed out, and the
    // finding is a tampered log (exit 1, as `ledger verify`), not a usage
    // error
    let mut store = veil_store::Store::open(None, &home).unwrap();
    store
        .exec(
            "UPDATE ledger SET entry = replace(entry, '\"v\":1', '\"v\":2') WHERE seq = 1",
            &[],
        )
        .unwrap();
    let (code, out) = veil(&home, &["ledger", "proof", "--position", "0", "--json"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the log does not match its latest checkpoint (size 6)")
            && out.contains("run `veil ledger verify`"),
        "{out}"
    );
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn a_released_study_proves_its_release_entry() {
    let Some(corpus) = veil_test::corpus() else {
        eprintln!("corpus missing; skipping");
        return;
    };
    let home = veil_test::scratch("issue19-proof-release");
    site(&home, 0);
    let src = &common::sources(&corpus)[0];
    let input = home.join("in");
    common::plant(
        src,
        &input.join("a.dcm"),
        "PROOF-R1",
        "1.2.826.0.1.3680043.9.7778.19.1",
        1,
    );
    let out = ok(veil(
        &home,
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
    ));
    assert!(out.contains("1 released"), "{out}");
    ok(veil(&home, &["ledger", "checkpoint"]));
    let pubkey = stdout(&home, &["ledger", "pubkey"]).trim().to_string();
    let b = proof(&home, 2);
    let entry = veil_ledger::Entry::from_leaf(&b.leaf).unwrap();
    assert_eq!(entry.event, veil_ledger::Event::Release);
    assert_eq!((entry.seq, b.tree_size), (2, 3));
    check_independently(&b, &pubkey);
    assert_eq!(b.verify(), Ok(()));
    std::fs::remove_dir_all(&home).unwrap();
}
