//! The defacing stage of a batch (`--option clean-recognizable-visual-features`).
//!
//! Why before the chunk loop: a face is removed from a whole volume, not
//! one object at a time, so the CT and MR inputs are first grouped into
//! series (by Series Instance UID; a multi-frame Enhanced CT/MR object is
//! a series of its own), each series is assembled and defaced
//! once, and each instance's new pixel data is parked in a temporary file
//! under the review root. Staging an instance then only swaps its Pixel
//! Data and adds code 113102. A series that cannot be defaced with
//! confidence, and any CT/MR object outside a usable volume (localizer,
//! single image, a multi-frame object whose frames are not one volume),
//! goes to review with the reason: no face is
//! ever passed silently. veil-deid cannot deface, so it marks every CT,
//! MR and PT object [`veil_deid::DEFACE_PENDING`]; this stage replaces that
//! mark for the instances it defaced.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use veil_core::Tag;
use veil_io::{DataSet, TsInfo};
use veil_pixels::RawLayout;

/// Folder under the review root for the parked pixel data (removed when
/// the batch ends).
const PARK: &str = ".veil-deface";

/// What happens to one input.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Defaced: the new stored samples (little endian; every frame, in
    /// frame order, for a multi-frame object) are in this file,
    /// encoded when the instance is staged
    /// ([`veil_deface::series::encode_slice`]).
    Defaced {
        /// temporary file holding the samples
        pixels: PathBuf,
        /// what they mean
        layout: RawLayout,
        /// the source's transfer syntax
        ts: TsInfo,
    },
    /// To review, with the reason (no values).
    Review(String),
}

/// The defacing stage's result for a batch.
#[derive(Debug, Default)]
pub struct Stage {
    plans: HashMap<PathBuf, Plan>,
    park: Option<PathBuf>,
}

fn modality(ds: &DataSet) -> String {
    ds.ascii(Tag(0x0008, 0x0060)).unwrap_or_default()
}

/// Whether the stage defaces objects of this modality (CT, MR), series by
/// series; a caller spreading a batch over workers groups those by
/// Series Instance UID and hands each series to one worker.
pub fn is_volume_modality(ds: &DataSet) -> bool {
    matches!(modality(ds).as_str(), "CT" | "MR")
}

/// Number of Frames (0028,0008); 1 when absent or unreadable (the reader
/// refuses a malformed value with the reason).
fn number_of_frames(ds: &DataSet) -> usize {
    ds.ascii(Tag(0x0028, 0x0008))
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(1)
}

impl Stage {
    /// Groups the CT and MR inputs into series and defaces each one.
    pub fn prepare(files: &[PathBuf], review_root: &Path) -> std::io::Result<Stage> {
        // Keyed by Series Instance UID and, for a multi-frame object, its
        // path too: an enhanced object is a volume of its own, whatever
        // else shares its series (a localizer, another stack).
        let mut series: BTreeMap<(String, Option<PathBuf>), Vec<PathBuf>> = BTreeMap::new();
        let mut frames: HashMap<PathBuf, usize> = HashMap::new();
        for f in files {
            let Ok(file) = veil_io::read(f) else { continue };
            if !is_volume_modality(&file.dataset) {
                continue;
            }
            let uid = file.dataset.ascii(Tag(0x0020, 0x000E)).unwrap_or_default();
            let n = number_of_frames(&file.dataset);
            let own = (n > 1).then(|| f.clone());
            frames.insert(f.clone(), n);
            series.entry((uid, own)).or_default().push(f.clone());
        }
        let mut st = Stage::default();
        if series.is_empty() {
            return Ok(st);
        }
        let park = review_root.join(PARK);
        if park.exists() {
            // left by a killed run
            std::fs::remove_dir_all(&park)?;
        }
        std::fs::create_dir_all(&park)?;
        st.park = Some(park.clone());
        let mut n = 0usize;
        for members in series.values() {
            let review = |st: &mut Stage, reason: String| {
                for f in members {
                    st.plans.insert(f.clone(), Plan::Review(reason.clone()));
                }
            };
            if members.iter().map(|f| frames[f]).sum::<usize>() < 2 {
                review(&mut st, "defacing: a single CT/MR image is not a volume (localizer or 2-D image); a person must check it for a face".into());
                continue;
            }
            let (vol, s) = match veil_deface::series::read_series(members) {
                Ok(x) => x,
                Err(e) => {
                    review(
                        &mut st,
                        format!("defacing: the series is not a usable volume: {e}"),
                    );
                    continue;
                }
            };
            let d = match veil_deface::deface(&vol, &veil_deface::DefaceOptions::default()) {
                Ok(d) => d,
                Err(e) => {
                    review(&mut st, format!("defacing: {e}"));
                    continue;
                }
            };
            for (i, at) in s.instances().iter().enumerate() {
                let slice = &s.slices[at[0]];
                n += 1;
                let p = park.join(format!("{n}.raw"));
                veil_io::atomic::write_all(&p, &s.instance_pixel_bytes(&d.volume, i))?;
                let plan = Plan::Defaced {
                    pixels: p,
                    layout: slice.layout().clone(),
                    ts: slice.file.ts.clone(),
                };
                st.plans.insert(slice.path.clone(), plan);
            }
        }
        Ok(st)
    }

    /// Applies the plan to one staged object: `review` is the engine's
    /// review reason, changed in place. `Some` when the pixel data was
    /// replaced by the defaced volume's: the transfer syntax to write the
    /// object in, and what was transcoded (no values).
    pub fn apply(
        &self,
        input: &Path,
        ds: &mut DataSet,
        review: &mut Option<String>,
    ) -> std::io::Result<Option<(TsInfo, Option<String>)>> {
        if review.as_deref() != Some(veil_deid::DEFACE_PENDING) {
            return Ok(None);
        }
        match self.plans.get(input) {
            Some(Plan::Defaced { pixels, layout, ts }) => {
                let samples = std::fs::read(pixels)?;
                match veil_deface::series::encode_slice(layout, ts, samples) {
                    Ok(enc) => {
                        enc.apply_to(ds);
                        veil_deface::series::add_method_code(ds);
                        *review = None;
                        return Ok(Some((enc.ts, enc.transcoded)));
                    }
                    Err(e) => *review = Some(format!("defacing: {e}")),
                }
            }
            Some(Plan::Review(reason)) => *review = Some(reason.clone()),
            None => {}
        }
        Ok(None)
    }

    /// Removes the parked pixel data.
    pub fn clean_up(&self) -> std::io::Result<()> {
        match &self.park {
            Some(p) if p.exists() => std::fs::remove_dir_all(p),
            _ => Ok(()),
        }
    }
}
