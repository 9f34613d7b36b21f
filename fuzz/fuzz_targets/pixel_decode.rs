//! The pixel decoders on whatever the reader accepts: frame location
//! (native, encapsulated fragments, offset tables), RLE, JPEG, JPEG 2000,
//! palettes, 8-bit windowing, stored samples, overlays and JPEG metadata
//! segments. At most two frames are decoded per input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = veil_io::read_bytes(data.to_vec()) else {
        return;
    };
    let _ = veil_pixels::overlays(&file);
    if let Ok(frags) = veil_pixels::encapsulated_fragments(&file) {
        for f in frags.iter().take(4) {
            let _ = veil_pixels::jpeg::metadata_segments(f);
            let _ = veil_pixels::jpeg::strip_metadata_segments(f);
        }
    }
    if let Ok(mut r) = veil_pixels::FrameReader::new(&file) {
        for i in 0..r.frame_count().min(2) {
            let _ = r.frame(i);
        }
    }
    if let Ok(mut r) = veil_pixels::RawReader::new(&file) {
        let _ = r.frame(0);
    }
});
