//! Seeded parameter initialisation, as the reference initialises its networks: Kaiming normal
//! over the fan-out for convolution weights, 1 for norm weights, 0 for biases.
//!
//! Candle's CPU random generator cannot be seeded, so runs that must be repeatable overwrite the
//! parameters created through a `VarMap` with this function.

use candle_core::{Result, Tensor};
use candle_nn::VarMap;
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Re-draws every parameter of `varmap` from a generator seeded with `seed`, visiting the
/// parameters in name order. Weights with 4 or 5 dims `[a, b, k, …]` (convolutions
/// `[co, ci, …]` and transposed convolutions `[ci, co, …]`, as PyTorch computes their fan-out
/// from dim 0) get N(0, 2 / (a·∏k)); linear weights `[out, in]` get U(±1/√in), PyTorch's
/// default; parameters named `*.bias` get 0, other 1-D parameters 1.
pub fn reinitialize_seeded(varmap: &VarMap, seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = varmap
        .data()
        .lock()
        .expect("the var map lock is not poisoned");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let value = if dims.len() >= 4 {
            let fan_out: usize = dims[0] * dims[2..].iter().product::<usize>();
            let normal = Normal::new(0.0f32, (2.0 / fan_out as f32).sqrt())
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let values: Vec<f32> = (0..var.elem_count())
                .map(|_| normal.sample(&mut rng))
                .collect();
            Tensor::from_vec(values, dims, var.device())?
        } else if dims.len() == 2 {
            // A linear layer `[out, in]`: PyTorch's default, U(±1/√in).
            let bound = 1.0 / (dims[1] as f32).sqrt();
            let values: Vec<f32> = (0..var.elem_count())
                .map(|_| rand::Rng::random_range(&mut rng, -bound..bound))
                .collect();
            Tensor::from_vec(values, dims, var.device())?
        } else if name.ends_with("bias") {
            var.zeros_like()?
        } else {
            var.ones_like()?
        };
        var.set(&value)?;
    }
    Ok(())
}
