//! Removing the face from a head volume, in patient space, without a template.
//!
//! Method (all in RAS+ millimetres through the affine, so the voxel order,
//! flips and origin of the input do not matter):
//! 1. find the head and the brain ([`crate::brain`], on a ~2 mm grid);
//! 2. project the brain onto the sagittal plane: for each height z, how far
//!    forward the brain reaches; widen that profile by a safety margin (a
//!    disc of [`MARGIN_MM`]) and take its concave envelope, which bridges the
//!    gap between the frontal lobes and the temporal poles above the orbits
//!    (the brain is never cut even where the mask is a little short);
//! 3. everything in front of that profile, from the bottom of the volume up
//!    to a little above the frontal pole (the brows), is the face: nose,
//!    lips, chin, cheeks, eyes and the soft tissue over the eyes and brows;
//!    with `remove_ears`, everything lateral of the brain's widened coronal
//!    profile at ear height goes too;
//! 4. brain first: nothing within [`MARGIN_MM`] of the brain in 3-D is
//!    removed, whatever the profile says (on CT the brain mask regrows
//!    into the temporal poles and the gyri over the orbits, see
//!    [`crate::brain::CT_REGROW_MM`]);
//! 5. the rest of the region becomes background: air (-1000 HU, or the
//!    volume's minimum if lower) for CT, the median background for MR.
//!    Graded against brain masks Veil did not make (BET, Colin27's own):
//!    docs/deface.md.
//!
//! When the head, the brain or a face in front of it is not found with
//! confidence, it fails with the reason instead of passing the face.

use crate::brain::{self, AnatomyError};
use crate::morph;
use crate::volume::Volume;

/// Distance kept between the brain mask and the removed region, mm.
pub const MARGIN_MM: f64 = 5.0;

/// How far above the frontal pole the cut reaches (covers the brows), mm.
const BROW_ABOVE_POLE_MM: f64 = 10.0;

/// The frontal pole lies at most this far below the top of the brain, mm.
const POLE_BELOW_TOP_MM: usize = 95;

/// How far the brain mask may come forward again below the frontal pole
/// before it counts as leaked into the face, mm.
const LEAK_TOLERANCE_MM: f64 = 8.0;

/// Below the frontal pole the brain's front retreats: from this far below
/// the pole (the frontal lobes' underside) by at least this much per mm of
/// descent (orbital surface, temporal poles, brainstem: measured 0.8 to
/// 1.2 on the test heads, so 0.6 leaves room). A brain mask reaching
/// further forward there has leaked into the eyes or cheeks.
const RETREAT_START_MM: f64 = 20.0;
const RETREAT_PER_MM: f64 = 0.6;

/// How far below the frontal lobes' underside the ear cut reaches, mm.
/// The lobes hang about 30 mm below the ear canal: measured against ear
/// masks Veil did not make (docs/deface.md), 60 mm left the lobes of the
/// real subject and of the head CT (about 30 % of each pinna); 85 mm
/// takes them.
const EAR_BELOW_MM: f64 = 85.0;

/// Distance kept between the brain and the ear cut, mm.
const EAR_MARGIN_MM: f64 = 12.0;

/// Less head tissue than this in front of the brain means no face was
/// found (already defaced, or field of view without a face), ml.
const MIN_FACE_ML: f64 = 15.0;

/// What kind of values the volume holds, which decides the thresholds and
/// the fill value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    /// Magnetic resonance: arbitrary units, background near the minimum.
    Mr,
    /// Computed tomography: Hounsfield units, air about -1000.
    Ct,
}

/// How to deface.
#[derive(Debug, Clone, Default)]
pub struct DefaceOptions {
    /// Also remove the ears (soft tissue lateral to the brain, around the
    /// level of the ear canals).
    pub remove_ears: bool,
    /// The modality; `None` detects it from the values (CT when values
    /// reach below -500 and bone above +300).
    pub modality: Option<Modality>,
}

