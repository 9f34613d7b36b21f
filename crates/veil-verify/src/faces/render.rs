//! Shaded renders of a head's skin, made for a face detector trained on
//! photographs: what a person would see of a 3D print or a surface
//! rendering of the volume.
//!
//! Written for this check alone (not veil-deface's renderer), so that the
//! two face checks in `veil verify` share neither the surface nor the
//! views' geometry:
//!
//! * the skin level is halfway between the air (the volume's least value)
//!   and Otsu's threshold of its histogram: Otsu's split is where two
//!   classes separate best, which on an MR head with much dark bone and
//!   fluid can lie within the tissue, and halfway keeps the level near
//!   the air (chosen before looking at any render, not tuned);
//! * each ray is marched in 1 mm steps on a voxel mask and stops where the
//!   mask holds for [`SOLID_MM`] in a row (noise, ghosts and loose hair in
//!   the air are thinner than that), then the crossing is refined on the
//!   trilinear values;
//! * shading is Lambert with the light above the eye
//!   ([`LIGHT_ELEVATION`]), from the depth map's slopes, which is how a
//!   face is lit in most photographs the detector was trained on;
//! * where a ray enters the grid already inside the head (a volume
//!   cropped through the face or neck), the edge of the field of view is
//!   left black rather than drawn as a flat cut.
//!
//! Views are orthographic and set in patient space around the centre of the
//! above-threshold voxels' bounding box, so a volume stored in any
//! orientation (any affine) renders the same picture, and a head turned in
//! the scanner is seen turned.

use super::volume::Volume;

/// A viewpoint, degrees. `yaw 0, pitch 0` looks at the face from anterior,
/// the patient's superior up and their right on the image's left (as when
/// facing the person); yaw turns the camera about the superior axis, pitch
/// raises it towards superior.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    /// Degrees about the superior axis.
    pub yaw: f64,
    /// Degrees of elevation.
    pub pitch: f64,
}

/// The views of the issue: front, ±15° pitch, ±30° and ±60° yaw. A face
/// turned in the scanner by up to about 45° is within 15° of one of them.
pub const VIEWS: [View; 7] = [
    View {
        yaw: 0.0,
        pitch: 0.0,
    },
    View {
        yaw: 0.0,
        pitch: 15.0,
    },
    View {
        yaw: 0.0,
        pitch: -15.0,
    },
    View {
        yaw: 30.0,
        pitch: 0.0,
    },
    View {
        yaw: -30.0,
        pitch: 0.0,
    },
    View {
        yaw: 60.0,
        pitch: 0.0,
    },
    View {
        yaw: -60.0,
        pitch: 0.0,
    },
];

/// A ray stops at the skin only where the tissue is at least this thick
/// along it, mm.
pub const SOLID_MM: usize = 3;

/// Pixel size of the renders, mm: a face is then about 120-160 px wide,
/// well above the cascade's 40 px window.
pub const PIXEL_MM: f64 = 1.0;

/// A grayscale render: `width * height` pixels, row by row from the top,
/// 0 where the ray hits nothing.
#[derive(Debug, Clone)]
pub struct Image {
    /// Pixels across.
    pub width: usize,
    /// Pixels down.
    pub height: usize,
    /// Gray levels.
    pub pixels: Vec<u8>,
}

/// A volume ready to render: its skin mask and where the head is.
pub struct Scene<'a> {
    vol: &'a Volume,
    inv: [[f64; 4]; 3],
    mask: Vec<bool>,
    level: f32,
    centre: [f64; 3],
    radius: f64,
}

/// Otsu's threshold of the samples (256 bins between the least and the
/// 99.9th percentile, so a few hot voxels do not squeeze the histogram).
fn otsu(data: &[f32]) -> Option<f32> {
    let stride = (data.len() / 1_000_000).max(1);
    let mut s: Vec<f32> = data
        .iter()
        .step_by(stride)
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f32::total_cmp);
    let lo = s[0];
    let hi = s[(s.len() - 1) * 999 / 1000];
    if hi <= lo {
        return None;
    }
    const BINS: usize = 256;
    let bin = |v: f32| {
        (((v - lo) / (hi - lo)) * (BINS - 1) as f32).clamp(0.0, (BINS - 1) as f32) as usize
    };
    let mut h = [0f64; BINS];
    for &v in &s {
        h[bin(v)] += 1.0;
    }
    let total: f64 = h.iter().sum();
    let sum: f64 = h.iter().enumerate().map(|(i, c)| i as f64 * c).sum();
    let (mut w0, mut s0, mut best, mut at) = (0.0, 0.0, -1.0, 0);
    for (i, &c) in h.iter().enumerate() {
        w0 += c;
        s0 += i as f64 * c;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (s0 / w0, (sum - s0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            at = i;
        }
    }
    Some(lo + (at as f32 + 0.5) / (BINS - 1) as f32 * (hi - lo))
}

