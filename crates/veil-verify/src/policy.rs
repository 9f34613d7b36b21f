//! What counts against a release (`veil verify --policy policy.toml`).
//!
//! ```toml
//! # categories reported but not failing (default: ["time"])
//! warn = ["time"]
//! # categories neither failing nor reported
//! ignore = []
//! # element paths whose findings are accepted, e.g. a retained code string
//! accept_places = ["(0008,0080)"]
//! # an output that pairs with no source fails (default: it warns)
//! strict = false
//! ```
//! Times of day are warnings by default: on their own they single no one
//! out, and the profile's options may keep them.

use std::collections::BTreeSet;
use std::path::Path;

use crate::Category;

/// The verification policy.
#[derive(Debug, Clone)]
pub struct VerifyPolicy {
    /// Reported, not failing.
    pub warn: BTreeSet<Category>,
    /// Not reported.
    pub ignore: BTreeSet<Category>,
    /// Element paths whose findings are accepted.
    pub accept_places: BTreeSet<String>,
    /// An output that pairs with no source fails the release (`--strict`):
    /// its own source's dates and name words could not be looked for.
    pub strict: bool,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy {
            warn: [Category::Time].into_iter().collect(),
            ignore: BTreeSet::new(),
            accept_places: BTreeSet::new(),
            strict: false,
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    warn: Option<Vec<String>>,
    ignore: Option<Vec<String>>,
    accept_places: Option<Vec<String>>,
    strict: Option<bool>,
}

impl VerifyPolicy {
    /// Loads a policy file.
    pub fn load(path: &Path) -> Result<VerifyPolicy, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("policy: {}", e.kind()))?;
        Self::parse(&text)
    }

    /// Parses policy TOML.
    pub fn parse(text: &str) -> Result<VerifyPolicy, String> {
        let f: File = toml::from_str(text).map_err(|e| format!("policy: {}", e.message()))?;
        let cats = |v: Option<Vec<String>>, default: BTreeSet<Category>| match v {
            None => Ok(default),
            Some(v) => v
                .iter()
                .map(|s| {
                    Category::parse(s).ok_or_else(|| format!("policy: unknown category {s:?}"))
                })
                .collect(),
        };
        let d = VerifyPolicy::default();
        Ok(VerifyPolicy {
            warn: cats(f.warn, d.warn)?,
            ignore: cats(f.ignore, d.ignore)?,
            accept_places: f.accept_places.unwrap_or_default().into_iter().collect(),
            strict: f.strict.unwrap_or(d.strict),
        })
    }

    /// Whether a finding of this category at this place fails the release.
    pub fn fails(&self, category: Category, place: &str) -> bool {
        !self.warn.contains(&category)
            && !self.ignore.contains(&category)
            && !self.accept_places.contains(place)
    }

    /// Whether a finding is reported at all.
    pub fn reports(&self, category: Category) -> bool {
        !self.ignore.contains(&category)
    }
}
