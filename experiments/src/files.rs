//! Atomic file writes and the names of the files in a run folder.

use std::path::Path;

use anyhow::{Context, Result};

/// The run's configuration, as trained.
pub const CONFIG_FILE: &str = "config.toml";
/// The case splits.
pub const SPLIT_FILE: &str = "split.json";
/// The final model and importance logits.
pub const MODEL_FILE: &str = "model.safetensors";
/// The training checkpoint for `metakd train --resume`: model, optimiser states, generator state.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The training log (one row per iteration).
pub const LOG_FILE: &str = "train_log.parquet";
/// The sweep's result table.
pub const SWEEP_FILE: &str = "sweep.parquet";

/// Writes `bytes` to `path` through a temporary file in the same folder, then renames it, so a
/// reader never sees a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.partial.{}", std::process::id()));
    std::fs::write(&temp, bytes).with_context(|| format!("{}: cannot write", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("{}: cannot write", path.display()))
}
