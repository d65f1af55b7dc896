//! `metakd gpu-check`: every op of `metakd_model::ops` on a CUDA device against the CPU
//! implementation on the same random inputs, forward and backward (the gradients of `Σ y·r` for
//! a random `r`, with respect to every input), then timed training steps beside PyTorch.

use crate::perf::bench_train::{StepProfile, TwinArgs};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use metakd_model::nets::{Preset, SegmenterConfig};
use metakd_model::ops::{
    add_channel_bias, add_leaky_relu, autocast, avg_pool3d, conv3d, conv_transpose3d, group_norm,
    instance_norm3d, instance_norm3d_leaky_relu, leaky_relu, max_pool3d, standardize_weight,
    upsample_nearest3d, upsample_trilinear3d, Conv3dParams, ConvTranspose3dParams, Pool3dParams,
    Precision, ResampleTo,
};

/// What `metakd gpu-check` (and `metakd-gpu-check`) runs.
#[derive(Debug, Clone, clap::Args)]
pub struct GpuCheckOptions {
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
    /// Timed steps per preset (the median is printed).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Untimed steps before them, on both sides (cuDNN's algorithm choice, the memory pool's
    /// growth).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Crop extents D,H,W of the timed step.
    #[arg(long, value_parser = parse_extents, default_value = "80,160,160")]
    pub crop: [usize; 3],
    /// Crops per batch of the timed step.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// The PyTorch twin to compare with.
    #[command(flatten)]
    pub twin: TwinArgs,
    /// Let convolutions and matrix products use TF32, here and in PyTorch.
    #[arg(long)]
    pub tf32: bool,
    /// Take cuDNN's heuristic choice of convolution algorithm instead of timing the algorithms
    /// (PyTorch's twin times them: `cudnn.benchmark`).
    #[arg(long)]
    pub no_autotune: bool,
    /// The presets to time (`reference`, `small`; both by default).
    #[arg(long, value_delimiter = ',', default_value = "reference,small")]
    pub presets: Vec<Preset>,
    /// Also profile one step of each preset op by op (kernels and convolutions, the slowest
    /// first).
    #[arg(long)]
    pub profile: bool,
    /// Rows of each profile.
    #[arg(long, default_value_t = 25)]
    pub profile_rows: usize,
    /// Skip the ops' comparison with the CPU (1).
    #[arg(long)]
    pub no_ops: bool,
    /// Arithmetic of the convolutions in the timed steps: f32, or bf16 mixed precision
    /// (PyTorch's twin under `torch.autocast`); `f32,bf16` times both.
    #[arg(long = "precision", value_delimiter = ',', default_value = "f32")]
    pub precisions: Vec<Precision>,
}

