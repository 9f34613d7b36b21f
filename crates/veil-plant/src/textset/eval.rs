//! Scoring a pixel-cleaning tool's outputs against the text set.
//!
//! A planted line counts as **unreadable** when both hold:
//! (a) at least 90 % of its glyph pixels were erased in every frame it is
//!     drawn in: changed from the input's stored value (exactly, for
//!     lossless inputs kept in their colour space; beyond 2 % of the
//!     frame's displayed range otherwise), or no longer standing out from
//!     the pixels next to it (a box filled with the text's own colour
//!     erases the text without changing its pixels). Only glyph pixels
//!     that stood out from the pixels next to them in the input count (a
//!     lossy input may already have blurred some into the background, and
//!     a black letter lying on black air is not there to read);
//! (b) Tesseract, on the output's crop around the line (3x upscaled,
//!     contrast-stretched), does not read it back: the normalized edit
//!     distance from the line to the best-matching part of what it reads
//!     is at least 0.5.
//!
//! The reference is the decoded input file: for lossless syntaxes that is
//! the planted image itself; for lossy ones, what the tool was given.
//! Objects a tool sent to review are counted apart (not a recall failure,
//! not a success); outputs that do not decode, or decode to another frame
//! count or size, are decode failures and their lines count as readable.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::pixels::{decode, Pixels};
use super::{line_glyphs, normalize, substring_distance, FileEntry, Line, Manifest};

/// Erased glyph fraction required by (a).
pub const ERASED: f64 = 0.9;
/// Edit distance (normalized) at or above which OCR did not recover a line.
pub const UNREAD: f64 = 0.5;
/// Boxes are dilated by this many pixels before counting non-text pixels.
pub const DILATE: u32 = 4;

/// Where a tool put each input of the set.
#[derive(Debug, Clone, Default)]
pub struct OutputMap {
    /// Set file name (relative to `in/`) -> output path.
    pub outputs: BTreeMap<String, PathBuf>,
    /// Set files the tool sent to review.
    pub review: BTreeSet<String>,
}

/// Reads a map: either Veil's site-local `--report` JSON (`files[]` with
/// `input`, `status`, `output`) or `{"outputs": {name: path}, "review":
/// [name]}` (other tools). Relative output paths are taken below
/// `out_dir`. Inputs are matched by file name (the set's names are unique).
pub fn load_map(path: &Path, out_dir: &Path) -> Result<OutputMap, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the map: {:?}", e.kind()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| "the map is not JSON".to_string())?;
    let name = |s: &str| {
        Path::new(s)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let at = |s: &str| {
        let p = PathBuf::from(s);
        if p.is_absolute() {
            p
        } else {
            out_dir.join(p)
        }
    };
    let mut m = OutputMap::default();
    if let Some(files) = v.get("files").and_then(|f| f.as_array()) {
        for f in files {
            let (Some(input), Some(status)) = (
                f.get("input").and_then(|x| x.as_str()),
                f.get("status").and_then(|x| x.as_str()),
            ) else {
                continue;
            };
            let output = f.get("output").and_then(|x| x.as_str());
            match (status, output) {
                ("written" | "already-done" | "duplicate-instance", Some(o)) => {
                    m.outputs.insert(name(input), at(o));
                }
                ("review", _) => {
                    m.review.insert(name(input));
                }
                _ => {}
            }
        }
    } else {
        if let Some(o) = v.get("outputs").and_then(|o| o.as_object()) {
            for (k, p) in o {
                if let Some(p) = p.as_str() {
                    m.outputs.insert(name(k), at(p));
                }
            }
        }
        if let Some(r) = v.get("review").and_then(|r| r.as_array()) {
            m.review
                .extend(r.iter().filter_map(|x| x.as_str()).map(name));
        }
    }
    Ok(m)
}

/// Changed pixels over a population.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Changed {
    /// Pixels changed.
    pub changed: u64,
    /// Pixels compared.
    pub total: u64,
    /// changed / total, percent.
    pub percent: f64,
}

/// Lines unreadable over a group.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Lines in output files (review and missing excluded).
    pub lines: usize,
    /// Of which unreadable.
    pub unreadable: usize,
}

