//! One training step of the network (method spec, sections 2, 4 and 5): mask the missing
//! modalities, encode every modality, distil between the available ones, decode with mean fill,
//! Dice + BCE + λ·KD, backward, and an SGD step. Training and `metakd bench train` share it.

use anyhow::Result;
use candle_core::{Device, Tensor};
use metakd_model::losses::{segmentation_loss, SegmentationLoss};
use metakd_model::metakd::pairwise_kd_loss;
use metakd_model::ops::{autocast, profile};
use metakd_model::optim::SgdNesterov;

use crate::checkpoint::Model;
use crate::config::TrainConfig;

/// The loss parts of one step, and the logits it computed.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// Total loss.
    pub loss: f64,
    /// Soft Dice loss.
    pub dice: f64,
    /// Binary cross-entropy.
    pub bce: f64,
    /// Distillation loss (0 when `train.kd` is off).
    pub kd: f64,
    /// The network's output before the update, `[n, 3, d, h, w]`.
    pub logits: Tensor,
}

/// The training loss of one batch and its parts.
pub struct TrainingLoss {
    /// Task loss + λ·KD, differentiable with respect to the network.
    pub total: Tensor,
    /// Dice and BCE.
    pub task: SegmentationLoss,
    /// Distillation loss (0 when `train.kd` is off).
    pub kd: Tensor,
    /// The network's output.
    pub logits: Tensor,
}

/// Sets the channels of the missing modalities of `x [n, m, d, h, w]` to zero.
pub fn mask_missing(x: &Tensor, available: &[bool]) -> Result<Tensor> {
    let mask: Vec<f32> = available.iter().map(|&a| f32::from(u8::from(a))).collect();
    let mask = Tensor::from_vec(mask, (1, available.len(), 1, 1, 1), x.device())?;
    Ok(x.broadcast_mul(&mask)?)
}

/// The training loss of images `x [n, m, d, h, w]` and targets `y [n, 3, d, h, w]` with the
/// modalities in `available` (the missing ones are zeroed first).
pub fn training_loss(
    model: &Model,
    (x, y): (&Tensor, &Tensor),
    available: &[bool],
    t: &TrainConfig,
) -> Result<TrainingLoss> {
    let features = model.net.encode(&mask_missing(x, available)?)?;
    let kd = if t.kd {
        let logits_w = model.importance.logit_values()?;
        pairwise_kd_loss(
            &features.modality_bottlenecks()?,
            available,
            &logits_w,
            t.kd_distance,
            t.kd_pairs,
        )?
    } else {
        Tensor::new(0f32, x.device())?
    };
    let logits = model.net.decode(&features, available)?;
    let task = segmentation_loss(&logits, y, t.dice)?;
    let total = (task.total()? + (&kd * t.kd_weight)?)?;
    Ok(TrainingLoss {
        total,
        task,
        kd,
        logits,
    })
}

/// Runs `f`; while a [`profile`] is being taken, waits for `device` before and after it and
/// records the time between as phase `name`.
fn phase<T>(device: &Device, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let (out, elapsed) = profile::measure(|| Ok(device.synchronize()?), f)?;
    if let Some(elapsed) = elapsed {
        profile::record_phase(name, elapsed);
    }
    Ok(out)
}

/// Runs one step on images `x [n, m, d, h, w]` and targets `y [n, 3, d, h, w]` with the
/// modalities in `available`, updating the network with learning rate `lr` unless the loss is not
/// finite (the caller decides what to do then). The convolutions run in `train.precision`.
pub fn training_step(
    model: &Model,
    sgd: &mut SgdNesterov,
    batch: (&Tensor, &Tensor),
    available: &[bool],
    t: &TrainConfig,
    lr: f64,
) -> Result<StepOutcome> {
    let device = batch.0.device();
    let _precision = autocast(t.precision);
    let loss = phase(device, "forward and losses", || {
        training_loss(model, batch, available, t)
    })?;
    let loss_value = f64::from(loss.total.to_scalar::<f32>()?);
    if loss_value.is_finite() {
        let grads = phase(device, "backward", || {
            Ok(loss.total.backward_releasing()?)
        })?;
        phase(device, "optimiser", || Ok(sgd.step(&grads, lr)?))?;
    }
    Ok(StepOutcome {
        loss: loss_value,
        dice: f64::from(loss.task.dice.to_scalar::<f32>()?),
        bce: f64::from(loss.task.bce.to_scalar::<f32>()?),
        kd: f64::from(loss.kd.to_scalar::<f32>()?),
        logits: loss.logits.detach(),
    })
}
