//! `veil verify`: an independent check that a release carries no PHI.
//!
//! Why a second engine: a de-identifier can only remove what its rules know
//! about. The verifier does not read those rules (this crate does not depend
//! on `veil-rules` or `veil-deid`); it learns what is identifying from the
//! source objects themselves ([`harvest`]: every name component, ID, date in
//! the usual spellings, address, phone, institution, device, UID and the long
//! digit runs inside UIDs) and then looks for those values everywhere in the
//! output ([`scan`]): every element at any depth, private and UN bytes as
//! text in several encodings, encapsulated documents, the File Meta and the
//! preamble, the raw bytes of the whole file, and the output's file and
//! folder names. Source-free pattern detectors ([`detect`]: dates, SSN- and
//! MRN-like numbers, phone numbers, e-mail, URLs, IP addresses, person names
//! from census name lists) cover values the source did not have in a
//! structured field. [`set`] checks the output set as a whole: every file
//! parses, the de-identification markers are present, and the patient /
//! study / series hierarchy and the references survive.
//!
//! Findings carry the output's relative (pseudonymous) path, the place, the
//! category and the detector, and an excerpt that names the category, the
//! length and the place, never the value or the text around it ([`text`]):
//! the report can travel with the release. With `--site-local` each
//! finding also quotes its surroundings, masked, and the report says that
//! it must stay at the site.

pub mod detect;
pub mod faces;
pub mod harvest;
pub mod matcher;
#[cfg(feature = "ocr")]
pub mod pixels;
pub mod policy;
pub mod report;
pub mod scan;
pub mod set;
pub mod text;

use serde::Serialize;
use veil_core::Phi;

pub use harvest::{harvest, Token};
pub use matcher::Matcher;
pub use policy::VerifyPolicy;
pub use report::{Report, Summary};
pub use scan::{scan_file, ScanInput};
pub use set::{
    verify_files, verify_files_with, verify_one, verify_tree, verify_tree_with, Options,
};
pub use text::{Place, ReportText};

/// What kind of identifying value a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// A person's name (patient, physician, operator, relatives).
    Name,
    /// A record number or identifier (patient ID, accession number, ...).
    Id,
    /// A calendar date.
    Date,
    /// An age over 89 (HIPAA Safe Harbor allows only "90 or older").
    Age,
    /// A time of day.
    Time,
    /// A postal address or region of residence.
    Address,
    /// A telephone number.
    Phone,
    /// An e-mail address.
    Email,
    /// A URL.
    Url,
    /// An IP address.
    Ip,
    /// An institution or department name.
    Institution,
    /// A device identifier: station name, serial number.
    Device,
    /// A source UID, or a long digit run from one.
    Uid,
    /// De-identification markers missing or wrong.
    Marker,
    /// The output set does not parse or does not hold together.
    Structure,
    /// A face can be rendered from a head volume (`--faces`).
    Face,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Category; 16] = [
        Category::Name,
        Category::Id,
        Category::Date,
        Category::Age,
        Category::Time,
        Category::Address,
        Category::Phone,
        Category::Email,
        Category::Url,
        Category::Ip,
        Category::Institution,
        Category::Device,
        Category::Uid,
        Category::Marker,
        Category::Structure,
        Category::Face,
    ];

    /// The kebab-case name used in reports and policies.
    pub fn name(self) -> &'static str {
        match self {
            Category::Name => "name",
            Category::Id => "id",
            Category::Date => "date",
            Category::Age => "age",
            Category::Time => "time",
            Category::Address => "address",
            Category::Phone => "phone",
            Category::Email => "email",
            Category::Url => "url",
            Category::Ip => "ip",
            Category::Institution => "institution",
            Category::Device => "device",
            Category::Uid => "uid",
            Category::Marker => "marker",
            Category::Structure => "structure",
            Category::Face => "face",
        }
    }

    /// Parses a kebab-case name.
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// One thing found in the output. Holds no PHI unless `context` is set
/// (`--site-local`).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The output file, relative to the output root (pseudonymous).
    pub file: String,
    /// Where: an element path such as `(0040,A730)[0]/(0040,A160)`,
    /// `meta/(0002,0016)`, `preamble`, `pixels`, `overlay`, `bytes` or
    /// `filename`.
    pub place: Place,
    /// What kind of value.
    pub category: Category,
    /// Which detector: `source-value`, `pattern:<name>`, `name-list`,
    /// `ocr`, `structure:<check>`, ...
    pub detector: String,
    /// What was found and where, e.g. `[name:5] in (0008,1030)`, or what a
    /// structure check saw; never a value.
    pub excerpt: ReportText,
    /// Site-local reports only: the text around the value with every found
    /// value masked, e.g. `CT head for [name:5] on`. The words around a
    /// value can identify (a comment's other names, numbers and dates), so
    /// a report that travels never has this.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "site_local")]
    pub context: Option<Phi<String>>,
    /// Frame number for pixel findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<u32>,
    /// A small PNG (base64) with the found boxes blacked out, for pixel
    /// findings; shown in the HTML report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
}

/// Writes the masked context into a site-local report, the one place it
/// belongs.
fn site_local<S: serde::Serializer>(v: &Option<Phi<String>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(v.expose()),
        None => s.serialize_none(),
    }
}
