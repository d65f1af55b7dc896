//! Augmentation of training crops (method spec, section 7): random scale (applied where the crop
//! is cut, see `sampler`), then one of two pipelines ([`AugmentPipeline`]):
//! - `batchgenerators` (the reference's): its spatial transform ([`spatial`]: elastic
//!   deformation, rotation, scale), then Gaussian noise, Gaussian blur, multiplicative and
//!   additive brightness, contrast, simulated low resolution, gamma keeping the statistics and
//!   mirroring ([`reference`]), with the reference's per-sample and per-channel probabilities;
//! - `intensity`: brightness, contrast, gamma, Gaussian noise and Gaussian blur, each with its own
//!   probability and drawn per modality.
//!
//! With every probability 0 nothing is drawn from the generator, so a run without augmentation
//! sees the same random stream as before.

pub mod reference;
pub mod spatial;
mod spline;

pub use spline::gaussian_filter_reflect;

use crate::run::checks::KeyChecks;
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// Which augmentation pipeline runs on a crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AugmentPipeline {
    /// The reference's batchgenerators pipeline: spatial transform, then noise, blur, brightness
    /// (multiplicative, additive), contrast, low resolution, gamma and mirroring.
    #[default]
    Batchgenerators,
    /// Brightness, contrast, gamma, noise and blur per modality; no spatial transform.
    Intensity,
}