/// One line's result.
#[derive(Debug, Clone, Serialize)]
pub struct LineResult {
    /// Set file.
    pub file: String,
    /// Index in the file's lines.
    pub index: usize,
    /// `out`, `review`, `missing` or `decode-failure`.
    pub status: &'static str,
    /// Smallest erased glyph fraction over the frames it is drawn in.
    pub erased: f64,
    /// OCR distance, when OCR ran (only when (a) held).
    pub ocr_distance: Option<f64>,
    /// Unreadable by both criteria.
    pub unreadable: bool,
}

/// The metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evaluation {
    /// Files in the set.
    pub files: usize,
    /// Frames in the set.
    pub frames: u64,
    /// Lines in the set.
    pub lines: usize,
    /// Lines in files written to OUT (the recall denominator).
    pub evaluated_lines: usize,
    /// Of those, unreadable.
    pub unreadable_lines: usize,
    /// unreadable / evaluated, percent.
    pub recall_percent: f64,
    /// Files sent to review (not failures of recall; reported).
    pub review_files: usize,
    /// Their lines.
    pub review_lines: usize,
    /// Files neither written nor sent to review.
    pub missing_files: usize,
    /// Outputs that do not decode or changed frame count or size.
    pub decode_failures: usize,
    /// Set names of those.
    pub decode_failure_files: Vec<String>,
    /// Non-text pixels changed, inputs in lossless syntaxes.
    pub nontext_lossless: Changed,
    /// Non-text pixels changed, inputs in lossy syntaxes (tolerance 2 %).
    pub nontext_lossy: Changed,
    /// Recall by transfer syntax, photometric interpretation, contrast,
    /// height, placement, kind, frames.
    pub by: BTreeMap<String, Tally>,
    /// Every line.
    pub details: Vec<LineResult>,
    /// Non-text pixels changed per released file (set name, changed,
    /// compared): where a tool touches more than the text.
    pub nontext_by_file: Vec<(String, u64, u64)>,
}

impl Evaluation {
    /// One line for logs (counts and percentages only).
    pub fn summary(&self) -> String {
        format!(
            "text-eval: {} files, {} lines; unreadable {}/{} ({:.1} %); non-text changed {:.3} % lossless, {:.3} % lossy; decode failures {}; review {} files ({} lines); missing {}",
            self.files,
            self.lines,
            self.unreadable_lines,
            self.evaluated_lines,
            self.recall_percent,
            self.nontext_lossless.percent,
            self.nontext_lossy.percent,
            self.decode_failures,
            self.review_files,
            self.review_lines,
            self.missing_files
        )
    }
}

/// What a pixel looks like, one number: luminance for RGB, Y for YBR, the
/// palette entry's luminance, else the stored value.
pub(super) fn look(p: &Pixels, f: u32, x: u32, y: u32) -> f32 {
    let s = p.at(f, x, y);
    match (s.len(), &p.palette) {
        (3, _) if p.pi.starts_with("YBR") => s[0] as f32,
        (3, _) => 0.299 * s[0] as f32 + 0.587 * s[1] as f32 + 0.114 * s[2] as f32,
        (_, Some(pal)) => pal.luma_of(s[0]),
        _ => s[0] as f32,
    }
}

/// The frame's displayed range of [`look`]: 5th to 95th percentile, so
/// that the planted text itself (a few percent of the pixels) barely
/// moves it.
pub(super) fn scale(p: &Pixels, f: u32) -> f32 {
    let mut v: Vec<f32> = (0..p.rows * p.cols)
        .step_by(5)
        .map(|i| look(p, f, i % p.cols, i / p.cols))
        .collect();
    v.sort_by(f32::total_cmp);
    let s = v[v.len() * 95 / 100] - v[v.len() / 20];
    if s > 0.0 {
        s
    } else {
        // flat frame: the full table / value range
        (v[v.len() - 1] - v[0]).max(if p.palette.is_some() { 0.05 } else { 1.0 })
    }
}

/// Pixel coordinates.
type Points = Vec<(u32, u32)>;

/// The pixels around a line's glyphs (its box widened by 2, glyphs
/// excluded) and the glyphs themselves, in frame coordinates.
pub(super) fn ring_and_glyphs(l: &Line, cols: u32, rows: u32) -> (Points, Points) {
    let (ring, glyphs, _) = ring_glyphs_set(l, cols, rows);
    (ring, glyphs)
}

