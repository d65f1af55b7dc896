//! `metakd bench ops`: wall-clock time of forward + backward of the 3D ops at given shapes.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use metakd_model::ops::{
    conv3d, conv_transpose3d, instance_norm3d, leaky_relu, Conv3dParams, ConvTranspose3dParams,
};

/// One timed case: a name and the milliseconds of one forward + backward pass (median of runs).
#[derive(Debug, Clone)]
pub struct Timing {
    /// What was timed.
    pub name: String,
    /// Median milliseconds of forward + backward.
    pub millis: f64,
}

fn time(name: String, runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    f()?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    Ok(Timing {
        name,
        millis: samples[runs / 2],
    })
}

fn var(dims: &[usize], device: &Device) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::randn(0f32, 1f32, dims, device)?)?)
}

/// Times conv3d (3×3×3, padding 1), transposed conv3d (2×2×2, stride 2), instance norm and
/// LeakyReLU, forward + backward, on `[n, c, d, h, w]` inputs.
pub fn bench_ops(shapes: &[([usize; 5], usize, usize)], runs: usize) -> Result<Vec<Timing>> {
    let device = Device::Cpu;
    let mut timings = Vec::new();
    for &(dims, co, stride) in shapes {
        let x = var(&dims, &device)?;
        let w = var(&[co, dims[1], 3, 3, 3], &device)?;
        let params = Conv3dParams::uniform(stride, 1, 1);
        timings.push(time(
            format!("conv3d {dims:?} 3x3x3 s{stride} {}->{co}", dims[1]),
            runs,
            || {
                conv3d(&x, &w, params)?.sum_all()?.backward()?;
                Ok(())
            },
        )?);
        let wt = var(&[dims[1], co, 2, 2, 2], &device)?;
        timings.push(time(
            format!("conv_transpose3d {dims:?} 2x2x2 s2 {}->{co}", dims[1]),
            runs,
            || {
                conv_transpose3d(&x, &wt, ConvTranspose3dParams::stride(2))?
                    .sum_all()?
                    .backward()?;
                Ok(())
            },
        )?);
        let gamma = var(&[dims[1]], &device)?;
        let beta = var(&[dims[1]], &device)?;
        timings.push(time(format!("instance_norm3d {dims:?}"), runs, || {
            instance_norm3d(&x, &gamma, &beta, 1e-5)?
                .sqr()?
                .sum_all()?
                .backward()?;
            Ok(())
        })?);
        timings.push(time(format!("leaky_relu {dims:?}"), runs, || {
            leaky_relu(&x, 0.01)?.sum_all()?.backward()?;
            Ok(())
        })?);
    }
    Ok(timings)
}