/// Probabilities and ranges of the augmentations (defaults: the reference's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Which pipeline runs.
    pub pipeline: AugmentPipeline,
    /// Probability of scaling a crop (it is cut from a box `crop / scale` and resampled to `crop`:
    /// trilinear for images, nearest for labels).
    pub scale_probability: f64,
    /// Range of the scale factor.
    pub scale_range: [f32; 2],
    /// Probability of multiplying a modality by a factor from `brightness_range`.
    pub brightness_probability: f64,
    /// Range of the brightness factor.
    pub brightness_range: [f32; 2],
    /// Probability of scaling a modality's deviations from its mean by a factor from
    /// `contrast_range` (then clipped to the original range).
    pub contrast_probability: f64,
    /// Range of the contrast factor.
    pub contrast_range: [f32; 2],
    /// Probability of a gamma transform of a modality (on its range scaled to [0, 1]).
    pub gamma_probability: f64,
    /// Range of γ.
    pub gamma_range: [f32; 2],
    /// Probability of adding Gaussian noise to a modality.
    pub noise_probability: f64,
    /// Largest noise variance (the variance is drawn from [0, this]).
    pub noise_variance: f32,
    /// Probability of a Gaussian blur of a modality.
    pub blur_probability: f64,
    /// Range of the blur's standard deviation in voxels.
    pub blur_sigma: [f32; 2],
    /// `batchgenerators`: probability of blurring each channel of a crop chosen for blurring.
    pub blur_channel_probability: f64,
    /// `batchgenerators`: probability of adding one N(0, σ) value to channels of a crop.
    pub additive_brightness_probability: f64,
    /// Its σ.
    pub additive_brightness_sigma: f32,
    /// Probability of each channel of such a crop being shifted.
    pub additive_brightness_channel_probability: f64,
    /// `batchgenerators`: probability of simulating a low resolution in channels of a crop.
    pub low_resolution_probability: f64,
    /// Range of the zoom (nearest down to round(shape · zoom), cubic back up).
    pub low_resolution_zoom: [f32; 2],
    /// Probability of each channel of such a crop being resampled.
    pub low_resolution_channel_probability: f64,
    /// `batchgenerators`: probability of mirroring a crop along each axis.
    pub mirror_probability: f64,
    /// Probability of an elastic deformation of a crop (spatial transform).
    pub elastic_probability: f64,
    /// Range of the elastic deformation's magnitude α.
    pub elastic_alpha: [f32; 2],
    /// Range of the elastic deformation's smoothing σ in voxels.
    pub elastic_sigma: [f32; 2],
    /// Probability of rotating a crop (spatial transform).
    pub rotation_probability: f64,
    /// Largest rotation about each axis, in degrees.
    pub rotation_degrees: f32,
    /// Probability of an isotropic scale of a crop's sampling grid (spatial transform).
    pub spatial_scale_probability: f64,
    /// Range of that scale; values below and above 1 are equally likely.
    pub spatial_scale_range: [f32; 2],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            pipeline: AugmentPipeline::Batchgenerators,
            scale_probability: 0.5,
            scale_range: [0.9, 1.1],
            brightness_probability: 0.15,
            brightness_range: [0.75, 1.25],
            contrast_probability: 0.15,
            contrast_range: [0.75, 1.25],
            gamma_probability: 0.15,
            gamma_range: [0.7, 1.5],
            noise_probability: 0.1,
            noise_variance: 0.1,
            blur_probability: 0.2,
            blur_sigma: [0.5, 1.0],
            blur_channel_probability: 0.5,
            additive_brightness_probability: 0.15,
            additive_brightness_sigma: 0.1,
            additive_brightness_channel_probability: 0.5,
            low_resolution_probability: 0.25,
            low_resolution_zoom: [0.5, 1.0],
            low_resolution_channel_probability: 0.5,
            mirror_probability: 0.5,
            elastic_probability: 0.2,
            elastic_alpha: [0.0, 900.0],
            elastic_sigma: [9.0, 13.0],
            rotation_probability: 0.2,
            rotation_degrees: 15.0,
            spatial_scale_probability: 0.2,
            spatial_scale_range: [0.85, 1.25],
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all.
    pub fn none() -> Self {
        Self {
            scale_probability: 0.0,
            brightness_probability: 0.0,
            contrast_probability: 0.0,
            gamma_probability: 0.0,
            noise_probability: 0.0,
            blur_probability: 0.0,
            elastic_probability: 0.0,
            rotation_probability: 0.0,
            spatial_scale_probability: 0.0,
            additive_brightness_probability: 0.0,
            low_resolution_probability: 0.0,
            mirror_probability: 0.0,
            ..Self::default()
        }
    }

    /// Adds the range checks of every probability and range to `checks`.
    pub fn check(&self, checks: &mut KeyChecks) {
        let probabilities = [
            ("scale_probability", self.scale_probability),
            ("brightness_probability", self.brightness_probability),
            ("contrast_probability", self.contrast_probability),
            ("gamma_probability", self.gamma_probability),
            ("noise_probability", self.noise_probability),
            ("blur_probability", self.blur_probability),
            ("elastic_probability", self.elastic_probability),
            ("rotation_probability", self.rotation_probability),
            ("spatial_scale_probability", self.spatial_scale_probability),
            ("blur_channel_probability", self.blur_channel_probability),
            (
                "additive_brightness_probability",
                self.additive_brightness_probability,
            ),
            (
                "additive_brightness_channel_probability",
                self.additive_brightness_channel_probability,
            ),
            (
                "low_resolution_probability",
                self.low_resolution_probability,
            ),
            (
                "low_resolution_channel_probability",
                self.low_resolution_channel_probability,
            ),
            ("mirror_probability", self.mirror_probability),
        ];
        for (key, p) in probabilities {
            checks.probability(&format!("augment.{key}"), p);
        }
        // Upper bounds keep every kernel, zoom and crop within memory: a blur's kernel spans
        // 8σ, an elastic deformation's too, and a crop grows with its scale.
        let ranges = [
            ("scale_range", self.scale_range, 2.0),
            ("brightness_range", self.brightness_range, 10.0),
            ("contrast_range", self.contrast_range, 10.0),
            ("gamma_range", self.gamma_range, 10.0),
            ("blur_sigma", self.blur_sigma, 8.0),
            ("elastic_sigma", self.elastic_sigma, 32.0),
            ("spatial_scale_range", self.spatial_scale_range, 4.0),
            ("low_resolution_zoom", self.low_resolution_zoom, 1.0),
        ];
        for (key, range, max) in ranges {
            checks.range(&format!("augment.{key}"), range, false, max);
        }
        checks.require(self.low_resolution_zoom[0] >= 0.1, || {
            format!(
                "augment.low_resolution_zoom = [{}, {}]: must start at 0.1 or more",
                self.low_resolution_zoom[0], self.low_resolution_zoom[1]
            )
        });
        checks.range("augment.elastic_alpha", self.elastic_alpha, true, 10_000.0);
        checks.at_most(
            "augment.noise_variance",
            f64::from(self.noise_variance),
            10.0,
        );
        checks.at_most(
            "augment.rotation_degrees",
            f64::from(self.rotation_degrees),
            180.0,
        );
        checks.at_most(
            "augment.additive_brightness_sigma",
            f64::from(self.additive_brightness_sigma),
            10.0,
        );
    }

    /// The scale factor of the next crop (1 when it is not scaled).
    pub fn draw_scale(&self, rng: &mut impl Rng) -> f32 {
        if chance(rng, self.scale_probability) {
            uniform(rng, self.scale_range)
        } else {
            1.0
        }
    }

    /// The spatial transform's probabilities and ranges.
    pub fn spatial_settings(&self) -> spatial::SpatialSettings {
        spatial::SpatialSettings {
            elastic_probability: self.elastic_probability,
            elastic_alpha: self.elastic_alpha,
            elastic_sigma: self.elastic_sigma,
            rotation_probability: self.rotation_probability,
            rotation_degrees: self.rotation_degrees,
            scale_probability: self.spatial_scale_probability,
            scale_range: self.spatial_scale_range,
        }
    }

    /// Augments a crop's `images` and binary `targets` (channels of `shape` voxels each) in place
    /// by the configured pipeline.
    pub fn augment_crop(
        &self,
        images: &mut [f32],
        targets: &mut [f32],
        shape: [usize; 3],
        rng: &mut impl Rng,
    ) {
        match self.pipeline {
            AugmentPipeline::Batchgenerators => {
                self.apply_spatial(images, targets, shape, rng);
                self.apply_reference_steps(images, targets, shape, rng);
            }
            AugmentPipeline::Intensity => self.apply(images, shape, rng),
        }
    }

    /// Draws and applies the spatial transform to a crop's `images` and binary `targets`
    /// (channels of `shape` voxels each), in place.
    fn apply_spatial(
        &self,
        images: &mut [f32],
        targets: &mut [f32],
        shape: [usize; 3],
        rng: &mut impl Rng,
    ) {
        if let Some(draw) = spatial::SpatialDraw::draw(&self.spatial_settings(), shape, rng) {
            draw.apply(images, targets, shape);
        }
    }

    /// Augments the intensities of `images` (modalities of `shape` voxels each) in place.
    pub fn apply(&self, images: &mut [f32], shape: [usize; 3], rng: &mut impl Rng) {
        let voxels: usize = shape.iter().product();
        for channel in images.chunks_mut(voxels) {
            if chance(rng, self.brightness_probability) {
                let f = uniform(rng, self.brightness_range);
                channel.iter_mut().for_each(|v| *v *= f);
            }
            if chance(rng, self.contrast_probability) {
                contrast(channel, uniform(rng, self.contrast_range));
            }
            if chance(rng, self.gamma_probability) {
                gamma(channel, uniform(rng, self.gamma_range));
            }
            if chance(rng, self.noise_probability) {
                let variance = uniform(rng, [0.0, self.noise_variance]);
                if variance > 0.0 {
                    let noise = Normal::new(0.0, variance.sqrt()).expect("positive sigma");
                    channel.iter_mut().for_each(|v| *v += noise.sample(rng));
                }
            }
            if chance(rng, self.blur_probability) {
                gaussian_blur(channel, shape, uniform(rng, self.blur_sigma));
            }
        }
    }
}

