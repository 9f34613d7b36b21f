//! The pixel-cleaning stage for one object (see the module docs of
//! [`crate::clean`]).

use std::cell::RefCell;

use image::GrayImage;
use veil_core::{Phi, Tag};
use veil_io::DicomFile;

use super::detect::{find, screen_values, text_lines, union, Screen, TextLine};
use super::flat::ISLAND;
use super::matcher::{TextKind, TextMatcher};
use crate::ocr::{Ocr, OcrError, Word};
use crate::{
    black_value, fill_rects, EncodePolicy, Encoded, FrameEncoder, FrameReader, PixelError,
    RawFrame, RawLayout, RawReader, Rect,
};

/// Which text is redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextMode {
    /// "All" for screen-capture-like images (US, SC, XA, RF, ES, OT,
    /// secondary or screen-save image types), "matching" otherwise.
    #[default]
    Auto,
    /// Every line that reads as text.
    All,
    /// Lines matching the object's identifying values or the shapes of
    /// dates and record numbers.
    Matching,
}

/// What to do with one object.
#[derive(Debug, Clone, Default)]
pub struct CleanRequest {
    /// Clean Pixel Data: burned-in text in the frames.
    pub pixel_data: bool,
    /// Clean Graphics: text in overlay planes.
    pub graphics: bool,
    /// Which text is redacted.
    pub mode: TextMode,
    /// The object's own identifying values, read before
    /// de-identification.
    pub identifiers: Vec<Phi<String>>,
    /// Fixed rectangles from region rules that matched this object, with
    /// the rule's label (from the rule file: not PHI), applied to every
    /// frame.
    pub rule_rects: Vec<(Rect, String)>,
    /// Rectangles of matching rules that were written for another screen
    /// layout (they do not fit this image): not blanked, but all text
    /// found in them is redacted, whatever the mode.
    pub rule_search: Vec<(Rect, String)>,
    /// Encoder policy (no lossy re-compression unless the recipe asks).
    pub policy: EncodePolicy,
    /// Render before/after thumbnails for the review page.
    pub preview: bool,
}

/// A redacted box.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Found {
    /// Where: `frame` (None for every frame) and the rectangle.
    pub frame: Option<u32>,
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// Why (a rule label, or what OCR took the text for): never the text.
    pub why: String,
    /// Overlay group, for boxes in an overlay plane.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay: Option<u16>,
}

impl Found {
    fn rect(&self) -> Rect {
        Rect {
            x: self.x,
            y: self.y,
            w: self.w,
            h: self.h,
        }
    }
}

/// Before/after thumbnails of the first frame with redactions.
#[derive(Debug, Clone)]
pub struct Preview {
    /// Frame number.
    pub frame: u32,
    /// PNG of the frame as found, the boxes outlined.
    pub before_png: Vec<u8>,
    /// PNG with the boxes filled.
    pub after_png: Vec<u8>,
}

/// What the stage did to one object.
#[derive(Debug, Default)]
pub struct CleanOutcome {
    /// Boxes redacted (in frames and overlays).
    pub found: Vec<Found>,
    /// New Pixel Data and Image Pixel attributes; None when the pixels
    /// need no change (the output then copies the source bytes).
    pub pixels: Option<Encoded>,
    /// Set when the object must go to review instead of the output.
    pub review: Option<String>,
    /// Remarks for the report (transcoding; no values).
    pub notes: Vec<String>,
    /// Frames screened.
    pub frames: u32,
    /// Candidate lines read with OCR (cache misses).
    pub lines_read: u32,
    /// The mode that was applied.
    pub mode_applied: Option<&'static str>,
    /// Thumbnails for the review page.
    pub preview: Option<Preview>,
}

thread_local! {
    static OCR: RefCell<Option<Result<Ocr, String>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's OCR engine (started on first use: loading
/// the model takes ~0.1 s, so one engine per worker thread is kept).
pub fn with_thread_ocr<T>(f: impl FnOnce(&mut Ocr) -> T) -> Result<T, OcrError> {
    OCR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Ocr::new().map_err(|e| e.to_string()));
        }
        match slot.as_mut() {
            Some(Ok(ocr)) => Ok(f(ocr)),
            _ => Err(OcrError::Init),
        }
    })
}

/// Padding around a detected line (pixels): covers the anti-aliased glyph
/// edges a threshold leaves out.
fn pad_for(h: u32) -> u32 {
    (1 + h / 8).clamp(2, 4)
}

/// Modalities and SOP classes whose images are screens, captures or
/// documents: every word on them is redacted by default.
fn screen_like(file: &DicomFile) -> bool {
    let ds = &file.dataset;
    let modality = ds.ascii(Tag(0x0008, 0x0060)).unwrap_or_default();
    let sop = ds.ascii(Tag(0x0008, 0x0016)).unwrap_or_default();
    let image_type = ds.ascii(Tag(0x0008, 0x0008)).unwrap_or_default();
    matches!(
        modality.as_str(),
        "US" | "IVUS" | "XA" | "RF" | "ES" | "OT" | "SC" | "DOC" | "XC" | "GM" | "SM" | "OP"
    ) || sop.starts_with("1.2.840.10008.5.1.4.1.1.7")
        || sop.starts_with("1.2.840.10008.5.1.4.1.1.6")
        || sop.starts_with("1.2.840.10008.5.1.4.1.1.3")
        || image_type
            .split('\\')
            .any(|t| matches!(t, "SCREEN SAVE" | "SECONDARY CAPTURE" | "SCREEN"))
}

