//! `metakd bench train`: wall-clock time of one training step of a network preset (forward with
//! all modalities, Dice + BCE + λ·KD, backward, SGD step) and, where PyTorch is installed, of the
//! same step of its PyTorch twin (`tools/metakd_twin.py`) run on the same weights and batch, with
//! the largest difference between the two first steps' logits.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use metakd_model::nets::SegmenterConfig;
use metakd_model::ops::profile::{self, Profile};
use metakd_model::ops::Precision;
use metakd_model::optim::SgdNesterov;

use crate::perf::alloc_stats;
use crate::run::checkpoint::named_vars;
use crate::run::config::TrainConfig;
use crate::run::model::{save_tensors, Model};
use crate::train::step::training_step;

/// One benchmarked step shape.
#[derive(Debug, Clone, Copy)]
pub struct StepShape {
    /// Crops per batch.
    pub batch: usize,
    /// Crop extents (d, h, w).
    pub crop: [usize; 3],
}

/// The shapes of `docs/performance.md`: 32×64×64 with batch 2 and 16×64×64 with batch 1.
pub const STANDARD_SHAPES: [StepShape; 2] = [
    StepShape {
        batch: 2,
        crop: [32, 64, 64],
    },
    StepShape {
        batch: 1,
        crop: [16, 64, 64],
    },
];

/// How the steps of [`bench_train`] run.
#[derive(Debug, Clone, Copy)]
pub struct StepRuns {
    /// Untimed steps before the timed ones, on both sides (at least one: its logits are
    /// compared).
    pub warmup: usize,
    /// Timed steps (the median is reported).
    pub runs: usize,
    /// Arithmetic of the convolutions, on both sides (the twin's `bf16` is `torch.autocast`).
    pub precision: Precision,
    /// Whether one more step is profiled op by op.
    pub profile: bool,
}

/// Seconds per step over the timed runs.
#[derive(Debug, Clone, Copy)]
pub struct StepSeconds {
    /// The median run.
    pub median: f64,
    /// The fastest run (the least disturbed by other work on the machine).
    pub best: f64,
}

impl StepSeconds {
    /// The median and the fastest of `samples` (at least one).
    fn of(mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        Self {
            median: samples[samples.len() / 2],
            best: samples[0],
        }
    }
}

impl fmt::Display for StepSeconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2} s/step (best {:.2})", self.median, self.best)
    }
}

/// The PyTorch side of one shape.
#[derive(Debug, Clone)]
pub struct TorchStep {
    /// Seconds per step.
    pub seconds: StepSeconds,
    /// Largest |logit difference| of the first step, relative to the largest |logit|.
    pub logits_relative_error: f64,
    /// Peak GPU bytes during a step (`torch.cuda.max_memory_allocated`); 0 on the CPU.
    pub peak_bytes: f64,
}

/// What one shape measured.
#[derive(Debug, Clone)]
pub struct StepTiming {
    /// The shape.
    pub shape: StepShape,
    /// Seconds per step.
    pub seconds: StepSeconds,
    /// Peak bytes during a step: of the heap on the CPU, of the device's memory pool on a GPU.
    pub peak_bytes: usize,
    /// PyTorch's figures, where it could be run.
    pub torch: Option<TorchStep>,
    /// One more step with its ops timed one by one, when asked for.
    pub profile: Option<StepProfile>,
}

/// A step profiled op by op ([`metakd_model::ops::profile`]).
#[derive(Debug, Clone)]
pub struct StepProfile {
    /// Seconds of the profiled step (slower than a timed one: the device is waited on around
    /// every op).
    pub seconds: f64,
    /// The step's phases and ops.
    pub profile: Profile,
}

impl StepProfile {
    /// Seconds of the step outside the timed ops (Candle's own ops and the launches).
    pub fn untimed_seconds(&self) -> f64 {
        let ops: f64 = self.profile.ops.iter().map(|o| o.seconds).sum();
        (self.seconds - ops).max(0.0)
    }
}

