//! A second screen: text drawn with one value ("flat ink").
//!
//! Why: modalities and viewers burn annotations in with a single gray
//! level or colour, so every stroke of a letter carries exactly the same
//! stored value, while anatomy, speckle and noise almost never keep one
//! value over a stroke-shaped patch of pixels. Looking for plateaus of
//! equal value (not for contrast) finds text the top-hat screen misses:
//! faint lines a few percent of the range above speckle, texture or
//! anatomy, whose contrast is below the local noise. A plateau also gives
//! OCR the exact ink of each letter (every pixel of that value) instead of
//! a threshold guess. Lossy compression breaks the equality; such images
//! keep the top-hat screen only.
//!
//! Plateaus are 8-connected components of equal value, labelled over
//! horizontal runs with a union-find (linear in pixels). A plateau is a
//! glyph candidate when it is letter-sized and stroke-shaped and differs
//! clearly from the pixels around it; candidates of the **same value**
//! are grouped into lines as the top-hat screen groups its glyphs.

use std::collections::{BTreeMap, HashMap};

use image::GrayImage;

use super::detect::{covered, group_glyphs, mask_runs, union_runs, Comp, TextLine, MAX_H, MIN_H};

/// Smallest mean difference between a plateau and the pixels bordering
/// it, as a fraction of the frame's spread of values (5th to 95th
/// percentile): smaller steps are the terraces of a smooth gradient or
/// the wobble of background noise, not ink. Faint text, a few percent of
/// that spread, steps by more; on a dark frame that can be 3 levels.
const EDGE_FRACTION: f32 = 0.03;
/// ... and never less than this many levels (a one-level step is the
/// terrace of any gradient).
const EDGE_FLOOR: f32 = 2.0;

/// What a plateau can be in a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Letter-shaped and standing out from its border: seeds lines.
    Strong,
    /// Letter-shaped, faint: extends a line.
    Weak,
    /// A piece of a small letter: extends a line over short gaps.
    Piece,
}

/// A plateau: its box, pixel count and value, and how strongly it stands
/// out from its border.
#[derive(Debug, Clone, Copy)]
struct Plateau {
    c: Comp,
    v: i32,
    /// Sum and count of |difference| to 4-neighbours of another value.
    edge_sum: f32,
    edge_n: u32,
    /// Neighbours brighter than the plateau, of those counted.
    brighter: u32,
    /// The largest of those differences.
    peak: u32,
}

impl Plateau {
    /// Adds to the border statistics pixel `i`'s 4-neighbours (in a
    /// `w` x `h` frame of values) that `counts` says border the plateau.
    fn add_border(
        &mut self,
        src: &[i32],
        w: usize,
        h: usize,
        i: usize,
        counts: impl Fn(usize) -> bool,
    ) {
        let (x, y, v) = (i % w, i / w, src[i]);
        let near = [
            (x > 0).then(|| i - 1),
            (x + 1 < w).then(|| i + 1),
            (y > 0).then(|| i - w),
            (y + 1 < h).then(|| i + w),
        ];
        for j in near.into_iter().flatten().filter(|&j| counts(j)) {
            let (u, d) = (src[j], src[j].abs_diff(v));
            self.edge_sum += d as f32;
            self.edge_n += 1;
            self.brighter += u32::from(u > v);
            self.peak = self.peak.max(d);
        }
    }
}