/// Parses extents `D,H,W` such as `80,160,160`.
pub fn parse_extents(text: &str) -> std::result::Result<[usize; 3], String> {
    let parts: Vec<usize> = text
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{text}`: expected D,H,W such as 48,64,64"))
        })
        .collect::<std::result::Result<_, _>>()?;
    parts
        .try_into()
        .map_err(|_| format!("`{text}`: expected three extents D,H,W"))
}

/// The largest relative error allowed in f32 (|gpu − cpu| / max |cpu|).
pub const TOLERANCE: f64 = 1e-4;

/// The largest relative error allowed for the convolutions in bf16: both sides round the same
/// operands and accumulate in f32, so a result differs by at most one bf16 step where the two
/// sums fall on either side of a rounding boundary (2^-7 of the largest value at most).
pub const BF16_TOLERANCE: f64 = 1e-2;

/// The tolerance of a case in `precision`.
pub fn tolerance(precision: Precision) -> f64 {
    match precision {
        Precision::F32 => TOLERANCE,
        Precision::Bf16 => BF16_TOLERANCE,
    }
}

/// One op's comparison.
#[derive(Debug, Clone)]
pub struct OpParity {
    /// The op and its case.
    pub name: &'static str,
    /// The precision the case ran in.
    pub precision: Precision,
    /// Relative error of the output.
    pub forward: f64,
    /// The largest relative error of the input gradients.
    pub backward: f64,
}

impl OpParity {
    /// Whether both errors are within the [`tolerance`] of the case's precision.
    pub fn passes(&self) -> bool {
        let tolerance = tolerance(self.precision);
        self.forward <= tolerance && self.backward <= tolerance
    }
}

type OpFn = fn(&[Tensor]) -> candle_core::Result<Tensor>;

/// The convolution cases run again in bf16 mixed precision.
const BF16_CASES: [&str; 3] = [
    "conv3d 3³ pad 1",
    "conv3d 3³ stride 2",
    "conv_transpose3d 2³ stride 2",
];

/// The cases: a name, the input shapes, the op and the precision it runs in (every case in f32,
/// the convolutions of [`BF16_CASES`] also in bf16).
fn cases() -> Vec<(&'static str, Vec<Vec<usize>>, OpFn, Precision)> {
    let f32_cases = f32_cases();
    let bf16_cases: Vec<_> = f32_cases
        .iter()
        .filter(|(name, ..)| BF16_CASES.contains(name))
        .map(|(name, shapes, op)| (*name, shapes.clone(), *op, Precision::Bf16))
        .collect();
    assert_eq!(bf16_cases.len(), BF16_CASES.len(), "every bf16 case exists");
    f32_cases
        .into_iter()
        .map(|(name, shapes, op)| (name, shapes, op, Precision::F32))
        .chain(bf16_cases)
        .collect()
}

/// The cases in f32: a name, the input shapes and the op.
fn f32_cases() -> Vec<(&'static str, Vec<Vec<usize>>, OpFn)> {
    vec![
        (
            "conv3d 3³ pad 1",
            vec![vec![2, 4, 6, 7, 8], vec![5, 4, 3, 3, 3]],
            |t| conv3d(&t[0], &t[1], Conv3dParams::uniform(1, 1, 1)),
        ),
        (
            "conv3d 3³ stride 2",
            vec![vec![2, 4, 9, 8, 7], vec![6, 4, 3, 3, 3]],
            |t| conv3d(&t[0], &t[1], Conv3dParams::uniform(2, 1, 1)),
        ),
        (
            "conv3d dilation 2, 2 groups",
            vec![vec![1, 4, 8, 8, 8], vec![4, 2, 3, 3, 3]],
            |t| conv3d(&t[0], &t[1], Conv3dParams::uniform(1, 2, 2).with_groups(2)),
        ),
        (
            "conv3d 1³",
            vec![vec![2, 4, 5, 6, 7], vec![8, 4, 1, 1, 1]],
            |t| conv3d(&t[0], &t[1], Conv3dParams::default()),
        ),
        (
            "conv_transpose3d 2³ stride 2",
            vec![vec![2, 4, 3, 4, 5], vec![4, 3, 2, 2, 2]],
            |t| conv_transpose3d(&t[0], &t[1], ConvTranspose3dParams::stride(2)),
        ),
        (
            "instance_norm3d",
            vec![vec![2, 5, 4, 6, 7], vec![5], vec![5]],
            |t| instance_norm3d(&t[0], &t[1], &t[2], 1e-5),
        ),
        (
            "instance_norm3d + LeakyReLU",
            vec![vec![2, 5, 4, 6, 7], vec![5], vec![5]],
            |t| instance_norm3d_leaky_relu(&t[0], &t[1], &t[2], 1e-5, 0.01),
        ),
        (
            "group_norm 2 groups",
            vec![vec![2, 6, 3, 4, 5], vec![6], vec![6]],
            |t| group_norm(&t[0], 2, &t[1], &t[2], 1e-5),
        ),
        (
            "instance_norm3d + LeakyReLU, 2 chunks",
            vec![vec![2, 3, 16, 24, 40], vec![3], vec![3]],
            |t| instance_norm3d_leaky_relu(&t[0], &t[1], &t[2], 1e-5, 0.01),
        ),
        (
            "group_norm 2 groups, 4 chunks",
            vec![vec![2, 4, 16, 24, 40], vec![4], vec![4]],
            |t| group_norm(&t[0], 2, &t[1], &t[2], 1e-5),
        ),
        ("standardize_weight", vec![vec![6, 4, 3, 3, 3]], |t| {
            standardize_weight(&t[0], 1e-5)
        }),
        ("max_pool3d 2³ stride 2", vec![vec![2, 3, 6, 8, 10]], |t| {
            max_pool3d(&t[0], Pool3dParams::cubic(2, 2, 0))
        }),
        (
            "max_pool3d 3³ stride 2 pad 1",
            vec![vec![2, 3, 7, 8, 9]],
            |t| max_pool3d(&t[0], Pool3dParams::cubic(3, 2, 1)),
        ),
        (
            "avg_pool3d 3³ stride 2 pad 1",
            vec![vec![2, 3, 7, 8, 9]],
            |t| avg_pool3d(&t[0], Pool3dParams::cubic(3, 2, 1)),
        ),
        ("upsample_trilinear3d ×2", vec![vec![2, 3, 4, 5, 6]], |t| {
            upsample_trilinear3d(&t[0], ResampleTo::Scale([2.0; 3]), false)
        }),
        (
            "upsample_trilinear3d align corners",
            vec![vec![2, 3, 4, 5, 6]],
            |t| upsample_trilinear3d(&t[0], ResampleTo::Size([7, 9, 11]), true),
        ),
        ("upsample_nearest3d ×2", vec![vec![2, 3, 4, 5, 6]], |t| {
            upsample_nearest3d(&t[0], ResampleTo::Scale([2.0; 3]))
        }),
        ("leaky_relu", vec![vec![2, 3, 4, 5, 6]], |t| {
            leaky_relu(&t[0], 0.01)
        }),
        (
            "add_leaky_relu",
            vec![vec![2, 3, 4, 5, 6], vec![2, 3, 4, 5, 6]],
            |t| add_leaky_relu(&t[0], &t[1], 0.01),
        ),
        (
            "add_channel_bias",
            vec![vec![2, 3, 4, 5, 6], vec![3]],
            |t| add_channel_bias(&t[0], &t[1]),
        ),
        (
            "add_channel_bias, 2 chunks",
            vec![vec![2, 3, 16, 24, 40], vec![3]],
            |t| add_channel_bias(&t[0], &t[1]),
        ),
    ]
}

/// The output and the input gradients of `op` on `inputs` copied to `device`, in `precision`.
fn run_on(
    (op, precision): (OpFn, Precision),
    inputs: &[Tensor],
    probe: &Tensor,
    device: &Device,
) -> Result<(Tensor, Vec<Tensor>)> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(&t.to_device(device)?))
        .collect::<candle_core::Result<_>>()?;
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = {
        let _precision = autocast(precision);
        op(&tensors)?
    };
    let grads = (&y * probe.to_device(device)?)?.sum_all()?.backward()?;
    let grads = vars
        .iter()
        .map(|v| {
            grads
                .get(v)
                .cloned()
                .context("an input got no gradient")?
                .to_device(&Device::Cpu)
                .map_err(Into::into)
        })
        .collect::<Result<_>>()?;
    Ok((y.to_device(&Device::Cpu)?, grads))
}

/// |a − b|max / |b|max (b the CPU result).
fn relative_error(a: &Tensor, b: &Tensor) -> Result<f64> {
    let scale = b.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-12);
    let worst = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    Ok(f64::from(worst / scale))
}

/// Every op on `gpu` against the CPU.
pub fn check_ops(gpu: &Device) -> Result<Vec<OpParity>> {
    let mut results = Vec::new();
    for (i, (name, shapes, op, precision)) in cases().into_iter().enumerate() {
        let cpu = Device::Cpu;
        let inputs: Vec<Tensor> = shapes
            .iter()
            .map(|s| Tensor::randn(0f32, 1f32, s.as_slice(), &cpu))
            .collect::<candle_core::Result<_>>()?;
        let reference_output = op(&inputs).with_context(|| format!("{name} on the CPU"))?;
        let probe = Tensor::randn(0f32, 1f32, reference_output.shape(), &cpu)?;
        let (y_cpu, g_cpu) = run_on((op, precision), &inputs, &probe, &cpu)?;
        let (y_gpu, g_gpu) = run_on((op, precision), &inputs, &probe, gpu)
            .with_context(|| format!("case {i}: {name} in {precision} on the GPU"))?;
        let mut backward = 0f64;
        for (a, b) in g_gpu.iter().zip(&g_cpu) {
            backward = backward.max(relative_error(a, b)?);
        }
        results.push(OpParity {
            name,
            precision,
            forward: relative_error(&y_gpu, &y_cpu)?,
            backward,
        });
    }
    Ok(results)
}

/// A step's profile: its phases, then its slowest `rows` ops, each with its share of the step,
/// the other ops summed, and the time no op accounts for.
fn print_profile(preset: &str, profile: &StepProfile, rows: usize) {
    let share = |seconds: f64| 100.0 * seconds / profile.seconds.max(1e-12);
    println!(
        "  profile of one {preset} step ({:.1} ms with the device waited on around each op):",
        profile.seconds * 1e3
    );
    println!("  {:>9} {:>6} {:>6}  phase", "ms", "%", "runs");
    for phase in &profile.profile.phases {
        println!(
            "  {:>9.2} {:>6.1} {:>6}  {}",
            phase.seconds * 1e3,
            share(phase.seconds),
            phase.calls,
            phase.name
        );
    }
    println!("  {:>9} {:>6} {:>6}  op", "ms", "%", "calls");
    for op in profile.profile.ops.iter().take(rows) {
        println!(
            "  {:>9.2} {:>6.1} {:>6}  {}",
            op.seconds * 1e3,
            share(op.seconds),
            op.calls,
            op.name
        );
    }
    let rest: Vec<_> = profile.profile.ops.iter().skip(rows).collect();
    if !rest.is_empty() {
        let seconds: f64 = rest.iter().map(|o| o.seconds).sum();
        let calls: usize = rest.iter().map(|o| o.calls).sum();
        println!(
            "  {:>9.2} {:>6.1} {:>6}  {} other ops",
            seconds * 1e3,
            share(seconds),
            calls,
            rest.len()
        );
    }
    let untimed = profile.untimed_seconds();
    println!(
        "  {:>9.2} {:>6.1} {:>6}  Candle's own ops and launches",
        untimed * 1e3,
        share(untimed),
        "-"
    );
}

/// `metakd gpu-check`: the ops against the CPU (1), the timed steps of the `reference` and
/// `small` presets (2) beside the PyTorch twin on the same GPU (3), then a table; an error when
/// an op differs.
pub fn run(a: &GpuCheckOptions) -> Result<()> {
    use crate::perf::bench_train::{bench_train, StepRuns, StepShape, TorchTwin};
    if a.presets.is_empty() {
        anyhow::bail!("--presets: name at least one of reference, small")
    }
    if a.precisions.is_empty() {
        anyhow::bail!("--precision: name at least one of f32, bf16")
    }
    let gpu = crate::run::device::open_cuda(a.gpu)?;
    #[cfg(feature = "cuda")]
    {
        metakd_model::ops::cudnn::set_tf32(a.tf32);
        metakd_model::ops::cudnn::set_autotune(!a.no_autotune);
        candle_core::cuda_backend::set_gemm_reduced_precision_f32(a.tf32);
    }
    let parity = if a.no_ops {
        Vec::new()
    } else {
        println!(
            "(1) every op on CUDA against the CPU (relative error, tolerance {TOLERANCE:.0e}; \
             convolutions in bf16 also, tolerance {BF16_TOLERANCE:.0e})"
        );
        check_ops(&gpu)?
    };
    for p in &parity {
        println!(
            "  {:<36} {:<4} forward {:.1e}  backward {:.1e}  {}",
            p.name,
            p.precision.name(),
            p.forward,
            p.backward,
            if p.passes() { "ok" } else { "DIFFERS" }
        );
    }
    let twin = TorchTwin {
        python: &a.twin.python,
        script: &a.twin.twin_script,
        threads: rayon::current_num_threads(),
        device: "cuda",
        tf32: a.tf32,
    };
    let shape = StepShape {
        batch: a.batch,
        crop: a.crop,
    };
    let workdir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    for preset in &a.presets {
        let name = preset.name();
        for &precision in &a.precisions {
            println!("(2) training step of {name} on CUDA in {precision}, (3) its PyTorch twin");
            let steps = StepRuns {
                warmup: a.warmup,
                runs: a.runs,
                precision,
                profile: a.profile,
            };
            let (parameters, timings) = bench_train(
                &SegmenterConfig::of(*preset),
                &[shape],
                &steps,
                (!a.twin.no_torch).then_some(&twin),
                workdir.path(),
                &gpu,
            )?;
            for t in timings {
                println!("  {name} ({parameters} parameters): {t}");
                if let Some(profile) = &t.profile {
                    print_profile(name, profile, a.profile_rows);
                }
                rows.push((name, precision, t));
            }
        }
    }
    let [d, h, w] = a.crop;
    println!(
        "\nsummary: {d}x{h}x{w}, batch {}, median of {} steps",
        a.batch, a.runs
    );
    println!(
        "| preset | precision | it/s | PyTorch it/s | time ratio | peak GB | PyTorch peak GB | \
         memory ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, precision, t) in &rows {
        let ours = 1.0 / t.seconds.median;
        let peak = t.peak_bytes as f64 / 1e9;
        match &t.torch {
            Some(torch) => println!(
                "| {name} | {precision} | {ours:.2} | {:.2} | {:.2} | {peak:.2} | {:.2} | {:.2} |",
                1.0 / torch.seconds.median,
                t.seconds.median / torch.seconds.median,
                torch.peak_bytes / 1e9,
                peak * 1e9 / torch.peak_bytes.max(1.0)
            ),
            None => println!("| {name} | {precision} | {ours:.2} | – | – | {peak:.2} | – | – |"),
        }
    }
    let failed: Vec<&str> = parity
        .iter()
        .filter(|p| !p.passes())
        .map(|p| p.name)
        .collect();
    if !parity.is_empty() {
        println!(
            "ops: {} of {} within tolerance",
            parity.len() - failed.len(),
            parity.len()
        );
    }
    if !failed.is_empty() {
        anyhow::bail!("ops that differ on CUDA: {}", failed.join(", "))
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        options: GpuCheckOptions,
    }

    fn parse(args: &[&str]) -> Result<GpuCheckOptions, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("metakd-gpu-check").chain(args.iter().copied()))
            .map(|cli| cli.options)
    }

    #[test]
    fn the_timed_steps_run_in_f32_unless_precisions_are_listed() {
        assert_eq!(parse(&[]).unwrap().precisions, [Precision::F32]);
        let both = parse(&["--precision", "f32,bf16"]).unwrap();
        assert_eq!(both.precisions, [Precision::F32, Precision::Bf16]);
        let err = parse(&["--precision", "fp16"]).unwrap_err().to_string();
        assert!(err.contains("f32 or bf16"), "{err}");
    }

    #[test]
    fn every_case_runs_forward_and_backward_and_a_device_matches_itself() {
        let parity = check_ops(&Device::Cpu).unwrap();
        assert_eq!(parity.len(), cases().len());
        for p in &parity {
            assert_eq!((p.forward, p.backward), (0.0, 0.0), "{p:?}");
            assert!(p.passes());
        }
        let bf16 = parity.iter().filter(|p| p.precision == Precision::Bf16);
        assert_eq!(bf16.count(), BF16_CASES.len());
        let off = OpParity {
            name: "x",
            precision: Precision::F32,
            forward: 0.0,
            backward: 2e-4,
        };
        assert!(!off.passes());
        let bf16_step = OpParity {
            precision: Precision::Bf16,
            ..off.clone()
        };
        assert!(bf16_step.passes());
        assert!(!OpParity {
            forward: 2e-2,
            ..bf16_step
        }
        .passes());
    }
}
