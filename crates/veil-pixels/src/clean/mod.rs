//! Clean Pixel Data and Clean Graphics (PS3.15 E.3.1, E.3.2): find text
//! burned into the frames and overlay planes of one object, and redact it
//! on every frame, keeping the transfer syntax where Veil can.
//!
//! The path for one object:
//! 1. **screen** every frame with [`detect::text_lines`] (a few ms per
//!    frame): candidate lines of text, bright or dark, at any contrast;
//!    and a lossy frame also with [`band::band_lines`] (long rows of
//!    near-constant level: faint text over speckle);
//! 2. **read** each candidate line with OCR ([`crate::ocr::Ocr::read_line`],
//!    contrast-stretched, enlarged), caching by the crop's pixels so that
//!    the same annotation on 200 frames of a cine loop is read once;
//! 3. **decide** per line: in "redact all text" mode (the default for
//!    ultrasound, secondary capture, XA and other screen-capture-like
//!    images) every line that reads as text, or that looks like text so
//!    strongly that not reading it is itself a warning; otherwise the
//!    lines whose words match the object's own identifying values or the
//!    shapes of dates and record numbers ([`matcher::TextMatcher`]);
//!    region rules (CTP, pydicom/deid, the recipe) add fixed rectangles;
//! 4. **redact** the stored samples ([`crate::RawReader`],
//!    [`crate::fill_rects`]) of each frame in the boxes found on that frame
//!    (rule rectangles on all frames), filled with the level around the box,
//!    and **encode** every frame back ([`crate::FrameEncoder`]).
//!
//! An object that cannot be cleaned with confidence (undecodable pixels,
//! BurnedInAnnotation YES with nothing found, an overlay embedded in the
//! pixel data) comes back with a review reason and is never released.

pub mod band;
pub mod detect;
mod flat;
pub mod matcher;
#[cfg(feature = "ocr")]
mod stage;

#[cfg(feature = "ocr")]
pub use stage::{clean, with_thread_ocr, CleanOutcome, CleanRequest, Found, Preview, TextMode};

/// Whether an object's frames hold their values as drawn: no lossy
/// transfer syntax, and no lossy compression in its history (Lossy Image
/// Compression "01"). Text burned in with one value shows as flat ink
/// there ([`detect::TextLine::ink`]); in the other frames the codec has
/// spread it, and the banded screen ([`band`]) looks for it instead.
pub fn holds_exact_values(file: &veil_io::DicomFile) -> bool {
    crate::encode::lossy_method(&file.ts.uid).is_none()
        && file
            .dataset
            .ascii(veil_core::Tag(0x0028, 0x2110))
            .as_deref()
            != Some("01")
}

/// What OCR read in the candidate lines of one object, by the crop's
/// pixels: an annotation repeated on every frame of a cine is read once.
/// Shared by the pixel stage and `veil verify --pixels`.
#[cfg(feature = "ocr")]
#[derive(Debug, Default)]
pub struct LineReads {
    cache: std::collections::HashMap<u64, Vec<crate::ocr::Word>>,
}

#[cfg(feature = "ocr")]
impl LineReads {
    /// The words of line `l` of `img` (with `flat_ink` when the line was
    /// found by the flat-ink screen): from the cache when the same crop
    /// was read before, else from `ocr`, which is given the flat ink to
    /// use (none unless the line has one value).
    pub fn read_with<E>(
        &mut self,
        img: &image::GrayImage,
        flat_ink: Option<&image::GrayImage>,
        l: &detect::TextLine,
        ocr: impl FnOnce(Option<&image::GrayImage>) -> Result<Vec<crate::ocr::Word>, E>,
    ) -> Result<Vec<crate::ocr::Word>, E> {
        let flat_ink = flat_ink.filter(|_| l.ink.is_some());
        let key = crop_key(img, flat_ink, l);
        if let Some(w) = self.cache.get(&key) {
            return Ok(w.clone());
        }
        let words = ocr(flat_ink)?;
        self.cache.insert(key, words.clone());
        Ok(words)
    }
}

/// A hash of the line's box size, polarity and ink, and the pixels under
/// it (and under the flat ink).
#[cfg(feature = "ocr")]
fn crop_key(
    img: &image::GrayImage,
    flat_ink: Option<&image::GrayImage>,
    l: &detect::TextLine,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (l.w, l.h, l.bright, l.ink).hash(&mut h);
    for img in std::iter::once(img).chain(flat_ink) {
        let (x1, y1) = ((l.x + l.w).min(img.width()), (l.y + l.h).min(img.height()));
        for y in l.y..y1 {
            let row = &img.as_raw()[(y * img.width()) as usize..((y + 1) * img.width()) as usize];
            row[l.x as usize..x1 as usize].hash(&mut h);
        }
    }
    h.finish()
}

/// The distinct values of `items` with how often each occurs, the
/// commonest first (equally common ones in ascending order). The screens
/// and the fill ask the same question of pixels: which value do the ink
/// of a line, the edge of a box or the box with its ring mostly hold.
fn tally<T: Ord>(items: impl IntoIterator<Item = T>) -> Vec<(usize, T)> {
    let mut sorted: Vec<T> = items.into_iter().collect();
    sorted.sort_unstable();
    let mut counts: Vec<(usize, T)> = Vec::new();
    for x in sorted {
        match counts.last_mut() {
            Some((n, y)) if *y == x => *n += 1,
            _ => counts.push((1, x)),
        }
    }
    // stable: equal counts keep the ascending order of their values
    counts.sort_by_key(|c| std::cmp::Reverse(c.0));
    counts
}

#[cfg(test)]
mod tests {
    #[test]
    fn tally_puts_the_commonest_first_and_ties_in_value_order() {
        assert_eq!(
            super::tally([5, 3, 5, 9, 3, 1, 5]),
            vec![(3, 5), (2, 3), (1, 1), (1, 9)]
        );
        assert!(super::tally(Vec::<u8>::new()).is_empty());
    }
}
