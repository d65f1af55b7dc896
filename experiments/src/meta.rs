//! Meta phases that learn the importance logits w (method spec, section 6).
//!
//! - `direct` (the reference's first-order rule): a forward pass of a meta-validation crop with
//!   each bottleneck feature scaled by its importance, f_m ← ω_m·f_m, and no mean fill; the task
//!   loss's gradient with respect to w drives an Adam step on w. In stage 1 every modality is
//!   present; in stage 2 (by default, [`MetaModalities::Random`]) each meta sample draws its own
//!   subset, its missing inputs are zeroed and their features are the zero image's response.
//! - `lookahead` (the bilevel reading): one virtual SGD step θ' = θ − α∇θ L_train(θ, w) on a
//!   training crop, then the gradient of L_val(θ') with respect to w. Only the distillation term
//!   of L_train depends on w, through the ratios r_ij = exp(w_i − w_j), so with v = ∇θ' L_val(θ')
//!   and d_ij the pair distances (teachers held constant, as in ∇θ L_train):
//!   ∂L_val(θ')/∂w_k = −α λ · v · ∇θ Σ_ij (∂r_ij/∂w_k) d_ij(θ),
//!   one backward pass per available modality k — exact, with no finite differences.

use anyhow::Result;
use candle_core::{Tensor, Var};
use metakd_model::losses::segmentation_loss;
use metakd_model::metakd::kd_pair_terms;
use metakd_model::optim::Adam;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Model;
use crate::config::TrainConfig;
use crate::resume::named_vars;
use crate::step::{mask_missing, training_loss};

/// How a meta phase computes the gradient of w.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MetaRule {
    /// Task loss of the importance-weighted forward pass (the reference).
    #[default]
    Direct,
    /// Gradient through one virtual SGD step of the network.
    Lookahead,
}

/// Which modalities the meta passes of stage 2 see (stage 1's always see all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MetaModalities {
    /// Each meta sample draws its own subset (k uniform in 1..M, then k modalities), as the
    /// reference's `train.py` in its random-missing mode.
    #[default]
    Random,
    /// Every modality, as in stage 1.
    All,
}

/// Images `[n, m, d, h, w]` and targets `[n, 3, d, h, w]`.
pub type Batch = (Tensor, Tensor);

/// One `direct` meta step on a meta-validation batch with the modalities `available` (the
/// missing ones are zeroed; every modality's own feature, scaled by ω, is decoded): Adam on w
/// only. Returns the task loss before the step.
pub fn direct_step(
    model: &Model,
    adam: &mut Adam,
    (x, y): &Batch,
    available: &[bool],
    t: &TrainConfig,
) -> Result<f64> {
    let features = model.net.encode(&mask_missing(x, available)?)?.detach();
    let omega = model.importance.omega()?;
    let logits = model.net.decode_weighted(&features, &omega)?;
    let loss = segmentation_loss(&logits, y, t.dice)?.total()?;
    let value = f64::from(loss.to_scalar::<f32>()?);
    adam.step(&loss.backward_releasing()?)?;
    Ok(value)
}

/// One `lookahead` meta step: the gradient of [`lookahead_gradient`] drives Adam on w.
pub fn lookahead_step(
    model: &Model,
    adam: &mut Adam,
    train: (&Batch, &[bool]),
    val: &Batch,
    t: &TrainConfig,
    alpha: f64,
) -> Result<()> {
    let grad = lookahead_gradient(model, train, val, t, alpha)?;
    // A linear surrogate whose gradient with respect to w is `grad`.
    let surrogate = (model.importance.logits().as_tensor() * &grad)?.sum_all()?;
    adam.step(&surrogate.backward()?)?;
    Ok(())
}

/// Snapshot of the network's parameters, restored on drop (so an error cannot leave the network
/// at a virtual point).
struct ParameterSnapshot {
    vars: Vec<Var>,
    values: Vec<Tensor>,
}

