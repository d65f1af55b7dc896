//! Task losses: soft Dice plus BCE for multi-label region segmentation, cross-entropy for
//! classification.

use candle_core::{Result, Tensor};

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
    let c = logits.dim(1)?;
    let per_channel = |t: &Tensor| -> Result<Tensor> {
        t.transpose(0, 1)?.contiguous()?.reshape((c, ()))?.sum(1)
    };
    let p = candle_nn::ops::sigmoid(logits)?;
    let intersection = per_channel(&(&p * target)?)?;
    let denominator = ((per_channel(&p)? + per_channel(target)?)? + 1.0)?;
    let dice = ((intersection * 2.0)? + 1.0)?.div(&denominator)?;
    1.0 - dice.mean_all()?
}

/// BCE with logits, numerically stable: mean over batch and voxels of each channel, summed over
/// channels (as the reference does).
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let c = logits.dim(1)? as f64;
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let elementwise = ((logits.relu()? - (logits * target)?)? + softplus)?;
    elementwise.mean_all()? * c
}

/// Soft Dice + BCE of `logits [n, c, ...]` against binary `target [n, c, ...]`.
pub fn segmentation_loss(logits: &Tensor, target: &Tensor) -> Result<SegmentationLoss> {
    Ok(SegmentationLoss {
        dice: soft_dice_loss(logits, target)?,
        bce: bce_with_logits(logits, target)?,
    })
}
