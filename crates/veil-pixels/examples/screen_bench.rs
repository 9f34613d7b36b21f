//! Screening throughput: decodes every frame of the images under a folder
//! that are `SIZE`x`SIZE` (default 512), then times the text-line screen
//! alone over them (the top-hat and flat-ink screens on the 8-bit image
//! and the stored values, and on frames of lossy objects the banded
//! screen too, as the stage runs them) on `JOBS` threads
//! (default 2), `ROUNDS` times, and prints frames per second. Used by
//! scripts/bench-pixels.sh.
#![allow(clippy::print_stdout)]
use std::time::Instant;

fn main() {
    let args: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (size, jobs, rounds) = (env("SIZE", 512) as u32, env("JOBS", 2), env("ROUNDS", 3));
    let mut frames = Vec::new();
    let t = Instant::now();
    for p in veil_io::walk(&args).expect("walk") {
        let Ok(f) = veil_io::read(&p) else { continue };
        let Ok(mut r) = veil_pixels::FrameReader::new(&f) else {
            continue;
        };
        let lossy = !veil_pixels::clean::holds_exact_values(&f);
        if r.size() != (size, size) {
            continue;
        }
        for i in 0..r.frame_count() {
            if let Ok(fr) = r.frame(i) {
                frames.push((fr.image, fr.values, lossy));
            }
        }
    }
    let decode = t.elapsed().as_secs_f64();
    assert!(!frames.is_empty(), "no {size}x{size} frames");
    let t = Instant::now();
    let mut lines = 0usize;
    for _ in 0..rounds {
        let chunk = frames.len().div_ceil(jobs);
        lines = std::thread::scope(|s| {
            let hs: Vec<_> = frames
                .chunks(chunk)
                .map(|c| {
                    s.spawn(move || {
                        c.iter()
                            .map(|(img, values, lossy)| {
                                let screen = veil_pixels::clean::detect::screen_values(
                                    img,
                                    values.as_deref(),
                                );
                                let banded = if *lossy {
                                    veil_pixels::clean::band::band_lines(img).len()
                                } else {
                                    0
                                };
                                screen.lines.len() + banded
                            })
                            .sum::<usize>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
    }
    let secs = t.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "{{\"size\": {size}, \"jobs\": {jobs}, \"frames\": {}, \"lossy_frames\": {}, \"decode_s\": {decode:.3}, \"screen_s\": {secs:.3}, \"frames_per_s\": {:.1}, \"candidate_lines\": {lines}}}",
        frames.len(),
        frames.iter().filter(|f| f.2).count(),
        frames.len() as f64 / secs
    );
}
