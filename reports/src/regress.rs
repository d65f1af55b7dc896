//! Regression checks: a run's per-subset results against a committed baseline, within stated
//! tolerances, listing every value that moved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::aggregate::{read_subsets_csv, subset_frame};
use crate::error::{ReportError, Result};
use crate::results::{read_tables, table_error};

/// How far a value may move before it counts as a regression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// Absolute change of a subset's mean Dice (a fraction).
    pub dice: f64,
    /// Absolute change of a subset's mean HD95, in mm.
    pub hd95: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            dice: 0.02,
            hd95: 2.0,
        }
    }
}

/// One value compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `dataset / protocol / variant / checkpoint [post-processed] / subset / region`.
    pub what: String,
    /// `dice` or `hd95`.
    pub metric: &'static str,
    /// The baseline's value.
    pub baseline: f64,
    /// The run's value.
    pub result: f64,
}

impl Change {
    /// result − baseline.
    pub fn delta(&self) -> f64 {
        self.result - self.baseline
    }
}

/// What a regression check found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Regression {
    /// Values compared.
    pub compared: usize,
    /// Values that moved beyond their tolerance, largest first.
    pub moved: Vec<Change>,
    /// The largest change of each metric within tolerance, for the record.
    pub largest_within: Vec<Change>,
    /// Rows of the baseline the run lacks.
    pub missing: Vec<String>,
    /// Rows of the run the baseline lacks.
    pub unexpected: Vec<String>,
}

impl Regression {
    /// Whether the run matches the baseline.
    pub fn passed(&self) -> bool {
        self.moved.is_empty() && self.missing.is_empty() && self.unexpected.is_empty()
    }
}

/// Per-subset results from `path`: a `subsets.csv` written by a report, or sweep tables (a
/// file or a folder of unit tables).
pub fn read_results(path: &Path) -> Result<DataFrame> {
    if path.extension().is_some_and(|e| e == "csv") {
        read_subsets_csv(path)
    } else {
        let read = read_tables(&[path.to_path_buf()])?;
        subset_frame(&read.df, path)
    }
}

type Key = String;

fn rows(df: &DataFrame, path: &Path) -> Result<BTreeMap<Key, (f64, f64)>> {
    let s = |name: &str| -> Result<StringChunked> {
        Ok(df
            .column(name)
            .map_err(table_error(path))?
            .str()
            .map_err(table_error(path))?
            .clone())
    };
    let f = |name: &str| -> Result<Float64Chunked> {
        Ok(df
            .column(name)
            .map_err(table_error(path))?
            .cast(&DataType::Float64)
            .map_err(table_error(path))?
            .f64()
            .map_err(table_error(path))?
            .clone())
    };
    let (dataset, protocol, variant, checkpoint, subset, region) = (
        s("dataset")?,
        s("protocol")?,
        s("variant")?,
        s("checkpoint")?,
        s("subset")?,
        s("region")?,
    );
    let postprocessed = df
        .column("postprocessed")
        .map_err(table_error(path))?
        .bool()
        .map_err(table_error(path))?
        .clone();
    let (dice, hd95) = (f("dice_mean")?, f("hd95_mean")?);
    let mut out = BTreeMap::new();
    for i in 0..df.height() {
        let text = |c: &StringChunked| c.get(i).unwrap_or("").to_owned();
        let key = format!(
            "{} / {} / {} / {}{} / {} / {}",
            text(&dataset),
            text(&protocol),
            text(&variant),
            text(&checkpoint),
            if postprocessed.get(i) == Some(true) {
                " post-processed"
            } else {
                ""
            },
            text(&subset),
            text(&region)
        );
        let value = (dice.get(i), hd95.get(i));
        let (Some(d), Some(h)) = value else {
            return Err(ReportError::BadTable {
                path: path.to_owned(),
                problem: format!("row {i} ({key}) has no mean Dice or HD95"),
            });
        };
        out.insert(key, (d, h));
    }
    Ok(out)
}

/// Compares the per-subset results of `results` with `baseline` (both as [`read_results`]
/// reads them).
pub fn regress(
    baseline: &DataFrame,
    baseline_path: &Path,
    results: &DataFrame,
    results_path: &Path,
    tolerances: Tolerances,
) -> Result<Regression> {
    let base = rows(baseline, baseline_path)?;
    let run = rows(results, results_path)?;
    let mut report = Regression::default();
    let mut largest: [Option<Change>; 2] = [None, None];
    for (key, &(bd, bh)) in &base {
        let Some(&(rd, rh)) = run.get(key) else {
            report.missing.push(key.clone());
            continue;
        };
        for (slot, (metric, b, r, tolerance)) in [
            ("dice", bd, rd, tolerances.dice),
            ("hd95", bh, rh, tolerances.hd95),
        ]
        .into_iter()
        .enumerate()
        {
            report.compared += 1;
            let change = Change {
                what: key.clone(),
                metric,
                baseline: b,
                result: r,
            };
            // A NaN on one side only is a move (the comparison with it is false).
            let within = (b.is_nan() && r.is_nan()) || (r - b).abs() <= tolerance;
            if !within {
                report.moved.push(change);
            } else if largest[slot]
                .as_ref()
                .is_none_or(|l| change.delta().abs() > l.delta().abs())
            {
                largest[slot] = Some(change);
            }
        }
    }
    if report.compared == 0 {
        return Err(ReportError::BadTable {
            path: results_path.to_owned(),
            problem: format!(
                "nothing to compare: the baseline {} has {} subset rows, these results {}, and none \
                 match",
                baseline_path.display(),
                base.len(),
                run.len()
            ),
        });
    }
    report.unexpected = run
        .keys()
        .filter(|k| !base.contains_key(*k))
        .cloned()
        .collect();
    report.moved.sort_by(|a, b| {
        let scale = |c: &Change| {
            c.delta().abs()
                / if c.metric == "dice" {
                    tolerances.dice
                } else {
                    tolerances.hd95
                }
        };
        scale(b).total_cmp(&scale(a))
    });
    report.largest_within = largest.into_iter().flatten().collect();
    Ok(report)
}

/// Reads both sides and compares them.
pub fn regress_files(
    baseline: &Path,
    results: &[PathBuf],
    tolerances: Tolerances,
) -> Result<Regression> {
    let base = read_results(baseline)?;
    let first = results.first().ok_or_else(|| ReportError::BadTable {
        path: PathBuf::from("(no input)"),
        problem: "no results were given".into(),
    })?;
    let run = if results.len() == 1 {
        read_results(first)?
    } else {
        let read = read_tables(results)?;
        subset_frame(&read.df, first)?
    };
    regress(&base, baseline, &run, first, tolerances)
}
