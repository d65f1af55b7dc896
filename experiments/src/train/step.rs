//! 3D segmentation as a MetaKD task ([`SegmentationTask`]: missing modalities zeroed before the
//! shared encoder, the fusing decoder, Dice + BCE) and one training step of it: the method's
//! training loss (`metakd_model::method`), backward, and an SGD step. Training and
//! `metakd bench train` share it.

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use metakd_model::losses::{segmentation_loss, DiceReduction, SegmentationLoss};
use metakd_model::method::{training_loss, MetaKdTask};
use metakd_model::nets::ModalityFeatures;
use metakd_model::ops::{autocast, profile};
use metakd_model::optim::SgdNesterov;

use crate::run::checkpoint::named_vars;
use crate::run::config::TrainConfig;
use crate::run::model::Model;

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

/// Sets the channels of the missing modalities of `x [n, m, d, h, w]` to zero.
pub fn mask_missing(x: &Tensor, available: &[bool]) -> Result<Tensor> {
    let mask: Vec<f32> = available.iter().map(|&a| f32::from(u8::from(a))).collect();
    let mask = Tensor::from_vec(mask, (1, available.len(), 1, 1, 1), x.device())?;
    Ok(x.broadcast_mul(&mask)?)
}

/// 3D segmentation as a MetaKD task: images `[n, m, d, h, w]` whose missing modalities are
/// zeroed before the shared encoder, the fusing decoder as head, Dice + BCE as loss.
pub struct SegmentationTask<'a> {
    model: &'a Model,
    dice: DiceReduction,
}

impl<'a> SegmentationTask<'a> {
    /// The task of `model` with the Dice reduction of `t`.
    pub fn new(model: &'a Model, t: &TrainConfig) -> Self {
        Self {
            model,
            dice: t.dice,
        }
    }
}

impl MetaKdTask for SegmentationTask<'_> {
    type Inputs = Tensor;
    type Targets = Tensor;
    type Encoding = ModalityFeatures;
    type Loss = SegmentationLoss;

    fn encode(&self, x: &Tensor, available: &[bool]) -> candle_core::Result<ModalityFeatures> {
        let masked = mask_missing(x, available).map_err(candle_core::Error::wrap)?;
        self.model.net.encode(&masked)
    }

    fn detach(&self, encoding: &ModalityFeatures) -> ModalityFeatures {
        encoding.detach()
    }

    fn distilled_features(&self, encoding: &ModalityFeatures) -> candle_core::Result<Vec<Tensor>> {
        encoding.modality_bottlenecks()
    }

    fn head(&self, encoding: &ModalityFeatures, available: &[bool]) -> candle_core::Result<Tensor> {
        self.model.net.decode(encoding, available)
    }

    fn weighted_head(
        &self,
        encoding: &ModalityFeatures,
        omega: &Tensor,
    ) -> candle_core::Result<Tensor> {
        self.model.net.decode_weighted(encoding, omega)
    }

    fn loss(&self, logits: &Tensor, y: &Tensor) -> candle_core::Result<SegmentationLoss> {
        segmentation_loss(logits, y, self.dice)
    }

    fn parameters(&self) -> Vec<Var> {
        named_vars(self.model).into_iter().map(|(_, v)| v).collect()
    }
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
    let task = SegmentationTask::new(model, t);
    let loss = phase(device, "forward and losses", || {
        Ok(training_loss(
            &task,
            &model.importance,
            batch,
            available,
            &t.kd_settings(),
        )?)
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
        logits: loss.output.detach(),
    })
}
