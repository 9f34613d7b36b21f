//! Is a recognizable face still there? A check on the skin surface's
//! geometry, usable on any head volume (`veil verify --faces`, the
//! defacing tests).
//!
//! Face detectors trained on photographs also fire on the skull-like cut
//! surface of a defaced head (orbits and nasal cavity look like eyes and a
//! nose in a shaded render), so the decision here is geometric: a face has
//! a nose, a ridge that stands out of the surface around it by well over a
//! centimetre along a couple of centimetres of its length, on the midline
//! at the front of the head. A defaced head shows a flat or concave cut
//! surface there; holes cut into cavities lower its surroundings but not
//! the cut surface on both sides, which is why the surround is taken as the
//! highest level found symmetrically on both sides (a plane, tilted or not,
//! scores zero; a round forehead a few mm).
//!
//! The depth maps come from [`crate::render`] (views in patient space,
//! so the volume's orientation does not matter).

use crate::render::{Render, Skin, View};
use crate::volume::Volume;

/// The views: front, ±15° pitch, ±30° and ±60° yaw.
pub const VIEWS: [View; 7] = [
    View::new(0.0, 0.0),
    View::new(0.0, 15.0),
    View::new(0.0, -15.0),
    View::new(30.0, 0.0),
    View::new(-30.0, 0.0),
    View::new(60.0, 0.0),
    View::new(-60.0, 0.0),
];

/// A nose stands out of its surroundings by at least this much (mm) along
/// [`RIDGE_MM`] of its length. Measured on the test heads (five real and
/// average heads, MR and CT): 13 to 32 mm on the originals in the views
/// within 30° of the front, at most 7 mm on their defaced outputs.
pub const NOSE_MM: f64 = 10.0;

/// Length of the ridge that must stand out (the nose's dorsum to its tip is
/// 40-50 mm in adults, about 30 mm in children).
pub const RIDGE_MM: f64 = 15.0;

/// Lateral distances at which the surroundings are taken (past the alae of
/// the nose, within the cheeks and eye corners).
const SURROUND_MM: (f64, f64) = (18.0, 35.0);

/// Half-width of the band around the mid-sagittal plane where a nose is
/// sought (ears and cheeks are outside it).
const MIDLINE_MM: f64 = 25.0;

/// Pixel size of the renders, mm.
const PIXEL_MM: f64 = 1.0;

/// What the check saw in one view.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewResult {
    /// The viewpoint.
    pub view: View,
    /// How far the most prominent midline ridge stands out of its
    /// surroundings along [`RIDGE_MM`], mm (`None`: no midline surface with
    /// surroundings on both sides in this view).
    pub nose_prominence_mm: Option<f64>,
    /// Whether that is a nose (at least [`NOSE_MM`]).
    pub nose: bool,
}

/// The outcome of [`face_check`]. Holds measurements only: no values, no
/// image, nothing that identifies the person.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceReport {
    /// A face is there: a nose was found in at least one view.
    pub face: bool,
    /// The largest nose prominence over the views, mm.
    pub nose_prominence_mm: Option<f64>,
    /// Per view, in [`VIEWS`] order (empty when no skin was found).
    pub views: Vec<ViewResult>,
}

/// Renders the skin from [`VIEWS`] and decides whether a face is there.
/// A volume without a surface to render (empty, degenerate affine) has no
/// face.
pub fn face_check(vol: &Volume) -> FaceReport {
    match Skin::new(vol) {
        Ok(skin) => face_check_skin(&skin),
        Err(_) => FaceReport {
            face: false,
            nose_prominence_mm: None,
            views: Vec::new(),
        },
    }
}

/// [`face_check`] on a skin already extracted (to share it with other
/// renders).
pub fn face_check_skin(skin: &Skin<'_>) -> FaceReport {
    let views: Vec<ViewResult> = VIEWS
        .iter()
        .map(|&view| {
            let r = skin.render(view, PIXEL_MM);
            let p = nose_prominence(&r, skin.centre());
            ViewResult {
                view,
                nose_prominence_mm: p,
                nose: p.is_some_and(|p| p >= NOSE_MM),
            }
        })
        .collect();
    let nose_prominence_mm = views
        .iter()
        .filter_map(|v| v.nose_prominence_mm)
        .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))));
    FaceReport {
        face: views.iter().any(|v| v.nose),
        nose_prominence_mm,
        views,
    }
}

