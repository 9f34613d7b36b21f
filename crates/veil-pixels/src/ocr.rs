//! Reading burned-in text with Tesseract (libtesseract through the
//! `tesseract` crate; feature `ocr`).
//!
//! Why the preprocessing: Tesseract is trained on dark text on a light
//! page at ~300 dpi. Medical annotations are the opposite: small white
//! (or gray) text on black or on anatomy, at 10–20 px. So each frame is
//! upscaled (small text to a size the LSTM recognizes), inverted, and read
//! in up to three versions:
//!
//! 1. the frame itself, inverted: white text on black becomes black on
//!    white;
//! 2. a white top-hat (the frame minus its morphological opening), i.e.
//!    what is brighter than its surroundings at the scale of letter
//!    strokes, thresholded at 20 gray levels into black ink on white:
//!    finds text only a few tens of gray levels above its local
//!    background, which Tesseract's global Otsu threshold drops;
//! 3. the same for dark text on a bright background (black top-hat).
//!
//! Pages are segmented as sparse text (PSM 11): annotations are scattered
//! words in corners, not paragraphs. Words found by several passes are
//! merged (same text, overlapping boxes: highest confidence kept); boxes
//! are mapped back to the frame's own coordinates.

use std::ffi::CString;

use image::GrayImage;
use tesseract::plumbing::TessBaseApi;
use tesseract::PageSegMode;

/// Why OCR could not run.
#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    /// Tesseract could not start with English data.
    #[error("Tesseract could not load its English data: install tesseract-ocr-eng (or set TESSDATA_PREFIX)")]
    Init,
    /// Tesseract rejected a setting.
    #[error("Tesseract rejected setting {0}")]
    Setting(&'static str),
    /// Tesseract failed on an image.
    #[error("Tesseract failed to recognize an image")]
    Recognize,
}

/// A word read in a frame, with its box in the frame's pixel coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The text as read (no normalization).
    pub text: String,
    /// Left edge, pixels.
    pub left: u32,
    /// Top edge, pixels.
    pub top: u32,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Tesseract's confidence, 0 to 100.
    pub confidence: f32,
}

/// Which preprocessed versions of a frame are read. All on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passes {
    /// The frame, inverted.
    pub plain: bool,
    /// Bright text by local contrast (white top-hat).
    pub bright: bool,
    /// Dark text by local contrast (black top-hat).
    pub dark: bool,
}

impl Default for Passes {
    fn default() -> Self {
        Passes {
            plain: true,
            bright: true,
            dark: true,
        }
    }
}

/// A Tesseract engine set up for burned-in annotations. Not `Sync`: use one
/// per thread (creating one loads ~15 MB of model data, ~0.1 s).
pub struct Ocr {
    api: TessBaseApi,
    /// Which versions of each frame are read.
    pub passes: Passes,
    /// Frames whose longer side is under this are upscaled (by 2 or 3) so
    /// that small text reaches the size Tesseract reads best.
    pub target_side: u32,
}

impl std::fmt::Debug for Ocr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ocr")
            .field("passes", &self.passes)
            .field("target_side", &self.target_side)
            .finish()
    }
}

/// Runs the program again with `OMP_THREAD_LIMIT=1` unless the caller set
/// it (to any value: theirs stands); call it first thing in `main`. It
/// returns only when it did not (already set, not unix, or the exec
/// failed). Why: Tesseract reads each line on a team of OpenMP threads
/// (Debian's libtesseract is built with libgomp), and a program that
/// already runs one OCR worker per core oversubscribes the CPUs: the
/// teams spin on futexes. On 2 cores, `veil deid` on 6 files of the text
/// set took 6.2 s wall (4.5 s of it in the kernel) against 1.7 s with
/// teams of one thread. libgomp reads the limit only when it is loaded,
/// before `main` runs, so setting it from within is too late; and this
/// workspace forbids the unsafe code a run-time OpenMP call would need.
pub fn limit_openmp_teams() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("OMP_THREAD_LIMIT").is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        // exec returns only on failure: the program then goes on as it is
        let _ = cmd.args(args).env("OMP_THREAD_LIMIT", "1").exec();
    }
}

/// Side of the square used by the top-hat passes, in frame pixels: wider
/// than letter strokes (so they stand out), narrower than anatomy.
const TOPHAT: usize = 15;

/// Local contrast (gray levels above the surroundings) that counts as ink
/// in the top-hat passes: half the weakest contrast Veil aims to read (40).
const INK: u8 = 20;