/// Per-object OCR cache (see [`super::LineReads`]).
type Cache = super::LineReads;

/// What OCR reads in one candidate line, from the object's cache when the
/// same crop was read before (an annotation repeated on every frame).
fn read_cached(
    cache: &mut Cache,
    lines_read: &mut u32,
    img: &GrayImage,
    flat_ink: Option<&GrayImage>,
    l: &TextLine,
) -> Result<Vec<Word>, PixelError> {
    cache.read_with(img, flat_ink, l, |flat_ink| {
        *lines_read += 1;
        with_thread_ocr(|ocr| {
            ocr.read_line_polarity(img, (l.x, l.y, l.w, l.h), l.glyph_h, l.bright, flat_ink)
        })
        .map_err(|e| PixelError::Unsupported(e.to_string()))?
        .map_err(|e| PixelError::Unsupported(e.to_string()))
    })
}

/// The box of a redacted screen line, before padding, and its horizontal
/// padding: (x0, y0, x1, y1, padx). `pad` is the vertical padding.
fn line_box(
    l: &TextLine,
    words: &[Word],
    exact: bool,
    scr: &Screen,
    img: &GrayImage,
    pad: u32,
) -> (u32, u32, u32, u32, u32) {
    // the line (for flat ink, exactly its letters) or, for a
    // top-hat line, whose box may take in the anatomy beside
    // the text, the words OCR read in it
    let (mut x0, mut y0, mut x1, mut y1) = (l.x, l.y, l.x + l.w, l.y + l.h);
    if l.ink.is_none() {
        let read: Vec<&Word> = words
            .iter()
            .filter(|wd| {
                wd.confidence >= if exact { SURE } else { 30.0 }
                    && wd.text.chars().any(char::is_alphanumeric)
                    && wd.height <= l.h + l.h / 2
                    && wd.top + l.h / 2 >= l.y
                    && wd.top + wd.height <= l.y + l.h + l.h / 2
            })
            .collect();
        if let (Some(a), Some(b)) = (
            read.iter().map(|wd| wd.left).min(),
            read.iter().map(|wd| wd.left + wd.width).max(),
        ) {
            (x0, x1) = (a.max(l.x.saturating_sub(l.h)), b.min(x1 + l.h));
        }
    }
    let flat = l.ink.is_some();
    // words sticking out of the line (a letter the screen cut
    // off); OCR's boxes around garbage can be huge: not those,
    // nor (in an exact frame) its unsure words. A flat line
    // has its letters already
    for wd in words.iter().filter(|wd| {
        !flat
            && (!exact || wd.confidence >= SURE)
            && wd.height <= l.h + l.h / 2
            && wd.top + l.h / 2 >= l.y
            && wd.top + wd.height <= l.y + l.h + l.h / 2
    }) {
        x0 = x0.min(wd.left);
        y0 = y0.min(wd.top);
        x1 = x1.max(wd.left + wd.width);
        y1 = y1.max(wd.top + wd.height);
    }
    // the rest of the line: letters the screen did not group
    // (in an exact frame, top-hat ink runs on into anatomy:
    // only a couple of letters further)
    let reach = match (exact, flat) {
        (true, false) => 2 * l.glyph_h,
        // small letters break into pieces the line may not
        // have gathered; larger flat letters were all gathered
        // by value, and the top-hat ink beside them is what
        // they lie on (on the must-show set, growing them by
        // two letters changed 0.34 % of the non-text pixels
        // and found no line more)
        (true, true) if l.glyph_h <= 8 => (8 * l.glyph_h).min(40),
        (true, true) => 0,
        // lossy frames: four lines' heights. Their top-hat ink
        // runs on over speckle and texture, and a reach of 12
        // heights drew boxes across the frame (on the
        // must-show set 3.96 % of lossy non-text pixels
        // changed against 3.47 % now, the same lines found,
        // and so on the other seed's set; 2 heights lose one
        // line on each)
        (false, _) => 4 * l.h + 8,
    };
    let (gx, _, gw, _) = scr.grow((x0, y0, x1 - x0, y1 - y0), l.bright, l.h + 2, reach, exact);
    // and, in a lossy frame, over the letters' own level
    // where the background changes under the line
    if !exact {
        let (lx0, lx1) = scr.grow_level(img, l, (x0, x1), reach);
        (x0, x1) = (gx.min(lx0), (gx + gw).max(lx1));
    } else {
        (x0, x1) = (gx, gx + gw);
    }
    // a letter's width more at each end: a first or last
    // character the screen could not separate from its
    // surroundings still goes
    let padx = if flat && exact && l.glyph_h > 8 {
        // flat letters were gathered by value and the grow
        // looked for more: half a letter of margin (small
        // letters break into pieces; they keep a whole one)
        pad.max(l.glyph_h / 2)
    } else {
        pad.max(l.glyph_h)
    };
    (x0, y0, x1, y1, padx)
}

/// The fraction of a line's box that boxes found on its frame cover (the
/// largest over those boxes).
fn covered_by(found: &[Found], l: &TextLine) -> f32 {
    let r = l.rect();
    found
        .iter()
        .map(|f| r.inside_fraction(&f.rect()))
        .fold(0.0, f32::max)
}

