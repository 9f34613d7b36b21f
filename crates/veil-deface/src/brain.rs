//! The head and the brain, found without a template, for MR and CT.
//!
//! Why no template or registration: registration is what fails on inputs
//! not oriented like the template (pydeface cuts frontal brain then), and a
//! template would have to ship with its licence. The head is the largest
//! bright object; the brain is the large soft-tissue object deep inside it
//! (MR: beyond the scalp and skull, CT: off the bone), separated from the
//! eyes and muscles by a morphological opening. Everything here runs on a
//! grid of about 2 mm (see [`coarse`]), which is robust and fast; the masks
//! are mapped back to the input grid by the caller.

use crate::deface::Modality;
use crate::morph::{self, Mask};
use crate::volume::Volume;

/// The head and brain of one volume, on the grid they were computed on.
#[derive(Debug, Clone)]
pub struct Anatomy {
    /// Head (skin surface inwards, holes filled).
    pub head: Mask,
    /// Brain.
    pub brain: Mask,
    /// Value separating head from background.
    pub head_threshold: f32,
}

/// Why the head or brain was not found (no values).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AnatomyError {
    /// No object that could be a head.
    #[error("{0}")]
    NoHead(String),
    /// A head but no brain of plausible size.
    #[error("{0}")]
    NoBrain(String),
}

