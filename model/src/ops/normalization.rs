//! Group norm (and instance norm, its case of one channel per group) with a per-channel affine
//! and an optional LeakyReLU as one fused op: each (sample, group) span of channels is normalised
//! by its own mean and biased variance, every channel is scaled and shifted, and the result may
//! pass through LeakyReLU. The backward pass is one op that reads the input and the output's
//! gradient three times and writes the input's gradient and the affine parameters' gradients
//! together.

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::elementwise::{
    assume_written, contiguous_f32, map_into, output_buffer, paired_sums, sum_and_squares,
    zip_map_into,
};

/// Mean and 1/sqrt(var + eps) of one (sample, group) span (its channel planes).
fn moments(planes: &[f32], eps: f64) -> (f32, f32) {
    let n = planes.len() as f64;
    let (sum, squares) = sum_and_squares(planes);
    let mean = sum / n;
    let var = (squares / n - mean * mean).max(0.0);
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

/// How `x [n, c, ...]` splits into normalised spans.
#[derive(Clone, Copy)]
struct Spans {
    /// Channels.
    c: usize,
    /// Voxels per channel.
    voxels: usize,
    /// Channels per group.
    per_group: usize,
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
            per_group: c / groups,
        })
    }

    /// Elements per (sample, group) span.
    fn len(&self) -> usize {
        self.per_group * self.voxels
    }

    /// The channel of plane `k` of span `s`.
    fn channel(&self, s: usize, k: usize) -> usize {
        (s * self.per_group + k) % self.c
    }

    /// Checks that the affine parameters hold one value per channel.
    fn check_affine(&self, gamma: usize, beta: usize, op: &str) -> Result<()> {
        if gamma != self.c || beta != self.c {
            bail!(
                "{op}: {} channels but {gamma} weights and {beta} biases",
                self.c
            )
        }
        Ok(())
    }
}

/// LeakyReLU's derivative factor at `z` (PyTorch's: `slope` at 0), or 1 without activation.
fn activation_factor(z: f32, slope: Option<f32>) -> f32 {
    match slope {
        Some(slope) if z <= 0.0 => slope,
        _ => 1.0,
    }
}

/// The normalisation of a span as per-plane scale and shift: `x̂·γ + β = x·scale + shift`.
fn plane_affine(mean: f32, rstd: f32, gamma: f32, beta: f32) -> (f32, f32) {
    let scale = gamma * rstd;
    (scale, beta - mean * scale)
}

struct GroupNorm {
    groups: usize,
    eps: f64,
    slope: Option<f32>,
}