/// [`ring_and_glyphs`], and the glyphs as a set (for lookups).
fn ring_glyphs_set(l: &Line, cols: u32, rows: u32) -> (Points, Points, HashSet<(u32, u32)>) {
    let glyphs = line_glyphs(l, cols, rows);
    let gset: HashSet<(u32, u32)> = glyphs.iter().copied().collect();
    let [x, y, w, h] = l.bbox;
    let ring = (y.saturating_sub(2)..(y + h + 2).min(rows))
        .flat_map(|yy| (x.saturating_sub(2)..(x + w + 2).min(cols)).map(move |xx| (xx, yy)))
        .filter(|p| !gset.contains(p))
        .collect();
    (ring, glyphs, gset)
}

fn median_look(p: &Pixels, f: u32, at: &[(u32, u32)]) -> f32 {
    let mut v: Vec<f32> = at.iter().map(|&(x, y)| look(p, f, x, y)).collect();
    v.sort_by(f32::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A glyph pixel "stands out" when it differs from the median around the
/// line by more than this fraction of the frame's displayed range.
const STAND: f32 = 0.025;

/// The fraction of a line's glyph pixels that stand out from the pixels
/// around it in frame `f` (the builder's check that a line is there to be
/// read).
pub(super) fn standing_out(p: &Pixels, f: u32, l: &Line) -> f64 {
    let (ring, glyphs) = ring_and_glyphs(l, p.cols, p.rows);
    let m = median_look(p, f, &ring);
    let stand = STAND * scale(p, f);
    let n = glyphs
        .iter()
        .filter(|&&(x, y)| (look(p, f, x, y) - m).abs() > stand)
        .count();
    n as f64 / glyphs.len().max(1) as f64
}

struct Compare<'a> {
    a: &'a Pixels,
    b: &'a Pixels,
    same_space: bool,
    exact: bool,
}

impl Compare<'_> {
    fn changed(&self, f: u32, x: u32, y: u32, tol: f32) -> bool {
        if self.same_space {
            let (s, t) = (self.a.at(f, x, y), self.b.at(f, x, y));
            if self.exact {
                s != t
            } else {
                s.iter().zip(t).any(|(u, v)| (u - v).abs() as f32 > tol)
            }
        } else {
            (look(self.a, f, x, y) - look(self.b, f, x, y)).abs() > tol
        }
    }
}

/// Scores the outputs in `map` against the set (`manifest`, inputs below
/// `in_dir`).
pub fn evaluate(manifest: &Manifest, in_dir: &Path, map: &OutputMap) -> Result<Evaluation, String> {
    use rayon::prelude::*;
    // files in parallel, one Tesseract per worker
    let scored: Vec<Result<Scored, String>> = manifest
        .files
        .par_iter()
        .map_init(
            || {
                veil_pixels::ocr::Ocr::new().map(|mut o| {
                    // the crops are upscaled here; no second upscaling inside
                    o.target_side = 1;
                    o
                })
            },
            |ocr, fe| {
                let ocr = ocr.as_mut().map_err(|e| e.to_string())?;
                score(fe, in_dir, map, ocr)
            },
        )
        .collect();
    let mut ev = Evaluation {
        files: manifest.files.len(),
        ..Default::default()
    };
    for (fe, s) in manifest.files.iter().zip(scored) {
        ev.frames += fe.frames as u64;
        ev.lines += fe.lines.len();
        let blank = |status| {
            (0..fe.lines.len()).map(move |i| LineResult {
                file: fe.file.clone(),
                index: i,
                status,
                erased: 0.0,
                ocr_distance: None,
                unreadable: false,
            })
        };
        match s? {
            Scored::Review => {
                ev.review_files += 1;
                ev.review_lines += fe.lines.len();
                ev.details.extend(blank("review"));
            }
            Scored::Missing => {
                ev.missing_files += 1;
                ev.details.extend(blank("missing"));
            }
            Scored::DecodeFailure => {
                ev.decode_failures += 1;
                ev.decode_failure_files.push(fe.file.clone());
                for l in &fe.lines {
                    tally(&mut ev, fe, l, false);
                }
                ev.details.extend(blank("decode-failure"));
            }
            Scored::Out(nt, lines) => {
                let acc = if fe.lossy {
                    &mut ev.nontext_lossy
                } else {
                    &mut ev.nontext_lossless
                };
                acc.changed += nt.changed;
                acc.total += nt.total;
                ev.nontext_by_file
                    .push((fe.file.clone(), nt.changed, nt.total));
                for r in lines {
                    tally(&mut ev, fe, &fe.lines[r.index], r.unreadable);
                    ev.details.push(r);
                }
            }
        }
    }
    let pct = |c: &mut Changed| c.percent = 100.0 * c.changed as f64 / c.total.max(1) as f64;
    pct(&mut ev.nontext_lossless);
    pct(&mut ev.nontext_lossy);
    ev.recall_percent = 100.0 * ev.unreadable_lines as f64 / ev.evaluated_lines.max(1) as f64;
    Ok(ev)
}

