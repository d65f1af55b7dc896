//! The modality-subset sweep: every held-out case of a run evaluated for all 2^M − 1 subsets.
//!
//! The work is cut into units (checkpoint × subset group × case shard, listed in the units
//! folder's `plan.json`); each unit writes its own Parquet table and sidecar, so units can run
//! as the tasks of a cluster array job, and an interrupted sweep resumes with the units not yet
//! written. The whole sweep is the units' tables merged into one (`sweep.parquet` and its
//! `sweep.json`). Columns: see [`metakd_reports::results::COLUMNS`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use metakd_data::lock::Lock;
use metakd_data::shards::{file_blake3, ShardSet};
use metakd_data::Modality;
use metakd_model::nets::ModalityFeatures;
use metakd_reports::results::{self, RegionScores, ResultRow, ResultRows, RowScores, RunInfo};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::eval::case_slices::case_slices;
use crate::eval::inference::{zero_features, Inference, SubsetScores};
use crate::files::{CONFIG_FILE, MODEL_FILE, SPLIT_FILE};
use crate::metrics::REGIONS;
use crate::progress;
use crate::run::config::RunConfig;
use crate::run::model::Model;
use crate::run::splits::Splits;
use crate::units::{is_finished, run_unit};
use metakd_data::files::write_atomic;
use metakd_model::method::Subset;

/// How a sweep is cut into units.
#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    /// Shards to evaluate, overriding the run's configuration.
    pub shards: Option<PathBuf>,
    /// Checkpoints to evaluate, relative to the run folder (default: its `model.safetensors`).
    pub checkpoints: Vec<PathBuf>,
    /// Groups the subsets are cut into (default 1, or the existing plan's).
    pub subset_groups: Option<usize>,
    /// Shards the test cases are cut into (default one per case, or the existing plan's).
    pub case_shards: Option<usize>,
}

/// One unit of a sweep: a checkpoint, a group of subsets and a shard of the cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// Its index (the array task index that runs it).
    pub index: usize,
    /// The checkpoint, relative to the run folder.
    pub checkpoint: PathBuf,
    /// Subset bitmasks.
    pub subsets: Vec<u32>,
    /// Case ids.
    pub cases: Vec<String>,
}

/// The units of a sweep (`plan.json` in the units folder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Subset groups.
    pub subset_groups: usize,
    /// Case shards.
    pub case_shards: usize,
    /// Every unit, checkpoint-major, then subset group, then case shard.
    pub units: Vec<Unit>,
    /// BLAKE3 digest of each checkpoint the units evaluate, so that finished units of a
    /// checkpoint since retrained are never taken for current ones.
    pub checkpoint_digests: Vec<(PathBuf, String)>,
}

/// Cuts `items` into `parts` contiguous pieces whose sizes differ by at most one.
fn cut<T: Clone>(items: &[T], parts: usize) -> Vec<Vec<T>> {
    let parts = parts.clamp(1, items.len().max(1));
    let (base, extra) = (items.len() / parts, items.len() % parts);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts {
        let len = base + usize::from(p < extra);
        out.push(items[start..start + len].to_vec());
        start += len;
    }
    out
}

impl Plan {
    /// The plan of `checkpoints` × `subset_groups` groups of `subsets` × `case_shards` shards of
    /// `cases`.
    pub fn new(
        run_dir: &Path,
        checkpoints: &[PathBuf],
        subsets: &[Subset],
        subset_groups: usize,
        cases: &[String],
        case_shards: usize,
    ) -> Result<Self> {
        if subset_groups == 0 || case_shards == 0 {
            bail!("--subset-groups and --case-shards must be positive")
        }
        if cases.is_empty() {
            bail!(
                "{}: the run has no test case to evaluate",
                run_dir.display()
            )
        }
        let masks: Vec<u32> = subsets.iter().map(|s| s.0).collect();
        let groups = cut(&masks, subset_groups);
        let shards = cut(cases, case_shards);
        let mut units = Vec::new();
        for checkpoint in checkpoints {
            for group in &groups {
                for shard in &shards {
                    units.push(Unit {
                        index: units.len(),
                        checkpoint: checkpoint.clone(),
                        subsets: group.clone(),
                        cases: shard.clone(),
                    });
                }
            }
        }
        Ok(Self {
            run_dir: run_dir.to_owned(),
            subset_groups: groups.len(),
            case_shards: shards.len(),
            units,
            checkpoint_digests: Vec::new(),
        })
    }

