//! The cascade face check (`face-cascade`, issue 21) on real heads
//! (scripts/fetch-heads.sh): faces on the originals and on copies turned in
//! patient space, none on Veil's defaced outputs (pydeface's cut of its
//! mean head is scored for the record), and a partly defaced copy
//! (chin and mouth cut away, eyes and nose left) still found by one of the
//! two checks. Per-view scores are printed (`--nocapture`) for the record.
//!
//! veil-deface is used here only to make the defaced outputs and to run
//! the geometric check beside the cascade; the cascade itself reads,
//! renders and decides with nothing from it.

#![allow(clippy::print_stderr)] // tests report the scores they measured

use std::path::Path;

use veil_verify::faces::cascade::{cascade_check, CascadeReport};
use veil_verify::faces::volume::{read_nifti, Volume};

/// The heads, each an original with a face.
const HEADS: [&str; 5] = [
    "ch2.nii.gz",
    "sub-01_T1w.nii.gz",
    "mni305_T1w.nii.gz",
    "cranium_ct.nii",
    "pydeface_mean.nii.gz",
];

/// The turns (yaw, pitch degrees) the heads are checked in: as stored, and
/// turned and tilted both ways (positive pitch raises the chin).
const TURNS: [(f64, f64); 3] = [(0.0, 0.0), (25.0, 12.0), (-25.0, -12.0)];

/// Where the cascade does not find the face, and why; the geometric check
/// must find it there instead. mni305's field of view ends at the tip of
/// the nose: no mouth or chin, and the frontal cascade (trained on whole
/// faces) scores it below 3 in every view at any lighting tried (0-60°).
/// ch2's ends at the upper lip: found as stored (8.4, from below) and
/// turned one way (4.5), not turned the other (2.7).
fn cascade_misses(name: &str, turn: (f64, f64)) -> bool {
    name == "mni305_T1w.nii.gz" || (name == "ch2.nii.gz" && turn == (-25.0, -12.0))
}

fn line(name: &str, r: &CascadeReport) -> String {
    let views: Vec<String> = r
        .views
        .iter()
        .map(|v| {
            format!(
                "yaw {} pitch {}: {}{}",
                v.view.yaw,
                v.view.pitch,
                v.score.map_or("-".to_string(), |s| format!("{s:.2}")),
                if v.face { " FACE" } else { "" }
            )
        })
        .collect();
    format!("{name}: {}", views.join(", "))
}

fn deface_volume(v: &Volume) -> veil_deface::Volume {
    veil_deface::Volume {
        dims: v.dims,
        data: v.data.clone(),
        affine: v.affine,
    }
}

fn geometric_face(v: &Volume) -> bool {
    veil_deface::facecheck::face_check(&deface_volume(v)).face
}

fn load(heads: &Path, name: &str) -> Volume {
    read_nifti(&heads.join(name)).expect("read head")
}

#[test]
fn the_cascade_finds_the_face_on_every_original_head_and_turned_copies() {
    let Some(heads) = veil_test::heads() else {
        return;
    };
    let mut missed = Vec::new();
    for name in HEADS {
        let vol = load(&heads, name);
        for (yaw, pitch) in TURNS {
            let v = vol.rotated(yaw, pitch);
            let r = cascade_check(&v);
            eprintln!("{}", line(&format!("{name} turned {yaw}/{pitch}"), &r));
            if cascade_misses(name, (yaw, pitch)) {
                assert!(
                    geometric_face(&v),
                    "{name} turned {yaw}/{pitch}: neither check finds the face"
                );
                if r.face {
                    eprintln!("{name} turned {yaw}/{pitch}: found though listed as a miss");
                }
            } else if !r.face {
                missed.push(format!("{name} turned {yaw}/{pitch}"));
            }
        }
    }
    assert!(missed.is_empty(), "the cascade missed: {missed:?}");
}

