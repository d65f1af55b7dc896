//! MFCCs of spoken digits exactly as SMIL's AV-MNIST features are made (librosa's `mfcc` with its
//! defaults and the frame padding of librosa 0.7), on an FFT from `rustfft` and a DCT from
//! `rustdct`.
//!
//! Every parameter, in order of use ([`MfccSettings::SMIL`]):
//! 1. the 8 kHz wave as float (16-bit PCM / 32768), every third sample kept (`wave[::3]`, no
//!    low-pass filter: part of the protocol), the result treated as sampled at 8 kHz;
//! 2. frames of 2048 samples every 512, centred: the signal padded by 1024 samples on both sides
//!    by reflection (numpy's `reflect`, repeated when the signal is shorter than the padding);
//! 3. a periodic Hann window, the power spectrum |FFT|² of bins 0–1024;
//! 4. 128 mel bands on the Slaney scale (linear below 1 kHz, logarithmic above) from 0 Hz to 4 kHz,
//!    triangular filters with Slaney's area normalisation (2 / band width in Hz);
//! 5. decibels: 10·log10(max(power, 1e-10)) (reference power 1), floored at the maximum − 80 dB;
//! 6. an orthonormal DCT-II over the mel bands, its first 20 coefficients;
//! 7. the time axis zero-padded, or cut, to 20 frames.

use std::f64::consts::PI;
use std::sync::Arc;

use rustdct::{DctPlanner, TransformType2And3};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// The parameters of the MFCC features.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MfccSettings {
    /// Keep every this many samples of the wave.
    pub decimation: usize,
    /// The sampling rate the decimated wave is declared to have (Hz).
    pub sample_rate: f64,
    /// FFT length (and frame length).
    pub n_fft: usize,
    /// Samples between frames.
    pub hop: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Coefficients kept.
    pub n_mfcc: usize,
    /// Dynamic range kept below the maximum, in dB.
    pub top_db: f64,
    /// Frames of the output (zero-padded or cut).
    pub frames: usize,
}

impl MfccSettings {
    /// SMIL's AV-MNIST audio features: 20 MFCCs × 20 frames.
    pub const SMIL: MfccSettings = MfccSettings {
        decimation: 3,
        sample_rate: 8000.0,
        n_fft: 2048,
        hop: 512,
        n_mels: 128,
        n_mfcc: 20,
        top_db: 80.0,
        frames: 20,
    };
}

/// Slaney's mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above.
pub fn hz_to_mel(hz: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= min_log_hz {
        min_log_hz / f_sp + (hz / min_log_hz).ln() / logstep
    } else {
        hz / f_sp
    }
}

/// The inverse of [`hz_to_mel`].
pub fn mel_to_hz(mel: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        f_sp * mel
    }
}

