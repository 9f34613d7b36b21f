//! `veil review approve|reject`: a person's decision on an object held in
//! a review folder, logged before it takes effect.
//!
//! Why here: a decision is a disclosure decision. Approving puts an object
//! into the output folder that is handed on, rejecting destroys one; both
//! must be attributable to a reviewer afterwards, so each is a signed
//! ledger entry (`review-approval`, `review-rejection`: the reviewer as
//! operator, the object's SHA-256 and pseudonymous study UID, why it was
//! held; no PHI). The entry is appended first and the file moved or
//! deleted after, as a release logs before it publishes: OUT never holds
//! an approved object without its entry. A decision that was logged but
//! not carried out (a crash in between) is finished by running the same
//! command again.
//!
//! The queue and its index are `veil-pipeline`'s ([`veil_pipeline::review`]).

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use veil_core::Tag;
use veil_ledger::{Entry, Event};
use veil_pipeline::review::{self, Index};

use crate::{Error, Site};

/// What [`Site::review_decide`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReviewDecision {
    /// Objects moved into OUT.
    pub approved: usize,
    /// Objects deleted.
    pub rejected: usize,
    /// Where approved objects went (OUT).
    pub out: PathBuf,
    /// Ledger positions of the decisions.
    pub ledger_positions: Vec<u64>,
}

/// One object about to be decided.
struct Pending {
    src: PathBuf,
    dest: PathBuf,
}

fn sha256_file(p: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(p).map_err(Error::io("reading an object under review"))?;
    Ok(veil_ledger::hex(&Sha256::digest(&bytes)))
}

/// Removes the folders left empty below `root` on the way up from `p`.
fn prune(p: &Path, root: &Path) {
    let mut dir = p.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(&d).is_err() {
            break;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
}

impl Site {
    /// Approves (`approve`) or rejects the objects `items` (paths relative
    /// to `review`, as `veil review list` prints them; `all` takes every
    /// object in the index) on behalf of `reviewer`. Approving moves each
    /// into the OUT the index names, under the same relative path;
    /// rejecting deletes it. One ledger entry per object, appended before
    /// any file is touched.
    pub fn review_decide(
        &mut self,
        review_dir: &Path,
        items: &[String],
        all: bool,
        approve: bool,
        reviewer: &str,
    ) -> Result<ReviewDecision, Error> {
        let mut index: Index = review::load(review_dir)
            .map_err(Error::io("reading the review index"))?
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{} has no review index ({}): it was not written by `veil deid`, or holds nothing to decide",
                    review_dir.display(),
                    veil_io::REVIEW_INDEX
                ))
            })?;
        let mut chosen: Vec<String> = if all {
            index.items.keys().cloned().collect()
        } else {
            items.to_vec()
        };
        chosen.sort();
        chosen.dedup();
        if chosen.is_empty() {
            return Err(Error::Invalid(
                "name the objects to decide (as `veil review list` prints them), or pass --all"
                    .into(),
            ));
        }
        // one writer per OUT while objects move into it
        let _lock = if approve {
            Some(
                veil_io::lock::OutLock::acquire(&index.out)
                    .map_err(|e| Error::Invalid(format!("the output folder is in use: {e}")))?,
            )
        } else {
            None
        };
        if approve {
            if let Some(m) = veil_pipeline::outmark::read(&index.out)
                .map_err(|e| Error::Invalid(e.to_string()))?
            {
                if m.current.key_id != index.key_id {
                    return Err(Error::Invalid(format!(
                        "the output folder was since written with key id {}, these objects with key id {}: approving them would mix pseudonym sets",
                        m.current.key_id, index.key_id
                    )));
                }
            }
        }
        let mut pending = Vec::new();
        let mut entries = Vec::new();
        for rel in &chosen {
            let Some(item) = index.items.get(rel) else {
                return Err(Error::Invalid(format!(
                    "{rel} is not waiting in this review folder (see `veil review list`)"
                )));
            };
            let Some(path) = review::plain_relative(rel) else {
                return Err(Error::Invalid(format!(
                    "{rel}: not a plain relative path; the review index was edited"
                )));
            };
            let src = review_dir.join(path);
            let dest = index.out.join(path);
            let md = std::fs::symlink_metadata(&src);
            if !md.as_ref().is_ok_and(|m| m.is_file()) {
                // logged earlier and carried out, then interrupted before
                // the index was saved: nothing left to do for it
                if approve && dest.is_file() || !approve && md.is_err() {
                    pending.push(None);
                    continue;
                }
                return Err(Error::Invalid(format!(
                    "{rel} is not a regular file in the review folder"
                )));
            }
            if approve && dest.exists() {
                return Err(Error::Invalid(format!(
                    "{rel} already exists in the output folder; nothing was moved"
                )));
            }
            let study = veil_io::read(&src)
                .ok()
                .and_then(|d| d.dataset.ascii(Tag(0x0020, 0x000D)));
            entries.push(Entry {
                v: 1,
                seq: 0,
                time: veil_consent::now(),
                event: if approve {
                    Event::ReviewApproval
                } else {
                    Event::ReviewRejection
                },
                release_id: String::new(),
                recipient: String::new(),
                purpose: String::new(),
                recipe: index.recipe.clone(),
                key_id: index.key_id.clone(),
                patient_ref: None,
                study_ref: None,
                output_study_uid: study,
                instances: 1,
                inputs_digest: None,
                output_digest: Some(sha256_file(&src)?),
                verification: "not-run".into(),
                operator: reviewer.to_string(),
                reason: format!(
                    "{} by the reviewer; held for: {}",
                    if approve { "approved" } else { "rejected" },
                    item.reason
                ),
                refers_to: None,
            });
            pending.push(Some(Pending { src, dest }));
        }
        let n = entries.len();
        let positions = self.append(entries, vec![None; n])?;
        let mut done = ReviewDecision {
            out: index.out.clone(),
            ledger_positions: positions,
            ..Default::default()
        };
        let logged = |e: Error| {
            Error::Invalid(format!(
                "the decision is logged but was not carried out ({e}); run the same command again to finish it"
            ))
        };
        for (rel, p) in chosen.iter().zip(pending) {
            if let Some(p) = p {
                if approve {
                    if let Some(parent) = p.dest.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(Error::io("creating a folder in OUT"))
                            .map_err(logged)?;
                    }
                    move_file(&p.src, &p.dest).map_err(logged)?;
                    done.approved += 1;
                } else {
                    std::fs::remove_file(&p.src)
                        .map_err(Error::io("deleting a rejected object"))
                        .map_err(logged)?;
                    done.rejected += 1;
                }
                prune(&p.src, review_dir);
            }
            index.items.remove(rel);
        }
        review::save(review_dir, &index)
            .map_err(Error::io("writing the review index"))
            .map_err(logged)?;
        Ok(done)
    }
}

/// Moves a file: a rename on one file system, else a durable copy and the
/// removal of the source (a review folder on another volume).
fn move_file(src: &Path, dest: &Path) -> Result<(), Error> {
    match std::fs::rename(src, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            let bytes = std::fs::read(src).map_err(Error::io("reading an approved object"))?;
            veil_io::atomic::write_all(dest, &bytes)
                .map_err(Error::io("writing an approved object"))?;
            std::fs::remove_file(src).map_err(Error::io("removing an approved object"))?;
        }
        Err(e) => return Err(Error::io("moving an approved object")(e)),
    }
    if let Some(d) = dest.parent() {
        veil_io::atomic::sync_dir(d).map_err(Error::io("syncing OUT"))?;
    }
    Ok(())
}
