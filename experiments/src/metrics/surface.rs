//! Surface distances between two binary masks and their 95th-percentile Hausdorff distance, as
//! medpy's `hd95` defines them (method spec, section 8): the surface of a mask is the set of its
//! voxels that a binary erosion with the 6-neighbourhood removes (voxels on the edge of the grid
//! count as surface, the grid being surrounded by background); every surface voxel of each mask
//! takes its Euclidean distance, in millimetres through the voxel spacing, to the nearest surface
//! voxel of the other; both directions are pooled and the 95th percentile taken with linear
//! interpolation, as numpy's `percentile` does.
//!
//! Distances come from an exact Euclidean distance transform (Felzenszwalb and Huttenlocher's
//! separable lower envelope of parabolas, one axis at a time, weighted by the spacing), computed
//! only over the bounding box of the two surfaces: every nearest surface voxel lies inside it,
//! so the result equals the transform over the whole grid.

use rayon::prelude::*;

/// A binary mask over a `[d, h, w]` grid in C order, with the voxel spacing along each of those
/// axes in millimetres.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    /// Extents (d, h, w).
    pub shape: [usize; 3],
    /// Voxel size along (d, h, w), in millimetres.
    pub spacing: [f64; 3],
}

impl Grid {
    /// The grid of a volume stored in (z, x, y) order — extents (d, h, w) — whose voxel size is
    /// given along (x, y, z), as NIfTI headers and prepared cases give it.
    pub fn of_zxy_volume(shape: [usize; 3], spacing_xyz: [f32; 3]) -> Self {
        let [sx, sy, sz] = spacing_xyz.map(f64::from);
        Self {
            shape,
            spacing: [sz, sx, sy],
        }
    }

    fn index(&self, [z, y, x]: [usize; 3]) -> usize {
        (z * self.shape[1] + y) * self.shape[2] + x
    }

    fn voxels(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The surface voxels of `mask`, as (z, y, x) coordinates in memory order.
pub fn surface(mask: &[bool], grid: &Grid) -> Vec<[usize; 3]> {
    assert_eq!(mask.len(), grid.voxels(), "mask and grid sizes differ");
    let [d, h, w] = grid.shape;
    let inside = |z: usize, y: usize, x: usize| mask[grid.index([z, y, x])];
    let mut out = Vec::new();
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                if !inside(z, y, x) {
                    continue;
                }
                let interior = z > 0
                    && z + 1 < d
                    && y > 0
                    && y + 1 < h
                    && x > 0
                    && x + 1 < w
                    && inside(z - 1, y, x)
                    && inside(z + 1, y, x)
                    && inside(z, y - 1, x)
                    && inside(z, y + 1, x)
                    && inside(z, y, x - 1)
                    && inside(z, y, x + 1);
                if !interior {
                    out.push([z, y, x]);
                }
            }
        }
    }
    out
}

/// Squared distance transform of one line in place: `f[i] ← min_j (weight·(i − j)² + f[j])`,
/// with `f64::INFINITY` marking positions that are not yet reachable. `envelope` and `bounds` are
/// scratch space of at least `f.len()` and `f.len() + 1` elements.
fn transform_line(f: &mut [f64], weight: f64, envelope: &mut [usize], bounds: &mut [f64]) {
    let n = f.len();
    let mut k: usize = 0;
    let mut started = false;
    for q in 0..n {
        if f[q].is_infinite() {
            continue;
        }
        if !started {
            envelope[0] = q;
            bounds[0] = f64::NEG_INFINITY;
            bounds[1] = f64::INFINITY;
            started = true;
            continue;
        }
        let (fq, qf) = (f[q], q as f64);
        // Drop the parabolas the new one hides; bounds[0] = −∞ keeps the first.
        loop {
            let v = envelope[k];
            let vf = v as f64;
            let s =
                ((fq + weight * qf * qf) - (f[v] + weight * vf * vf)) / (2.0 * weight * (qf - vf));
            if s <= bounds[k] {
                k -= 1;
            } else {
                k += 1;
                envelope[k] = q;
                bounds[k] = s;
                bounds[k + 1] = f64::INFINITY;
                break;
            }
        }
    }
    if !started {
        return;
    }
    let values: Vec<f64> = envelope[..=k].iter().map(|&v| f[v]).collect();
    let mut j = 0;
    for (q, out) in f.iter_mut().enumerate() {
        let qf = q as f64;
        while bounds[j + 1] < qf {
            j += 1;
        }
        let dv = qf - envelope[j] as f64;
        *out = weight * dv * dv + values[j];
    }
}

/// Applies [`transform_line`] to every line along `axis` of the C-ordered box `extents`.
fn transform_axis(values: &mut [f64], extents: [usize; 3], axis: usize, weight: f64) {
    let strides = [extents[1] * extents[2], extents[2], 1];
    let n = extents[axis];
    let stride = strides[axis];
    // Every line along `axis` starts at one of these offsets.
    let starts: Vec<usize> = (0..extents[0])
        .flat_map(|z| (0..extents[1]).flat_map(move |y| (0..extents[2]).map(move |x| [z, y, x])))
        .filter(|c| c[axis] == 0)
        .map(|c| c[0] * strides[0] + c[1] * strides[1] + c[2])
        .collect();
    let lines: Vec<Vec<f64>> = starts
        .par_iter()
        .map_init(
            || (vec![0usize; n], vec![0f64; n + 1]),
            |(envelope, bounds), &start| {
                let mut line: Vec<f64> = (0..n).map(|i| values[start + i * stride]).collect();
                transform_line(&mut line, weight, envelope, bounds);
                line
            },
        )
        .collect();
    for (start, line) in starts.iter().zip(lines) {
        for (i, v) in line.into_iter().enumerate() {
            values[start + i * stride] = v;
        }
    }
}

