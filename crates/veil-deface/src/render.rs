//! Surface renders of a head: what a person (or a face-recognition system)
//! would see if the volume were turned into a 3D model of the skin.
//!
//! The skin is the boundary of the largest connected region above an
//! air/tissue threshold (so noise, ghosts and loose objects in the air do
//! not hide the face). Views are orthographic, set up in *patient space*
//! around the head's centre, so a volume stored in any orientation (any
//! affine) renders the same picture. Each ray is marched through the grid
//! from the head's bounding box and stops at the first skin voxel (the
//! crossing is then refined on the interpolated values), which keeps a view
//! of a 256^3 volume well under the 0.3 s budget on one core. Shading is
//! Lambert with the light at the eye, computed from the depth map, which
//! is what the face checks use anyway.

use crate::volume::Volume;

/// A viewpoint around the head's centre, in patient space.
///
/// `yaw 0, pitch 0` looks at the face from the front (from anterior, image
/// up = superior, the patient's right on the image's left, as when facing
/// the person). Positive yaw turns the camera about the superior axis
/// towards the patient's left; positive pitch raises it towards superior
/// (looking down on the face).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    /// Degrees about the superior axis.
    pub yaw_deg: f64,
    /// Degrees of elevation.
    pub pitch_deg: f64,
}

impl View {
    /// From the front.
    pub const FRONT: View = View {
        yaw_deg: 0.0,
        pitch_deg: 0.0,
    };

    /// A view at `yaw` and `pitch` degrees.
    pub const fn new(yaw_deg: f64, pitch_deg: f64) -> View {
        View { yaw_deg, pitch_deg }
    }
}

/// One rendered view.
#[derive(Clone)]
pub struct Render {
    /// Image width and height, pixels (square pixels of `pixel_mm`).
    pub width: usize,
    /// Image height, pixels.
    pub height: usize,
    /// Pixel size, mm.
    pub pixel_mm: f64,
    /// Shaded 8-bit gray image, row by row from the top; 0 where the ray
    /// hits nothing.
    pub image: Vec<u8>,
    /// Distance from the image plane to the skin along the ray, mm;
    /// `f32::INFINITY` where the ray hits nothing.
    pub depth: Vec<f32>,
    /// Patient-space point of pixel (0, 0)'s corner on the image plane.
    origin: [f64; 3],
    right: [f64; 3],
    up: [f64; 3],
    dir: [f64; 3],
}

impl std::fmt::Debug for Render {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Render")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("pixel_mm", &self.pixel_mm)
            .finish_non_exhaustive()
    }
}

impl Render {
    /// Depth at pixel (x, y), `None` where the ray missed.
    pub fn depth_at(&self, x: usize, y: usize) -> Option<f32> {
        let d = self.depth[y * self.width + x];
        d.is_finite().then_some(d)
    }

    /// The patient-space (RAS+ mm) skin point seen at pixel (x, y).
    pub fn point(&self, x: usize, y: usize) -> Option<[f64; 3]> {
        let t = f64::from(self.depth_at(x, y)?);
        let (a, b) = (
            (x as f64 + 0.5) * self.pixel_mm,
            (y as f64 + 0.5) * self.pixel_mm,
        );
        Some(std::array::from_fn(|r| {
            self.origin[r] + a * self.right[r] - b * self.up[r] + t * self.dir[r]
        }))
    }

    /// The viewing direction (unit, patient space, from the eye into the head).
    pub fn direction(&self) -> [f64; 3] {
        self.dir
    }

    /// The image's right and up axes in patient space (unit).
    pub fn axes(&self) -> ([f64; 3], [f64; 3]) {
        (self.right, self.up)
    }
}

/// The skin of a head volume, ready to render from any viewpoint.
pub struct Skin<'a> {
    vol: &'a Volume,
    threshold: f32,
    inside: Vec<bool>,
    /// Per block of BLOCK^3 voxels: whether it or a neighbouring block
    /// holds head voxels. From a point in a block without, the nearest
    /// head voxel is more than BLOCK voxels away along every axis, so the
    /// march can jump that far (empty-space skipping: most rays cross a
    /// lot of air).
    near: Vec<bool>,
    nblocks: [usize; 3],
    lo: [usize; 3],
    hi: [usize; 3],
    centre: [f64; 3],
    radius: f64,
    inv: [[f64; 4]; 3],
}

impl std::fmt::Debug for Skin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Skin")
            .field("threshold", &self.threshold)
            .field("centre", &self.centre)
            .field("radius", &self.radius)
            .finish_non_exhaustive()
    }
}

