//! The intensity steps of the reference pipeline against batchgenerators 0.21 itself
//! (`tools/intensity_reference.py`) with fixed draws: gamma keeping mean and standard deviation,
//! contrast keeping the range, simulated low resolution and Gaussian blur; and the random draws of
//! the whole pipeline at the reference's rates.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use metakd_experiments::batches::augment::reference::{
    contrast, gamma_keeping_stats, low_resolution,
};
use metakd_experiments::batches::augment::{gaussian_filter_reflect, AugmentConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

const SHAPE: [usize; 3] = [10, 12, 14];

fn fixtures() -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intensity.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn channels(t: &Tensor) -> Vec<Vec<f64>> {
    let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    values
        .chunks(SHAPE.iter().product())
        .map(|c| c.iter().map(|&v| f64::from(v)).collect())
        .collect()
}

fn check(step: &str, f: impl Fn(&mut Vec<f64>)) {
    let tensors = fixtures();
    let want = channels(&tensors[step]);
    for (c, (mut channel, want)) in channels(&tensors["input"])
        .into_iter()
        .zip(want)
        .enumerate()
    {
        f(&mut channel);
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (v, (a, b)) in channel.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "{step}, channel {c}, voxel {v}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn gamma_keeps_mean_and_deviation_as_batchgenerators() {
    check("gamma", |c| gamma_keeping_stats(c, 1.3));
}

#[test]
fn contrast_keeps_the_range_as_batchgenerators() {
    check("contrast", |c| contrast(c, 1.2));
}

#[test]
fn low_resolution_resamples_as_batchgenerators() {
    check("low_resolution", |c| low_resolution(c, SHAPE, 0.6));
}

#[test]
fn blur_reflects_at_the_edges_as_scipy() {
    check("blur", |c| gaussian_filter_reflect(c, SHAPE, 0.7));
}

#[test]
fn the_pipeline_draws_at_the_reference_rates() {
    // A crop whose every step shows: mirroring of a ramp, and changes of the values.
    let shape = [4, 6, 8];
    let voxels: usize = shape.iter().product();
    let base: Vec<f32> = (0..4 * voxels)
        .map(|i| (i % voxels) as f32 * 0.01 + 1.0)
        .collect();
    let targets: Vec<f32> = (0..3 * voxels)
        .map(|i| f32::from(u8::from(i % voxels == 0)))
        .collect();
    let only = |set: &dyn Fn(&mut AugmentConfig)| {
        let mut cfg = AugmentConfig::none();
        set(&mut cfg);
        cfg
    };
    let draws = 4000;
    let rate = |cfg: &AugmentConfig, changed: &dyn Fn(&[f32], &[f32]) -> bool| {
        let mut rng = ChaCha12Rng::seed_from_u64(3);
        let hits = (0..draws)
            .filter(|_| {
                let (mut images, mut t) = (base.clone(), targets.clone());
                cfg.augment_crop(&mut images, &mut t, shape, &mut rng);
                changed(&images, &t)
            })
            .count();
        hits as f64 / draws as f64
    };
    let any_change = |images: &[f32], _: &[f32]| images != base.as_slice();
    let defaults = AugmentConfig::default();
    // Five standard errors of the rates over 4,000 draws.
    let close =
        |got: f64, want: f64| (got - want).abs() < 5.0 * (want * (1.0 - want) / 4000.0).sqrt();
    for (name, cfg, want) in [
        (
            "noise",
            only(&|c| c.noise_probability = defaults.noise_probability),
            0.1,
        ),
        (
            "brightness",
            only(&|c| c.brightness_probability = 0.15),
            0.15,
        ),
        ("contrast", only(&|c| c.contrast_probability = 0.15), 0.15),
        ("gamma", only(&|c| c.gamma_probability = 0.15), 0.15),
        // Additive brightness: p 0.15 per crop, then each of 4 channels with p 0.5.
        (
            "additive",
            only(&|c| c.additive_brightness_probability = 0.15),
            0.15 * (1.0 - 0.5f64.powi(4)),
        ),
        (
            "blur",
            only(&|c| c.blur_probability = 0.2),
            0.2 * (1.0 - 0.5f64.powi(4)),
        ),
        (
            "low resolution",
            only(&|c| c.low_resolution_probability = 0.25),
            0.25 * (1.0 - 0.5f64.powi(4)),
        ),
    ] {
        let got = rate(&cfg, &any_change);
        assert!(close(got, want), "{name}: {got} vs {want}");
    }
    // Mirroring: each axis with p 1/2, targets with the images; the first voxel's target moves
    // unless no axis flips (p 1/8).
    let mirror = only(&|c| c.mirror_probability = 0.5);
    let moved = rate(&mirror, &|_, t: &[f32]| t[0] != 1.0);
    assert!(close(moved, 7.0 / 8.0), "mirroring: {moved}");
}
