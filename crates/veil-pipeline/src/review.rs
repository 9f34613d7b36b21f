//! The review folder as a queue.
//!
//! Why: objects that may carry burned-in text, documents, and outputs
//! that failed `--verify` go to the review folder instead of OUT. Without
//! a record of where each came from and why, the only way forward was to
//! move files by hand, with nothing logged. `veil deid` therefore keeps
//! `REVIEW/.veil-review.json` ([`veil_io::REVIEW_INDEX`]): the OUT the
//! objects belong to, the key id and recipe that made them, and for each
//! object (by its pseudonymous relative path) the reason it is held. `veil
//! review list|approve|reject` work from it (the decisions and their
//! ledger entries are in `veil-release`). The index holds no PHI: paths
//! are built from pseudonyms and reasons name rules, not values.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Outcome, Report};

/// One object waiting for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Why it is held (a rule or check, no value).
    pub reason: String,
}

/// `REVIEW/.veil-review.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Format version (1).
    pub veil_review: u32,
    /// The output folder approved objects go to (absolute).
    pub out: PathBuf,
    /// Id of the key the objects were de-identified with.
    pub key_id: String,
    /// Recipe name and version.
    pub recipe: String,
    /// Waiting objects by path relative to the review folder.
    pub items: BTreeMap<String, Item>,
}

/// A path as Veil writes them under OUT or a review folder: relative,
/// plain names only. Anything else (`..`, absolute, `.`) is refused, so
/// an edited index cannot aim a decision outside the folder.
pub fn plain_relative(p: &str) -> Option<&Path> {
    let path = Path::new(p);
    (!p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))).then_some(path)
}

/// Reads the index of `review` (`None` when there is none).
pub fn load(review: &Path) -> std::io::Result<Option<Index>> {
    match std::fs::read(review.join(veil_io::REVIEW_INDEX)) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a Veil review index", veil_io::REVIEW_INDEX),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the index atomically.
pub fn save(review: &Path, index: &Index) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(index).map_err(std::io::Error::other)?;
    veil_io::atomic::write_all(&review.join(veil_io::REVIEW_INDEX), &json)
}

/// Adds the objects a `veil deid` run sent to review (from its report) to
/// the index of `review`, creating it. An index written for another OUT
/// or key is refused: one queue feeds one OUT.
pub fn record(review: &Path, out: &Path, report: &Report) -> std::io::Result<()> {
    let held: Vec<(&String, &String)> = report
        .files
        .iter()
        .filter_map(|f| match &f.outcome {
            Outcome::Review { output, reason } => Some((output, reason)),
            _ => None,
        })
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    let out = std::path::absolute(out)?;
    let index = with_held(
        load(review)?,
        out,
        &report.key_id,
        &report.recipe,
        held.into_iter(),
    )?;
    save(review, &index)
}

/// The index of a review folder that held `existing` once the objects
/// `held` (output name, reason) of a run for `out` are added: a new index
/// when there was none; refused when `existing` belongs to another OUT or
/// key. Shared by [`record`] (a local folder) and the Python package's
/// `review_index` (a folder or an S3 prefix, for the Spark job).
pub fn with_held<'a>(
    existing: Option<Index>,
    out: PathBuf,
    key_id: &str,
    recipe: &str,
    held: impl Iterator<Item = (&'a String, &'a String)>,
) -> std::io::Result<Index> {
    let mut index = match existing {
        Some(i) if i.out != out || i.key_id != key_id => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the review folder holds objects of another OUT or key; give this run its own --review folder",
            ))
        }
        Some(i) => i,
        None => Index {
            veil_review: 1,
            out,
            key_id: key_id.to_string(),
            recipe: recipe.to_string(),
            items: BTreeMap::new(),
        },
    };
    for (output, reason) in held {
        index.items.insert(
            output.clone(),
            Item {
                reason: reason.clone(),
            },
        );
    }
    Ok(index)
}

/// A row of `veil review list`.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    /// Path relative to the review folder (pseudonymous).
    pub item: String,
    /// Why it is held; `None` for a file the index does not list (put
    /// there by hand, or by a run from before the index).
    pub reason: Option<String>,
}

/// What waits in `review`: the indexed objects still present, then any
/// other DICOM output found there (`.dcm` files, and PS3.10 File IDs
/// without extension), never the pixel review page or its pictures.
pub fn waiting(review: &Path) -> std::io::Result<Vec<Waiting>> {
    let index = load(review)?;
    let mut rows = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    if let Some(i) = &index {
        for (rel, item) in &i.items {
            if plain_relative(rel).is_some_and(|p| review.join(p).is_file()) {
                rows.push(Waiting {
                    item: rel.clone(),
                    reason: Some(item.reason.clone()),
                });
                seen.insert(rel.clone());
            }
        }
    }
    if review.is_dir() {
        for f in veil_io::walk(&[review.to_path_buf()])? {
            let Ok(rel) = f.strip_prefix(review) else {
                continue;
            };
            let rel = rel.to_string_lossy().into_owned();
            let ext = f.extension().and_then(|e| e.to_str());
            let hidden = rel.split('/').any(|c| c.starts_with('.'));
            if hidden || seen.contains(&rel) || !matches!(ext, Some("dcm") | None) {
                continue;
            }
            rows.push(Waiting {
                item: rel,
                reason: None,
            });
        }
    }
    Ok(rows)
}

/// Which of the pixel stage's thumbnails of an object (see
/// [`pixel_review_picture`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picture {
    /// The frame as found, the boxes outlined: shows burned-in text, so
    /// it stays site-local (the review folder, the staff console).
    Before,
    /// The frame with the boxes filled.
    After,
}

/// Where the pixel stage keeps an object's thumbnail, relative to the
/// review folder: `.pixel-review/<output with / as _>.before.png` (or
/// `.after.png`). One function for the writer (the pixel stage) and the
/// readers (`pixel-review.html`, the staff console's review queue), so
/// the two cannot drift apart.
pub fn pixel_review_picture(output: &str, which: Picture) -> String {
    let stem = output.replace('/', "_");
    let which = match which {
        Picture::Before => "before",
        Picture::After => "after",
    };
    format!(".pixel-review/{stem}.{which}.png")
}

/// The pixel stage's thumbnails of `item` (a waiting object) as files,
/// when both exist.
pub fn pixel_review_pictures(review: &Path, item: &str) -> Option<(PathBuf, PathBuf)> {
    plain_relative(item)?;
    let b = review.join(pixel_review_picture(item, Picture::Before));
    let a = review.join(pixel_review_picture(item, Picture::After));
    (b.is_file() && a.is_file()).then_some((b, a))
}

/// A PNG of the held object's first frame, its longer side at most
/// `max_side`: what would be released if approved, for an object the
/// pixel stage did not touch (held for a modality, Burned In Annotation
/// or a failed check). `None` for an object without pixels or one that
/// does not decode. Site-local: it may show burned-in text.
pub fn held_picture(review: &Path, item: &str, max_side: u32) -> Option<Vec<u8>> {
    let path = review.join(plain_relative(item)?);
    let frame = veil_pixels::decode_frames_limit(&path, 1)
        .ok()?
        .into_iter()
        .next()?;
    Some(veil_pixels::thumbnail_png(&frame.image, max_side, &[]))
}
