//! Quality-control pictures of a defacing, for a person to check.

/// Encodes an 8-bit gray image as PNG.
pub fn png_gray(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    encode(width, height, pixels, image::ExtendedColorType::L8)
}

/// Encodes an 8-bit RGB image (3 bytes a pixel) as PNG.
pub fn png_rgb(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    encode(width, height, pixels, image::ExtendedColorType::Rgb8)
}

fn encode(width: usize, height: usize, pixels: &[u8], color: image::ExtendedColorType) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(pixels, width as u32, height as u32, color)
        .expect("PNG encoding into memory cannot fail for a well-sized buffer");
    out
}

use crate::render::{invert_affine, Skin, View};
use crate::volume::Volume;

/// The oblique view of the QC picture: from the front-left, a little above.
pub const QC_OBLIQUE: View = View::new(45.0, 10.0);

/// A PNG for a person to check a defacing: top row `before`, bottom row
/// `after`, each with skin renders from the front and from
/// [`QC_OBLIQUE`] (same frame in both rows, so they compare pixel for
/// pixel) and the sagittal slice through the head's centre (on the top
/// row, voxels that changed are tinted red and the brain mask's outline is
/// green). `before` and `after` must share the grid; `brain` is on it too.
/// The picture shows the face: it is for the site, never for release.
pub fn qc_png(before: &Volume, after: &Volume, brain: Option<&[bool]>) -> Vec<u8> {
    const PIXEL_MM: f64 = 1.0;
    let skin_before = Skin::new(before).ok();
    let (centre, radius) = skin_before.as_ref().map_or_else(
        || {
            let c = before.to_world(before.dims.map(|d| (d as f64 - 1.0) / 2.0));
            (c, 100.0)
        },
        |s| (s.centre(), s.radius()),
    );
    let size = ((2.0 * radius / PIXEL_MM).ceil() as usize).max(1);
    let gray = |v: &[u8]| v.iter().map(|&g| [g, g, g]).collect::<Vec<_>>();
    let blank = || vec![[0u8; 3]; size * size];
    // the after skin at the before's threshold, so both show the same level
    let skin_after = skin_before
        .as_ref()
        .and_then(|s| Skin::with_threshold(after, s.threshold()).ok());
    let removed: Vec<bool> = before
        .data
        .iter()
        .zip(&after.data)
        .map(|(a, b)| a.to_bits() != b.to_bits())
        .collect();
    let window = (
        crate::brain::quantile(&before.data, 0.01),
        crate::brain::quantile(&before.data, 0.99),
    );
    let mut tiles: Vec<Vec<[u8; 3]>> = Vec::new();
    for (skin, vol, marks) in [(&skin_before, before, true), (&skin_after, after, false)] {
        for view in [View::FRONT, QC_OBLIQUE] {
            tiles.push(match skin {
                Some(s) => gray(&s.render_framed(view, PIXEL_MM, centre, radius).image),
                None => blank(),
            });
        }
        tiles.push(sagittal(vol, centre, radius, size, PIXEL_MM, window, |i| {
            (marks && removed[i], marks && brain.is_some_and(|b| b[i]))
        }));
    }
    // two rows (before, after) of three tiles, 4 px gaps
    let (cols, gap) = (3, 4);
    let (w, h) = (cols * size + (cols - 1) * gap, 2 * size + gap);
    let mut rgb = vec![0u8; w * h * 3];
    for (n, tile) in tiles.iter().enumerate() {
        let (tx, ty) = ((n % cols) * (size + gap), (n / cols) * (size + gap));
        for y in 0..size {
            for x in 0..size {
                let o = ((ty + y) * w + tx + x) * 3;
                rgb[o..o + 3].copy_from_slice(&tile[y * size + x]);
            }
        }
    }
    png_rgb(w, h, &rgb)
}

