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