impl Ocr {
    /// Starts Tesseract with English (`eng.traineddata` from the default
    /// tessdata folder or `TESSDATA_PREFIX`).
    pub fn new() -> Result<Ocr, OcrError> {
        let mut api = TessBaseApi::create();
        let lang = CString::new("eng").map_err(|_| OcrError::Init)?;
        api.init_2(None, Some(&lang)).map_err(|_| OcrError::Init)?;
        let mut ocr = Ocr {
            api,
            passes: Passes::default(),
            target_side: 1200,
        };
        // Tesseract prints diagnostics on stderr; a library must not.
        ocr.set("debug_file", "/dev/null")?;
        // We give it dark-on-light versions ourselves.
        ocr.set("tessedit_do_invert", "0")?;
        ocr.api
            .set_page_seg_mode(PageSegMode::PsmSparseText.as_tess_page_seg_mode());
        Ok(ocr)
    }

    fn set(&mut self, name: &'static str, value: &str) -> Result<(), OcrError> {
        let n = CString::new(name).map_err(|_| OcrError::Setting(name))?;
        let v = CString::new(value).map_err(|_| OcrError::Setting(name))?;
        self.api
            .set_variable(&n, &v)
            .map_err(|_| OcrError::Setting(name))
    }

    /// The upscaling factor for a frame.
    fn scale_for(&self, img: &GrayImage) -> u32 {
        let side = img.width().max(img.height()).max(1);
        self.target_side.div_ceil(side).clamp(1, 3)
    }

    /// Every word read in the frame, from all passes, duplicates merged.
    pub fn words(&mut self, img: &GrayImage) -> Result<Vec<Word>, OcrError> {
        if img.width() < 4 || img.height() < 4 {
            return Ok(Vec::new());
        }
        let mut all: Vec<Word> = Vec::new();
        for (v, scale) in self.prepare(img) {
            for w in self.read(&v)? {
                merge(&mut all, unscale(w, scale, img));
            }
        }
        // A second look at every line where anything was seen: cropped,
        // enlarged to about 40 px text and read as a single line. Sparse
        // mode on a whole frame misreads small digits ("7228796" as
        // "228795)"); one line at a readable size rarely does.
        let mut found = Vec::new();
        for (x, y, w, h) in line_boxes(&all) {
            found.extend(self.read_line(img, x, y, w, h)?);
        }
        for w in found {
            merge(&mut all, w);
        }
        Ok(all)
    }

    /// Reads one line of text whose box in `img` is (`x`, `y`, `w`, `h`):
    /// the crop around it, contrast-stretched and enlarged to about 40 px
    /// text, is read as a single line in three versions (inverted, bright
    /// and dark top-hat). Why: sparse mode on a whole frame misreads small
    /// digits ("7228796" as "228795)"), and faint text vanishes under a
    /// frame-wide threshold; one line at a readable size and full
    /// contrast rarely does. Boxes are in `img`'s coordinates.
    pub fn read_line(
        &mut self,
        img: &GrayImage,
        x: u32,
        y: u32,
        w: u32,
        h: u32,
    ) -> Result<Vec<Word>, OcrError> {
        self.read_line_as(img, (x, y, w, h), None, None)
    }

    /// [`Ocr::read_line`] for text of known polarity (`bright`: lighter
    /// than its background), as the screen reports it: first the screen's
    /// own ink mask of the crop ([`crate::clean::detect::ink_image`]),
    /// then, only while no confident word has been read, the contrast-
    /// stretched crop and its top-hat.
    ///
    /// `text_h` is the height of the letters (the screen's median glyph),
    /// which sets the enlargement: a line box can be taller than its text
    /// when the text touches bright structures behind it.
    pub fn read_line_polarity(
        &mut self,
        img: &GrayImage,
        (x, y, w, h): (u32, u32, u32, u32),
        text_h: u32,
        bright: bool,
        flat_ink: Option<&GrayImage>,
    ) -> Result<Vec<Word>, OcrError> {
        self.read_line_as(img, (x, y, w, h), Some((bright, text_h)), flat_ink)
    }

