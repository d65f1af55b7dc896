//! The intensity and mirroring steps of the reference's batchgenerators pipeline
//! (`BraTSDataSet.get_train_transform`, batchgenerators 0.21), after its spatial transform, in
//! its order and with its per-sample and per-channel draws: Gaussian noise, Gaussian blur,
//! multiplicative brightness, additive brightness, contrast, simulated low resolution, gamma
//! (keeping each channel's mean and standard deviation), mirroring along each axis.

use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::spline::{gaussian_filter_reflect, resize_edge};
use super::AugmentConfig;

use super::{draw_below as chance, factor_around_one, uniform_in as uniform};

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Contrast: deviations from the mean scaled by `factor`, clipped to the channel's range.
pub fn contrast(channel: &mut [f64], factor: f64) {
    let (mean, _) = mean_std(channel);
    let (lo, hi) = min_max(channel);
    for v in channel.iter_mut() {
        *v = ((*v - mean) * factor + mean).clamp(lo, hi);
    }
}

/// Gamma on the channel's range (ε = 1e-7), then its mean and standard deviation restored.
pub fn gamma_keeping_stats(channel: &mut [f64], gamma: f64) {
    const EPSILON: f64 = 1e-7;
    let (mean, std) = mean_std(channel);
    let (lo, hi) = min_max(channel);
    let range = hi - lo;
    for v in channel.iter_mut() {
        *v = ((*v - lo) / (range + EPSILON)).powf(gamma) * (range + EPSILON) + lo;
    }
    let (new_mean, _) = mean_std(channel);
    channel.iter_mut().for_each(|v| *v = *v - new_mean + mean);
    let (_, new_std) = mean_std(channel);
    channel
        .iter_mut()
        .for_each(|v| *v = *v / (new_std + 1e-8) * std);
}

/// Simulated low resolution: nearest-neighbour down to `round(shape · zoom)`, cubic back up.
pub fn low_resolution(channel: &mut [f64], shape: [usize; 3], zoom: f64) {
    let small = shape.map(|n| ((n as f64 * zoom).round() as usize).max(1));
    let down = resize_edge(channel, shape, small, false);
    let up = resize_edge(&down, small, shape, true);
    channel.copy_from_slice(&up);
}

/// Flips `values` (`[channels, d, h, w]`) along axis `axis` of the crop.
fn flip(values: &mut [f32], shape: [usize; 3], axis: usize) {
    let [d, h, w] = shape;
    let voxels = d * h * w;
    for channel in values.chunks_mut(voxels) {
        let copy = channel.to_vec();
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let mut p = [z, y, x];
                    p[axis] = shape[axis] - 1 - p[axis];
                    channel[(z * h + y) * w + x] = copy[(p[0] * h + p[1]) * w + p[2]];
                }
            }
        }
    }
}

impl AugmentConfig {
    /// The reference pipeline's steps after the spatial transform, on one crop's `images` and
    /// binary `targets` (channels of `shape` voxels each), in place.
    pub fn apply_reference_steps(
        &self,
        images: &mut [f32],
        targets: &mut [f32],
        shape: [usize; 3],
        rng: &mut impl Rng,
    ) {
        let voxels: usize = shape.iter().product();
        let range = |r: [f32; 2]| r.map(f64::from);
        let mut channels: Vec<Vec<f64>> = images
            .chunks(voxels)
            .map(|c| c.iter().map(|&v| f64::from(v)).collect())
            .collect();
        if chance(rng, self.noise_probability) {
            // batchgenerators draws the "variance" and uses it as the standard deviation.
            let std = uniform(rng, [0.0, f64::from(self.noise_variance)]);
            if std > 0.0 {
                let noise = Normal::new(0.0, std).expect("positive deviation");
                channels
                    .iter_mut()
                    .flatten()
                    .for_each(|v| *v += noise.sample(rng));
            }
        }
        if chance(rng, self.blur_probability) {
            for channel in &mut channels {
                if chance(rng, self.blur_channel_probability) {
                    let sigma = uniform(rng, range(self.blur_sigma));
                    gaussian_filter_reflect(channel, shape, sigma);
                }
            }
        }
        if chance(rng, self.brightness_probability) {
            for channel in &mut channels {
                let factor = uniform(rng, range(self.brightness_range));
                channel.iter_mut().for_each(|v| *v *= factor);
            }
        }
        if chance(rng, self.additive_brightness_probability) {
            let normal = Normal::new(0.0, f64::from(self.additive_brightness_sigma))
                .expect("a non-negative deviation");
            for channel in &mut channels {
                if chance(rng, self.additive_brightness_channel_probability) {
                    let shift = normal.sample(rng);
                    channel.iter_mut().for_each(|v| *v += shift);
                }
            }
        }
        if chance(rng, self.contrast_probability) {
            for channel in &mut channels {
                let factor = factor_around_one(rng, range(self.contrast_range));
                contrast(channel, factor);
            }
        }
        if chance(rng, self.low_resolution_probability) {
            for channel in &mut channels {
                if chance(rng, self.low_resolution_channel_probability) {
                    let zoom = uniform(rng, range(self.low_resolution_zoom));
                    low_resolution(channel, shape, zoom);
                }
            }
        }
        if chance(rng, self.gamma_probability) {
            for channel in &mut channels {
                let gamma = factor_around_one(rng, range(self.gamma_range));
                gamma_keeping_stats(channel, gamma);
            }
        }
        for (out, channel) in images.chunks_mut(voxels).zip(&channels) {
            for (o, v) in out.iter_mut().zip(channel) {
                *o = *v as f32;
            }
        }
        for axis in 0..3 {
            if chance(rng, self.mirror_probability) {
                flip(images, shape, axis);
                flip(targets, shape, axis);
            }
        }
    }
}
