//! The names of the files in a run folder.

/// The run's configuration, as trained.
pub const CONFIG_FILE: &str = "config.toml";
/// The case splits.
pub const SPLIT_FILE: &str = "split.json";
/// The final model and importance logits.
pub const MODEL_FILE: &str = "model.safetensors";
/// The training checkpoint for `metakd train --resume`: model, optimiser states, generator state.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// Written when training (of the requested stages) has finished: iterations, parameters, the
/// final loss, ω and the time taken.
pub const FINISHED_FILE: &str = "train_summary.json";
/// The training log (one row per iteration).
pub const LOG_FILE: &str = "train_log.parquet";
/// Every meta step of a training run (iteration, subset, loss, ω after the step).
pub const META_LOG_FILE: &str = "meta_log.parquet";
/// The sweep's result table.
pub const SWEEP_FILE: &str = "sweep.parquet";
