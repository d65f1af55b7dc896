//! The common result table of every task and its sidecar: one Parquet row per run × checkpoint × case ×
//! modality subset × region (× post-processing) for segmentation, and one row per run × test
//! modality subset for classification (`task` tells them apart; segmentation fills `dice`,
//! `hd95`, `sensitivity` and `specificity`, classification `accuracy` and `f1`). Beside it
//! (`<table>.json`) is what each run and checkpoint in it was — importance weights, settings,
//! cases evaluated and skipped.
//!
//! A table may be a whole sweep or one unit of one; any set of them reads back as one table.

mod rows;

pub use rows::{RegionScores, ResultRow, ResultRows, RowScores, TEST_CASE};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{ReportError, Result};

/// The columns every result table has, in order.
pub const COLUMNS: [&str; 20] = [
    "run_id",
    "task",
    "dataset",
    "protocol",
    "rate",
    "fold",
    "seed",
    "variant",
    "checkpoint",
    "case",
    "subset_mask",
    "subset",
    "region",
    "postprocessed",
    "dice",
    "hd95",
    "sensitivity",
    "specificity",
    "accuracy",
    "f1",
];

/// `task` of segmentation rows.
pub const SEGMENTATION: &str = "segmentation";
/// `task` of classification rows.
pub const CLASSIFICATION: &str = "classification";

/// Columns added after the first tables were written (segmentation only), with the value an
/// older table's rows take: `task` segmentation, the others empty.
const LATER_COLUMNS: [&str; 4] = ["task", "rate", "accuracy", "f1"];

/// What one run and checkpoint of a result table is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's id (its folder name).
    pub run_id: String,
    /// The run folder.
    pub run_dir: PathBuf,
    /// The data set (`brats2020`, `synthetic`, ...).
    pub dataset: String,
    /// The protocol (`A`, `B` or `local`).
    pub protocol: String,
    /// The fold of the protocol, when it has several.
    pub fold: Option<u32>,
    /// The run's training seed.
    pub seed: u64,
    /// `MetaKD` or an ablation (`no KD`, `no meta`, `no KD, no meta`).
    pub variant: String,
    /// The evaluated checkpoint (file name inside the run folder).
    pub checkpoint: String,
    /// Modality names in channel order.
    pub modalities: Vec<String>,
    /// Learned importance logits w.
    pub importance_logits: Vec<f32>,
    /// Learned importance ω = softmax(w).
    pub importance: Vec<f32>,
    /// The run's configuration (TOML).
    pub config_toml: String,
    /// Subsets evaluated (bitmasks).
    pub subsets: Vec<u32>,
    /// Cases evaluated.
    pub cases: Vec<String>,
    /// Cases skipped, with the reason.
    pub skipped: Vec<(String, String)>,
    /// One case's slices for the report's figure ([`crate::slices::CaseSlices`]), when the
    /// sweep wrote them.
    #[serde(default)]
    pub slices: Option<PathBuf>,
}

/// What tells one trained classifier's run apart (the rest of its [`RunInfo`] is the same for
/// every classification unit).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationRun {
    /// The run's id.
    pub run_id: String,
    /// The folder of its unit results.
    pub run_dir: PathBuf,
    /// The data set.
    pub dataset: String,
    /// The protocol (`audio rate`, `visual rate`, `real missingness`).
    pub protocol: String,
    /// The training seed.
    pub seed: u64,
    /// The variant's label.
    pub variant: String,
    /// Modality names in input order.
    pub modalities: Vec<String>,
    /// The settings (TOML).
    pub config_toml: String,
}

