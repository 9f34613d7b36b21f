//! A fast detector of text lines in a frame: the screen that decides which
//! frames (and which parts of them) are worth reading with OCR.
//!
//! Why connected components of a top-hat: burned-in annotations are thin
//! strokes that stand out from their immediate surroundings, bright on
//! dark or dark on bright, at every contrast. A morphological top-hat
//! (the frame minus its opening, or its closing minus the frame) keeps
//! exactly the structures narrower than the structuring element, whatever
//! the background level under them, so low-contrast text on a flat area
//! survives while smooth anatomy does not. Thresholding it against the
//! local noise (per tile) and grouping the components into rows of
//! similar-height, baseline-aligned glyphs separates text from the
//! vessels, noise and edges that also survive a top-hat. Everything is
//! linear in the number of pixels (van Herk/Gil-Werman min/max filters,
//! run-based labelling), so the screen costs a few milliseconds per
//! 512x512 frame.

use image::GrayImage;

/// A candidate line of text, in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextLine {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// Glyph-like components in the line.
    pub glyphs: u32,
    /// Median height of those components: the letters' size, which the
    /// line box may exceed.
    pub glyph_h: u32,
    /// How text-like the line is, 0..1 (glyph count, height consistency,
    /// baseline alignment, regular spacing).
    pub score: f32,
    /// Bright text on a darker background (else dark on bright).
    pub bright: bool,
    /// The one value every letter of the line is drawn with, for a line
    /// found by the flat-ink screen ([`super::flat`]); OCR then reads
    /// exactly those pixels ([`Screen::flat_ink`]).
    pub ink: Option<i32>,
}

impl TextLine {
    /// The line's box.
    pub fn rect(&self) -> crate::Rect {
        crate::Rect {
            x: self.x,
            y: self.y,
            w: self.w,
            h: self.h,
        }
    }
}

/// Side of the structuring square: wider than the strokes of the largest
/// text Veil looks for (40 px text has strokes of about 5 px).
const K: usize = 15;
/// Weakest local contrast (gray levels above the local noise) taken as ink.
const INK_MIN: u16 = 6;
/// Side of the neighbourhood whose strongest response sets the halo
/// floor: about a stroke's distance.
const HALO: usize = 5;
/// Tiles over which the noise level is estimated.
const TILE: usize = 32;
/// Glyph heights considered (pixels).
pub(super) const MIN_H: u32 = 4;
pub(super) const MAX_H: u32 = 48;
/// At most this many lines per frame are returned (a page of text or a
/// noisy frame would otherwise flood OCR); the best-scored are kept.
const MAX_LINES: usize = 64;

/// Candidate text lines, bright and dark, best first.
pub fn text_lines(img: &GrayImage) -> Vec<TextLine> {
    screen(img).lines
}

/// What the screen saw in one frame: the candidate lines, and the ink of
/// both polarities (to grow a redaction along its line of text).
#[derive(Debug, Clone, Default)]
pub struct Screen {
    /// Candidate lines, best first.
    pub lines: Vec<TextLine>,
    w: usize,
    h: usize,
    ink_bright: Vec<bool>,
    ink_dark: Vec<bool>,
    /// The letters of the flat-ink lines, black on white, frame-sized.
    pub flat_ink: Option<GrayImage>,
}

/// Screens one 8-bit frame.
pub fn screen(img: &GrayImage) -> Screen {
    screen_values(img, None)
}

