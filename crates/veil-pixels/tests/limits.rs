//! Issue 22, item 6: every pixel decoder path checks the frame it is
//! about to allocate against the data present and against
//! `MAX_FRAME_BYTES`, before allocating (on main RLE allocated rows x
//! columns x samples from the header, whatever the stream held).

use veil_pixels::FrameReader;
use veil_test::hostile;

fn first_frame(bytes: Vec<u8>) -> Result<veil_pixels::Frame, String> {
    let f = veil_io::read_bytes(bytes).map_err(|e| e.to_string())?;
    let mut r = FrameReader::new(&f).map_err(|e| e.to_string())?;
    r.frame(0).map_err(|e| e.to_string())
}

#[test]
fn issue_22_rle_frame_larger_than_its_data_is_refused() {
    // 16384 x 16384 (256 MB) claimed by a frame of 50 runs (6400 pixels)
    let runs: Vec<u8> = (0..50).flat_map(|_| [0x81, 0]).collect();
    let e = first_frame(hostile::rle(
        "1.2.3",
        16384,
        16384,
        &hostile::rle_frame(&runs),
    ))
    .expect_err("refused");
    assert!(e.contains("frame size"), "{e}");
    // a frame past MAX_FRAME_BYTES is refused whatever its data
    let e = first_frame(hostile::rle(
        "1.2.3",
        65535,
        65535,
        &hostile::rle_frame(&runs),
    ))
    .expect_err("refused");
    assert!(e.contains("frame size"), "{e}");
    // a 4 x 4 frame of one run of 16 sevens decodes
    let ok = first_frame(hostile::rle("1.2.3", 4, 4, &hostile::rle_frame(&[0xF1, 7])))
        .expect("a valid RLE frame decodes");
    assert_eq!(ok.values.as_deref(), Some(&[7; 16][..]));
}

#[test]
fn issue_22_codestream_larger_than_rows_and_columns_is_refused() {
    // JPEG baseline, 16 x 16 in the header, 65535 x 65535 in its SOF0
    let jpeg = [
        0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8, 0xFF, 0xFF, 0xFF, 0xFF, 1, 1, 0x11, 0, 0xFF, 0xD9,
    ];
    let e = first_frame(hostile::encapsulated(
        "1.2.840.10008.1.2.4.50",
        "1.2.3",
        16,
        16,
        &jpeg,
    ))
    .expect_err("refused");
    assert!(e.contains("frame size"), "{e}");
}

/// Found by fuzzing (docs/fuzzing.md): a damaged JPEG 2000 frame made
/// openjp2 free a null code-block buffer on its error path, which aborted
/// the whole process in debug and test builds. Decoding must return.
#[test]
fn issue_22_fuzz_damaged_jpeg2000_frame_returns() {
    let bytes = include_bytes!("../../../fuzz/regressions/pixel_decode/openjp2-null-dealloc.dcm");
    let r = first_frame(bytes.to_vec());
    assert!(r.is_err(), "a damaged frame decoded");
}

/// Found by fuzzing (docs/fuzzing.md): a High Bit far past Bits
/// Allocated shifted samples by 64 bits or more (a panic in test builds).
#[test]
fn issue_22_fuzz_high_bit_past_bits_allocated_decodes() {
    let bytes = include_bytes!("../../../fuzz/regressions/pixel_decode/high-bit-shift.dcm");
    let _ = first_frame(bytes.to_vec());
}
