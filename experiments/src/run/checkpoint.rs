//! Training checkpoints for exact resumption: one safetensors file (`checkpoint.safetensors`)
//! holding every network parameter and the importance logits under their model names, both
//! optimisers' state (`optimizer.sgd.momentum.<parameter>`, `optimizer.adam.first_moment`,
//! `optimizer.adam.second_moment`), and, as a `uint8` tensor of JSON (`training_state`), the
//! iterations done, the random generator's state, the configuration and the log so far. It is
//! written under a temporary name and renamed, so a killed run leaves the previous checkpoint.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use metakd_model::optim::{Adam, SgdNesterov};
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::run::model::{save_tensors, Model, IMPORTANCE_KEY};

/// Name of the JSON state tensor inside a checkpoint.
const STATE_KEY: &str = "training_state";
const MOMENTUM_PREFIX: &str = "optimizer.sgd.momentum.";
const ADAM_FIRST: &str = "optimizer.adam.first_moment";
const ADAM_SECOND: &str = "optimizer.adam.second_moment";

/// One row of the training log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    /// Iteration (0-based).
    pub iteration: u32,
    /// Bitmask of the available modalities.
    pub subset: u32,
    /// Learning rate of the network.
    pub lr: f64,
    /// Total loss.
    pub loss: f64,
    /// Soft Dice loss.
    pub dice: f64,
    /// Binary cross-entropy.
    pub bce: f64,
    /// Distillation loss.
    pub kd: f64,
    /// ω per modality after the iteration.
    pub omega: Vec<f32>,
}

/// One meta step: the importance logits' Adam step on one meta-validation sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaLogRow {
    /// The training iteration after which the meta phase ran (0-based).
    pub iteration: u32,
    /// Bitmask of the modalities the meta sample saw.
    pub subset: u32,
    /// The meta loss (task loss of the ω-scaled pass) before the step; NaN for `lookahead`
    /// steps, whose objective is not evaluated.
    pub loss: f64,
    /// ω per modality after the step.
    pub omega: Vec<f32>,
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingState {
    /// Iterations completed.
    pub iterations_done: usize,
    /// The random generator, positioned after the last completed iteration.
    pub rng: ChaCha12Rng,
    /// The run's configuration (TOML), which a resumed run must match.
    pub config: String,
    /// The log rows so far.
    pub log: Vec<LogRow>,
    /// The meta steps so far.
    #[serde(default)]
    pub meta_log: Vec<MetaLogRow>,
}

/// The model's parameters sorted by name: the order the network optimiser holds them in.
pub fn named_vars(model: &Model) -> Vec<(String, Var)> {
    let mut vars: Vec<(String, Var)> = model
        .varmap
        .data()
        .lock()
        .expect("the var map lock is not poisoned")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Writes a checkpoint of the run to `path` atomically.
pub fn save_checkpoint(
    path: &Path,
    model: &Model,
    sgd: &SgdNesterov,
    adam: &Adam,
    state: &TrainingState,
) -> Result<()> {
    let mut tensors = model.tensors();
    for ((name, _), buffer) in named_vars(model).iter().zip(sgd.momentum_buffers()) {
        if let Some(b) = buffer {
            tensors.insert(format!("{MOMENTUM_PREFIX}{name}"), b.clone());
        }
    }
    let (steps, first, second) = adam.state();
    tensors.insert(ADAM_FIRST.into(), first[0].clone());
    tensors.insert(ADAM_SECOND.into(), second[0].clone());
    let mut json = serde_json::to_value(state)?;
    json["adam_steps"] = steps.into();
    let bytes = serde_json::to_vec(&json)?;
    let n = bytes.len();
    tensors.insert(STATE_KEY.into(), Tensor::from_vec(bytes, n, &Device::Cpu)?);
    save_tensors(&tensors, path)
}

/// Restores the model and both optimisers from the checkpoint at `path`, returning the rest of
/// the state.
pub fn load_checkpoint(
    path: &Path,
    model: &mut Model,
    sgd: &mut SgdNesterov,
    adam: &mut Adam,
    device: &Device,
) -> Result<TrainingState> {
    if !path.is_file() {
        bail!(
            "{}: no checkpoint to resume from (a run writes one every `train.checkpoint_every` iterations)",
            path.display()
        )
    }
    metakd_data::digest::verify(
        path,
        "restore it from a copy, or start the run again with `metakd train --overwrite`",
    )?;
    let tensors = candle_core::safetensors::load(path, device)
        .with_context(|| format!("{}: not a readable checkpoint", path.display()))?;
    let get = |name: &str| {
        tensors.get(name).with_context(|| {
            format!(
                "{}: no `{name}` in the checkpoint: it is damaged, or was written for another \
                     network (model.* of the configuration)",
                path.display()
            )
        })
    };
    let vars = named_vars(model);
    let mut buffers = Vec::with_capacity(vars.len());
    for (name, var) in &vars {
        var.set(get(name)?)
            .with_context(|| format!("{}: parameter `{name}`", path.display()))?;
        buffers.push(tensors.get(&format!("{MOMENTUM_PREFIX}{name}")).cloned());
    }
    model.importance.logits().set(get(IMPORTANCE_KEY)?)?;
    sgd.set_momentum_buffers(buffers)?;
    let json: serde_json::Value = serde_json::from_slice(&get(STATE_KEY)?.to_vec1::<u8>()?)
        .with_context(|| format!("{}: unreadable training state", path.display()))?;
    let steps = json["adam_steps"].as_u64().with_context(|| {
        format!(
            "{}: the training state has no valid `adam_steps` (the checkpoint is damaged)",
            path.display()
        )
    })? as usize;
    adam.set_state(
        steps,
        vec![get(ADAM_FIRST)?.clone()],
        vec![get(ADAM_SECOND)?.clone()],
    )?;
    serde_json::from_value(json)
        .with_context(|| format!("{}: unreadable training state", path.display()))
}
