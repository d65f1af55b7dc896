//! Meta steps that learn the importance logits w (method spec, section 6).
//!
//! - `direct` (the reference's first-order rule): a forward pass of a meta-validation batch with
//!   each modality's feature scaled by its importance, f_m ← ω_m·f_m, and no mean fill; the task
//!   loss's gradient with respect to w drives an Adam step on w. In stage 1 every modality is
//!   present; in stage 2 (by default, [`MetaModalities::Random`]) each meta sample draws its own
//!   subset, its missing inputs are treated as the task's encoder treats them.
//! - `lookahead` (the bilevel reading): one virtual SGD step θ' = θ − α∇θ L_train(θ, w) on a
//!   training batch, then the gradient of L_val(θ') with respect to w. Only the distillation term
//!   of L_train depends on w, through the ratios r_ij = exp(w_i − w_j), so with v = ∇θ' L_val(θ')
//!   and d_ij the pair distances (teachers held constant, as in ∇θ L_train):
//!   ∂L_val(θ')/∂w_k = −α λ · v · ∇θ Σ_ij (∂r_ij/∂w_k) d_ij(θ),
//!   one backward pass per available modality k — exact, with no finite differences.

use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::importance::ImportanceWeights;
use super::kd::{kd_pair_terms, KdSettings};
use super::step::training_loss;
use super::task::{MetaKdTask, TaskLoss};
use crate::optim::Adam;

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

/// One `direct` meta step of `task` on a meta-validation batch with the modalities `available`:
/// the detached encoding, every modality's feature scaled by ω, the task loss, and Adam on w
/// only. Returns the task loss before the step.
pub fn direct_meta_step<T: MetaKdTask>(
    task: &T,
    importance: &ImportanceWeights,
    adam: &mut Adam,
    (inputs, targets): (&T::Inputs, &T::Targets),
    available: &[bool],
) -> Result<f64> {
    let encoding = task.detach(&task.encode(inputs, available)?);
    let output = task.weighted_head(&encoding, &importance.omega()?)?;
    let loss = task.loss(&output, targets)?.total()?;
    let value = f64::from(loss.to_scalar::<f32>()?);
    adam.step(&loss.backward_releasing()?)?;
    Ok(value)
}

/// One `lookahead` meta step: the gradient of [`lookahead_gradient`] drives Adam on w.
#[allow(clippy::type_complexity)]
pub fn lookahead_step<T: MetaKdTask>(
    task: &T,
    importance: &ImportanceWeights,
    adam: &mut Adam,
    train: ((&T::Inputs, &T::Targets), &[bool]),
    val: (&T::Inputs, &T::Targets),
    kd: &KdSettings,
    alpha: f64,
) -> Result<()> {
    let grad = lookahead_gradient(task, importance, train, val, kd, alpha)?;
    // A linear surrogate whose gradient with respect to w is `grad`.
    let surrogate = (importance.logits().as_tensor() * &grad)?.sum_all()?;
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
    fn take(vars: Vec<Var>) -> Result<Self> {
        let values = vars
            .iter()
            .map(|v| v.as_tensor().copy())
            .collect::<Result<_>>()?;
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
#[allow(clippy::type_complexity)]
pub fn lookahead_gradient<T: MetaKdTask>(
    task: &T,
    importance: &ImportanceWeights,
    ((train_inputs, train_targets), available): ((&T::Inputs, &T::Targets), &[bool]),
    (val_inputs, val_targets): (&T::Inputs, &T::Targets),
    kd: &KdSettings,
    alpha: f64,
) -> Result<Tensor> {
    let m = available.len();
    let w = importance.logit_values()?;
    let device = importance.logits().device().clone();
    let snapshot = ParameterSnapshot::take(task.parameters())?;

    // Virtual step θ' = θ − α ∇θ L_train(θ, w).
    let loss = training_loss(
        task,
        importance,
        (train_inputs, train_targets),
        available,
        kd,
    )?;
    let train_grad = snapshot.gradients(&loss.total)?;
    snapshot.move_along(&train_grad, -alpha)?;

    // v = ∇θ' L_val(θ').
    let all = vec![true; m];
    let val_output = task.head(&task.encode(val_inputs, &all)?, &all)?;
    let v = snapshot.gradients(&task.loss(&val_output, val_targets)?.total()?)?;
    snapshot.restore()?;

    // v · ∇θ Σ_ij (∂r_ij/∂w_k) d_ij at θ, for each available k (missing modalities have no pairs).
    let mut grad = vec![0.0f64; m];
    if kd.enabled {
        let encoding = task.encode(train_inputs, available)?;
        let terms = kd_pair_terms(
            &task.distilled_features(&encoding)?,
            available,
            &w,
            kd.distance,
            kd.pairs,
        )?;
        for (k, g) in grad.iter_mut().enumerate().filter(|(k, _)| available[*k]) {
            let mut weighted = Tensor::zeros((), DType::F32, &device)?;
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
            *g = -alpha * kd.weight * dot;
        }
    }
    drop(snapshot);
    let grad: Vec<f32> = grad.into_iter().map(|g| g as f32).collect();
    Tensor::from_vec(grad, m, &device)
}