#[test]
fn the_cascade_finds_no_face_on_veils_defaced_outputs() {
    let Some(heads) = veil_test::heads() else {
        return;
    };
    let mut found: Vec<String> = Vec::new();
    for name in HEADS {
        let vol = load(&heads, name);
        let d = veil_deface::deface(&deface_volume(&vol), &Default::default()).expect("deface");
        let out = Volume {
            dims: d.volume.dims,
            data: d.volume.data,
            affine: d.volume.affine,
        };
        let r = cascade_check(&out);
        eprintln!("{}", line(&format!("{name} defaced"), &r));
        if r.face {
            found.push(name.to_string());
        }
    }
    // Another defacer's cut, for the record only (printed, not asserted):
    // pydeface's own face mask (1 keep, 0 face) on its mean head, the same
    // grid. It scored 3.80 from the front when written, just under the
    // threshold: pydeface's flat cut runs just under the brow ridge, and a
    // brow line over a plane with specks of tissue on it is half a face to
    // the cascade. Veil's outputs are what must pass.
    let mean = load(&heads, "pydeface_mean.nii.gz");
    let mask = load(&heads, "pydeface_facemask.nii.gz");
    assert_eq!(mean.dims, mask.dims);
    let lo = mean.data.iter().copied().fold(f32::INFINITY, f32::min);
    let mut cut = mean.clone();
    for (v, m) in cut.data.iter_mut().zip(&mask.data) {
        if *m < 0.5 {
            *v = lo;
        }
    }
    let r = cascade_check(&cut);
    eprintln!("{}", line("pydeface_mean with pydeface's mask", &r));
    assert!(found.is_empty(), "a face on a defaced output: {found:?}");
}

/// Zeroes the chin and mouth: everything more than 12 mm below the tip of
/// the nose (the most anterior skin near the midline, a plain percentile
/// threshold for skin) and in front of the ears. Eyes and nose are left.
fn without_chin_and_mouth(vol: &Volume) -> Volume {
    let mut sorted: Vec<f32> = vol.data.iter().step_by(97).copied().collect();
    sorted.sort_by(f32::total_cmp);
    let level = sorted[sorted.len() * 6 / 10];
    let [nx, ny, nz] = vol.dims;
    let mut xs = (f64::INFINITY, f64::NEG_INFINITY);
    let mut pts = Vec::new();
    for k in (0..nz).step_by(2) {
        for j in (0..ny).step_by(2) {
            for i in (0..nx).step_by(2) {
                if vol.data[vol.index(i, j, k)] > level {
                    let w = vol.to_world([i as f64, j as f64, k as f64]);
                    xs = (xs.0.min(w[0]), xs.1.max(w[0]));
                    pts.push(w);
                }
            }
        }
    }
    let mid = 0.5 * (xs.0 + xs.1);
    let tip = pts
        .iter()
        .filter(|w| (w[0] - mid).abs() < 15.0)
        .max_by(|a, b| a[1].total_cmp(&b[1]))
        .copied()
        .expect("a head");
    let mut out = vol.clone();
    let lo = sorted[0];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let w = vol.to_world([i as f64, j as f64, k as f64]);
                if w[2] < tip[2] - 12.0 && w[1] > tip[1] - 70.0 {
                    let idx = vol.index(i, j, k);
                    out.data[idx] = lo;
                }
            }
        }
    }
    out
}

#[test]
fn a_partly_defaced_head_is_still_found() {
    let Some(heads) = veil_test::heads() else {
        return;
    };
    let mut lost = Vec::new();
    for name in HEADS {
        let part = without_chin_and_mouth(&load(&heads, name));
        let r = cascade_check(&part);
        let g = geometric_face(&part);
        eprintln!(
            "{} / geometric: {}",
            line(&format!("{name} without chin and mouth"), &r),
            if g { "FACE" } else { "none" }
        );
        if !r.face && !g {
            lost.push(name);
        }
    }
    assert!(lost.is_empty(), "neither check finds the face: {lost:?}");
}
