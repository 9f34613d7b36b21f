//! The output folder's marker: which key, recipe and options wrote it.
//!
//! Why: pseudonyms are keyed. A second `veil deid` with another key (or
//! another recipe, or other options) into the same OUT writes a second,
//! unlinkable set of pseudonyms beside the first, and nothing in the
//! folder says so: one patient becomes two, a study is split, and the
//! recipient cannot tell. The first run therefore records its settings in
//! `OUT/.veil-out.json` ([`veil_io::OUT_MARKER`]: key id, a digest of the
//! recipe, the options; no PHI), and a later run with different settings
//! is refused unless the user says `--force-new-key`, in which case the
//! marker keeps the earlier settings too, so the mix stays on record.
//! The marker is Veil's bookkeeping: the walker never lists it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use veil_deid::Policy;

/// What produced the outputs of a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The key id (a hash of the key, never the key).
    pub key_id: String,
    /// The recipe's name and version.
    pub recipe: String,
    /// SHA-256 of the recipe file, or `builtin` for Veil's default recipe.
    pub recipe_sha256: String,
    /// The profile options in force (recipe and command line), sorted.
    pub options: Vec<String>,
}

impl Settings {
    /// The settings of a run: `recipe_text` is the recipe file's bytes
    /// (`None` for the built-in default).
    pub fn of(policy: &Policy, recipe_text: Option<&[u8]>) -> Settings {
        let r = policy.recipe();
        Settings {
            key_id: policy.key_id(),
            recipe: match &r.version {
                Some(v) => format!("{} {v}", r.name),
                None => r.name.clone(),
            },
            recipe_sha256: recipe_text.map_or_else(
                || "builtin".to_string(),
                |t| {
                    Sha256::digest(t)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect()
                },
            ),
            options: policy
                .options()
                .iter()
                .map(|o| o.name().to_string())
                .collect(),
        }
    }

    /// What differs from `other`, in words (empty when nothing does).
    fn differences(&self, other: &Settings) -> Vec<String> {
        let mut d = Vec::new();
        if self.key_id != other.key_id {
            d.push(format!(
                "key id {} (this run: {})",
                self.key_id, other.key_id
            ));
        }
        if self.recipe_sha256 != other.recipe_sha256 {
            d.push(format!(
                "recipe {} sha256 {} (this run: {} sha256 {})",
                self.recipe,
                short(&self.recipe_sha256),
                other.recipe,
                short(&other.recipe_sha256)
            ));
        }
        if self.options != other.options {
            d.push(format!(
                "options [{}] (this run: [{}])",
                self.options.join(", "),
                other.options.join(", ")
            ));
        }
        d
    }
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// `OUT/.veil-out.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    /// Format version (1).
    pub veil_out: u32,
    /// The settings of the latest run.
    #[serde(flatten)]
    pub current: Settings,
    /// Settings of earlier runs that `--force-new-key` mixed in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<Settings>,
}

/// Why a run may not write into an OUT.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    /// The folder was written with other settings.
    #[error(
        "{out} was written with {}. Outputs made with another key, recipe or options \
         cannot be linked to those already there: use a new OUT, or pass --force-new-key \
         to mix them knowingly (the marker then records both)",
        .differences.join("; ")
    )]
    Differs {
        /// OUT as the user typed it.
        out: String,
        /// Each difference, in words.
        differences: Vec<String>,
    },
    /// The marker exists but cannot be read.
    #[error(
        "{out}/{}: {why}; it is Veil's record of the key and recipe that wrote OUT",
        veil_io::OUT_MARKER
    )]
    Unreadable {
        /// OUT as the user typed it.
        out: String,
        /// What went wrong (no value from the file).
        why: String,
    },
    /// File system.
    #[error("writing the output marker (.veil-out.json): {0}")]
    Io(#[from] std::io::Error),
}

/// The marker of `out`, if it has one.
pub fn read(out: &Path) -> Result<Option<Marker>, MarkerError> {
    let p = out.join(veil_io::OUT_MARKER);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(MarkerError::Unreadable {
                out: out.display().to_string(),
                why: e.to_string(),
            })
        }
    };
    parse(&bytes, &out.display().to_string()).map(Some)
}

/// Claims `out` for a run with `settings`: records them in a folder
/// without a marker, accepts the same settings, refuses others unless
/// `force_new_key` (then records the mix). Call it holding OUT's lock.
pub fn claim(out: &Path, settings: &Settings, force_new_key: bool) -> Result<(), MarkerError> {
    if let Some(json) = claimed(
        read(out)?,
        &out.display().to_string(),
        settings,
        force_new_key,
    )? {
        veil_io::atomic::write_all(&out.join(veil_io::OUT_MARKER), &json)?;
    }
    Ok(())
}

/// The marker OUT should hold after claiming it for `settings`, given the
/// one it holds (`existing`); `None` when it holds it already. Shared by
/// [`claim`] (a local OUT) and object-store OUTs (`veil_io::place`);
/// `out` names OUT in the error.
pub fn claimed(
    existing: Option<Marker>,
    out: &str,
    settings: &Settings,
    force_new_key: bool,
) -> Result<Option<Vec<u8>>, MarkerError> {
    let marker = match existing {
        None => Marker {
            veil_out: 1,
            current: settings.clone(),
            earlier: Vec::new(),
        },
        Some(m) if m.current == *settings => return Ok(None),
        Some(m) => {
            if !force_new_key {
                return Err(MarkerError::Differs {
                    out: out.to_string(),
                    differences: m.current.differences(settings),
                });
            }
            let mut earlier = m.earlier;
            earlier.push(m.current);
            Marker {
                veil_out: 1,
                current: settings.clone(),
                earlier,
            }
        }
    };
    let json = serde_json::to_vec_pretty(&marker).map_err(std::io::Error::other)?;
    Ok(Some(json))
}

/// Parses a marker's bytes (`out` names OUT in the error).
pub fn parse(bytes: &[u8], out: &str) -> Result<Marker, MarkerError> {
    serde_json::from_slice(bytes).map_err(|_| MarkerError::Unreadable {
        out: out.to_string(),
        why: "not a Veil output marker".into(),
    })
}
