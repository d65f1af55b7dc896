//! Task losses: soft Dice plus BCE for multi-label region segmentation, cross-entropy for
//! classification.

use candle_core::{Result, Tensor};

use crate::ops::channel_sums;

/// The parts of the segmentation loss.
#[derive(Debug, Clone)]
pub struct SegmentationLoss {
    /// Soft Dice loss, averaged over channels.
    pub dice: Tensor,
    /// Binary cross-entropy with logits, mean over voxels, summed over channels.
    pub bce: Tensor,
}

impl SegmentationLoss {
    /// Dice + BCE.
    pub fn total(&self) -> Result<Tensor> {
        &self.dice + &self.bce
    }
}

/// Soft Dice loss on sigmoid probabilities with smoothing 1, computed per channel over the batch
/// and all voxels, then averaged over channels: 1 − mean_c (2Σpt + 1) / (Σp + Σt + 1).
pub fn soft_dice_loss(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let p = candle_nn::ops::sigmoid(logits)?;
    let intersection = channel_sums(&(&p * target)?)?;
    let denominator = ((channel_sums(&p)? + channel_sums(target)?)? + 1.0)?;
    let dice = ((intersection * 2.0)? + 1.0)?.div(&denominator)?;
    1.0 - dice.mean_all()?
}

/// BCE with logits, numerically stable: mean over batch and voxels of each channel, summed over
/// channels (as the reference does).
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let c = logits.dim(1)? as f64;
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let elementwise = ((logits.relu()? - (logits * target)?)? + softplus)?;
    channel_sums(&elementwise)?.sum_all()? * (c / elementwise.elem_count().max(1) as f64)
}

/// Soft Dice + BCE of `logits [n, c, ...]` against binary `target [n, c, ...]`.
pub fn segmentation_loss(logits: &Tensor, target: &Tensor) -> Result<SegmentationLoss> {
    Ok(SegmentationLoss {
        dice: soft_dice_loss(logits, target)?,
        bce: bce_with_logits(logits, target)?,
    })
}
