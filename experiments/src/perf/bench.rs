//! `metakd bench ops`: wall-clock time and working memory of forward + backward of the 3D ops,
//! beside PyTorch's time on the same shapes and threads where PyTorch is installed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use metakd_model::ops::{
    conv3d, conv_transpose3d, upsample_trilinear3d, Conv3dParams, ConvTranspose3dParams, ResampleTo,
};
use serde::Serialize;

use crate::perf::alloc_stats;

/// One benchmarked operation (the fields `tools/bench_torch.py` reads).
#[derive(Debug, Clone, Serialize)]
pub struct OpCase {
    /// Label.
    pub name: String,
    /// `conv3d`, `conv_transpose3d` or `upsample_trilinear3d`.
    pub op: &'static str,
    /// Input dims `[n, c, d, h, w]`.
    pub input: [usize; 5],
    /// Output channels (convolutions).
    pub out_channels: usize,
    /// Cubic kernel extent (convolutions).
    pub kernel: usize,
    /// Stride (convolutions).
    pub stride: usize,
    /// Padding (conv3d).
    pub padding: usize,
    /// Output extents (upsampling).
    pub size: [usize; 3],
}

impl OpCase {
    fn conv(input: [usize; 5], out_channels: usize) -> Self {
        Self {
            name: format!("conv3d {input:?} 3x3x3 {}->{out_channels}", input[1]),
            op: "conv3d",
            input,
            out_channels,
            kernel: 3,
            stride: 1,
            padding: 1,
            size: [0; 3],
        }
    }
}

/// The cases of `docs/performance.md`.
pub fn standard_cases() -> Vec<OpCase> {
    vec![
        OpCase::conv([2, 16, 32, 64, 64], 16),
        OpCase::conv([2, 32, 16, 32, 32], 32),
        OpCase::conv([8, 1, 32, 32, 32], 8),
        OpCase::conv([2, 8, 32, 32, 32], 8),
        OpCase {
            name: "conv_transpose3d [2, 32, 16, 32, 32] 2x2x2 s2 32->16".into(),
            op: "conv_transpose3d",
            input: [2, 32, 16, 32, 32],
            out_channels: 16,
            kernel: 2,
            stride: 2,
            padding: 0,
            size: [0; 3],
        },
        OpCase {
            name: "upsample_trilinear3d [2, 16, 16, 32, 32] -> 32x64x64".into(),
            op: "upsample_trilinear3d",
            input: [2, 16, 16, 32, 32],
            out_channels: 16,
            kernel: 0,
            stride: 0,
            padding: 0,
            size: [32, 64, 64],
        },
    ]
}

/// What one case measured.
#[derive(Debug, Clone)]
pub struct OpTiming {
    /// The case.
    pub case: OpCase,
    /// Median milliseconds of forward + backward.
    pub millis: f64,
    /// Peak working memory beyond the input, output and gradient tensors, relative to the
    /// largest of them.
    pub extra_memory_ratio: f64,
}

fn var(dims: &[usize], device: &Device) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::randn(0f32, 1f32, dims, device)?)?)
}

/// Runs one forward + backward of `case` and returns the bytes of every tensor it involves.
fn step(case: &OpCase, x: &Var, w: &Var) -> Result<usize> {
    let y = match case.op {
        "conv3d" => conv3d(x, w, Conv3dParams::uniform(case.stride, case.padding, 1))?,
        "conv_transpose3d" => conv_transpose3d(x, w, ConvTranspose3dParams::stride(case.stride))?,
        "upsample_trilinear3d" => upsample_trilinear3d(x, ResampleTo::Size(case.size), false)?,
        other => bail!("unknown op {other}"),
    };
    let grads = y.sum_all()?.backward()?;
    let bytes = |t: &Tensor| t.elem_count() * 4;
    let grad_bytes: usize = [x.as_tensor(), w.as_tensor()]
        .iter()
        .filter_map(|v| grads.get(v))
        .map(bytes)
        .sum();
    // The output, its gradient (a tensor of ones) and the inputs' gradients.
    Ok(2 * bytes(&y) + grad_bytes)
}

/// Times every case (median of `runs`) and measures its working memory.
pub fn bench_ops(cases: &[OpCase], runs: usize) -> Result<Vec<OpTiming>> {
    let device = Device::Cpu;
    let mut timings = Vec::new();
    for case in cases {
        let x = var(&case.input, &device)?;
        let w = match case.op {
            "conv3d" => var(
                &[
                    case.out_channels,
                    case.input[1],
                    case.kernel,
                    case.kernel,
                    case.kernel,
                ],
                &device,
            )?,
            _ => var(
                &[
                    case.input[1],
                    case.out_channels,
                    case.kernel.max(1),
                    case.kernel.max(1),
                    case.kernel.max(1),
                ],
                &device,
            )?,
        };
        step(case, &x, &w)?;
        let before = alloc_stats::reset_peak();
        let tensor_bytes = step(case, &x, &w)?;
        let workspace = alloc_stats::peak().saturating_sub(before + tensor_bytes);
        let largest = (x.elem_count() * 4).max(tensor_bytes / 2);
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            step(case, &x, &w)?;
            samples.push(start.elapsed().as_secs_f64() * 1e3);
        }
        samples.sort_by(f64::total_cmp);
        timings.push(OpTiming {
            case: case.clone(),
            millis: samples[runs / 2],
            extra_memory_ratio: workspace as f64 / largest as f64,
        });
    }
    Ok(timings)
}

/// PyTorch's median milliseconds per case, from `script` run with `python`; `None` when PyTorch
/// cannot be run there.
pub fn torch_timings(
    python: &str,
    script: &Path,
    cases: &[OpCase],
    threads: usize,
    runs: usize,
) -> Result<Option<(String, Vec<f64>)>> {
    let child = Command::new(python)
        .arg(script)
        .args([
            "--threads",
            &threads.to_string(),
            "--runs",
            &runs.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return Ok(None);
    };
    child
        .stdin
        .take()
        .context("no stdin for the PyTorch benchmark")?
        .write_all(serde_json::to_string(cases)?.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Ok(None);
    }
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{}: unexpected output", script.display()))?;
    let version = parsed["torch"].as_str().unwrap_or("?").to_owned();
    let times = cases
        .iter()
        .map(|c| {
            parsed["timings"][&c.name]
                .as_f64()
                .with_context(|| format!("no timing for {}", c.name))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((version, times)))
}
