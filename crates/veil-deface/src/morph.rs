//! Linear-time binary morphology on a voxel grid: Euclidean distance
//! transforms (so erosion and dilation cost the same for any radius, in
//! millimetres, on anisotropic grids), connected components and hole
//! filling.

/// A bool mask on a grid, `Volume::index` order.
pub type Mask = Vec<bool>;

/// Squared Euclidean distance in mm² from each voxel to the nearest voxel
/// where `seed` is true (0 on seeds; `f32::INFINITY` if there is no seed).
/// Felzenszwalb & Huttenlocher's separable lower-envelope algorithm: three
/// 1-D passes, O(n) each.
pub fn edt_sq(seed: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f32> {
    let mut d: Vec<f32> = seed
        .iter()
        .map(|&s| if s { 0.0 } else { f32::INFINITY })
        .collect();
    let max = dims[0].max(dims[1]).max(dims[2]);
    let mut line = vec![0f32; max];
    let mut out = vec![0f32; max];
    let mut v = vec![0usize; max];
    let mut z = vec![0f32; max + 1];
    let strides = [1, dims[0], dims[0] * dims[1]];
    for axis in 0..3 {
        let n = dims[axis];
        let stride = strides[axis];
        let w = spacing[axis] as f32;
        let (o1, o2) = match axis {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        };
        for b in 0..dims[o2] {
            for a in 0..dims[o1] {
                let base = a * strides[o1] + b * strides[o2];
                let mut any = false;
                for p in 0..n {
                    line[p] = d[base + p * stride];
                    any |= line[p].is_finite();
                }
                if !any {
                    continue;
                }
                edt_1d(&line[..n], w, &mut out[..n], &mut v, &mut z);
                for p in 0..n {
                    d[base + p * stride] = out[p];
                }
            }
        }
    }
    d
}

/// One line of the distance transform: `out[p] = min_q (w(p-q))² + f[q]`.
fn edt_1d(f: &[f32], w: f32, out: &mut [f32], v: &mut [usize], z: &mut [f32]) {
    let n = f.len();
    let mut k = 0usize;
    // Start at the first finite sample (infinite ones never win).
    let Some(first) = f.iter().position(|x| x.is_finite()) else {
        out.fill(f32::INFINITY);
        return;
    };
    v[0] = first;
    z[0] = f32::NEG_INFINITY;
    z[1] = f32::INFINITY;
    for q in first + 1..n {
        if !f[q].is_finite() {
            continue;
        }
        let xq = q as f32 * w;
        loop {
            let xv = v[k] as f32 * w;
            let s = ((f[q] + xq * xq) - (f[v[k]] + xv * xv)) / (2.0 * (xq - xv));
            if s <= z[k] && k > 0 {
                k -= 1;
            } else {
                if s <= z[k] {
                    // k == 0 and the new parabola dominates everywhere.
                    v[0] = q;
                    z[0] = f32::NEG_INFINITY;
                    z[1] = f32::INFINITY;
                    break;
                }
                k += 1;
                v[k] = q;
                z[k] = s;
                z[k + 1] = f32::INFINITY;
                break;
            }
        }
    }
    let mut k = 0usize;
    for (p, o) in out.iter_mut().enumerate() {
        let xp = p as f32 * w;
        while z[k + 1] < xp {
            k += 1;
        }
        let dx = xp - v[k] as f32 * w;
        *o = dx * dx + f[v[k]];
    }
}

/// Erosion by a ball of `r` mm: voxels farther than `r` from the outside.
pub fn erode(mask: &[bool], dims: [usize; 3], spacing: [f64; 3], r: f64) -> Mask {
    let outside: Vec<bool> = mask.iter().map(|&m| !m).collect();
    let d = edt_sq(&outside, dims, spacing);
    let r2 = (r * r) as f32;
    d.iter().map(|&x| x > r2).collect()
}

/// Dilation by a ball of `r` mm.
pub fn dilate(mask: &[bool], dims: [usize; 3], spacing: [f64; 3], r: f64) -> Mask {
    let d = edt_sq(mask, dims, spacing);
    let r2 = (r * r) as f32;
    d.iter().map(|&x| x <= r2).collect()
}

fn neighbours(i: usize, dims: [usize; 3], out: &mut [usize; 6]) -> usize {
    let (nx, ny, nz) = (dims[0], dims[1], dims[2]);
    let x = i % nx;
    let y = (i / nx) % ny;
    let z = i / (nx * ny);
    let mut n = 0;
    if x > 0 {
        out[n] = i - 1;
        n += 1;
    }
    if x + 1 < nx {
        out[n] = i + 1;
        n += 1;
    }
    if y > 0 {
        out[n] = i - nx;
        n += 1;
    }
    if y + 1 < ny {
        out[n] = i + nx;
        n += 1;
    }
    if z > 0 {
        out[n] = i - nx * ny;
        n += 1;
    }
    if z + 1 < nz {
        out[n] = i + nx * ny;
        n += 1;
    }
    n
}

/// Geodesic dilation: the voxels of `within` reachable from `seed` by a
/// 6-connected path through `within` no longer than `r` mm (path length
/// counted per step along the axis it takes), plus the seed itself. A
/// Dijkstra search, so anisotropic grids count true millimetres.
pub fn grow_within(
    seed: &[bool],
    within: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    r: f64,
) -> Mask {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let strides = [1usize, dims[0], dims[0] * dims[1]];
    // distances in micrometres as integers: a total order for the heap
    let step = spacing.map(|s| (s * 1000.0).round() as u64);
    let limit = (r * 1000.0).round() as u64;
    let mut dist = vec![u64::MAX; seed.len()];
    let mut heap = BinaryHeap::new();
    for (i, _) in seed.iter().enumerate().filter(|(_, &s)| s) {
        dist[i] = 0;
        heap.push(Reverse((0u64, i)));
    }
    let mut nb = [0usize; 6];
    while let Some(Reverse((d, i))) = heap.pop() {
        if d > dist[i] {
            continue;
        }
        let n = neighbours(i, dims, &mut nb);
        for &j in &nb[..n] {
            if !within[j] {
                continue;
            }
            let axis = (0..3)
                .rev()
                .find(|&a| i.abs_diff(j) == strides[a])
                .expect("a neighbour along one axis");
            let nd = d + step[axis];
            if nd <= limit && nd < dist[j] {
                dist[j] = nd;
                heap.push(Reverse((nd, j)));
            }
        }
    }
    dist.iter().map(|&d| d != u64::MAX).collect()
}

/// Labels the 6-connected components of `mask`; returns the labels (0 =
/// outside the mask) and each component's size (index = label - 1).
pub fn components(mask: &[bool], dims: [usize; 3]) -> (Vec<u32>, Vec<usize>) {
    let mut label = vec![0u32; mask.len()];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    let mut nb = [0usize; 6];
    for start in 0..mask.len() {
        if !mask[start] || label[start] != 0 {
            continue;
        }
        let l = sizes.len() as u32 + 1;
        label[start] = l;
        stack.push(start);
        let mut size = 0;
        while let Some(i) = stack.pop() {
            size += 1;
            let n = neighbours(i, dims, &mut nb);
            for &j in &nb[..n] {
                if mask[j] && label[j] == 0 {
                    label[j] = l;
                    stack.push(j);
                }
            }
        }
        sizes.push(size);
    }
    (label, sizes)
}

/// The largest 6-connected component (empty if the mask is).
pub fn largest_component(mask: &[bool], dims: [usize; 3]) -> Mask {
    let (label, sizes) = components(mask, dims);
    let Some((best, _)) = sizes.iter().enumerate().max_by_key(|(_, &s)| s) else {
        return vec![false; mask.len()];
    };
    let best = best as u32 + 1;
    label.iter().map(|&l| l == best).collect()
}

/// Fills the holes of a mask: every voxel not connected to the grid's
/// border through voxels outside the mask becomes part of it.
pub fn fill_holes(mask: &[bool], dims: [usize; 3]) -> Mask {
    let mut outside = vec![false; mask.len()];
    let mut stack = Vec::new();
    let (nx, ny, nz) = (dims[0], dims[1], dims[2]);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let border =
                    i == 0 || j == 0 || k == 0 || i + 1 == nx || j + 1 == ny || k + 1 == nz;
                let idx = i + nx * (j + ny * k);
                if border && !mask[idx] && !outside[idx] {
                    outside[idx] = true;
                    stack.push(idx);
                }
            }
        }
    }
    let mut nb = [0usize; 6];
    while let Some(i) = stack.pop() {
        let n = neighbours(i, dims, &mut nb);
        for &j in &nb[..n] {
            if !mask[j] && !outside[j] {
                outside[j] = true;
                stack.push(j);
            }
        }
    }
    outside.iter().map(|&o| !o).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_follows_paths_inside_the_allowed_voxels_up_to_its_length() {
        // a U-shaped corridor on a 1 x 2 x 1 mm grid: from the seed at one
        // tip, the other tip is near in space but far along the corridor
        let dims = [9, 5, 1];
        let sp = [1.0, 2.0, 1.0];
        let idx = |x: usize, y: usize| x + dims[0] * y;
        let mut within = vec![false; 45];
        for y in 0..5 {
            within[idx(0, y)] = true;
            within[idx(2, y)] = true;
        }
        within[idx(1, 4)] = true;
        let mut seed = vec![false; 45];
        seed[idx(0, 0)] = true;
        // 8 mm up the first arm (4 steps of 2 mm), 2 across, 8 down
        let g = grow_within(&seed, &within, dims, sp, 9.0);
        assert!(g[idx(0, 4)] && g[idx(1, 4)] && !g[idx(2, 4)]);
        let g = grow_within(&seed, &within, dims, sp, 18.0);
        assert!(g[idx(2, 0)], "the far tip at 18 mm along the path");
        assert!(!g[idx(1, 0)], "never outside the allowed voxels");
        let g = grow_within(&seed, &within, dims, sp, 17.9);
        assert!(!g[idx(2, 0)] && g[idx(2, 1)]);
    }

    #[test]
    fn distance_matches_brute_force_on_an_anisotropic_grid() {
        let dims = [9, 7, 5];
        let sp = [1.0, 0.5, 2.0];
        let n = dims[0] * dims[1] * dims[2];
        let seeds = [3usize, 40, 200, 301];
        let mut m = vec![false; n];
        for &s in &seeds {
            m[s] = true;
        }
        let d = edt_sq(&m, dims, sp);
        let pos = |i: usize| {
            [
                (i % 9) as f64 * sp[0],
                ((i / 9) % 7) as f64 * sp[1],
                (i / 63) as f64 * sp[2],
            ]
        };
        for (i, &di) in d.iter().enumerate() {
            let best = seeds
                .iter()
                .map(|&s| {
                    let (a, b) = (pos(i), pos(s));
                    (0..3).map(|c| (a[c] - b[c]).powi(2)).sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min);
            assert!((di as f64 - best).abs() < 1e-3, "voxel {i}: {di} vs {best}");
        }
    }

    #[test]
    fn holes_are_filled_and_components_counted() {
        let dims = [5, 5, 5];
        let mut m = vec![true; 125];
        m[62] = false; // centre: a hole
        m[0] = false; // corner: outside
        let f = fill_holes(&m, dims);
        assert!(f[62] && !f[0]);
        let mut two = vec![false; 125];
        two[0] = true;
        two[1] = true;
        two[124] = true;
        let (_, sizes) = components(&two, dims);
        assert_eq!(sizes, vec![2, 1]);
        assert_eq!(
            largest_component(&two, dims).iter().filter(|&&b| b).count(),
            2
        );
    }
}