    /// Reads `path`. The run folder it names is relative to the plan's own folder, so the plan
    /// serves from any working directory and after the tree is mounted elsewhere (a plan written
    /// with a path relative to its maker's working directory is still found there).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let mut plan: Self = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a sweep plan", path.display()))?;
        let here = path.parent().unwrap_or(Path::new("."));
        let resolved = here.join(&plan.run_dir);
        if resolved.is_dir() || !plan.run_dir.is_dir() {
            plan.run_dir = resolved;
        }
        Ok(plan)
    }

    /// Writes the plan to `path`, naming its run folder relative to the plan's folder.
    fn write(&self, path: &Path) -> Result<()> {
        let here = path.parent().unwrap_or(Path::new("."));
        let stored = Self {
            run_dir: relative_path(&self.run_dir, here)?,
            ..self.clone()
        };
        Ok(write_atomic(
            path,
            serde_json::to_string_pretty(&stored)?.as_bytes(),
        )?)
    }
}

/// `target` as a path relative to the folder `base`, through `..` where needed.
fn relative_path(target: &Path, base: &Path) -> Result<PathBuf> {
    let absolute = |p: &Path| -> Result<PathBuf> {
        let p =
            std::path::absolute(p).with_context(|| format!("{}: no absolute path", p.display()))?;
        Ok(p.canonicalize().unwrap_or(p))
    };
    let (target, base) = (absolute(target)?, absolute(base)?);
    let common = target
        .components()
        .zip(base.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut relative: PathBuf = base.components().skip(common).map(|_| "..").collect();
    relative.extend(target.components().skip(common));
    if relative.as_os_str().is_empty() {
        relative.push(".");
    }
    Ok(relative)
}

/// The folder of a sweep table's units: `sweep.parquet` → `sweep-units/`.
pub fn units_dir(table: &Path) -> PathBuf {
    let stem = table
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sweep".into());
    table.with_file_name(format!("{stem}-units"))
}

/// The table file of unit `index` in `units`.
pub fn unit_table(units: &Path, index: usize) -> PathBuf {
    units.join(format!("unit-{index:05}.parquet"))
}

/// Everything a run's sweep reads once.
struct RunSetup {
    cfg: RunConfig,
    splits: Splits,
    shards: PathBuf,
    dataset: String,
}

impl RunSetup {
    fn read(run_dir: &Path, shards: Option<&Path>) -> Result<Self> {
        if !run_dir.is_dir() {
            bail!("{}: no such run folder", run_dir.display())
        }
        let cfg = RunConfig::read(&run_dir.join(CONFIG_FILE))?;
        let splits = Splits::read(&run_dir.join(SPLIT_FILE))?;
        let shards = shards
            .map(Path::to_owned)
            .unwrap_or_else(|| cfg.data.shards.clone());
        let dataset = match &cfg.data.dataset {
            Some(name) => name.clone(),
            None => ShardSet::open(&shards)?
                .manifest()
                .release
                .map_or_else(|| "unknown".to_owned(), |r| r.name().to_owned()),
        };
        Ok(Self {
            cfg,
            splits,
            shards,
            dataset,
        })
    }

    /// `MetaKD`, or the ablation the configuration describes.
    fn variant(&self) -> &'static str {
        match (self.cfg.train.kd, self.cfg.meta.enabled) {
            (true, true) => "MetaKD",
            (false, true) => "no KD",
            (true, false) => "no meta",
            (false, false) => "no KD, no meta",
        }
    }
}