/// Gradients: (x, [γ; β] as `[2, c]`, dy) → one flat tensor holding dx, then dγ, then dβ.
struct GroupNormGrad {
    groups: usize,
    eps: f64,
    slope: Option<f32>,
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
        sp.check_affine(gamma.len(), beta.len(), self.name())?;
        let mut y = output_buffer(x.len());
        y.par_chunks_mut(sp.len())
            .zip(x.par_chunks(sp.len()))
            .enumerate()
            .for_each(|(s, (y, x))| {
                let (mean, rstd) = moments(x, self.eps);
                for (k, (y, x)) in y.chunks_mut(sp.voxels).zip(x.chunks(sp.voxels)).enumerate() {
                    let ch = sp.channel(s, k);
                    let (scale, shift) = plane_affine(mean, rstd, gamma[ch], beta[ch]);
                    match self.slope {
                        None => map_into(y, x, |x| x * scale + shift),
                        Some(slope) => map_into(y, x, |x| {
                            let z = x * scale + shift;
                            if z > 0.0 {
                                z
                            } else {
                                z * slope
                            }
                        }),
                    }
                }
            });
        // SAFETY: the spans, and their planes, of `y` match the input's one for one, and each
        // plane's map wrote it.
        Ok((
            CpuStorage::F32(unsafe { assume_written(y) }),
            l1.shape().clone(),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        use candle_core::backend::BackendStorage;
        let sp = Spans::new(l1, self.groups, self.name())?;
        let dev = s1.device();
        let x = cuda::view(s1, l1, self.name())?;
        let gamma = cuda::view(s2, l2, self.name())?;
        let beta = cuda::view(s3, l3, self.name())?;
        sp.check_affine(gamma.len(), beta.len(), self.name())?;
        let n = x.len();
        let (mean, rstd) = cuda_moments(dev, &x, &sp, self.eps)?;
        let mut y = cuda::output(dev, n, false)?;
        let chunks = cuda::Chunks::new(n / sp.voxels.max(1), sp.voxels);
        let norm = cuda::NormPlanes::new(sp.voxels, chunks, sp.per_group, sp.c, self.slope);
        cuda::launch!(
            dev,
            "group_norm_apply",
            chunks.config()?,
            &x,
            &gamma,
            &beta,
            &mean,
            &rstd,
            &mut y,
            &norm
        );
        Ok((cuda::storage(y, dev), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let affine = Tensor::stack(&[gamma, beta], 0)?;
        let op = GroupNormGrad {
            groups: self.groups,
            eps: self.eps,
            slope: self.slope,
        };
        let all = x
            .contiguous()?
            .apply_op3_no_bwd(&affine, &grad.contiguous()?, &op)?;
        let (len, c) = (x.elem_count(), gamma.elem_count());
        let dx = all.narrow(0, 0, len)?.reshape(x.shape())?;
        let dgamma = all.narrow(0, len, c)?;
        let dbeta = all.narrow(0, len + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

impl GroupNormGrad {
    /// The gradients of one span: writes dx and returns Σ d and Σ d·x̂ per plane, where d is the
    /// gradient before the affine scale (after the activation's factor).
    fn span(
        &self,
        sp: &Spans,
        s: usize,
        (x, dy, dx): (&[f32], &[f32], &mut [std::mem::MaybeUninit<f32>]),
        (gamma, beta): (&[f32], &[f32]),
    ) -> Vec<(f64, f64)> {
        let (mean, rstd) = moments(x, self.eps);
        let planes = x.chunks(sp.voxels).zip(dy.chunks(sp.voxels)).enumerate();
        let sums: Vec<(f64, f64)> = planes
            .map(|(k, (x, dy))| {
                let ch = sp.channel(s, k);
                let (scale, shift) = plane_affine(mean, rstd, gamma[ch], beta[ch]);
                paired_sums(x, dy, |x, dy| {
                    let d = dy * activation_factor(x * scale + shift, self.slope);
                    (d, d * ((x - mean) * rstd))
                })
            })
            .collect();
        // With g = γ·d, dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) over the span.
        let n = x.len() as f64;
        let (mut mean_g, mut mean_g_xhat) = (0f64, 0f64);
        for (k, &(d, dxhat)) in sums.iter().enumerate() {
            let g = f64::from(gamma[sp.channel(s, k)]);
            mean_g += g * d / n;
            mean_g_xhat += g * dxhat / n;
        }
        let (mean_g, mean_g_xhat) = (mean_g as f32, mean_g_xhat as f32);
        let planes = dx
            .chunks_mut(sp.voxels)
            .zip(x.chunks(sp.voxels).zip(dy.chunks(sp.voxels)));
        for (k, (dx, (x, dy))) in planes.enumerate() {
            let ch = sp.channel(s, k);
            let (scale, shift) = plane_affine(mean, rstd, gamma[ch], beta[ch]);
            let gamma = gamma[ch];
            zip_map_into(dx, x, dy, |x, dy| {
                let g = dy * activation_factor(x * scale + shift, self.slope) * gamma;
                rstd * (g - mean_g - (x - mean) * rstd * mean_g_xhat)
            });
        }
        sums
    }
}

impl CustomOp3 for GroupNormGrad {
    fn name(&self) -> &'static str {
        "group-norm-grad"
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
        let affine = contiguous_f32(s2, l2, self.name())?;
        let dy = contiguous_f32(s3, l3, self.name())?;
        let c = sp.c;
        let (gamma, beta) = affine.split_at(affine.len() / 2);
        sp.check_affine(gamma.len(), beta.len(), self.name())?;
        if dy.len() != x.len() {
            bail!(
                "{}: {} gradients for {} inputs",
                self.name(),
                dy.len(),
                x.len()
            )
        }
        let mut out = output_buffer(x.len() + 2 * c);
        let (dx, affine_grad) = out.split_at_mut(x.len());
        // Σ d and Σ d·x̂ per (sample, channel) plane, in memory order.
        let per_plane: Vec<(f64, f64)> = dx
            .par_chunks_mut(sp.len())
            .zip(x.par_chunks(sp.len()).zip(dy.par_chunks(sp.len())))
            .enumerate()
            .flat_map_iter(|(s, (dx, (x, dy)))| self.span(&sp, s, (x, dy, dx), (gamma, beta)))
            .collect();
        let (mut dgamma, mut dbeta) = (vec![0f64; c], vec![0f64; c]);
        for (p, (d, dxhat)) in per_plane.iter().enumerate() {
            dgamma[p % c] += dxhat;
            dbeta[p % c] += d;
        }
        for (out, v) in affine_grad.iter_mut().zip(dgamma.iter().chain(&dbeta)) {
            out.write(*v as f32);
        }
        // SAFETY: the spans of dx match the input's one for one and `span` wrote each plane of
        // them; the 2·c affine gradients were written just above.
        Ok((
            CpuStorage::F32(unsafe { assume_written(out) }),
            Shape::from(x.len() + 2 * c),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        use candle_core::backend::BackendStorage;
        let sp = Spans::new(l1, self.groups, self.name())?;
        let dev = s1.device();
        let x = cuda::view(s1, l1, self.name())?;
        let affine = cuda::view(s2, l2, self.name())?;
        let dy = cuda::view(s3, l3, self.name())?;
        let c = sp.c;
        if affine.len() != 2 * c || dy.len() != x.len() {
            bail!(
                "{}: {} affine values for {c} channels, {} gradients for {} inputs",
                self.name(),
                affine.len(),
                dy.len(),
                x.len()
            )
        }
        let (gamma, beta) = (affine.slice(..c), affine.slice(c..));
        let n = x.len();
        let (spans, planes) = (n / sp.len().max(1), n / sp.voxels.max(1));
        let (mean, rstd) = cuda_moments(dev, &x, &sp, self.eps)?;
        let (span_len, per_group) = (sp.len(), sp.per_group);
        let chunks = cuda::Chunks::new(planes, sp.voxels);
        let norm = cuda::NormPlanes::new(sp.voxels, chunks, per_group, c, self.slope);
        let mut partial_d = chunks.partials(dev)?;
        let mut partial_dxhat = chunks.partials(dev)?;
        cuda::launch!(
            dev,
            "group_norm_partial_grad_sums",
            chunks.config()?,
            &x,
            &dy,
            &gamma,
            &beta,
            &mean,
            &rstd,
            &mut partial_d,
            &mut partial_dxhat,
            &norm
        );
        let mut mean_g = cuda::output::<f32>(dev, spans.max(1), true)?;
        let mut mean_g_xhat = cuda::output::<f32>(dev, spans.max(1), true)?;
        cuda::launch!(
            dev,
            "group_norm_span_means",
            cuda::elements(spans),
            &partial_d,
            &partial_dxhat,
            &gamma,
            &mut mean_g,
            &mut mean_g_xhat,
            &spans,
            &per_group,
            &c,
            &chunks.per_plane,
            &span_len
        );
        let mut out = cuda::output(dev, n + 2 * c, false)?;
        {
            let mut dx = out.slice_mut(..n);
            cuda::launch!(
                dev,
                "group_norm_dx",
                chunks.config()?,
                &x,
                &dy,
                &gamma,
                &beta,
                &mean,
                &rstd,
                &mean_g,
                &mean_g_xhat,
                &mut dx,
                &norm
            );
        }
        let batch = planes / c.max(1);
        {
            let mut affine_grad = out.slice_mut(n..);
            cuda::launch!(
                dev,
                "group_norm_affine_grad",
                cuda::elements(c),
                &partial_d,
                &partial_dxhat,
                &mut affine_grad,
                &batch,
                &c,
                &chunks.per_plane
            );
        }
        Ok((cuda::storage(out, dev), Shape::from(n + 2 * c)))
    }
}

/// Mean and 1/sqrt(var + eps) of every (sample, group) span of `x`, on the device.
#[cfg(feature = "cuda")]
fn cuda_moments(
    dev: &candle_core::cuda_backend::CudaDevice,
    x: &candle_core::cuda_backend::cudarc::driver::CudaView<f32>,
    sp: &Spans,
    eps: f64,
) -> Result<(
    candle_core::cuda_backend::cudarc::driver::CudaSlice<f32>,
    candle_core::cuda_backend::cudarc::driver::CudaSlice<f32>,
)> {
    use super::cuda;
    let span_len = sp.len();
    let spans = x.len() / span_len.max(1);
    let chunks = cuda::Chunks::new(spans, span_len);
    let mut partial_sum = chunks.partials(dev)?;
    let mut partial_squares = chunks.partials(dev)?;
    cuda::launch!(
        dev,
        "group_norm_partial_moments",
        chunks.config()?,
        x,
        &mut partial_sum,
        &mut partial_squares,
        &span_len,
        &chunks.per_plane,
        &cuda::Chunks::LEN
    );
    let mut mean = cuda::output(dev, spans.max(1), true)?;
    let mut rstd = cuda::output(dev, spans.max(1), true)?;
    cuda::launch!(
        dev,
        "group_norm_stats",
        cuda::elements(spans),
        &partial_sum,
        &partial_squares,
        &mut mean,
        &mut rstd,
        &spans,
        &chunks.per_plane,
        &span_len,
        &eps
    );
    Ok((mean, rstd))
}

/// Group norm of `x [n, c, ...]`, then optionally LeakyReLU with `slope`.
fn fused_norm(
    x: &Tensor,
    groups: usize,
    (gamma, beta): (&Tensor, &Tensor),
    eps: f64,
    slope: Option<f64>,
) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        GroupNorm {
            groups,
            eps,
            slope: slope.map(|s| s as f32),
        },
    )
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
    fused_norm(x, groups, (gamma, beta), eps, None)
}

/// Instance norm of `x [n, c, ...]` (group norm with one channel per group). Over a single voxel
/// x̂ is 0, so the result is `beta`, as the reference network relies on.
pub fn instance_norm3d(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    fused_norm(x, x.dim(1)?, (gamma, beta), eps, None)
}

/// `leaky_relu(instance_norm3d(x, gamma, beta, eps), slope)` as one op, forward and backward.
pub fn instance_norm3d_leaky_relu(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    slope: f64,
) -> Result<Tensor> {
    fused_norm(x, x.dim(1)?, (gamma, beta), eps, Some(slope))
}