/// Lines of flat ink in a frame of values (stored values, larger is
/// brighter, or 8-bit display levels), each tagged with its ink value
/// ([`TextLine::ink`]); with them, the ink of their letters as a
/// black-on-white image of the frame, for OCR.
pub fn flat_lines(src: &[i32], w: usize, h: usize) -> (Vec<TextLine>, Option<GrayImage>) {
    if w < 8 || h < 8 || src.len() < w * h {
        return (Vec::new(), None);
    }
    let edge_min = (EDGE_FRACTION * spread(src)).max(EDGE_FLOOR);
    let keys = cut_rules(src, w, h);
    let (labels, mut plateaus) = label(&keys, w, h);
    // border contrast of every plateau: its neighbours of another value
    for i in 0..w * h {
        plateaus[labels[i] as usize].add_border(src, w, h, i, |j| src[j] != src[i]);
    }
    // letter-shaped plateaus by value; `strong` ones stand out from their
    // border. Lines are seeded by strong ones only; weak ones of the same
    // value then extend a line along its band: a faint line over a
    // gradient has letters brighter than the background at one end,
    // darker at the other and invisible in between, all of one value.
    // by value in ascending order: lines of equal score then come out in
    // the same order on every run (a HashMap's order changes per process,
    // and with it the order in which overlapping boxes are filled)
    let mut by_value: BTreeMap<i32, Vec<(Comp, u32, Kind)>> = BTreeMap::new();
    let mut letter_ids = vec![false; plateaus.len()];
    for (id, p) in plateaus.iter().enumerate() {
        let c = p.c;
        let (cw, ch) = (c.x1 - c.x0 + 1, c.y1 - c.y0 + 1);
        let letter = letter_shaped(&c, p.edge_n, 0.0);
        if p.edge_n == 0 || p.v == RULE {
            continue;
        }
        let strong = p.edge_sum >= edge_min * p.edge_n as f32;
        // pieces of small letters (8 px text breaks into strokes of a
        // few pixels): not letters, but they carry a line on
        let piece = !letter && strong && c.n >= 2 && ch <= MAX_H && cw <= MAX_H;
        if !letter && !piece {
            continue;
        }
        let kind = match (letter, strong) {
            (true, true) => Kind::Strong,
            (true, false) => Kind::Weak,
            _ => Kind::Piece,
        };
        by_value.entry(p.v).or_default().push((c, id as u32, kind));
        if letter {
            letter_ids[id] = true;
        }
    }
    // small plateaus that are not letters, by value: where a value makes
    // them all around a line, its "letters" are chance plateaus of a
    // texture (8-bit speckle), not ink
    let mut stray: HashMap<i32, Vec<(u32, u32, u32)>> = HashMap::new();
    for (id, p) in plateaus.iter().enumerate() {
        if p.c.n >= 3 && !letter_ids[id] && p.v != RULE {
            stray
                .entry(p.v)
                .or_default()
                .push((p.c.x0 + p.c.x1, p.c.y0 + p.c.y1, p.c.n));
        }
    }
    let mut lines = Vec::new();
    let mut inked = vec![false; plateaus.len()];
    for (v, mut comps) in by_value {
        let strong: Vec<Comp> = comps
            .iter()
            .filter(|c| c.2 == Kind::Strong)
            .map(|c| c.0)
            .collect();
        if strong.len() < 2 {
            continue;
        }
        // bright ink: most of the strong letters' border is darker
        let (brighter, edges) = comps
            .iter()
            .filter(|c| c.2 == Kind::Strong)
            .map(|c| &plateaus[c.1 as usize])
            .fold((0, 0), |a, p| (a.0 + p.brighter, a.1 + p.edge_n));
        let bright = 2 * brighter < edges;
        comps.sort_by_key(|c| c.0.x0);
        for mut l in group_glyphs(strong, bright) {
            let band = (l.y as f32, (l.y + l.h) as f32);
            let gap = (1.2 * l.glyph_h as f32) as u32 + 2;
            let on_band = |c: &Comp| {
                let mid = (c.y0 + c.y1) as f32 / 2.0;
                mid >= band.0 && mid <= band.1 && c.y1 - c.y0 < l.h + l.h / 2
            };
            // extend to the right, then to the left, over same-valued
            // letters on the band
            let piece_gap = l.glyph_h.max(3);
            let gap_for = |k: Kind| if k == Kind::Piece { piece_gap } else { gap };
            // the line's own letters' size: a faint letter of the line is
            // about as big; the chance plateaus of a texture the ink's
            // value also makes are not (nor, on a line of large letters,
            // is a piece)
            let mut own: Vec<u32> = comps
                .iter()
                .filter(|c| {
                    c.2 == Kind::Strong && c.0.x0 >= l.x && c.0.x1 < l.x + l.w && on_band(&c.0)
                })
                .map(|c| c.0.n)
                .collect();
            own.sort_unstable();
            let own_n = own.get(own.len() / 2).copied().unwrap_or(0);
            let fits = |c: &Comp, k: Kind| match k {
                Kind::Strong => true,
                Kind::Weak => 3 * c.n >= own_n && 2 * (c.y1 - c.y0 + 1) >= l.glyph_h,
                Kind::Piece => l.glyph_h <= 12,
            };
            let (mut x0, mut x1) = (l.x, l.x + l.w - 1);
            for (c, _, k) in comps.iter().filter(|c| on_band(&c.0) && fits(&c.0, c.2)) {
                if c.x0 > x1 && c.x0 <= x1 + gap_for(*k) {
                    x1 = c.x1;
                }
            }
            for (c, _, k) in comps
                .iter()
                .rev()
                .filter(|c| on_band(&c.0) && fits(&c.0, c.2))
            {
                if c.x1 < x0 && c.x1 + gap_for(*k) >= x0 {
                    x0 = c.x0;
                }
            }
            l.x = x0;
            l.w = x1 - x0 + 1;
            // doubled coordinates (centres of boxes)
            let (rx0, rx1) = (
                2 * l.x as i64 - 2 * l.h as i64,
                2 * (l.x + l.w + l.h) as i64,
            );
            let (ry0, ry1) = (2 * l.y as i64 - 4 * l.h as i64, 2 * (l.y + 3 * l.h) as i64);
            let mut around: Vec<u32> = stray.get(&v).map_or(Vec::new(), |s| {
                s.iter()
                    .filter(|&&(cx, cy, _)| {
                        let (cx, cy) = (cx as i64, cy as i64);
                        let inside = cx >= 2 * l.x as i64
                            && cx <= 2 * (l.x + l.w) as i64
                            && cy >= 2 * l.y as i64
                            && cy <= 2 * (l.y + l.h) as i64;
                        !inside && cx >= rx0 && cx <= rx1 && cy >= ry0 && cy <= ry1
                    })
                    .map(|s| s.2)
                    .collect()
            });
            around.sort_unstable();
            let mut sizes: Vec<u32> = comps
                .iter()
                .filter(|(c, _, k)| *k != Kind::Piece && inside(c, &l))
                .map(|c| c.0.n)
                .collect();
            sizes.sort_unstable();
            // as many stray plateaus of the value around as letters, and
            // the letters not clearly bigger than the biggest of them:
            // the texture's chance plateaus, not strokes
            let letter = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
            if around.len() >= sizes.len() && letter < 2 * around.last().copied().unwrap_or(0) {
                continue;
            }
            // small letters of a one-valued ink that the rendering broke
            // into single pixels: carry the line over them (after the
            // texture check, which judges the letters the line has)
            if l.glyph_h <= BRIDGE_H {
                (l.x, x1) = bridge(&keys, w, h, v, &l);
                l.w = x1 - l.x + 1;
            }
            for (c, id, _) in &comps {
                if inside(c, &l) {
                    inked[*id as usize] = true;
                }
            }
            // and the single pixels of the ink the line was bridged over
            for y in l.y as usize..(l.y + l.h) as usize {
                for i in y * w + l.x as usize..y * w + (l.x + l.w) as usize {
                    if keys[i] == v {
                        inked[labels[i] as usize] = true;
                    }
                }
            }
            l.ink = Some(v);
            lines.push(l);
        }
    }
    let (island_lines, island_px) = islands(src, w, h, &keys, &labels, &plateaus, &lines);
    lines.extend(island_lines);
    if lines.is_empty() {
        return (lines, None);
    }
    let px: Vec<u8> = labels
        .iter()
        .zip(&island_px)
        .map(|(&id, &isl)| if inked[id as usize] || isl { 0 } else { 255 })
        .collect();
    (lines, GrayImage::from_raw(w as u32, h as u32, px))
}