/// The result of [`deface`].
#[derive(Debug, Clone)]
pub struct Defaced {
    /// The input with the face (and ears, if asked) replaced by background.
    pub volume: Volume,
    /// Voxels that were replaced (same grid, `Volume::index` order).
    pub removed: Vec<bool>,
    /// The brain mask Veil computed (same grid); no voxel in it is removed.
    pub brain: Vec<bool>,
    /// The modality used.
    pub modality: Modality,
    /// The value the removed voxels now hold (air for CT, background for MR).
    pub fill: f32,
    /// How sure the face was found, 0..1 (below the acceptance level the
    /// call fails instead).
    pub confidence: f64,
}

/// Why a volume could not be defaced. Reasons name what was not found, never
/// values or paths.
#[derive(Debug, thiserror::Error)]
pub enum DefaceError {
    /// No head could be found with confidence.
    #[error("no head found: {0}")]
    NoHead(String),
    /// The head was found but not the brain or the face.
    #[error("face not found with confidence: {0}")]
    NoFace(String),
    /// The volume cannot be processed (too small, degenerate affine...).
    #[error("unsupported volume: {0}")]
    Unsupported(String),
}

/// Guesses the modality from the values: CT has air near -1000 and bone
/// above +300 Hounsfield units; MR values are arbitrary and rarely negative.
pub fn detect_modality(vol: &Volume) -> Modality {
    let lo = brain::quantile(&vol.data, 0.01);
    let hi = brain::quantile(&vol.data, 0.999);
    if lo < -500.0 && hi > 300.0 {
        Modality::Ct
    } else {
        Modality::Mr
    }
}

/// A function of height z on 1 mm bins (NaN where undefined).
#[derive(Debug, Clone)]
struct Profile {
    z0: f64,
    v: Vec<f64>,
}

impl Profile {
    fn bin(&self, z: f64) -> isize {
        (z - self.z0).floor() as isize
    }
    fn z(&self, b: usize) -> f64 {
        self.z0 + b as f64 + 0.5
    }

    /// Widens the region `{value <= profile(z)}` by a disc of radius `r`.
    fn dilate(&self, r: f64) -> Profile {
        let n = self.v.len();
        let ri = r.ceil() as isize;
        let mut out = vec![f64::NAN; n];
        for (b, o) in out.iter_mut().enumerate() {
            let mut best = f64::NAN;
            for d in -ri..=ri {
                let c = b as isize + d;
                if c < 0 || c >= n as isize {
                    continue;
                }
                let v = self.v[c as usize];
                let dd = d as f64;
                if v.is_nan() || dd.abs() > r {
                    continue;
                }
                let w = v + (r * r - dd * dd).sqrt();
                if best.is_nan() || w > best {
                    best = w;
                }
            }
            *o = best;
        }
        Profile {
            z0: self.z0,
            v: out,
        }
    }

    /// The least concave function above the profile (its hull), over the
    /// bins where it is defined.
    fn concave_envelope(&self) -> Profile {
        let pts: Vec<(f64, f64)> = self
            .v
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(b, &v)| (b as f64, v))
            .collect();
        let mut hull: Vec<(f64, f64)> = Vec::new();
        for p in pts {
            while hull.len() >= 2 {
                let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
                // Keep only right turns (upper hull).
                let cross = (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
                if cross >= 0.0 {
                    hull.pop();
                } else {
                    break;
                }
            }
            hull.push(p);
        }
        let mut out = vec![f64::NAN; self.v.len()];
        for w in hull.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            for (b, o) in out
                .iter_mut()
                .enumerate()
                .take(x1 as usize + 1)
                .skip(x0 as usize)
            {
                let t = (b as f64 - x0) / (x1 - x0);
                *o = y0 + t * (y1 - y0);
            }
        }
        if hull.len() == 1 {
            out[hull[0].0 as usize] = hull[0].1;
        }
        Profile {
            z0: self.z0,
            v: out,
        }
    }

    fn defined(&self) -> Option<(usize, usize)> {
        let lo = self.v.iter().position(|v| !v.is_nan())?;
        let hi = self.v.iter().rposition(|v| !v.is_nan())?;
        Some((lo, hi))
    }
}

