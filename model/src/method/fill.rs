//! The fill of missing modalities (method spec, section 2): a missing modality's feature is the
//! mean of the available modalities' features.

use candle_core::{bail, Result, Tensor};

/// Checks that `available` names at least one of `m` modalities.
pub fn check_available(available: &[bool], m: usize) -> Result<()> {
    if available.len() != m {
        bail!("{} availability flags for {m} modalities", available.len())
    }
    if !available.iter().any(|&a| a) {
        bail!("at least one modality must be available")
    }
    Ok(())
}

/// Replaces the features of missing modalities in `features [n, m, ...]` (modalities stacked on
/// axis 1) by the mean of the available ones; gradient flows through the mean, and available
/// features are returned unchanged. The fill is one product with an m × m mixing matrix, so no
/// modality is cut out of, or copied back into, the stack.
pub fn fill_missing(features: &Tensor, available: &[bool]) -> Result<Tensor> {
    let dims = features.dims();
    if dims.len() < 2 {
        bail!("features must be [n, m, ...], got {:?}", dims)
    }
    let (n, m) = (dims[0], dims[1]);
    check_available(available, m)?;
    let present = available.iter().filter(|&&a| a).count();
    if present == m {
        return Ok(features.clone());
    }
    let share = 1.0 / present as f32;
    let mut mixing = vec![0f32; m * m];
    for (row, &row_available) in available.iter().enumerate() {
        for (col, &col_available) in available.iter().enumerate() {
            mixing[row * m + col] = match (row_available, col_available) {
                (true, _) => f32::from(u8::from(row == col)),
                (false, true) => share,
                (false, false) => 0.0,
            };
        }
    }
    let mixing = Tensor::from_vec(mixing, (1, m, m), features.device())?
        .to_dtype(features.dtype())?
        .broadcast_as((n, m, m))?
        .contiguous()?;
    mixing.matmul(&features.reshape((n, m, ()))?)?.reshape(dims)
}
