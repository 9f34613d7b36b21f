//! Verification of a stored log against its signatures.

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::merkle::{self, Frontier, Hash};
use crate::note::{parse_checkpoint_text, NoteError, NoteVerifier, SignedNote, TreeHead};
use crate::sign::{check, head_message, note_verifier, Checkpoint};
use crate::{hex, unhex32, Entry};

/// A row as the store holds it.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// The row's position column.
    pub seq: i64,
    /// The entry JSON (the leaf data).
    pub entry: String,
    /// The stored leaf hash (hex).
    pub leaf_hash: String,
    /// Signature of the head after this entry (hex).
    pub head_sig: String,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The first position (0-based) the finding concerns.
    pub position: u64,
    /// What is wrong.
    pub what: String,
}

/// The verdict.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// True when nothing is wrong.
    pub ok: bool,
    /// Rows read.
    pub entries: u64,
    /// The first bad position, if any.
    pub first_bad_position: Option<u64>,
    /// Findings, first position first (at most a few per kind).
    pub problems: Vec<Problem>,
    /// Root of the whole stored log (hex).
    pub root: String,
    /// Checkpoints whose signature, root and consistency were checked.
    pub checkpoints_checked: usize,
    /// The latest checkpoint (size, root), if any.
    pub latest_checkpoint: Option<Checkpoint>,
    /// Checkpoint notes kept elsewhere whose signature, root and
    /// consistency were checked.
    pub notes_checked: usize,
    /// The id of the key the log was checked against.
    pub key_id: String,
    /// The verifier key (`veil ledger pubkey`) the log was checked against.
    pub verifier_key: String,
}

/// A checkpoint note kept outside the site, as handed to `ledger verify`.
#[derive(Debug, Clone)]
pub struct ExternalNote {
    /// How messages name it (the file name the user gave).
    pub label: String,
    /// The parsed, not yet verified, note.
    pub note: SignedNote,
}

/// Checks every row and every stored checkpoint against `key` (see
/// [`verify_log_against`], with no external note).
pub fn verify_log(
    rows: &[StoredRow],
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
) -> VerifyReport {
    verify_log_against(rows, checkpoints, &[], &note_verifier(key))
}