/// World (RAS+) centres of the true voxels of a mask, with each voxel's
/// half extent along y and z (and x).
fn world_voxels<'a>(
    vol: &'a Volume,
    mask: &'a [bool],
) -> impl Iterator<Item = ([f64; 3], [f64; 3])> + 'a {
    let a = vol.affine;
    let half = [0, 1, 2].map(|r| 0.5 * (a[r][0].abs() + a[r][1].abs() + a[r][2].abs()));
    let d = vol.dims;
    mask.iter()
        .enumerate()
        .filter(|(_, &m)| m)
        .map(move |(idx, _)| {
            let i = idx % d[0];
            let j = (idx / d[0]) % d[1];
            let k = idx / (d[0] * d[1]);
            (vol.to_world([i as f64, j as f64, k as f64]), half)
        })
}

/// For each 1 mm height bin, the largest `axis` coordinate (0 = x, 1 = y;
/// `sign` -1 for the smallest, negated) of the mask's voxels.
fn reach(vol: &Volume, mask: &[bool], axis: usize, sign: f64, z0: f64, n: usize) -> Profile {
    let mut v = vec![f64::NAN; n];
    for (w, h) in world_voxels(vol, mask) {
        let val = sign * w[axis] + h[axis];
        let lo = ((w[2] - h[2]) - z0).floor().max(0.0) as usize;
        let hi = (((w[2] + h[2]) - z0).floor().max(0.0) as usize).min(n - 1);
        for b in v.iter_mut().take(hi + 1).skip(lo) {
            if b.is_nan() || val > *b {
                *b = val;
            }
        }
    }
    Profile { z0, v }
}

/// The z range (RAS+ mm) that the volume covers.
fn z_range(vol: &Volume) -> (f64, f64) {
    let d = vol.dims;
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for c in 0..8 {
        let v = [
            if c & 1 == 0 { -0.5 } else { d[0] as f64 - 0.5 },
            if c & 2 == 0 { -0.5 } else { d[1] as f64 - 0.5 },
            if c & 4 == 0 { -0.5 } else { d[2] as f64 - 0.5 },
        ];
        let w = vol.to_world(v);
        lo = lo.min(w[2]);
        hi = hi.max(w[2]);
    }
    (lo.floor() - 1.0, hi.ceil() + 1.0)
}

/// The removal region as a function of a world point.
struct Cut {
    /// Front limit (y) per height, with extrapolation below the brain.
    front: Profile,
    /// Lowest defined bin of `front` and the slope used below it (mm of y
    /// per mm of z, >= 0: the limit never moves forward going down).
    low_bin: usize,
    low_slope: f64,
    z_top: f64,
    /// Ears: lateral limits per height and the height and y range.
    ears: Option<(Profile, Profile, f64, f64, f64, f64)>,
}

impl Cut {
    fn front_at(&self, z: f64) -> f64 {
        let b = self.front.bin(z);
        if b >= self.low_bin as isize {
            let b = (b as usize).min(self.front.v.len() - 1);
            let v = self.front.v[b];
            if !v.is_nan() {
                return v;
            }
        }
        let zl = self.front.z(self.low_bin);
        self.front.v[self.low_bin] - self.low_slope * (zl - z).max(0.0)
    }

    fn removes(&self, w: [f64; 3]) -> bool {
        if w[2] <= self.z_top && w[1] > self.front_at(w[2]) {
            return true;
        }
        if let Some((right, left, zlo, zhi, ylo, yhi)) = &self.ears {
            if w[2] >= *zlo && w[2] <= *zhi && w[1] >= *ylo && w[1] <= *yhi {
                let b = right.bin(w[2]).clamp(0, right.v.len() as isize - 1) as usize;
                let (r, l) = (right.v[b], left.v[b]);
                if (!r.is_nan() && w[0] > r) || (!l.is_nan() && -w[0] > l) {
                    return true;
                }
            }
        }
        false
    }
}