/// Screens one frame: the top-hat screen on the 8-bit image, the flat-ink
/// screen on `values` (the stored values, see
/// [`crate::decode::Frame::values`]) or else on the 8-bit image.
pub fn screen_values(img: &GrayImage, values: Option<&[i32]>) -> Screen {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 8 || h < 8 {
        return Screen::default();
    }
    let src = img.as_raw();
    let opened = max_filter(&min_filter(src, w, h), w, h);
    let closed = min_filter(&max_filter(src, w, h), w, h);
    let bright: Vec<u8> = src
        .iter()
        .zip(&opened)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let dark: Vec<u8> = closed
        .iter()
        .zip(src)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let ink_bright = threshold(&bright, w, h);
    let ink_dark = threshold(&dark, w, h);
    let mut lines = lines_in(&ink_bright, w, h, true);
    lines.extend(lines_in(&ink_dark, w, h, false));
    // Faint text on a textured background (a few percent of the range
    // over speckle or noise) drowns in the per-pixel noise floor; averaged
    // over 3x3 the noise drops by about three while strokes two or more
    // pixels wide keep most of their contrast. A second look at the
    // smoothed top-hats finds such lines; their ink joins the masks.
    let (sb, sd) = (box3(&bright, w, h), box3(&dark, w, h));
    let (ib, id) = (threshold(&sb, w, h), threshold(&sd, w, h));
    lines.extend(lines_in(&ib, w, h, true));
    lines.extend(lines_in(&id, w, h, false));
    let ink_bright: Vec<bool> = ink_bright.iter().zip(&ib).map(|(a, b)| *a || *b).collect();
    let ink_dark: Vec<bool> = ink_dark.iter().zip(&id).map(|(a, b)| *a || *b).collect();
    lines.sort_by(|a, b| b.score.total_cmp(&a.score));
    // lines of one-valued ink first: where both screens see a line, the
    // flat one is kept, since OCR then reads its exact ink
    let widened: Vec<i32>;
    let vals: &[i32] = match values {
        Some(v) if v.len() == w * h => v,
        _ => {
            widened = src.iter().map(|&b| i32::from(b)).collect();
            &widened
        }
    };
    let (mut flat, mut flat_ink) = super::flat::flat_lines(vals, w, h);
    flat.sort_by(|a, b| b.score.total_cmp(&a.score));
    // a line found in both polarities (the halo of one is the other's
    // text) is kept once, the better-scored
    let mut kept: Vec<TextLine> = Vec::new();
    // islands last: they are often a line's parts only (letters that
    // touch merge into one island too wide for a letter), and the top-hat
    // line, when there is one, holds the whole line
    let (islands, flat): (Vec<TextLine>, Vec<TextLine>) = flat
        .into_iter()
        .partition(|l| l.ink == Some(super::flat::ISLAND));
    let n_flat = flat.len();
    let n_other = n_flat + lines.len();
    for (i, l) in flat.into_iter().chain(lines).chain(islands).enumerate() {
        if i >= n_other && kept.iter().any(|k| covered(&l, k) >= 0.5) {
            continue;
        }
        // a top-hat line around a flat one is that text with whatever
        // stands beside it (anatomy, edges): the flat line says where the
        // letters are
        let around_flat = l.ink.is_none()
            && kept[..n_flat.min(kept.len())]
                .iter()
                .any(|k| covered(k, &l) >= 0.5);
        if !around_flat && kept.iter().all(|k| iou(k, &l) < 0.5) {
            kept.push(l);
        }
        if kept.len() == MAX_LINES {
            break;
        }
    }
    // small top-hat lines whose ink is one value are flat lines the flat
    // screen could not seed (see [`super::flat::one_valued`]), read from
    // that ink. Not those touching a flat line: they are pieces of its
    // letters (the tops of a 28 px name), which that line holds already
    let seeded: Vec<TextLine> = kept.iter().filter(|k| k.ink.is_some()).copied().collect();
    for l in kept.iter_mut().filter(|l| {
        l.ink.is_none()
            && l.glyph_h <= super::flat::ONE_VALUED_H
            && seeded.iter().all(|k| covered(l, k) == 0.0)
    }) {
        let ink = if l.bright { &ink_bright } else { &ink_dark };
        let Some(v) = super::flat::one_valued(vals, ink, w, h, l) else {
            continue;
        };
        l.ink = Some(v);
        let img = flat_ink
            .get_or_insert_with(|| GrayImage::from_pixel(w as u32, h as u32, image::Luma([255])));
        for y in l.y..(l.y + l.h).min(h as u32) {
            for x in l.x..l.x + l.w {
                if vals[y as usize * w + x as usize] == v {
                    img.put_pixel(x, y, image::Luma([0]));
                }
            }
        }
    }
    Screen {
        lines: kept,
        w,
        h,
        ink_bright,
        ink_dark,
        flat_ink,
    }
}

impl Screen {
    /// Widens a box (x, y, w, h) to the left and right along its band of
    /// rows while ink of the given polarity continues within `gap`
    /// columns, at most `reach` pixels each way. Why: the screen may miss
    /// the first letters of a line (a glyph too small, or touching its
    /// neighbour), and a line whose middle is blanked but whose first
    /// name is left is not redacted. `confined`: only columns whose ink
    /// stays within the band and a row's margin (none in the second row
    /// above it or below it): letters keep to their line, while the
    /// anatomy and edges the top-hat ink of an exact frame runs on into
    /// cross it. On the must-show set this cut the non-text pixels
    /// changed in lossless frames from 0.72 % to 0.66 %, the same lines
    /// found; in lossy frames, where blur and speckle join letters to
    /// what lies above and below, it lost two lines.
    pub fn grow(
        &self,
        (x, y, w, h): (u32, u32, u32, u32),
        bright: bool,
        gap: u32,
        reach: u32,
        confined: bool,
    ) -> (u32, u32, u32, u32) {
        if self.w == 0 {
            return (x, y, w, h);
        }
        let ink = self.ink(bright);
        let (y0, y1) = (y as usize, ((y + h) as usize).min(self.h));
        let (above, below) = (y0.checked_sub(2), (y1 + 1 < self.h).then_some(y1 + 1));
        let outside = |cx: usize, r: Option<usize>| r.is_some_and(|r| ink[r * self.w + cx]);
        let col = |cx: usize| {
            (y0..y1).any(|r| ink[r * self.w + cx])
                && !(confined && (outside(cx, above) || outside(cx, below)))
        };
        let mut x0 = (x as usize).min(self.w);
        let mut x1 = ((x + w) as usize).min(self.w);
        let (gap, reach) = (gap as usize, reach as usize);
        let (start0, start1) = (x0, x1);
        let mut blank = 0;
        let mut cx = x1;
        while cx < self.w && blank <= gap && cx < start1 + reach {
            if col(cx) {
                x1 = cx + 1;
                blank = 0;
            } else {
                blank += 1;
            }
            cx += 1;
        }
        blank = 0;
        let mut cx = x0;
        while cx > 0 && blank <= gap && cx + reach > start0 {
            cx -= 1;
            if col(cx) {
                x0 = cx;
                blank = 0;
            } else {
                blank += 1;
            }
        }
        (x0 as u32, y, (x1 - x0) as u32, h)
    }