/// Tesseract confidence from which a word read on a top-hat line of an
/// exact frame counts (matches, and the words that box the line): OCR
/// reads labels and names into anatomy with less.
const SURE: f32 = 70.0;

/// Decides whether a line is redacted and why. `exact`: the frame holds
/// its stored values as drawn (no lossy compression), so text burned in
/// with one value shows as flat ink ([`TextLine::ink`]).
fn decide(
    l: &TextLine,
    words: &[Word],
    all: bool,
    exact: bool,
    m: &TextMatcher,
) -> Option<&'static str> {
    // flat ink: letters of one value. In an exact frame, islands (letters
    // of several values on a flat background) are judged as top-hat lines
    // are: text there shows as flat ink, and what else lies alone on air
    // (a catheter's cross-section, a table edge) does not
    let flat = l.ink.is_some_and(|v| v != ISLAND || !exact);
    // top-hat blobs of an exact frame are rarely text (text there shows
    // as flat ink), and OCR reads labels and names into them ("MR",
    // "PT"): only its confident words count there
    let sure = flat || !exact;
    let texts: Vec<&str> = words
        .iter()
        .filter(|w| sure || w.confidence >= SURE)
        .map(|w| w.text.as_str())
        .collect();
    if let Some(kind) = m.classify(&texts) {
        return Some(kind.name());
    }
    let alnum = |w: &Word| w.text.chars().filter(|c| c.is_alphanumeric()).count();
    // small flat ink (where OCR fails most) is evidence enough with
    // three letters. A tall row of top-hat shapes is a mosaic of slices
    // or a row of vessels as often as text; letter-shaped plateaus of one
    // value in a row are text at any height
    let text_like = l.h <= if flat { 48 } else { 24 }
        && if flat && l.glyph_h <= 8 {
            l.score >= 0.8 && l.glyphs >= 3
        } else {
            l.score >= 0.85 && l.glyphs >= 4
        };
    if !all {
        // flat ink that OCR cannot read (small letters): it may be a
        // name, and what is not read cannot be judged harmless
        // (half its letters not read with confidence: OCR's confident
        // pair of letters in a line of garbage is no reading of it)
        let read: usize = words
            .iter()
            .filter(|w| w.confidence >= 60.0)
            .map(alnum)
            .sum();
        // (letters counted from the line's width as well: small letters
        // touch, and a 14-letter date of 8 px text can be three glyphs)
        let letters = l.glyphs.max(l.w / l.glyph_h.max(1));
        let unread = 2 * read < letters as usize;
        return (exact && flat && text_like && unread).then_some("unreadable text");
    }
    {
        // a confidently read word; OCR's guesses at speckle and edges
        // ("ee", "aS") come with low confidence. On top-hat blobs of an
        // exact frame (text drawn there would show as flat ink) OCR
        // also reads short confident words into anatomy ("ves"), so more
        // is asked: four or more confidently read letters or digits
        let read = if !flat && exact {
            let confident = words.iter().filter(|w| w.confidence >= 75.0);
            confident.clone().map(alnum).sum::<usize>() >= 4
                && confident.map(alnum).max() >= Some(3)
        } else {
            words.iter().any(|w| w.confidence >= 60.0 && alnum(w) >= 2)
        };
        if read {
            return Some(TextKind::AnyText.name());
        }
        // so text-like that failing to read it is no reason to keep it;
        // only small lines, where OCR fails on real text (a tall "line"
        // OCR cannot read is a row of shapes, such as a mosaic of slices).
        // In an exact frame only lines of flat ink: letters drawn with
        // one value show as such there, and an unreadable row of
        // top-hat blobs is texture, vessels or speckle
        if (flat || !exact) && text_like {
            return Some("unreadable text");
        }
    }
    None
}

/// Finds and redacts text in one object. OCR runs on this thread's engine.
pub fn clean(file: &DicomFile, req: &CleanRequest) -> Result<CleanOutcome, PixelError> {
    let mut out = CleanOutcome::default();
    let matcher = TextMatcher::new(&req.identifiers);
    let all = match req.mode {
        TextMode::All => true,
        TextMode::Matching => false,
        TextMode::Auto => screen_like(file),
    };
    out.mode_applied = Some(if all { "all text" } else { "matching" });
    let burned_yes = file
        .dataset
        .ascii(Tag(0x0028, 0x0301))
        .is_some_and(|v| v.eq_ignore_ascii_case("YES"));
    let mut cache = Cache::default();
    if req.pixel_data && file.dataset.get(Tag(0x7FE0, 0x0010)).is_some() {
        match find_in_frames(file, req, all, &matcher, &mut cache, &mut out) {
            Ok(()) => {}
            Err(PixelError::NoPixelData) => {}
            Err(e) => {
                out.review = Some(format!("pixel data cannot be cleaned: {e}"));
                return Ok(out);
            }
        }
        if out.found.is_empty() && burned_yes {
            out.review = Some("Burned In Annotation is YES but no burned-in text was found".into());
            return Ok(out);
        }

        if !out.found.is_empty() {
            match redact(file, req, &mut out) {
                Ok(()) => {}
                Err(e) => {
                    out.review = Some(format!("pixel data cannot be re-encoded: {e}"));
                    return Ok(out);
                }
            }
        }
    }
    if req.graphics {
        clean_overlays(file, &mut cache, &mut out)?;
    }
    if out.pixels.is_none() && (req.pixel_data || req.graphics) {
        strip_jpeg_metadata(file, &mut out)?;
    }
    Ok(out)
}