/// One file's outcome.
enum Scored {
    Review,
    Missing,
    DecodeFailure,
    Out(Changed, Vec<LineResult>),
}

fn score(
    fe: &FileEntry,
    in_dir: &Path,
    map: &OutputMap,
    ocr: &mut veil_pixels::ocr::Ocr,
) -> Result<Scored, String> {
    let Some(out) = map.outputs.get(&fe.file) else {
        return Ok(if map.review.contains(&fe.file) {
            Scored::Review
        } else {
            Scored::Missing
        });
    };
    let reference = decode(&in_dir.join(&fe.file))
        .map_err(|e| format!("set file {} does not decode: {e}", fe.file))?;
    match decode(out) {
        Ok(o)
            if (o.cols, o.rows, o.frames) == (reference.cols, reference.rows, reference.frames) =>
        {
            score_file(fe, &reference, &o, ocr)
        }
        _ => Ok(Scored::DecodeFailure),
    }
}

fn tally(ev: &mut Evaluation, fe: &FileEntry, l: &Line, unreadable: bool) {
    ev.evaluated_lines += 1;
    ev.unreadable_lines += usize::from(unreadable);
    let h = match l.px_height {
        0..=12 => "8-12",
        13..=20 => "13-20",
        _ => "21-40",
    };
    for key in [
        format!("ts:{}", fe.ts_name),
        format!("pi:{}", fe.pi),
        format!("contrast:{}", l.contrast),
        format!("height:{h}"),
        format!("placement:{}", l.placement),
        format!("kind:{}", l.kind),
        format!("in-header:{}", l.in_header),
        format!(
            "frames:{}",
            match (fe.frames, l.frame) {
                (1, _) => "single-frame",
                (_, None) => "all-frames",
                _ => "one-frame",
            }
        ),
    ] {
        let t = ev.by.entry(key).or_default();
        t.lines += 1;
        t.unreadable += usize::from(unreadable);
    }
}

