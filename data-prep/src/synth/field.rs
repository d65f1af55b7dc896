//! Smooth random fields: sums of random plane waves, used for irregular shapes, tissue texture
//! and the MRI bias field.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// One plane wave: amplitude · sin(k · p + phase).
#[derive(Debug, Clone)]
struct Wave {
    k: [f32; 3],
    phase: f32,
    amplitude: f32,
}

/// A smooth random field over 3D space whose values lie in about [−1, 1].
#[derive(Debug, Clone)]
pub struct SmoothField {
    waves: Vec<Wave>,
}

impl SmoothField {
    /// A field of `waves` plane waves whose wavelengths lie between `min_wavelength` and
    /// `max_wavelength` (in the units the field is evaluated in).
    pub fn new(rng: &mut impl Rng, waves: usize, min_wavelength: f32, max_wavelength: f32) -> Self {
        let norm = 1.0 / (waves as f32).sqrt();
        let waves = (0..waves)
            .map(|_| {
                let dir: [f32; 3] = std::array::from_fn(|_| StandardNormal.sample(rng));
                let len = dir.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
                let wavelength = rng.random_range(min_wavelength..=max_wavelength);
                let k = 2.0 * std::f32::consts::PI / wavelength;
                Wave {
                    k: dir.map(|v| v / len * k),
                    phase: rng.random_range(0.0..std::f32::consts::TAU),
                    amplitude: norm * std::f32::consts::SQRT_2,
                }
            })
            .collect();
        Self { waves }
    }

    /// The field's value at `p`.
    pub fn at(&self, p: [f32; 3]) -> f32 {
        self.waves
            .iter()
            .map(|w| w.amplitude * (w.k[0] * p[0] + w.k[1] * p[1] + w.k[2] * p[2] + w.phase).sin())
            .sum()
    }
}
