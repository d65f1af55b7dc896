//! Weight standardisation of convolution weights.

use candle_core::{bail, Result, Tensor};

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
