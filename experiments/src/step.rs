//! One training step of the network (method spec, sections 2, 4 and 5): mask the missing
//! modalities, encode every modality, distil between the available ones, decode with mean fill,
//! Dice + BCE + λ·KD, backward, and an SGD step. Training and `metakd bench train` share it.

use anyhow::Result;
use candle_core::Tensor;
use metakd_model::losses::segmentation_loss;
use metakd_model::metakd::pairwise_kd_loss;
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

/// Runs one step on images `x [n, m, d, h, w]` and targets `y [n, 3, d, h, w]` with the
/// modalities in `available`, updating the network with learning rate `lr` unless the loss is not
/// finite (the caller decides what to do then).
pub fn training_step(
    model: &Model,
    sgd: &mut SgdNesterov,
    (x, y): (&Tensor, &Tensor),
    available: &[bool],
    t: &TrainConfig,
    lr: f64,
) -> Result<StepOutcome> {
    let m = available.len();
    let mask: Vec<f32> = available.iter().map(|&a| f32::from(u8::from(a))).collect();
    let x = x.broadcast_mul(&Tensor::from_vec(mask, (1, m, 1, 1, 1), x.device())?)?;
    let features = model.net.encode(&x)?;
    let kd = if t.kd {
        let logits_w = model.importance.logit_values()?;
        pairwise_kd_loss(
            &features.bottleneck,
            available,
            &logits_w,
            t.kd_distance,
            t.kd_pairs,
        )?
    } else {
        Tensor::new(0f32, x.device())?
    };
    let logits = model.net.decode(&features, available)?;
    let seg = segmentation_loss(&logits, y)?;
    let loss = (seg.total()? + (&kd * t.kd_weight)?)?;
    let loss_value = f64::from(loss.to_scalar::<f32>()?);
    if loss_value.is_finite() {
        sgd.step(&loss.backward()?, lr)?;
    }
    Ok(StepOutcome {
        loss: loss_value,
        dice: f64::from(seg.dice.to_scalar::<f32>()?),
        bce: f64::from(seg.bce.to_scalar::<f32>()?),
        kd: f64::from(kd.to_scalar::<f32>()?),
        logits: logits.detach(),
    })
}