/// Checks every row, every stored checkpoint and every checkpoint note
/// kept elsewhere, trusting only `verifier` (the ledger's public key under
/// its name: the site's own, or the one an auditor was given).
///
/// For each position i: the row must be the i-th (no gap, no repeat), the
/// entry must say it is entry i, its leaf hash must match its content, and
/// the signed head stored with it must match the root recomputed from
/// entries 0..=i. The first three give a precise description, the last one
/// catches a forger who recomputed the hashes. Then each checkpoint's
/// signature is checked, its root compared with the recomputed one at its
/// size (a checkpoint larger than the log means entries were removed from
/// the end), and a consistency proof is checked between consecutive
/// checkpoints and from the latest to the current head.
///
/// The stored checkpoints live in the same database as the log, so whoever
/// can cut the log can delete them too. The external notes are what catch
/// that: a note larger than the log is a truncation, a note whose root
/// differs from the log's first N entries is a fork or a rewrite (even one
/// re-signed under the same key), and a note not signed by `verifier` means
/// the log is now signed by another key or the note is another log's.
pub fn verify_log_against(
    rows: &[StoredRow],
    checkpoints: &[Checkpoint],
    notes: &[ExternalNote],
    verifier: &NoteVerifier,
) -> VerifyReport {
    let key = verifier.key();
    let mut problems = Vec::new();
    let mut frontier = Frontier::new();
    let mut leaves: Vec<Hash> = Vec::with_capacity(rows.len());
    let mut head_failures = 0;
    for (i, row) in rows.iter().enumerate() {
        let pos = i as u64;
        let lh = merkle::leaf_hash(row.entry.as_bytes());
        if row.seq != i as i64 {
            let what = if row.seq > i as i64 {
                format!(
                    "entry {i} is missing (the next row is entry {}): removed",
                    row.seq
                )
            } else {
                format!(
                    "row with position {} found where entry {i} belongs: inserted or reordered",
                    row.seq
                )
            };
            problems.push(Problem {
                position: pos,
                what,
            });
        } else {
            match Entry::from_leaf(&row.entry) {
                Ok(e) if e.seq != pos => problems.push(Problem {
                    position: pos,
                    what: format!("the entry at position {i} says it is entry {}: moved, inserted or reordered", e.seq),
                }),
                Ok(_) => {}
                Err(_) => problems.push(Problem {
                    position: pos,
                    what: format!("entry {i} is not a valid ledger entry: changed"),
                }),
            }
            if unhex32(&row.leaf_hash) != Some(lh) {
                problems.push(Problem {
                    position: pos,
                    what: format!("entry {i} does not match its leaf hash: changed"),
                });
            }
        }
        frontier.push(lh);
        leaves.push(lh);
        if !check(key, &head_message(pos + 1, &frontier.root()), &row.head_sig) {
            head_failures += 1;
            if head_failures <= 3 {
                problems.push(Problem {
                    position: pos,
                    what: format!(
                        "the signed tree head stored with entry {i} does not match entries 0..={i}: an entry at or before {i} was changed, removed, inserted or reordered"
                    ),
                });
            }
        }
    }
    let n = leaves.len() as u64;
    let current = frontier.root();
    let mut cps: Vec<&Checkpoint> = checkpoints.iter().collect();
    cps.sort_by_key(|c| c.size);
    // every signed head whose signature checks: (size, root, what it is,
    // whether it came from outside)
    let mut heads: Vec<(u64, Hash, String, bool)> = Vec::new();
    for c in &cps {
        if !c.verify(key) {
            problems.push(Problem {
                position: c.size.saturating_sub(1),
                what: format!("checkpoint of size {} has a bad signature", c.size),
            });
            continue;
        }
        if let Some(root) = unhex32(&c.root) {
            heads.push((c.size, root, "signed checkpoint".into(), false));
        }
    }
    for x in notes {
        let what = format!("checkpoint note {}", x.label);
        match open_checkpoint(&x.note, verifier) {
            Ok(h) => heads.push((h.size, h.root, what, true)),
            Err(why) => problems.push(Problem {
                position: 0,
                what: format!("{what}: {why}"),
            }),
        }
    }
    heads.sort_by_key(|h| h.0);
    let mut checked = 0;
    let mut notes_checked = 0;
    let mut prev: Option<(u64, Hash)> = None;
    for (size, signed_root, what, external) in &heads {
        let size = *size;
        if size > n {
            problems.push(Problem {
                position: n,
                what: format!(
                    "a {what} covers {size} entries but the log has {n}: entries from position {n} on were removed (truncated)"
                ),
            });
            continue;
        }
        let here = merkle::root(&leaves[..size as usize]);
        if here != *signed_root {
            problems.push(Problem {
                position: first_difference_hint(&problems, size),
                what: format!(
                    "the log's first {size} entries do not match the {what} of that size: the log was forked or rewritten at or before position {}",
                    size.saturating_sub(1)
                ),
            });
            continue;
        }
        if let Some((ps, pr)) = prev {
            let proof = merkle::consistency_proof(ps as usize, &leaves[..size as usize]);
            if !merkle::verify_consistency(ps, size, &proof, &pr, signed_root) {
                problems.push(Problem {
                    position: ps,
                    what: format!("checkpoints of size {ps} and {size} are not consistent"),
                });
            }
        }
        prev = Some((size, *signed_root));
        if *external {
            notes_checked += 1;
        } else {
            checked += 1;
        }
    }
    if let Some((ps, pr)) = prev {
        let proof = merkle::consistency_proof(ps as usize, &leaves);
        if !merkle::verify_consistency(ps, n, &proof, &pr, &current) {
            problems.push(Problem {
                position: ps,
                what: format!("the current log is not an extension of the checkpoint of size {ps}"),
            });
        }
    }
    problems.sort_by_key(|p| p.position);
    VerifyReport {
        ok: problems.is_empty(),
        entries: n,
        first_bad_position: problems.first().map(|p| p.position),
        problems,
        root: hex(&current),
        checkpoints_checked: checked,
        notes_checked,
        latest_checkpoint: cps.last().map(|c| (*c).clone()),
        key_id: crate::sign::key_id(key),
        verifier_key: verifier.to_string(),
    }
}

