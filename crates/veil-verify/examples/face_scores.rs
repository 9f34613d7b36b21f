//! The cascade face check's per-view scores on NIfTI head volumes, for
//! tuning and reports: `cargo run --release -p veil-verify --example
//! face_scores -- HEAD.nii.gz... [--rotate YAW,PITCH] [--keep-mask MASK]
//! [--dump DIR]` (`--dump` writes each
//! render as a PGM image, which shows a face: keep it off shared disks).

use std::path::PathBuf;
use std::time::Instant;

use veil_verify::faces::cascade::{best_score, SCORE};
use veil_verify::faces::render::{Scene, VIEWS};
use veil_verify::faces::volume::read_nifti;

#[allow(clippy::print_stdout)]
fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let dump = args
        .iter()
        .position(|a| a == "--dump")
        .map(|i| PathBuf::from(args.remove(i + 1)).clone());
    args.retain(|a| a != "--dump");
    // --keep-mask FILE: voxels where FILE is 0 set to the minimum first (a
    // defacer's keep-mask on the same grid)
    let keep: Option<String> = args.iter().position(|a| a == "--keep-mask").map(|i| {
        let v = args.remove(i + 1);
        args.remove(i);
        v
    });
    // --rotate YAW,PITCH: the head turned in patient space first
    let rotate: Option<Vec<f64>> = args.iter().position(|a| a == "--rotate").map(|i| {
        let v = args.remove(i + 1);
        args.remove(i);
        v.split(',').map(|x| x.parse().expect("degrees")).collect()
    });
    for path in &args {
        let t = Instant::now();
        let Ok(mut vol) = read_nifti(path.as_ref()) else {
            println!("{path}: not readable");
            continue;
        };
        if let Some(m) = &keep {
            let m = read_nifti(m.as_ref()).expect("mask");
            let lo = vol.data.iter().copied().fold(f32::INFINITY, f32::min);
            for (v, k) in vol.data.iter_mut().zip(&m.data) {
                if *k < 0.5 {
                    *v = lo;
                }
            }
        }
        if let Some(r) = &rotate {
            vol = vol.rotated(r[0], r[1]);
        }
        let read = t.elapsed();
        let Some(scene) = Scene::new(&vol) else {
            println!("{path}: nothing to render");
            continue;
        };
        let mut line = Vec::new();
        let (mut render_s, mut detect_s) = (0.0, 0.0);
        for (n, &view) in VIEWS.iter().enumerate() {
            let t = Instant::now();
            let img = scene.render(view);
            render_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let s = best_score(&img.pixels, img.width, img.height);
            detect_s += t.elapsed().as_secs_f64();
            line.push(format!(
                "y{}p{}:{}{}",
                view.yaw,
                view.pitch,
                s.map_or("-".into(), |s| format!("{s:.2}")),
                if s.is_some_and(|s| s >= SCORE) {
                    "*"
                } else {
                    ""
                }
            ));
            if let Some(d) = &dump {
                let name = PathBuf::from(path);
                let stem = name.file_name().unwrap().to_string_lossy();
                let mut pgm = format!("P5 {} {} 255\n", img.width, img.height).into_bytes();
                pgm.extend_from_slice(&img.pixels);
                let mut f = veil_io::atomic::AtomicFile::create(&d.join(format!("{stem}.{n}.pgm")))
                    .expect("create");
                std::io::Write::write_all(f.writer(), &pgm).expect("write");
                f.commit().expect("commit");
            }
        }
        println!(
            "{path}: {} (read {:.2}s, render {:.2}s, detect {:.2}s)",
            line.join(" "),
            read.as_secs_f64(),
            render_s,
            detect_s
        );
    }
}