    fn read_line_as(
        &mut self,
        img: &GrayImage,
        (x, y, w, h): (u32, u32, u32, u32),
        known: Option<(bool, u32)>,
        flat_ink: Option<&GrayImage>,
    ) -> Result<Vec<Word>, OcrError> {
        let bright = known.map(|k| k.0);
        let text_h = known.map_or(h, |k| k.1.clamp(1, h.max(1)));
        let pad = h.max(4);
        let x0 = x.saturating_sub(pad);
        let y0 = y.saturating_sub(pad / 2);
        let x1 = (x + w + pad).min(img.width());
        let y1 = (y + h + pad / 2).min(img.height());
        if x1 <= x0 + 2 || y1 <= y0 + 2 {
            return Ok(Vec::new());
        }
        let crop = stretch(image::imageops::crop_imm(img, x0, y0, x1 - x0, y1 - y0).to_image());
        let scale = (40 / text_h.max(1)).clamp(1, 6);
        self.api
            .set_page_seg_mode(PageSegMode::PsmSingleLine.as_tess_page_seg_mode());
        let top_hat = |bright: bool| {
            if bright {
                binarize(&sub(&crop, &dilate(&erode(&crop, TOPHAT), TOPHAT)))
            } else {
                binarize(&sub(&erode(&dilate(&crop, TOPHAT), TOPHAT), &crop))
            }
        };
        // which versions are read, in order
        #[derive(Clone, Copy)]
        enum V {
            Flat,
            Ink(bool),
            Plain(bool),
            TopHat(bool),
        }
        let versions: &[V] = match (bright, flat_ink.is_some()) {
            (None, _) => &[V::Plain(true), V::TopHat(true), V::TopHat(false)],
            // one-valued ink: exactly its pixels first, then the rest
            (Some(true), true) => &[V::Flat, V::Ink(true), V::Plain(true)],
            (Some(false), true) => &[V::Flat, V::Ink(false), V::Plain(false)],
            // the screen may take the gaps between dark letters on a
            // bright textured background for bright text: the other
            // polarity is tried last
            (Some(true), false) => &[
                V::Ink(true),
                V::Plain(true),
                V::TopHat(true),
                V::Plain(false),
            ],
            (Some(false), false) => &[
                V::Ink(false),
                V::Plain(false),
                V::TopHat(false),
                V::Plain(true),
            ],
        };
        let mut found: Vec<Word> = Vec::new();
        for (k, version) in versions.iter().enumerate() {
            if bright.is_some() && k > 0 && found.iter().any(|w| w.confidence >= 60.0) {
                break;
            }
            let v = match *version {
                V::Flat => match flat_ink {
                    Some(f) => image::imageops::crop_imm(f, x0, y0, x1 - x0, y1 - y0).to_image(),
                    None => continue,
                },
                // the screen's own ink decision, at the crop's place
                V::Ink(b) => crate::clean::detect::ink_image(img, (x0, y0, x1 - x0, y1 - y0), b),
                // bright text is inverted to dark on light
                V::Plain(b) => {
                    if b {
                        invert(crop.clone())
                    } else {
                        crop.clone()
                    }
                }
                V::TopHat(b) => top_hat(b),
            };
            let v = if scale > 1 { upscale(&v, scale) } else { v };
            let read = self.read(&v);
            for mut w in read.unwrap_or_default() {
                w = unscale(w, scale, &crop);
                w.left += x0;
                w.top += y0;
                found.push(w);
            }
        }
        self.api
            .set_page_seg_mode(PageSegMode::PsmSparseText.as_tess_page_seg_mode());
        let mut all = Vec::new();
        for w in found {
            merge(&mut all, w);
        }
        Ok(all)
    }

    /// The images Tesseract is given for a frame (dark text on light) and
    /// the factor each was upscaled by: one per enabled pass. Public so
    /// that misses can be looked at.
    pub fn prepare(&self, img: &GrayImage) -> Vec<(GrayImage, u32)> {
        let scale = self.scale_for(img);
        let mut versions = Vec::new();
        if self.passes.plain {
            versions.push(invert(img.clone()));
        }
        if self.passes.bright {
            let th = sub(img, &dilate(&erode(img, TOPHAT), TOPHAT));
            versions.push(binarize(&th));
        }
        if self.passes.dark {
            let th = sub(&erode(&dilate(img, TOPHAT), TOPHAT), img);
            versions.push(binarize(&th));
        }
        versions
            .into_iter()
            .map(|v| {
                if scale > 1 {
                    (upscale(&v, scale), scale)
                } else {
                    (v, 1)
                }
            })
            .collect()
    }

    /// Runs Tesseract on one prepared image and parses its TSV output.
    fn read(&mut self, img: &GrayImage) -> Result<Vec<Word>, OcrError> {
        let (w, h) = (img.width() as i32, img.height() as i32);
        self.api
            .set_image(img.as_raw(), w, h, 1, w)
            .map_err(|_| OcrError::Recognize)?;
        self.api.set_source_resolution(300);
        self.api.recognize().map_err(|_| OcrError::Recognize)?;
        let tsv = self.api.get_tsv_text(0).map_err(|_| OcrError::Recognize)?;
        let tsv = tsv.as_ref().to_string_lossy();
        Ok(parse_tsv(&tsv))
    }
}