/// Verifies a checkpoint note with `verifier` and reads its tree head; the
/// origin must be the verifier's name (the log the key speaks for).
fn open_checkpoint(note: &SignedNote, verifier: &NoteVerifier) -> Result<TreeHead, String> {
    let not_ours = ": the ledger is now signed by another key (rewritten), or the note belongs to another ledger";
    let text = verifier.open(note).map_err(|e| match e {
        NoteError::UnknownKey { .. } => format!("{e}{not_ours}"),
        e => e.to_string(),
    })?;
    let h = parse_checkpoint_text(text).map_err(|e| e.to_string())?;
    if h.origin != verifier.name() {
        return Err(format!(
            "the note is for the log {}, not {}{not_ours}",
            h.origin,
            verifier.name()
        ));
    }
    Ok(h)
}

fn first_difference_hint(problems: &[Problem], size: u64) -> u64 {
    problems
        .iter()
        .map(|p| p.position)
        .filter(|&p| p < size)
        .min()
        .unwrap_or(size.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, LedgerKey};

    fn entry(seq: u64) -> Entry {
        Entry {
            v: 1,
            seq,
            time: "2025-01-01T00:00:00Z".into(),
            event: Event::Release,
            release_id: "r".into(),
            recipient: "x".into(),
            purpose: "p".into(),
            recipe: "veil-default".into(),
            key_id: "k".into(),
            patient_ref: Some(format!("p{seq}")),
            study_ref: None,
            output_study_uid: None,
            instances: 1,
            inputs_digest: None,
            output_digest: None,
            verification: "not-run".into(),
            operator: "op".into(),
            reason: "test".into(),
            refers_to: None,
        }
    }

    fn log(key: &LedgerKey, n: u64) -> Vec<StoredRow> {
        log_of(key, (0..n).map(entry).collect())
    }

    fn log_of(key: &LedgerKey, entries: Vec<Entry>) -> Vec<StoredRow> {
        let mut f = Frontier::new();
        entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let i = i as u64;
                let data = String::from_utf8(e.to_leaf()).unwrap();
                let lh = merkle::leaf_hash(data.as_bytes());
                f.push(lh);
                StoredRow {
                    seq: i as i64,
                    entry: data,
                    leaf_hash: hex(&lh),
                    head_sig: key.sign_head(i + 1, &f.root()),
                }
            })
            .collect()
    }

    /// Re-hashes a tampered row as a forger without the key would.
    fn rehash(r: &mut StoredRow) {
        r.leaf_hash = hex(&merkle::leaf_hash(r.entry.as_bytes()));
    }

    #[test]
    fn untouched_verifies_and_each_tampering_names_its_position() {
        let k = LedgerKey::from_seed([1; 32]);
        let vk = k.verifying_key();
        let rows = log(&k, 10);
        let cp = k.checkpoint(
            10,
            merkle::root(
                &rows
                    .iter()
                    .map(|r| merkle::leaf_hash(r.entry.as_bytes()))
                    .collect::<Vec<_>>(),
            ),
            "t".into(),
        );
        let r = verify_log(&rows, std::slice::from_ref(&cp), &vk);
        assert!(r.ok, "{:?}", r.problems);
        assert_eq!(r.checkpoints_checked, 1);

        // changed (and re-hashed)
        let mut t = rows.clone();
        t[4].entry = t[4].entry.replace("\"x\"", "\"y\"");
        rehash(&mut t[4]);
        assert_eq!(verify_log(&t, &[], &vk).first_bad_position, Some(4));
        // removed
        let mut t = rows.clone();
        t.remove(6);
        assert_eq!(verify_log(&t, &[], &vk).first_bad_position, Some(6));
        // removed and renumbered
        let mut t = rows.clone();
        t.remove(3);
        for (i, r) in t.iter_mut().enumerate() {
            r.seq = i as i64;
        }
        assert_eq!(verify_log(&t, &[], &vk).first_bad_position, Some(3));
        // inserted
        let mut t = rows.clone();
        let mut forged = rows[2].clone();
        forged.entry = String::from_utf8(entry(2).to_leaf())
            .unwrap()
            .replace("p2", "zz");
        rehash(&mut forged);
        t.insert(2, forged);
        assert_eq!(verify_log(&t, &[], &vk).first_bad_position, Some(2));
        // reordered
        let mut t = rows.clone();
        t.swap(7, 8);
        assert_eq!(verify_log(&t, &[], &vk).first_bad_position, Some(7));
        // truncated after a checkpoint
        let mut t = rows.clone();
        t.truncate(8);
        let r = verify_log(&t, std::slice::from_ref(&cp), &vk);
        assert_eq!(r.first_bad_position, Some(8));
        // another key
        let r = verify_log(&rows, &[], &LedgerKey::from_seed([2; 32]).verifying_key());
        assert_eq!(r.first_bad_position, Some(0));
    }

    /// The note `key` signs over the first `size` rows.
    fn note_text(rows: &[StoredRow], key: &LedgerKey, size: usize) -> String {
        let leaves: Vec<Hash> = rows
            .iter()
            .map(|r| merkle::leaf_hash(r.entry.as_bytes()))
            .collect();
        key.checkpoint(size as u64, merkle::root(&leaves[..size]), "t".into())
            .note(&key.verifying_key())
    }

    fn note(text: &str) -> ExternalNote {
        ExternalNote {
            label: "head.note".into(),
            note: SignedNote::parse(text.as_bytes()).unwrap(),
        }
    }

    #[test]
    fn external_notes_catch_truncation_forks_and_rewrites() {
        let k = LedgerKey::from_seed([1; 32]);
        let v = k.note_verifier();
        let rows = log(&k, 10);
        let n6 = note(&note_text(&rows, &k, 6));
        let what = |r: &VerifyReport| {
            r.problems
                .iter()
                .map(|p| p.what.clone())
                .collect::<Vec<_>>()
                .join("\n")
        };
        // the log grew after the note: fine; so is the note's own size
        for n in [6, 10] {
            let r = verify_log_against(&rows[..n], &[], std::slice::from_ref(&n6), &v);
            assert!(r.ok, "{}", what(&r));
            assert_eq!(r.notes_checked, 1);
        }
        // truncated below the note (no stored checkpoint left to say so)
        let r = verify_log_against(&rows[..4], &[], std::slice::from_ref(&n6), &v);
        assert_eq!(r.first_bad_position, Some(4));
        assert!(what(&r).contains("(truncated)"), "{}", what(&r));
        assert!(verify_log(&rows[..4], &[], &k.verifying_key()).ok);
        // forked after position 3, validly signed with the same key
        let forked = log_of(
            &k,
            (0..10)
                .map(|i| {
                    let mut e = entry(i);
                    if i > 3 {
                        e.recipient = "elsewhere".into();
                    }
                    e
                })
                .collect(),
        );
        assert!(verify_log(&forked, &[], &k.verifying_key()).ok);
        let r = verify_log_against(&forked, &[], std::slice::from_ref(&n6), &v);
        assert!(!r.ok);
        assert!(what(&r).contains("forked or rewritten"), "{}", what(&r));
        // rewritten under a fresh key: checked with the new key, the note is
        // not its; checked with the published key, nothing matches
        let fresh = LedgerKey::from_seed([9; 32]);
        // (entry 2 dropped, the rest renumbered)
        let rewritten = log_of(
            &fresh,
            (0..9)
                .map(|i| {
                    let mut e = entry(i + u64::from(i >= 2));
                    e.seq = i;
                    e
                })
                .collect(),
        );
        let r = verify_log_against(
            &rewritten,
            &[],
            std::slice::from_ref(&n6),
            &fresh.note_verifier(),
        );
        assert_eq!(r.first_bad_position, Some(0));
        assert!(
            what(&r).contains("the note is not signed by"),
            "{}",
            what(&r)
        );
        let r = verify_log_against(&rewritten, &[], std::slice::from_ref(&n6), &v);
        assert_eq!(r.first_bad_position, Some(0));
        assert!(what(&r).contains("forked or rewritten"), "{}", what(&r));
        // a note whose size was edited after signing
        let edited = note(&note_text(&rows, &k, 6).replace("\n6\n", "\n7\n"));
        let r = verify_log_against(&rows, &[], &[edited], &v);
        assert!(what(&r).contains("does not verify"), "{}", what(&r));
    }
}