/// Removes the face from a head volume. See the module docs for the method.
pub fn deface(vol: &Volume, opts: &DefaceOptions) -> Result<Defaced, DefaceError> {
    if vol.dims.iter().any(|&d| d < 16) || vol.data.len() != vol.dims.iter().product::<usize>() {
        return Err(DefaceError::Unsupported(
            "fewer than 16 voxels along an axis, or data not matching the size".into(),
        ));
    }
    let sp = vol.spacing();
    if sp.iter().any(|&s| !(0.05..=10.0).contains(&s)) {
        return Err(DefaceError::Unsupported(
            "voxel size outside 0.05..10 mm".into(),
        ));
    }
    let modality = opts.modality.unwrap_or_else(|| detect_modality(vol));
    let (cv, f) = brain::coarse(vol);
    let anat = brain::anatomy(&cv, modality).map_err(|e| match e {
        AnatomyError::NoHead(r) => DefaceError::NoHead(r),
        AnatomyError::NoBrain(r) => DefaceError::NoFace(format!("brain not found: {r}")),
    })?;

    // Sagittal profile of the brain's front, widened and made concave.
    let (z0, z1) = z_range(vol);
    let n = (z1 - z0) as usize + 1;
    let mut brain_c = anat.brain.clone();
    let raw = reach(&cv, &brain_c, 1, 1.0, z0, n);
    let (blo, bhi) = raw
        .defined()
        .ok_or_else(|| DefaceError::NoFace("empty brain mask".into()))?;
    // The frontal pole: the bin where the brain reaches furthest forward.
    // Searched within the upper 95 mm of the brain: a mask leaked into the
    // tongue can reach as far forward, but lies lower.
    let pole = (blo.max(bhi.saturating_sub(POLE_BELOW_TOP_MM))..=bhi)
        .filter(|&b| !raw.v[b].is_nan())
        .max_by(|&a, &b| raw.v[a].total_cmp(&raw.v[b]))
        .expect("defined");
    // Below the frontal pole the brain only retreats (orbital surface,
    // temporal poles, brainstem). A mask that comes forward again there
    // has leaked into the face (tongue, pharynx: blurry or averaged
    // images); cap it at what lies above plus a tolerance and drop the
    // leaked voxels from the brain.
    let mut cap = raw.clone();
    let mut above = raw.v[pole];
    for b in (blo..pole).rev() {
        if cap.v[b].is_nan() {
            continue;
        }
        let below = raw.z(pole) - raw.z(b);
        let anatomical = raw.v[pole] - RETREAT_PER_MM * (below - RETREAT_START_MM).max(0.0);
        cap.v[b] = cap.v[b].min(above + LEAK_TOLERANCE_MM).min(anatomical);
        above = above.min(cap.v[b]);
    }
    let mut dropped = 0usize;
    {
        let d = cv.dims;
        for (idx, m) in brain_c.iter_mut().enumerate() {
            if !*m {
                continue;
            }
            let w = cv.to_world([
                (idx % d[0]) as f64,
                ((idx / d[0]) % d[1]) as f64,
                (idx / (d[0] * d[1])) as f64,
            ]);
            let b = cap.bin(w[2]).clamp(0, n as isize - 1) as usize;
            if b < pole && !cap.v[b].is_nan() && w[1] > cap.v[b] {
                *m = false;
                dropped += 1;
            }
        }
    }
    let raw = if dropped > 0 {
        reach(&cv, &brain_c, 1, 1.0, z0, n)
    } else {
        raw
    };
    // Brain first: whatever the cut's profile says, nothing within
    // MARGIN_MM of the brain in 3-D is removed (the profile implies it for
    // the face; this holds it for every part of the cut, ears included).
    let spared = morph::dilate(&brain_c, cv.dims, cv.spacing(), MARGIN_MM);
    let front = raw.dilate(MARGIN_MM).concave_envelope();
    let (flo, _) = front.defined().expect("dilated from a defined profile");
    let z_top = raw.z(pole) + BROW_ABOVE_POLE_MM;
    // Below the brain: follow the lowest edge of the hull, never forward.
    let mut low_slope = 0.0;
    if let Some(b2) = (flo + 1..front.v.len())
        .find(|&b| !front.v[b].is_nan() && (front.v[b] - front.v[flo]).abs() > 1e-9)
    {
        let s = (front.v[b2] - front.v[flo]) / (b2 - flo) as f64;
        low_slope = s.max(0.0);
    }
    let ears = if opts.remove_ears {
        let right = reach(&cv, &brain_c, 0, 1.0, z0, n)
            .dilate(EAR_MARGIN_MM)
            .concave_envelope();
        let left = reach(&cv, &brain_c, 0, -1.0, z0, n)
            .dilate(EAR_MARGIN_MM)
            .concave_envelope();
        // Extend the widest extent below the brain (the ear lobes hang
        // below the temporal lobes).
        let extend = |p: Profile| {
            let (lo, _) = p.defined().expect("defined");
            let mut p = p;
            let v = p.v[lo];
            for b in p.v.iter_mut().take(lo) {
                *b = v;
            }
            p
        };
        // Ears: from EAR_BELOW_MM below the frontal lobes' underside up
        // to the pole, and from 140 mm behind the pole to 25 mm behind it
        // (the ear canal lies about 90 mm behind the frontal pole).
        let y_pole = raw.v[pole];
        let under = (blo..=pole)
            .find(|&b| !raw.v[b].is_nan() && raw.v[b] > y_pole - 15.0)
            .unwrap_or(pole);
        Some((
            extend(right),
            extend(left),
            raw.z(under) - EAR_BELOW_MM,
            raw.z(pole) + 5.0,
            y_pole - 140.0,
            y_pole - 25.0,
        ))
    } else {
        None
    };
    let cut = Cut {
        front,
        low_bin: flo,
        low_slope,
        z_top,
        ears,
    };

    // How much head is in front: a face, or nothing to deface?
    let coarse_ml = {
        let s = cv.spacing();
        s[0] * s[1] * s[2] / 1000.0
    };
    let removable: Vec<bool> = anat
        .head
        .iter()
        .zip(&spared)
        .map(|(&h, &s)| h && !s)
        .collect();
    let face_voxels = world_voxels(&cv, &removable)
        .filter(|(w, _)| cut.removes(*w))
        .count();
    let face_ml = face_voxels as f64 * coarse_ml;
    if face_ml < MIN_FACE_ML {
        return Err(DefaceError::NoFace(format!(
            "only {face_ml:.1} ml of head in front of the brain (at least {MIN_FACE_ML} expected)"
        )));
    }

    let fill = match modality {
        Modality::Ct => vol
            .data
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min)
            .min(-1000.0),
        Modality::Mr => {
            let bg: Vec<f32> = cv
                .data
                .iter()
                .zip(&anat.head)
                .filter(|(_, &h)| !h)
                .map(|(&v, _)| v)
                .collect();
            if bg.is_empty() {
                brain::quantile(&vol.data, 0.01)
            } else {
                brain::quantile(&bg, 0.5).min(anat.head_threshold)
            }
        }
    };
    let fill = vol
        .data
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min)
        .max(fill);

    // Apply on the input grid, row by row (x, y, z are linear in i).
    let d = vol.dims;
    let a = vol.affine;
    let mut out = vol.clone();
    let mut removed = vec![false; vol.data.len()];
    let mut brain_fine = vec![false; vol.data.len()];
    let cd = cv.dims;
    for k in 0..d[2] {
        for j in 0..d[1] {
            let w0 = vol.to_world([0.0, j as f64, k as f64]);
            let row = vol.index(0, j, k);
            let crow = cd[0] * (f.of(1, j) + cd[1] * f.of(2, k));
            for i in 0..d[0] {
                let fi = i as f64;
                let w = [
                    w0[0] + a[0][0] * fi,
                    w0[1] + a[1][0] * fi,
                    w0[2] + a[2][0] * fi,
                ];
                let idx = row + i;
                let c = crow + f.of(0, i);
                brain_fine[idx] = brain_c[c];
                if !spared[c] && cut.removes(w) {
                    removed[idx] = true;
                    out.data[idx] = fill;
                }
            }
        }
    }
    let brain_n = brain_fine.iter().filter(|&&b| b).count();
    let hit = brain_fine
        .iter()
        .zip(&removed)
        .filter(|(&b, &r)| b && r)
        .count();
    if hit as f64 > brain_n as f64 * 0.001 {
        return Err(DefaceError::NoFace(format!(
            "the cut would reach {hit} brain voxels"
        )));
    }
    let confidence = (face_ml / 60.0).min(1.0);
    Ok(Defaced {
        volume: out,
        removed,
        brain: brain_fine,
        modality,
        fill,
        confidence,
    })
}
