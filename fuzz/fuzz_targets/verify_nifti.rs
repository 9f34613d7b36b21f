//! `veil verify --faces`' own NIfTI-1 reader (plain and gzip: the gzip
//! stream is inflated only as far as the header allows) on any bytes, then
//! what the face check does to a volume before rendering it: the affine's
//! inverse and a turned copy. It shares no code with the defacer's reader
//! (`nifti_read`), so it is fuzzed on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil_verify::faces::volume;

fuzz_target!(|data: &[u8]| {
    let Ok(vol) = volume::nifti_from_bytes(data) else {
        return;
    };
    assert_eq!(vol.data.len(), vol.dims.iter().product::<usize>());
    let _ = vol.inverse();
    let turned = vol.rotated(30.0, -15.0);
    let _ = turned.to_world([1.0, 2.0, 3.0]);
});