impl<'a> Scene<'a> {
    /// The skin of `vol`; `None` when there is nothing to render (a flat
    /// volume, a degenerate affine).
    pub fn new(vol: &'a Volume) -> Option<Scene<'a>> {
        let inv = vol.inverse()?;
        let [nx, ny, nz] = vol.dims;
        if nx < 2 || ny < 2 || nz < 2 || vol.data.len() != nx * ny * nz {
            return None;
        }
        let lo = vol.data.iter().copied().fold(f32::INFINITY, f32::min);
        let t = otsu(&vol.data)?;
        let level = lo + 0.5 * (t - lo);
        let mask: Vec<bool> = vol.data.iter().map(|&v| v > level).collect();
        // bounding box of the mask in patient space, from its voxel extent
        let (mut a, mut b) = ([usize::MAX; 3], [0usize; 3]);
        for k in 0..nz {
            for j in 0..ny {
                let row = &mask[vol.index(0, j, k)..vol.index(0, j, k) + nx];
                if let (Some(i0), Some(i1)) =
                    (row.iter().position(|&m| m), row.iter().rposition(|&m| m))
                {
                    for (d, (lo, hi)) in [(i0, i1), (j, j), (k, k)].into_iter().enumerate() {
                        a[d] = a[d].min(lo);
                        b[d] = b[d].max(hi);
                    }
                }
            }
        }
        if a[0] == usize::MAX {
            return None;
        }
        let (mut min, mut max) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
        for corner in 0..8 {
            let v = [
                if corner & 1 == 0 { a[0] } else { b[0] } as f64,
                if corner & 2 == 0 { a[1] } else { b[1] } as f64,
                if corner & 4 == 0 { a[2] } else { b[2] } as f64,
            ];
            let w = vol.to_world(v);
            for d in 0..3 {
                min[d] = min[d].min(w[d]);
                max[d] = max[d].max(w[d]);
            }
        }
        let centre = std::array::from_fn(|d| 0.5 * (min[d] + max[d]));
        let radius = (0..3)
            .map(|d| (0.5 * (max[d] - min[d])).powi(2))
            .sum::<f64>()
            .sqrt()
            + 2.0;
        Some(Scene {
            vol,
            inv,
            mask,
            level,
            centre,
            radius,
        })
    }

    fn voxel(&self, p: [f64; 3]) -> [f64; 3] {
        let m = &self.inv;
        std::array::from_fn(|r| m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3])
    }

    /// Trilinear value at `p` (the level itself outside the grid's last
    /// cells, so refining never jumps there).
    fn value(&self, p: [f64; 3]) -> f32 {
        let v = self.voxel(p);
        let [nx, ny, nz] = self.vol.dims;
        if v.iter().any(|x| *x < 0.0)
            || v[0] >= (nx - 1) as f64
            || v[1] >= (ny - 1) as f64
            || v[2] >= (nz - 1) as f64
        {
            return self.level;
        }
        let (i, j, k) = (v[0] as usize, v[1] as usize, v[2] as usize);
        let (fx, fy, fz) = (
            (v[0] - i as f64) as f32,
            (v[1] - j as f64) as f32,
            (v[2] - k as f64) as f32,
        );
        let d = &self.vol.data;
        let at = |di: usize, dj: usize, dk: usize| d[self.vol.index(i + di, j + dj, k + dk)];
        let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
        let x00 = lerp(at(0, 0, 0), at(1, 0, 0), fx);
        let x10 = lerp(at(0, 1, 0), at(1, 1, 0), fx);
        let x01 = lerp(at(0, 0, 1), at(1, 0, 1), fx);
        let x11 = lerp(at(0, 1, 1), at(1, 1, 1), fx);
        lerp(lerp(x00, x10, fy), lerp(x01, x11, fy), fz)
    }

