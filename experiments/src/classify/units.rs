//! The resumable unit runner of the classification protocols: each unit (one seed × variant ×
//! setting) is trained once and its result kept as `units/<key>.json`; a later run trains only
//! the units without a file, then every unit's result is read back in order.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::progress;
use metakd_data::files::write_atomic;

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
        .filter(|(key, _)| !unit_path(out_dir, key).exists())
        .collect();
    let already_done = units.len() - todo.len();
    let bar = progress::bar(todo.len() as u64, label, show_progress);
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let work = || -> Result<()> {
        while let Some((key, config)) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
            let result = train(config).with_context(|| format!("unit {key}"))?;
            let json = serde_json::to_string_pretty(&result)?;
            write_atomic(&unit_path(out_dir, key), format!("{json}\n").as_bytes())?;
            finished.fetch_add(1, Ordering::Relaxed);
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