/// Boxes (x, y, w, h) of text lines: words whose vertical centres lie
/// within half a height of each other, joined left to right.
fn line_boxes(words: &[Word]) -> Vec<(u32, u32, u32, u32)> {
    let mut lines: Vec<(u32, u32, u32, u32)> = Vec::new();
    let mut ws: Vec<&Word> = words.iter().filter(|w| w.height >= 4).collect();
    ws.sort_by_key(|w| (w.top, w.left));
    for w in ws {
        let mid = w.top + w.height / 2;
        let hit = lines.iter_mut().find(|l| {
            let lm = l.1 + l.3 / 2;
            mid.abs_diff(lm) <= l.3.max(w.height) / 2
                && w.left <= l.0 + l.2 + 2 * l.3.max(w.height)
                && w.left + w.width + 2 * l.3.max(w.height) >= l.0
        });
        match hit {
            Some(l) => {
                let x1 = (l.0 + l.2).max(w.left + w.width);
                let y1 = (l.1 + l.3).max(w.top + w.height);
                l.0 = l.0.min(w.left);
                l.1 = l.1.min(w.top);
                l.2 = x1 - l.0;
                l.3 = y1 - l.1;
            }
            None => lines.push((w.left, w.top, w.width, w.height)),
        }
    }
    // a frame full of words is a page of text: the first pass read it
    lines.truncate(64);
    lines
}

/// Words (level 5 rows) of Tesseract's TSV: level, page, block, par, line,
/// word, left, top, width, height, conf, text.
fn parse_tsv(tsv: &str) -> Vec<Word> {
    tsv.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(12, '\t').collect();
            if f.len() < 12 || f[0] != "5" {
                return None;
            }
            let text = f[11].trim();
            if text.is_empty() {
                return None;
            }
            let n = |i: usize| f[i].parse::<i64>().ok().map(|v| v.max(0) as u32);
            Some(Word {
                text: text.to_string(),
                left: n(6)?,
                top: n(7)?,
                width: n(8)?,
                height: n(9)?,
                confidence: f[10].parse().unwrap_or(0.0),
            })
        })
        .collect()
}

/// Maps a word's box from the upscaled image back to the frame.
fn unscale(mut w: Word, scale: u32, img: &GrayImage) -> Word {
    let (x0, y0) = (w.left / scale, w.top / scale);
    let x1 = (w.left + w.width).div_ceil(scale).min(img.width());
    let y1 = (w.top + w.height).div_ceil(scale).min(img.height());
    w.left = x0.min(img.width());
    w.top = y0.min(img.height());
    w.width = x1.saturating_sub(w.left);
    w.height = y1.saturating_sub(w.top);
    w
}

/// Adds a word unless the same text was already read at an overlapping
/// place (then the more confident reading is kept).
fn merge(all: &mut Vec<Word>, w: Word) {
    for o in all.iter_mut() {
        if o.text == w.text && overlap(o, &w) > 0.3 {
            if w.confidence > o.confidence {
                *o = w;
            }
            return;
        }
    }
    all.push(w);
}

/// Intersection over union of two words' boxes.
fn overlap(a: &Word, b: &Word) -> f32 {
    let r = |w: &Word| crate::Rect {
        x: w.left,
        y: w.top,
        w: w.width,
        h: w.height,
    };
    r(a).iou(&r(b))
}

/// Bilinear upscaling by an integer factor (smooth edges read better than
/// blocky ones).
fn upscale(img: &GrayImage, s: u32) -> GrayImage {
    let (w, h) = img.dimensions();
    let src = img.as_raw();
    let (sw, sh) = (w * s, h * s);
    let mut out = vec![0u8; (sw * sh) as usize];
    let sf = s as f32;
    for y in 0..sh {
        let fy = ((y as f32 + 0.5) / sf - 0.5).max(0.0);
        let y0 = (fy as u32).min(h - 1);
        let y1 = (y0 + 1).min(h - 1);
        let ty = fy - y0 as f32;
        for x in 0..sw {
            let fx = ((x as f32 + 0.5) / sf - 0.5).max(0.0);
            let x0 = (fx as u32).min(w - 1);
            let x1 = (x0 + 1).min(w - 1);
            let tx = fx - x0 as f32;
            let p = |xx: u32, yy: u32| src[(yy * w + xx) as usize] as f32;
            let top = p(x0, y0) * (1.0 - tx) + p(x1, y0) * tx;
            let bot = p(x0, y1) * (1.0 - tx) + p(x1, y1) * tx;
            out[(y * sw + x) as usize] = (top * (1.0 - ty) + bot * ty).round() as u8;
        }
    }
    GrayImage::from_raw(sw, sh, out).unwrap_or_else(|| img.clone())
}

