//! Resampling as `scipy.ndimage` does it for batchgenerators' spatial transform: cubic B-spline
//! interpolation (`map_coordinates(order=3, mode="constant")`: coefficients prefiltered with the
//! mirror boundary, mirrored coefficients inside the volume, the constant for any coordinate
//! outside [0, n − 1] on any axis), linear interpolation with the same constant rule, and the
//! Gaussian filter with zeros beyond the border (`gaussian_filter(mode="constant")`, truncated at
//! 4σ).

use rayon::prelude::*;

/// The pole of the cubic B-spline's prefilter, √3 − 2.
fn pole() -> f64 {
    3f64.sqrt() - 2.0
}

/// Prefilters one line in place (scipy's `spline_filter1d(order=3, mode="mirror")`).
fn prefilter_line(c: &mut [f64]) {
    let n = c.len();
    if n < 2 {
        return;
    }
    let z = pole();
    for v in c.iter_mut() {
        *v *= (1.0 - z) * (1.0 - 1.0 / z);
    }
    // Causal initialisation with the mirror boundary.
    let zn = z.powi(n as i32 - 1);
    let mut first = c[0] + zn * c[n - 1];
    let mut zi = z;
    for i in 1..n - 1 {
        first += zi * (c[i] + zn * c[n - 1 - i]);
        zi *= z;
    }
    c[0] = first / (1.0 - zn * zn);
    for i in 1..n {
        c[i] += z * c[i - 1];
    }
    // Anti-causal initialisation and pass.
    c[n - 1] = (z * c[n - 2] + c[n - 1]) * z / (z * z - 1.0);
    for i in (0..n - 1).rev() {
        c[i] = z * (c[i + 1] - c[i]);
    }
}

/// Applies `f` to every line of a `[d, h, w]` volume along `axis`.
/// The lines are gathered, processed in parallel and written back.
fn for_each_line(
    values: &mut [f64],
    shape: [usize; 3],
    axis: usize,
    f: impl Fn(&mut [f64]) + Sync,
) {
    let strides = [shape[1] * shape[2], shape[2], 1];
    let (n, stride) = (shape[axis], strides[axis]);
    let others: Vec<usize> = (0..3).filter(|&a| a != axis).collect();
    let bases: Vec<usize> = (0..shape[others[0]])
        .flat_map(|i| (0..shape[others[1]]).map(move |j| (i, j)))
        .map(|(i, j)| i * strides[others[0]] + j * strides[others[1]])
        .collect();
    let source = &*values;
    let mut lines: Vec<Vec<f64>> = bases
        .par_iter()
        .map(|&base| (0..n).map(|k| source[base + k * stride]).collect())
        .collect();
    lines.par_iter_mut().for_each(|line| f(line));
    for (base, line) in bases.iter().zip(&lines) {
        for (k, v) in line.iter().enumerate() {
            values[base + k * stride] = *v;
        }
    }
}

/// The cubic B-spline coefficients of a `[d, h, w]` volume.
pub fn cubic_coefficients(values: &[f32], shape: [usize; 3]) -> Vec<f64> {
    cubic_coefficients_f64(values.iter().map(|&v| f64::from(v)).collect(), shape)
}

/// The cubic B-spline coefficients of a `[d, h, w]` volume given in double precision.
fn cubic_coefficients_f64(mut c: Vec<f64>, shape: [usize; 3]) -> Vec<f64> {
    for axis in 0..3 {
        for_each_line(&mut c, shape, axis, prefilter_line);
    }
    c
}

/// Index `i` of an axis of `n` voxels, mirrored at both ends (…, 2, 1, 0, 1, 2, …, n − 1, n − 2, …).
fn mirror(i: i64, n: usize) -> usize {
    let last = n as i64 - 1;
    if last == 0 {
        return 0;
    }
    let period = 2 * last;
    let i = i.rem_euclid(period);
    (if i > last { period - i } else { i }) as usize
}

/// Whether `p` lies inside the volume: every coordinate in [0, n − 1].
fn inside(p: [f64; 3], shape: [usize; 3]) -> bool {
    (0..3).all(|a| p[a] >= 0.0 && p[a] <= (shape[a] - 1) as f64)
}

/// The cubic B-spline weights of the four coefficients around fraction `t`.
fn cubic_weights(t: f64) -> [f64; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    [
        (1.0 - t).powi(3) / 6.0,
        (4.0 - 6.0 * t2 + 3.0 * t3) / 6.0,
        (1.0 + 3.0 * t + 3.0 * t2 - 3.0 * t3) / 6.0,
        t3 / 6.0,
    ]
}

/// The cubic spline with `coefficients` of a `[d, h, w]` volume at `p`, `cval` outside.
pub fn cubic_at(coefficients: &[f64], shape: [usize; 3], p: [f64; 3], cval: f64) -> f64 {
    if !inside(p, shape) {
        return cval;
    }
    let floor = p.map(f64::floor);
    let weights: [[f64; 4]; 3] = std::array::from_fn(|a| cubic_weights(p[a] - floor[a]));
    let index: [[usize; 4]; 3] = std::array::from_fn(|a| {
        std::array::from_fn(|k| mirror(floor[a] as i64 - 1 + k as i64, shape[a]))
    });
    let mut sum = 0.0;
    for (wz, &z) in weights[0].iter().zip(&index[0]) {
        for (wy, &y) in weights[1].iter().zip(&index[1]) {
            let row = (z * shape[1] + y) * shape[2];
            let inner: f64 = weights[2]
                .iter()
                .zip(&index[2])
                .map(|(wx, &x)| wx * coefficients[row + x])
                .sum();
            sum += wz * wy * inner;
        }
    }
    sum
}