    /// The top-hat ink of one polarity, per pixel.
    fn ink(&self, bright: bool) -> &[bool] {
        if bright {
            &self.ink_bright
        } else {
            &self.ink_dark
        }
    }

    /// Carries a line of a lossy frame on over the pixels of its band
    /// near its letters' level, at most `reach` each way from the box
    /// (x0..x1, the columns found so far); returns the new columns. Why:
    /// a line that runs from air into tissue is bright ink on the one and
    /// dark ink on the other (c007 on the must-show set: text at 14 of
    /// 255 over air at 1 and tissue from 30 up), so the top-hat ink of
    /// one polarity stops where the background changes, while the
    /// letters' own level goes on. The level is the median of the line's
    /// ink pixels, the tolerance 2 levels and a quarter of the step to
    /// the background (the median of the other pixels of the box), and
    /// the level must be rare off the line ([`super::flat::carry`]).
    pub fn grow_level(
        &self,
        img: &GrayImage,
        l: &TextLine,
        (x0, x1): (u32, u32),
        reach: u32,
    ) -> (u32, u32) {
        let (w, h) = (self.w, self.h);
        if w == 0 || img.width() as usize != w || img.height() as usize != h || x1 <= x0 {
            return (x0, x1);
        }
        let src = img.as_raw();
        let top_hat = self.ink(l.bright);
        let is_ink = |i: usize| match (&self.flat_ink, l.ink) {
            (Some(f), Some(_)) => f.as_raw()[i] == 0,
            _ => top_hat[i],
        };
        let (mut ink, mut bg) = (Vec::new(), Vec::new());
        for y in l.y as usize..((l.y + l.h) as usize).min(h) {
            let row = y * w + l.x as usize..y * w + ((l.x + l.w) as usize).min(w);
            for (i, &v) in row.clone().zip(&src[row]) {
                if is_ink(i) {
                    ink.push(v);
                } else {
                    bg.push(v);
                }
            }
        }
        let median = |v: &mut Vec<u8>| {
            v.sort_unstable();
            v.get(v.len() / 2).copied()
        };
        let (Some(level), Some(back)) = (median(&mut ink), median(&mut bg)) else {
            return (x0, x1);
        };
        let tol = 2 + level.abs_diff(back) / 4;
        let band = TextLine {
            x: x0,
            w: x1 - x0,
            ..*l
        };
        let gap = 2 * l.glyph_h.max(4) as usize;
        let (a, b) = super::flat::carry(src, w, h, &band, gap, reach as usize, |v| {
            v.abs_diff(level) <= tol
        });
        (a as u32, b as u32 + 1)
    }
}

/// Mean over a 3x3 square (edges replicated), rounded.
fn box3(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut tmp = vec![0u16; w * h];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..w {
            let (a, b) = (x.saturating_sub(1), (x + 1).min(w - 1));
            tmp[y * w + x] = row[a] as u16 + row[x] as u16 + row[b] as u16;
        }
    }
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        let (a, b) = (y.saturating_sub(1), (y + 1).min(h - 1));
        for x in 0..w {
            let s = tmp[a * w + x] + tmp[y * w + x] + tmp[b * w + x];
            out[y * w + x] = ((s + 4) / 9) as u8;
        }
    }
    out
}

/// The fraction of `a`'s box inside `b`'s.
pub(super) fn covered(a: &TextLine, b: &TextLine) -> f32 {
    a.rect().inside_fraction(&b.rect())
}

fn iou(a: &TextLine, b: &TextLine) -> f32 {
    a.rect().iou(&b.rect())
}

