//! `--pixels`: reading what an image shows. Every frame (and every overlay
//! plane) is read by OCR through `veil-pixels`, twice: the whole frame
//! (three passes, [`Ocr::words`]), and each candidate line of the text
//! screens read alone at a readable size ([`Ocr::read_line_polarity`]).
//! Why both: whole-frame OCR loses small, faint or busy-background text
//! (names over colour Doppler, 8 px IDs, low-contrast MRNs: it flagged
//! 47 of the 71 images of the must-show set), and the screens are the
//! pixel stage's, so alone they would be blind where the cleaner is. The
//! words, joined into lines, are matched against the source's tokens and
//! the pattern detectors the same way header text is. OCR misreads digits
//! and letters (`O`/`0`, `I`/`l`/`1`), so each line is also matched in a
//! digit-leaning and a letter-leaning spelling.

use base64::Engine as _;
use veil_io::DicomFile;
use veil_pixels::clean::LineReads;
use veil_pixels::ocr::{Ocr, Word};
use veil_pixels::{FrameReader, GrayImage};

use crate::detect::{detect, TextKind};
use crate::matcher::Matcher;
use crate::scan::mask;
use crate::text::{Place, ReportText};
use crate::{Category, Finding};
use veil_core::Phi;

/// A word box: left, top, width, height.
type Box4 = (u32, u32, u32, u32);

/// A line of words, with each word's character range in the line.
struct Line<'a> {
    text: String,
    words: Vec<(usize, usize, &'a Word)>,
}

fn lines(words: &[Word]) -> Vec<Line<'_>> {
    let mut sorted: Vec<&Word> = words.iter().filter(|w| !w.text.trim().is_empty()).collect();
    sorted.sort_by_key(|w| (w.top + w.height / 2, w.left));
    let mut out: Vec<Line<'_>> = Vec::new();
    let mut rows: Vec<Vec<&Word>> = Vec::new();
    for w in sorted {
        let mid = w.top + w.height / 2;
        match rows.iter_mut().find(|r| {
            let f = r[0];
            let fm = f.top + f.height / 2;
            mid.abs_diff(fm) <= f.height.max(w.height) / 2
        }) {
            Some(r) => r.push(w),
            None => rows.push(vec![w]),
        }
    }
    for mut r in rows {
        r.sort_by_key(|w| w.left);
        let mut line = Line {
            text: String::new(),
            words: Vec::new(),
        };
        for w in r {
            if !line.text.is_empty() {
                line.text.push(' ');
            }
            let s = line.text.len();
            line.text.push_str(w.text.trim());
            line.words.push((s, line.text.len(), w));
        }
        out.push(line);
    }
    out
}

/// OCR spellings: as read, digits where letters were probably digits, and
/// letters where digits were probably letters (same length, so ranges
/// carry over).
fn spellings(s: &str) -> [String; 3] {
    let digits = s
        .chars()
        .map(|c| match c {
            'O' | 'o' | 'D' => '0',
            'I' | 'l' | '|' => '1',
            'S' => '5',
            'B' => '8',
            c => c,
        })
        .collect::<String>();
    let letters = s
        .chars()
        .map(|c| match c {
            '0' => 'O',
            '1' | '|' | 'l' => 'I',
            '5' => 'S',
            '8' => 'B',
            c => c,
        })
        .collect::<String>();
    [
        s.to_uppercase(),
        digits.to_uppercase(),
        letters.to_uppercase(),
    ]
}

/// Reads one image with OCR and reports what it shows. `frames`: read the
/// image frames (else overlays only). `site_local`: keep the masked line
/// around each finding.
pub fn scan_pixels(
    file: &DicomFile,
    rel: &str,
    tokens: Option<&Matcher>,
    patterns: bool,
    ocr: &mut Ocr,
    frames: bool,
    site_local: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut ocr = Ocrs {
        ocr,
        lines: LineReads::default(),
    };
    let seek = Seek {
        rel,
        tokens,
        patterns,
        site_local,
        lossy: false,
    };
    if let Ok(planes) = veil_pixels::overlays(file) {
        for p in planes {
            read(
                &p.image, None, "overlay", p.frame, &seek, &mut ocr, &mut out,
            );
        }
    }
    if !frames || file.dataset.get(veil_core::Tag(0x7FE0, 0x0010)).is_none() {
        return out;
    }
    let Ok(mut reader) = FrameReader::new(file) else {
        return out;
    };
    let seek = Seek {
        lossy: !veil_pixels::clean::holds_exact_values(file),
        ..seek
    };
    for i in 0..reader.frame_count() {
        let Ok(f) = reader.frame(i) else { break };
        read(
            &f.image,
            f.values.as_deref(),
            "pixels",
            f.index,
            &seek,
            &mut ocr,
            &mut out,
        );
    }
    out
}

