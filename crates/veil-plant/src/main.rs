//! `veil-plant OUT MANIFEST.json SOURCE...`: writes a planted test set
//! (fake identities in every place PHI hides) and its manifest, for
//! measuring `veil verify` and the pixel stages on real files.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, manifest, sources @ ..] = args.as_slice() else {
        eprintln!("usage: veil-plant OUT MANIFEST.json SOURCE...");
        std::process::exit(2);
    };
    if sources.is_empty() {
        eprintln!("usage: veil-plant OUT MANIFEST.json SOURCE...");
        std::process::exit(2);
    }
    let inputs: Vec<PathBuf> = sources.iter().map(PathBuf::from).collect();
    let files = match veil_io::walk(&inputs) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("veil-plant: cannot list the sources: {:?}", e.kind());
            std::process::exit(2);
        }
    };
    let (planted, skipped) = veil_plant::plant_set(&files, Path::new(out), 7, 3);
    let json = serde_json::to_vec_pretty(&planted).expect("manifest serializes");
    if let Err(e) = veil_io::atomic::write_all(Path::new(manifest), &json) {
        eprintln!("veil-plant: cannot write the manifest: {e}");
        std::process::exit(2);
    }
    eprintln!(
        "planted {} values into {} files ({skipped} skipped)",
        planted.len(),
        files.len() - skipped
    );
}
