//! OCR round trip: names, MRNs and dates drawn into real corpus frames are
//! read back. Measures recall by text size and contrast.
//!
//! Matching: a planted token counts as read when an OCR word, upper-cased
//! with everything but letters and digits removed, contains it. A second,
//! lenient count also folds the confusions O/0 and I/l/1 (Tesseract
//! cannot tell them apart without context in IDs); the assertion uses the
//! strict count.
#![cfg(feature = "ocr")]
#![allow(clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use veil_pixels::ocr::Ocr;
use veil_pixels::text::{draw_text, measure_text};
use veil_pixels::GrayImage;

const SURNAMES: &[&str] = &[
    "HARTWELL",
    "OKAFOR",
    "LINDQVIST",
    "MORENO",
    "TANAKA",
    "BRANDT",
    "KOWALSKI",
    "FERREIRA",
    "NAKAMURA",
    "DUBOIS",
    "ABERNATHY",
    "PETROV",
    "GALLAGHER",
    "SANTOS",
    "WEXLER",
    "QUINTERO",
];
const GIVEN: &[&str] = &[
    "MARGARET", "JOHN", "AMARA", "PIETER", "ELENA", "WALTER", "HIROSHI", "GRACE", "RUFUS",
    "INGRID", "TOMAS", "BEATRIZ", "OLIVER", "SOFIA", "YUSUF", "HELGA",
];

fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect()
}

/// A tiny deterministic generator (no dependency needed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

/// Three lines (name, MRN, date) for one planting; returns the lines and
/// the tokens to find.
fn lines(rng: &mut Lcg) -> (Vec<String>, Vec<String>) {
    let (s, g) = (rng.pick(SURNAMES), rng.pick(GIVEN));
    let mrn = format!("{:08}", rng.next() % 100_000_000);
    let (d, m, y) = (
        1 + rng.next() % 28,
        1 + rng.next() % 12,
        1930 + rng.next() % 90,
    );
    let date = if rng.next() % 2 == 0 {
        format!("{d:02}/{m:02}/{y}")
    } else {
        format!("{y}-{m:02}-{d:02}")
    };
    (
        vec![
            format!("{s}, {g}"),
            format!("MRN {mrn}"),
            format!("DOB {date}"),
        ],
        vec![s.to_string(), g.to_string(), mrn, date],
    )
}

/// The top-left corner, inside `area` (x0, y0, x1, y1), of the `tw`×`th`
/// box (plus a margin) with the least gray-level variation that overlaps
/// none of `placed`.
fn quiet_spot(
    img: &GrayImage,
    area: (u32, u32, u32, u32),
    tw: u32,
    th: u32,
    placed: &[(u32, u32, u32, u32)],
) -> (u32, u32) {
    let m = 4;
    let (w, h) = img.dimensions();
    let mut best = (f64::MAX, area.0 + m, area.1 + m);
    let x_end = area.2.min(w).saturating_sub(tw + m);
    let y_end = area.3.min(h).saturating_sub(th + m);
    for y in (area.1 + m..=y_end.max(area.1 + m)).step_by(6) {
        for x in (area.0 + m..=x_end.max(area.0 + m)).step_by(10) {
            let hit = placed.iter().any(|p| {
                x < p.0 + p.2 + m && p.0 < x + tw + m && y < p.1 + p.3 + m && p.1 < y + th + m
            });
            if hit {
                continue;
            }
            let (bx, by, bw, bh) = (x - m, y - m, tw + 2 * m, th + 2 * m);
            let mu = mean(img, bx, by, bw, bh);
            let (mut var, mut n) = (0.0f64, 0.0f64);
            for yy in (by..(by + bh).min(h)).step_by(2) {
                for xx in (bx..(bx + bw).min(w)).step_by(2) {
                    let d = img.get_pixel(xx, yy).0[0] as f64 - mu;
                    var += d * d;
                    n += 1.0;
                }
            }
            let var = var / n.max(1.0);
            if var < best.0 {
                best = (var, x, y);
            }
        }
    }
    (best.1, best.2)
}

/// Mean of the image over a box.
fn mean(img: &GrayImage, x: u32, y: u32, w: u32, h: u32) -> f64 {
    let (mut s, mut n) = (0.0, 0.0);
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            s += img.get_pixel(xx, yy).0[0] as f64;
            n += 1.0;
        }
    }
    if n == 0.0 {
        0.0
    } else {
        s / n
    }
}

#[derive(Default, Clone, Copy)]
struct Tally {
    planted: u32,
    strict: u32,
    lenient: u32,
}

