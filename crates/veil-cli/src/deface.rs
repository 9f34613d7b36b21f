//! `veil deface`: removes the face from one head volume (a NIfTI file or
//! one DICOM series folder). A thin shell over `veil-deface`; errors become
//! exit status 2 in `main`. Exit 1 means the same in both modes, as in the
//! table of `veil --help`: the volume may still show a face and needs a
//! person (deface could not locate the face with confidence, or
//! `--check-only` found one).

use std::path::PathBuf;
use std::time::Instant;

use veil_deface::volume::{self, NiftiHeader};
use veil_deface::{DefaceOptions, Modality};

/// Arguments of `veil deface`.
#[derive(clap::Args)]
pub struct DefaceArgs {
    /// A NIfTI file (.nii, .nii.gz) or a folder holding one DICOM series
    /// (single-frame images, or one Enhanced CT/MR multi-frame object).
    input: PathBuf,
    /// The output: a NIfTI file, or a folder for the defaced series.
    #[arg(required_unless_present = "check_only")]
    output: Option<PathBuf>,
    /// Only check whether a face is there (skin renders from the front,
    /// +-15 degrees pitch, +-30/+-60 degrees yaw, and the geometric nose
    /// test); writes nothing. Exit 0 no face; 1 a face can be rendered
    /// (as for a volume deface could not clean: it needs a person).
    #[arg(long, conflicts_with_all = ["mask_out", "brain_out", "qc", "ears"])]
    check_only: bool,
    /// Also write the removed-voxel mask (NIfTI, 1 = removed).
    #[arg(long, value_name = "MASK.nii.gz")]
    mask_out: Option<PathBuf>,
    /// Also write the brain mask Veil protected (NIfTI, 1 = brain).
    #[arg(long, value_name = "BRAIN.nii.gz")]
    brain_out: Option<PathBuf>,
    /// Write a before/after surface render (front and oblique) as PNG.
    #[arg(long, value_name = "QC.png")]
    qc: Option<PathBuf>,
    /// Also remove the ears.
    #[arg(long)]
    ears: bool,
    /// The modality (default: detected from the values).
    #[arg(long, value_parser = ["mr", "ct"])]
    modality: Option<String>,
    /// Print the summary as JSON (counts and timings, no values, no
    /// paths) instead of sentences.
    #[arg(long)]
    json: bool,
}

/// Prints the summary: JSON with `--json`, else the sentence.
fn say(json: bool, v: &serde_json::Value, human: String) -> Result<(), String> {
    if json {
        crate::emit(&format!("{v}\n"))
    } else {
        crate::emit(&format!("veil deface: {human}\n"))
    }
}