/// A draw with probability `p`; nothing is drawn when `p` is 0.
fn chance(rng: &mut impl Rng, p: f64) -> bool {
    p > 0.0 && rng.random_bool(p)
}

fn uniform(rng: &mut impl Rng, [lo, hi]: [f32; 2]) -> f32 {
    if lo == hi {
        lo
    } else {
        rng.random_range(lo..hi)
    }
}

/// batchgenerators' draw with probability `p` (`uniform() < p`); nothing is drawn when `p` is 0.
fn draw_below(rng: &mut impl Rng, p: f64) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}

/// U(lo, hi); `lo` when the range is one value. As numpy's `uniform`, `lo > hi` draws from
/// (hi, lo) (batchgenerators' factor draws ask for U(1, hi) with `hi < 1` when a range lies
/// below 1).
fn uniform_in(rng: &mut impl Rng, [lo, hi]: [f64; 2]) -> f64 {
    if lo == hi {
        lo
    } else if lo < hi {
        rng.random_range(lo..hi)
    } else {
        rng.random_range(hi..lo)
    }
}

/// batchgenerators' draw of a factor from `range`: below and above 1 equally likely when the
/// range spans 1.
fn factor_around_one(rng: &mut impl Rng, [lo, hi]: [f64; 2]) -> f64 {
    if lo < 1.0 && rng.random::<f64>() < 0.5 {
        uniform_in(rng, [lo, 1.0])
    } else {
        uniform_in(rng, [lo.max(1.0), hi])
    }
}

