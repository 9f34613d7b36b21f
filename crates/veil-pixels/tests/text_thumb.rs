//! Text drawing and redacted thumbnails.

use veil_pixels::text::draw_text;
use veil_pixels::{thumbnail_png, GrayImage};

#[test]
fn drawn_text_box_holds_the_ink_and_the_thumbnail_hides_it() {
    let mut img = GrayImage::new(400, 200);
    let b = draw_text(&mut img, "DOE^JANE 1961", 20, 30, 24.0, 255).expect("font installed");
    assert_eq!((b.0, b.1), (20, 30));
    assert!(b.2 > 100 && b.3 >= 24 && b.3 < 32, "{b:?}");
    let inked = |x: u32, y: u32| img.get_pixel(x, y).0[0] > 0;
    let inside = (b.0..b.0 + b.2)
        .flat_map(|x| (b.1..b.1 + b.3).map(move |y| (x, y)))
        .filter(|(x, y)| inked(*x, *y))
        .count();
    let all = img.iter().filter(|v| **v > 0).count();
    assert!(inside > 100 && inside == all, "all ink inside the box");

    let png = thumbnail_png(&img, 100, &[b]);
    let thumb = image::load_from_memory(&png).unwrap().to_luma8();
    assert_eq!(thumb.dimensions(), (100, 50));
    assert!(thumb.iter().all(|v| *v == 0), "no trace of the text left");
    let plain = image::load_from_memory(&thumbnail_png(&img, 100, &[]))
        .unwrap()
        .to_luma8();
    assert!(plain.iter().any(|v| *v > 0));
}