/// Top-hat lines of letters at most this tall are checked for one-valued
/// ink ([`one_valued`]).
pub(super) const ONE_VALUED_H: u32 = 8;

/// The one value a small top-hat line's letters are drawn with, if they
/// have one. Why: 8 px text rendered and cut to one value keeps only
/// scattered pixels of its ink, none of whose plateaus is a letter, so
/// this screen never seeds the line, while the top-hat screen groups the
/// same pixels into one (a date on a CR, c102 of the benchmark set). Ink
/// of one value there is what drawn text is and anatomy is not: of the
/// line's ink (`ink`, its polarity's top-hat mask, which also holds the
/// background the smoothed pass took in) one value is three times as
/// common as any other and at least three pixels a letter, and the rows
/// of the line's height above and below hold it at most a quarter as
/// often (a saturated patch or a clipped background makes its value
/// everywhere around).
pub(super) fn one_valued(
    src: &[i32],
    ink: &[bool],
    w: usize,
    h: usize,
    l: &TextLine,
) -> Option<i32> {
    let (x0, x1) = (l.x as usize, ((l.x + l.w) as usize).min(w));
    let (y0, y1) = (l.y as usize, ((l.y + l.h) as usize).min(h));
    let by_count = super::tally(
        (y0..y1)
            .flat_map(|y| y * w + x0..y * w + x1)
            .filter(|&i| ink[i])
            .map(|i| src[i]),
    );
    let (n, v) = *by_count.first()?;
    let next = by_count.get(1).map_or(0, |c| c.0);
    let lh = y1 - y0;
    let around = (y0.saturating_sub(lh)..y0)
        .chain(y1..(y1 + lh).min(h))
        .flat_map(|y| &src[y * w + x0..y * w + x1])
        .filter(|&&k| k == v)
        .count();
    (v != RULE && n >= 3 * next && n >= 3 * l.glyphs.max(2) as usize && 4 * around <= n)
        .then_some(v)
}

