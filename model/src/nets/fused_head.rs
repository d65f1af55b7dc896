//! A linear classification head over the concatenated per-modality embeddings of a classifier,
//! with the fill of missing modalities (training and evaluation) or the importance scaling of
//! the meta step.

use candle_core::{Module, Result, Tensor};

use crate::method::fill_missing;

/// Class logits of per-modality embeddings `[n, m, e]` through a linear `head` over their
/// concatenation, missing modalities taking the mean of the available ones' embeddings.
pub fn fused_logits(
    head: &candle_nn::Linear,
    embeddings: &Tensor,
    available: &[bool],
) -> Result<Tensor> {
    head.forward(&fill_missing(embeddings, available)?.flatten_from(1)?)
}

/// Class logits with every embedding scaled by its importance `omega [m]` (the meta step's
/// forward pass, every modality present).
pub fn importance_weighted_logits(
    head: &candle_nn::Linear,
    embeddings: &Tensor,
    omega: &Tensor,
) -> Result<Tensor> {
    let weighted = embeddings.broadcast_mul(&omega.reshape((1, omega.dim(0)?, 1))?)?;
    head.forward(&weighted.flatten_from(1)?)
}