/// Triangular mel filters `[n_mels][n_fft / 2 + 1]` from 0 Hz to half the sampling rate, each
/// scaled by 2 / its width in Hz (Slaney's normalisation), as librosa's `filters.mel`.
pub fn mel_filterbank(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<Vec<f64>> {
    let bins = n_fft / 2 + 1;
    let top = hz_to_mel(sample_rate / 2.0);
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(top * i as f64 / (n_mels + 1) as f64))
        .collect();
    let freqs: Vec<f64> = (0..bins)
        .map(|k| k as f64 * sample_rate / n_fft as f64)
        .collect();
    (0..n_mels)
        .map(|m| {
            let (lo, centre, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            let norm = 2.0 / (hi - lo);
            freqs
                .iter()
                .map(|&f| {
                    let rising = (f - lo) / (centre - lo);
                    let falling = (hi - f) / (hi - centre);
                    norm * rising.min(falling).max(0.0)
                })
                .collect()
        })
        .collect()
}

/// `signal` padded by `pad` samples on both sides by reflection about its end samples, as
/// numpy's `pad(mode="reflect")` (which repeats the reflection when `pad` exceeds the signal).
pub fn reflect_pad(signal: &[f64], pad: usize) -> Vec<f64> {
    let n = signal.len() as i64;
    if n <= 1 {
        return vec![signal.first().copied().unwrap_or(0.0); signal.len() + 2 * pad];
    }
    let period = 2 * (n - 1);
    (-(pad as i64)..n + pad as i64)
        .map(|i| {
            let j = i.rem_euclid(period);
            signal[(if j >= n { period - j } else { j }) as usize]
        })
        .collect()
}

/// Computes MFCCs of waves with fixed settings (the FFT, DCT and filters made once).
pub struct Mfcc {
    settings: MfccSettings,
    fft: Arc<dyn Fft<f64>>,
    dct: Arc<dyn TransformType2And3<f64>>,
    window: Vec<f64>,
    filters: Vec<Vec<f64>>,
}

impl Mfcc {
    /// Prepares the transforms for `settings`.
    pub fn new(settings: MfccSettings) -> Self {
        let n = settings.n_fft;
        Self {
            settings,
            fft: FftPlanner::new().plan_fft_forward(n),
            dct: DctPlanner::new().plan_dct2(settings.n_mels),
            // The periodic Hann window (scipy's `get_window("hann", n, fftbins=True)`).
            window: (0..n)
                .map(|k| 0.5 - 0.5 * (2.0 * PI * k as f64 / n as f64).cos())
                .collect(),
            filters: mel_filterbank(settings.sample_rate, n, settings.n_mels),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &MfccSettings {
        &self.settings
    }

    /// The MFCCs `[n_mfcc][frames]` of `signal` (already decimated), as many frames as the
    /// signal gives.
    pub fn coefficients(&self, signal: &[f64]) -> Vec<Vec<f64>> {
        let s = &self.settings;
        let padded = reflect_pad(signal, s.n_fft / 2);
        let frames = 1 + (padded.len() - s.n_fft) / s.hop;
        let bins = s.n_fft / 2 + 1;
        let mut db = vec![vec![0.0; frames]; s.n_mels];
        let mut buffer = vec![Complex::new(0.0, 0.0); s.n_fft];
        for t in 0..frames {
            let frame = &padded[t * s.hop..t * s.hop + s.n_fft];
            for ((b, &x), &w) in buffer.iter_mut().zip(frame).zip(&self.window) {
                *b = Complex::new(x * w, 0.0);
            }
            self.fft.process(&mut buffer);
            let power: Vec<f64> = buffer[..bins].iter().map(|c| c.norm_sqr()).collect();
            for (band, filter) in db.iter_mut().zip(&self.filters) {
                let energy: f64 = filter.iter().zip(&power).map(|(f, p)| f * p).sum();
                band[t] = 10.0 * energy.max(1e-10).log10();
            }
        }
        let peak = db
            .iter()
            .flatten()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let floor = peak - s.top_db;
        let mut out = vec![vec![0.0; frames]; s.n_mfcc];
        let mut column = vec![0.0; s.n_mels];
        let n = s.n_mels as f64;
        for t in 0..frames {
            for (c, band) in column.iter_mut().zip(&db) {
                *c = band[t].max(floor);
            }
            self.dct.process_dct2(&mut column);
            for (k, row) in out.iter_mut().enumerate() {
                let scale = if k == 0 {
                    (1.0 / n).sqrt()
                } else {
                    (2.0 / n).sqrt()
                };
                row[t] = column[k] * scale;
            }
        }
        out
    }

    /// SMIL's features of an 8 kHz wave (samples in [−1, 1]): every `decimation`-th sample, the
    /// MFCCs, the time axis zero-padded or cut to `frames`; `n_mfcc × frames` values, row-major.
    pub fn features(&self, wave: &[f32]) -> Vec<f32> {
        let s = &self.settings;
        let signal: Vec<f64> = wave
            .iter()
            .step_by(s.decimation)
            .map(|&v| f64::from(v))
            .collect();
        let mfcc = self.coefficients(&signal);
        let mut out = vec![0f32; s.n_mfcc * s.frames];
        for (k, row) in mfcc.iter().enumerate() {
            for (t, &v) in row.iter().take(s.frames).enumerate() {
                out[k * s.frames + t] = v as f32;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_matches_numpy_also_beyond_the_signal() {
        let x = [1.0, 2.0, 3.0];
        // numpy.pad([1, 2, 3], 2, mode="reflect") = [3, 2, 1, 2, 3, 2, 1]
        assert_eq!(reflect_pad(&x, 2), vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
        // numpy.pad([1, 2, 3], 5, mode="reflect") = [2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2]
        assert_eq!(
            reflect_pad(&x, 5),
            vec![2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0]
        );
    }

    #[test]
    fn the_mel_scale_is_linear_below_1_khz_and_inverts() {
        assert!((hz_to_mel(200.0) - 3.0).abs() < 1e-12);
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        for hz in [0.0, 440.0, 1000.0, 2500.0, 4000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
    }

    #[test]
    fn filters_are_triangles_of_unit_area_in_hz_over_two() {
        let filters = mel_filterbank(8000.0, 2048, 128);
        assert_eq!((filters.len(), filters[0].len()), (128, 1025));
        // Slaney normalisation: each triangle's area (in Hz) is 1, sampled every 8000/2048 Hz.
        for f in &filters[40..] {
            let area: f64 = f.iter().sum::<f64>() * 8000.0 / 2048.0;
            assert!((area - 1.0).abs() < 0.05, "{area}");
        }
        assert!(filters.iter().flatten().all(|&w| w >= 0.0));
    }
}
