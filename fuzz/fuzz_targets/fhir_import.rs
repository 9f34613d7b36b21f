//! The FHIR Consent importer on any text (JSON resources, arrays and
//! Bundles), and exporting what it imported.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(consents) = veil_consent::import(text) {
        let _ = veil_consent::export_r4(&consents);
    }
});
