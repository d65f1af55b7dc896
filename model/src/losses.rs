//! Task losses: soft Dice plus BCE for multi-label region segmentation, cross-entropy for
//! classification.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::method::TaskLoss;
use crate::ops::channel_sums;

/// How the soft Dice loss gathers its sums (method spec, section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DiceReduction {
    /// The reference's `BinaryDiceLoss`: per sample and channel 1 − 2Σpt / (Σp + Σt + 1), then the
    /// mean over samples and channels. A channel with no foreground in a sample gives loss 1 and
    /// no gradient.
    #[default]
    PerSample,
    /// Sums over the whole batch per channel, smoothing 1 in numerator and denominator:
    /// 1 − mean_c (2Σpt + 1) / (Σp + Σt + 1).
    Pooled,
}

/// The parts of the segmentation loss.
#[derive(Debug, Clone)]
pub struct SegmentationLoss {
    /// Soft Dice loss, averaged over channels.
    pub dice: Tensor,
    /// Binary cross-entropy with logits, mean over voxels, summed over channels.
    pub bce: Tensor,
}

impl TaskLoss for SegmentationLoss {
    /// Dice + BCE.
    fn total(&self) -> Result<Tensor> {
        &self.dice + &self.bce
    }
}

/// Soft Dice loss of `logits [n, c, ...]` on sigmoid probabilities against binary
/// `target [n, c, ...]`, reduced as `reduction` says.
pub fn soft_dice_loss(
    logits: &Tensor,
    target: &Tensor,
    reduction: DiceReduction,
) -> Result<Tensor> {
    let p = candle_nn::ops::sigmoid(logits)?;
    match reduction {
        DiceReduction::Pooled => {
            let intersection = channel_sums(&(&p * target)?)?;
            let denominator = ((channel_sums(&p)? + channel_sums(target)?)? + 1.0)?;
            let dice = ((intersection * 2.0)? + 1.0)?.div(&denominator)?;
            1.0 - dice.mean_all()?
        }
        DiceReduction::PerSample => {
            // Each (sample, channel) pair as one "channel" of a batch of one.
            let (n, c) = (p.dim(0)?, p.dim(1)?);
            let per_pair = |t: &Tensor| -> Result<Tensor> {
                channel_sums(&t.contiguous()?.reshape((1, n * c, ()))?)
            };
            let intersection = per_pair(&(&p * target)?)?;
            let denominator = ((per_pair(&p)? + per_pair(target)?)? + 1.0)?;
            let dice = (intersection * 2.0)?.div(&denominator)?;
            1.0 - dice.mean_all()?
        }
    }
}

/// BCE with logits, numerically stable: mean over batch and voxels of each channel, summed over
/// channels (as the reference does).
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let c = logits.dim(1)? as f64;
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let elementwise = ((logits.relu()? - (logits * target)?)? + softplus)?;
    channel_sums(&elementwise)?.sum_all()? * (c / elementwise.elem_count().max(1) as f64)
}

/// Soft Dice (reduced as `dice`) + BCE of `logits [n, c, ...]` against binary
/// `target [n, c, ...]`.
pub fn segmentation_loss(
    logits: &Tensor,
    target: &Tensor,
    dice: DiceReduction,
) -> Result<SegmentationLoss> {
    Ok(SegmentationLoss {
        dice: soft_dice_loss(logits, target, dice)?,
        bce: bce_with_logits(logits, target)?,
    })
}
