//! batchgenerators' `SpatialTransform` as the reference configures it (method spec, section 7):
//! per crop, with their own probabilities, an elastic deformation (α ∈ [0, 900], σ ∈ [9, 13]), a
//! rotation about each axis (±15°) and an isotropic scale (U(0.85, 1) or U(1, 1.25), equally
//! likely), applied to a coordinate grid centred on the crop; images are resampled by cubic
//! B-splines with 0 outside, region masks linearly with −1 outside (a region kept where its mask
//! reaches 0.5). A crop no transform was drawn for stays as it is.

use rand::Rng;
use rayon::prelude::*;

use super::spline::{cubic_at, cubic_coefficients, gaussian_filter_constant, linear_at};
use super::{draw_below as chance, factor_around_one, uniform_in};

/// An elastic deformation: the noise fields (U[0, 1) per voxel and axis) and their smoothing.
#[derive(Debug, Clone)]
pub struct Elastic {
    /// Magnitude α.
    pub alpha: f64,
    /// Smoothing σ in voxels.
    pub sigma: f64,
    /// One U[0, 1) value per voxel of the crop for each axis.
    pub fields: [Vec<f64>; 3],
}

/// The draws of one spatial transform.
#[derive(Debug, Clone)]
pub struct SpatialDraw {
    /// The elastic deformation, if drawn.
    pub elastic: Option<Elastic>,
    /// Rotation angles about the axes (d, h, w) in radians, if drawn.
    pub angles: Option<[f64; 3]>,
    /// The isotropic scale, if drawn.
    pub scale: Option<f64>,
    /// Where the crop's centre lands, per axis: U(p // 2, p − p // 2), so half a voxel past the
    /// grid's centre (p − 1)/2 for even extents, as batchgenerators' `random_crop`.
    pub centre: [f64; 3],
}

/// Probabilities and ranges of the spatial transform.
#[derive(Debug, Clone, Copy)]
pub struct SpatialSettings {
    /// Probability of an elastic deformation.
    pub elastic_probability: f64,
    /// Range of α.
    pub elastic_alpha: [f32; 2],
    /// Range of σ.
    pub elastic_sigma: [f32; 2],
    /// Probability of a rotation.
    pub rotation_probability: f64,
    /// Largest angle about each axis, in degrees.
    pub rotation_degrees: f32,
    /// Probability of scaling.
    pub scale_probability: f64,
    /// Range of the scale: below 1 and above 1 are equally likely.
    pub scale_range: [f32; 2],
}

fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    uniform_in(rng, [lo, hi])
}

impl SpatialDraw {
    /// Draws a transform of a crop of extents `patch`, in batchgenerators' order; `None` when
    /// nothing was drawn (nothing is drawn at all when every probability is 0).
    pub fn draw(settings: &SpatialSettings, patch: [usize; 3], rng: &mut impl Rng) -> Option<Self> {
        let elastic = chance(rng, settings.elastic_probability).then(|| {
            let [a0, a1] = settings.elastic_alpha.map(f64::from);
            let [s0, s1] = settings.elastic_sigma.map(f64::from);
            let alpha = uniform(rng, a0, a1);
            let sigma = uniform(rng, s0, s1);
            let voxels: usize = patch.iter().product();
            let fields =
                std::array::from_fn(|_| (0..voxels).map(|_| rng.random::<f64>()).collect());
            Elastic {
                alpha,
                sigma,
                fields,
            }
        });
        let angles = chance(rng, settings.rotation_probability).then(|| {
            let limit = f64::from(settings.rotation_degrees).to_radians();
            std::array::from_fn(|_| uniform(rng, -limit, limit))
        });
        let scale = chance(rng, settings.scale_probability)
            .then(|| factor_around_one(rng, settings.scale_range.map(f64::from)));
        if elastic.is_none() && angles.is_none() && scale.is_none() {
            return None;
        }
        let centre = patch.map(|p| uniform(rng, (p / 2) as f64, (p - p / 2) as f64));
        Some(Self {
            elastic,
            angles,
            scale,
            centre,
        })
    }

