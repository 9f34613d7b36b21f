//! Burned-in text region rules: which rectangles of an image to blank,
//! decided from its header alone.
//!
//! Two public rule libraries are read **in their own formats, at run time**,
//! so that an update of either file is a copy, never a re-typing:
//!
//! * RSNA CTP's `DicomPixelAnonymizer.script` ([`RegionRules::parse_ctp`]):
//!   `{ condition }` signatures followed by `(x,y,w,h)` rectangles;
//! * pydicom/deid's recipe filters ([`RegionRules::parse_deid`]):
//!   `%filter whitelist|graylist|blacklist` sections of `LABEL` blocks.
//!
//! A recipe may add files in either format and simple inline rules (see
//! `docs/recipes.md`). Every rule keeps where it came from ([`RuleRef`]:
//! file, line, heading or LABEL) so a report can say why a box was blanked.
//!
//! Semantics follow each tool's own source; where Veil departs from it, it
//! does so to blank or flag *more*, never less (each case is documented on
//! the parser and in `docs/recipes.md`).

mod ctp;
mod deid;

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use veil_core::Tag;

/// Where the built-in CTP library comes from (recorded in [`RuleRef`]).
pub const CTP_SOURCE: &str = "rules/sources/ctp_DicomPixelAnonymizer.script";
/// Where the built-in deid recipe comes from (recorded in [`RuleRef`]).
pub const DEID_SOURCE: &str = "rules/sources/pydicom_deid_deid.dicom";
/// The pinned CTP library, parsed at run time (never hand-copied).
pub const CTP_TEXT: &str = include_str!("../../../rules/sources/ctp_DicomPixelAnonymizer.script");
/// The pinned deid recipe, parsed at run time (never hand-copied).
pub const DEID_TEXT: &str = include_str!("../../../rules/sources/pydicom_deid_deid.dicom");

/// A rectangle in pixels from the top-left corner of a frame: columns
/// `x..x+w`, rows `y..y+h`. A CTP region `(x,y,w,h)` becomes `w+1` by
/// `h+1`, because CTP blanks its right and bottom edges too.
///
/// `x` and `y` may be negative in CTP scripts, meaning "from the right /
/// bottom edge" (CTP `Regions.getAdjustedRegions`); the size is only known
/// per image, so [`Rect::clip`] resolves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// Left column (negative: counted from the right edge).
    pub x: i32,
    /// Top row (negative: counted from the bottom edge).
    pub y: i32,
    /// Width in pixels (> 0).
    pub w: u32,
    /// Height in pixels (> 0).
    pub h: u32,
}

impl Rect {
    /// The whole frame (deid's `coordinates all`); clipped per image.
    pub const ALL: Rect = Rect {
        x: 0,
        y: 0,
        w: u32::MAX,
        h: u32::MAX,
    };

    /// Whether the rectangle lies inside a `columns` x `rows` frame (the
    /// whole frame always does). A rectangle is in the pixels of one
    /// screen layout: CTP's signatures name their Rows, but transcriptions
    /// drop that (deid's CX50 rule is CTP's 800-wide one without
    /// `Rows.equals("600")`), and a rectangle running off the image was
    /// written for another layout. One pixel over is allowed: CTP blanks
    /// its right and bottom edges too.
    pub fn fits(&self, columns: u32, rows: u32) -> bool {
        *self == Rect::ALL
            || self
                .clip(columns, rows)
                .is_some_and(|c| c.w.saturating_add(1) >= self.w && c.h.saturating_add(1) >= self.h)
    }

    /// The part of the rectangle inside a `columns` x `rows` frame, with
    /// negative origins resolved from the right/bottom edge as CTP does;
    /// `None` when nothing of it is inside.
    pub fn clip(&self, columns: u32, rows: u32) -> Option<Rect> {
        let (c, r) = (i64::from(columns), i64::from(rows));
        let mut x = i64::from(self.x);
        if x < 0 {
            x += c;
        }
        let mut y = i64::from(self.y);
        if y < 0 {
            y += r;
        }
        let (x, y) = (x.max(0), y.max(0));
        let x1 = (x + i64::from(self.w)).min(c);
        let y1 = (y + i64::from(self.h)).min(r);
        (x1 > x && y1 > y).then(|| Rect {
            x: x as i32,
            y: y as i32,
            w: (x1 - x) as u32,
            h: (y1 - y) as u32,
        })
    }
}

/// Where a rule comes from. Only rule-file text, never a DICOM value, so it
/// may go into reports that travel with the output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleRef {
    /// The rule file (a built-in source path, or a path as the recipe
    /// names it, or `recipe`).
    pub source: String,
    /// 1-based line of the rule's start (`{` or `LABEL`).
    pub line: u32,
    /// Section/device heading (CTP), LABEL (deid) or the recipe's label.
    pub label: String,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} ({})", self.source, self.line, self.label)
    }
}

