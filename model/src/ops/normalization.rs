//! Group norm (and instance norm, its case of one channel per group) with a per-channel affine
//! as one fused op: each (sample, group) span of channels is normalised by its own mean and
//! biased variance, then every channel is scaled and shifted. The backward pass is two ops: one
//! for the input's gradient, one for the affine parameters'.

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::elementwise::contiguous_f32;

/// Mean and 1/sqrt(var + eps) of one (sample, group) span.
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

/// How `x [n, c, ...]` splits into normalised spans.
#[derive(Clone, Copy)]
struct Spans {
    /// Channels.
    c: usize,
    /// Voxels per channel.
    voxels: usize,
    /// Elements per (sample, group) span.
    len: usize,
}

impl Spans {
    fn new(l: &Layout, groups: usize, op: &str) -> Result<Self> {
        let dims = l.dims();
        if dims.len() < 3 {
            bail!("{op}: expects [n, c, spatial...], got {dims:?}")
        }
        let (c, voxels) = (dims[1], dims[2..].iter().product::<usize>());
        if groups == 0 || c % groups != 0 {
            bail!("{op}: {c} channels do not split into {groups} groups")
        }
        Ok(Self {
            c,
            voxels,
            len: c / groups * voxels,
        })
    }

    /// The channel of element `i` of span `s`.
    fn channel(&self, s: usize, i: usize) -> usize {
        (s * self.len + i) / self.voxels % self.c
    }
}

struct GroupNorm {
    groups: usize,
    eps: f64,
}

/// Gradient with respect to the input: (x, gamma, dy) → dx.
struct GroupNormInputGrad {
    groups: usize,
    eps: f64,
}

/// Gradients of the affine parameters: (x, dy) → [2, c] holding dgamma then dbeta.
struct GroupNormAffineGrad {
    groups: usize,
    eps: f64,
}

impl CustomOp3 for GroupNorm {
    fn name(&self) -> &'static str {
        "group-norm"
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
        let sp = Spans::new(l1, self.groups, self.name())?;
        let x = contiguous_f32(s1, l1, self.name())?;
        let gamma = contiguous_f32(s2, l2, self.name())?;
        let beta = contiguous_f32(s3, l3, self.name())?;
        if gamma.len() != sp.c || beta.len() != sp.c {
            bail!(
                "{}: {} channels but {} weights and {} biases",
                self.name(),
                sp.c,
                gamma.len(),
                beta.len()
            )
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(sp.len)
            .zip(x.par_chunks(sp.len))
            .enumerate()
            .for_each(|(s, (y, x))| {
                let (mean, rstd) = moments(x, self.eps);
                for (k, (y, x)) in y.chunks_mut(sp.voxels).zip(x.chunks(sp.voxels)).enumerate() {
                    let ch = sp.channel(s, k * sp.voxels);
                    let (g, b) = (gamma[ch] * rstd, beta[ch]);
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = (x - mean) * g + b;
                    }
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
        let (groups, eps) = (self.groups, self.eps);
        let dx = x.apply_op3_no_bwd(
            &gamma.contiguous()?,
            &grad,
            &GroupNormInputGrad { groups, eps },
        )?;
        let affine = x.apply_op2_no_bwd(&grad, &GroupNormAffineGrad { groups, eps })?;
        Ok((Some(dx), Some(affine.get(0)?), Some(affine.get(1)?)))
    }
}

impl CustomOp3 for GroupNormInputGrad {
    fn name(&self) -> &'static str {
        "group-norm-input-grad"
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
        let sp = Spans::new(l1, self.groups, self.name())?;
        let x = contiguous_f32(s1, l1, self.name())?;
        let gamma = contiguous_f32(s2, l2, self.name())?;
        let dy = contiguous_f32(s3, l3, self.name())?;
        let mut dx = vec![0f32; x.len()];
        let n = sp.len as f64;
        dx.par_chunks_mut(sp.len)
            .zip(x.par_chunks(sp.len).zip(dy.par_chunks(sp.len)))
            .enumerate()
            .for_each(|(s, (dx, (x, dy)))| {
                // With g = γ·dy, dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) over the span.
                let (mean, rstd) = moments(x, self.eps);
                let (mut sum_g, mut sum_g_xhat) = (0f64, 0f64);
                for (i, (&x, &dy)) in x.iter().zip(dy).enumerate() {
                    let g = f64::from(dy * gamma[sp.channel(s, i)]);
                    sum_g += g;
                    sum_g_xhat += g * f64::from((x - mean) * rstd);
                }
                let (mean_g, mean_g_xhat) = ((sum_g / n) as f32, (sum_g_xhat / n) as f32);
                for (i, ((dx, &x), &dy)) in dx.iter_mut().zip(x).zip(dy).enumerate() {
                    let xhat = (x - mean) * rstd;
                    let g = dy * gamma[sp.channel(s, i)];
                    *dx = rstd * (g - mean_g - xhat * mean_g_xhat);
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

impl CustomOp2 for GroupNormAffineGrad {
    fn name(&self) -> &'static str {
        "group-norm-affine-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let sp = Spans::new(l1, self.groups, self.name())?;
        let x = contiguous_f32(s1, l1, self.name())?;
        let dy = contiguous_f32(s2, l2, self.name())?;
        // Sums per (sample, channel) plane, in memory order.
        let per_plane: Vec<(f64, f64)> = x
            .par_chunks(sp.len)
            .zip(dy.par_chunks(sp.len))
            .flat_map_iter(|(x, dy)| {
                let (mean, rstd) = moments(x, self.eps);
                x.chunks(sp.voxels)
                    .zip(dy.chunks(sp.voxels))
                    .map(move |(x, dy)| {
                        x.iter().zip(dy).fold((0f64, 0f64), |(g, b), (&x, &dy)| {
                            (
                                g + f64::from(dy) * f64::from((x - mean) * rstd),
                                b + f64::from(dy),
                            )
                        })
                    })
            })
            .collect();
        let c = sp.c;
        let mut out = vec![0f32; 2 * c];
        for (p, (g, b)) in per_plane.iter().enumerate() {
            out[p % c] += *g as f32;
            out[c + p % c] += *b as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

/// Group norm of `x [n, c, ...]`: the channels split into `groups` groups, each sample's group
/// normalised over its channels and voxels (biased variance, as PyTorch), then
/// `gamma · x̂ + beta` per channel.
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        GroupNorm { groups, eps },
    )
}

/// Instance norm of `x [n, c, ...]` (group norm with one channel per group). Over a single voxel
/// x̂ is 0, so the result is `beta`, as the reference network relies on.
pub fn instance_norm3d(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    group_norm(x, x.dim(1)?, gamma, beta, eps)
}