/// Linear interpolation of a `[d, h, w]` volume at `p`, `cval` outside.
pub fn linear_at(values: &[f64], shape: [usize; 3], p: [f64; 3], cval: f64) -> f64 {
    if !inside(p, shape) {
        return cval;
    }
    let floor = p.map(f64::floor);
    let t: [f64; 3] = std::array::from_fn(|a| p[a] - floor[a]);
    let mut sum = 0.0;
    for corner in 0..8 {
        let bit = |a: usize| (corner >> (2 - a)) & 1;
        let weight: f64 = (0..3)
            .map(|a| if bit(a) == 1 { t[a] } else { 1.0 - t[a] })
            .product();
        if weight == 0.0 {
            continue;
        }
        let i: [usize; 3] =
            std::array::from_fn(|a| mirror(floor[a] as i64 + bit(a) as i64, shape[a]));
        sum += weight * values[(i[0] * shape[1] + i[1]) * shape[2] + i[2]];
    }
    sum
}

/// Filters a `[d, h, w]` volume in place with a Gaussian of `sigma` voxels along every axis,
/// zero beyond the border, the kernel truncated at radius ⌊4σ + 0.5⌋.
pub fn gaussian_filter_constant(values: &mut [f64], shape: [usize; 3], sigma: f64) {
    let radius = (4.0 * sigma + 0.5) as i64;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|i| (-0.5 * (i as f64 / sigma).powi(2)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    let kernel: Vec<f64> = kernel.iter().map(|k| k / total).collect();
    for axis in 0..3 {
        for_each_line(values, shape, axis, |line| {
            let n = line.len() as i64;
            let out: Vec<f64> = (0..n)
                .map(|i| {
                    let lo = (i - radius).max(0);
                    let hi = (i + radius).min(n - 1);
                    (lo..=hi)
                        .map(|j| kernel[(j - i + radius) as usize] * line[j as usize])
                        .sum::<f64>()
                })
                .collect();
            line.copy_from_slice(&out);
        });
    }
}

/// Filters one line in place with a Gaussian of `sigma`, truncated at ⌊4σ + 0.5⌋, the line
/// reflected about its ends beyond them (scipy's `mode="reflect"`: d c b a | a b c d | d c b a).
fn gaussian_filter_reflect_line(line: &mut [f64], sigma: f64) {
    let n = line.len() as i64;
    let radius = (4.0 * sigma + 0.5) as i64;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|i| (-0.5 * (i as f64 / sigma).powi(2)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    let reflect = |i: i64| -> usize {
        let period = 2 * n;
        let i = i.rem_euclid(period);
        (if i >= n { period - 1 - i } else { i }) as usize
    };
    let out: Vec<f64> = (0..n)
        .map(|i| {
            (-radius..=radius)
                .map(|k| kernel[(k + radius) as usize] * line[reflect(i + k)])
                .sum::<f64>()
                / total
        })
        .collect();
    line.copy_from_slice(&out);
}

/// Filters a `[d, h, w]` volume in place with a Gaussian of `sigma` voxels along every axis,
/// reflecting it at its ends (scipy's `gaussian_filter(mode="reflect")`).
pub fn gaussian_filter_reflect(values: &mut [f64], shape: [usize; 3], sigma: f64) {
    for axis in 0..3 {
        for_each_line(values, shape, axis, |line| {
            gaussian_filter_reflect_line(line, sigma)
        });
    }
}

/// Voxels the spline prefilter pads with edge values before zooming (scipy's `mode="nearest"`).
const ZOOM_PAD: usize = 12;

/// Resizes a `[d, h, w]` volume to `to` as scikit-image's `resize(mode="edge",
/// anti_aliasing=False)` does (scipy's `zoom` with `grid_mode=True` and `mode="nearest"`): voxel
/// centres aligned, nearest neighbour (`cubic` false) or cubic B-spline; a cubic result is clipped
/// to the input's range.
pub fn resize_edge(values: &[f64], from: [usize; 3], to: [usize; 3], cubic: bool) -> Vec<f64> {
    let source = |a: usize, o: usize| (o as f64 + 0.5) * from[a] as f64 / to[a] as f64 - 0.5;
    let [_, th, tw] = to;
    let voxels: usize = to.iter().product();
    if !cubic {
        let nearest = |a: usize, o: usize| -> usize {
            ((source(a, o) + 0.5).floor().max(0.0) as usize).min(from[a] - 1)
        };
        return (0..voxels)
            .map(|v| {
                let (z, y, x) = (
                    nearest(0, v / (th * tw)),
                    nearest(1, (v / tw) % th),
                    nearest(2, v % tw),
                );
                values[(z * from[1] + y) * from[2] + x]
            })
            .collect();
    }
    let padded_shape = from.map(|n| n + 2 * ZOOM_PAD);
    let [_, ph, pw] = padded_shape;
    let mut padded = vec![0.0; padded_shape.iter().product()];
    let clamp = |i: usize, n: usize| i.saturating_sub(ZOOM_PAD).min(n - 1);
    for z in 0..padded_shape[0] {
        for y in 0..ph {
            for x in 0..pw {
                let src =
                    (clamp(z, from[0]) * from[1] + clamp(y, from[1])) * from[2] + clamp(x, from[2]);
                padded[(z * ph + y) * pw + x] = values[src];
            }
        }
    }
    let coefficients = cubic_coefficients_f64(padded, padded_shape);
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    (0..voxels)
        .map(|v| {
            let o = [v / (th * tw), (v / tw) % th, v % tw];
            let p: [f64; 3] = std::array::from_fn(|a| source(a, o[a]) + ZOOM_PAD as f64);
            cubic_at(&coefficients, padded_shape, p, 0.0).clamp(lo, hi)
        })
        .collect()
}