impl RunInfo {
    /// The sidecar entry of a classifier trained once (checkpoint `final`) and scored on the
    /// whole test split (case [`TEST_CASE`]) for `subsets`, with its learned importance `omega`
    /// (logits w = ln ω).
    pub fn classification(run: ClassificationRun, omega: &[f32], subsets: Vec<u32>) -> Self {
        Self {
            run_id: run.run_id,
            run_dir: run.run_dir,
            dataset: run.dataset,
            protocol: run.protocol,
            fold: None,
            seed: run.seed,
            variant: run.variant,
            checkpoint: "final".into(),
            modalities: run.modalities,
            importance_logits: omega.iter().map(|w| w.ln()).collect(),
            importance: omega.to_vec(),
            config_toml: run.config_toml,
            subsets,
            cases: vec![TEST_CASE.into()],
            skipped: Vec::new(),
            slices: None,
        }
    }

    /// The key that tells runs and checkpoints apart.
    pub fn key(&self) -> (String, String) {
        (self.run_id.clone(), self.checkpoint.clone())
    }
}

/// Where the sidecar of a table lives: `sweep.parquet` → `sweep.json`.
pub fn sidecar_path(table: &Path) -> PathBuf {
    table.with_extension("json")
}

/// Reads the sidecar of `table`.
pub fn read_sidecar(table: &Path) -> Result<Vec<RunInfo>> {
    let path = sidecar_path(table);
    let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ReportError::Json { path, source })
}

/// Writes `infos` as the sidecar of `table`, atomically.
pub fn write_sidecar(table: &Path, infos: &[RunInfo]) -> Result<()> {
    let json = serde_json::to_string_pretty(infos).expect("sweep infos serialise");
    crate::write_atomic(&sidecar_path(table), json.as_bytes())
}

/// Merges the infos of the same run and checkpoint (units of one sweep): their subsets, cases
/// and skipped cases are joined. Sorted by run and checkpoint.
pub fn merge_infos(infos: Vec<RunInfo>) -> Vec<RunInfo> {
    let mut merged: BTreeMap<(String, String), RunInfo> = BTreeMap::new();
    for info in infos {
        match merged.get_mut(&info.key()) {
            Some(existing) => {
                existing.subsets.extend(info.subsets);
                existing.cases.extend(info.cases);
                existing.skipped.extend(info.skipped);
                existing.slices = existing.slices.take().or(info.slices);
            }
            None => {
                merged.insert(info.key(), info);
            }
        }
    }
    let mut out: Vec<RunInfo> = merged.into_values().collect();
    for info in &mut out {
        info.subsets.sort();
        info.subsets.dedup();
        info.cases.sort();
        info.cases.dedup();
        info.skipped.sort();
        info.skipped.dedup();
    }
    out
}

pub(crate) fn table_error(path: &Path) -> impl FnOnce(PolarsError) -> ReportError + '_ {
    move |source| ReportError::Table {
        path: path.to_owned(),
        source,
    }
}

/// Reads any Parquet file.
pub(crate) fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })?;
    ParquetReader::new(file).finish().map_err(table_error(path))
}

/// Reads one table and checks its columns. A segmentation table from before the `task`,
/// `rate`, `accuracy` and `f1` columns gets them (segmentation, empty).
pub fn read_table(path: &Path) -> Result<DataFrame> {
    metakd_data::digest::verify(path, "delete it and run `metakd sweep` again to rebuild it")?;
    let mut df = read_parquet(path)?;
    if df.column("task").is_err() {
        let n = df.height();
        for name in LATER_COLUMNS {
            let column = match name {
                "task" => Column::new(name.into(), vec![SEGMENTATION; n]),
                _ => Column::full_null(name.into(), n, &DataType::Float64),
            };
            if df.column(name).is_err() {
                df.with_column(column).map_err(table_error(path))?;
            }
        }
    }
    let missing: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| df.column(c).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(ReportError::BadTable {
            path: path.to_owned(),
            problem: format!(
                "not a sweep table: the columns {} are missing",
                missing.join(", ")
            ),
        });
    }
    df.select(COLUMNS).map_err(table_error(path))
}