/// The sagittal plane through `centre`, anterior to the left, superior up,
/// windowed to `window`; `marks(i)` says whether voxel i was removed and
/// whether it is brain (the brain mask is drawn as its outline).
fn sagittal(
    vol: &Volume,
    centre: [f64; 3],
    radius: f64,
    size: usize,
    pixel_mm: f64,
    window: (f32, f32),
    marks: impl Fn(usize) -> (bool, bool),
) -> Vec<[u8; 3]> {
    let Some(inv) = invert_affine(&vol.affine) else {
        return vec![[0; 3]; size * size];
    };
    // voxel index at each pixel (None outside the grid)
    let at = |x: usize, y: usize| -> Option<usize> {
        let p = [
            centre[0],
            centre[1] + radius - (x as f64 + 0.5) * pixel_mm,
            centre[2] + radius - (y as f64 + 0.5) * pixel_mm,
        ];
        let mut ijk = [0usize; 3];
        for a in 0..3 {
            let v = (inv[a][0] * p[0] + inv[a][1] * p[1] + inv[a][2] * p[2] + inv[a][3]).round();
            if v < 0.0 || v >= vol.dims[a] as f64 {
                return None;
            }
            ijk[a] = v as usize;
        }
        Some(vol.index(ijk[0], ijk[1], ijk[2]))
    };
    let idx: Vec<Option<usize>> = (0..size * size).map(|p| at(p % size, p / size)).collect();
    let brain_at = |x: usize, y: usize| idx[y * size + x].is_some_and(|i| marks(i).1);
    let (lo, hi) = window;
    let span = (hi - lo).max(f32::EPSILON);
    let mut out = vec![[0u8; 3]; size * size];
    for y in 0..size {
        for x in 0..size {
            let Some(i) = idx[y * size + x] else { continue };
            let g = (((vol.data[i] - lo) / span).clamp(0.0, 1.0) * 255.0) as u8;
            let (removed, brain) = marks(i);
            let edge = brain
                && (x == 0
                    || y == 0
                    || x + 1 == size
                    || y + 1 == size
                    || !brain_at(x - 1, y)
                    || !brain_at(x + 1, y)
                    || !brain_at(x, y - 1)
                    || !brain_at(x, y + 1));
            out[y * size + x] = if edge {
                [0, 255, 0]
            } else if removed {
                [(u16::from(g) * 2 / 3 + 85) as u8, g / 3, g / 3]
            } else {
                [g, g, g]
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qc_picture_is_a_png_of_two_rows_of_three_tiles() {
        let n = 40;
        let mut before = Volume {
            dims: [n, n, n],
            data: vec![0.0; n * n * n],
            affine: [
                [2.0, 0.0, 0.0, -40.0],
                [0.0, 2.0, 0.0, -40.0],
                [0.0, 0.0, 2.0, -40.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        };
        for k in 0..n {
            for j in 0..n {
                for i in 0..n {
                    let w = before.to_world([i as f64, j as f64, k as f64]);
                    if w.iter().map(|v| v * v).sum::<f64>() < 30.0 * 30.0 {
                        let idx = before.index(i, j, k);
                        before.data[idx] = 100.0;
                    }
                }
            }
        }
        let mut after = before.clone();
        let brain: Vec<bool> = (0..n * n * n)
            .map(|p| {
                let w =
                    before.to_world([(p % n) as f64, ((p / n) % n) as f64, (p / (n * n)) as f64]);
                w.iter().map(|v| v * v).sum::<f64>() < 15.0 * 15.0
            })
            .collect();
        for (p, v) in after.data.iter_mut().enumerate() {
            let w = before.to_world([(p % n) as f64, ((p / n) % n) as f64, (p / (n * n)) as f64]);
            if w[1] > 20.0 {
                *v = 0.0;
            }
        }
        let png = qc_png(&before, &after, Some(&brain));
        let img = image::load_from_memory(&png).expect("a PNG").to_rgb8();
        let size = (img.height() as usize - 4) / 2;
        assert_eq!(img.width() as usize, 3 * size + 8);
        // the brain outline (green) and the removed region (red) show
        assert!(img.pixels().any(|p| p.0 == [0, 255, 0]));
        assert!(img
            .pixels()
            .any(|p| i32::from(p.0[0]) - i32::from(p.0[1]) > 100));
    }
}