impl ParameterSnapshot {
    fn take(model: &Model) -> Result<Self> {
        let vars: Vec<Var> = named_vars(model).into_iter().map(|(_, v)| v).collect();
        let values = vars
            .iter()
            .map(|v| v.as_tensor().copy())
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { vars, values })
    }

    /// The gradient of `loss` with respect to each parameter (`None` where it has none), cut off
    /// from the graph.
    fn gradients(&self, loss: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let grads = loss.backward_releasing()?;
        Ok(self
            .vars
            .iter()
            .map(|v| grads.get(v).map(Tensor::detach))
            .collect())
    }

    /// Sets every parameter back to its saved value.
    fn restore(&self) -> Result<()> {
        for (var, value) in self.vars.iter().zip(&self.values) {
            var.set(value)?;
        }
        Ok(())
    }

    /// Sets every parameter to its saved value plus `scale` × its direction (absent: 0).
    fn move_along(&self, direction: &[Option<Tensor>], scale: f64) -> Result<()> {
        for ((var, value), d) in self.vars.iter().zip(&self.values).zip(direction) {
            match d {
                Some(d) => var.set(&(value + (d * scale)?)?)?,
                None => var.set(value)?,
            }
        }
        Ok(())
    }
}

impl Drop for ParameterSnapshot {
    fn drop(&mut self) {
        // Same shapes and dtypes as when taken: cannot fail.
        let _ = self.restore();
    }
}

/// The `lookahead` gradient of w (see the module documentation) for a training batch with the
/// modalities `available`, a meta-validation batch (all modalities) and virtual step size
/// `alpha`. The network's parameters are unchanged afterwards.
pub fn lookahead_gradient(
    model: &Model,
    ((x_train, y_train), available): (&Batch, &[bool]),
    (x_val, y_val): &Batch,
    t: &TrainConfig,
    alpha: f64,
) -> Result<Tensor> {
    let m = available.len();
    let w = model.importance.logit_values()?;
    let device = x_train.device();
    let snapshot = ParameterSnapshot::take(model)?;

    // Virtual step θ' = θ − α ∇θ L_train(θ, w).
    let loss = training_loss(model, (x_train, y_train), available, t)?.total;
    let train_grad = snapshot.gradients(&loss)?;
    snapshot.move_along(&train_grad, -alpha)?;

    // v = ∇θ' L_val(θ').
    let val_features = model.net.encode(x_val)?;
    let val_logits = model.net.decode(&val_features, &vec![true; m])?;
    let v = snapshot.gradients(&segmentation_loss(&val_logits, y_val, t.dice)?.total()?)?;
    snapshot.restore()?;

    // v · ∇θ Σ_ij (∂r_ij/∂w_k) d_ij at θ, for each available k (missing modalities have no pairs).
    let mut grad = vec![0.0f64; m];
    if t.kd {
        let features = model.net.encode(&mask_missing(x_train, available)?)?;
        let terms = kd_pair_terms(
            &features.modality_bottlenecks()?,
            available,
            &w,
            t.kd_distance,
            t.kd_pairs,
        )?;
        for (k, g) in grad.iter_mut().enumerate().filter(|(k, _)| available[*k]) {
            let mut weighted = Tensor::zeros((), candle_core::DType::F32, device)?;
            for term in &terms {
                let sign =
                    f64::from(u8::from(term.teacher == k)) - f64::from(u8::from(term.student == k));
                if sign != 0.0 {
                    let ratio = f64::from(w[term.teacher] - w[term.student]).exp();
                    weighted = (weighted + (&term.distance * (sign * ratio))?)?;
                }
            }
            let grads = weighted.backward()?;
            let mut dot = 0.0f64;
            for (var, v) in snapshot.vars.iter().zip(&v) {
                if let (Some(dv), Some(v)) = (grads.get(var), v) {
                    dot += f64::from((dv * v)?.sum_all()?.to_scalar::<f32>()?);
                }
            }
            *g = -alpha * t.kd_weight * dot;
        }
    }
    drop(snapshot);
    let grad: Vec<f32> = grad.into_iter().map(|g| g as f32).collect();
    Ok(Tensor::from_vec(grad, m, device)?)
}