/// What a match means (deid's filter sections; CTP signatures are all
/// graylist: known places to blank).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleList {
    /// Known to be clean: no blanking needed.
    Whitelist,
    /// Known places of text: blank the rectangles.
    Graylist,
    /// Text of unknown place may be present: a person must look.
    Blacklist,
}

impl RuleList {
    /// The name as deid writes it.
    pub fn name(self) -> &'static str {
        match self {
            RuleList::Whitelist => "whitelist",
            RuleList::Graylist => "graylist",
            RuleList::Blacklist => "blacklist",
        }
    }
}

/// A rectangle as a rule gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RectSpec {
    /// A fixed rectangle (or [`Rect::ALL`]).
    Fixed(Rect),
    /// deid's `coordinates from:Sequence` (in practice
    /// SequenceOfUltrasoundRegions): one rectangle per ultrasound region,
    /// from the RegionLocationMinX0/MinY0/MaxX1/MaxY1 values found in the
    /// object, taken in document order (each region item has all four:
    /// Type 1). The tag is kept for reports.
    FromRegions(Tag),
}

/// One rectangle of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionSpec {
    /// The rectangle.
    pub rect: RectSpec,
    /// deid `keepcoordinates`: a region to keep rather than blank.
    pub keep: bool,
}

/// One parsed rule, in source order.
#[derive(Debug, Clone)]
pub struct RegionRule {
    /// Provenance.
    pub rule: RuleRef,
    /// Meaning of a match.
    pub list: RuleList,
    /// Rectangles (may be empty: deid's "flag only" graylist entries).
    pub regions: Vec<RegionSpec>,
    cond: Cond,
}

impl RegionRule {
    /// Does the rule's condition hold for this object?
    pub fn matches(&self, obj: &dyn Attributes) -> bool {
        self.cond.eval(&mut Memo::new(obj))
    }
}

/// Something a parser accepted but that cannot act as written (an unknown
/// keyword, a parenthesised text that is not a rectangle). Names rule-file
/// text only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleWarning {
    /// Rule file.
    pub source: String,
    /// 1-based line.
    pub line: u32,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.message)
    }
}

/// A rule file that cannot be parsed. Names the file, the line and the rule
/// text at fault (never a DICOM value: none is known while parsing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Rule file.
    pub source: String,
    /// 1-based line.
    pub line: u32,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.message)
    }
}

impl std::error::Error for RuleError {}

/// The header of one object, as the rules see it. The caller (veil-pixels)
/// implements it over the object it reads, **before** de-identification.
pub trait Attributes {
    /// Every value of the attribute anywhere in the object, top level
    /// first, then inside sequence items in document order; File Meta
    /// attributes too (CTP rules test ImplementationVersionName). One
    /// string per element: a multi-valued element as its DICOM text with
    /// values joined by `\`, padding trimmed, binary numbers in decimal.
    /// Empty when the attribute is absent.
    fn values(&self, tag: Tag) -> Vec<String>;
}

impl Attributes for HashMap<Tag, Vec<String>> {
    fn values(&self, tag: Tag) -> Vec<String> {
        self.get(&tag).cloned().unwrap_or_default()
    }
}

impl Attributes for std::collections::BTreeMap<Tag, Vec<String>> {
    fn values(&self, tag: Tag) -> Vec<String> {
        self.get(&tag).cloned().unwrap_or_default()
    }
}

/// What the rules say about one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionMatch {
    /// Rectangles to blank on every frame, each with the rule that gave it
    /// (clip each with [`Rect::clip`]). The union of **all** matching
    /// graylist rules (CTP stops at the first match, so its ADAC "DUAL DETEC"
    /// signature, listed second, never gives its taller box).
    pub rects: Vec<(Rect, RuleRef)>,
    /// deid `keepcoordinates` of matching rules. deid applies masks in file
    /// order, so a later keep region un-blanks an earlier one; Veil's safe
    /// reading is to ignore them (blank more).
    pub keep: Vec<(Rect, RuleRef)>,
    /// Matching graylist rules that give no rectangle (deid's "flags
    /// only" entries, or `from:` regions absent from the object): text is
    /// expected but its place is unknown.
    pub flagged: Vec<RuleRef>,
    /// The first matching whitelist rule: known to carry no text.
    pub whitelisted: Option<RuleRef>,
    /// The first matching blacklist rule: the object needs a person.
    pub blacklisted: Option<RuleRef>,
}