/// Linear contrast stretch of a crop to the full 0..255 range (from its
/// 1st to 99th percentile): faint text becomes as dark as strong text.
fn stretch(mut img: GrayImage) -> GrayImage {
    let mut hist = [0u32; 256];
    img.iter().for_each(|v| hist[*v as usize] += 1);
    let n = img.len() as u32;
    let (mut lo, mut hi, mut acc) = (0u32, 255u32, 0u32);
    for (v, c) in hist.iter().enumerate() {
        acc += c;
        if acc > n / 100 {
            lo = v as u32;
            break;
        }
    }
    acc = 0;
    for (v, c) in hist.iter().enumerate().rev() {
        acc += c;
        if acc > n / 100 {
            hi = v as u32;
            break;
        }
    }
    if hi <= lo + 2 {
        return img;
    }
    img.iter_mut().for_each(|v| {
        *v = (((*v as u32).clamp(lo, hi) - lo) * 255 / (hi - lo)) as u8;
    });
    img
}

fn invert(mut img: GrayImage) -> GrayImage {
    img.iter_mut().for_each(|v| *v = 255 - *v);
    img
}

/// `a - b`, saturating.
fn sub(a: &GrayImage, b: &GrayImage) -> GrayImage {
    let mut out = a.clone();
    out.iter_mut()
        .zip(b.iter())
        .for_each(|(x, y)| *x = x.saturating_sub(*y));
    out
}

/// Black ink where the top-hat is at least [`INK`] gray levels, white
/// elsewhere. Why not leave thresholding to Tesseract: its global Otsu
/// threshold, pulled by bright anatomy, drops faint text entirely.
fn binarize(th: &GrayImage) -> GrayImage {
    let mut out = th.clone();
    out.iter_mut()
        .for_each(|v| *v = if *v >= INK { 0 } else { 255 });
    out
}

/// Minimum over a k×k square (separable).
fn erode(img: &GrayImage, k: usize) -> GrayImage {
    filter(img, k, u8::min, 255)
}

/// Maximum over a k×k square (separable).
fn dilate(img: &GrayImage, k: usize) -> GrayImage {
    filter(img, k, u8::max, 0)
}

fn filter(img: &GrayImage, k: usize, f: fn(u8, u8) -> u8, init: u8) -> GrayImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let r = k / 2;
    let src = img.as_raw();
    let mut tmp = vec![0u8; w * h];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..w {
            let (a, b) = (x.saturating_sub(r), (x + r + 1).min(w));
            tmp[y * w + x] = row[a..b].iter().copied().fold(init, f);
        }
    }
    let mut out = vec![0u8; w * h];
    for x in 0..w {
        for y in 0..h {
            let (a, b) = (y.saturating_sub(r), (y + r + 1).min(h));
            out[y * w + x] = (a..b).map(|yy| tmp[yy * w + x]).fold(init, f);
        }
    }
    GrayImage::from_raw(w as u32, h as u32, out).unwrap_or_else(|| img.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_words_are_parsed() {
        let tsv = "1\t1\t0\t0\t0\t0\t0\t0\t100\t50\t-1\t\n\
                   5\t1\t1\t1\t1\t1\t10\t20\t30\t12\t91.5\tDOE\n\
                   5\t1\t1\t1\t1\t2\t50\t20\t30\t12\t40\t \n";
        let w = parse_tsv(tsv);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].text, "DOE");
        assert_eq!(
            (w[0].left, w[0].top, w[0].width, w[0].height),
            (10, 20, 30, 12)
        );
        assert!((w[0].confidence - 91.5).abs() < 1e-3);
    }

    #[test]
    fn top_hat_keeps_thin_bright_strokes_only() {
        let mut img = GrayImage::from_pixel(40, 40, image::Luma([100]));
        for y in 5..35 {
            img.put_pixel(20, y, image::Luma([140]));
        }
        let th = sub(&img, &dilate(&erode(&img, TOPHAT), TOPHAT));
        assert_eq!(th.get_pixel(20, 10).0[0], 40);
        assert_eq!(th.get_pixel(5, 10).0[0], 0);
    }
}
