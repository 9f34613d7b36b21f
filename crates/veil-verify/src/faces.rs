//! `--faces`: can a face still be rendered from a head volume among the
//! outputs? NIfTI files and CT/MR DICOM series (grouped by Series Instance
//! UID; an enhanced multi-frame object is a series of its own) go through
//! two checks, and a face found by either is a finding:
//!
//! * `face-geometry`: veil-deface's own check (a nose standing out of the
//!   skin surface), on veil-deface's reader and renderer;
//! * `face-cascade`: this crate's own ([`cascade`]): its own readers
//!   ([`volume`]), its own shaded renders ([`render`]) and a face detector
//!   trained on photographs (SeetaFace), which imports nothing from
//!   veil-deface. A bug in the defacer's reader, renderer or notion of a
//!   face cannot blind it too.
//!
//! Depending on veil-deface for the first is deliberate: it holds the
//! volume reader and the check, not the de-identification rules this crate
//! must not learn from (it does not depend on veil-rules or veil-deid
//! either).

pub mod cascade;
pub mod render;
pub mod volume;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use veil_core::Tag;
use veil_deface::facecheck::{face_check, FaceReport, VIEWS};
use veil_deface::Volume;

use crate::set::relative;
use crate::text::{Place, ReportText};
use crate::{Category, Finding};

/// A series (or multi-frame object) of fewer images than this is not a
/// head volume (localizers, single slices).
const MIN_SLICES: usize = 20;

/// Face findings for the head volumes among `outputs` (paths relative to
/// `root` in the findings).
pub fn face_findings(root: &Path, outputs: &[PathBuf]) -> Vec<Finding> {
    let mut findings = Vec::new();
    // (Series Instance UID, the path of a multi-frame object: an enhanced
    // object is a volume of its own) to (files, images)
    let mut series: BTreeMap<(String, Option<PathBuf>), (Vec<PathBuf>, usize)> = BTreeMap::new();
    for p in outputs {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.ends_with(".nii") || name.ends_with(".nii.gz") {
            if let Ok(vol) = Volume::read_nifti(p) {
                check(&vol, relative(root, p), &mut findings);
            }
            if let Ok(vol) = volume::read_nifti(p) {
                check_cascade(&vol, relative(root, p), &mut findings);
            }
            continue;
        }
        let Ok(f) = veil_io::read(p) else { continue };
        let modality = f.dataset.ascii(Tag(0x0008, 0x0060)).unwrap_or_default();
        if !matches!(modality.trim(), "CT" | "MR") {
            continue;
        }
        if let Some(uid) = f.dataset.ascii(Tag(0x0020, 0x000E)) {
            let frames = f
                .dataset
                .ascii(Tag(0x0028, 0x0008))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(1);
            let e = series
                .entry((uid, (frames > 1).then(|| p.clone())))
                .or_default();
            e.0.push(p.clone());
            e.1 += frames;
        }
    }
    for (files, images) in series.into_values() {
        if images < MIN_SLICES {
            continue;
        }
        // a series that is not one regular volume is not a head to render
        if let Ok((vol, _)) = veil_deface::series::read_series(&files) {
            check(&vol, relative(root, &files[0]), &mut findings);
        }
        if let Ok(vol) = volume::read_series(&files) {
            check_cascade(&vol, relative(root, &files[0]), &mut findings);
        }
    }
    findings
}

fn check(vol: &Volume, file: String, out: &mut Vec<Finding>) {
    let r: FaceReport = face_check(vol);
    if !r.face {
        return;
    }
    let views = r.views.iter().filter(|v| v.nose).count();
    out.push(Finding {
        file,
        place: Place::fixed("volume"),
        category: Category::Face,
        detector: "face-geometry".into(),
        excerpt: ReportText::fixed("a nose stands ")
            .count(r.nose_prominence_mm.unwrap_or(0.0).round().max(0.0) as u64)
            .then(" mm out of the skin surface in ")
            .count(views as u64)
            .then(" of ")
            .count(VIEWS.len() as u64)
            .then(" views: a face can be rendered from this volume"),
        context: None,
        frame: None,
        thumbnail: None,
    });
}

fn check_cascade(vol: &volume::Volume, file: String, out: &mut Vec<Finding>) {
    let r = cascade::cascade_check(vol);
    if !r.face {
        return;
    }
    out.push(Finding {
        file,
        place: Place::fixed("volume"),
        category: Category::Face,
        detector: "face-cascade".into(),
        excerpt: ReportText::fixed("a face detected in ")
            .count(r.face_views() as u64)
            .then(" of ")
            .count(render::VIEWS.len() as u64)
            .then(" rendered views: a face can be rendered from this volume"),
        context: None,
        frame: None,
        thumbnail: None,
    });
}
