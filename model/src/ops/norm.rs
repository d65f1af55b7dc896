//! Normalisations of 3D feature maps and of convolution weights.

use candle_core::{bail, Result, Tensor, D};

/// Instance norm of `x [n, c, d, h, w]` over each sample's and channel's voxels (biased variance,
/// as PyTorch), then the per-channel affine `gamma · x̂ + beta`. Over a single voxel x̂ is 0, so the
/// result is `beta`.
pub fn instance_norm3d(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let (n, c, d, h, w) = x.dims5()?;
    let flat = x.reshape((n, c, d * h * w))?;
    let mean = flat.mean_keepdim(D::Minus1)?;
    let centred = flat.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    let gamma = gamma.reshape((1, c, 1))?;
    let beta = beta.reshape((1, c, 1))?;
    normed
        .broadcast_mul(&gamma)?
        .broadcast_add(&beta)?
        .reshape((n, c, d, h, w))
}

/// Weight standardisation of a convolution weight `[co, ...]`: per output channel, subtract the
/// mean of its weights and divide by `sqrt(unbiased variance + eps)`.
pub fn standardize_weight(w: &Tensor, eps: f64) -> Result<Tensor> {
    let dims = w.dims();
    let co = dims[0];
    let fan: usize = dims[1..].iter().product();
    if fan < 2 {
        bail!("weight standardisation needs at least two weights per output channel, got {dims:?}")
    }
    let flat = w.reshape((co, fan))?;
    let centred = flat.broadcast_sub(&flat.mean_keepdim(1)?)?;
    let var = (centred.sqr()?.sum_keepdim(1)? / (fan - 1) as f64)?;
    centred.broadcast_div(&(var + eps)?.sqrt()?)?.reshape(dims)
}
