//! Bad input never panics: real corpus files truncated at many offsets and
//! with corrupted bytes are either read, de-identified and written, or
//! refused with a reason.
#![allow(clippy::print_stderr)] // tests report what they measured

use veil_deid::{Deidentifier, Key, Policy};
use veil_io::{encode_dataset, BulkSource};
use veil_rules::Recipe;

fn exercise(policy: &Policy, bytes: Vec<u8>) -> bool {
    let Ok(f) = veil_io::read_bytes(bytes) else {
        return false;
    };
    let Ok(d) = Deidentifier::new(policy).run(&f) else {
        return false;
    };
    let mut out = Vec::new();
    let Ok(mut bulk) = BulkSource::open(&f.source) else {
        return false;
    };
    // a truncated bulk value may fail to copy; that is a refusal, not a panic
    encode_dataset(&mut out, &f.ts, &d.dataset, &mut bulk).is_ok()
}

#[test]
fn truncated_and_corrupted_files_never_panic() {
    let Some(root) = veil_test::corpus() else {
        return;
    };
    let all = veil_test::files(&root);
    let small: Vec<_> = all
        .into_iter()
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| m.len() < 40_000)
                .unwrap_or(false)
        })
        .take(60)
        .collect();
    let policy = Policy::new(
        Recipe::default(),
        &["clean-descriptors".parse().unwrap()],
        Key::from_bytes([1; 32]),
    )
    .unwrap();
    let (mut cases, mut handled) = (0, 0);
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for p in &small {
        let orig = std::fs::read(p).unwrap();
        for cut in (0..orig.len()).step_by((orig.len() / 40).max(1)) {
            cases += 1;
            handled += exercise(&policy, orig[..cut].to_vec()) as usize;
        }
        for _ in 0..40 {
            let mut b = orig.clone();
            for _ in 0..4 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = (seed >> 33) as usize % b.len().max(1);
                if let Some(x) = b.get_mut(i) {
                    *x ^= (seed >> 17) as u8 | 1;
                }
            }
            cases += 1;
            handled += exercise(&policy, b) as usize;
        }
    }
    eprintln!("{cases} damaged inputs, {handled} still de-identified, none panicked");
    assert!(cases > 2000);
}
