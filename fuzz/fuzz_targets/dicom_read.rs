//! The DICOM reader on any bytes: an error is fine; a panic, abort, stack
//! overflow or runaway allocation is a crash. What parses is also encoded
//! again (the writer walks the same tree, bulk values read back from the
//! source).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = veil_io::read_bytes(data.to_vec()) else {
        return;
    };
    let _ = file.sop_class();
    let _ = file.is_dicomdir();
    if let Ok(mut src) = veil_io::BulkSource::open(&file.source) {
        let _ = veil_io::encode_dataset(&mut Vec::new(), &file.ts, &file.dataset, &mut src);
    }
});