impl RegionMatch {
    /// No rule matched.
    pub fn is_empty(&self) -> bool {
        self.rects.is_empty()
            && self.keep.is_empty()
            && self.flagged.is_empty()
            && self.whitelisted.is_none()
            && self.blacklisted.is_none()
    }
}

/// Parsed region rules, in source order.
#[derive(Debug, Clone, Default)]
pub struct RegionRules {
    rules: Vec<RegionRule>,
    warnings: Vec<RuleWarning>,
}

impl RegionRules {
    /// CTP's library followed by deid's default recipe, parsed once.
    pub fn builtin() -> &'static RegionRules {
        static BUILTIN: OnceLock<RegionRules> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            let mut r = RegionRules::parse_ctp(CTP_TEXT, CTP_SOURCE)
                .expect("the pinned CTP library parses (tested)");
            r.extend(
                RegionRules::parse_deid(DEID_TEXT, DEID_SOURCE)
                    .expect("the pinned deid recipe parses (tested)"),
            );
            r
        })
    }

    /// Parses a CTP DicomPixelAnonymizer script.
    pub fn parse_ctp(text: &str, source: &str) -> Result<RegionRules, RuleError> {
        ctp::parse(text, source)
    }

    /// Parses the `%filter` sections of a deid recipe (`%header` and other
    /// sections are not region rules and are skipped).
    pub fn parse_deid(text: &str, source: &str) -> Result<RegionRules, RuleError> {
        deid::parse(text, source)
    }

    /// Parses a rule file in either format: deid when the name looks like a
    /// deid recipe (`*.dicom*`, `deid*`) or the text has a `%filter` or
    /// `FORMAT` line; CTP otherwise.
    pub fn parse_file_text(text: &str, source: &str) -> Result<RegionRules, RuleError> {
        let name = source.rsplit(['/', '\\']).next().unwrap_or(source);
        let lower = name.to_ascii_lowercase();
        let deid_name = lower.contains(".dicom") || lower.starts_with("deid");
        let ctp_name = lower.ends_with(".script");
        let deid_text = text.lines().any(|l| {
            let l = l.trim_start().to_ascii_lowercase();
            l.starts_with("%filter") || l.starts_with("format ")
        });
        if !ctp_name && (deid_name || deid_text) {
            Self::parse_deid(text, source)
        } else {
            Self::parse_ctp(text, source)
        }
    }

    /// Appends another set's rules (and warnings) after these.
    pub fn extend(&mut self, other: RegionRules) {
        self.rules.extend(other.rules);
        self.warnings.extend(other.warnings);
    }

    /// The rules, in source order.
    pub fn rules(&self) -> &[RegionRule] {
        &self.rules
    }

    /// What the parsers accepted but flagged (unknown keywords in deid
    /// files, which deid itself treats as absent attributes).
    pub fn warnings(&self) -> &[RuleWarning] {
        &self.warnings
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// No rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Evaluates every rule against one object.
    pub fn evaluate(&self, obj: &dyn Attributes) -> RegionMatch {
        let mut memo = Memo::new(obj);
        let mut m = RegionMatch::default();
        for r in &self.rules {
            if !r.cond.eval(&mut memo) {
                continue;
            }
            match r.list {
                RuleList::Whitelist => {
                    m.whitelisted.get_or_insert_with(|| r.rule.clone());
                }
                RuleList::Blacklist => {
                    m.blacklisted.get_or_insert_with(|| r.rule.clone());
                }
                RuleList::Graylist => {
                    let mut blanks = 0;
                    for spec in &r.regions {
                        for rect in spec.rect.resolve(&mut memo) {
                            if spec.keep {
                                m.keep.push((rect, r.rule.clone()));
                            } else {
                                blanks += 1;
                                m.rects.push((rect, r.rule.clone()));
                            }
                        }
                    }
                    if blanks == 0 {
                        m.flagged.push(r.rule.clone());
                    }
                }
            }
        }
        m
    }

    /// One inline rule of a recipe: every `when` entry holds (`"text"`
    /// equals, `"~text"` contains ignoring case, `"re:regex"` matches the
    /// whole value), then `rects` (`[x, y, w, h]`) are blanked. `n` is the
    /// entry's number, recorded as its line.
    pub fn inline(
        source: &str,
        n: u32,
        label: &str,
        when: &[(&str, String)],
        rects: &[[i64; 4]],
    ) -> Result<RegionRules, RuleError> {
        let err = |message: String| RuleError {
            source: source.to_string(),
            line: n,
            message,
        };
        let mut cond = Cond::Const(true);
        for (key, want) in when {
            let tag = attribute(key).ok_or_else(|| err(format!("unknown attribute '{key}'")))?;
            let pred = if let Some(t) = want.strip_prefix('~') {
                Pred::Ctp(CtpOp::ContainsIgnoreCase, t.to_string())
            } else if let Some(re) = want.strip_prefix("re:") {
                Pred::CtpMatches(
                    Regex::new(&format!("^(?:{re})$"))
                        .map_err(|_| err(format!("'{key}': invalid regular expression")))?,
                )
            } else {
                Pred::Ctp(CtpOp::Equals, want.clone())
            };
            cond = Cond::And(Box::new(cond), Box::new(Cond::Test(Some(tag), pred)));
        }
        if rects.is_empty() {
            return Err(err("a region needs at least one rectangle".into()));
        }
        let regions = rects
            .iter()
            .map(|&[x, y, w, h]| {
                let ok = i32::try_from(x).is_ok()
                    && i32::try_from(y).is_ok()
                    && w > 0
                    && h > 0
                    && u32::try_from(w).is_ok()
                    && u32::try_from(h).is_ok();
                ok.then_some(RegionSpec {
                    rect: RectSpec::Fixed(Rect {
                        x: x as i32,
                        y: y as i32,
                        w: w as u32,
                        h: h as u32,
                    }),
                    keep: false,
                })
                .ok_or_else(|| err("rects are [x, y, w, h] with w and h > 0".into()))
            })
            .collect::<Result<_, _>>()?;
        let rule = RegionRule {
            rule: RuleRef {
                source: source.to_string(),
                line: n,
                label: label.to_string(),
            },
            list: RuleList::Graylist,
            regions,
            cond,
        };
        Ok(RegionRules::from_parts(vec![rule], Vec::new()))
    }

    pub(crate) fn from_parts(rules: Vec<RegionRule>, warnings: Vec<RuleWarning>) -> Self {
        RegionRules { rules, warnings }
    }
}