/// Lines of letters at most this tall are bridged ([`bridge`]): larger
/// letters keep plateaus of their own.
const BRIDGE_H: u32 = 6;

/// Carries a line of small letters of ink `v` on, to the left and the
/// right, over pixels of exactly that value in its band (see
/// [`carry`]); returns the line's new first and last column. Why: 8 px
/// text, anti-aliased and then cut to one value, keeps only scattered
/// single pixels of its ink; no plateau of those is a letter or even a
/// piece, yet together they are the line (c021, c022 on the must-show
/// set).
fn bridge(keys: &[i32], w: usize, h: usize, v: i32, l: &TextLine) -> (u32, u32) {
    let gap = 2 * l.glyph_h.max(4) as usize;
    let (a, b) = carry(keys, w, h, l, gap, usize::MAX, |k| k == v);
    (a as u32, b as u32)
}

/// Carries a line's box on, to the left and the right, over the columns
/// of its band that hold a pixel `is_ink` takes for its ink, while they
/// follow each other within `gap` columns and stay within `reach` of the
/// box; returns the new first and last column. The ink must be rare off
/// the line: an extension is taken only where the band holds at least
/// three such pixels, and three times as many as the same columns in the
/// line's height of rows above it, and as those below it, so a texture or
/// an edge that makes the value everywhere carries no line.
pub(super) fn carry<T: Copy>(
    px: &[T],
    w: usize,
    h: usize,
    l: &TextLine,
    gap: usize,
    reach: usize,
    is_ink: impl Fn(T) -> bool,
) -> (usize, usize) {
    let (y0, y1) = (l.y as usize, ((l.y + l.h) as usize).min(h));
    let lh = y1 - y0;
    let count = |rows: std::ops::Range<usize>, xa: usize, xb: usize| {
        rows.flat_map(|y| &px[y * w + xa..y * w + xb])
            .filter(|&&k| is_ink(k))
            .count()
    };
    let rare = |xa: usize, xb: usize| {
        let on = count(y0..y1, xa, xb);
        let above = count(y0.saturating_sub(lh)..y0, xa, xb);
        let below = count(y1..(y1 + lh).min(h), xa, xb);
        on >= 3 && on >= 3 * above.max(below)
    };
    let inked = |x: usize| (y0..y1).any(|y| is_ink(px[y * w + x]));
    // the last inked column reached from `from`, stepping by `step`
    let run = |from: usize, step: isize| {
        let (mut last, mut x) = (from, from);
        while let Some(n) = x
            .checked_add_signed(step)
            .filter(|&n| n < w && n.abs_diff(last) <= gap && n.abs_diff(from) <= reach)
        {
            x = n;
            if inked(x) {
                last = x;
            }
        }
        last
    };
    let (x0, x1) = (l.x as usize, (l.x + l.w - 1) as usize);
    let (left, right) = (run(x0, -1), run(x1, 1));
    let a = if left < x0 && rare(left, x0) {
        left
    } else {
        x0
    };
    let b = if right > x1 && rare(x1 + 1, right + 1) {
        right
    } else {
        x1
    };
    (a, b)
}

