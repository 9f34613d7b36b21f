//! The burned-in text set: real corpus images of every photometric
//! interpretation, with fake names, MRNs and dates rendered into their
//! stored pixels, written in every transfer syntax by real peer encoders
//! (dcmtk, GDCM), and a manifest of every line's glyphs; plus the metrics
//! that score a pixel-cleaning tool's output against it ([`evaluate()`]).
//!
//! Why it is separate from the code it measures: pixels are decoded here
//! with dicom-pixeldata directly (not veil-pixels' frame reader), encoded
//! by dcmtk and GDCM (not veil's encoders), and the glyph masks come from
//! the manifest, not from any detector. A regression in Veil's codecs or
//! detector cannot hide itself by moving the stick as well.
//!
//! Layout of a built set: `ROOT/manifest.json` and `ROOT/in/*.dcm` (file
//! names are neutral: case number, transfer syntax, photometric
//! interpretation; the identities are fake anyway).

mod build;
mod eval;
pub mod pixels;

use serde::{Deserialize, Serialize};

pub use build::{build, BuildError, BuildOptions, SetSize, Syntax};
pub use eval::{
    evaluate, load_map, oracle_redact, rewrite_set, Changed, Evaluation, LineResult, OutputMap,
    Tally,
};

/// The manifest of a built set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Seed the set was built with.
    pub seed: u64,
    /// Files below `in/`.
    pub files: Vec<FileEntry>,
    /// Cases that a peer encoder refused (template, syntax, reason kind),
    /// so that a shrinking set is visible.
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// One planted file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the set's `in/` folder.
    pub file: String,
    /// The corpus file its pixels and header come from.
    pub template: String,
    /// Modality (0008,0060).
    pub modality: String,
    /// Transfer syntax UID of the file.
    pub ts: String,
    /// Short name of the transfer syntax.
    pub ts_name: String,
    /// True when the syntax is lossy (the reference is the decoded file,
    /// and comparisons allow the codec's error).
    pub lossy: bool,
    /// Photometric interpretation as written.
    pub pi: String,
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub cols: u32,
    /// Number of frames.
    pub frames: u32,
    /// Bits allocated.
    pub bits_allocated: u16,
    /// Bits stored.
    pub bits_stored: u16,
    /// Pixel representation 1.
    pub signed: bool,
    /// Burned In Annotation (0028,0301) as written; `None`: absent.
    pub burned_in_annotation: Option<String>,
    /// Planted lines.
    pub lines: Vec<Line>,
    /// Text the template already carried (boxes [x, y, w, h] of the words
    /// Tesseract finds in its first frame, padded): no line is planted
    /// over it, and changes there count neither way (a tool that redacts
    /// all text rightly removes it).
    #[serde(default)]
    pub existing_text: Vec<[u32; 4]>,
}

/// One planted line of text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    /// The text (fake).
    pub text: String,
    /// `name`, `mrn` or `date`.
    pub kind: String,
    /// True when the value is also in the header (a stage matching the
    /// object's own values can find it); false for pattern-only strings.
    pub in_header: bool,
    /// The frame it is drawn in; `None`: every frame.
    pub frame: Option<u32>,
    /// Tight glyph bounding box [x, y, w, h].
    #[serde(rename = "box")]
    pub bbox: [u32; 4],
    /// Where `draw_text` placed the line's top-left corner (to re-render
    /// the exact glyph mask).
    pub origin: [u32; 2],
    /// Glyph pixels per frame.
    pub glyph_pixels: u32,
    /// Line height in pixels (font size).
    pub px_height: u32,
    /// `high` or `low`.
    pub contrast: String,
    /// `corner`, `band` or `mid`.
    pub placement: String,
}

/// The glyph pixels of a line rendered at `px` with its top-left corner at
/// the origin: (dx, dy) offsets where coverage is at least one half.
/// Deterministic (same font, same rasterizer), so the evaluator re-renders
/// exactly the pixels the builder painted.
pub fn glyph_offsets(text: &str, px: u32) -> Vec<(u32, u32)> {
    let Ok((w, h)) = veil_pixels::text::measure_text(text, px as f32) else {
        return Vec::new();
    };
    let mut img = veil_pixels::GrayImage::new(w + 4, h + 4);
    if veil_pixels::text::draw_text(&mut img, text, 0, 0, px as f32, 255).is_err() {
        return Vec::new();
    }
    img.enumerate_pixels()
        .filter(|(_, _, p)| p.0[0] >= 128)
        .map(|(x, y, _)| (x, y))
        .collect()
}

/// The glyph pixels of a planted line, in frame coordinates, clipped to
/// the frame.
pub fn line_glyphs(line: &Line, cols: u32, rows: u32) -> Vec<(u32, u32)> {
    glyph_offsets(&line.text, line.px_height)
        .into_iter()
        .map(|(dx, dy)| (line.origin[0] + dx, line.origin[1] + dy))
        .filter(|&(x, y)| x < cols && y < rows)
        .collect()
}

/// Upper-case letters and digits only: what "reading the text back" has
/// to recover (spacing and punctuation do not identify anyone).
pub fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Edit distance from `needle` to its best-matching substring of
/// `haystack` (Sellers' algorithm), divided by the needle's length: 0 when
/// the text is read back exactly, 1 when nothing of it is.
pub fn substring_distance(needle: &str, haystack: &str) -> f64 {
    let n: Vec<char> = needle.chars().collect();
    let h: Vec<char> = haystack.chars().collect();
    if n.is_empty() {
        return 0.0;
    }
    // prev[i]: distance of needle[..i] to the best substring ending here
    let mut prev: Vec<usize> = (0..=n.len()).collect();
    let mut best = prev[n.len()];
    for &hc in &h {
        let mut cur = vec![0usize; n.len() + 1];
        for i in 1..=n.len() {
            let sub = prev[i - 1] + usize::from(n[i - 1] != hc);
            cur[i] = sub.min(prev[i] + 1).min(cur[i - 1] + 1);
        }
        best = best.min(cur[n.len()]);
        prev = cur;
    }
    best as f64 / n.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_finds_the_line_inside_noise() {
        assert_eq!(substring_distance("MRN1234567", "XXMRN1234567YY"), 0.0);
        assert!((substring_distance("MRN1234567", "MRN1234S67") - 0.1).abs() < 1e-9);
        assert_eq!(substring_distance("ABCD", ""), 1.0);
        assert!(substring_distance("HARRINGTON", "QWERTY") >= 0.5);
    }

    #[test]
    fn glyphs_are_deterministic_and_inside_the_measured_box() {
        let a = glyph_offsets("DOB 03/14/1962", 16);
        assert!(!a.is_empty());
        assert_eq!(a, glyph_offsets("DOB 03/14/1962", 16));
        let (w, h) = veil_pixels::text::measure_text("DOB 03/14/1962", 16.0).expect("font");
        assert!(a.iter().all(|&(x, y)| x < w + 4 && y < h + 4));
    }
}