/// For every voxel of `queries`, the distance in millimetres to the nearest voxel of `features`
/// (which must not be empty).
pub fn nearest_distances(features: &[[usize; 3]], queries: &[[usize; 3]], grid: &Grid) -> Vec<f64> {
    assert!(!features.is_empty(), "no feature voxels to measure to");
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for p in features.iter().chain(queries) {
        for a in 0..3 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let extents: [usize; 3] = std::array::from_fn(|a| hi[a] - lo[a] + 1);
    let local =
        |p: &[usize; 3]| ((p[0] - lo[0]) * extents[1] + p[1] - lo[1]) * extents[2] + p[2] - lo[2];
    let mut values = vec![f64::INFINITY; extents.iter().product()];
    for p in features {
        values[local(p)] = 0.0;
    }
    for axis in (0..3).rev() {
        transform_axis(
            &mut values,
            extents,
            axis,
            grid.spacing[axis] * grid.spacing[axis],
        );
    }
    queries.iter().map(|p| values[local(p)].sqrt()).collect()
}

/// numpy's `percentile(values, q)` with its default linear interpolation; `values` must not be
/// empty.
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    assert!(!values.is_empty(), "percentile of nothing");
    values.sort_by(f64::total_cmp);
    let position = (values.len() - 1) as f64 * q / 100.0;
    let below = position.floor() as usize;
    let above = (below + 1).min(values.len() - 1);
    let t = position - below as f64;
    let (a, b) = (values[below], values[above]);
    // numpy's `_lerp`: the form that is exact at t = 1 for t ≥ 0.5.
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

/// medpy's `hd95(result, reference, voxelspacing)` of two non-empty masks.
pub fn hd95(result: &[bool], reference: &[bool], grid: &Grid) -> f64 {
    let (a, b) = (surface(result, grid), surface(reference, grid));
    assert!(
        !a.is_empty() && !b.is_empty(),
        "HD95 needs two non-empty masks"
    );
    let mut pooled = nearest_distances(&b, &a, grid);
    pooled.extend(nearest_distances(&a, &b, grid));
    percentile(&mut pooled, 95.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nearest distances by trying every feature voxel.
    fn brute_force(features: &[[usize; 3]], queries: &[[usize; 3]], grid: &Grid) -> Vec<f64> {
        queries
            .iter()
            .map(|q| {
                features
                    .iter()
                    .map(|f| {
                        (0..3)
                            .map(|a| {
                                let d = (q[a] as f64 - f[a] as f64) * grid.spacing[a];
                                d * d
                            })
                            .sum::<f64>()
                            .sqrt()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn distance_transform_equals_brute_force_with_anisotropic_spacing() {
        let grid = Grid {
            shape: [7, 9, 11],
            spacing: [2.5, 0.8, 1.3],
        };
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for trial in 0..20 {
            let count = 1 + trial % 6;
            let point = |next: &mut dyn FnMut() -> usize| {
                [
                    next() % grid.shape[0],
                    next() % grid.shape[1],
                    next() % grid.shape[2],
                ]
            };
            let features: Vec<[usize; 3]> = (0..count).map(|_| point(&mut next)).collect();
            let queries: Vec<[usize; 3]> = (0..40).map(|_| point(&mut next)).collect();
            let fast = nearest_distances(&features, &queries, &grid);
            let slow = brute_force(&features, &queries, &grid);
            for (f, s) in fast.iter().zip(&slow) {
                assert!((f - s).abs() < 1e-9, "trial {trial}: {f} vs {s}");
            }
        }
    }

    #[test]
    fn surface_is_what_a_six_neighbour_erosion_removes() {
        let grid = Grid {
            shape: [5, 5, 5],
            spacing: [1.0; 3],
        };
        // A 3×3×3 cube in the middle: only its centre is interior.
        let mut mask = vec![false; 125];
        for z in 1..4 {
            for y in 1..4 {
                for x in 1..4 {
                    mask[grid.index([z, y, x])] = true;
                }
            }
        }
        let s = surface(&mask, &grid);
        assert_eq!(s.len(), 26);
        assert!(!s.contains(&[2, 2, 2]));
        // A full grid: only voxels on the grid's edge are surface (the outside is background).
        let full = vec![true; 125];
        assert_eq!(surface(&full, &grid).len(), 125 - 27);
    }

    #[test]
    fn percentile_matches_numpy_linear_interpolation() {
        // numpy.percentile([1, 2, 3, 4, 10], 95) = 8.8; ([0, 1], 95) = 0.95; ([7], 95) = 7.
        assert!((percentile(&mut [10.0, 2.0, 4.0, 1.0, 3.0], 95.0) - 8.8).abs() < 1e-12);
        assert!((percentile(&mut [1.0, 0.0], 95.0) - 0.95).abs() < 1e-12);
        assert_eq!(percentile(&mut [7.0], 95.0), 7.0);
    }
}
