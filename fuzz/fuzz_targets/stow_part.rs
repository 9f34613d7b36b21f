//! What a STOW-RS sender controls in one part of its multipart body (the
//! multipart framing itself is the `multer` crate's): the Part 10 File
//! Meta reader and the data set UID scan the server runs on every part,
//! and the client's reading of a recipient's STOW-RS response.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = veil_dicomweb::meta::read(data);
    let _ = veil_dicomweb::meta::dataset_uids(data);
    let _ = veil_dicomweb::StowResponse::from_json(data);
});
