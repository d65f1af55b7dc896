//! Weight standardisation of convolution weights as one fused op: two passes over the weights
//! forward and two backward, instead of a chain of Candle reductions and broadcasts.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::elementwise::{
    assume_written, contiguous_f32, map_into, output_buffer, paired_sums, sum_and_squares,
    zip_map_into,
};

/// Mean and `sqrt(unbiased variance + eps)` of one output channel's weights.
fn row_moments(row: &[f32], eps: f64) -> (f64, f64) {
    let n = row.len() as f64;
    let (sum, squares) = sum_and_squares(row);
    let mean = sum / n;
    let var = ((squares - n * mean * mean) / (n - 1.0)).max(0.0);
    (mean, (var + eps).sqrt())
}

/// `w [co, fan]` → `(w − mean) / sqrt(var + eps)` per row.
struct StandardizeWeight {
    fan: usize,
    eps: f64,
}

/// Refuses a gradient of another length than the weights.
fn check_gradients(op: &str, gradients: usize, weights: usize) -> Result<()> {
    if gradients != weights {
        bail!("{op}: {gradients} gradients for {weights} weights")
    }
    Ok(())
}

/// (w, dŵ) → dw.
struct StandardizeWeightGrad {
    fan: usize,
    eps: f64,
}

impl CustomOp1 for StandardizeWeight {
    fn name(&self) -> &'static str {
        "standardize-weight"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = contiguous_f32(s, l, self.name())?;
        let mut out = output_buffer(w.len());
        out.par_chunks_mut(self.fan)
            .zip(w.par_chunks(self.fan))
            .for_each(|(out, row)| {
                let (mean, std) = row_moments(row, self.eps);
                let (mean, inv_std) = (mean as f32, (1.0 / std) as f32);
                map_into(out, row, |v| (v - mean) * inv_std);
            });
        // SAFETY: the rows of `out` match the weight's one for one, and each map wrote its row.
        Ok((
            CpuStorage::F32(unsafe { assume_written(out) }),
            l.shape().clone(),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        use candle_core::backend::BackendStorage;
        let (dev, w) = (s.device(), cuda::view(s, l, self.name())?);
        let mut out = cuda::output(dev, w.len(), false)?;
        cuda::launch!(
            dev,
            "standardize_weight",
            cuda::rows(w.len() / self.fan),
            &w,
            &mut out,
            &self.fan,
            &self.eps
        );
        Ok((cuda::storage(out, dev), l.shape().clone()))
    }

    fn bwd(&self, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = StandardizeWeightGrad {
            fan: self.fan,
            eps: self.eps,
        };
        Ok(Some(
            w.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &op)?,
        ))
    }
}

impl CustomOp2 for StandardizeWeightGrad {
    fn name(&self) -> &'static str {
        "standardize-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let w = contiguous_f32(s1, l1, self.name())?;
        let dy = contiguous_f32(s2, l2, self.name())?;
        check_gradients(self.name(), dy.len(), w.len())?;
        let mut dw = output_buffer(w.len());
        let n = self.fan as f64;
        dw.par_chunks_mut(self.fan)
            .zip(w.par_chunks(self.fan).zip(dy.par_chunks(self.fan)))
            .for_each(|(dw, (row, dy))| {
                // With c = w − mean and s = sqrt(var + eps):
                // dw = (dy − mean(dy)) / s − c · Σ(dy·c) / ((n − 1)·s³).
                let (mean, std) = row_moments(row, self.eps);
                // Σ dy and Σ dy·w of the channel.
                let (dy_sum, dy_w) = paired_sums(row, dy, |w, g| (g, g * w));
                let dy_c = dy_w - mean * dy_sum;
                let dy_mean = (dy_sum / n) as f32;
                let inv_std = (1.0 / std) as f32;
                let c_factor = (dy_c / ((n - 1.0) * std.powi(3))) as f32;
                let mean = mean as f32;
                zip_map_into(dw, row, dy, |v, g| {
                    (g - dy_mean) * inv_std - (v - mean) * c_factor
                });
            });
        // SAFETY: the rows of `dw` match the weight's one for one, and each map wrote its row.
        Ok((
            CpuStorage::F32(unsafe { assume_written(dw) }),
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
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        use candle_core::backend::BackendStorage;
        let dev = s1.device();
        let (w, dy) = (
            cuda::view(s1, l1, self.name())?,
            cuda::view(s2, l2, self.name())?,
        );
        check_gradients(self.name(), dy.len(), w.len())?;
        let mut dw = cuda::output(dev, w.len(), false)?;
        cuda::launch!(
            dev,
            "standardize_weight_grad",
            cuda::rows(w.len() / self.fan),
            &w,
            &dy,
            &mut dw,
            &self.fan,
            &self.eps
        );
        Ok((cuda::storage(dw, dev), l1.shape().clone()))
    }
}

/// Weight standardisation of a convolution weight `[co, ...]`: per output channel, subtract the
/// mean of its weights and divide by `sqrt(unbiased variance + eps)`.
pub fn standardize_weight(w: &Tensor, eps: f64) -> Result<Tensor> {
    let dims = w.dims();
    let fan: usize = dims[1..].iter().product();
    if fan < 2 {
        bail!("weight standardisation needs at least two weights per output channel, got {dims:?}")
    }
    w.contiguous()?.apply_op1(StandardizeWeight { fan, eps })
}
