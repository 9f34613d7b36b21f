//! Prints, for frame N of a file, every candidate text line the screen
//! finds and what OCR reads in it, and writes the frame with the lines
//! outlined: for looking at misses and false alarms by eye.
#![allow(clippy::print_stdout)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let f = veil_io::read(std::path::Path::new(&args[1])).expect("read");
    let out = std::path::Path::new(&args[2]);
    let n: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut r = veil_pixels::FrameReader::new(&f).expect("frames");
    let fr = r.frame(n).expect("frame");
    let scr = veil_pixels::clean::detect::screen_values(&fr.image, fr.values.as_deref());
    let lines = scr.lines.clone();
    let mut img = fr.image.clone();
    let mut ocr = veil_pixels::ocr::Ocr::new().expect("ocr");
    for l in &lines {
        let words = ocr
            .read_line_polarity(
                &fr.image,
                (l.x, l.y, l.w, l.h),
                l.glyph_h,
                l.bright,
                scr.flat_ink.as_ref().filter(|_| l.ink.is_some()),
            )
            .expect("ocr");
        let t: Vec<String> = words
            .iter()
            .map(|w| format!("{}({:.0})", w.text, w.confidence))
            .collect();
        println!("{} {:?} {:?}", describe(l), l.ink, t);
        for x in l.x..(l.x + l.w).min(img.width()) {
            img.put_pixel(x, l.y, image::Luma([128]));
            img.put_pixel(x, (l.y + l.h).min(img.height() - 1), image::Luma([128]));
        }
    }
    for l in veil_pixels::clean::band::band_lines(&fr.image) {
        println!("band {}", describe(&l));
    }
    // optional crop X Y W H (scaled 3x) for a closer look
    if let [x, y, w, h] = args.get(4..8).unwrap_or(&[]) {
        let p = |s: &String| s.parse::<u32>().expect("number");
        let c = image::imageops::crop_imm(&img, p(x), p(y), p(w), p(h)).to_image();
        img = image::imageops::resize(&c, p(w) * 3, p(h) * 3, image::imageops::FilterType::Nearest);
    }
    if let [x, y, w, h] = args.get(4..8).unwrap_or(&[]) {
        let p = |s: &String| s.parse::<u32>().expect("number");
        for g in veil_pixels::clean::detect::glyph_candidates(&fr.image) {
            if g.0 >= p(x) && g.1 >= p(y) && g.2 < p(x) + p(w) && g.3 < p(y) + p(h) {
                println!("glyph {g:?}");
            }
        }
    }
    if std::env::var_os("DUMP").is_some() {
        if let [x, y, w, h] = args.get(4..8).unwrap_or(&[]) {
            let p = |s: &String| s.parse::<u32>().expect("number");
            for yy in p(y)..p(y) + p(h) {
                let row: Vec<String> = (p(x)..p(x) + p(w).min(40))
                    .map(|xx| match &fr.values {
                        Some(v) if std::env::var_os("RAW").is_some() => {
                            format!("{:6}", v[(yy * fr.image.width() + xx) as usize])
                        }
                        _ => format!("{:3}", fr.image.get_pixel(xx, yy).0[0]),
                    })
                    .collect();
                println!("{}", row.join(""));
            }
        }
    }
    if std::env::var_os("CLEAN").is_some() {
        let req = veil_pixels::clean::CleanRequest {
            pixel_data: true,
            mode: veil_pixels::clean::TextMode::All,
            ..Default::default()
        };
        let out = veil_pixels::clean::clean(&f, &req).expect("clean");
        for b in out.found.iter().filter(|b| b.frame.is_none_or(|x| x == n)) {
            println!("box {} {} {}x{} {}", b.x, b.y, b.w, b.h, b.why);
        }
    }
    let png = veil_pixels::thumbnail_png(&img, 4096, &[]);
    veil_io::atomic::write_all(&out.join("debug.png"), &png).expect("write");
}

/// A line's box, glyph count, score and polarity, in one column layout.
fn describe(l: &veil_pixels::clean::detect::TextLine) -> String {
    format!(
        "{:4} {:4} {:4}x{:3} g{:2} s{:.2} {}",
        l.x,
        l.y,
        l.w,
        l.h,
        l.glyphs,
        l.score,
        if l.bright { "B" } else { "D" }
    )
}