/// Whether a plateau or island of `edge_n` border pixels has the shape of
/// a letter; `blur` pixels of blur widen each side of a stroke.
fn letter_shaped(c: &Comp, edge_n: u32, blur: f32) -> bool {
    let (cw, ch) = (c.x1 - c.x0 + 1, c.y1 - c.y0 + 1);
    (MIN_H..=MAX_H).contains(&ch)
        // small letters touch: a date of 8 px text can be one plateau
        && cw <= if ch <= 8 { ch * 9 } else if ch <= 12 { ch * 6 } else { ch * 3 + 2 }
        && c.n >= 4
        && (c.n as f32) >= 0.08 * (cw * ch) as f32
        // a solid block is a patch of background, not a stroke
        && (c.n as f32) <= 0.85 * (cw * ch) as f32 + 2.0 * cw.min(ch) as f32
        // strokes are thin: pixels per border pixel is about half the
        // stroke width, which letters keep under an eighth of their
        // height (a pocket of air clipped to one value is a blob)
        && (c.n as f32) <= ((ch as f32 / 8.0).max(1.5) + blur) * edge_n as f32
}

/// Whether a plateau's box lies inside a line's.
fn inside(c: &Comp, l: &TextLine) -> bool {
    c.x0 >= l.x && c.x1 < l.x + l.w && c.y0 >= l.y && c.y1 < l.y + l.h
}

/// What island lines carry as [`TextLine::ink`]: their letters are not of
/// one value, but are exactly known (the pixels of the island).
pub const ISLAND: i32 = i32::MIN + 1;

/// A background plateau is at least this share of the frame (1/256),
/// and never under this many pixels.
const BACKGROUND_MIN: usize = 512;

/// Lines of **islands**: letters lying wholly on a flat background (the
/// air of a CT clipped to one value, the black of an ultrasound screen)
/// whose own pixels are not of one value. Why: lossy compression blurs a
/// letter of one value into a few neighbouring ones (the flat screen
/// loses it) while a clipped background stays exactly flat; and faint
/// text a few levels above black is lost by the top-hat screen in the
/// codec's ripples. Everything that is not background and touches only
/// background is a candidate; letter-shaped ones are grouped into lines
/// as elsewhere. Returns the lines (those not already found as flat
/// lines) and, per pixel, whether it is ink of one of them.
fn islands(
    src: &[i32],
    w: usize,
    h: usize,
    keys: &[i32],
    labels: &[u32],
    plateaus: &[Plateau],
    flat: &[TextLine],
) -> (Vec<TextLine>, Vec<bool>) {
    let bg_min = (w * h / 256).max(BACKGROUND_MIN) as u32;
    // not background (cut rules count as background: they separate)
    let fg: Vec<bool> = labels
        .iter()
        .zip(keys)
        .map(|(&id, &k)| k != RULE && plateaus[id as usize].c.n < bg_min)
        .collect();
    let mut ink = vec![false; w * h];
    if fg.iter().all(|&f| f) {
        return (Vec::new(), ink);
    }
    // the islands: runs of non-background pixels, joined 8-connected,
    // with their borders on the background
    let (runs, row_start) = mask_runs(&fg, w, h);
    let roots = union_runs(&runs, &row_start, |_, _| true);
    let (mut isl, of_run) = gather(&runs, &roots, |_| 0);
    for (&(y, x0, x1), &id) in runs.iter().zip(&of_run) {
        let row = y as usize * w;
        for i in row + x0 as usize..row + x1 as usize {
            isl[id as usize].add_border(src, w, h, i, |j| !fg[j]);
        }
    }
    // letters: letter-shaped, a step of two levels somewhere and one on
    // average (text a few levels above black is all a window may show)
    let letter: Vec<bool> = isl
        .iter()
        .map(|p| {
            p.edge_n > 0
                && p.peak >= 2
                && p.edge_sum >= p.edge_n as f32
                // a lossy codec's blur widens strokes by about a pixel
                && letter_shaped(&p.c, p.edge_n, 1.0)
        })
        .collect();
    let mut lines = Vec::new();
    for bright in [true, false] {
        let glyphs: Vec<Comp> = isl
            .iter()
            .zip(&letter)
            .filter(|(p, &l)| l && (2 * p.brighter < p.edge_n) == bright)
            .map(|(p, _)| p.c)
            .collect();
        for mut l in group_glyphs(glyphs, bright) {
            if flat
                .iter()
                .any(|f| covered(f, &l) >= 0.5 || covered(&l, f) >= 0.5)
            {
                continue;
            }
            l.ink = Some(ISLAND);
            lines.push(l);
        }
    }
    // the ink of the lines' letters, for OCR
    let inked: Vec<bool> = isl
        .iter()
        .zip(&letter)
        .map(|(p, &l)| l && lines.iter().any(|line| inside(&p.c, line)))
        .collect();
    for (&(y, x0, x1), &id) in runs.iter().zip(&of_run) {
        if inked[id as usize] {
            let row = y as usize * w;
            ink[row + x0 as usize..row + x1 as usize].fill(true);
        }
    }
    (lines, ink)
}