/// Writes `df` as Parquet to `path`, atomically, with its BLAKE3 digest beside it
/// ([`metakd_data::digest`]).
pub fn write_table(df: &mut DataFrame, path: &Path) -> Result<()> {
    metakd_data::digest::write_with_digest(path, |temp| {
        let file = std::fs::File::create(temp).map_err(|source| ReportError::Io {
            path: temp.to_owned(),
            source,
        })?;
        ParquetWriter::new(file)
            .finish(df)
            .map_err(table_error(temp))?;
        Ok(())
    })
}

/// The tables of `inputs`: each a table file, or a folder whose `*.parquet` files are read (the
/// units of a sweep).
pub fn table_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let entries = std::fs::read_dir(input).map_err(|source| ReportError::Io {
                path: input.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
                .collect();
            if found.is_empty() {
                return Err(ReportError::BadTable {
                    path: input.clone(),
                    problem: "the folder holds no .parquet table".into(),
                });
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// Any set of sweep tables read as one.
#[derive(Debug, Clone)]
pub struct ResultTables {
    /// Every row of every table.
    pub df: DataFrame,
    /// Every run and checkpoint in them.
    pub infos: Vec<RunInfo>,
    /// The files read.
    pub files: Vec<PathBuf>,
    /// What the reader noticed that leaves the tables usable but incomplete: units that a
    /// units folder's plan lists and the folder lacks.
    pub warnings: Vec<String>,
}

/// The units that the plan (`plan.json`) of the units folder `dir` lists and `dir` lacks, as
/// warnings; none when the folder has no plan.
fn missing_units(dir: &Path) -> Vec<String> {
    let plan = dir.join("plan.json");
    let Ok(text) = std::fs::read_to_string(&plan) else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return vec![format!(
            "{}: unreadable plan; units may be missing",
            plan.display()
        )];
    };
    let missing: Vec<String> = json["units"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["index"].as_u64())
        .filter(|i| !dir.join(format!("unit-{i:05}.parquet")).is_file())
        .map(|i| i.to_string())
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "{}: units {} of the plan are not finished; the report leaves them out (run `metakd \
         sweep` for them first)",
        dir.display(),
        missing.join(", ")
    )]
}