#[test]
fn planted_text_is_read_back() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let mut ocr = Ocr::new().expect("tesseract with English data");
    // (file, frame): 16-bit CT (with real burned-in text), 16-bit MR, US palette, RGB, multi-frame
    let picks = [
        ("CT-MONO2-16-ankle.dcm", 0),
        ("MR-SIEMENS-DICOM-WithOverlays.dcm", 0),
        ("US-PAL-8-10x-echo.dcm", 3),
        ("data__US1_UNCR.dcm", 0),
        ("ultrasound-multiframe.dcm", 5),
    ];
    let sizes = [12.0f32, 20.0, 32.0];
    let mut rng = Lcg(20240611);
    // [size][low contrast]
    let mut tally = [[Tally::default(); 2]; 3];
    let mut time_512 = (Duration::ZERO, 0u32);
    let mut missed = Vec::new();
    for (file, frame) in picks {
        let path = common::find(&corpus, file);
        let frames = veil_pixels::decode_frames_limit(&path, frame + 1).unwrap();
        let base = &frames[frame as usize].image;
        let (w, h) = base.dimensions();
        for (si, size) in sizes.iter().enumerate() {
            for low in [false, true] {
                let mut img = base.clone();
                let (text, tokens) = lines(&mut rng);
                // near the top-left corner, the middle, the bottom-right
                // corner: on the quietest spot there, so that planted text
                // does not land on the frame's own burned-in text
                let mut placed: Vec<(u32, u32, u32, u32)> = Vec::new();
                for (k, line) in text.iter().enumerate() {
                    let (tw, th) = measure_text(line, *size).unwrap();
                    let area = match k {
                        0 => (0, 0, w / 2, h / 4),
                        1 => (w / 4, h / 3, w / 2, h * 2 / 3),
                        _ => (w / 2, h * 3 / 4, w, h),
                    };
                    let (x, y) = quiet_spot(&img, area, tw, th, &placed);
                    placed.push((x, y, tw, th));
                    // Text stands out from what is under it: white on
                    // dark, black on bright; low contrast is 40 gray
                    // levels from the local mean.
                    let bg = mean(&img, x, y, tw, th);
                    let value = match (low, bg < 128.0) {
                        (false, true) => 255,
                        (false, false) => 0,
                        (true, true) => (bg + 40.0) as u8,
                        (true, false) => (bg - 40.0) as u8,
                    };
                    draw_text(&mut img, line, x, y, *size, value).unwrap();
                }
                let t0 = Instant::now();
                let words = ocr.words(&img).unwrap();
                if (w, h) == (512, 512) {
                    time_512.0 += t0.elapsed();
                    time_512.1 += 1;
                }
                let read: Vec<String> = words.iter().map(|w| norm(&w.text)).collect();
                let t = &mut tally[si][low as usize];
                for tok in &tokens {
                    let n = norm(tok);
                    t.planted += 1;
                    if read.iter().any(|r| r.contains(&n)) {
                        t.strict += 1;
                        t.lenient += 1;
                    } else {
                        if read.iter().any(|r| fold(r).contains(&fold(&n))) {
                            t.lenient += 1;
                        }
                        missed.push(format!("{file} {size}px low={low}: {tok}"));
                    }
                }
            }
        }
    }
    for (si, size) in sizes.iter().enumerate() {
        for low in [false, true] {
            let t = tally[si][low as usize];
            eprintln!(
                "{size:>4}px {:<13} recall {:>3}/{:<3} = {:5.1}%  (with O/0, I/l/1 folded: {:5.1}%)",
                if low { "low contrast" } else { "high contrast" },
                t.strict,
                t.planted,
                100.0 * t.strict as f64 / t.planted as f64,
                100.0 * t.lenient as f64 / t.planted as f64,
            );
        }
    }
    if time_512.1 > 0 {
        eprintln!(
            "OCR time per 512x512 frame: {:.2} s (mean of {})",
            time_512.0.as_secs_f64() / time_512.1 as f64,
            time_512.1
        );
    }
    for m in &missed {
        eprintln!("missed: {m}");
    }
    let sum = |f: &dyn Fn(&Tally) -> u32| -> u32 { tally.iter().flatten().map(f).sum() };
    let recall = sum(&|t| t.strict) as f64 / sum(&|t| t.planted) as f64;
    eprintln!("overall recall {recall:.3}");
    // A regression floor, not the goal: the target is 95% at 12 px and
    // up; today high contrast reaches 80-95%, low contrast 55-70% (text
    // half over bright anatomy is the main miss).
    assert!(
        recall >= 0.70,
        "overall recall {recall:.3} below the 70% floor"
    );
    let high = tally
        .iter()
        .map(|t| t[0])
        .fold((0, 0), |a, t| (a.0 + t.strict, a.1 + t.planted));
    assert!(
        high.0 as f64 >= 0.80 * high.1 as f64,
        "high-contrast recall {}/{} below the 80% floor",
        high.0,
        high.1
    );
}