fn range_of(values: &[f32]) -> (f32, f32) {
    values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Scales deviations from the mean by `factor`, clipped to the original range.
pub fn contrast(values: &mut [f32], factor: f32) {
    let mean = (values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64) as f32;
    let (lo, hi) = range_of(values);
    for v in values {
        *v = ((*v - mean) * factor + mean).clamp(lo, hi);
    }
}

/// `v ← ((v − min) / (max − min))^γ · (max − min) + min`; a constant image is left alone.
pub fn gamma(values: &mut [f32], gamma: f32) {
    let (lo, hi) = range_of(values);
    let span = hi - lo;
    if span <= 0.0 {
        return;
    }
    for v in values {
        *v = ((*v - lo) / span).powf(gamma) * span + lo;
    }
}

/// The normalised Gaussian kernel of `sigma` voxels, radius ⌈3σ⌉.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as i64;
    let weights: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}

/// Blurs a `[d, h, w]` volume with a Gaussian of `sigma` voxels, one axis at a time, repeating the
/// edge voxels beyond the border.
pub fn gaussian_blur(values: &mut [f32], shape: [usize; 3], sigma: f32) {
    let kernel = gaussian_kernel(sigma);
    let radius = (kernel.len() / 2) as i64;
    let [d, h, w] = shape;
    let strides = [h * w, w, 1];
    let mut line = Vec::new();
    for axis in 0..3 {
        let n = shape[axis];
        let stride = strides[axis];
        for start in 0..d * h * w {
            // Visit each line once: from its first voxel along `axis`.
            if (start / stride) % n != 0 {
                continue;
            }
            line.clear();
            line.extend((0..n).map(|i| values[start + i * stride]));
            for i in 0..n {
                let mut sum = 0.0;
                for (k, weight) in kernel.iter().enumerate() {
                    let j = (i as i64 + k as i64 - radius).clamp(0, n as i64 - 1) as usize;
                    sum += weight * line[j];
                }
                values[start + i * stride] = sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha12Rng;

    fn volume(shape: [usize; 3], seed: u64) -> Vec<f32> {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        (0..shape.iter().product::<usize>())
            .map(|_| rng.random_range(-2.0f32..3.0))
            .collect()
    }

    #[test]
    fn without_augmentation_nothing_changes_and_nothing_is_drawn() {
        let mut images = volume([4, 5, 6], 1);
        let before = images.clone();
        let mut rng = ChaCha12Rng::seed_from_u64(9);
        let mut untouched = rng.clone();
        AugmentConfig::none().apply(&mut images, [1, 5, 6], &mut rng);
        assert_eq!(images, before);
        assert_eq!(rng.random::<u64>(), untouched.random::<u64>());
    }

    #[test]
    fn brightness_contrast_and_gamma_do_what_they_say() {
        let shape = [3, 4, 5];
        let mut images = volume(shape, 2);
        let before = images.clone();
        let always = AugmentConfig {
            brightness_probability: 1.0,
            brightness_range: [2.0, 2.0],
            ..AugmentConfig::none()
        };
        always.apply(&mut images, shape, &mut ChaCha12Rng::seed_from_u64(0));
        assert!(images.iter().zip(&before).all(|(a, b)| *a == 2.0 * b));

        let mut c = before.clone();
        contrast(&mut c, 0.5);
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        let var = |v: &[f32]| {
            let m = mean(v);
            v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / v.len() as f32
        };
        assert!((mean(&c) - mean(&before)).abs() < 1e-5);
        assert!((var(&c) - 0.25 * var(&before)).abs() < 1e-4 * var(&before));

        let mut g = before.clone();
        gamma(&mut g, 2.0);
        assert_eq!(range_of(&g), range_of(&before));
        let mut order: Vec<usize> = (0..before.len()).collect();
        order.sort_by(|&a, &b| before[a].total_cmp(&before[b]));
        assert!(order.windows(2).all(|p| g[p[0]] <= g[p[1]]), "monotone");
        let mut same = before.clone();
        gamma(&mut same, 1.0);
        assert!(same.iter().zip(&before).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn blur_matches_a_naive_3d_convolution() {
        let shape = [5, 6, 7];
        let input = volume(shape, 3);
        let mut blurred = input.clone();
        gaussian_blur(&mut blurred, shape, 0.8);
        let kernel = gaussian_kernel(0.8);
        let r = (kernel.len() / 2) as i64;
        let [d, h, w] = shape;
        let clamp = |i: i64, n: usize| i.clamp(0, n as i64 - 1) as usize;
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let mut sum = 0.0f64;
                    for (a, ka) in kernel.iter().enumerate() {
                        for (b, kb) in kernel.iter().enumerate() {
                            for (c, kc) in kernel.iter().enumerate() {
                                let zz = clamp(z as i64 + a as i64 - r, d);
                                let yy = clamp(y as i64 + b as i64 - r, h);
                                let xx = clamp(x as i64 + c as i64 - r, w);
                                sum += f64::from(ka * kb * kc)
                                    * f64::from(input[(zz * h + yy) * w + xx]);
                            }
                        }
                    }
                    let got = blurred[(z * h + y) * w + x];
                    assert!(
                        (f64::from(got) - sum).abs() < 1e-4,
                        "({z},{y},{x}): {got} vs {sum}"
                    );
                }
            }
        }
        let mut constant = vec![1.5f32; 5 * 6 * 7];
        gaussian_blur(&mut constant, shape, 1.0);
        assert!(constant.iter().all(|v| (v - 1.5).abs() < 1e-5));
    }

    #[test]
    fn noise_has_the_drawn_variance_at_most() {
        let shape = [8, 16, 16];
        let mut images = vec![0f32; 8 * 16 * 16];
        let cfg = AugmentConfig {
            noise_probability: 1.0,
            noise_variance: 0.1,
            ..AugmentConfig::none()
        };
        cfg.apply(&mut images, shape, &mut ChaCha12Rng::seed_from_u64(5));
        let var = images.iter().map(|v| v * v).sum::<f32>() / images.len() as f32;
        assert!(var > 0.0 && var < 0.12, "{var}");
        let mut checks = KeyChecks::default();
        AugmentConfig::default().check(&mut checks);
        assert!(checks.finish().is_ok());
        let bad = AugmentConfig {
            gamma_range: [1.5, 0.7],
            ..AugmentConfig::default()
        };
        let mut checks = KeyChecks::default();
        bad.check(&mut checks);
        assert!(checks
            .finish()
            .unwrap_err()
            .contains("augment.gamma_range = [1.5, 0.7]"));
    }
}