/// Reads the tables of `inputs` (files or folders of them, each with its sidecar) as one. The
/// same run, checkpoint, case and subset in two inputs is an error naming both files.
pub fn read_tables(inputs: &[PathBuf]) -> Result<ResultTables> {
    let files = table_files(inputs)?;
    let (first, rest) = match files.split_first() {
        Some(split) => split,
        None => {
            return Err(ReportError::BadTable {
                path: PathBuf::from("(no input)"),
                problem: "no sweep table was given".into(),
            })
        }
    };
    let mut df = read_table(first)?;
    let mut infos = read_sidecar(first)?;
    check_rows(&df, &infos, first)?;
    let mut seen: BTreeMap<(String, String, String, u32), PathBuf> = BTreeMap::new();
    let mut note = |info_list: &[RunInfo], path: &Path| -> Result<()> {
        for info in info_list {
            for case in &info.cases {
                for &subset in &info.subsets {
                    let key = (
                        info.run_id.clone(),
                        info.checkpoint.clone(),
                        case.clone(),
                        subset,
                    );
                    if let Some(other) = seen.insert(key, path.to_owned()) {
                        return Err(ReportError::BadTable {
                            path: path.to_owned(),
                            problem: format!(
                                "case {case}, subset {subset} of run {} ({}) is also in {}",
                                info.run_id,
                                info.checkpoint,
                                other.display()
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    };
    note(&infos, first)?;
    for path in rest {
        let table = read_table(path)?;
        let more = read_sidecar(path)?;
        check_rows(&table, &more, path)?;
        note(&more, path)?;
        df.vstack_mut(&table).map_err(table_error(path))?;
        infos.extend(more);
    }
    df.rechunk_mut();
    let warnings = inputs
        .iter()
        .filter(|i| i.is_dir())
        .flat_map(|dir| missing_units(dir))
        .collect();
    Ok(ResultTables {
        df,
        infos: merge_infos(infos),
        files,
        warnings,
    })
}

/// The columns that name what a row measures: all but the six metric columns that end
/// [`COLUMNS`]. No two rows of a table may share them.
const KEY_COLUMNS: &[&str] = COLUMNS.split_at(COLUMNS.len() - 6).0;

/// Checks that the table at `path` is one a report can trust: its sidecar describes at least one
/// run, every Dice lies in [0, 1], every subset mask names a non-empty subset of the sidecar's
/// modalities, and no row repeats another.
fn check_rows(df: &DataFrame, infos: &[RunInfo], path: &Path) -> Result<()> {
    let bad = |problem: String| ReportError::BadTable {
        path: path.to_owned(),
        problem,
    };
    if infos.is_empty() {
        return Err(bad(format!(
            "its sidecar {} describes no run; the sweep that wrote it did not finish (run it again)",
            sidecar_path(path).display()
        )));
    }
    let modalities = infos.iter().map(|i| i.modalities.len()).max().unwrap_or(0);
    let text = |name: &str, i: usize| -> String {
        df.column(name)
            .ok()
            .and_then(|c| c.get(i).ok())
            .map(|v| v.to_string().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let row = |i: usize| {
        format!(
            "row {i} (case {}, subset {}, region {})",
            text("case", i),
            text("subset", i),
            text("region", i)
        )
    };
    let dice = df
        .column("dice")
        .and_then(|c| c.f64().cloned())
        .map_err(table_error(path))?;
    if let Some((i, d)) = dice
        .iter()
        .enumerate()
        .find_map(|(i, d)| d.filter(|d| !(0.0..=1.0).contains(d)).map(|d| (i, d)))
    {
        return Err(bad(format!("{} has Dice {d}, outside [0, 1]", row(i))));
    }
    let masks = df
        .column("subset_mask")
        .and_then(|c| c.cast(&DataType::UInt32))
        .map_err(table_error(path))?;
    let masks = masks.u32().map_err(table_error(path))?;
    let all = (1u64 << modalities) - 1;
    if let Some((i, m)) = masks
        .iter()
        .enumerate()
        .find_map(|(i, m)| m.filter(|&m| m == 0 || u64::from(m) > all).map(|m| (i, m)))
    {
        return Err(bad(format!(
            "{} has subset mask {m}, which is no subset of the {modalities} modalities",
            row(i)
        )));
    }
    let mut seen = std::collections::HashMap::with_capacity(df.height());
    for i in 0..df.height() {
        let key: Vec<String> = KEY_COLUMNS.iter().map(|c| text(c, i)).collect();
        if let Some(first) = seen.insert(key, i) {
            return Err(bad(format!("{} repeats row {first}", row(i))));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(run: &str, cases: &[&str]) -> RunInfo {
        RunInfo {
            run_id: run.into(),
            run_dir: PathBuf::from(run),
            dataset: "synthetic".into(),
            protocol: "local".into(),
            fold: None,
            seed: 0,
            variant: "MetaKD".into(),
            checkpoint: "model.safetensors".into(),
            modalities: vec!["FLAIR".into()],
            importance_logits: vec![0.0],
            importance: vec![1.0],
            config_toml: String::new(),
            subsets: vec![1],
            cases: cases.iter().map(|c| c.to_string()).collect(),
            skipped: Vec::new(),
            slices: None,
        }
    }

    #[test]
    fn units_of_one_run_merge_and_runs_stay_apart() {
        let merged = merge_infos(vec![
            info("b", &["3"]),
            info("a", &["2"]),
            info("a", &["1"]),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].run_id, "a");
        assert_eq!(merged[0].cases, vec!["1", "2"]);
        assert_eq!(merged[1].cases, vec!["3"]);
    }
}
