//! Aggregating sweep tables with Polars, the way the paper's tables are made: per run, metrics
//! are averaged over cases for each subset and region (and over the subsets for the average
//! row); several runs of one configuration (folds, seeds) then give a mean ± standard deviation.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;

use crate::error::{ReportError, Result};
use crate::results::table_error;

/// The regions in table order.
pub const REGIONS: [&str; 3] = ["ET", "TC", "WT"];

/// The columns that say which results are averaged together.
const GROUP_COLUMNS: [&str; 5] = [
    "dataset",
    "protocol",
    "variant",
    "checkpoint",
    "postprocessed",
];

/// A mean over runs and, when there are several, their sample standard deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// Mean over runs.
    pub mean: f64,
    /// Sample standard deviation over runs; `None` for a single run.
    pub std: Option<f64>,
}

/// Results averaged together: one data set, protocol, variant and checkpoint, as predicted or
/// post-processed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Group {
    /// The data set.
    pub dataset: String,
    /// The protocol (`A`, `B`, `local`).
    pub protocol: String,
    /// `MetaKD` or an ablation.
    pub variant: String,
    /// The evaluated checkpoint.
    pub checkpoint: String,
    /// Whether the label maps were post-processed.
    pub postprocessed: bool,
}

/// Dice and HD95 per region (ET, TC, WT) of one subset, or of the average over subsets.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionStats {
    /// Dice (a fraction) per region.
    pub dice: [Stat; 3],
    /// HD95 in mm per region.
    pub hd95: [Stat; 3],
}

/// One row of the paper-style table.
#[derive(Debug, Clone, PartialEq)]
pub struct SubsetRow {
    /// Bitmask of the available modalities.
    pub mask: u32,
    /// Their names joined by `+`.
    pub name: String,
    /// Runs averaged.
    pub runs: usize,
    /// Cases per run (the most any run scored).
    pub cases: usize,
    /// The metrics.
    pub stats: RegionStats,
}

impl SubsetRow {
    /// Whether modality `m` is available.
    pub fn contains(&self, m: usize) -> bool {
        self.mask & (1 << m) != 0
    }
}

/// The paper-style table of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupTable {
    /// Which results.
    pub group: Group,
    /// One row per subset in the paper's order (by size, earlier modalities first).
    pub rows: Vec<SubsetRow>,
    /// The average over subsets (per run, then over runs).
    pub average: RegionStats,
    /// Runs averaged.
    pub runs: usize,
}

/// Per run, subset and region: metrics averaged over cases.
fn per_run(df: &DataFrame) -> LazyFrame {
    let mut keys: Vec<Expr> = GROUP_COLUMNS.iter().map(|c| col(*c)).collect();
    keys.extend([
        col("run_id"),
        col("subset_mask"),
        col("subset"),
        col("region"),
    ]);
    df.clone().lazy().group_by(keys).agg([
        col("dice").mean(),
        col("hd95").mean(),
        col("case").count().cast(DataType::UInt32).alias("cases"),
    ])
}

fn over_runs(frame: LazyFrame, keys: &[&str]) -> LazyFrame {
    frame
        .group_by(keys.iter().map(|c| col(*c)).collect::<Vec<_>>())
        .agg([
            col("dice").mean().alias("dice_mean"),
            col("dice").std(1).alias("dice_std"),
            col("hd95").mean().alias("hd95_mean"),
            col("hd95").std(1).alias("hd95_std"),
            col("run_id").count().cast(DataType::UInt32).alias("runs"),
            col("cases").max().alias("cases"),
        ])
}

/// Per group, subset and region: the mean ± std over runs of the per-run means, with the
/// columns `dataset, protocol, variant, checkpoint, postprocessed, subset_mask, subset, region,
/// dice_mean, dice_std, hd95_mean, hd95_std, runs, cases` (`subsets.csv`).
pub fn subset_frame(df: &DataFrame, path: &Path) -> Result<DataFrame> {
    let mut keys = GROUP_COLUMNS.to_vec();
    keys.extend(["subset_mask", "subset", "region"]);
    over_runs(per_run(df), &keys)
        .select(
            keys.iter()
                .map(|c| col(*c))
                .chain(
                    [
                        "dice_mean",
                        "dice_std",
                        "hd95_mean",
                        "hd95_std",
                        "runs",
                        "cases",
                    ]
                    .map(col),
                )
                .collect::<Vec<_>>(),
        )
        .sort_by_exprs(
            keys.iter().map(|c| col(*c)).collect::<Vec<_>>(),
            SortMultipleOptions::default(),
        )
        .collect()
        .map_err(table_error(path))
}