/// The prominence of the strongest midline ridge in a render, mm: for each
/// pixel on the front half of the head within [`MIDLINE_MM`] of the
/// mid-sagittal plane, its height towards the eye over the highest level
/// found symmetrically on both sides (mean of the two sides at the same
/// lateral distance, best of the distances in [`SURROUND_MM`]); then the
/// least of that along [`RIDGE_MM`] of a column (with ±2 mm of sideways
/// play), best over the image.
pub fn nose_prominence(r: &Render, centre: [f64; 3]) -> Option<f64> {
    let (w, h) = (r.width, r.height);
    let px = |mm: f64| (mm / r.pixel_mm).round() as usize;
    let (d0, d1) = (px(SURROUND_MM.0).max(1), px(SURROUND_MM.1).max(1));
    let height = |x: usize, y: usize| r.depth_at(x, y).map(|d| -f64::from(d));
    const NONE: f64 = f64::NEG_INFINITY;
    let mut prom = vec![NONE; w * h];
    for y in 0..h {
        for x in d1..w.saturating_sub(d1) {
            let Some(c) = height(x, y) else { continue };
            let Some(p) = r.point(x, y) else { continue };
            if (p[0] - centre[0]).abs() > MIDLINE_MM || p[1] <= centre[1] {
                continue;
            }
            let mut base = NONE;
            let mut complete = true;
            for d in (d0..=d1).step_by(px(2.0).max(1)) {
                match (height(x - d, y), height(x + d, y)) {
                    (Some(a), Some(b)) => base = base.max(0.5 * (a + b)),
                    _ => {
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                prom[y * w + x] = c - base;
            }
        }
    }
    // sideways play, then the weakest point along the ridge
    let play = px(2.0);
    let mut wide = vec![NONE; w * h];
    for y in 0..h {
        for x in 0..w {
            let (a, b) = (x.saturating_sub(play), (x + play).min(w - 1));
            wide[y * w + x] = (a..=b).map(|i| prom[y * w + i]).fold(NONE, f64::max);
        }
    }
    let run = px(RIDGE_MM).max(1);
    let mut best = NONE;
    for x in 0..w {
        for y in 0..h.saturating_sub(run - 1) {
            let low = (y..y + run)
                .map(|j| wide[j * w + x])
                .fold(f64::INFINITY, f64::min);
            best = best.max(low);
        }
    }
    best.is_finite().then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head-sized ellipsoid, optionally with a nose-like ridge on the
    /// front of it, or cut flat in front.
    fn head(nose: bool, cut: bool) -> Volume {
        let n = 200usize;
        let affine = [
            [1.0, 0.0, 0.0, -100.0],
            [0.0, 1.0, 0.0, -100.0],
            [0.0, 0.0, 1.0, -100.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let mut vol = Volume {
            dims: [n, n, n],
            data: vec![0.0; n * n * n],
            affine,
        };
        for k in 0..n {
            for j in 0..n {
                for i in 0..n {
                    let w = vol.to_world([i as f64, j as f64, k as f64]);
                    let e = (w[0] / 75.0).powi(2) + (w[1] / 90.0).powi(2) + (w[2] / 85.0).powi(2);
                    // a wedge-shaped ridge 22 mm high at its tip, 40 mm long
                    let ridge = nose
                        && (-30.0..=10.0).contains(&w[2])
                        && w[1] > 0.0
                        && w[1] < 90.0 + 22.0 * (10.0 - w[2]) / 40.0 - 2.0 * w[0].abs();
                    let mut inside = e <= 1.0 || (ridge && w[1] > 60.0);
                    if cut && w[1] > 55.0 {
                        inside = false;
                    }
                    if inside {
                        let idx = vol.index(i, j, k);
                        vol.data[idx] = 100.0;
                    }
                }
            }
        }
        vol
    }

    #[test]
    fn a_ridge_on_the_midline_is_a_nose_a_plain_or_cut_head_is_not() {
        let with = face_check(&head(true, false));
        assert!(with.face, "{with:?}");
        assert!(with.views[0].nose_prominence_mm.unwrap() > 12.0, "{with:?}");
        let plain = face_check(&head(false, false));
        assert!(!plain.face, "{plain:?}");
        assert!(plain.nose_prominence_mm.unwrap() < 5.0, "{plain:?}");
        let cut = face_check(&head(true, true));
        assert!(!cut.face, "{cut:?}");
    }

    #[test]
    fn nothing_to_render_is_no_face() {
        let vol = Volume {
            dims: [4, 4, 4],
            data: vec![0.0; 64],
            affine: [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        };
        let r = face_check(&vol);
        assert!(!r.face && r.views.is_empty());
    }
}