/// The run's id: its folder name.
fn run_id(run_dir: &Path) -> String {
    run_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "run".into())
}

/// Refuses a sweep table path that would overwrite anything but a sweep table and its sidecar:
/// the table must be a `.parquet` file, and an existing table or sidecar must read as one.
pub fn check_table_path(table: &Path) -> Result<()> {
    if table.extension().is_none_or(|e| e != "parquet") {
        bail!(
            "{}: a sweep table is a .parquet file; choose another --out",
            table.display()
        )
    }
    let sidecar = results::sidecar_path(table);
    let refuse = |path: &Path, why: String| -> Result<()> {
        bail!(
            "{}: exists and is not a sweep table's ({why}); it is left as it is: choose another --out",
            path.display()
        )
    };
    if table.exists() {
        if let Err(e) = results::read_table(table) {
            refuse(table, e.describe())?;
        }
    }
    if sidecar.exists() {
        if let Err(e) = results::read_sidecar(table) {
            refuse(&sidecar, e.describe())?;
        }
    }
    Ok(())
}

/// Reads the plan in `units` when there is one and it agrees with `options`, or makes and
/// writes it.
pub fn plan(run_dir: &Path, table: &Path, options: &SweepOptions) -> Result<Plan> {
    check_table_path(table)?;
    let setup = RunSetup::read(run_dir, options.shards.as_deref())?;
    let units = units_dir(table);
    let path = units.join("plan.json");
    let checkpoints = if options.checkpoints.is_empty() {
        vec![PathBuf::from(MODEL_FILE)]
    } else {
        options.checkpoints.clone()
    };
    let existing = if path.is_file() {
        Some(Plan::read(&path)?)
    } else {
        None
    };
    let groups = options
        .subset_groups
        .or(existing.as_ref().map(|p| p.subset_groups))
        .unwrap_or(1);
    let shards = options
        .case_shards
        .or(existing.as_ref().map(|p| p.case_shards))
        .unwrap_or(setup.splits.test.len());
    let m = setup.cfg.model.modalities;
    let mut plan = Plan::new(
        run_dir,
        &checkpoints,
        &Subset::all(m),
        groups,
        &setup.splits.test,
        shards,
    )?;
    plan.checkpoint_digests = checkpoints
        .iter()
        .map(|c| {
            let digest = file_blake3(&run_dir.join(c)).with_context(|| {
                format!("{}: cannot read the checkpoint", run_dir.join(c).display())
            })?;
            Ok((c.clone(), digest))
        })
        .collect::<Result<_>>()?;
    match existing {
        Some(existing) if existing.units != plan.units => bail!(
            "{}: the units folder holds a different plan ({} units); pass the same options, or \
             remove the folder to start the sweep anew",
            path.display(),
            existing.units.len()
        ),
        Some(existing) if existing.checkpoint_digests != plan.checkpoint_digests => bail!(
            "{}: a checkpoint changed since its units were evaluated; remove the folder to \
             evaluate it anew",
            path.display()
        ),
        Some(existing) if !metakd_data::files::same_folder(&existing.run_dir, run_dir) => bail!(
            "{}: the units folder is the sweep of the run {}, not of {}; give that run, or \
             another --out",
            path.display(),
            existing.run_dir.display(),
            run_dir.display()
        ),
        // The folder as the user named it now (the plan's is relative to the plan).
        Some(existing) => Ok(Plan {
            run_dir: run_dir.to_owned(),
            ..existing
        }),
        None => {
            std::fs::create_dir_all(&units)
                .with_context(|| format!("{}: cannot create", units.display()))?;
            plan.write(&path)?;
            Ok(plan)
        }
    }
}