/// Per group and region: the average over subsets, per run, then mean ± std over runs.
pub fn average_frame(df: &DataFrame, path: &Path) -> Result<DataFrame> {
    let mut run_keys = GROUP_COLUMNS.to_vec();
    run_keys.extend(["run_id", "region"]);
    let per_run_average = per_run(df)
        .group_by(run_keys.iter().map(|c| col(*c)).collect::<Vec<_>>())
        .agg([col("dice").mean(), col("hd95").mean(), col("cases").max()]);
    let mut keys = GROUP_COLUMNS.to_vec();
    keys.push("region");
    over_runs(per_run_average, &keys)
        .sort_by_exprs(
            keys.iter().map(|c| col(*c)).collect::<Vec<_>>(),
            SortMultipleOptions::default(),
        )
        .collect()
        .map_err(table_error(path))
}

/// Typed access to the columns of an aggregated frame.
struct Columns<'a> {
    df: &'a DataFrame,
    path: &'a Path,
}

impl Columns<'_> {
    fn bad(&self, problem: String) -> ReportError {
        ReportError::BadTable {
            path: self.path.to_owned(),
            problem,
        }
    }

    fn str(&self, name: &str, i: usize) -> Result<String> {
        let c = self.df.column(name).map_err(table_error(self.path))?;
        let c = c.str().map_err(table_error(self.path))?;
        c.get(i)
            .map(str::to_owned)
            .ok_or_else(|| self.bad(format!("row {i}: {name} is missing")))
    }

    fn f64(&self, name: &str, i: usize) -> Result<Option<f64>> {
        let c = self.df.column(name).map_err(table_error(self.path))?;
        let c = c.cast(&DataType::Float64).map_err(table_error(self.path))?;
        Ok(c.f64().map_err(table_error(self.path))?.get(i))
    }

    fn u32(&self, name: &str, i: usize) -> Result<u32> {
        let c = self.df.column(name).map_err(table_error(self.path))?;
        let c = c.cast(&DataType::UInt32).map_err(table_error(self.path))?;
        c.u32()
            .map_err(table_error(self.path))?
            .get(i)
            .ok_or_else(|| self.bad(format!("row {i}: {name} is missing")))
    }

    fn bool(&self, name: &str, i: usize) -> Result<bool> {
        let c = self.df.column(name).map_err(table_error(self.path))?;
        c.bool()
            .map_err(table_error(self.path))?
            .get(i)
            .ok_or_else(|| self.bad(format!("row {i}: {name} is missing")))
    }

    fn group(&self, i: usize) -> Result<Group> {
        Ok(Group {
            dataset: self.str("dataset", i)?,
            protocol: self.str("protocol", i)?,
            variant: self.str("variant", i)?,
            checkpoint: self.str("checkpoint", i)?,
            postprocessed: self.bool("postprocessed", i)?,
        })
    }

    fn stat(&self, metric: &str, i: usize) -> Result<Stat> {
        let mean = self
            .f64(&format!("{metric}_mean"), i)?
            .ok_or_else(|| self.bad(format!("row {i}: {metric}_mean is missing")))?;
        Ok(Stat {
            mean,
            std: self.f64(&format!("{metric}_std"), i)?,
        })
    }

    fn region(&self, i: usize) -> Result<usize> {
        let region = self.str("region", i)?;
        REGIONS
            .iter()
            .position(|r| *r == region)
            .ok_or_else(|| self.bad(format!("row {i}: unknown region {region}")))
    }
}

const UNSET: Stat = Stat {
    mean: f64::NAN,
    std: None,
};

