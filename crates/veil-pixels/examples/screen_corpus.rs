//! Runs the text-line screen over every frame of a folder and prints, per
//! modality, frames seen, candidate lines and time: for tuning the
//! screen's precision on real images (which mostly hold no text).
#![allow(clippy::print_stdout)]
use std::collections::BTreeMap;
use std::time::Instant;

fn main() {
    let args: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let files = veil_io::walk(&args).expect("walk");
    let mut stats: BTreeMap<String, (u32, u32, f64, u32)> = BTreeMap::new();
    for p in files {
        let Ok(f) = veil_io::read(&p) else { continue };
        let modality = f
            .dataset
            .ascii(veil_core::Tag(0x0008, 0x0060))
            .unwrap_or_default();
        let Ok(mut r) = veil_pixels::FrameReader::new(&f) else {
            continue;
        };
        let n = r.frame_count().min(8);
        for i in 0..n {
            let Ok(fr) = r.frame(i) else { break };
            let t = Instant::now();
            let lines = veil_pixels::clean::detect::text_lines(&fr.image);
            let dt = t.elapsed().as_secs_f64();
            let e = stats.entry(modality.clone()).or_default();
            e.0 += 1;
            e.1 += lines.len() as u32;
            e.2 += dt;
            e.3 += u32::from(!lines.is_empty());
            if let (Some(dir), false) = (std::env::var_os("PNG_DIR"), lines.is_empty()) {
                let name = format!("{modality}-{:03}-{i}.png", e.0);
                let png = outline(&fr.image, &lines);
                veil_io::atomic::write_all(&std::path::Path::new(&dir).join(name), &png)
                    .expect("write");
            }
            if std::env::var_os("SHOW").is_some() && !lines.is_empty() {
                println!(
                    "{modality} {}x{} lines {:?}",
                    fr.image.width(),
                    fr.image.height(),
                    lines
                        .iter()
                        .map(|l| (l.x, l.y, l.w, l.h, l.glyphs, (l.score * 100.0) as u32))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
    for (m, (frames, lines, secs, with)) in stats {
        println!(
            "{m:4} frames {frames:5} with-lines {with:5} lines {lines:6} ms/frame {:.2}",
            secs * 1000.0 / frames.max(1) as f64
        );
    }
}

/// With `PNG_DIR` set, frames with candidates are written there with the
/// candidate boxes outlined (gray 128), for looking at false positives.
#[allow(dead_code)]
fn outline(
    img: &veil_pixels::GrayImage,
    lines: &[veil_pixels::clean::detect::TextLine],
) -> Vec<u8> {
    let mut img = img.clone();
    for l in lines {
        for x in l.x..(l.x + l.w).min(img.width()) {
            img.put_pixel(x, l.y, image::Luma([128]));
            img.put_pixel(x, (l.y + l.h - 1).min(img.height() - 1), image::Luma([128]));
        }
        for y in l.y..(l.y + l.h).min(img.height()) {
            img.put_pixel(l.x, y, image::Luma([128]));
            img.put_pixel((l.x + l.w - 1).min(img.width() - 1), y, image::Luma([128]));
        }
    }
    veil_pixels::thumbnail_png(&img, 4096, &[])
}
