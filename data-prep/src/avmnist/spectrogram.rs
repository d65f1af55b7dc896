//! Log-magnitude spectrograms of spoken digits in the shape of MultiBench's AV-MNIST audio
//! (112 frequency bins × 112 frames, values 0–255), made from FSDD recordings so that the
//! MultiBench layout can be written from real sources ([`super::multibench`]).
//!
//! Every parameter, in order of use ([`SpectrogramSettings::MULTIBENCH`]):
//! 1. the 8 kHz wave as float (16-bit PCM / 32768), not decimated;
//! 2. frames of 222 samples every 40, centred: the signal padded by 111 samples on both sides by
//!    reflection (numpy's `reflect`);
//! 3. a periodic Hann window, the magnitude |FFT| of bins 0–111 (0–4 kHz);
//! 4. decibels 20·log10(max(magnitude, 1e-10)), floored at the maximum − 80 dB;
//! 5. mapped linearly onto 0–255 (the floor to 0, the maximum to 255);
//! 6. the time axis zero-padded, or cut, to 112 frames; rows are frequency bins, low first.

use std::f64::consts::PI;
use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::mfcc::reflect_pad;

/// The parameters of the spectrograms.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpectrogramSettings {
    /// FFT length (and frame length); `n_fft / 2 + 1` frequency bins.
    pub n_fft: usize,
    /// Samples between frames.
    pub hop: usize,
    /// Dynamic range kept below the maximum, in dB.
    pub top_db: f64,
    /// Frames of the output (zero-padded or cut).
    pub frames: usize,
}

impl SpectrogramSettings {
    /// 112 × 112 spectrograms, the extents of MultiBench's AV-MNIST audio.
    pub const MULTIBENCH: SpectrogramSettings = SpectrogramSettings {
        n_fft: 222,
        hop: 40,
        top_db: 80.0,
        frames: 112,
    };

    /// Frequency bins of a spectrogram.
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }
}

/// Computes spectrograms of waves with fixed settings (the FFT and window made once).
pub struct Spectrogram {
    settings: SpectrogramSettings,
    fft: Arc<dyn Fft<f64>>,
    window: Vec<f64>,
}

impl Spectrogram {
    /// Prepares the transform for `settings`.
    pub fn new(settings: SpectrogramSettings) -> Self {
        let n = settings.n_fft;
        Self {
            settings,
            fft: FftPlanner::new().plan_fft_forward(n),
            window: (0..n)
                .map(|k| 0.5 - 0.5 * (2.0 * PI * k as f64 / n as f64).cos())
                .collect(),
        }
    }

    /// The spectrogram of an 8 kHz wave (samples in [−1, 1]): `bins × frames` values in 0–255,
    /// row-major (bin, frame).
    pub fn features(&self, wave: &[f32]) -> Vec<f32> {
        let s = &self.settings;
        let signal: Vec<f64> = wave.iter().map(|&v| f64::from(v)).collect();
        let padded = reflect_pad(&signal, s.n_fft / 2);
        let frames = 1 + padded.len().saturating_sub(s.n_fft) / s.hop;
        let bins = s.bins();
        let mut db = vec![0.0f64; bins * frames];
        let mut buffer = vec![Complex::new(0.0, 0.0); s.n_fft];
        for t in 0..frames {
            let frame = &padded[t * s.hop..t * s.hop + s.n_fft];
            for ((b, &x), &w) in buffer.iter_mut().zip(frame).zip(&self.window) {
                *b = Complex::new(x * w, 0.0);
            }
            self.fft.process(&mut buffer);
            for (k, c) in buffer[..bins].iter().enumerate() {
                db[k * frames + t] = 20.0 * c.norm().max(1e-10).log10();
            }
        }
        let peak = db.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let floor = peak - s.top_db;
        let mut out = vec![0f32; bins * s.frames];
        for k in 0..bins {
            for t in 0..frames.min(s.frames) {
                let level = (db[k * frames + t].max(floor) - floor) / s.top_db;
                out[k * s.frames + t] = (255.0 * level) as f32;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_lights_its_own_bin_at_full_level() {
        // 1 kHz at 8 kHz sampling: bin 1000 / (8000 / 222) ≈ 27.75.
        let wave: Vec<f32> = (0..4000)
            .map(|i| (0.5 * (2.0 * PI * 1000.0 * i as f64 / 8000.0).sin()) as f32)
            .collect();
        let settings = SpectrogramSettings::MULTIBENCH;
        let spec = Spectrogram::new(settings).features(&wave);
        assert_eq!(spec.len(), 112 * 112);
        let frame = 50;
        let column: Vec<f32> = (0..112).map(|k| spec[k * 112 + frame]).collect();
        let loudest = (0..112)
            .max_by(|&a, &b| column[a].total_cmp(&column[b]))
            .unwrap();
        assert!((27..=28).contains(&loudest), "loudest bin {loudest}");
        assert!(column[loudest] > 250.0, "{}", column[loudest]);
        assert!(column[100] < 0.5 * column[loudest]);
        assert!(spec.iter().all(|v| (0.0..=255.0).contains(v)));
        // 4000 samples give 1 + 4000 / 40 = 101 frames: the last 11 columns are padding.
        assert!((0..112).all(|k| spec[k * 112 + 101] == 0.0 && spec[k * 112 + 111] == 0.0));
        assert!(spec[27 * 112 + 100] > 200.0);
    }
}