fn score_file(
    fe: &FileEntry,
    a: &Pixels,
    b: &Pixels,
    ocr: &mut veil_pixels::ocr::Ocr,
) -> Result<Scored, String> {
    let same_space = a.pi == b.pi && a.spp == b.spp;
    let cmp = Compare {
        a,
        b,
        same_space,
        exact: same_space && !fe.lossy,
    };
    let scales: Vec<f32> = (0..a.frames).map(|f| scale(a, f)).collect();
    // codec error allowed when not comparing exactly: 2 % of the
    // displayed range, at least 1 % of the representable one
    let (lo, hi) = a.value_range();
    let floor = if a.palette.is_some() {
        0.01
    } else {
        0.01 * (hi - lo) as f32
    };
    let tol = |f: u32| (0.02 * scales[f as usize]).max(floor);
    // non-text pixels: outside every box dilated by DILATE, all frames
    let mut text = vec![false; (a.rows * a.cols) as usize];
    let boxes = fe
        .lines
        .iter()
        .map(|l| l.bbox)
        .chain(fe.existing_text.iter().copied());
    for [x, y, w, h] in boxes {
        for yy in y.saturating_sub(DILATE)..(y + h + DILATE).min(a.rows) {
            for xx in x.saturating_sub(DILATE)..(x + w + DILATE).min(a.cols) {
                text[(yy * a.cols + xx) as usize] = true;
            }
        }
    }
    let mut nt = Changed::default();
    let row_len = (a.cols * a.spp) as usize;
    for f in 0..a.frames {
        let t = tol(f);
        for y in 0..a.rows {
            // identical rows (most of an image a tool leaves alone) need no
            // per-pixel look
            let start = f as usize * a.frame_len() + y as usize * row_len;
            if same_space && a.data[start..start + row_len] == b.data[start..start + row_len] {
                nt.total += text[(y * a.cols) as usize..((y + 1) * a.cols) as usize]
                    .iter()
                    .filter(|&&t| !t)
                    .count() as u64;
                continue;
            }
            for x in 0..a.cols {
                if text[(y * a.cols + x) as usize] {
                    continue;
                }
                nt.total += 1;
                nt.changed += u64::from(cmp.changed(f, x, y, t));
            }
        }
    }
    let mut results = Vec::new();
    for (i, l) in fe.lines.iter().enumerate() {
        let (ring, glyphs, gset) = ring_glyphs_set(l, a.cols, a.rows);
        // the pixels around each glyph pixel it is seen against: a line
        // may cross air and tissue, and a letter on a background of its
        // own value is not there to read
        let r = (l.px_height / 6).max(2);
        let around: Vec<Points> = glyphs
            .iter()
            .map(|&(gx, gy)| {
                (gy.saturating_sub(r)..(gy + r + 1).min(a.rows))
                    .flat_map(|yy| {
                        (gx.saturating_sub(r)..(gx + r + 1).min(a.cols)).map(move |xx| (xx, yy))
                    })
                    .filter(|q| !gset.contains(q))
                    .collect()
            })
            .collect();
        let frames: Vec<u32> = match l.frame {
            Some(f) => vec![f.min(a.frames - 1)],
            None => (0..a.frames).collect(),
        };
        let mut worst = (f64::INFINITY, 0u32);
        for &f in &frames {
            let (ma, mb) = (median_look(a, f, &ring), median_look(b, f, &ring));
            let stand = STAND * scales[f as usize];
            let (mut eligible, mut erased) = (0u32, 0u32);
            for (&(gx, gy), near) in glyphs.iter().zip(&around) {
                // against the pixels next to it, or the line's ring where
                // the letter leaves none
                let (la, lb) = if near.is_empty() {
                    (ma, mb)
                } else {
                    (median_look(a, f, near), median_look(b, f, near))
                };
                if (look(a, f, gx, gy) - la).abs() <= stand {
                    continue;
                }
                eligible += 1;
                let gone =
                    cmp.changed(f, gx, gy, tol(f)) || (look(b, f, gx, gy) - lb).abs() <= stand;
                erased += u32::from(gone);
            }
            let frac = if eligible == 0 {
                // nothing to erase was visible: no credit
                0.0
            } else {
                erased as f64 / eligible as f64
            };
            if frac < worst.0 {
                worst = (frac, f);
            }
        }
        let mut dist = None;
        let mut unreadable = false;
        if worst.0 >= ERASED {
            let d = read_back(b, worst.1, l, ocr)?;
            unreadable = d >= UNREAD;
            dist = Some(d);
        }
        results.push(LineResult {
            file: fe.file.clone(),
            index: i,
            status: "out",
            erased: worst.0,
            ocr_distance: dist,
            unreadable,
        });
    }
    Ok(Scored::Out(nt, results))
}

/// OCR of the output's crop around a line: the normalized distance from
/// the planted text to the best-matching part of what Tesseract reads.
fn read_back(p: &Pixels, f: u32, l: &Line, ocr: &mut veil_pixels::ocr::Ocr) -> Result<f64, String> {
    let [x, y, w, h] = l.bbox;
    let pad = (h / 2).max(4);
    let (x0, y0) = (x.saturating_sub(pad), y.saturating_sub(pad));
    let (x1, y1) = ((x + w + pad).min(p.cols), (y + h + pad).min(p.rows));
    let vals: Vec<f32> = (y0..y1)
        .flat_map(|yy| (x0..x1).map(move |xx| (xx, yy)))
        .map(|(xx, yy)| look(p, f, xx, yy))
        .collect();
    let (lo, hi) = vals
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |a, &v| {
            (a.0.min(v), a.1.max(v))
        });
    if hi - lo <= f32::EPSILON {
        // a uniform crop holds nothing to read
        return Ok(1.0);
    }
    let gray = veil_pixels::GrayImage::from_fn(x1 - x0, y1 - y0, |xx, yy| {
        let v = vals[(yy * (x1 - x0) + xx) as usize];
        image::Luma([((v - lo) / (hi - lo) * 255.0).round() as u8])
    });
    let big = image::imageops::resize(
        &gray,
        gray.width() * 3,
        gray.height() * 3,
        image::imageops::FilterType::Triangle,
    );
    let mut words = ocr.words(&big).map_err(|e| e.to_string())?;
    words.sort_by_key(|w| (w.top / w.height.max(1), w.left));
    let read: String = words
        .iter()
        .map(|w| normalize(&w.text))
        .collect::<Vec<_>>()
        .join("");
    Ok(substring_distance(&normalize(&l.text), &read))
}