/// Edge of the blocks used for empty-space skipping, voxels.
const BLOCK: usize = 4;

/// Why a volume has no skin to render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The affine cannot be inverted.
    #[error("degenerate affine")]
    Affine,
    /// Nothing stands out of the background.
    #[error("no surface above the background")]
    Empty,
}

impl<'a> Skin<'a> {
    /// The skin at the automatic air/tissue threshold ([`skin_threshold`]).
    pub fn new(vol: &'a Volume) -> Result<Skin<'a>, RenderError> {
        Skin::with_threshold(vol, skin_threshold(vol))
    }

    /// The skin at a given threshold (physical units).
    pub fn with_threshold(vol: &'a Volume, threshold: f32) -> Result<Skin<'a>, RenderError> {
        let inv = invert_affine(&vol.affine).ok_or(RenderError::Affine)?;
        let above: Vec<bool> = vol.data.iter().map(|&v| v > threshold).collect();
        let inside = crate::morph::largest_component(&above, vol.dims);
        let [nx, ny, nz] = vol.dims;
        let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
        let (mut sum, mut n) = ([0.0f64; 3], 0usize);
        // each row's first and last head voxel: the farthest head point
        // from any centre lies at one of them (distance is convex on a line)
        let mut ends = Vec::new();
        for k in 0..nz {
            for j in 0..ny {
                let row = nx * (j + ny * k);
                let Some(first) = inside[row..row + nx].iter().position(|&b| b) else {
                    continue;
                };
                let last = nx
                    - 1
                    - inside[row..row + nx]
                        .iter()
                        .rev()
                        .position(|&b| b)
                        .unwrap_or(0);
                ends.push([first, j, k]);
                ends.push([last, j, k]);
                lo = [lo[0].min(first), lo[1].min(j), lo[2].min(k)];
                hi = [hi[0].max(last), hi[1].max(j), hi[2].max(k)];
                for i in first..=last {
                    if inside[row + i] {
                        sum[0] += i as f64;
                        sum[1] += j as f64;
                        sum[2] += k as f64;
                        n += 1;
                    }
                }
            }
        }
        if n == 0 {
            return Err(RenderError::Empty);
        }
        let nblocks = vol.dims.map(|d| d.div_ceil(BLOCK));
        let mut occupied = vec![false; nblocks[0] * nblocks[1] * nblocks[2]];
        for (p, _) in inside.iter().enumerate().filter(|(_, &b)| b) {
            let (i, j, k) = (p % nx, (p / nx) % ny, p / (nx * ny));
            occupied[i / BLOCK + nblocks[0] * (j / BLOCK + nblocks[1] * (k / BLOCK))] = true;
        }
        // the 26 neighbours: within sqrt(3) blocks
        let near = crate::morph::dilate(&occupied, nblocks, [1.0; 3], 1.75);
        let centre = vol.to_world(sum.map(|s| s / n as f64));
        let half = vol.spacing().iter().fold(0.0f64, |a, &s| a.max(s));
        let radius = ends
            .iter()
            .map(|e| dist(vol.to_world(e.map(|v| v as f64)), centre))
            .fold(0.0f64, f64::max)
            + half;
        Ok(Skin {
            vol,
            threshold,
            inside,
            lo,
            hi,
            centre,
            radius,
            inv,
            near,
            nblocks,
        })
    }

    /// The threshold in use.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The centroid of the head, patient space (RAS+ mm).
    pub fn centre(&self) -> [f64; 3] {
        self.centre
    }

    /// The head voxels (largest connected region above the threshold).
    pub fn inside(&self) -> &[bool] {
        &self.inside
    }

    /// Renders the skin from `view` with square pixels of `pixel_mm`.
    pub fn render(&self, view: View, pixel_mm: f64) -> Render {
        self.render_framed(view, pixel_mm, self.centre, self.radius)
    }

    /// The radius of the head around its centre, mm (every head voxel is
    /// within it).
    pub fn radius(&self) -> f64 {
        self.radius
    }

    /// Renders with the frame of another skin (its centre and radius), so
    /// that two versions of a head (before and after defacing) come out
    /// pixel for pixel comparable.
    pub fn render_framed(
        &self,
        view: View,
        pixel_mm: f64,
        centre: [f64; 3],
        radius: f64,
    ) -> Render {
        let (yaw, pitch) = (view.yaw_deg.to_radians(), view.pitch_deg.to_radians());
        // unit vector from the centre to the eye
        let eye = [
            -yaw.sin() * pitch.cos(),
            yaw.cos() * pitch.cos(),
            pitch.sin(),
        ];
        let dir = eye.map(|v| -v);
        let up = normalize(sub([0.0, 0.0, 1.0], scale(dir, dir[2])));
        let right = cross(dir, up);
        let r = radius;
        let size = ((2.0 * r / pixel_mm).ceil() as usize).max(1);
        // corner of pixel (0, 0): left (-right) and top (+up) of the eye point
        let plane_centre = sub(centre, scale(dir, r));
        let origin = add(sub(plane_centre, scale(right, r)), scale(up, r));

        let vol = self.vol;
        let [nx, ny, nz] = vol.dims;
        let m = |p: [f64; 3]| -> [f64; 3] {
            std::array::from_fn(|a| {
                self.inv[a][0] * p[0]
                    + self.inv[a][1] * p[1]
                    + self.inv[a][2] * p[2]
                    + self.inv[a][3]
            })
        };
        // direction in voxel units per mm
        let dv: [f64; 3] = std::array::from_fn(|a| {
            self.inv[a][0] * dir[0] + self.inv[a][1] * dir[1] + self.inv[a][2] * dir[2]
        });
        // half a voxel along the ray at most
        let max_dv = dv.iter().fold(0.0f64, |acc, v| acc.max(v.abs()));
        let step = 0.5 / max_dv.max(1e-9);
        // through a block with no head near it: a whole block at a time
        let skip = BLOCK as f64 / max_dv.max(1e-9);
        let (blo, bhi) = (
            self.lo.map(|v| v as f64 - 0.5),
            self.hi.map(|v| v as f64 + 0.5),
        );

        let mut depth = vec![f32::INFINITY; size * size];
        for y in 0..size {
            for x in 0..size {
                let (a, b) = ((x as f64 + 0.5) * pixel_mm, (y as f64 + 0.5) * pixel_mm);
                let p: [f64; 3] = std::array::from_fn(|c| origin[c] + a * right[c] - b * up[c]);
                let pv = m(p);
                // clip the ray to the head's voxel box
                let (mut t0, mut t1) = (0.0f64, 2.0 * r);
                for ax in 0..3 {
                    if dv[ax].abs() < 1e-12 {
                        if pv[ax] < blo[ax] || pv[ax] > bhi[ax] {
                            t1 = -1.0;
                        }
                        continue;
                    }
                    let (ta, tb) = ((blo[ax] - pv[ax]) / dv[ax], (bhi[ax] - pv[ax]) / dv[ax]);
                    t0 = t0.max(ta.min(tb));
                    t1 = t1.min(ta.max(tb));
                }
                let mut t = t0;
                while t <= t1 {
                    let q = [pv[0] + t * dv[0], pv[1] + t * dv[1], pv[2] + t * dv[2]];
                    let (i, j, k) = (q[0].round(), q[1].round(), q[2].round());
                    if i < 0.0 || j < 0.0 || k < 0.0 {
                        t += step;
                        continue;
                    }
                    let (i, j, k) = (i as usize, j as usize, k as usize);
                    if i >= nx || j >= ny || k >= nz {
                        t += step;
                        continue;
                    }
                    if !self.near[self.block(i, j, k)] {
                        t += skip;
                        continue;
                    }
                    if self.inside[i + nx * (j + ny * k)] {
                        depth[y * size + x] = self.refine(pv, dv, step, t) as f32;
                        break;
                    }
                    t += step;
                }
            }
        }
        let image = shade(&depth, size, size, pixel_mm);
        Render {
            width: size,
            height: size,
            pixel_mm,
            image,
            depth,
            origin,
            right,
            up,
            dir,
        }
    }

    fn block(&self, i: usize, j: usize, k: usize) -> usize {
        i / BLOCK + self.nblocks[0] * (j / BLOCK + self.nblocks[1] * (k / BLOCK))
    }

    /// Where near the first skin voxel at `tb` the interpolated values
    /// cross the threshold: bracket the crossing (nearest-voxel and
    /// interpolated insides differ by up to half a voxel), then bisect, so
    /// the depth is smooth rather than stepped by voxels.
    fn refine(&self, pv: [f64; 3], dv: [f64; 3], step: f64, tb: f64) -> f64 {
        let at = |t: f64| self.sample([pv[0] + t * dv[0], pv[1] + t * dv[1], pv[2] + t * dv[2]]);
        let thr = self.threshold;
        let (mut ta, mut tb) = (tb - step, tb);
        let mut n = 0;
        while at(ta) >= thr && n < 4 {
            (ta, tb) = (ta - step, ta);
            n += 1;
        }
        n = 0;
        while at(tb) < thr && n < 4 {
            (ta, tb) = (tb, tb + step);
            n += 1;
        }
        if at(ta) >= thr || at(tb) < thr {
            return 0.5 * (ta + tb);
        }
        for _ in 0..6 {
            let mid = 0.5 * (ta + tb);
            if at(mid) >= thr {
                tb = mid;
            } else {
                ta = mid;
            }
        }
        // linear between the last bracket
        let (fa, fb) = (at(ta) - thr, at(tb) - thr);
        if fb > fa {
            ta + (tb - ta) * f64::from(-fa / (fb - fa))
        } else {
            0.5 * (ta + tb)
        }
    }

    /// Trilinear value at voxel coordinates (clamped to the grid).
    fn sample(&self, q: [f64; 3]) -> f32 {
        let d = self.vol.dims;
        let mut base = [0usize; 3];
        let mut frac = [0.0f32; 3];
        for a in 0..3 {
            let c = q[a].clamp(0.0, (d[a] - 1) as f64);
            let f = c.floor();
            base[a] = (f as usize).min(d[a].saturating_sub(2));
            frac[a] = (c - base[a] as f64) as f32;
        }
        let step = [
            usize::from(d[0] > 1),
            usize::from(d[1] > 1) * d[0],
            usize::from(d[2] > 1) * d[0] * d[1],
        ];
        let i0 = self.vol.index(base[0], base[1], base[2]);
        let v = &self.vol.data;
        let lerp = |a: f32, b: f32, f: f32| a + (b - a) * f;
        let c = |o: usize| v[i0 + o];
        let x00 = lerp(c(0), c(step[0]), frac[0]);
        let x10 = lerp(c(step[1]), c(step[1] + step[0]), frac[0]);
        let x01 = lerp(c(step[2]), c(step[2] + step[0]), frac[0]);
        let x11 = lerp(
            c(step[2] + step[1]),
            c(step[2] + step[1] + step[0]),
            frac[0],
        );
        lerp(lerp(x00, x10, frac[1]), lerp(x01, x11, frac[1]), frac[2])
    }
}

/// Renders `vol`'s skin from `view` at 1 mm pixels (one-off; use [`Skin`]
/// for several views of the same volume).
pub fn render(vol: &Volume, view: View) -> Result<Render, RenderError> {
    Ok(Skin::new(vol)?.render(view, 1.0))
}

/// The air/tissue threshold ([`crate::brain::head_threshold`]). CT: -300
/// HU, between air and fat, so skin and fat count and partial-volume air
/// does not. MR: halfway from the background level to the Otsu split of
/// background and tissue; Otsu alone sits inside the tissue's range and
/// would shrink the surface into the face, the halfway point keeps dim
/// skin. The defacer's head mask uses the same function, so the check
/// sees the head the defacer saw.
pub fn skin_threshold(vol: &Volume) -> f32 {
    crate::brain::head_threshold(vol, crate::deface::detect_modality(vol))
}

/// Lambert shading with the light at the eye, from the depth map's slope.
fn shade(depth: &[f32], w: usize, h: usize, pixel_mm: f64) -> Vec<u8> {
    let at = |x: usize, y: usize| depth[y * w + x];
    let slope = |c: f32, lo: Option<f32>, hi: Option<f32>| -> f32 {
        match (lo.filter(|v| v.is_finite()), hi.filter(|v| v.is_finite())) {
            (Some(a), Some(b)) => (b - a) / 2.0,
            (Some(a), None) => c - a,
            (None, Some(b)) => b - c,
            (None, None) => 0.0,
        }
    };
    let mut img = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let c = at(x, y);
            if !c.is_finite() {
                continue;
            }
            let gx = slope(
                c,
                (x > 0).then(|| at(x - 1, y)),
                (x + 1 < w).then(|| at(x + 1, y)),
            );
            let gy = slope(
                c,
                (y > 0).then(|| at(x, y - 1)),
                (y + 1 < h).then(|| at(x, y + 1)),
            );
            let (gx, gy) = (f64::from(gx) / pixel_mm, f64::from(gy) / pixel_mm);
            let lambert = 1.0 / (1.0 + gx * gx + gy * gy).sqrt();
            img[y * w + x] = (20.0 + 235.0 * lambert).round() as u8;
        }
    }
    img
}