/// Runs `veil deface`. Prints a summary (counts and timings, no values, no
/// paths); progress counts its three steps (read, find and remove the
/// face, write), as the defacing itself reports none.
pub fn run(a: DefaceArgs, quiet: bool) -> Result<i32, String> {
    let t0 = Instant::now();
    let progress = crate::progress::Progress::new("veil deface", "steps", quiet);
    let steps = if a.check_only { 2 } else { 3 };
    progress.tick(0, steps);
    let dicom = a.input.is_dir();
    let (vol, nifti, series) = if dicom {
        let files = veil_io::walk(std::slice::from_ref(&a.input))
            .map_err(|e| format!("listing the series: {:?}", e.kind()))?;
        let (v, s) = veil_deface::series::read_series(&files).map_err(|e| e.to_string())?;
        let h = NiftiHeader::for_volume(&v);
        (v, h, Some(s))
    } else {
        let (v, h) = volume::read_nifti(&a.input).map_err(|e| e.to_string())?;
        (v, h, None)
    };
    let t_read = t0.elapsed().as_secs_f64();
    progress.tick(1, steps);
    let Some(output) = a.output.as_ref().filter(|_| !a.check_only) else {
        let r = veil_deface::facecheck::face_check(&vol);
        progress.tick(2, steps);
        progress.finish();
        let with_nose = r.views.iter().filter(|v| v.nose).count();
        say(
            a.json,
            &serde_json::json!({
                "face": r.face,
                "nose_prominence_mm": r.nose_prominence_mm,
                "views": r.views.iter().map(|v| serde_json::json!({
                    "yaw_deg": v.view.yaw_deg,
                    "pitch_deg": v.view.pitch_deg,
                    "nose_prominence_mm": v.nose_prominence_mm,
                    "nose": v.nose,
                })).collect::<Vec<_>>(),
                "seconds": t0.elapsed().as_secs_f64(),
            }),
            format!(
                "{} ({}; a nose in {} of {}); {:.1} s",
                if r.face {
                    "a face can be rendered from this volume: it needs defacing"
                } else {
                    "no face found"
                },
                r.nose_prominence_mm
                    .map(|mm| format!("nose prominence {mm:.1} mm"))
                    .unwrap_or_else(|| "no nose profile".into()),
                with_nose,
                veil_core::count(r.views.len(), "view", "views"),
                t0.elapsed().as_secs_f64()
            ),
        )?;
        return Ok(if r.face {
            crate::exit::ATTENTION
        } else {
            crate::exit::OK
        });
    };
    let opts = DefaceOptions {
        remove_ears: a.ears,
        modality: a.modality.as_deref().map(|m| {
            if m == "ct" {
                Modality::Ct
            } else {
                Modality::Mr
            }
        }),
    };
    let t1 = Instant::now();
    let d = match veil_deface::deface(&vol, &opts) {
        Ok(d) => d,
        Err(e) => {
            progress.finish();
            say(
                a.json,
                &serde_json::json!({ "defaced": false, "reason": e.to_string() }),
                format!("not defaced, the volume needs a person: {e}"),
            )?;
            return Ok(crate::exit::ATTENTION);
        }
    };
    let t_deface = t1.elapsed().as_secs_f64();
    progress.tick(2, steps);
    let t2 = Instant::now();
    let mut note = None;
    match &series {
        Some(s) => {
            note = s
                .write(&d.volume, output, true)
                .map_err(|e| e.to_string())?;
        }
        None => volume::write_nifti(output, &d.volume, &nifti).map_err(|e| e.to_string())?,
    }
    if let Some(m) = &a.mask_out {
        volume::write_nifti_mask(m, &vol, &d.removed, &nifti).map_err(|e| e.to_string())?;
    }
    if let Some(m) = &a.brain_out {
        volume::write_nifti_mask(m, &vol, &d.brain, &nifti).map_err(|e| e.to_string())?;
    }
    if let Some(q) = &a.qc {
        let png = veil_deface::qc::qc_png(&vol, &d.volume, Some(&d.brain));
        veil_io::atomic::write_private(q, &png)
            .map_err(|e| format!("writing the QC picture: {:?}", e.kind()))?;
    }
    let t_write = t2.elapsed().as_secs_f64();
    progress.tick(3, steps);
    progress.finish();
    let brain = d.brain.iter().filter(|&&b| b).count();
    let brain_changed = d
        .brain
        .iter()
        .zip(vol.data.iter().zip(&d.volume.data))
        .filter(|(&b, (x, y))| b && x != y)
        .count();
    let removed = d.removed.iter().filter(|&&r| r).count();
    let unchanged = if brain > 0 {
        1.0 - brain_changed as f64 / brain as f64
    } else {
        1.0
    };
    let summary = serde_json::json!({
        "defaced": true,
        "input": if dicom { "dicom-series" } else { "nifti" },
        "dims": vol.dims,
        "modality": format!("{:?}", d.modality).to_uppercase(),
        "fill": d.fill,
        "confidence": d.confidence,
        "removed_voxels": removed,
        "brain_voxels": brain,
        "brain_voxels_unchanged_fraction": unchanged,
        "instances": series.as_ref().map(|s| s.instances().len()),
        "frames": series.as_ref().map(|s| s.slices.len()),
        "note": note,
        "seconds": { "read": t_read, "deface": t_deface, "write": t_write },
    });
    let dims: Vec<String> = vol.dims.iter().map(|d| d.to_string()).collect();
    let human = format!(
        "defaced {} ({}, {}{}), confidence {:.2}: {} removed, {:.1}% of {} unchanged{}; {:.1} s",
        if dicom {
            "DICOM series"
        } else {
            "NIfTI volume"
        },
        format!("{:?}", d.modality).to_uppercase(),
        dims.join("x"),
        series
            .as_ref()
            .map(|s| format!(
                ", {}",
                veil_core::count(s.instances().len(), "instance", "instances")
            ))
            .unwrap_or_default(),
        d.confidence,
        veil_core::count(removed, "voxel", "voxels"),
        unchanged * 100.0,
        veil_core::count(brain, "brain voxel", "brain voxels"),
        note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
        t0.elapsed().as_secs_f64()
    );
    say(a.json, &summary, human)?;
    Ok(crate::exit::OK)
}
