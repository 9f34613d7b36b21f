//! Seeds a site's ledger for `scripts/bench-portal.sh`: `PATIENTS` x
//! `PER` release entries to recipient `acme`, appended through
//! [`Site::log_decisions`] (the gateway's path: real, signed ledger rows
//! with the signed head after each), in batches.
//!
//! Why not `veil release` of corpus files: de-identifying 10,000 studies
//! on a 2-core machine takes longer than the benchmark it feeds, and the
//! portal reads only the ledger rows, which are the same either way.
//!
//! `cargo run --release -p veil-portal --example bench_seed -- HOME PATIENTS PER`
//! (patient IDs `BENCH-00000`...).

use std::io::Write;
use std::path::Path;

use veil_core::Phi;
use veil_ledger::{Entry, Event};
use veil_release::Site;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, home, patients, per] = &args[..] else {
        let _ = writeln!(std::io::stderr(), "usage: bench_seed HOME PATIENTS PER");
        std::process::exit(2);
    };
    let patients: u64 = patients.parse().expect("PATIENTS");
    let per: u64 = per.parse().expect("PER");
    let mut site = Site::open(None, Path::new(home)).expect("open the site");
    let key_id = site.ledger_signing_key().expect("ledger key").id();
    let refs: Vec<String> = (0..patients)
        .map(|p| site.patient_ref(&Phi::new(format!("BENCH-{p:05}"))))
        .collect();
    let start = std::time::Instant::now();
    // round-robin, so a patient's entries spread over the whole log
    let all: Vec<(u64, u64)> = (0..per)
        .flat_map(|k| (0..patients).map(move |p| (p, k)))
        .collect();
    for chunk in all.chunks(500) {
        let entries = chunk
            .iter()
            .map(|&(p, k)| Entry {
                v: 1,
                seq: 0,
                time: format!("2026-11-{:02}T10:{:02}:00Z", 1 + k % 28, p % 60),
                event: if k % 5 == 4 {
                    Event::Refusal
                } else {
                    Event::Release
                },
                release_id: format!("bench-{p}-{k}"),
                recipient: "acme".into(),
                purpose: "ai-training".into(),
                recipe: "t 1".into(),
                key_id: key_id.clone(),
                patient_ref: Some(refs[p as usize].clone()),
                study_ref: Some(site.study_ref(&format!("2.25.{p}{k:03}"))),
                output_study_uid: Some(format!("2.25.9{p}{k:03}")),
                instances: 1 + k,
                inputs_digest: None,
                output_digest: None,
                verification: "pass".into(),
                operator: "bench".into(),
                reason: if k % 5 == 4 {
                    "consent: the patient declined".into()
                } else {
                    "consent: opt-out default".into()
                },
                refers_to: None,
            })
            .collect();
        site.log_decisions(entries, |_, _| Ok(())).expect("append");
    }
    // stdout is the script's log (the workspace lints forbid print!)
    let _ = writeln!(
        std::io::stdout(),
        "appended {} entries in {:.1} s",
        all.len(),
        start.elapsed().as_secs_f64()
    );
}