impl fmt::Display for StepTiming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [d, h, w] = self.shape.crop;
        write!(
            f,
            "{d}x{h}x{w} batch {}: {}, peak memory {:.2} GB",
            self.shape.batch,
            self.seconds,
            self.peak_bytes as f64 / 1e9
        )?;
        match &self.torch {
            Some(t) => write!(
                f,
                "; PyTorch {}, ratio {:.2}x (best {:.2}x); first-step logits differ by {:.1e} \
                 (relative)",
                t.seconds,
                self.seconds.median / t.seconds.median,
                self.seconds.best / t.seconds.best,
                t.logits_relative_error
            )?,
            None => return write!(f, "; PyTorch not run"),
        }
        match &self.torch {
            Some(t) if t.peak_bytes > 0.0 => write!(
                f,
                "; PyTorch peak {:.2} GB (ratio {:.2}x)",
                t.peak_bytes / 1e9,
                self.peak_bytes as f64 / t.peak_bytes
            ),
            _ => Ok(()),
        }
    }
}

/// The PyTorch twin on the command line (`metakd bench train`, `metakd-gpu-check`).
#[derive(Debug, Clone, clap::Args)]
pub struct TwinArgs {
    /// Python interpreter with torch and safetensors for the comparison.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// The PyTorch twin.
    #[arg(long, default_value = "tools/metakd_twin.py")]
    pub twin_script: PathBuf,
    /// Skip the PyTorch comparison.
    #[arg(long)]
    pub no_torch: bool,
}

/// Where to find the PyTorch twin.
#[derive(Debug, Clone)]
pub struct TorchTwin<'a> {
    /// Python interpreter with torch and safetensors.
    pub python: &'a str,
    /// `tools/metakd_twin.py`.
    pub script: &'a Path,
    /// Threads PyTorch may use.
    pub threads: usize,
    /// `cpu` or `cuda`: where the twin runs (the same device as the benchmarked step).
    pub device: &'a str,
    /// Whether PyTorch may use TF32 on CUDA.
    pub tf32: bool,
}

/// Peak-memory measurement of the device a step runs on.
fn reset_peak(device: &Device) -> Result<usize> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(dev) => {
            metakd_model::ops::cuda::reset_peak_memory(dev)?;
            Ok(0)
        }
        _ => Ok(alloc_stats::reset_peak()),
    }
}

/// Peak bytes on `device` since [`reset_peak`] returned `before`.
fn peak(device: &Device, before: usize) -> Result<usize> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(dev) => Ok(metakd_model::ops::cuda::peak_memory(dev)? as usize),
        _ => Ok(alloc_stats::peak().saturating_sub(before)),
    }
}

/// Hands the memory the device's allocator keeps without using back, before another process
/// (the twin) uses the same GPU.
fn release_cached(device: &Device) -> Result<()> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(dev) => Ok(metakd_model::ops::cuda::release_pool_memory(dev)?),
        _ => Ok(()),
    }
}