/// A standard keyword's tag, from the DICOM dictionary (dicom-rs).
pub fn keyword_tag(keyword: &str) -> Option<Tag> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    dicom_dictionary_std::StandardDataDictionary
        .by_name(keyword)
        .map(|e| e.tag_range().inner())
        .map(|t| Tag(t.0, t.1))
}

/// An attribute as a rule names it: a keyword or a tag. `None` when the
/// name is no known keyword (deid then sees the attribute as absent).
pub(crate) fn attribute(name: &str) -> Option<Tag> {
    let n = name.trim();
    if let Some(inner) = n.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return Tag::parse(inner);
    }
    if let Some(hex) = n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
        return Tag::parse(hex);
    }
    keyword_tag(n).or_else(|| {
        // `(0008,0070)` or `00080070`, never a bare keyword-like word
        (n.starts_with('(') || n.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| Tag::parse(n))
            .flatten()
    })
}

/// Values looked up once per object, however many rules test them.
pub(crate) struct Memo<'a> {
    obj: &'a dyn Attributes,
    cache: HashMap<Tag, Vec<String>>,
}

impl<'a> Memo<'a> {
    fn new(obj: &'a dyn Attributes) -> Self {
        Memo {
            obj,
            cache: HashMap::new(),
        }
    }

    fn get(&mut self, tag: Tag) -> &[String] {
        let obj = self.obj;
        self.cache.entry(tag).or_insert_with(|| obj.values(tag))
    }
}

/// A rule's condition, as a tree. CTP's `!`, `*`, `+` and parentheses and
/// deid's left-to-right `+`/`||` chains both map onto it.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Const(bool),
    Test(Option<Tag>, Pred),
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

/// CTP's string methods (`DicomObject.matches`, Operand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CtpOp {
    Equals,
    EqualsIgnoreCase,
    Contains,
    ContainsIgnoreCase,
    StartsWith,
    StartsWithIgnoreCase,
    EndsWith,
    EndsWithIgnoreCase,
}

/// One test on an attribute's values.
#[derive(Debug, Clone)]
pub(crate) enum Pred {
    /// CTP string method; an absent attribute is the empty string.
    Ctp(CtpOp, String),
    /// CTP `matches`: Java `String.matches`, the whole value.
    CtpMatches(Regex),
    /// deid `contains` (`re.search`, ignoring case) or `notcontains`.
    DeidContains(Regex, bool),
    /// deid `equals` (ignoring case, trimmed; argument lower-cased) or
    /// `notequals`.
    DeidEquals(String, bool),
    /// deid `missing`.
    Missing,
    /// deid `present`.
    Present,
    /// deid `empty`: present with an empty value.
    Empty,
}