/// Text lines in the ink of one polarity.
fn lines_in(ink: &[bool], w: usize, h: usize, bright: bool) -> Vec<TextLine> {
    let glyphs: Vec<Comp> = components(ink, w, h)
        .into_iter()
        .filter(|c| {
            let (cw, ch) = (c.x1 - c.x0 + 1, c.y1 - c.y0 + 1);
            // letters and digits are at most about as wide as tall; at
            // small sizes neighbours touch and a component spans a few
            (MIN_H..=MAX_H).contains(&ch)
                && cw <= if ch <= 12 { ch * 6 } else { ch * 3 + 2 }
                && c.n >= 4
                && (c.n as f32) >= 0.08 * (cw * ch) as f32
        })
        .collect();
    group_glyphs(glyphs, bright)
}

/// Ink: top-hat at least `INK_MIN` above three times the tile's median
/// response (the noise floor of that part of the frame) and at least a
/// third of the strongest response within `HALO` pixels.
fn threshold(th: &[u8], w: usize, h: usize) -> Vec<bool> {
    let mut ink = vec![false; w * h];
    let near = max_filter_k(th, w, h, HALO);
    for ty in (0..h).step_by(TILE) {
        for tx in (0..w).step_by(TILE) {
            let (y1, x1) = ((ty + TILE).min(h), (tx + TILE).min(w));
            let mut hist = [0u32; 256];
            for y in ty..y1 {
                for &v in &th[y * w + tx..y * w + x1] {
                    hist[v as usize] += 1;
                }
            }
            let n = ((y1 - ty) * (x1 - tx)) as u32;
            let quantile = |q: u32| {
                let mut acc = 0;
                for (v, c) in hist.iter().enumerate() {
                    acc += c;
                    if acc * 100 > n * q {
                        return v as u16;
                    }
                }
                255
            };
            let t = (INK_MIN + 3 * quantile(50)).min(255) as u8;
            // above the noise, and above the faint halo (JPEG ringing,
            // anti-aliasing) that would join strong letters into one blob:
            // at least a third of the strongest response nearby, so faint
            // text elsewhere in the tile keeps its own scale
            for y in ty..y1 {
                for x in tx..x1 {
                    let v = th[y * w + x];
                    ink[y * w + x] = v >= t && 3 * v as u16 >= near[y * w + x] as u16;
                }
            }
        }
    }
    ink
}

/// A connected component's box and pixel count.
#[derive(Debug, Clone, Copy)]
pub(super) struct Comp {
    pub(super) x0: u32,
    pub(super) y0: u32,
    pub(super) x1: u32,
    pub(super) y1: u32,
    pub(super) n: u32,
}

/// 8-connected components, labelled over horizontal runs with a
/// union-find.
pub(super) fn components(ink: &[bool], w: usize, h: usize) -> Vec<Comp> {
    let (runs, row_start) = mask_runs(ink, w, h);
    let roots = union_runs(&runs, &row_start, |_, _| true);
    let mut comps: Vec<Option<Comp>> = vec![None; runs.len()];
    for (i, &(y, x0, x1)) in runs.iter().enumerate() {
        let r = roots[i] as usize;
        let c = comps[r].get_or_insert(Comp {
            x0,
            y0: y,
            x1: x1 - 1,
            y1: y,
            n: 0,
        });
        c.x0 = c.x0.min(x0);
        c.x1 = c.x1.max(x1 - 1);
        c.y0 = c.y0.min(y);
        c.y1 = c.y1.max(y);
        c.n += x1 - x0;
    }
    comps.into_iter().flatten().collect()
}

/// The horizontal runs `(y, x0, x1 exclusive)` of set pixels in a mask,
/// by row, and where each row's runs start (one more entry at the end):
/// the input of [`union_runs`].
pub(super) fn mask_runs(mask: &[bool], w: usize, h: usize) -> (Vec<(u32, u32, u32)>, Vec<usize>) {
    let mut runs: Vec<(u32, u32, u32)> = Vec::new();
    let mut row_start = Vec::with_capacity(h + 1);
    for y in 0..h {
        row_start.push(runs.len());
        let row = &mask[y * w..(y + 1) * w];
        let mut x = 0;
        while x < w {
            if row[x] {
                let s = x;
                while x < w && row[x] {
                    x += 1;
                }
                runs.push((y as u32, s as u32, x as u32));
            } else {
                x += 1;
            }
        }
    }
    row_start.push(runs.len());
    (runs, row_start)
}

/// Joins horizontal runs `(y, x0, x1 exclusive)`, sorted by row, into
/// 8-connected components with a union-find, where `joins(a, b)` says
/// whether two touching runs (indices) belong together; returns each
/// run's root run. Shared by the ink components here and the equal-value
/// plateaus of [`super::flat`].
pub(super) fn union_runs(
    runs: &[(u32, u32, u32)],
    row_start: &[usize],
    joins: impl Fn(usize, usize) -> bool,
) -> Vec<u32> {
    let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
    for y in 1..row_start.len().saturating_sub(1) {
        let (prev, cur) = (
            row_start[y - 1]..row_start[y],
            row_start[y]..row_start[y + 1],
        );
        let mut j = prev.start;
        for i in cur {
            let (_, a0, a1) = runs[i];
            // previous-row runs touching [a0-1, a1] (8-connectivity)
            while j < prev.end && runs[j].2 < a0 {
                j += 1;
            }
            let mut k = j;
            while k < prev.end && runs[k].1 <= a1 {
                if joins(i, k) {
                    union(&mut parent, i as u32, k as u32);
                }
                k += 1;
            }
        }
    }
    (0..runs.len() as u32)
        .map(|i| find(&mut parent, i))
        .collect()
}