/// JPEG family transfer syntaxes, whose streams have marker segments.
const JPEG_FAMILY: &[&str] = &[
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
];

/// Removes COM and APPn segments (names, dates, device text written by
/// modalities and converters) from the JPEG streams of an object whose
/// pixels need no other change, without re-encoding: the entropy-coded
/// data is copied, so decoded pixels are identical
/// ([`crate::jpeg::strip_metadata_segments`]).
fn strip_jpeg_metadata(file: &DicomFile, out: &mut CleanOutcome) -> Result<(), PixelError> {
    if !file.ts.encapsulated || !JPEG_FAMILY.contains(&file.ts.uid.as_str()) {
        return Ok(());
    }
    let fragments = match crate::encapsulated_fragments(file) {
        Ok(f) => f,
        Err(PixelError::NoPixelData) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut changed = 0;
    let stripped: Vec<Vec<u8>> = fragments
        .iter()
        .map(|f| {
            if crate::jpeg::metadata_segments(f)
                .iter()
                .any(|s| s.is_comment() || s.app_number().is_some_and(|n| n != 0 && n != 14))
            {
                changed += 1;
            }
            crate::jpeg::strip_metadata_segments(f)
        })
        .collect();
    if changed == 0 {
        return Ok(());
    }
    let frames = FrameReader::new(file).map(|r| r.frame_count()).unwrap_or(0);
    let one_per_frame = frames as usize == stripped.len();
    let vr = file
        .dataset
        .get(Tag(0x7FE0, 0x0010))
        .map(|e| e.vr)
        .unwrap_or(dicom_core::VR::OB);
    out.pixels = Some(Encoded {
        ts: file.ts.clone(),
        pixel_data: veil_io::Element {
            tag: Tag(0x7FE0, 0x0010),
            vr,
            value: veil_io::Value::EncapsulatedBytes(crate::encode::item_stream(
                &stripped,
                one_per_frame,
            )),
        },
        header: Vec::new(),
        transcoded: None,
        // offsets into the old fragments are wrong now
        remove: vec![Tag(0x7FE0, 0x0001), Tag(0x7FE0, 0x0002)],
    });
    out.notes.push(format!(
        "JPEG comment/application segments removed from {changed} fragment(s), image data copied"
    ));
    Ok(())
}

/// Screens and reads every frame; fills `out.found`.
fn find_in_frames(
    file: &DicomFile,
    req: &CleanRequest,
    all: bool,
    matcher: &TextMatcher,
    cache: &mut Cache,
    out: &mut CleanOutcome,
) -> Result<(), PixelError> {
    let mut reader = FrameReader::new(file)?;
    let (w, h) = reader.size();
    let exact = super::holds_exact_values(file);
    for (r, label) in &req.rule_rects {
        let x = r.x.min(w);
        let y = r.y.min(h);
        let rw = r.w.min(w - x);
        let rh = r.h.min(h - y);
        if rw > 0 && rh > 0 {
            out.found.push(Found {
                frame: None,
                x,
                y,
                w: rw,
                h: rh,
                why: format!("region rule: {label}"),
                overlay: None,
            });
        }
    }
    let mut preview_frame: Option<(u32, GrayImage)> = None;
    for i in 0..reader.frame_count() {
        let frame = reader.frame(i)?;
        out.frames += 1;
        let before = out.found.len();
        let scr = screen_values(&frame.image, frame.values.as_deref());
        // lossy frames: the banded screen's long rows of near-constant
        // level too (faint text over speckle, see [`super::band`])
        let banded = if exact {
            Vec::new()
        } else {
            super::band::band_lines(&frame.image)
        };
        let lines = scr.lines.iter().map(|l| (*l, false));
        for (l, banded) in lines.chain(banded.into_iter().map(|l| (l, true))) {
            // a banded row where a box of this frame already is: that
            // text is taken care of
            if banded && covered_by(&out.found[before..], &l) >= 0.9 {
                continue;
            }
            let mut words = read_cached(
                cache,
                &mut out.lines_read,
                &frame.image,
                scr.flat_ink.as_ref(),
                &l,
            )?;
            // in a lossy frame, letters drawn with one value keep it only
            // in part (the codec spreads it over neighbouring values), and
            // those pixels alone can be unreadable where the whole
            // letters read well (a 28 px date on a lossy CR: 3 pieces of
            // 1023 among 1021-1025): read the image there too
            if !exact && l.ink.is_some_and(|v| v != ISLAND) {
                words.extend(read_cached(
                    cache,
                    &mut out.lines_read,
                    &frame.image,
                    None,
                    &l,
                )?);
            }
            let line = l.rect();
            let in_rule = req.rule_search.iter().any(|(r, _)| r.overlaps(&line));
            if let Some(why) = decide(&l, &words, all || in_rule, exact, matcher) {
                let pad = pad_for(l.h);
                let (x0, y0, x1, y1, padx) = if banded {
                    // its glyphs are where the letters are: no growing
                    // over speckle that merely shares their level
                    (l.x, l.y, l.x + l.w, l.y + l.h, pad)
                } else {
                    line_box(&l, &words, exact, &scr, &frame.image, pad)
                };
                let x0 = x0.saturating_sub(padx);
                let y0 = y0.saturating_sub(pad);
                let x1 = (x1 + padx).min(w);
                let y1 = (y1 + pad).min(h);
                out.found.push(Found {
                    frame: Some(i),
                    x: x0,
                    y: y0,
                    w: x1 - x0,
                    h: y1 - y0,
                    why: if banded {
                        format!("ocr: {why} (banded)")
                    } else {
                        format!("ocr: {why}")
                    },
                    overlay: None,
                });
            }
        }
        if req.preview && preview_frame.is_none() && (out.found.len() > before || i == 0) {
            preview_frame = Some((i, frame.image.clone()));
        }
    }
    persist(&mut out.found, reader.frame_count());
    if let Some((i, img)) = preview_frame.filter(|_| !out.found.is_empty()) {
        let rects: Vec<(u32, u32, u32, u32)> = out
            .found
            .iter()
            .filter(|f| f.frame.is_none() || f.frame == Some(i))
            .map(|f| (f.x, f.y, f.w, f.h))
            .collect();
        out.preview = Some(Preview {
            frame: i,
            before_png: crate::thumbnail_png(&outlined(&img, &rects), 384, &[]),
            after_png: crate::thumbnail_png(&filled(&img, &rects), 384, &[]),
        });
    }
    Ok(())
}

/// Text found at one place in many frames of a multi-frame object is
/// taken to be burned into all of them: what boxes of enough of those
/// frames cover is also redacted in every frame (each frame keeps its own
/// boxes). Why: a cine's annotations do not move, while what the screen
/// and OCR make of them changes with the speckle and the codec's ripples
/// from frame to frame: a line found whole in most frames is found short,
/// or not at all, in a few, and one frame that still shows it is enough
/// to read it. Boxes are taken for the same text where their rows overlap
/// by half the lower box and their columns touch; a place counts when
/// boxes of at least half the frames (and two) are there, so text drawn
/// on a few frames (or speckle taken for text now and then) stays on its
/// own frames. (A quarter of the frames tripled the changed non-text
/// pixels of the full set's lossy ultrasound cines, where false boxes
/// over slowly moving speckle recur.)
fn persist(found: &mut Vec<Found>, frames: u32) {
    if frames < 3 {
        return;
    }
    // per-frame boxes, top to bottom: two boxes can share rows only while
    // the lower one starts above the upper one's end
    let mut at: Vec<usize> = (0..found.len())
        .filter(|&i| found[i].frame.is_some() && found[i].overlay.is_none())
        .collect();
    at.sort_by_key(|&i| found[i].y);
    let same = |a: &Found, b: &Found| {
        let rows = (a.y + a.h).min(b.y + b.h).saturating_sub(a.y.max(b.y));
        a.x <= b.x + b.w && b.x <= a.x + a.w && 2 * rows >= a.h.min(b.h)
    };
    // places: boxes joined while any two of them are the same text
    let mut root: Vec<u32> = (0..at.len() as u32).collect();
    for a in 0..at.len() {
        let fa = &found[at[a]];
        for b in a + 1..at.len() {
            let fb = &found[at[b]];
            if fb.y >= fa.y + fa.h {
                break;
            }
            if same(fa, fb) {
                union(&mut root, a as u32, b as u32);
            }
        }
    }
    // (ordered: the boxes are reported in a stable order)
    let mut places: std::collections::BTreeMap<u32, Vec<&Found>> = Default::default();
    for (k, &i) in at.iter().enumerate() {
        let r = find(&mut root, k as u32);
        places.entry(r).or_default().push(&found[i]);
    }
    let need = (frames / 2).max(2) as usize;
    let mut merged = Vec::new();
    for members in places.values() {
        let mut seen: Vec<u32> = members.iter().filter_map(|f| f.frame).collect();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() < need {
            continue;
        }
        // the part of the place that boxes of enough frames cover (a
        // frame counted once): a box stretched once over speckle beside
        // the text, or a chain of boxes that touch, adds nothing
        let (x0, y0, x1, y1) =
            members
                .iter()
                .fold((u32::MAX, u32::MAX, 0, 0), |(x0, y0, x1, y1), f| {
                    (
                        x0.min(f.x),
                        y0.min(f.y),
                        x1.max(f.x + f.w),
                        y1.max(f.y + f.h),
                    )
                });
        let (rw, rh) = ((x1 - x0) as usize, (y1 - y0) as usize);
        let mut count = vec![0u32; rw * rh];
        let mut last = vec![u32::MAX; rw * rh];
        for f in members {
            let Some(fr) = f.frame else { continue };
            for y in (f.y - y0) as usize..(f.y + f.h - y0) as usize {
                for k in y * rw + (f.x - x0) as usize..y * rw + (f.x + f.w - x0) as usize {
                    if last[k] != fr {
                        last[k] = fr;
                        count[k] += 1;
                    }
                }
            }
        }
        let (mut bx0, mut by0, mut bx1, mut by1) = (usize::MAX, usize::MAX, 0, 0);
        for (k, &c) in count.iter().enumerate() {
            if c as usize >= need {
                let (x, y) = (k % rw, k / rw);
                (bx0, by0) = (bx0.min(x), by0.min(y));
                (bx1, by1) = (bx1.max(x + 1), by1.max(y + 1));
            }
        }
        if bx0 >= bx1 {
            continue;
        }
        merged.push(Found {
            frame: None,
            x: x0 + bx0 as u32,
            y: y0 + by0 as u32,
            w: (bx1 - bx0) as u32,
            h: (by1 - by0) as u32,
            why: format!(
                "{} (in {} of {frames} frames: all frames)",
                members[0].why,
                seen.len()
            ),
            overlay: None,
        });
    }
    found.extend(merged);
}

/// A copy of `img` with each rectangle filled with the median of the ring
/// around it: what the output shows (the stored samples are filled the
/// same way, see [`fill_for`]).
fn filled(img: &GrayImage, rects: &[(u32, u32, u32, u32)]) -> GrayImage {
    let mut img = img.clone();
    let (w, h) = img.dimensions();
    for &(x, y, rw, rh) in rects {
        let (x0, y0) = (x as i64 - 1, y as i64 - 1);
        let (x1, y1) = ((x + rw) as i64, (y + rh) as i64);
        let mut ring: Vec<u8> = Vec::new();
        for yy in y0..=y1 {
            for xx in x0..=x1 {
                let edge = yy == y0 || yy == y1 || xx == x0 || xx == x1;
                if edge && xx >= 0 && yy >= 0 && xx < w as i64 && yy < h as i64 {
                    ring.push(img.get_pixel(xx as u32, yy as u32).0[0]);
                }
            }
        }
        ring.sort_unstable();
        let v = ring.get(ring.len() / 2).copied().unwrap_or(0);
        for yy in y..(y + rh).min(h) {
            for xx in x..(x + rw).min(w) {
                img.put_pixel(xx, yy, image::Luma([v]));
            }
        }
    }
    img
}

/// A copy of `img` with the rectangles outlined (for the review page).
fn outlined(img: &GrayImage, rects: &[(u32, u32, u32, u32)]) -> GrayImage {
    let mut img = img.clone();
    let (w, h) = img.dimensions();
    for &(x, y, rw, rh) in rects {
        let (x1, y1) = (
            (x + rw).min(w).saturating_sub(1),
            (y + rh).min(h).saturating_sub(1),
        );
        for xx in x.min(w.saturating_sub(1))..=x1 {
            for yy in [y.min(h.saturating_sub(1)), y1] {
                img.put_pixel(
                    xx,
                    yy,
                    image::Luma([if (xx / 3) % 2 == 0 { 255 } else { 0 }]),
                );
            }
        }
        for yy in y.min(h.saturating_sub(1))..=y1 {
            for xx in [x.min(w.saturating_sub(1)), x1] {
                img.put_pixel(
                    xx,
                    yy,
                    image::Luma([if (yy / 3) % 2 == 0 { 255 } else { 0 }]),
                );
            }
        }
    }
    img
}

/// Redacts the stored samples of every frame and encodes them again.
fn redact(file: &DicomFile, req: &CleanRequest, out: &mut CleanOutcome) -> Result<(), PixelError> {
    let mut reader = RawReader::new(file)?;
    let layout = reader.layout().clone();
    let mut enc = FrameEncoder::new(&layout, &file.ts, req.policy)?;
    let every: Vec<Rect> = out
        .found
        .iter()
        .filter(|f| f.frame.is_none() && f.overlay.is_none())
        .map(Found::rect)
        .collect();
    for i in 0..reader.frame_count() {
        let mut frame = reader.frame(i)?;
        let mut rects = every.clone();
        rects.extend(
            out.found
                .iter()
                .filter(|f| f.frame == Some(i) && f.overlay.is_none())
                .map(Found::rect),
        );
        for r in &rects {
            let fill = fill_for(&layout, &frame, r);
            // row by row: a row whose background is one value keeps it
            // (see row_background), the others take the box's fill
            let rows: Vec<(Rect, Vec<u16>)> = (r.y..(r.y + r.h).min(layout.rows))
                .map(|y| {
                    let row = Rect { y, h: 1, ..*r };
                    let f = row_background(&layout, &frame, &row).unwrap_or_else(|| fill.clone());
                    (row, f)
                })
                .collect();
            for (row, f) in rows {
                fill_rects(&layout, &mut frame, std::slice::from_ref(&row), &f);
            }
        }
        enc.push(&frame)?;
    }
    let encoded = enc.finish()?;
    if let Some(t) = &encoded.transcoded {
        out.notes.push(t.clone());
    }
    out.pixels = Some(encoded);
    Ok(())
}

/// The fill for one box. Where the box's own edge is mostly one value
/// (text on a flat background: the black band of an ultrasound screen,
/// the air around a CT), that value: the background then keeps its exact
/// samples and only the text changes. Otherwise, per sample, the median
/// of the pixels on the ring just outside it (the background the text sat
/// on), so that the box adds no edge of its own and text darker than its
/// background disappears as surely as brighter text. Palette images take
/// the most common index over the box and its ring instead (a median of
/// palette indices means nothing); subsampled YBR images without a flat
/// edge take the black value (nor does a median of chroma pairs).
fn fill_for(layout: &RawLayout, frame: &RawFrame, r: &Rect) -> Vec<u16> {
    if layout.subsampled() {
        return black_value(layout, frame);
    }
    let (cols, rows) = (layout.cols as i64, layout.rows as i64);
    let spp = layout.spp as usize;
    let bps = layout.bytes_per_sample();
    let get = |x: i64, y: i64, c: usize| {
        crate::raw::get(&frame.data, ((y * cols + x) as usize) * spp + c, bps)
    };
    if let Some(bg) = edge_mode(layout, frame, r) {
        return bg;
    }
    let (x0, y0) = (r.x as i64 - 1, r.y as i64 - 1);
    let (x1, y1) = (r.x as i64 + r.w as i64, r.y as i64 + r.h as i64);
    let mut ring = Vec::new();
    for x in x0..=x1 {
        ring.push((x, y0));
        ring.push((x, y1));
    }
    for y in y0 + 1..y1 {
        ring.push((x0, y));
        ring.push((x1, y));
    }
    ring.retain(|&(x, y)| x >= 0 && y >= 0 && x < cols && y < rows);
    if ring.is_empty() {
        return black_value(layout, frame);
    }
    if layout.photometric == "PALETTE COLOR" {
        // the commonest colour of the box and its ring: the background
        // the letters lie on. Not black (often the letters' own colour),
        // nor the ring's alone: black letters on a grey band with black
        // below and beside it took black, and the letters' top row stood
        // out from the band above the fill (c248 of the benchmark set)
        let inside = (r.y..(r.y + r.h).min(layout.rows))
            .flat_map(|y| (r.x..(r.x + r.w).min(layout.cols)).map(move |x| (x as i64, y as i64)));
        let counts = super::tally(
            ring.iter()
                .copied()
                .chain(inside)
                .map(|(x, y)| get(x, y, 0)),
        );
        return counts
            .first()
            .map_or_else(|| black_value(layout, frame), |c| vec![c.1]);
    }
    (0..spp)
        .map(|c| {
            let mut v: Vec<i64> = ring
                .iter()
                .map(|&(x, y)| signed(layout, get(x, y, c)))
                .collect();
            v.sort_unstable();
            let m = v[v.len() / 2];
            unsigned(layout, m)
        })
        .collect()
}

/// The background of one row of a box, when it is one value: the value
/// at both ends of the row (the box's padding) that also holds at least
/// 60 % of the row. Text on a band of uniform colour above black (an
/// ultrasound header) then leaves both the band and the black as they
/// were, and the letters, fewer than the background on any row that
/// meets these conditions, take the background's value.
fn row_background(layout: &RawLayout, frame: &RawFrame, r: &Rect) -> Option<Vec<u16>> {
    let x1 = (r.x + r.w).min(layout.cols) as usize;
    let (x0, y) = (r.x as usize, r.y as usize);
    if layout.subsampled() || x1 <= x0 + 2 {
        return None;
    }
    let first = frame.pixel_bytes(layout, x0, y);
    if frame.pixel_bytes(layout, x1 - 1, y) != first {
        return None;
    }
    let same = (x0..x1)
        .filter(|&x| frame.pixel_bytes(layout, x, y) == first)
        .count();
    (10 * same >= 6 * (x1 - x0)).then(|| crate::raw::samples_of(first, layout.bytes_per_sample()))
}

/// The value (all samples of a pixel) held by at least half of the
/// pixels on a box's inner edge, if one is.
fn edge_mode(layout: &RawLayout, frame: &RawFrame, r: &Rect) -> Option<Vec<u16>> {
    let (x0, y0) = (r.x as usize, r.y as usize);
    let x1 = (r.x + r.w).min(layout.cols) as usize;
    let y1 = (r.y + r.h).min(layout.rows) as usize;
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let (x1, y1) = (x1 - 1, y1 - 1);
    let at = |x: usize, y: usize| frame.pixel_bytes(layout, x, y);
    let mut edge: Vec<&[u8]> = Vec::new();
    for x in x0..=x1 {
        edge.push(at(x, y0));
        if y1 > y0 {
            edge.push(at(x, y1));
        }
    }
    for y in y0 + 1..y1 {
        edge.push(at(x0, y));
        if x1 > x0 {
            edge.push(at(x1, y));
        }
    }
    let n = edge.len();
    let (count, value) = *super::tally(edge).first()?;
    (2 * count >= n).then(|| crate::raw::samples_of(value, layout.bytes_per_sample()))
}

/// A stored word as the value it stands for (sign and Bits Stored), so
/// that medians order correctly for signed images.
fn signed(l: &RawLayout, w: u16) -> i64 {
    if !l.signed || l.spp != 1 {
        return w as i64;
    }
    let shift = (l.high_bit + 1).saturating_sub(l.bits_stored) as u32;
    let bits = l.bits_stored.clamp(1, 16) as u32;
    let v = (w as i64 >> shift) & ((1i64 << bits) - 1);
    if (v >> (bits - 1)) & 1 == 1 {
        v - (1i64 << bits)
    } else {
        v
    }
}

fn unsigned(l: &RawLayout, v: i64) -> u16 {
    if !l.signed || l.spp != 1 {
        return v as u16;
    }
    let shift = (l.high_bit + 1).saturating_sub(l.bits_stored) as u32;
    let bits = l.bits_stored.clamp(1, 16) as u32;
    (((v & ((1i64 << bits) - 1)) << shift) as u64 & 0xFFFF) as u16
}

/// Reads the text in every overlay plane and reports its lines (the
/// planes themselves leave as Table E.1-1 says: removed whole by the
/// header engine); a plane stored in the pixel data's unused bits sends
/// the object to review, since removing the attributes does not remove it.
fn clean_overlays(
    file: &DicomFile,
    cache: &mut Cache,
    out: &mut CleanOutcome,
) -> Result<(), PixelError> {
    let planes = match crate::overlays(file) {
        Ok(p) => p,
        Err(e) => {
            out.review = Some(format!("overlay planes cannot be read: {e}"));
            return Ok(());
        }
    };
    if planes.iter().any(|p| p.embedded) {
        out.review = Some("an overlay plane is stored in the pixel data's unused bits".into());
        return Ok(());
    }
    let matcher = TextMatcher::new(&[]);
    for p in &planes {
        for l in text_lines(&p.image) {
            let words = read_cached(cache, &mut out.lines_read, &p.image, None, &l)?;
            // overlays are annotation by nature: any text counts
            if let Some(why) = decide(&l, &words, true, false, &matcher) {
                let pad = pad_for(l.h);
                let (x0, y0) = (l.x.saturating_sub(pad), l.y.saturating_sub(pad));
                let x1 = (l.x + l.w + pad).min(p.image.width());
                let y1 = (l.y + l.h + pad).min(p.image.height());
                out.found.push(Found {
                    frame: Some(p.frame),
                    x: x0,
                    y: y0,
                    w: x1 - x0,
                    h: y1 - y0,
                    why: format!("ocr in overlay: {why}"),
                    overlay: Some(p.group),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(frame: u32, x: u32, y: u32, w: u32, h: u32) -> Found {
        Found {
            frame: Some(frame),
            x,
            y,
            w,
            h,
            why: "ocr: text".into(),
            overlay: None,
        }
    }

    #[test]
    fn text_found_in_most_frames_of_a_cine_is_redacted_in_all() {
        // a name found in 6 of 8 frames, once stretched far over the
        // speckle beside it; a line found on 2 frames only
        let mut f: Vec<Found> = (0..6).map(|i| found(i, 10 + i % 2, 20, 50, 12)).collect();
        f.push(found(6, 10, 21, 200, 12));
        f.push(found(2, 100, 300, 40, 10));
        f.push(found(5, 102, 301, 40, 10));
        let before = f.len();
        persist(&mut f, 8);
        assert_eq!(
            f.len(),
            before + 1,
            "each frame keeps its boxes, one is added"
        );
        let all: Vec<&Found> = f.iter().filter(|b| b.frame.is_none()).collect();
        assert_eq!(all.len(), 1);
        // covered by at least 4 frames' boxes: columns 10..61 (three
        // boxes and the stretched one each), rows 20..32 (row 32 only by
        // the stretched one)
        let b = all[0];
        assert_eq!((b.x, b.y, b.x + b.w, b.y + b.h), (10, 20, 61, 32));
        assert!(b.why.contains("7 of 8 frames"), "{}", b.why);
        // two or fewer frames: nothing is added
        let mut two = vec![found(0, 5, 5, 20, 8), found(1, 5, 5, 20, 8)];
        persist(&mut two, 8);
        assert!(two.iter().all(|b| b.frame.is_some()));
    }

    #[test]
    fn a_palette_box_takes_the_commonest_index_of_box_and_ring() {
        // 8-bit palette: black letters (index 0) on a grey band (7), black
        // below and beside the box; the band's border with the letters
        // holds no one value. The ring alone is mostly black; the fill is
        // the band the letters sat on, not their own black
        let (cols, rows) = (40u32, 20u32);
        let lut: Vec<u8> = (0..=255).collect();
        let layout = RawLayout {
            rows,
            cols,
            spp: 1,
            bits_alloc: 8,
            bits_stored: 8,
            high_bit: 7,
            signed: false,
            photometric: "PALETTE COLOR".into(),
            planar_in_source: false,
            palette: Some(([lut.clone(), lut.clone(), lut], 0)),
        };
        let r = Rect {
            x: 10,
            y: 5,
            w: 20,
            h: 11,
        };
        let data: Vec<u8> = (0..rows * cols)
            .map(|i| {
                let (x, y) = (i % cols, i / cols);
                let inside = r.x <= x && x < r.x + r.w && r.y <= y && y < r.y + r.h;
                let edge = x == r.x || x == r.x + r.w - 1 || y == r.y || y == r.y + r.h - 1;
                // the edge: band, letters and a third colour (a caliper
                // mark) in 2:2:1; the rest of the box: band 2, letters 1
                if y < r.y || (inside && !edge && (x + y) % 3 != 0) {
                    7
                } else if inside && edge {
                    [7, 7, 0, 0, 3][((x + y) % 5) as usize]
                } else {
                    0
                }
            })
            .collect();
        let frame = RawFrame { index: 0, data };
        assert_eq!(edge_mode(&layout, &frame, &r), None);
        assert_eq!(fill_for(&layout, &frame, &r), vec![7]);
    }
}
