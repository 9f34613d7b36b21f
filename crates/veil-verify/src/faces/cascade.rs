//! The cascade face check: SeetaFace's frontal face detector (funnel
//! cascade of LAB-boosted and SURF-MLP classifiers, trained on photographs),
//! through the `rustface` crate, on shaded renders of the skin from
//! [`VIEWS`]. It sees a face as a person would, by its look, where the
//! geometric check (veil-deface) measures a nose; the two miss in
//! different ways, which is why `veil verify --faces` runs both.
//!
//! Settings, tuned on the original heads only (scripts/fetch-heads.sh:
//! ch2, sub-01_T1w, mni305_T1w, cranium_ct, pydeface_mean), never on
//! Veil's outputs, which were looked at only afterwards as the test:
//! see [`MIN_FACE_PX`], [`SCORE`] and [`PYRAMID`].

use std::sync::OnceLock;

use super::render::{Scene, View, VIEWS};
use super::volume::Volume;

/// SeetaFace's frontal model, shipped with rustface 0.1.7 (BSD-2-Clause;
/// provenance and digest in models/README.md).
static MODEL_BYTES: &[u8] = include_bytes!("../../models/seeta_fd_frontal_v1.0.bin");

/// Smallest face searched for, pixels (mm at 1 mm per pixel). An adult
/// face is 120-160 mm from brow to chin and a child's over 90 mm; the
/// cascade's box covers eyes to mouth, about 60 % of that. Below 60 px,
/// folds of a cut surface or an ear can be framed as a small face.
pub const MIN_FACE_PX: u32 = 60;

/// Scale step of the image pyramid (rustface's default 0.8 leaves gaps
/// between scales a face can fall into on a render).
pub const PYRAMID: f32 = 0.9;

/// A detection at least this score is a face: rustface's own default
/// (`cls_thresh`), not tuned here. Where the cascade found a face on the
/// original heads its best score was 8 to 46; the originals it missed
/// scored below 2 (mni305, cropped at the tip of the nose).
pub const SCORE: f64 = 3.85;

/// Candidates are collected down to this score for the report's
/// per-view scores (the decision is at [`SCORE`]; rustface refuses 0).
const REPORT_FLOOR: f64 = 0.01;

fn model() -> Option<&'static rustface::Model> {
    static M: OnceLock<Option<rustface::Model>> = OnceLock::new();
    M.get_or_init(|| rustface::read_model(MODEL_BYTES).ok())
        .as_ref()
}

/// What the cascade saw in one view.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewResult {
    /// The viewpoint.
    pub view: View,
    /// The best detection's score, if any candidate passed the cascade's
    /// earlier stages.
    pub score: Option<f64>,
    /// A face: `score >= SCORE`.
    pub face: bool,
}

/// The outcome of [`cascade_check`]: scores only, no image.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeReport {
    /// A face in at least one view.
    pub face: bool,
    /// Per view, in [`VIEWS`] order (empty when nothing could be rendered).
    pub views: Vec<ViewResult>,
}

impl CascadeReport {
    /// Views with a face.
    pub fn face_views(&self) -> usize {
        self.views.iter().filter(|v| v.face).count()
    }
}

/// The best score of a face in a grayscale image (`None`: no candidate).
pub fn best_score(pixels: &[u8], width: usize, height: usize) -> Option<f64> {
    let model = model()?.clone();
    let mut d = rustface::create_detector_with_model(model);
    d.set_min_face_size(MIN_FACE_PX);
    d.set_score_thresh(REPORT_FLOOR);
    d.set_pyramid_scale_factor(PYRAMID);
    d.set_slide_window_step(4, 4);
    let img = rustface::ImageData::new(pixels, width as u32, height as u32);
    d.detect(&img)
        .iter()
        .map(|f| f.score())
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))))
}

/// Renders `vol` from each of [`VIEWS`] and runs the cascade on each.
pub fn cascade_check(vol: &Volume) -> CascadeReport {
    let Some(scene) = Scene::new(vol) else {
        return CascadeReport {
            face: false,
            views: Vec::new(),
        };
    };
    let views: Vec<ViewResult> = VIEWS
        .iter()
        .map(|&view| {
            let img = scene.render(view);
            let score = best_score(&img.pixels, img.width, img.height);
            ViewResult {
                view,
                score,
                face: score.is_some_and(|s| s >= SCORE),
            }
        })
        .collect();
    CascadeReport {
        face: views.iter().any(|v| v.face),
        views,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_model_loads() {
        assert!(model().is_some());
    }

    #[test]
    fn nothing_to_render_and_a_plain_ball_are_no_face() {
        let id = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let empty = Volume {
            dims: [8, 8, 8],
            data: vec![0.0; 512],
            affine: id,
        };
        let r = cascade_check(&empty);
        assert!(!r.face && r.views.is_empty());
        // a 120 mm ball: a head without a face
        let n = 140usize;
        let mut ball = Volume {
            dims: [n, n, n],
            data: vec![0.0; n * n * n],
            affine: id,
        };
        for k in 0..n {
            for j in 0..n {
                for i in 0..n {
                    let d = [i, j, k].map(|x| x as f64 - 70.0);
                    if d.iter().map(|x| x * x).sum::<f64>() < 60.0 * 60.0 {
                        let at = ball.index(i, j, k);
                        ball.data[at] = 100.0;
                    }
                }
            }
        }
        let r = cascade_check(&ball);
        assert_eq!(r.views.len(), VIEWS.len());
        assert!(!r.face, "{r:?}");
    }
}
