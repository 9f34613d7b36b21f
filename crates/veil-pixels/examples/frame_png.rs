//! Writes frame 0 (and overlays) of a DICOM file as PNGs, and prints what
//! OCR reads: for looking at OCR misses by eye.
#![allow(clippy::print_stdout)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let f = veil_io::read(std::path::Path::new(&args[1])).expect("read");
    let out = std::path::Path::new(&args[2]);
    let mut r = veil_pixels::FrameReader::new(&f).expect("frames");
    let fr = r.frame(0).expect("frame 0");
    let png = veil_pixels::thumbnail_png(&fr.image, 4096, &[]);
    veil_io::atomic::write_all(&out.join("frame0.png"), &png).expect("write");
    let mut ocr = veil_pixels::ocr::Ocr::new().expect("ocr");
    for w in ocr.words(&fr.image).expect("ocr") {
        println!(
            "frame: {:?} {} {} {}x{}",
            w.text, w.left, w.top, w.width, w.height
        );
    }
    for (i, o) in veil_pixels::overlays(&f)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let png = veil_pixels::thumbnail_png(&o.image, 4096, &[]);
        veil_io::atomic::write_all(&out.join(format!("overlay{i}.png")), &png).expect("write");
        for w in ocr.words(&o.image).expect("ocr") {
            println!("overlay: {:?} {} {}", w.text, w.left, w.top);
        }
    }
}