/// The root of `i` in a union-find forest (`p[i]` is `i`'s parent),
/// halving the path on the way.
pub(super) fn find(p: &mut [u32], mut i: u32) -> u32 {
    while p[i as usize] != i {
        p[i as usize] = p[p[i as usize] as usize];
        i = p[i as usize];
    }
    i
}

/// Joins the trees of `a` and `b`; the lower root stays the root.
pub(super) fn union(p: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(p, a), find(p, b));
    if ra != rb {
        p[ra.max(rb) as usize] = ra.min(rb);
    }
}

/// Groups glyph candidates into lines: similar heights, overlapping
/// vertically, close horizontally.
pub(super) fn group_glyphs(mut glyphs: Vec<Comp>, bright: bool) -> Vec<TextLine> {
    glyphs.sort_by_key(|c| c.x0);
    struct Acc {
        x0: u32,
        y0: u32,
        x1: u32,
        y1: u32,
        members: Vec<Comp>,
    }
    let mut open: Vec<Acc> = Vec::new();
    for g in glyphs {
        let gh = g.y1 - g.y0 + 1;
        // a glyph joins a line when its middle lies in the line's band
        // (the median glyph's middle and height, not the growing box, so
        // that rows of text or anatomy never chain into a tall block)
        // of the lines it may join, the one it fits best (nearest band,
        // nearest height): joining the first would let a few tall blobs
        // of texture opened earlier take a line of letters over
        let gmid = (g.y0 + g.y1) as f32 / 2.0;
        let best = open
            .iter_mut()
            .filter_map(|l| {
                let lh = median_height(&l.members);
                let lmid = median_mid(&l.members);
                let gap = g.x0 as i64 - l.x1 as i64;
                let fits = gap <= (lh.max(gh) as f32 * 1.2) as i64 + 2
                    && (gmid - lmid).abs() <= 0.5 * lh as f32
                    && gh * 5 >= lh * 2
                    && lh * 5 >= gh * 2;
                let misfit = (gmid - lmid).abs() + lh.abs_diff(gh) as f32;
                fits.then_some((misfit, l))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, l)| l);
        match best {
            Some(l) => {
                l.x1 = l.x1.max(g.x1);
                l.y0 = l.y0.min(g.y0);
                l.y1 = l.y1.max(g.y1);
                l.members.push(g);
            }
            None => open.push(Acc {
                x0: g.x0,
                y0: g.y0,
                x1: g.x1,
                y1: g.y1,
                members: vec![g],
            }),
        }
    }
    open.into_iter()
        .filter_map(|l| {
            let w = l.x1 - l.x0 + 1;
            let h = l.y1 - l.y0 + 1;
            let n = l.members.len() as u32;
            let score = score(&l.members, w, h);
            // names, IDs and dates have several characters; small text
            // whose letters touch shows fewer components
            let ok = (n >= 3 || (n == 2 && h <= 12 && w >= 3 * h)) && score >= 0.6;
            ok.then_some(TextLine {
                x: l.x0,
                y: l.y0,
                w,
                h,
                glyphs: n,
                glyph_h: median_height(&l.members),
                score,
                bright,
                ink: None,
            })
        })
        .collect()
}

fn median_mid(m: &[Comp]) -> f32 {
    let mut ms: Vec<u32> = m.iter().map(|c| c.y0 + c.y1).collect();
    ms.sort_unstable();
    ms[ms.len() / 2] as f32 / 2.0
}

fn median_height(m: &[Comp]) -> u32 {
    let mut hs: Vec<u32> = m.iter().map(|c| c.y1 - c.y0 + 1).collect();
    hs.sort_unstable();
    hs[hs.len() / 2]
}