/// What one image is read for.
#[derive(Clone, Copy)]
struct Seek<'a> {
    rel: &'a str,
    tokens: Option<&'a Matcher>,
    patterns: bool,
    site_local: bool,
    /// The frames went through a lossy codec: the banded screen (faint
    /// text on speckle) proposes lines too.
    lossy: bool,
}

/// The OCR engine, and what it read in the object's screen lines.
struct Ocrs<'o> {
    ocr: &'o mut Ocr,
    lines: LineReads,
}

/// At most this many screen lines are read per image, the best-scored
/// first: a page of text or a noisy frame would otherwise cost minutes.
const SCREEN_LINES: usize = 32;

/// The screens' candidate lines of one image, each read alone (once per
/// object: `reads` keeps what a crop read on an earlier frame).
fn screen_words(
    img: &GrayImage,
    values: Option<&[i32]>,
    lossy: bool,
    ocr: &mut Ocr,
    reads: &mut LineReads,
) -> Vec<Vec<Word>> {
    use veil_pixels::clean::{band, detect};
    let scr = detect::screen_values(img, values);
    let banded = if lossy {
        band::band_lines(img)
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for l in scr
        .lines
        .iter()
        .take(SCREEN_LINES)
        .chain(banded.iter().take(SCREEN_LINES))
    {
        let read = reads.read_with(img, scr.flat_ink.as_ref(), l, |flat| {
            ocr.read_line_polarity(img, (l.x, l.y, l.w, l.h), l.glyph_h, l.bright, flat)
        });
        if let Ok(words) = read {
            if !words.is_empty() {
                out.push(words);
            }
        }
    }
    out
}

fn read(
    img: &GrayImage,
    values: Option<&[i32]>,
    place: &'static str,
    frame: u32,
    seek: &Seek<'_>,
    ocr: &mut Ocrs<'_>,
    out: &mut Vec<Finding>,
) {
    let Seek {
        rel,
        tokens,
        patterns,
        site_local,
        lossy,
    } = *seek;
    let Ok(words) = ocr.ocr.words(img) else {
        return;
    };
    let screened = screen_words(img, values, lossy, ocr.ocr, &mut ocr.lines);
    let place = Place::fixed(place);
    // the findings (thumbnail added below), and the boxes of what they found
    let mut hits: Vec<Finding> = Vec::new();
    let mut all_boxes: Vec<Box4> = Vec::new();
    let read_lines = lines(&words)
        .into_iter()
        .chain(screened.iter().flat_map(|w| lines(w)));
    for line in read_lines {
        let boxes_of = |s: usize, e: usize| -> Vec<Box4> {
            line.words
                .iter()
                .filter(|(ws, we, _)| *ws < e && s < *we)
                .map(|(_, _, w)| (w.left, w.top, w.width, w.height))
                .collect()
        };
        let mut found: Vec<(usize, usize, Category, String)> = Vec::new();
        if let Some(m) = tokens {
            for sp in spellings(&line.text) {
                if sp.len() != line.text.len() {
                    continue;
                }
                for h in m.find(sp.as_bytes()) {
                    let t = &m.tokens()[h.token];
                    // OCR noise forms short words by chance
                    if t.value.expose().chars().count() >= 4 {
                        found.push((h.start, h.end, t.category, "ocr+source-value".into()));
                    }
                }
            }
        }
        if patterns {
            for p in detect(&line.text, TextKind::Text) {
                found.push((p.start, p.end, p.category, format!("ocr+{}", p.detector)));
            }
        }
        let ranges: Vec<_> = found.iter().map(|f| (f.0, f.1, f.2)).collect();
        for (s, e, category, detector) in found {
            all_boxes.extend(boxes_of(s, e));
            let chars = line.text.get(s..e).map_or(e - s, |t| t.chars().count());
            hits.push(Finding {
                file: rel.to_string(),
                excerpt: ReportText::found(category, chars, &place),
                place: place.clone(),
                category,
                detector,
                context: site_local.then(|| Phi::new(mask(&line.text, &ranges, s, e))),
                frame: Some(frame),
                thumbnail: None,
            });
        }
    }
    if hits.is_empty() {
        return;
    }
    let thumb = base64::engine::general_purpose::STANDARD
        .encode(veil_pixels::thumbnail_png(img, 160, &all_boxes));
    let mut seen = std::collections::HashSet::new();
    for mut f in hits {
        if !seen.insert((f.category, f.detector.clone())) {
            continue;
        }
        f.thumbnail = Some(thumb.clone());
        out.push(f);
    }
}