/// Thin straight rules (a calliper line, a scale, the frame of a
/// viewport): at least this long, at most [`RULE_THICK`] thick.
const RULE_LEN: usize = 48;
/// See [`RULE_LEN`].
const RULE_THICK: usize = 3;
/// What rule pixels are labelled with: no stored value is this.
const RULE: i32 = i32::MIN;

/// The values to label plateaus on: the frame's, with the pixels of thin
/// straight rules set apart ([`RULE`]). Why: a line of text drawn across
/// or against a rule of its own value (an ultrasound's caption touching
/// the sector's frame) merges with it into one plateau far too big for a
/// letter, and the whole line is lost. Cut off the rule, the letters
/// stand alone again.
fn cut_rules(src: &[i32], w: usize, h: usize) -> Vec<i32> {
    rule_pixels(src, w, h)
        .iter()
        .zip(src)
        .map(|(&r, &v)| if r { RULE } else { v })
        .collect()
}

/// The pixels of thin straight rules in a frame of values: runs of one value at least [`RULE_LEN`] long, across which that
/// value is at most [`RULE_THICK`] thick. Where a letter's stroke crosses
/// the rule the value runs on across it, so those pixels stay with the
/// letter.
fn rule_pixels(src: &[i32], w: usize, h: usize) -> Vec<bool> {
    let mut rule = vec![false; src.len()];
    // how far the value at (x, y) runs across, capped past RULE_THICK
    let across = |x: usize, y: usize, vertical: bool| {
        let v = src[y * w + x];
        let at = |k: usize| {
            if vertical {
                src[k * w + x]
            } else {
                src[y * w + k]
            }
        };
        let (i, n) = if vertical { (y, h) } else { (x, w) };
        let back = (0..i)
            .rev()
            .take_while(|&k| at(k) == v)
            .take(RULE_THICK)
            .count();
        let fwd = (i + 1..n)
            .take_while(|&k| at(k) == v)
            .take(RULE_THICK)
            .count();
        back + fwd + 1
    };
    for vertical in [false, true] {
        // along rows (horizontal rules) or along columns (vertical ones)
        let (lines, len) = if vertical { (w, h) } else { (h, w) };
        for a in 0..lines {
            let at = |k: usize| {
                if vertical {
                    src[k * w + a]
                } else {
                    src[a * w + k]
                }
            };
            let mut k = 0;
            while k < len {
                let s = k;
                while k < len && at(k) == at(s) {
                    k += 1;
                }
                if k - s < RULE_LEN {
                    continue;
                }
                for b in s..k {
                    let (x, y) = if vertical { (a, b) } else { (b, a) };
                    if across(x, y, !vertical) <= RULE_THICK {
                        rule[y * w + x] = true;
                    }
                }
            }
        }
    }
    rule
}

/// The 5th to 95th percentile spread of a frame's values (every 7th
/// pixel).
fn spread(src: &[i32]) -> f32 {
    let mut v: Vec<i32> = src.iter().step_by(7).copied().collect();
    v.sort_unstable();
    if v.is_empty() {
        return 0.0;
    }
    (v[v.len() * 95 / 100] as f32) - (v[v.len() / 20] as f32)
}

/// Labels the plateaus: per pixel, the index of its plateau in the
/// returned list.
fn label(src: &[i32], w: usize, h: usize) -> (Vec<u32>, Vec<Plateau>) {
    // runs of one value: (y, x0, x1 exclusive)
    let mut runs: Vec<(u32, u32, u32)> = Vec::new();
    let mut row_start = Vec::with_capacity(h + 1);
    for y in 0..h {
        row_start.push(runs.len());
        let row = &src[y * w..(y + 1) * w];
        let mut x = 0;
        while x < w {
            let s = x;
            while x < w && row[x] == row[s] {
                x += 1;
            }
            runs.push((y as u32, s as u32, x as u32));
        }
    }
    row_start.push(runs.len());
    let value = |r: &(u32, u32, u32)| src[r.0 as usize * w + r.1 as usize];
    let roots = union_runs(&runs, &row_start, |a, b| value(&runs[a]) == value(&runs[b]));
    let (plateaus, of_run) = gather(&runs, &roots, |i| value(&runs[i]));
    let mut labels = vec![0u32; w * h];
    for (&(y, x0, x1), &id) in runs.iter().zip(&of_run) {
        let row = y as usize * w;
        labels[row + x0 as usize..row + x1 as usize].fill(id);
    }
    (labels, plateaus)
}

