//! The training loss of one batch (method spec, sections 2, 4 and 5): encode every modality,
//! distil between the available ones, the head with mean fill, task loss + λ·KD.

use candle_core::{Result, Tensor};

use super::importance::ImportanceWeights;
use super::kd::{pairwise_kd_loss, KdSettings};
use super::task::{MetaKdTask, TaskLoss};

/// The training loss of one batch and its parts.
pub struct TrainingLoss<L> {
    /// Task loss + λ·KD, differentiable with respect to the network.
    pub total: Tensor,
    /// The task loss.
    pub task: L,
    /// The distillation loss (0 when it is off or a single modality is available).
    pub kd: Tensor,
    /// The task's output.
    pub output: Tensor,
}

/// The training loss of `task` on a batch with the modalities in `available`: the distillation
/// term (weighted by the ratios of `importance`, held constant) joins the task loss when `kd`
/// is enabled and at least two modalities are available.
pub fn training_loss<T: MetaKdTask>(
    task: &T,
    importance: &ImportanceWeights,
    (inputs, targets): (&T::Inputs, &T::Targets),
    available: &[bool],
    kd: &KdSettings,
) -> Result<TrainingLoss<T::Loss>> {
    let encoding = task.encode(inputs, available)?;
    let distils = kd.enabled && available.iter().filter(|&&a| a).count() > 1;
    let kd_loss = if distils {
        Some(pairwise_kd_loss(
            &task.distilled_features(&encoding)?,
            available,
            &importance.logit_values()?,
            kd.distance,
            kd.pairs,
        )?)
    } else {
        None
    };
    let output = task.head(&encoding, available)?;
    let task_loss = task.loss(&output, targets)?;
    let (total, kd_loss) = match kd_loss {
        Some(kd_loss) => ((task_loss.total()? + (&kd_loss * kd.weight)?)?, kd_loss),
        None => (task_loss.total()?, Tensor::new(0f32, output.device())?),
    };
    Ok(TrainingLoss {
        total,
        task: task_loss,
        kd: kd_loss,
        output,
    })
}