/// How text-like a group is: many glyphs, consistent heights, aligned
/// bottoms (baseline), and ink density typical of strokes.
fn score(m: &[Comp], w: u32, h: u32) -> f32 {
    let n = m.len() as f32;
    let mh = median_height(m) as f32;
    let bottoms: Vec<f32> = m.iter().map(|c| c.y1 as f32).collect();
    let mut sorted = bottoms.clone();
    sorted.sort_by(f32::total_cmp);
    let base = sorted[sorted.len() / 2];
    let aligned = bottoms
        .iter()
        .filter(|b| (**b - base).abs() <= (mh * 0.3).max(1.5))
        .count() as f32
        / n;
    let consistent = m
        .iter()
        .filter(|c| {
            let ch = (c.y1 - c.y0 + 1) as f32;
            ch >= mh * 0.6 && ch <= mh * 1.5
        })
        .count() as f32
        / n;
    let ink: u32 = m.iter().map(|c| c.n).sum();
    let density = ink as f32 / (w * h).max(1) as f32;
    let dens_ok = if (0.08..=0.6).contains(&density) {
        1.0
    } else {
        0.3
    };
    let count = (n / 4.0).min(1.0);
    (0.3 * count + 0.3 * aligned + 0.2 * consistent + 0.2 * dens_ok).min(1.0)
}

/// Minimum over a `K`x`K` square (separable, van Herk/Gil-Werman: three
/// comparisons per pixel whatever `K`).
fn min_filter(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    let t = transpose(&vhgw_rows(src, w, h, K, u8::min, 255), w, h);
    transpose(&vhgw_rows(&t, h, w, K, u8::min, 255), h, w)
}

/// Maximum over a `K`x`K` square.
fn max_filter(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    max_filter_k(src, w, h, K)
}

/// Maximum over a `k`x`k` square.
fn max_filter_k(src: &[u8], w: usize, h: usize, k: usize) -> Vec<u8> {
    let t = transpose(&vhgw_rows(src, w, h, k, u8::max, 0), w, h);
    transpose(&vhgw_rows(&t, h, w, k, u8::max, 0), h, w)
}

fn transpose(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut out = vec![0u8; w * h];
    const B: usize = 32;
    for by in (0..h).step_by(B) {
        for bx in (0..w).step_by(B) {
            for y in by..(by + B).min(h) {
                for x in bx..(bx + B).min(w) {
                    out[x * h + y] = src[y * w + x];
                }
            }
        }
    }
    out
}

/// A centred 1-D min/max filter of width `k` (odd) along each row.
/// Generic over `f` (not a `fn` pointer) so that the min or max is
/// inlined: through a pointer the calls took a quarter of the screen's
/// time.
fn vhgw_rows<F: Fn(u8, u8) -> u8>(
    src: &[u8],
    w: usize,
    h: usize,
    k: usize,
    f: F,
    pad: u8,
) -> Vec<u8> {
    let r = k / 2;
    let n = w + 2 * r;
    let blocks = n.div_ceil(k);
    let len = blocks * k;
    let mut buf = vec![pad; len];
    let mut g = vec![pad; len];
    let mut hh = vec![pad; len];
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        buf[..r].fill(pad);
        buf[r..r + w].copy_from_slice(&src[y * w..(y + 1) * w]);
        buf[r + w..].fill(pad);
        for b in 0..blocks {
            let s = b * k;
            g[s] = buf[s];
            for i in s + 1..s + k {
                g[i] = f(g[i - 1], buf[i]);
            }
            hh[s + k - 1] = buf[s + k - 1];
            for i in (s..s + k - 1).rev() {
                hh[i] = f(hh[i + 1], buf[i]);
            }
        }
        // window [x, x+k-1] in padded coordinates is centred on x+r
        let row = &mut out[y * w..(y + 1) * w];
        for (x, o) in row.iter_mut().enumerate() {
            let a = x;
            let b = x + k - 1;
            *o = if b < len { f(hh[a], g[b]) } else { hh[a] };
        }
    }
    out
}

/// The ink of one region as the screen sees it: black where the top-hat
/// of the given polarity passes the screen's threshold, white elsewhere.
/// Why OCR reads this version: it is exactly what made the line stand out
/// (noise- and halo-aware, at any contrast), whereas a fixed threshold or
/// a contrast stretch of the crop fails on faint text next to bright
/// marks. The top-hat is computed on the region widened by the
/// structuring element, so the crop's edges are not artefacts.
pub fn ink_image(img: &GrayImage, (x, y, w, h): (u32, u32, u32, u32), bright: bool) -> GrayImage {
    let m = K as u32 + TILE as u32 / 2;
    let (iw, ih) = img.dimensions();
    let (x0, y0) = (x.saturating_sub(m), y.saturating_sub(m));
    let (x1, y1) = ((x + w + m).min(iw), (y + h + m).min(ih));
    let (cw, ch) = ((x1 - x0) as usize, (y1 - y0) as usize);
    if cw < 2 || ch < 2 {
        return GrayImage::new(1, 1);
    }
    let crop = image::imageops::crop_imm(img, x0, y0, x1 - x0, y1 - y0).to_image();
    let src = crop.as_raw();
    let th: Vec<u8> = if bright {
        let opened = max_filter(&min_filter(src, cw, ch), cw, ch);
        src.iter()
            .zip(&opened)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect()
    } else {
        let closed = min_filter(&max_filter(src, cw, ch), cw, ch);
        closed
            .iter()
            .zip(src)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect()
    };
    let ink = threshold(&th, cw, ch);
    let bin: Vec<u8> = ink.iter().map(|&i| if i { 0 } else { 255 }).collect();
    let full =
        GrayImage::from_raw(cw as u32, ch as u32, bin).unwrap_or_else(|| GrayImage::new(1, 1));
    image::imageops::crop_imm(&full, x - x0, y - y0, w.min(x1 - x), h.min(y1 - y)).to_image()
}

