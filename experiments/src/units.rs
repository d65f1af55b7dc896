//! The resumable unit runner of every protocol: a unit (a sweep's checkpoint × subsets × cases,
//! a classification protocol's seed × variant × setting) is finished when its result file
//! exists. [`run_unit`] runs one unit under its file's lock unless it has finished; the sweep's
//! units (`metakd sweep`, also one per job) and the classification protocols' ([`run_units`],
//! results as `units/<key>.json`) go through it, so an interrupted run resumes with the
//! unfinished units and two processes never run the same unit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::progress;
use metakd_data::files::write_atomic;
use metakd_data::lock::Lock;

/// How the units that are not finished yet are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// One after another on the calling thread's pool (a unit uses every compute thread).
    OneAtATime,
    /// As many at a time as the compute pool has threads, each on a single-thread pool of its
    /// own (small networks gain nothing from two threads per step; a unit's result does not
    /// depend on how many run beside it).
    OnePerThread,
}

/// What [`run_units`] did and every unit's result, in the order of the units given.
#[derive(Debug, Clone)]
pub struct UnitResults<R> {
    /// Each unit's result.
    pub results: Vec<R>,
    /// Units trained now.
    pub trained: usize,
    /// Units found finished.
    pub already_done: usize,
}

/// Whether the unit whose result file is `out` has finished.
pub fn is_finished(out: &Path) -> bool {
    out.is_file()
}

/// Runs the unit whose result file is `out` unless it has finished, holding `out`'s lock
/// (`role` names the unit in a refusal, "sweep unit"); `run` writes `out` (atomically) when it
/// succeeds. `None` when the unit had finished.
pub fn run_unit<T>(out: &Path, role: &str, run: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    let _lock = Lock::file(out, role)?;
    if is_finished(out) {
        return Ok(None);
    }
    run().map(Some)
}

/// The file of the unit named `key` under `out_dir`.
pub fn unit_path(out_dir: &Path, key: &str) -> PathBuf {
    out_dir.join("units").join(format!("{key}.json"))
}

/// Trains with `train` every unit of `units` (its key and its settings) whose file under
/// `out_dir/units` does not exist, writing each result atomically as soon as it is ready (an
/// interrupted run keeps them), then reads every unit's result.
pub fn run_units<C, R>(
    units: &[(String, C)],
    out_dir: &Path,
    schedule: Schedule,
    label: &'static str,
    show_progress: bool,
    train: impl Fn(&C) -> Result<R> + Sync,
) -> Result<UnitResults<R>>
where
    C: Sync,
    R: Serialize + DeserializeOwned,
{
    let units_dir = out_dir.join("units");
    std::fs::create_dir_all(&units_dir)
        .with_context(|| format!("creating {}", units_dir.display()))?;
    let todo: Vec<&(String, C)> = units
        .iter()
        .filter(|(key, _)| !is_finished(&unit_path(out_dir, key)))
        .collect();
    let already_done = units.len() - todo.len();
    let bar = progress::bar(todo.len() as u64, label, show_progress);
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let work = || -> Result<()> {
        while let Some((key, config)) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
            let path = unit_path(out_dir, key);
            let trained = run_unit(&path, "unit", || {
                let result = train(config).with_context(|| format!("unit {key}"))?;
                let json = serde_json::to_string_pretty(&result)?;
                Ok(write_atomic(&path, format!("{json}\n").as_bytes())?)
            })?;
            if trained.is_some() {
                finished.fetch_add(1, Ordering::Relaxed);
            }
            bar.inc(1);
        }
        Ok(())
    };
    match schedule {
        Schedule::OneAtATime => work()?,
        Schedule::OnePerThread => {
            let workers = rayon::current_num_threads().min(todo.len()).max(1);
            std::thread::scope(|scope| -> Result<()> {
                let handles: Vec<_> = (0..workers)
                    .map(|_| {
                        scope.spawn(|| -> Result<()> {
                            rayon::ThreadPoolBuilder::new()
                                .num_threads(1)
                                .build()?
                                .install(work)
                        })
                    })
                    .collect();
                for handle in handles {
                    handle.join().expect("a unit worker panicked")?;
                }
                Ok(())
            })?;
        }
    }
    bar.finish_and_clear();
    let results = units
        .iter()
        .map(|(key, _)| read_unit(&unit_path(out_dir, key)))
        .collect::<Result<Vec<R>>>()?;
    Ok(UnitResults {
        results,
        trained: finished.into_inner(),
        already_done,
    })
}

/// A unit's result as written by [`run_units`].
fn read_unit<R: DeserializeOwned>(path: &Path) -> Result<R> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a unit result", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_runs_once_and_never_beside_another_holder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("units").join("a.json");
        let ran = run_unit(&out, "unit", || Ok(write_atomic(&out, b"1")?)).unwrap();
        assert!(ran.is_some());
        assert!(is_finished(&out));
        let again = run_unit(&out, "unit", || -> Result<()> {
            panic!("a finished unit ran")
        });
        assert!(again.unwrap().is_none());

        let other = dir.path().join("units").join("b.json");
        let _held = Lock::file(&other, "unit").unwrap();
        let refused = run_unit(&other, "unit", || Ok(write_atomic(&other, b"2")?));
        let message = format!("{:#}", refused.unwrap_err());
        assert!(message.contains("in use"), "{message}");
        assert!(!is_finished(&other));
    }

    #[test]
    fn units_resume_with_the_unfinished_ones_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let units: Vec<(String, u32)> = (0..4).map(|i| (format!("u{i}"), i)).collect();
        let first = run_units(
            &units[..2],
            dir.path(),
            Schedule::OneAtATime,
            "t",
            false,
            |&c| Ok(c * 10),
        )
        .unwrap();
        assert_eq!((first.trained, first.already_done), (2, 0));
        let all = run_units(
            &units,
            dir.path(),
            Schedule::OnePerThread,
            "t",
            false,
            |&c| {
                anyhow::ensure!(c >= 2, "unit {c} was finished and must not run again");
                Ok(c * 10)
            },
        )
        .unwrap();
        assert_eq!((all.trained, all.already_done), (2, 2));
        assert_eq!(all.results, [0, 10, 20, 30]);
    }
}
