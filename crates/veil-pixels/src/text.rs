//! Drawing text into frames with a TrueType font.
//!
//! Why: tests and the PHI planter burn names, IDs and dates into real
//! images to measure how well burned-in text is found; a real outline font
//! at several sizes is closer to what modalities draw than a bitmap font.
//! Pure Rust (ab_glyph), so this needs no system library, only a font
//! file: `VEIL_FONT`, else DejaVu Sans (Debian `fonts-dejavu-core`).

use std::path::PathBuf;
use std::sync::OnceLock;

use ab_glyph::{Font, FontVec, PxScale, ScaleFont};
use image::GrayImage;

/// Where the default font lives on Debian (package fonts-dejavu-core).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Why text cannot be drawn.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TextError {
    /// The font file could not be read (install fonts-dejavu-core or set
    /// VEIL_FONT).
    #[error("font file not readable ({0:?}); install fonts-dejavu-core or set VEIL_FONT")]
    FontMissing(std::io::ErrorKind),
    /// The font file is not a TrueType/OpenType font.
    #[error("font file is not a usable TrueType/OpenType font")]
    FontInvalid,
}

/// The font file in use: `VEIL_FONT` if set, else [`DEFAULT_FONT`].
pub fn font_path() -> PathBuf {
    std::env::var_os("VEIL_FONT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_FONT))
}

fn font() -> Result<&'static FontVec, TextError> {
    static FONT: OnceLock<Result<FontVec, TextError>> = OnceLock::new();
    FONT.get_or_init(|| {
        let bytes = std::fs::read(font_path()).map_err(|e| TextError::FontMissing(e.kind()))?;
        FontVec::try_from_vec(bytes).map_err(|_| TextError::FontInvalid)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Draws `text` on one line with its top-left corner at (`x`, `y`), the
/// line `px_height` pixels tall (ascent to descent), blending `value` over
/// the image by glyph coverage (anti-aliased). Glyphs that fall outside
/// the image are clipped.
///
/// Returns the text's box `(x, y, width, height)`: the line box (advance
/// width × line height), clipped to the image, which is what a detector
/// should find.
pub fn draw_text(
    img: &mut GrayImage,
    text: &str,
    x: u32,
    y: u32,
    px_height: f32,
    value: u8,
) -> Result<(u32, u32, u32, u32), TextError> {
    let font = font()?;
    let scaled = font.as_scaled(PxScale::from(px_height));
    let baseline = y as f32 + scaled.ascent();
    let mut caret = x as f32;
    let mut prev = None;
    let (w, h) = img.dimensions();
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        let glyph =
            id.with_scale_and_position(PxScale::from(px_height), ab_glyph::point(caret, baseline));
        caret += scaled.h_advance(id);
        prev = Some(id);
        if let Some(outlined) = font.outline_glyph(glyph) {
            let b = outlined.px_bounds();
            outlined.draw(|gx, gy, cov| {
                let px = b.min.x as i64 + gx as i64;
                let py = b.min.y as i64 + gy as i64;
                if px < 0 || py < 0 || px >= w as i64 || py >= h as i64 {
                    return;
                }
                let p = img.get_pixel_mut(px as u32, py as u32);
                let cov = cov.clamp(0.0, 1.0);
                p.0[0] = (p.0[0] as f32 * (1.0 - cov) + value as f32 * cov).round() as u8;
            });
        }
    }
    let right = (caret.ceil() as u32).min(w);
    let bottom = ((y as f32 + scaled.ascent() - scaled.descent()).ceil() as u32).min(h);
    let (x0, y0) = (x.min(w), y.min(h));
    Ok((x0, y0, right.saturating_sub(x0), bottom.saturating_sub(y0)))
}

/// The size (width, height) `text` would take at `px_height`, without
/// drawing: for placing text inside a frame.
pub fn measure_text(text: &str, px_height: f32) -> Result<(u32, u32), TextError> {
    let font = font()?;
    let scaled = font.as_scaled(PxScale::from(px_height));
    let mut caret = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        caret += scaled.h_advance(id);
        prev = Some(id);
    }
    Ok((
        caret.ceil() as u32,
        (scaled.ascent() - scaled.descent()).ceil() as u32,
    ))
}