/// The glyph candidates (x0, y0, x1, y1, pixels, bright) of a frame, before
/// grouping: for tuning the screen (examples/clean_debug.rs).
#[doc(hidden)]
pub fn glyph_candidates(img: &GrayImage) -> Vec<(u32, u32, u32, u32, u32, bool)> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let opened = max_filter(&min_filter(src, w, h), w, h);
    let bright: Vec<u8> = src
        .iter()
        .zip(&opened)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    components(&threshold(&bright, w, h), w, h)
        .into_iter()
        .map(|c| (c.x0, c.y0, c.x1, c.y1, c.n, true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(src: &[u8], w: usize, h: usize, f: fn(u8, u8) -> u8, init: u8) -> Vec<u8> {
        let r = (K / 2) as i64;
        let mut out = vec![0; w * h];
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let mut v = init;
                for dy in -r..=r {
                    for dx in -r..=r {
                        let (xx, yy) = (x + dx, y + dy);
                        if xx >= 0 && yy >= 0 && xx < w as i64 && yy < h as i64 {
                            v = f(v, src[(yy as usize) * w + xx as usize]);
                        }
                    }
                }
                out[y as usize * w + x as usize] = v;
            }
        }
        out
    }

    #[test]
    fn fast_filters_equal_the_naive_ones() {
        let (w, h) = (37, 23);
        let src: Vec<u8> = (0..w * h).map(|i| ((i * 7919) % 251) as u8).collect();
        assert_eq!(min_filter(&src, w, h), naive(&src, w, h, u8::min, 255));
        assert_eq!(max_filter(&src, w, h), naive(&src, w, h, u8::max, 0));
    }

    #[test]
    fn finds_drawn_text_and_not_a_flat_frame() {
        let mut img = GrayImage::from_pixel(256, 128, image::Luma([20]));
        assert!(text_lines(&img).is_empty());
        let b = crate::text::draw_text(&mut img, "DOE^JOHN 1234567", 10, 40, 14.0, 200).unwrap();
        let lines = text_lines(&img);
        assert!(!lines.is_empty());
        let l = lines[0];
        // the line covers the drawn text
        assert!(
            l.x <= b.0 + 2 && l.x + l.w + 2 >= b.0 + b.2,
            "{l:?} vs {b:?}"
        );
        assert!(l.bright);
    }

    #[test]
    fn finds_low_contrast_and_dark_text() {
        let mut img = GrayImage::from_pixel(256, 128, image::Luma([60]));
        crate::text::draw_text(&mut img, "19640212", 10, 10, 12.0, 72).unwrap();
        crate::text::draw_text(&mut img, "SMITH", 10, 70, 20.0, 10).unwrap();
        let lines = text_lines(&img);
        assert!(lines.iter().any(|l| l.bright && l.y < 40), "{lines:?}");
        assert!(lines.iter().any(|l| !l.bright && l.y > 50), "{lines:?}");
    }

    #[test]
    fn letters_join_the_line_they_fit_not_the_first_open_one() {
        // an ultrasound's name on speckle (c261 on the must-show set):
        // three tall blobs of speckle open a line first; the letters,
        // whose band overlaps theirs, form their own line
        let c = |x0, y0, x1, y1, n| Comp { x0, y0, x1, y1, n };
        let glyphs = vec![
            c(9, 99, 20, 114, 161),
            c(45, 95, 63, 123, 195),
            c(99, 114, 112, 131, 98),
            c(115, 115, 121, 123, 27),
            c(124, 115, 129, 123, 39),
            c(131, 113, 137, 123, 31),
            c(143, 115, 149, 123, 19),
        ];
        let lines = group_glyphs(glyphs, true);
        assert!(
            lines
                .iter()
                .any(|l| l.x >= 114 && l.h <= 12 && l.glyphs >= 4),
            "{lines:?}"
        );
    }

    #[test]
    fn a_confined_grow_stops_at_what_crosses_the_band() {
        // a line's letters at columns 10..31 of rows 10..20, a vertical
        // edge crossing the band at 36..39, more ink in the band beyond
        let (w, h) = (80usize, 40usize);
        let mut ink = vec![false; w * h];
        for y in 0..h {
            for x in 0..w {
                let letters = (10..20).contains(&y) && (10..31).contains(&x) && x % 3 != 0;
                let edge = (36..39).contains(&x);
                let more = (10..20).contains(&y) && (42..48).contains(&x);
                ink[y * w + x] = letters || edge || more;
            }
        }
        let scr = Screen {
            w,
            h,
            ink_bright: ink.clone(),
            ink_dark: vec![false; w * h],
            ..Default::default()
        };
        let (x, _, bw, _) = scr.grow((10, 10, 21, 10), true, 6, 100, true);
        assert_eq!((x, x + bw), (10, 31));
        let (x, _, bw, _) = scr.grow((10, 10, 21, 10), true, 6, 100, false);
        assert_eq!((x, x + bw), (10, 48));
    }

    #[test]
    fn a_lossy_line_is_carried_over_its_letters_level_into_tissue() {
        // letters of level 14 in rows 10..20, every 5th column from 5 to
        // 110, on air of 1 (x < 60) and tissue of 100 beyond: the top-hat
        // ink (bright) stops where the air does
        let (w, h) = (120usize, 30usize);
        let draw = |texture: bool| {
            let mut px = vec![0u8; w * h];
            for y in 0..h {
                for x in 0..w {
                    let letter = (5..112).contains(&x) && x % 5 < 2;
                    let band = (10..20).contains(&y);
                    px[y * w + x] = if letter && (band || (texture && x >= 60)) {
                        14
                    } else if x < 60 {
                        1
                    } else {
                        100
                    };
                }
            }
            GrayImage::from_raw(w as u32, h as u32, px).expect("size")
        };
        let line = TextLine {
            x: 5,
            y: 10,
            w: 52,
            h: 10,
            glyphs: 11,
            glyph_h: 10,
            score: 1.0,
            bright: true,
            ink: None,
        };
        for (texture, right) in [(false, 112), (true, 57)] {
            let img = draw(texture);
            let ink: Vec<bool> = img
                .as_raw()
                .iter()
                .enumerate()
                .map(|(i, &v)| v == 14 && i % w < 60)
                .collect();
            let scr = Screen {
                w,
                h,
                ink_bright: ink,
                ink_dark: vec![false; w * h],
                ..Default::default()
            };
            // the same level above and below the band (a texture): no
            // extension
            assert_eq!(scr.grow_level(&img, &line, (5, 57), 200), (5, right));
        }
    }

    #[test]
    fn small_text_of_one_value_is_flat_ink_where_no_plateau_is_a_letter() {
        // 8 px text cut to one value (scattered single pixels, as a CR's
        // burned-in date) on noise of 10-bit values; the 8-bit image is
        // what the top-hat screen sees
        let (w, h) = (240usize, 60usize);
        let mut glyphs = GrayImage::new(w as u32, h as u32);
        let b = crate::text::draw_text(&mut glyphs, "DOB 11/11/1989", 20, 26, 8.0, 255).unwrap();
        let vals: Vec<i32> = (0..w * h)
            .map(|i| {
                if glyphs.as_raw()[i] >= 128 {
                    return 1023;
                }
                let mut s = (i as u64).wrapping_mul(6_364_136_223_846_793_005) ^ 0x9E37;
                s = s.wrapping_mul(1_442_695_040_888_963_407).wrapping_add(1);
                400 + ((s >> 40) % 41) as i32 - 20
            })
            .collect();
        let img = GrayImage::from_fn(w as u32, h as u32, |x, y| {
            image::Luma([(vals[y as usize * w + x as usize] / 4) as u8])
        });
        let scr = screen_values(&img, Some(&vals));
        let l = scr
            .lines
            .iter()
            .find(|l| l.x < b.0 + b.2 && b.0 < l.x + l.w && l.y < b.1 + b.3 && b.1 < l.y + l.h)
            .unwrap_or_else(|| panic!("no line at {b:?}: {:?}", scr.lines));
        assert_eq!(l.ink, Some(1023), "{l:?}");
        // OCR reads its ink: the flat-ink image holds the letters' pixels
        let ink = scr.flat_ink.as_ref().expect("flat ink image");
        let dark = (l.y..l.y + l.h)
            .flat_map(|y| (l.x..l.x + l.w).map(move |x| (x, y)))
            .filter(|&(x, y)| ink.get_pixel(x, y)[0] == 0)
            .count();
        assert!(dark >= 20, "{dark} ink pixels");
        // the same line with its value common around it is not flat ink
        let mut common = vals.clone();
        for y in (b.1 as usize).saturating_sub(10)..b.1 as usize {
            for x in (b.0 as usize..(b.0 + b.2) as usize).step_by(2) {
                common[y * w + x] = 1023;
            }
        }
        let ink_mask: Vec<bool> = glyphs.as_raw().iter().map(|&g| g >= 128).collect();
        assert_eq!(
            super::super::flat::one_valued(&vals, &ink_mask, w, h, l),
            Some(1023)
        );
        assert_eq!(
            super::super::flat::one_valued(&common, &ink_mask, w, h, l),
            None
        );
    }
}