/// The inverse of a voxel-to-world affine, as three rows.
pub(crate) fn invert_affine(a: &[[f64; 4]; 4]) -> Option<[[f64; 4]; 3]> {
    let m = |r: usize, c: usize| a[r][c];
    let det = m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1))
        - m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0))
        + m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
    if !det.is_finite() || det.abs() < 1e-12 {
        return None;
    }
    // row r, column c: the cofactor of (c, r) over det
    let mut inv: [[f64; 4]; 3] = std::array::from_fn(|r| {
        let mut row = [0.0; 4];
        for (c, v) in row.iter_mut().take(3).enumerate() {
            let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
            let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
            *v = (m(r1, c1) * m(r2, c2) - m(r1, c2) * m(r2, c1)) / det;
        }
        row
    });
    for row in &mut inv {
        row[3] = -(row[0] * a[0][3] + row[1] * a[1][3] + row[2] * a[2][3]);
    }
    Some(inv)
}

fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    a.map(|v| v * s)
}
fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn normalize(a: [f64; 3]) -> [f64; 3] {
    let n = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt();
    a.map(|v| v / n)
}
fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    let d = sub(a, b);
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ball of radius 40 mm with a 15 mm bump on its anterior side, in a
    /// grid whose axes are permuted and flipped relative to RAS.
    fn ball(affine_kind: u8) -> Volume {
        let n = 120usize;
        let mut data = vec![0.0f32; n * n * n];
        // world point of voxel (i,j,k): depends on the kind
        let affine = match affine_kind {
            0 => [
                [1.0, 0.0, 0.0, -60.0],
                [0.0, 1.0, 0.0, -60.0],
                [0.0, 0.0, 1.0, -60.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            // i = -y (anterior to posterior), j = z, k = -x
            _ => [
                [0.0, 0.0, -1.0, 60.0],
                [-1.0, 0.0, 0.0, 60.0],
                [0.0, 1.0, 0.0, -60.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        };
        let mut vol = Volume {
            dims: [n, n, n],
            data: Vec::new(),
            affine,
        };
        for k in 0..n {
            for j in 0..n {
                for i in 0..n {
                    let w = vol.to_world([i as f64, j as f64, k as f64]);
                    let r = (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]).sqrt();
                    let bump = {
                        let (dx, dy, dz) = (w[0], w[1] - 40.0, w[2] + 10.0);
                        (dx * dx + dy * dy + dz * dz).sqrt()
                    };
                    if r <= 40.0 || bump <= 15.0 {
                        data[i + n * (j + n * k)] = 100.0;
                    }
                }
            }
        }
        vol.data = data;
        vol
    }

    #[test]
    fn front_view_sees_the_bump_first_whatever_the_affine() {
        for kind in [0u8, 1] {
            let vol = ball(kind);
            let skin = Skin::new(&vol).expect("skin");
            assert!(
                (0.0..100.0).contains(&skin.threshold()),
                "{}",
                skin.threshold()
            );
            let r = skin.render(View::FRONT, 1.0);
            // nearest point: the bump's tip at y = 55, z = -10
            let (mut best, mut at) = (f32::INFINITY, (0, 0));
            for y in 0..r.height {
                for x in 0..r.width {
                    if let Some(d) = r.depth_at(x, y) {
                        if d < best {
                            best = d;
                            at = (x, y);
                        }
                    }
                }
            }
            let p = r.point(at.0, at.1).expect("hit");
            assert!((p[1] - 55.0).abs() < 1.5, "tip y {p:?} (kind {kind})");
            assert!(p[0].abs() < 3.0 && (p[2] + 10.0).abs() < 3.0, "tip {p:?}");
            // the bump is 15 mm in front of the ball's surface
            assert!(r.image.iter().any(|&v| v > 200));
        }
    }

    #[test]
    fn yaw_turns_towards_the_patients_left() {
        let vol = ball(0);
        let skin = Skin::new(&vol).expect("skin");
        let r = skin.render(View::new(90.0, 0.0), 1.0);
        // looking from the patient's left (-x): the bump (anterior) is on
        // the image's left? The camera at -x looks towards +x with up = +z;
        // right = dir x up = (+x) x (+z) = -y, so anterior is image-left.
        let (right, _) = r.axes();
        assert!((right[1] + 1.0).abs() < 1e-9, "{right:?}");
        let mid = r.height / 2;
        let row: Vec<_> = (0..r.width).filter_map(|x| r.point(x, mid)).collect();
        assert!(row.iter().all(|p| p[0] < 1.0), "the near side is the left");
    }
}