/// The `q`-quantile (0..1) of some values (a stride sample for speed).
pub fn quantile(values: &[f32], q: f64) -> f32 {
    let step = (values.len() / 2_000_000).max(1);
    let mut s: Vec<f32> = values
        .iter()
        .step_by(step)
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if s.is_empty() {
        return 0.0;
    }
    let k = ((s.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    let (_, v, _) = s.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    *v
}

/// Otsu's threshold of the values in `[lo, hi]` (256 bins).
pub fn otsu(values: impl Iterator<Item = f32>, lo: f32, hi: f32) -> f32 {
    let mut hist = [0f64; 256];
    let w = (hi - lo).max(f32::EPSILON);
    for v in values {
        if v >= lo && v <= hi {
            let b = (((v - lo) / w) * 255.0) as usize;
            hist[b.min(255)] += 1.0;
        }
    }
    let total: f64 = hist.iter().sum();
    let sum: f64 = hist.iter().enumerate().map(|(i, h)| i as f64 * h).sum();
    let (mut wb, mut sb, mut best, mut best_t) = (0.0, 0.0, -1.0, 0usize);
    for (t, h) in hist.iter().enumerate() {
        wb += h;
        sb += t as f64 * h;
        let wf = total - wb;
        if wb == 0.0 || wf == 0.0 {
            continue;
        }
        let (mb, mf) = (sb / wb, (sum - sb) / wf);
        let between = wb * wf * (mb - mf) * (mb - mf);
        if between > best {
            best = between;
            best_t = t;
        }
    }
    lo + (best_t as f32 + 0.5) / 255.0 * w
}

/// Blocks of voxels averaged into one coarse voxel: `size` fine voxels
/// per axis, fine voxel `i` in block `(i + phase) / size`.
#[derive(Debug, Clone, Copy)]
pub struct Blocks {
    /// Fine voxels per block, per axis.
    pub size: [usize; 3],
    /// Empty fine positions before the first voxel, per axis.
    pub phase: [usize; 3],
}

impl Blocks {
    /// The coarse index of fine index `i` along `axis`.
    pub fn of(&self, axis: usize, i: usize) -> usize {
        (i + self.phase[axis]) / self.size[axis]
    }
}

/// Averages blocks of voxels so that the grid is about 2 mm: the masks
/// need no finer detail (the face cut keeps a margin of several mm from the
/// brain) and every later step gets up to 8 times faster. Blocks are laid
/// from the end of each axis that lies lowest in patient space, so the
/// same head stored flipped or in another axis order gets the same coarse
/// grid in patient space, hence the same result.
pub fn coarse(vol: &Volume) -> (Volume, Blocks) {
    let sp = vol.spacing();
    let d = vol.dims;
    let mut b = Blocks {
        size: [1; 3],
        phase: [0; 3],
    };
    for a in 0..3 {
        if sp[a] > 0.0 && sp[a] < 1.5 {
            b.size[a] = ((2.0 / sp[a]).round() as usize).max(1);
        }
        // the axis's direction in patient space: its largest component
        let col = [vol.affine[0][a], vol.affine[1][a], vol.affine[2][a]];
        let major = (0..3)
            .max_by(|&x, &y| col[x].abs().total_cmp(&col[y].abs()))
            .expect("three");
        if col[major] < 0.0 {
            b.phase[a] = (b.size[a] - d[a] % b.size[a]) % b.size[a];
        }
    }
    let cd = [0, 1, 2].map(|a| (d[a] + b.phase[a]).div_ceil(b.size[a]));
    let mut sum = vec![0f64; cd[0] * cd[1] * cd[2]];
    let mut cnt = vec![0u32; sum.len()];
    for k in 0..d[2] {
        let ck = b.of(2, k);
        for j in 0..d[1] {
            let cj = b.of(1, j);
            let row = vol.index(0, j, k);
            let crow = cd[0] * (cj + cd[1] * ck);
            for i in 0..d[0] {
                let c = crow + b.of(0, i);
                sum[c] += vol.data[row + i] as f64;
                cnt[c] += 1;
            }
        }
    }
    let data = sum
        .iter()
        .zip(&cnt)
        .map(|(s, &c)| (s / c.max(1) as f64) as f32)
        .collect();
    // coarse voxel I is centred on fine position I*size - phase + (size-1)/2
    let mut affine = vol.affine;
    for row in affine.iter_mut().take(3) {
        let mut off = 0.0;
        for (c, (&size, &phase)) in b.size.iter().zip(&b.phase).enumerate() {
            let fc = size as f64;
            off += row[c] * ((fc - 1.0) / 2.0 - phase as f64);
            row[c] *= fc;
        }
        row[3] += off;
    }
    (
        Volume {
            dims: cd,
            data,
            affine,
        },
        b,
    )
}

/// The level that separates the head from the air around it: -300 HU for
/// CT; for MR half way from the background to Otsu's split of background
/// and tissue (half of it keeps dim skin). The skin renders
/// ([`crate::render`]) cut the same surface the defacer finds.
pub fn head_threshold(vol: &Volume, modality: Modality) -> f32 {
    match modality {
        Modality::Ct => -300.0,
        Modality::Mr => {
            let lo = quantile(&vol.data, 0.001);
            let hi = quantile(&vol.data, 0.995);
            let t = otsu(vol.data.iter().copied(), lo, hi);
            lo + (t - lo) * 0.5
        }
    }
}

/// How far the CT brain regrows from its core along brain-valued voxels
/// away from bone, mm. Measured on the head CT against an independent
/// brain mask (docs/deface.md): 4.5 mm (a plain dilation) cut the
/// temporal poles, 15 mm some of them, 30 mm none; at 60 mm the mask
/// leaks along the neck muscles and into an eye.
pub const CT_REGROW_MM: f64 = 30.0;

/// Finds the head and the brain.
pub fn anatomy(vol: &Volume, modality: Modality) -> Result<Anatomy, AnatomyError> {
    let dims = vol.dims;
    let sp = vol.spacing();
    let voxel_ml = sp[0] * sp[1] * sp[2] / 1000.0;
    let ml = |m: &[bool]| m.iter().filter(|&&b| b).count() as f64 * voxel_ml;

    // The head: above the background level, largest object, holes filled.
    let head_threshold = head_threshold(vol, modality);
    let above: Mask = vol.data.iter().map(|&v| v > head_threshold).collect();
    // A small opening first detaches head holders, coils and noise.
    let opened = morph::dilate(&morph::erode(&above, dims, sp, 2.5), dims, sp, 2.5);
    let head = morph::largest_component(&opened, dims);
    let head = morph::fill_holes(&head, dims);
    let head: Mask = head.iter().zip(&above).map(|(&h, &a)| h || a).collect();
    let head = morph::largest_component(&head, dims);
    let head = morph::fill_holes(&head, dims);
    let head_ml = ml(&head);
    if head_ml < 250.0 {
        return Err(AnatomyError::NoHead(format!(
            "the largest object is {head_ml:.0} ml, too small for a head"
        )));
    }

    // Depth below the skin, mm.
    let outside: Mask = head.iter().map(|&h| !h).collect();
    let depth2 = morph::edt_sq(&outside, dims, sp);

    // Brain candidates: soft tissue at brain intensity, deep enough. For
    // MR a strict band first (white matter and the brighter grey matter:
    // it does not bridge into the eyes and cheeks even on blurry images),
    // then grey matter within a few mm of that.
    let (strict, loose): (Mask, Mask) = match modality {
        Modality::Ct => {
            let bone: Mask = vol.data.iter().map(|&v| v > 250.0).collect();
            let near_bone = morph::dilate(&bone, dims, sp, 1.5);
            let c: Mask = (0..vol.data.len())
                .map(|i| {
                    let v = vol.data[i];
                    head[i] && !near_bone[i] && (5.0..=80.0).contains(&v) && depth2[i] > 36.0
                })
                .collect();
            (c.clone(), c)
        }
        Modality::Mr => {
            // Deep voxels (more than 25 mm in) are mostly brain: their
            // median is a brain intensity whatever the weighting.
            let deep: Vec<f32> = (0..vol.data.len())
                .filter(|&i| depth2[i] > 625.0)
                .map(|i| vol.data[i])
                .collect();
            if deep.len() < 1000 {
                return Err(AnatomyError::NoBrain(
                    "the head is too thin to hold a brain".into(),
                ));
            }
            let med = quantile(&deep, 0.5);
            let band = |lo: f32, hi: f32, d2: f32| -> Mask {
                (0..vol.data.len())
                    .map(|i| {
                        let v = vol.data[i];
                        head[i] && v >= med * lo && v <= med * hi && depth2[i] > d2
                    })
                    .collect()
            };
            (band(0.8, 1.6, 64.0), band(0.55, 1.6, 36.0))
        }
    };
    // Opening of 4 mm: cuts the optic nerves and other thin bridges to
    // the eyes and muscles; the largest piece is the brain.
    let core = morph::erode(&strict, dims, sp, 4.0);
    let core = morph::largest_component(&core, dims);
    let brain: Mask = match modality {
        // On CT the core loses what sits between bone: the bone margin and
        // the opening take about 10 mm off the temporal poles in the
        // middle cranial fossa and the gyri over the orbital roof, and a
        // plain 4.5 mm dilation does not bring them back. Regrow along
        // paths inside the candidates instead.
        Modality::Ct => morph::grow_within(&core, &strict, dims, sp, CT_REGROW_MM),
        Modality::Mr => {
            let grown = morph::dilate(&core, dims, sp, 4.5);
            grown.iter().zip(&strict).map(|(&g, &c)| g && c).collect()
        }
    };
    let brain = morph::largest_component(&brain, dims);
    let brain = morph::fill_holes(&brain, dims);
    let brain = if modality == Modality::Mr {
        let near = morph::dilate(&brain, dims, sp, 6.0);
        let b: Mask = (0..brain.len())
            .map(|i| brain[i] || (near[i] && loose[i]))
            .collect();
        morph::fill_holes(&morph::largest_component(&b, dims), dims)
    } else {
        brain
    };
    let brain_ml = ml(&brain);
    if !(300.0..=2500.0).contains(&brain_ml) {
        return Err(AnatomyError::NoBrain(format!(
            "the brain found is {brain_ml:.0} ml, outside 300..2500 ml"
        )));
    }
    Ok(Anatomy {
        head,
        brain,
        head_threshold,
    })
}