/// Times `runs` steps, after `warmup` untimed ones (at least one: its logits are compared), of
/// `cfg`'s network on `device` for each shape, and the twin's with the same counts, both in
/// `precision`; with `profile`, one more step is profiled op by op. The first steps of a process
/// also pay for growing the allocator's memory (page faults), which a long training run pays
/// once; the warm-up keeps that out of the timings on both sides.
pub fn bench_train(
    cfg: &SegmenterConfig,
    shapes: &[StepShape],
    steps: &StepRuns,
    twin: Option<&TorchTwin>,
    workdir: &Path,
    device: &Device,
) -> Result<(usize, Vec<StepTiming>)> {
    let StepRuns {
        warmup,
        runs,
        precision,
        profile,
    } = *steps;
    if runs == 0 || warmup == 0 {
        bail!("--runs and --warmup must be positive")
    }
    let device = device.clone();
    let train = TrainConfig {
        precision,
        ..TrainConfig::default()
    };
    let mut timings = Vec::new();
    let mut parameters = 0;
    for &shape in shapes {
        let divisors = cfg.size_divisors();
        if shape.crop.iter().zip(divisors).any(|(c, d)| c % d != 0) {
            bail!("crop {:?} is not divisible by {divisors:?}", shape.crop)
        }
        let model = Model::new(cfg, 0, &device)?;
        parameters = model.parameter_count();
        let [d, h, w] = shape.crop;
        let m = cfg.modalities;
        let x = Tensor::randn(0f32, 1f32, (shape.batch, m, d, h, w), &device)?;
        let y = Tensor::rand(0f32, 1f32, (shape.batch, 3, d, h, w), &device)?
            .lt(0.3)?
            .to_dtype(candle_core::DType::F32)?;
        let weights = workdir.join("bench_weights.safetensors");
        if twin.is_some() {
            let mut tensors = model.tensors();
            tensors.insert("bench.x".into(), x.clone());
            tensors.insert("bench.target".into(), y.clone());
            tensors.insert(
                "bench.w".into(),
                model.importance.logits().as_tensor().clone(),
            );
            save_tensors(&tensors, &weights)?;
        }
        let vars = named_vars(&model).into_iter().map(|(_, v)| v).collect();
        let mut sgd = SgdNesterov::new(vars, train.momentum, 0.0);
        let available = vec![true; m];
        let first = training_step(&model, &mut sgd, (&x, &y), &available, &train, train.lr)?;
        for _ in 1..warmup {
            training_step(&model, &mut sgd, (&x, &y), &available, &train, train.lr)?;
        }
        device.synchronize()?;
        let before = reset_peak(&device)?;
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            training_step(&model, &mut sgd, (&x, &y), &available, &train, train.lr)?;
            device.synchronize()?;
            samples.push(start.elapsed().as_secs_f64());
        }
        let peak_bytes = peak(&device, before)?;
        let profile = if profile {
            profile::start();
            let start = Instant::now();
            let step = training_step(&model, &mut sgd, (&x, &y), &available, &train, train.lr)
                .and_then(|_| device.synchronize().map_err(Into::into));
            let seconds = start.elapsed().as_secs_f64();
            let profile = profile::finish();
            step?;
            Some(StepProfile { seconds, profile })
        } else {
            None
        };
        let torch = match twin {
            Some(twin) => {
                release_cached(&device)?;
                torch_step(twin, cfg, &weights, steps, &first.logits, workdir)?
            }
            None => None,
        };
        timings.push(StepTiming {
            shape,
            seconds: StepSeconds::of(samples),
            peak_bytes,
            torch,
            profile,
        });
    }
    Ok((parameters, timings))
}

/// Runs the twin on the saved weights and batch; `None` when PyTorch cannot be run.
fn torch_step(
    twin: &TorchTwin,
    cfg: &SegmenterConfig,
    weights: &Path,
    steps: &StepRuns,
    logits: &Tensor,
    workdir: &Path,
) -> Result<Option<TorchStep>> {
    let config = workdir.join("bench_network.json");
    std::fs::write(&config, serde_json::to_vec(cfg)?)
        .with_context(|| format!("{}: cannot write", config.display()))?;
    let result = workdir.join("bench_torch.safetensors");
    let status = Command::new(twin.python)
        .arg(twin.script)
        .arg("step")
        .arg("--config")
        .arg(&config)
        .arg("--weights")
        .arg(weights)
        .args(["--warmup", &steps.warmup.to_string()])
        .args(["--runs", &steps.runs.to_string()])
        .args(["--precision", steps.precision.name()])
        .args(["--threads", &twin.threads.to_string()])
        .args(["--device", twin.device])
        .args(twin.tf32.then_some("--tf32"))
        .arg("--out")
        .arg(&result)
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => return Ok(None),
    }
    let out = candle_core::safetensors::load(&result, &Device::Cpu)
        .with_context(|| format!("{}: unreadable PyTorch result", result.display()))?;
    let theirs = &out["logits"];
    let logits = logits.to_device(&Device::Cpu)?;
    let logits = &logits;
    let scale = theirs.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-12);
    let worst = (logits - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let seconds = StepSeconds {
        median: out["seconds"].to_vec1::<f64>()?[0],
        best: out["best"].to_vec1::<f64>()?[0],
    };
    let peak_bytes = match out.get("peak_bytes") {
        Some(t) => t.to_vec1::<f64>()?[0],
        None => 0.0,
    };
    Ok(Some(TorchStep {
        seconds,
        logits_relative_error: f64::from(worst / scale),
        peak_bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_seconds_are_the_median_and_the_fastest_run() {
        let s = StepSeconds::of(vec![3.0, 1.5, 9.0, 2.0, 2.5]);
        assert_eq!((s.median, s.best), (2.5, 1.5));
        assert_eq!(s.to_string(), "2.50 s/step (best 1.50)");
        let one = StepSeconds::of(vec![4.25]);
        assert_eq!((one.median, one.best), (4.25, 4.25));
    }
}