/// The components of joined runs (`roots` from [`union_runs`]) as
/// plateaus with their boxes and pixel counts, valued by `value` (of a
/// run index), and the plateau of each run.
fn gather(
    runs: &[(u32, u32, u32)],
    roots: &[u32],
    value: impl Fn(usize) -> i32,
) -> (Vec<Plateau>, Vec<u32>) {
    let mut index = vec![u32::MAX; runs.len()];
    let mut plateaus: Vec<Plateau> = Vec::new();
    let mut of_run = vec![0u32; runs.len()];
    for (i, &(y, x0, x1)) in runs.iter().enumerate() {
        let root = roots[i] as usize;
        if index[root] == u32::MAX {
            index[root] = plateaus.len() as u32;
            plateaus.push(Plateau {
                c: Comp {
                    x0,
                    y0: y,
                    x1: x1 - 1,
                    y1: y,
                    n: 0,
                },
                v: value(i),
                edge_sum: 0.0,
                edge_n: 0,
                brighter: 0,
                peak: 0,
            });
        }
        let id = index[root];
        of_run[i] = id;
        let c = &mut plateaus[id as usize].c;
        c.x0 = c.x0.min(x0);
        c.x1 = c.x1.max(x1 - 1);
        c.y0 = c.y0.min(y);
        c.y1 = c.y1.max(y);
        c.n += x1 - x0;
    }
    (plateaus, of_run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::GrayImage;

    /// A deterministic texture (hash noise of amplitude `amp` around
    /// `level`), like speckle.
    fn texture(w: u32, h: u32, level: i32, amp: i32) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            let mut s = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663)) as u64;
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let r = ((s >> 33) % (2 * amp as u64 + 1)) as i32 - amp;
            image::Luma([(level + r).clamp(0, 255) as u8])
        })
    }

    #[test]
    fn a_row_of_one_valued_blobs_is_not_text() {
        // pockets of air clipped to one value, side by side: letter-sized
        // and aligned, but solid, not strokes
        let (w, h) = (200usize, 60usize);
        let tex = texture(w as u32, h as u32, 120, 30);
        let mut v: Vec<i32> = tex.as_raw().iter().map(|&b| i32::from(b)).collect();
        for k in 0..5 {
            let (cx, cy) = (20 + 30 * k as i64, 30i64);
            for y in 0..h as i64 {
                for x in 0..w as i64 {
                    if (x - cx).pow(2) + (y - cy).pow(2) <= 81 {
                        v[y as usize * w + x as usize] = 0;
                    }
                }
            }
        }
        assert!(flat_lines(&v, w, h).0.is_empty());
    }

    #[test]
    fn blurred_text_on_flat_air_is_found_as_islands() {
        // faint text a few levels above air clipped to 0, blurred as a
        // lossy codec blurs it: no two of a letter's pixels need share a
        // value, but the air around stays exactly 0
        let mut img = GrayImage::new(300, 60);
        let b = crate::text::draw_text(&mut img, "MRN 5065815", 10, 15, 18.0, 12).unwrap();
        let (w, h) = (300usize, 60usize);
        let raw: Vec<i32> = img.as_raw().iter().map(|&b| i32::from(b)).collect();
        let blurred: Vec<i32> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let mut s = 0;
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    s += raw[(y + dy).min(h - 1) * w + (x + dx).min(w - 1)];
                }
                (s + 1) / 4
            })
            .collect();
        let (lines, ink) = flat_lines(&blurred, w, h);
        let l = lines
            .iter()
            .find(|l| l.ink == Some(ISLAND))
            .unwrap_or_else(|| panic!("{lines:?}"));
        assert!(
            l.x <= b.0 + 3 && l.x + l.w + 3 >= b.0 + b.2 / 2,
            "{l:?} vs {b:?}"
        );
        assert!(l.bright);
        assert!(ink.is_some());
    }

    #[test]
    fn text_across_a_rule_of_its_own_value_is_found() {
        // white caption on black, a one-pixel white rule through it (the
        // frame of a viewport): letters and rule are one plateau until the
        // rule is cut off
        let mut img = GrayImage::new(300, 60);
        let b = crate::text::draw_text(&mut img, "DOB 04/16/1997", 10, 15, 24.0, 255).unwrap();
        for p in img.pixels_mut() {
            if p.0[0] > 0 {
                p.0[0] = 255;
            }
        }
        let mid = b.1 + b.3 / 2;
        for x in 0..300 {
            img.put_pixel(x, mid, image::Luma([255]));
        }
        let v: Vec<i32> = img.as_raw().iter().map(|&b| i32::from(b)).collect();
        let (lines, _) = flat_lines(&v, 300, 60);
        let covered: u32 = lines
            .iter()
            .filter(|l| l.ink == Some(255))
            .map(|l| l.w)
            .max()
            .unwrap_or(0);
        assert!(covered * 10 >= b.2 * 8, "{lines:?} vs {b:?}");
    }

    /// A line of small text of value 250 on texture, its right half cut
    /// to single pixels (as 8 px text, anti-aliased and then cut to one
    /// value, renders) or, without `tail`, left out and the texture there
    /// one that makes the value 250 too: the line and where its whole
    /// text, and its left half, end.
    fn broken_small_text(tail: bool) -> (Vec<i32>, u32, u32) {
        let (w, h) = (240u32, 40u32);
        let mut ink = GrayImage::new(w, h);
        let b = crate::text::draw_text(&mut ink, "HARRINGTON, GREGORY", 10, 14, 9.0, 255).unwrap();
        let half = b.0 + b.2 / 2;
        let (dark, light) = (texture(w, h, 100, 30), texture(w, h, 245, 5));
        let tex = |x: u32, y: u32| {
            let t = if tail || x < half + 2 { &dark } else { &light };
            i32::from(t.get_pixel(x, y).0[0])
        };
        let v = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let on = ink.get_pixel(x, y).0[0] >= 128;
                let kept = x < half || (tail && x % 3 == 0 && y % 2 == 0);
                if on && kept {
                    250
                } else {
                    tex(x, y)
                }
            })
            .collect();
        (v, b.0 + b.2, half)
    }

    #[test]
    fn small_text_broken_into_single_pixels_is_bridged() {
        let (v, end, _) = broken_small_text(true);
        let (lines, _) = flat_lines(&v, 240, 40);
        let l = lines
            .iter()
            .find(|l| l.ink == Some(250))
            .expect("the line is found");
        assert!(l.x + l.w + 3 >= end, "{l:?} vs {end}");
        // where the texture itself makes the value, nothing is bridged:
        // the line ends where its letters do
        let (v, _, half) = broken_small_text(false);
        let (lines, _) = flat_lines(&v, 240, 40);
        for l in lines.iter().filter(|l| l.ink == Some(250)) {
            assert!(l.x + l.w <= half + 4, "{l:?} vs {half}");
        }
    }

    #[test]
    fn finds_faint_flat_text_on_texture_and_nothing_in_texture_alone() {
        let tex = texture(256, 96, 100, 20);
        let values = |img: &GrayImage| {
            img.as_raw()
                .iter()
                .map(|&v| i32::from(v))
                .collect::<Vec<_>>()
        };
        assert!(flat_lines(&values(&tex), 256, 96).0.is_empty());
        let mut img = tex.clone();
        // 15 levels above the mean, inside the texture's own spread: no
        // top-hat separates it, but every stroke pixel holds 115
        let b = crate::text::draw_text(&mut img, "ID 48213377", 20, 30, 16.0, 115).unwrap();
        // drawn without anti-aliasing, as annotations are burned in
        for (x, y, p) in img.enumerate_pixels_mut() {
            let t = tex.get_pixel(x, y).0[0];
            if p.0[0] != t {
                p.0[0] = 115;
            }
        }
        let (lines, ink) = flat_lines(&values(&img), 256, 96);
        assert!(ink.is_some());
        let l = lines
            .iter()
            .find(|l| l.ink == Some(115))
            .expect("the flat line is found");
        assert!(
            l.x <= b.0 + 3 && l.x + l.w + 3 >= b.0 + b.2,
            "{l:?} vs {b:?}"
        );
        assert!(l.bright);
    }
}