/// What running a unit did.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitOutcome {
    /// The unit's table was already there.
    AlreadyDone,
    /// Evaluated: cases scored and skipped.
    Done {
        /// Cases scored.
        scored: usize,
        /// Cases skipped, with the reason.
        skipped: Vec<(String, String)>,
    },
    /// Every case of the unit was skipped: no table is written, so the unit is not finished and
    /// runs again next time.
    NothingScored {
        /// The cases, with the reason each was skipped.
        skipped: Vec<(String, String)>,
    },
}

/// A checkpoint of a run, loaded to evaluate units: the run's settings, the model, its shards and
/// the encoder's features of a zero tile, read once and shared by every unit of the checkpoint.
struct LoadedCheckpoint {
    checkpoint: PathBuf,
    setup: RunSetup,
    model: Model,
    shard_set: ShardSet,
    zero: ModalityFeatures,
}

impl LoadedCheckpoint {
    fn load(
        run_dir: &Path,
        checkpoint: &Path,
        shards: Option<&Path>,
        device: &Device,
    ) -> Result<Self> {
        let setup = RunSetup::read(run_dir, shards)?;
        let path = run_dir.join(checkpoint);
        // Every error of loading names the file.
        let model = Model::load(&path, &setup.cfg.model, device)?;
        let shard_set = ShardSet::open(&setup.shards)?;
        let zero = zero_features(&model, setup.cfg.train.crop, device)?;
        Ok(Self {
            checkpoint: checkpoint.to_owned(),
            setup,
            model,
            shard_set,
            zero,
        })
    }
}

/// Runs the units of a plan, keeping the last checkpoint loaded for the next unit.
pub struct UnitRunner<'a> {
    plan: &'a Plan,
    table: &'a Path,
    shards: Option<&'a Path>,
    device: Device,
    loaded: Option<LoadedCheckpoint>,
}

impl<'a> UnitRunner<'a> {
    /// Runs units of `plan` (the plan of the sweep table `table`) on `shards` when given, else
    /// the run's own.
    pub fn new(plan: &'a Plan, table: &'a Path, shards: Option<&'a Path>) -> Self {
        Self {
            plan,
            table,
            shards,
            device: Device::Cpu,
            loaded: None,
        }
    }

    /// Runs unit `index`, unless its table exists.
    pub fn run(&mut self, index: usize, show_progress: bool) -> Result<UnitOutcome> {
        let plan = self.plan;
        if index >= plan.units.len() {
            bail!(
                "unit {index} does not exist: the plan has units 0 to {}",
                plan.units.len().saturating_sub(1)
            )
        }
        let out = unit_table(&units_dir(self.table), index);
        let outcome = run_unit(&out, "sweep unit", || {
            self.evaluate(index, &out, show_progress)
        })?;
        Ok(outcome.unwrap_or(UnitOutcome::AlreadyDone))
    }

    /// Evaluates unit `index` into its table `out`, loading its checkpoint unless the last unit
    /// had the same.
    fn evaluate(&mut self, index: usize, out: &Path, show_progress: bool) -> Result<UnitOutcome> {
        let plan = self.plan;
        let unit = &plan.units[index];
        if self.loaded.as_ref().map(|l| &l.checkpoint) != Some(&unit.checkpoint) {
            self.loaded = None;
            self.loaded = Some(LoadedCheckpoint::load(
                &plan.run_dir,
                &unit.checkpoint,
                self.shards,
                &self.device,
            )?);
        }
        let loaded = self.loaded.as_ref().expect("loaded above");
        evaluate_unit(plan, unit, loaded, &self.device, out, show_progress)
    }
}

