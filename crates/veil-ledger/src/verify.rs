//! Verification of a stored log against its signatures.

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::merkle::{self, Frontier, Hash};
use crate::sign::{check, head_message, Checkpoint};
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
    /// The id of the key the log was checked against.
    pub key_id: String,
}

/// Checks every row and every checkpoint.
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
pub fn verify_log(
    rows: &[StoredRow],
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
) -> VerifyReport {
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
    let mut checked = 0;
    let mut prev: Option<(u64, Hash)> = None;
    for c in &cps {
        if !c.verify(key) {
            problems.push(Problem {
                position: c.size.saturating_sub(1),
                what: format!("checkpoint of size {} has a bad signature", c.size),
            });
            continue;
        }
        let Some(signed_root) = unhex32(&c.root) else {
            continue;
        };
        if c.size > n {
            problems.push(Problem {
                position: n,
                what: format!(
                    "a signed checkpoint covers {} entries but the log has {n}: entries from position {n} on were removed",
                    c.size
                ),
            });
            continue;
        }
        let here = merkle::root(&leaves[..c.size as usize]);
        if here != signed_root {
            problems.push(Problem {
                position: first_difference_hint(&problems, c.size),
                what: format!(
                    "the log's first {} entries do not match the signed checkpoint of that size",
                    c.size
                ),
            });
            continue;
        }
        if let Some((ps, pr)) = prev {
            let proof = merkle::consistency_proof(ps as usize, &leaves[..c.size as usize]);
            if !merkle::verify_consistency(ps, c.size, &proof, &pr, &signed_root) {
                problems.push(Problem {
                    position: ps,
                    what: format!("checkpoints of size {ps} and {} are not consistent", c.size),
                });
            }
        }
        prev = Some((c.size, signed_root));
        checked += 1;
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
        latest_checkpoint: cps.last().map(|c| (*c).clone()),
        key_id: crate::sign::key_id(key),
    }
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
        let mut f = Frontier::new();
        (0..n)
            .map(|i| {
                let data = String::from_utf8(entry(i).to_leaf()).unwrap();
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
}
