//! Taking a run folder for training: one process at a time (an advisory lock, see
//! [`metakd_data::lock`]), and never over another run's files unless asked.

use std::path::Path;

use anyhow::{bail, Context, Result};
use metakd_data::lock::{Lock, FOLDER_LOCK_FILE};

use crate::files::{CHECKPOINT_FILE, CONFIG_FILE, FINISHED_FILE, LOG_FILE, MODEL_FILE, SPLIT_FILE};

/// What training may do with the files already in its run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Continue the run there (`--resume`).
    Resume,
    /// Start a new run: the folder must hold no run.
    Refuse,
    /// Start a new run, clearing the folder whole first (`--overwrite`); only a run folder is
    /// cleared.
    Overwrite,
}

/// The files that make a folder a run folder.
const RUN_FILES: [&str; 6] = [
    CONFIG_FILE,
    SPLIT_FILE,
    CHECKPOINT_FILE,
    MODEL_FILE,
    LOG_FILE,
    FINISHED_FILE,
];

/// Locks the run folder `dir` for training and makes sure a new run starts in a folder of its
/// own. The lock is held until the returned value is dropped.
pub fn take(dir: &Path, existing: Existing) -> Result<Lock> {
    let lock = Lock::folder(dir, "run folder")?;
    let entries: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the run folder", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != FOLDER_LOCK_FILE)
        .collect();
    let is_run = entries.iter().any(|e| RUN_FILES.contains(&e.as_str()));
    match existing {
        Existing::Resume => {}
        _ if entries.is_empty() => {}
        _ if !is_run => bail!(
            "{}: the folder holds files that are not a run's ({}); choose an empty or new `--out`",
            dir.display(),
            preview(&entries)
        ),
        Existing::Refuse => bail!(
            "{}: the folder holds a run already ({}); continue it with `--resume`, train into a \
             fresh `--out`, or pass `--overwrite` to delete it and start again",
            dir.display(),
            if dir.join(FINISHED_FILE).is_file() {
                "finished"
            } else {
                "started"
            }
        ),
        Existing::Overwrite => {
            for name in &entries {
                let path = dir.join(name);
                let removed = if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.with_context(|| {
                    format!("{}: cannot delete it to overwrite the run", path.display())
                })?;
            }
            tracing::info!("{}: the previous run was deleted", dir.display());
        }
    }
    Ok(lock)
}

/// Up to five names of `entries`, and how many more there are.
fn preview(entries: &[String]) -> String {
    let mut sorted = entries.to_vec();
    sorted.sort();
    let shown = sorted
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match sorted.len() {
        n if n > 5 => format!("{shown} and {} more", n - 5),
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_refuses_a_run_folder_and_a_foreign_one() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        drop(take(&run, Existing::Refuse).unwrap());
        std::fs::write(run.join(CONFIG_FILE), "x").unwrap();
        let refused = take(&run, Existing::Refuse).unwrap_err().to_string();
        assert!(
            refused.contains("--resume") && refused.contains("--overwrite"),
            "{refused}"
        );
        drop(take(&run, Existing::Resume).unwrap());
        drop(take(&run, Existing::Overwrite).unwrap());
        assert!(!run.join(CONFIG_FILE).exists());

        let foreign = dir.path().join("home");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
        for existing in [Existing::Refuse, Existing::Overwrite] {
            let refused = take(&foreign, existing).unwrap_err().to_string();
            assert!(refused.contains("notes.txt"), "{refused}");
        }
        assert!(foreign.join("notes.txt").is_file());
    }
}
