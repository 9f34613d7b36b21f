//! The pixel stage inside a batch: Clean Pixel Data and Clean Graphics
//! (veil-pixels) run on the source object after the header has been
//! decided, and their result is put into the de-identified data set.
//!
//! Why here and not in veil-deid: the header path links no codecs or OCR
//! and is pure; the pipeline owns both the source (whose pixels and
//! identifying values the stage reads) and the output (whose Pixel Data,
//! Image Pixel attributes, overlay bits and de-identification markers
//! change).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use veil_core::{escape_markup, ProfileOption, Tag};
use veil_deid::{Deidentified, Policy};
use veil_io::{DicomFile, TsInfo};
use veil_pixels::clean::{clean, CleanRequest, Found, TextMode};
use veil_pixels::EncodePolicy;
use veil_rules::RedactAllText;

/// What the pixel stage did to one object, for the site-local report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PixelReport {
    /// "all text" or "matching".
    pub mode: &'static str,
    /// Frames screened.
    pub frames: u32,
    /// Text lines read with OCR.
    pub lines_read: u32,
    /// Boxes redacted (why, where; never the text).
    pub redacted: Vec<Found>,
    /// Transfer syntax changes and other remarks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One row of the review page.
struct PageRow {
    output: String,
    released: bool,
    reason: Option<String>,
    report: PixelReport,
    thumbs: Option<(String, String)>,
}

/// The stage's settings for a batch, and the review page it fills.
pub(crate) struct PixelStage {
    pixel_data: bool,
    graphics: bool,
    mode: TextMode,
    policy: EncodePolicy,
    page: Mutex<Vec<PageRow>>,
    /// Objects handed to the stage (see [`PixelStage::runs`]).
    runs: AtomicUsize,
}

/// What the stage decided for one object.
pub(crate) struct Applied {
    /// The output's transfer syntax when it changed.
    pub ts: Option<TsInfo>,
    /// Review reason, when the object cannot be released.
    pub review: Option<String>,
    /// For the report.
    pub report: PixelReport,
    preview: Option<veil_pixels::clean::Preview>,
}

impl PixelStage {
    /// The stage for a policy, or None when no pixel option is in force.
    pub(crate) fn new(policy: &Policy) -> Option<PixelStage> {
        let pixel_data = policy.options().contains(&ProfileOption::CleanPixelData);
        let graphics = policy.options().contains(&ProfileOption::CleanGraphics);
        if !pixel_data && !graphics {
            return None;
        }
        let pix = &policy.recipe().pixels;
        Some(PixelStage {
            pixel_data,
            graphics,
            mode: match pix.redact_all_text {
                RedactAllText::Always => TextMode::All,
                RedactAllText::Never => TextMode::Matching,
                RedactAllText::Auto => TextMode::Auto,
            },
            policy: EncodePolicy {
                allow_lossy: pix.allow_lossy_recompression,
            },
            page: Mutex::new(Vec::new()),
            runs: AtomicUsize::new(0),
        })
    }