    /// The source coordinate of every voxel of the crop, `[3][voxels]`.
    fn coordinates(&self, patch: [usize; 3]) -> [Vec<f64>; 3] {
        let voxels: usize = patch.iter().product();
        let [_, h, w] = patch;
        let mut coords: [Vec<f64>; 3] = std::array::from_fn(|a| {
            let centre = (patch[a] as f64 - 1.0) / 2.0;
            (0..voxels)
                .map(|v| [v / (h * w), (v / w) % h, v % w][a] as f64 - centre)
                .collect()
        });
        if let Some(elastic) = &self.elastic {
            for (coord, field) in coords.iter_mut().zip(&elastic.fields) {
                let mut offset: Vec<f64> = field.iter().map(|u| u * 2.0 - 1.0).collect();
                gaussian_filter_constant(&mut offset, patch, elastic.sigma);
                for (c, o) in coord.iter_mut().zip(&offset) {
                    *c += o * elastic.alpha;
                }
            }
        }
        if let Some(angles) = self.angles {
            let r = rotation_matrix(angles);
            for v in 0..voxels {
                let c = [coords[0][v], coords[1][v], coords[2][v]];
                for (j, coord) in coords.iter_mut().enumerate() {
                    coord[v] = (0..3).map(|i| c[i] * r[i][j]).sum();
                }
            }
        }
        if let Some(scale) = self.scale {
            coords.iter_mut().flatten().for_each(|c| *c *= scale);
        }
        for (coord, centre) in coords.iter_mut().zip(self.centre) {
            coord.iter_mut().for_each(|c| *c += centre);
        }
        coords
    }

    /// Resamples `images` (`[channels, patch]`) by cubic splines (0 outside) and the binary
    /// `targets` (`[channels, patch]`) linearly (−1 outside, a region kept where its mask reaches
    /// 0.5), in place.
    pub fn apply(&self, images: &mut [f32], targets: &mut [f32], patch: [usize; 3]) {
        let voxels: usize = patch.iter().product();
        let coords = self.coordinates(patch);
        let at = |v: usize| [coords[0][v], coords[1][v], coords[2][v]];
        for channel in images.chunks_mut(voxels) {
            let coefficients = cubic_coefficients(channel, patch);
            channel.par_iter_mut().enumerate().for_each(|(v, out)| {
                *out = cubic_at(&coefficients, patch, at(v), 0.0) as f32;
            });
        }
        for channel in targets.chunks_mut(voxels) {
            // batchgenerators resamples each label present (0, 1) and keeps the last one that
            // reaches 0.5; label 0 writes what the result starts as, so only 1 matters.
            let present = channel.contains(&1.0);
            let mask: Vec<f64> = channel.iter().map(|&t| f64::from(t)).collect();
            channel.par_iter_mut().enumerate().for_each(|(v, out)| {
                *out = if present && linear_at(&mask, patch, at(v), -1.0) >= 0.5 {
                    1.0
                } else {
                    0.0
                };
            });
        }
    }
}

/// batchgenerators' `rotate_coords_3d` matrix Rx · Ry · Rz; coordinates (as rows) are multiplied
/// by it on the right.
fn rotation_matrix([x, y, z]: [f64; 3]) -> [[f64; 3]; 3] {
    let rx = [
        [1.0, 0.0, 0.0],
        [0.0, x.cos(), -x.sin()],
        [0.0, x.sin(), x.cos()],
    ];
    let ry = [
        [y.cos(), 0.0, y.sin()],
        [0.0, 1.0, 0.0],
        [-y.sin(), 0.0, y.cos()],
    ];
    let rz = [
        [z.cos(), -z.sin(), 0.0],
        [z.sin(), z.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    let product = |a: [[f64; 3]; 3], b: [[f64; 3]; 3]| -> [[f64; 3]; 3] {
        std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
    };
    product(product(rx, ry), rz)
}
