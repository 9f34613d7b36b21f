//! A screen for lossy frames: text drawn with one value keeps a
//! near-constant level ("banded ink").
//!
//! Why: the flat-ink screen ([`super::flat`]) finds faint text by the
//! exact equality of its letters' stored values, which lossy compression
//! breaks; the top-hat screen ([`super::detect`]) finds it by contrast,
//! which faint text over speckle does not have (a line a few percent of
//! the range above ultrasound speckle stands out from its neighbours by
//! less than the speckle does). What survives the codec is the level: the
//! strokes of such a line stay within a few gray levels of the value they
//! were drawn with, while speckle around them swings by tens. So each band
//! of levels (`L` ± [`HALF`]) is taken as a mask, its connected components
//! that are letter-sized and stroke-shaped are the glyph candidates, and
//! candidates of one band are grouped into lines as the other screens
//! group theirs. Where the letters are darker than a thin band of
//! background (dark text on a gray stripe over a dark region), the band of
//! the background shows the gaps between the letters instead, which line
//! up the same way.
//!
//! Speckle also makes letter-like patches at every level, and rows of
//! them by chance, so only long rows count ([`MIN_GLYPHS`]): a name, an ID
//! or a date has eight characters or more, while chance rows of patches
//! mostly stop short of that.
//!
//! On the must-show set (seed 4) this found the two faint 16 and 24 px
//! IDs on lossy ultrasound that no other screen saw (98.6 -> 99.3 %), on
//! the seed-1 set one such ID, and on the `--full` set two lines (an MRN
//! straddling a colour bar's edge on a 100x100 capture, a name on a
//! lossy cine) that other screens had found short. Its price there is in
//! chance rows over speckle: lossy non-text pixels changed 3.48 -> 3.69 %
//! on the must-show set (docs/pixels.md). Every band is a linear pass
//! (run-based labelling), 64 per frame, so it runs on lossy frames only.

use image::GrayImage;

use super::detect::{components, covered, group_glyphs, Comp, TextLine};

/// Half-width of a band of levels: the codec's spread of a stroke drawn
/// with one value (on the sets' JPEG ultrasound, a 24 px ID's stems keep
/// within ±3 of their value while the speckle beside them spans 35-110).
const HALF: i32 = 4;
/// Bands start every this many levels: each holds whole any stroke whose
/// values stay within ±2 of one level, and half the bands' work of a step
/// of 2 (which found the same lines on the sets, and more chance rows).
const STEP: usize = 4;
/// Fewest glyphs in a line the banded screen reports.
pub(super) const MIN_GLYPHS: u32 = 8;
/// Letter heights the banded screen looks for: the faint text it exists
/// for is 8 to 40 px tall, and patches shorter than 6 px are speckle.
const MIN_H: u32 = 6;
const MAX_H: u32 = 40;
/// Tallest line box kept (a taller row of patches is texture).
const MAX_LINE_H: u32 = 24;
/// Lowest line score kept ([`super::detect`]'s measure).
const MIN_SCORE: f32 = 0.85;