impl Cond {
    fn eval(&self, memo: &mut Memo<'_>) -> bool {
        match self {
            Cond::Const(b) => *b,
            Cond::Not(c) => !c.eval(memo),
            Cond::And(a, b) => a.eval(memo) && b.eval(memo),
            Cond::Or(a, b) => a.eval(memo) || b.eval(memo),
            Cond::Test(tag, pred) => {
                let values: &[String] = match tag {
                    Some(t) => memo.get(*t),
                    None => &[],
                };
                pred.test(values)
            }
        }
    }
}

impl Pred {
    /// The test holds for *some* occurrence of the attribute (CTP and deid
    /// read the top level only; an occurrence in a sequence also counts,
    /// so GE's `CodeMeaning` rule can fire).
    fn test(&self, values: &[String]) -> bool {
        match self {
            Pred::Ctp(op, arg) => {
                if values.is_empty() {
                    ctp_test(*op, "", arg)
                } else {
                    values.iter().any(|v| ctp_test(*op, v, arg))
                }
            }
            Pred::CtpMatches(re) => {
                if values.is_empty() {
                    re.is_match("")
                } else {
                    values.iter().any(|v| re.is_match(v))
                }
            }
            Pred::DeidContains(re, negate) => {
                values.iter().any(|v| re.is_match(v.trim())) != *negate
            }
            Pred::DeidEquals(arg, negate) => {
                values.iter().any(|v| v.trim().to_lowercase() == *arg) != *negate
            }
            Pred::Missing => values.is_empty(),
            Pred::Present => !values.is_empty(),
            Pred::Empty => values.iter().any(|v| v.trim().is_empty()),
        }
    }
}

fn ctp_test(op: CtpOp, value: &str, arg: &str) -> bool {
    let lc = || (value.to_lowercase(), arg.to_lowercase());
    match op {
        CtpOp::Equals => value == arg,
        CtpOp::EqualsIgnoreCase => {
            let (v, a) = lc();
            v == a
        }
        CtpOp::Contains => value.contains(arg),
        CtpOp::ContainsIgnoreCase => {
            let (v, a) = lc();
            v.contains(&a)
        }
        CtpOp::StartsWith => value.starts_with(arg),
        CtpOp::StartsWithIgnoreCase => {
            let (v, a) = lc();
            v.starts_with(&a)
        }
        CtpOp::EndsWith => value.ends_with(arg),
        CtpOp::EndsWithIgnoreCase => {
            let (v, a) = lc();
            v.ends_with(&a)
        }
    }
}

impl RectSpec {
    fn resolve(&self, memo: &mut Memo<'_>) -> Vec<Rect> {
        match self {
            RectSpec::Fixed(r) => vec![*r],
            RectSpec::FromRegions(_seq) => {
                // The four region attributes, zipped in document order: each
                // ultrasound region item carries all four (Type 1).
                let names = [
                    "RegionLocationMinX0",
                    "RegionLocationMinY0",
                    "RegionLocationMaxX1",
                    "RegionLocationMaxY1",
                ];
                let cols: Vec<Vec<i64>> = names
                    .iter()
                    .map(|n| {
                        keyword_tag(n)
                            .map(|t| {
                                memo.get(t)
                                    .iter()
                                    .filter_map(|v| v.trim().parse().ok())
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect();
                let n = cols[0].len();
                if cols.iter().any(|c| c.len() != n) {
                    return Vec::new();
                }
                (0..n)
                    .filter_map(|i| {
                        let (x0, y0, x1, y1) = (cols[0][i], cols[1][i], cols[2][i], cols[3][i]);
                        (x1 > x0 && y1 > y0 && x0 >= 0 && y0 >= 0).then(|| Rect {
                            x: x0.min(i64::from(i32::MAX)) as i32,
                            y: y0.min(i64::from(i32::MAX)) as i32,
                            w: (x1 - x0).min(i64::from(u32::MAX)) as u32,
                            h: (y1 - y0).min(i64::from(u32::MAX)) as u32,
                        })
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod fit_tests {
    use super::Rect;

    #[test]
    fn a_rectangle_for_another_screen_layout_does_not_fit() {
        let r = |x, y, w, h| Rect { x, y, w, h };
        // CTP's CX50 banner (inclusive edges: 801 x 60) on its own 800 x 600
        // screen, and on a 512 x 512 image it was not written for
        assert!(r(0, 0, 801, 60).fits(800, 600));
        assert!(!r(0, 0, 801, 60).fits(512, 512));
        // counted from the bottom-right corner
        assert!(r(-100, -20, 100, 20).fits(512, 512));
        assert!(Rect::ALL.fits(64, 64));
    }
}
