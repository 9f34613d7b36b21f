//! The de-identification engine on whatever the reader accepts: every
//! decision and every value rewrite (pseudonyms, UID remapping, date
//! shifts, text cleaning) on hostile trees. The first byte picks the
//! profile options, so option-dependent rules are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil_core::ProfileOption;
use veil_deid::{Deidentifier, Key, Policy};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let Ok(file) = veil_io::read_bytes(bytes.to_vec()) else {
        return;
    };
    let options: Vec<ProfileOption> = ProfileOption::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| (pick as usize * 37 >> i) & 1 == 1)
        .map(|(_, o)| *o)
        .collect();
    let Ok(policy) = Policy::new(
        veil_rules::Recipe::default(),
        &options,
        Key::from_bytes([7; 32]),
    ) else {
        return;
    };
    let engine = Deidentifier::new(&policy);
    if let Ok(d) = engine.explain(&file) {
        if let Ok(mut src) = veil_io::BulkSource::open(&file.source) {
            let _ = veil_io::encode_dataset(&mut Vec::new(), &file.ts, &d.dataset, &mut src);
        }
    }
});
