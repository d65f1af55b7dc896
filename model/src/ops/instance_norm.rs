//! Instance norm with a per-channel affine as one fused op: each (sample, channel) plane is
//! normalised by its own mean and biased variance, then scaled and shifted. The backward pass is
//! two ops: one for the input's gradient, one for the affine parameters'.

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::elementwise::contiguous_f32;

/// Mean and 1/sqrt(var + eps) of one plane.
fn moments(plane: &[f32], eps: f64) -> (f32, f32) {
    let n = plane.len() as f64;
    let mean = plane.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = plane
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

/// Channels and voxels per plane of `x [n, c, ...]`.
fn planes(l: &Layout, op: &str) -> Result<(usize, usize)> {
    let dims = l.dims();
    if dims.len() < 3 {
        bail!("{op}: expects [n, c, spatial...], got {dims:?}")
    }
    Ok((dims[1], dims[2..].iter().product()))
}

struct InstanceNorm {
    eps: f64,
}

/// Gradient with respect to the input: (x, gamma, dy) → dx.
struct InstanceNormInputGrad {
    eps: f64,
}

/// Gradients of the affine parameters: (x, dy) → [2, c] holding dgamma then dbeta.
struct InstanceNormAffineGrad {
    eps: f64,
}

impl CustomOp3 for InstanceNorm {
    fn name(&self) -> &'static str {
        "instance-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (c, voxels) = planes(l1, self.name())?;
        let x = contiguous_f32(s1, l1, self.name())?;
        let gamma = contiguous_f32(s2, l2, self.name())?;
        let beta = contiguous_f32(s3, l3, self.name())?;
        if gamma.len() != c || beta.len() != c {
            bail!(
                "{}: {c} channels but {} weights and {} biases",
                self.name(),
                gamma.len(),
                beta.len()
            )
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(voxels)
            .zip(x.par_chunks(voxels))
            .enumerate()
            .for_each(|(p, (y, x))| {
                let (mean, rstd) = moments(x, self.eps);
                let (g, b) = (gamma[p % c] * rstd, beta[p % c]);
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = (x - mean) * g + b;
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (x, grad) = (x.contiguous()?, grad.contiguous()?);
        let dx = x.apply_op3_no_bwd(
            &gamma.contiguous()?,
            &grad,
            &InstanceNormInputGrad { eps: self.eps },
        )?;
        let affine = x.apply_op2_no_bwd(&grad, &InstanceNormAffineGrad { eps: self.eps })?;
        Ok((Some(dx), Some(affine.get(0)?), Some(affine.get(1)?)))
    }
}

impl CustomOp3 for InstanceNormInputGrad {
    fn name(&self) -> &'static str {
        "instance-norm-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (c, voxels) = planes(l1, self.name())?;
        let x = contiguous_f32(s1, l1, self.name())?;
        let gamma = contiguous_f32(s2, l2, self.name())?;
        let dy = contiguous_f32(s3, l3, self.name())?;
        let mut dx = vec![0f32; x.len()];
        let n = voxels as f64;
        dx.par_chunks_mut(voxels)
            .zip(x.par_chunks(voxels).zip(dy.par_chunks(voxels)))
            .enumerate()
            .for_each(|(p, (dx, (x, dy)))| {
                let (mean, rstd) = moments(x, self.eps);
                let (mut sum_dy, mut sum_dy_xhat) = (0f64, 0f64);
                for (&x, &dy) in x.iter().zip(dy) {
                    sum_dy += f64::from(dy);
                    sum_dy_xhat += f64::from(dy) * f64::from((x - mean) * rstd);
                }
                let (mean_dy, mean_dy_xhat) = ((sum_dy / n) as f32, (sum_dy_xhat / n) as f32);
                let scale = gamma[p % c] * rstd;
                for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                    let xhat = (x - mean) * rstd;
                    *dx = scale * (dy - mean_dy - xhat * mean_dy_xhat);
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

impl CustomOp2 for InstanceNormAffineGrad {
    fn name(&self) -> &'static str {
        "instance-norm-affine-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (c, voxels) = planes(l1, self.name())?;
        let x = contiguous_f32(s1, l1, self.name())?;
        let dy = contiguous_f32(s2, l2, self.name())?;
        let per_plane: Vec<(f64, f64)> = x
            .par_chunks(voxels)
            .zip(dy.par_chunks(voxels))
            .map(|(x, dy)| {
                let (mean, rstd) = moments(x, self.eps);
                x.iter().zip(dy).fold((0f64, 0f64), |(g, b), (&x, &dy)| {
                    (
                        g + f64::from(dy) * f64::from((x - mean) * rstd),
                        b + f64::from(dy),
                    )
                })
            })
            .collect();
        let mut out = vec![0f32; 2 * c];
        for (p, (g, b)) in per_plane.iter().enumerate() {
            out[p % c] += *g as f32;
            out[c + p % c] += *b as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

/// Instance norm of `x [n, c, ...]` over each sample's and channel's voxels (biased variance, as
/// PyTorch), then `gamma · x̂ + beta` per channel. Over a single voxel x̂ is 0, so the result is
/// `beta`, as the reference network relies on.
pub fn instance_norm3d(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        InstanceNorm { eps },
    )
}