fn unset_stats() -> RegionStats {
    RegionStats {
        dice: [UNSET; 3],
        hd95: [UNSET; 3],
    }
}

/// The paper-style tables of every group, from [`subset_frame`] and [`average_frame`] (or the
/// `subsets.csv` a report wrote, with an empty `averages`), sorted by group.
pub fn group_tables(
    subsets: &DataFrame,
    averages: &DataFrame,
    path: &Path,
) -> Result<Vec<GroupTable>> {
    let mut tables: BTreeMap<Group, (BTreeMap<u32, SubsetRow>, RegionStats, usize)> =
        BTreeMap::new();
    let columns = Columns { df: subsets, path };
    for i in 0..subsets.height() {
        let group = columns.group(i)?;
        let mask = columns.u32("subset_mask", i)?;
        let region = columns.region(i)?;
        let runs = columns.u32("runs", i)? as usize;
        let entry = tables
            .entry(group)
            .or_insert_with(|| (BTreeMap::new(), unset_stats(), 0));
        entry.2 = entry.2.max(runs);
        let row = entry.0.entry(mask).or_insert_with(|| SubsetRow {
            mask,
            name: String::new(),
            runs,
            cases: 0,
            stats: unset_stats(),
        });
        row.name = columns.str("subset", i)?;
        row.cases = row.cases.max(columns.u32("cases", i)? as usize);
        row.stats.dice[region] = columns.stat("dice", i)?;
        row.stats.hd95[region] = columns.stat("hd95", i)?;
    }
    let columns = Columns { df: averages, path };
    for i in 0..averages.height() {
        let group = columns.group(i)?;
        let region = columns.region(i)?;
        if let Some(entry) = tables.get_mut(&group) {
            entry.1.dice[region] = columns.stat("dice", i)?;
            entry.1.hd95[region] = columns.stat("hd95", i)?;
        }
    }
    Ok(tables
        .into_iter()
        .map(|(group, (rows, average, runs))| {
            let mut rows: Vec<SubsetRow> = rows.into_values().collect();
            rows.sort_by_key(|r| {
                (
                    r.mask.count_ones(),
                    std::cmp::Reverse(r.mask.reverse_bits()),
                )
            });
            GroupTable {
                group,
                rows,
                average,
                runs,
            }
        })
        .collect())
}

/// The paper-style tables of a sweep table (any set of them read as one).
pub fn tables_of(df: &DataFrame, path: &Path) -> Result<Vec<GroupTable>> {
    if df.height() == 0 {
        return Err(ReportError::BadTable {
            path: path.to_owned(),
            problem: "the table has no rows".into(),
        });
    }
    group_tables(&subset_frame(df, path)?, &average_frame(df, path)?, path)
}

/// Reads a `subsets.csv` written by a report.
pub fn read_subsets_csv(path: &Path) -> Result<DataFrame> {
    let schema = Schema::from_iter([
        Field::new("dataset".into(), DataType::String),
        Field::new("protocol".into(), DataType::String),
        Field::new("variant".into(), DataType::String),
        Field::new("checkpoint".into(), DataType::String),
        Field::new("postprocessed".into(), DataType::Boolean),
        Field::new("subset_mask".into(), DataType::UInt32),
        Field::new("subset".into(), DataType::String),
        Field::new("region".into(), DataType::String),
        Field::new("dice_mean".into(), DataType::Float64),
        Field::new("dice_std".into(), DataType::Float64),
        Field::new("hd95_mean".into(), DataType::Float64),
        Field::new("hd95_std".into(), DataType::Float64),
        Field::new("runs".into(), DataType::UInt32),
        Field::new("cases".into(), DataType::UInt32),
    ]);
    CsvReadOptions::default()
        .with_has_header(true)
        .with_schema(Some(Arc::new(schema)))
        .try_into_reader_with_file_path(Some(path.to_owned()))
        .and_then(|reader| reader.finish())
        .map_err(table_error(path))
}

/// Writes `df` as CSV to `path`, atomically.
pub fn write_csv(df: &mut DataFrame, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes)
        .include_header(true)
        .finish(df)
        .map_err(table_error(path))?;
    crate::write_atomic(path, &bytes)
}