/// The oracle redactor: fills every planted box (padded by 2 pixels) in
/// every frame with the smallest representable value. Why: it proves the
/// metric can reach 100 % with no non-text change, and gives benchmarks a
/// known-perfect row.
pub fn oracle_redact(
    manifest: &Manifest,
    in_dir: &Path,
    out_dir: &Path,
) -> Result<OutputMap, String> {
    rewrite_set(manifest, in_dir, out_dir, |p, fe| {
        let (lo, _) = p.value_range();
        let fill = if p.palette.is_some() { 0.max(lo) } else { lo };
        let ybr = p.pi.starts_with("YBR");
        for l in &fe.lines {
            let [x, y, w, h] = l.bbox;
            for f in 0..p.frames {
                for yy in y.saturating_sub(2)..(y + h + 2).min(p.rows) {
                    for xx in x.saturating_sub(2)..(x + w + 2).min(p.cols) {
                        let s = p.at_mut(f, xx, yy);
                        s.iter_mut().for_each(|c| *c = fill);
                        if s.len() == 3 && ybr {
                            s[1] = 128;
                            s[2] = 128;
                        }
                    }
                }
            }
        }
    })
}

/// Applies `edit` to the decoded pixels of every set file and writes the
/// result to `out_dir` (native syntaxes keep theirs; encapsulated ones
/// become Explicit VR Little Endian), returning the map: a model
/// redactor, for testing the metric itself.
pub fn rewrite_set(
    manifest: &Manifest,
    in_dir: &Path,
    out_dir: &Path,
    edit: impl Fn(&mut Pixels, &FileEntry),
) -> Result<OutputMap, String> {
    use veil_core::Tag;
    use veil_io::{Element, WriteMeta};
    let mut map = OutputMap::default();
    for fe in &manifest.files {
        let src = in_dir.join(&fe.file);
        let mut p = decode(&src)?;
        edit(&mut p, fe);
        p.settle_422();
        let file = veil_io::read(&src).map_err(|e| e.to_string())?;
        let ts = if file.ts.encapsulated {
            veil_io::TsInfo::explicit_le()
        } else {
            file.ts.clone()
        };
        let mut bytes = p.to_native();
        if ts.big_endian && p.bits_allocated == 16 {
            bytes.chunks_exact_mut(2).for_each(|w| w.swap(0, 1));
        }
        let mut ds = file.dataset.clone();
        let vr = if p.bits_allocated == 16 {
            dicom_core::VR::OW
        } else {
            dicom_core::VR::OB
        };
        ds.put(Element::bytes(Tag(0x7FE0, 0x0010), vr, bytes));
        ds.put(Element::text(
            Tag(0x0028, 0x0004),
            dicom_core::VR::CS,
            &p.pi,
        ));
        if p.spp == 3 {
            let zero = 0u16;
            let b = if ts.big_endian {
                zero.to_be_bytes()
            } else {
                zero.to_le_bytes()
            };
            ds.put(Element::bytes(
                Tag(0x0028, 0x0006),
                dicom_core::VR::US,
                b.to_vec(),
            ));
        }
        let meta = WriteMeta {
            sop_class: ds.ascii(Tag(0x0008, 0x0016)).unwrap_or_default(),
            sop_instance: ds.ascii(Tag(0x0008, 0x0018)).unwrap_or_default(),
        };
        let dest = out_dir.join(&fe.file);
        veil_io::write_file(&dest, &meta, &ts, &ds, &file.source).map_err(|e| e.to_string())?;
        map.outputs.insert(fe.file.clone(), dest);
    }
    Ok(map)
}
