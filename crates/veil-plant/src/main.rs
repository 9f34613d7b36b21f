//! `veil-plant`: planted test sets and their metrics.
//!
//! * `veil-plant OUT MANIFEST.json SOURCE...`: fake identities in every
//!   place PHI hides (headers, overlays, pixels, JPEG comments), for
//!   measuring `veil verify`.
//! * `veil-plant everywhere IN_DIR OUT_DIR --manifest M.json [--seed N]`:
//!   the object's own name, ID and birth date in every string element it
//!   has, at every depth (see `veil_plant::everywhere`).
//! * `veil-plant text-set OUT_DIR [--corpus DIR] [--seed N] [--quick|--full]`:
//!   burned-in text in real images of every photometric interpretation
//!   and transfer syntax (`OUT_DIR/in/`, `OUT_DIR/manifest.json`).
//! * `veil-plant text-eval MANIFEST IN_DIR OUT_DIR --map MAP.json --json OUT.json`:
//!   scores a pixel-cleaning tool's outputs against that set.
//! * `veil-plant text-oracle MANIFEST IN_DIR OUT_DIR MAP.json`: the
//!   perfect redaction (every planted box filled), as a reference row.
#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::path::{Path, PathBuf};

use veil_plant::textset;

fn die(msg: &str) -> ! {
    eprintln!("veil-plant: {msg}");
    std::process::exit(2);
}

fn main() {
    veil_pixels::ocr::limit_openmp_teams();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("everywhere") => everywhere(&args[1..]),
        Some("text-set") => text_set(&args[1..]),
        Some("text-eval") => text_eval(&args[1..]),
        Some("text-oracle") => text_oracle(&args[1..]),
        _ => plant(&args),
    }
}

fn everywhere(args: &[String]) {
    const USAGE: &str = "usage: veil-plant everywhere IN_DIR OUT_DIR --manifest M.json [--seed N]";
    let (mut pos, mut manifest, mut seed) = (Vec::new(), None, 1u64);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--manifest" => manifest = it.next().map(PathBuf::from),
            "--seed" => {
                seed = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| die(USAGE))
            }
            s if !s.starts_with('-') => pos.push(PathBuf::from(s)),
            _ => die(USAGE),
        }
    }
    let ([input, out], Some(manifest)) = (pos.as_slice(), manifest) else {
        die(USAGE)
    };
    let m = veil_plant::everywhere::plant_dir(input, out, seed).unwrap_or_else(|e| die(&e));
    let json = serde_json::to_vec_pretty(&m).expect("manifest serializes");
    veil_io::atomic::write_all(&manifest, &json)
        .unwrap_or_else(|e| die(&format!("cannot write the manifest: {:?}", e.kind())));
    let skipped: usize = m.skipped.values().sum();
    eprintln!(
        "everywhere: {} plants in {} files ({skipped} skipped: {:?}); excluded: {}",
        m.plants.len(),
        m.files.len(),
        m.skipped,
        m.excluded
            .iter()
            .map(|x| format!("{} {}", x.kind, x.count))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn text_set(args: &[String]) {
    const USAGE: &str =
        "usage: veil-plant text-set OUT_DIR [--corpus DIR] [--seed N] [--quick|--full]";
    let mut out = None;
    let mut corpus = std::env::var_os("VEIL_CORPUS").map(PathBuf::from);
    let mut seed = 1u64;
    let mut size = textset::SetSize::Default;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--corpus" => corpus = it.next().map(PathBuf::from),
            "--seed" => {
                seed = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| die(USAGE))
            }
            "--quick" => size = textset::SetSize::Quick,
            "--full" => size = textset::SetSize::Full,
            s if !s.starts_with('-') && out.is_none() => out = Some(PathBuf::from(s)),
            _ => die(USAGE),
        }
    }
    let (Some(out), Some(corpus)) = (out, corpus) else {
        die(USAGE)
    };
    let t = std::time::Instant::now();
    let m = textset::build(&out, &textset::BuildOptions { corpus, seed, size })
        .unwrap_or_else(|e| die(&e.to_string()));
    let lines: usize = m.files.iter().map(|f| f.lines.len()).sum();
    let frames: u32 = m.files.iter().map(|f| f.frames).sum();
    eprintln!(
        "text-set: {} files, {frames} frames, {lines} lines ({} cases skipped) in {:.1} s",
        m.files.len(),
        m.skipped.len(),
        t.elapsed().as_secs_f64()
    );
}

fn text_eval(args: &[String]) {
    const USAGE: &str =
        "usage: veil-plant text-eval MANIFEST IN_DIR OUT_DIR --map MAP.json [--json OUT.json]";
    let mut pos = Vec::new();
    let (mut map, mut json) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--map" => map = it.next().map(PathBuf::from),
            "--json" => json = it.next().map(PathBuf::from),
            s if !s.starts_with('-') => pos.push(PathBuf::from(s)),
            _ => die(USAGE),
        }
    }
    let ([manifest, in_dir, out_dir], Some(map)) = (pos.as_slice(), map) else {
        die(USAGE)
    };
    let m: textset::Manifest = std::fs::read(manifest)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| die("cannot read the manifest"));
    let map = textset::load_map(&map, out_dir).unwrap_or_else(|e| die(&e));
    let ev = textset::evaluate(&m, in_dir, &map).unwrap_or_else(|e| die(&e));
    if let Some(j) = json {
        let bytes = serde_json::to_vec_pretty(&ev).expect("metrics serialize");
        veil_io::atomic::write_all(&j, &bytes).unwrap_or_else(|e| die(&format!("{:?}", e.kind())));
    }
    println!("{}", ev.summary());
}

fn text_oracle(args: &[String]) {
    let [manifest, in_dir, out_dir, map] = args else {
        die("usage: veil-plant text-oracle MANIFEST IN_DIR OUT_DIR MAP.json");
    };
    let m: textset::Manifest = std::fs::read(manifest)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| die("cannot read the manifest"));
    let out = textset::oracle_redact(&m, Path::new(in_dir), Path::new(out_dir))
        .unwrap_or_else(|e| die(&e));
    let json = serde_json::json!({
        "outputs": out.outputs,
        "review": out.review,
    });
    veil_io::atomic::write_all(Path::new(map), json.to_string().as_bytes())
        .unwrap_or_else(|e| die(&format!("{:?}", e.kind())));
}

fn plant(args: &[String]) {
    let [out, manifest, sources @ ..] = args else {
        die("usage: veil-plant OUT MANIFEST.json SOURCE... | text-set ... | text-eval ...");
    };
    if sources.is_empty() {
        die("usage: veil-plant OUT MANIFEST.json SOURCE... | text-set ... | text-eval ...");
    }
    let inputs: Vec<PathBuf> = sources.iter().map(PathBuf::from).collect();
    let files = match veil_io::walk(&inputs) {
        Ok(f) => f,
        Err(e) => die(&format!("cannot list the sources: {:?}", e.kind())),
    };
    let (planted, skipped) = veil_plant::plant_set(&files, Path::new(out), 7, 3);
    let json = serde_json::to_vec_pretty(&planted).expect("manifest serializes");
    if let Err(e) = veil_io::atomic::write_all(Path::new(manifest), &json) {
        die(&format!("cannot write the manifest: {e}"));
    }
    eprintln!(
        "planted {} values into {} files ({skipped} skipped)",
        planted.len(),
        files.len() - skipped
    );
}
