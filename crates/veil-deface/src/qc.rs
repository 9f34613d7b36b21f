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