/// Evaluates `unit` with its checkpoint `loaded` and writes its table `out` and sidecar.
fn evaluate_unit(
    plan: &Plan,
    unit: &Unit,
    loaded: &LoadedCheckpoint,
    device: &Device,
    out: &Path,
    show_progress: bool,
) -> Result<UnitOutcome> {
    let index = unit.index;
    let run_dir = &plan.run_dir;
    let LoadedCheckpoint {
        setup,
        model,
        shard_set,
        zero,
        ..
    } = loaded;
    let subsets: Vec<Subset> = unit.subsets.iter().map(|&s| Subset(s)).collect();
    let inference = Inference {
        model,
        tile: setup.cfg.train.crop,
        eval: &setup.cfg.eval,
        device,
    };

    let bar = progress::bar(
        unit.cases.len() as u64,
        &format!("sweep unit {index}"),
        show_progress,
    );
    let modalities: Vec<String> = metakd_data::Modality::ALL
        .iter()
        .map(|m| m.display_name().to_owned())
        .collect();
    // The first unit also writes one case's slices for the report's figure.
    let slices_path = std::path::absolute(out.with_extension("slices.json"))?;
    let mut slices = None;
    let (mut rows, mut cases, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for id in &unit.cases {
        bar.set_message(id.clone());
        let scored = shard_set
            .case(id)
            .and_then(|view| view.to_prepared())
            .map_err(anyhow::Error::from)
            .map(|case| setup.cfg.eval.window.place(case))
            .and_then(|case| {
                let scores = inference.evaluate(&case, &subsets, zero)?;
                if index == 0 && slices.is_none() {
                    let written = case_slices(&inference, zero, &case, &modalities)
                        .and_then(|s| Ok(s.write(&slices_path)?));
                    match written {
                        Ok(()) => slices = Some(slices_path.clone()),
                        Err(e) => tracing::warn!("no case slices for the report: {e:#}"),
                    }
                }
                Ok(scores)
            });
        match scored {
            Ok(scores) => {
                rows.extend(subsets.iter().zip(scores).map(|(s, d)| (id.clone(), *s, d)));
                cases.push(id.clone());
            }
            Err(e) => {
                // Reported once, with the unit's other skipped cases, when it ends.
                tracing::debug!("skipping case {id}: {e:#}");
                skipped.push((id.clone(), format!("{e:#}")));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if cases.is_empty() {
        return Ok(UnitOutcome::NothingScored { skipped });
    }

    let info = RunInfo {
        run_id: run_id(run_dir),
        run_dir: run_dir.clone(),
        dataset: setup.dataset.clone(),
        protocol: setup.splits.protocol_label().to_owned(),
        fold: setup.splits.fold.map(|f| f as u32),
        seed: setup.cfg.train.seed,
        variant: setup.variant().to_owned(),
        checkpoint: unit.checkpoint.display().to_string(),
        modalities,
        importance_logits: model.importance.logit_values()?,
        importance: model.importance.omega_values()?,
        config_toml: setup.cfg.to_toml(),
        subsets: unit.subsets.clone(),
        cases,
        skipped: skipped.clone(),
        slices,
    };
    let mut df = result_frame(&info, &rows)?;
    results::write_sidecar(out, std::slice::from_ref(&info))?;
    results::write_table(&mut df, out)?;
    Ok(UnitOutcome::Done {
        scored: info.cases.len(),
        skipped,
    })
}

/// The rows of one unit: run × case × subset × region (× post-processing).
fn result_frame(info: &RunInfo, rows: &[(String, Subset, SubsetScores)]) -> Result<DataFrame> {
    let mut table = ResultRows::default();
    for (case, subset, scores) in rows {
        let versions =
            std::iter::once((false, scores.raw)).chain(scores.postprocessed.map(|p| (true, p)));
        for (postprocessed, metrics) in versions {
            for (r, (_, region)) in REGIONS.iter().enumerate() {
                let m = metrics[r];
                table.push(ResultRow {
                    info,
                    case: case.clone(),
                    subset_mask: subset.0,
                    subset: subset.name(&Modality::DISPLAY_NAMES),
                    scores: RowScores::Segmentation {
                        region: (*region).to_owned(),
                        postprocessed,
                        scores: RegionScores {
                            dice: m.dice,
                            hd95: m.hd95,
                            sensitivity: m.sensitivity,
                            specificity: m.specificity,
                        },
                    },
                });
            }
        }
    }
    Ok(table.frame()?)
}

/// What a whole sweep did.
#[derive(Debug, Clone)]
pub struct SweepOutcome {
    /// The plan.
    pub plan: Plan,
    /// Units evaluated now.
    pub evaluated: usize,
    /// Units found finished.
    pub already_done: usize,
    /// The merged runs and checkpoints.
    pub infos: Vec<RunInfo>,
}

/// Runs every unit of the sweep of `run_dir` not yet written and merges the units into `table`
/// (with its sidecar).
pub fn sweep(
    run_dir: &Path,
    table: &Path,
    options: &SweepOptions,
    show_progress: bool,
) -> Result<SweepOutcome> {
    check_table_path(table)?;
    let _lock = Lock::file(table, "sweep table")?;
    let plan = plan(run_dir, table, options)?;
    let (mut evaluated, mut already_done) = (0, 0);
    let mut unscored = Vec::new();
    let mut runner = UnitRunner::new(&plan, table, options.shards.as_deref());
    for unit in &plan.units {
        match runner.run(unit.index, show_progress)? {
            UnitOutcome::AlreadyDone => already_done += 1,
            UnitOutcome::Done { .. } => evaluated += 1,
            UnitOutcome::NothingScored { skipped } => unscored.push((unit.index, skipped)),
        }
    }
    if !unscored.is_empty() {
        bail!(
            "{}: {} of {} units scored no case and are not finished ({}); the other units are \
             written; fix the cases (or pass the right --shards) and run the sweep again",
            table.display(),
            unscored.len(),
            plan.units.len(),
            unscored
                .iter()
                .map(|(index, skipped)| format!(
                    "unit {index}: {}",
                    skipped
                        .iter()
                        .map(|(id, reason)| format!("case {id}: {reason}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
    let infos = merge_units(&plan, table)?;
    Ok(SweepOutcome {
        plan,
        evaluated,
        already_done,
        infos,
    })
}

/// Merges the units of `plan` into `table` and its sidecar; every unit must be finished.
pub fn merge_units(plan: &Plan, table: &Path) -> Result<Vec<RunInfo>> {
    let units = units_dir(table);
    let files: Vec<PathBuf> = plan
        .units
        .iter()
        .map(|u| unit_table(&units, u.index))
        .collect();
    let missing: Vec<String> = plan
        .units
        .iter()
        .zip(&files)
        .filter(|(_, f)| !is_finished(f))
        .map(|(u, _)| u.index.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: units {} are not finished",
            units.display(),
            missing.join(", ")
        )
    }
    let mut read = results::read_tables(&files)?;
    results::write_sidecar(table, &read.infos)?;
    results::write_table(&mut read.df, table)?;
    Ok(read.infos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_contiguous_and_even() {
        let items: Vec<u32> = (0..10).collect();
        let parts = cut(&items, 3);
        assert_eq!(parts, vec![vec![0, 1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]);
        assert_eq!(cut(&items, 20).len(), 10, "no empty piece");
        assert_eq!(cut(&items, 1), vec![items.clone()]);
    }

    #[test]
    fn units_cover_every_checkpoint_subset_and_case_once() {
        let cases: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
        let checkpoints = [
            PathBuf::from("a.safetensors"),
            PathBuf::from("b.safetensors"),
        ];
        let plan = Plan::new(
            Path::new("run"),
            &checkpoints,
            &Subset::all(4),
            4,
            &cases,
            2,
        )
        .unwrap();
        assert_eq!(plan.units.len(), 2 * 4 * 2);
        let mut seen = std::collections::BTreeSet::new();
        for (i, unit) in plan.units.iter().enumerate() {
            assert_eq!(unit.index, i);
            for s in &unit.subsets {
                for c in &unit.cases {
                    assert!(seen.insert((unit.checkpoint.clone(), *s, c.clone())));
                }
            }
        }
        assert_eq!(seen.len(), 2 * 15 * 5);
    }
}