/// Lines of banded ink in an 8-bit frame, best first, none overlapping.
pub fn band_lines(img: &GrayImage) -> Vec<TextLine> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 8 || h < 8 {
        return Vec::new();
    }
    let src = img.as_raw();
    let mut hist = [0usize; 256];
    for &v in src {
        hist[v as usize] += 1;
    }
    let mut found: Vec<TextLine> = Vec::new();
    let mut mask = vec![false; w * h];
    for level in (0..256i32).step_by(STEP) {
        let (lo, hi) = (
            (level - HALF).max(0) as usize,
            (level + HALF).min(255) as usize,
        );
        let n: usize = hist[lo..=hi].iter().sum();
        // a band holding half the frame is its background, not ink
        if n < 20 || 2 * n > w * h {
            continue;
        }
        for (m, &v) in mask.iter_mut().zip(src) {
            *m = (lo..=hi).contains(&(v as usize));
        }
        let glyphs: Vec<Comp> = components(&mask, w, h)
            .into_iter()
            .filter(|c| {
                let (cw, ch) = (c.x1 - c.x0 + 1, c.y1 - c.y0 + 1);
                let area = (cw * ch) as f32;
                (MIN_H..=MAX_H).contains(&ch)
                    && cw <= 2 * ch
                    && c.n >= 6
                    && (c.n as f32) >= 0.15 * area
                    // solid patches are speckle grains, not strokes; a
                    // thin upright bar (I, l, 1) is a letter
                    && ((c.n as f32) <= 0.7 * area || 3 * cw <= ch)
            })
            .collect();
        for mut l in group_glyphs(glyphs, true) {
            if l.glyphs >= MIN_GLYPHS && l.h <= MAX_LINE_H && l.score >= MIN_SCORE {
                l.bright = brighter_than_around(src, w, &l, lo, hi);
                found.push(l);
            }
        }
    }
    // the same line shows in neighbouring bands: the one with the most
    // glyphs stands for it
    found.sort_by(|a, b| b.glyphs.cmp(&a.glyphs).then(b.score.total_cmp(&a.score)));
    let mut kept: Vec<TextLine> = Vec::new();
    for l in found {
        if kept.iter().all(|k| covered(&l, k) == 0.0) {
            kept.push(l);
        }
    }
    kept
}

/// Whether the band's pixels in the line's box are brighter than the
/// others there (OCR reads bright text on dark or dark on bright).
fn brighter_than_around(src: &[u8], w: usize, l: &TextLine, lo: usize, hi: usize) -> bool {
    let (mut sum, mut n) = (0u64, 0u64);
    for y in l.y as usize..(l.y + l.h) as usize {
        for &v in &src[y * w + l.x as usize..y * w + (l.x + l.w) as usize] {
            if !(lo..=hi).contains(&(v as usize)) {
                sum += v as u64;
                n += 1;
            }
        }
    }
    n == 0 || (lo + hi) as u64 * n > 2 * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeros drawn with one value 12 levels above the median of a speckle
    /// that swings by ±50, spread ±2 as a codec would: the banded screen
    /// finds the row; the speckle alone gives none.
    #[test]
    fn a_faint_row_over_speckle_is_found_and_speckle_alone_is_not() {
        let (w, h) = (256u32, 96u32);
        let mut seed: u32 = 12345;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) & 0x7fff
        };
        // speckle: grains of 2x2, 30..130
        let mut base = vec![0u8; (w * h) as usize];
        for y in (0..h).step_by(2) {
            for x in (0..w).step_by(2) {
                let v = 30 + (rnd() % 101) as u8;
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    base[((y + dy) * w + x + dx) as usize] = v;
                }
            }
        }
        let speckle = GrayImage::from_raw(w, h, base.clone()).unwrap();
        assert!(band_lines(&speckle).is_empty(), "lines in speckle alone");
        // ten "zeros" 14 px tall, 8 wide, 2 px strokes: the row is found
        // (its ends may fall short by a letter; the stage pads)
        let mut text = base;
        for d in 0..10u32 {
            let x0 = 20 + d * 13;
            for y in 40..54u32 {
                for x in x0..x0 + 8 {
                    let stroke = !(x0 + 2..x0 + 6).contains(&x) || !(42..52).contains(&y);
                    if stroke {
                        // the codec's spread: ±2 around 92
                        text[(y * w + x) as usize] = 90 + (rnd() % 5) as u8;
                    }
                }
            }
        }
        let img = GrayImage::from_raw(w, h, text).unwrap();
        let lines = band_lines(&img);
        assert!(
            lines
                .iter()
                .any(|l| l.x <= 22 && l.x + l.w >= 130 && l.y <= 42 && l.y + l.h >= 52),
            "{lines:?}"
        );
    }
}