    /// Runs the stage on `file` and applies its result to `d`.
    pub(crate) fn apply(&self, file: &DicomFile, d: &mut Deidentified, policy: &Policy) -> Applied {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let has_pixels = file.dataset.get(Tag(0x7FE0, 0x0010)).is_some();
        let has_overlay = file
            .dataset
            .elements
            .iter()
            .any(|e| e.tag.0 & 0xFF01 == 0x6000 && e.tag.0 <= 0x601E && e.tag.1 == 0x3000);
        let mut applied = Applied {
            ts: None,
            review: None,
            report: PixelReport {
                mode: "",
                frames: 0,
                lines_read: 0,
                redacted: Vec::new(),
                notes: Vec::new(),
            },
            preview: None,
        };
        // nothing this stage reads (no pixels, no overlay plane)
        if !(self.pixel_data && has_pixels || self.graphics && has_overlay) {
            return applied;
        }
        let pix = &policy.recipe().pixels;
        let attrs = crate::attrs::Attrs::new(file);
        let mut rules = pix.rules.evaluate(&attrs);
        if pix.builtin_region_rules {
            let b = veil_rules::regions::RegionRules::builtin().evaluate(&attrs);
            rules.rects.extend(b.rects);
            rules.flagged.extend(b.flagged);
            rules.blacklisted = rules.blacklisted.or(b.blacklisted);
        }
        // deid's blacklist and rules without rectangles say "text may be
        // here, place unknown": instead of giving up on such an object (as
        // deid does), Veil reads every word of it; finding nothing is no
        // reason for review (these rules are catch-alls such as "ImageType
        // missing"), unlike Burned In Annotation YES
        let expected = rules
            .blacklisted
            .iter()
            .chain(&rules.flagged)
            .map(|r| r.label.clone())
            .next();
        let u = |t: u16| {
            file.dataset
                .u16(Tag(0x0028, t), file.ts.big_endian)
                .map_or(0, u32::from)
        };
        let (cols, rows) = (u(0x0011), u(0x0010));
        // each matching rule's rectangle on this image, and whether it
        // fits (see Rect::fits): blanking a rectangle written for another
        // screen layout would cut into the image, so one that does not
        // fit is searched for text instead (and the report says so)
        let (blank, search): (Vec<_>, Vec<_>) = rules
            .rects
            .iter()
            .filter_map(|(r, why)| {
                let c = r.clip(cols, rows)?;
                let rect = veil_pixels::Rect {
                    x: c.x.max(0) as u32,
                    y: c.y.max(0) as u32,
                    w: c.w,
                    h: c.h,
                };
                Some((rect, why.label.clone(), r.fits(cols, rows)))
            })
            .partition(|p| p.2);
        let strip = |v: Vec<(veil_pixels::Rect, String, bool)>| {
            v.into_iter()
                .map(|(r, label, _)| (r, label))
                .collect::<Vec<_>>()
        };
        let (blank, search) = (strip(blank), strip(search));
        let req = CleanRequest {
            pixel_data: self.pixel_data,
            graphics: self.graphics,
            mode: if expected.is_some() && self.mode == TextMode::Auto {
                TextMode::All
            } else {
                self.mode
            },
            identifiers: d.identifiers.clone(),
            rule_rects: blank,
            rule_search: search,
            policy: self.policy,
            preview: true,
        };
        // a defect in a codec or in OCR on one odd object must not stop
        // the batch: the object goes to review instead
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| clean(file, &req)));
        let out = match run {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                applied.review = Some(format!("pixel stage failed: {e}"));
                return applied;
            }
            Err(_) => {
                applied.review = Some("pixel stage failed: internal error".into());
                return applied;
            }
        };
        let mut notes = out.notes.clone();
        for (_, label) in &req.rule_search {
            notes.push(format!(
                "region rule '{label}' does not fit this {cols}x{rows} image (written for another \
                 screen layout): searched for text, every word found there redacted"
            ));
        }
        if let Some(rule) = expected {
            notes.push(format!("every word read: rule '{rule}' expects text"));
        }
        applied.report = PixelReport {
            mode: out.mode_applied.unwrap_or(""),
            frames: out.frames,
            lines_read: out.lines_read,
            redacted: out.found.clone(),
            notes,
        };
        applied.preview = out.preview;
        if let Some(r) = out.review {
            applied.review = Some(r);
            return applied;
        }
        let ds = &mut d.dataset;
        if let Some(enc) = out.pixels {
            enc.apply_to(ds);
            if enc.ts.uid != file.ts.uid {
                applied.ts = Some(enc.ts);
            }
        }
        // Overlay planes leave as E.1-1 says (X: the header engine removes
        // them whole); the stage has read them for text (reported) and for
        // planes hidden in the pixel data's unused bits (review).
        if self.pixel_data && has_pixels {
            veil_deid::mark_pixel_stage(ds, ProfileOption::CleanPixelData);
        }
        applied
    }

    /// How many objects the stage was run on so far. Why it is counted:
    /// the stage is the one costly step (decoding, OCR), and a batch must
    /// run it once per instance, not once per copy (issue 21); the count
    /// lets the report, and a test, show that without timing anything.
    pub(crate) fn runs(&self) -> usize {
        self.runs.load(Ordering::Relaxed)
    }

    /// Remembers an object for the review page (those with redactions or
    /// sent to review by the stage), writing its thumbnails under
    /// `review/.pixel-review/`.
    pub(crate) fn record(&self, review_root: &Path, output: &str, released: bool, a: Applied) {
        if a.report.redacted.is_empty() && a.review.is_none() {
            return;
        }
        let mut thumbs = None;
        if let Some(p) = &a.preview {
            use crate::review::{pixel_review_picture, Picture};
            let dir = review_root.join(".pixel-review");
            let b = pixel_review_picture(output, Picture::Before);
            let f = pixel_review_picture(output, Picture::After);
            let ok = std::fs::create_dir_all(&dir).is_ok()
                && veil_io::atomic::write_all(&review_root.join(&b), &p.before_png).is_ok()
                && veil_io::atomic::write_all(&review_root.join(&f), &p.after_png).is_ok();
            if ok {
                thumbs = Some((b, f));
            }
        }
        let row = PageRow {
            output: output.to_string(),
            released,
            reason: a.review,
            report: a.report,
            thumbs,
        };
        self.page
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(row);
    }

    /// Writes `review/pixel-review.html`: one row per object with its
    /// before/after thumbnails, the boxes and why, for a person to confirm.
    /// It lives in the review folder because the "before" thumbnails show
    /// the burned-in text: it never travels with the output.
    pub(crate) fn write_page(&self, review_root: &Path) -> std::io::Result<()> {
        let mut rows = std::mem::take(&mut *self.page.lock().unwrap_or_else(|e| e.into_inner()));
        if rows.is_empty() {
            return Ok(());
        }
        rows.sort_by(|a, b| a.output.cmp(&b.output));
        let mut h = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Veil pixel review</title>\
             <style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}\
             td,th{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:13px}\
             img{max-width:384px;image-rendering:pixelated}.review{color:#a00}.ok{color:#060}</style>\
             </head><body><h1>Veil pixel review</h1>\
             <p>SITE-LOCAL: the \"before\" thumbnails show burned-in text. Do not release this page.\
             Boxes are outlined on the left and filled on the right.</p>\
             <table><tr><th>object</th><th>status</th><th>before</th><th>after</th><th>boxes</th></tr>",
        );
        for r in &rows {
            let status = match &r.reason {
                Some(why) => format!("<span class=review>review: {}</span>", escape_markup(why)),
                None if r.released => "<span class=ok>released</span>".into(),
                None => "<span class=review>review</span>".into(),
            };
            let (b, a) = match &r.thumbs {
                Some((b, a)) => (
                    format!("<img src=\"{}\" alt=before>", escape_markup(b)),
                    format!("<img src=\"{}\" alt=after>", escape_markup(a)),
                ),
                None => (String::new(), String::new()),
            };
            let mut boxes = format!(
                "mode: {}; {} frame(s), {} line(s) read<br>",
                r.report.mode, r.report.frames, r.report.lines_read
            );
            for f in r.report.redacted.iter().take(40) {
                let frame = f
                    .frame
                    .map_or("all frames".to_string(), |i| format!("frame {i}"));
                let ov = f
                    .overlay
                    .map_or(String::new(), |g| format!(" overlay {g:04X}"));
                boxes.push_str(&format!(
                    "{frame}{ov}: {}x{} at ({},{}) — {}<br>",
                    f.w,
                    f.h,
                    f.x,
                    f.y,
                    escape_markup(&f.why)
                ));
            }
            if r.report.redacted.len() > 40 {
                boxes.push_str(&format!("… {} more<br>", r.report.redacted.len() - 40));
            }
            for n in &r.report.notes {
                boxes.push_str(&format!("note: {}<br>", escape_markup(n)));
            }
            h.push_str(&format!(
                "<tr><td>{}</td><td>{status}</td><td>{b}</td><td>{a}</td><td>{boxes}</td></tr>",
                escape_markup(&r.output)
            ));
        }
        h.push_str("</table></body></html>\n");
        std::fs::create_dir_all(review_root)?;
        veil_io::atomic::write_all(&review_root.join("pixel-review.html"), h.as_bytes())
    }
}
