//! The NIfTI-1 reader (plain and gzip) on any bytes, and writing back
//! what it read: header validation must refuse every inconsistent
//! header before a voxel is read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((vol, header)) = veil_deface::volume::nifti_from_bytes(data.to_vec()) else {
        return;
    };
    let _ = header.for_mask();
    let _ = vol.spacing();
});