    /// Renders the skin from `view`.
    pub fn render(&self, view: View) -> Image {
        let (d, u, v) = axes(view);
        let r = self.radius;
        let n = ((2.0 * r / PIXEL_MM).ceil() as usize).max(1);
        let steps = (2.0 * r).ceil();
        let c = self.centre;
        let [nx, ny, nz] = self.vol.dims;
        let m = &self.inv;
        // one mm along the ray, in voxels (the affine is linear)
        let dv: [f64; 3] =
            std::array::from_fn(|i| m[i][0] * d[0] + m[i][1] * d[1] + m[i][2] * d[2]);
        let mut depth = vec![f64::INFINITY; n * n];
        for y in 0..n {
            for x in 0..n {
                let (a, b) = (
                    (x as f64 + 0.5) * PIXEL_MM - r,
                    (y as f64 + 0.5) * PIXEL_MM - r,
                );
                let o: [f64; 3] = std::array::from_fn(|i| c[i] + a * u[i] + b * v[i] - r * d[i]);
                let ov = self.voxel(o);
                // the part of the ray inside the grid (slabs per axis)
                let (mut t0, mut t1) = (0.0f64, steps);
                for ax in 0..3 {
                    let hi = [nx, ny, nz][ax] as f64 - 0.5;
                    if dv[ax].abs() < 1e-12 {
                        if ov[ax] < -0.5 || ov[ax] > hi {
                            t1 = -1.0;
                        }
                        continue;
                    }
                    let (p, q) = ((-0.5 - ov[ax]) / dv[ax], (hi - ov[ax]) / dv[ax]);
                    t0 = t0.max(p.min(q));
                    t1 = t1.min(p.max(q));
                }
                if t1 < t0 {
                    continue;
                }
                let mut run = 0;
                let mut t = t0.ceil();
                let mut entered = false;
                while t <= t1 {
                    let i = (ov[0] + t * dv[0]).round();
                    let j = (ov[1] + t * dv[1]).round();
                    let k = (ov[2] + t * dv[2]).round();
                    let inside = i >= 0.0
                        && j >= 0.0
                        && k >= 0.0
                        && (i as usize) < nx
                        && (j as usize) < ny
                        && (k as usize) < nz
                        && self.mask[self.vol.index(i as usize, j as usize, k as usize)];
                    // a ray that enters the grid inside the head meets the
                    // field of view's edge, not skin: nothing to see there
                    if inside && !entered {
                        break;
                    }
                    entered = true;
                    if inside {
                        run += 1;
                        if run == SOLID_MM {
                            // the first sample of the run, refined between
                            // it and the outside sample before it
                            let s1 = t - (SOLID_MM - 1) as f64;
                            let s0 = s1 - 1.0;
                            let at =
                                |t: f64| -> [f64; 3] { std::array::from_fn(|i| o[i] + t * d[i]) };
                            let (v0, v1) = (self.value(at(s0)), self.value(at(s1)));
                            let f = if v1 > v0 {
                                f64::from(((self.level - v0) / (v1 - v0)).clamp(0.0, 1.0))
                            } else {
                                1.0
                            };
                            depth[y * n + x] = s0 + f;
                            break;
                        }
                    } else {
                        run = 0;
                    }
                    t += 1.0;
                }
            }
        }
        shade(&depth, n)
    }
}

/// Ray direction, image right and image down for a view, in RAS.
fn axes(view: View) -> ([f64; 3], [f64; 3], [f64; 3]) {
    let (sy, cy) = view.yaw.to_radians().sin_cos();
    let (sp, cp) = view.pitch.to_radians().sin_cos();
    // front: looking posterior (-y), right on the image is the patient's
    // left (-x), down is inferior (-z); yaw turns the camera about z
    let d0 = [-sy, -cy, 0.0];
    let u = [-cy, sy, 0.0];
    // pitch about u: the camera rises, looking down
    let d = [d0[0] * cp, d0[1] * cp, -sp];
    let v = [
        u[1] * d[2] - u[2] * d[1],
        u[2] * d[0] - u[0] * d[2],
        u[0] * d[1] - u[1] * d[0],
    ];
    // u × d points up (superior at pitch 0): the image's down is its negative
    (d, u, v.map(|x| -x))
}

/// Elevation of the light above the line of sight, degrees. Light from
/// above, as in most photographs, shades the eye sockets under the brows,
/// the sides of the nose and under it, which is what the cascade keys on.
/// Tuned on the original heads only: with the light at the eye (0°) the
/// cascade found faces on one of the five (sub-01, and pydeface_mean
/// weakly); at 20°, 40°, 50° and 60° the weakest original it found (ch2)
/// scored -, 4.7, 7.8 and 6.6, the others 10 to 55.
pub const LIGHT_ELEVATION: f64 = 50.0;

/// Lambert shading, no ambient term (skin turned away from the light is
/// black, as in a flash photograph): the cosine between the surface
/// normal (from the depth map's central differences) and the light.
fn shade(depth: &[f64], n: usize) -> Image {
    let mut pixels = vec![0u8; n * n];
    let z = |x: usize, y: usize| depth[y * n + x];
    let el = LIGHT_ELEVATION.to_radians();
    for y in 0..n {
        for x in 0..n {
            let c = z(x, y);
            if !c.is_finite() {
                continue;
            }
            let slope = |a: Option<f64>, b: Option<f64>| match (
                a.filter(|v| v.is_finite()),
                b.filter(|v| v.is_finite()),
            ) {
                (Some(a), Some(b)) => (b - a) / (2.0 * PIXEL_MM),
                (Some(a), None) => (c - a) / PIXEL_MM,
                (None, Some(b)) => (b - c) / PIXEL_MM,
                (None, None) => 0.0,
            };
            let gx = slope(
                x.checked_sub(1).map(|x| z(x, y)),
                (x + 1 < n).then(|| z(x + 1, y)),
            );
            let gy = slope(
                y.checked_sub(1).map(|y| z(x, y)),
                (y + 1 < n).then(|| z(x, y + 1)),
            );
            let cos = ((el.cos() - gy * el.sin()) / (1.0 + gx * gx + gy * gy).sqrt()).max(0.0);
            pixels[y * n + x] = (255.0 * cos).round() as u8;
        }
    }
    Image {
        width: n,
        height: n,
        pixels,
    }
}
