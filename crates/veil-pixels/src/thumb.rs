//! Redacted thumbnails for self-contained reports.

use image::codecs::png::PngEncoder;
use image::imageops::FilterType;
use image::{GrayImage, ImageEncoder, Luma};

/// A PNG of `img` scaled so its longer side is at most `max_side` (never
/// enlarged), with every box `(x, y, width, height)` (in `img`'s
/// coordinates) filled black.
///
/// Why boxes are filled twice, before and after scaling: scaling blends
/// neighbouring pixels, so text next to a box edge could bleed back into
/// the thumbnail; filling the scaled box (rounded outwards) as well makes
/// sure nothing of the text survives, so a report showing the thumbnail
/// carries no readable PHI.
pub fn thumbnail_png(
    img: &GrayImage,
    max_side: u32,
    black_boxes: &[(u32, u32, u32, u32)],
) -> Vec<u8> {
    let mut src = img.clone();
    for b in black_boxes {
        fill(&mut src, b.0 as f64, b.1 as f64, b.2 as f64, b.3 as f64);
    }
    let (w, h) = src.dimensions();
    let side = w.max(h).max(1);
    let max_side = max_side.max(1);
    let out = if side > max_side {
        let s = max_side as f64 / side as f64;
        let (tw, th) = (
            ((w as f64 * s).round() as u32).max(1),
            ((h as f64 * s).round() as u32).max(1),
        );
        let mut t = image::imageops::resize(&src, tw, th, FilterType::Triangle);
        let (sx, sy) = (tw as f64 / w as f64, th as f64 / h as f64);
        for b in black_boxes {
            fill(
                &mut t,
                b.0 as f64 * sx,
                b.1 as f64 * sy,
                b.2 as f64 * sx,
                b.3 as f64 * sy,
            );
        }
        t
    } else {
        src
    };
    let mut png = Vec::new();
    // Writing to a Vec cannot fail, and the buffer matches its dimensions.
    let _ = PngEncoder::new(&mut png).write_image(
        out.as_raw(),
        out.width(),
        out.height(),
        image::ExtendedColorType::L8,
    );
    png
}

/// Fills a box, rounded outwards and clipped to the image.
fn fill(img: &mut GrayImage, x: f64, y: f64, w: f64, h: f64) {
    let (iw, ih) = img.dimensions();
    let x0 = (x.floor().max(0.0) as u32).min(iw);
    let y0 = (y.floor().max(0.0) as u32).min(ih);
    let x1 = ((x + w).ceil().max(0.0) as u32).min(iw);
    let y1 = ((y + h).ceil().max(0.0) as u32).min(ih);
    for yy in y0..y1 {
        for xx in x0..x1 {
            img.put_pixel(xx, yy, Luma([0]));
        }
    }
}
