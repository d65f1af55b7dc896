//! Reading a sweep's result table (one row per case × subset) and its sidecar, and aggregating
//! Dice per subset with Polars.

use std::path::Path;

use polars::prelude::*;
use serde::Deserialize;

use crate::error::{ReportError, Result};

/// What the sweep wrote beside its table (`sweep.json`); unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SweepInfo {
    /// The run's id.
    pub run_id: String,
    /// Modality names in channel order.
    pub modalities: Vec<String>,
    /// Learned importance logits w.
    pub importance_logits: Vec<f32>,
    /// Learned importance ω.
    pub importance: Vec<f32>,
    /// The run's configuration (TOML).
    pub config_toml: String,
    /// Cases evaluated.
    pub cases: Vec<String>,
    /// Cases skipped, with the reason.
    #[serde(default)]
    pub skipped: Vec<(String, String)>,
}

impl SweepInfo {
    /// Reads the sidecar of `table` (`<table>.json`).
    pub fn read_beside(table: &Path) -> Result<Self> {
        let path = table.with_extension("json");
        let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Json { path, source })
    }
}

/// Mean Dice of one modality subset over the evaluated cases.
#[derive(Debug, Clone, PartialEq)]
pub struct SubsetDice {
    /// Bitmask of available modalities (bit m = modality m).
    pub mask: u32,
    /// Names of the available modalities joined by `+`.
    pub name: String,
    /// Cases averaged.
    pub cases: usize,
    /// Mean Dice of ET, TC and WT.
    pub dice: [f64; 3],
}

impl SubsetDice {
    /// Whether modality `m` is available.
    pub fn contains(&self, m: usize) -> bool {
        self.mask & (1 << m) != 0
    }

    /// Mean of ET, TC and WT.
    pub fn mean(&self) -> f64 {
        self.dice.iter().sum::<f64>() / 3.0
    }
}

fn table_error(path: &Path) -> impl FnOnce(PolarsError) -> ReportError + '_ {
    move |source| ReportError::Table {
        path: path.to_owned(),
        source,
    }
}

/// Reads a sweep table.
pub fn read_table(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })?;
    ParquetReader::new(file).finish().map_err(table_error(path))
}

/// Mean Dice per subset in the paper's table order: by the number of modalities, then with
/// earlier modalities first.
pub fn dice_per_subset(df: &DataFrame, path: &Path) -> Result<Vec<SubsetDice>> {
    let aggregated = df
        .clone()
        .lazy()
        .group_by([col("subset_mask"), col("subset")])
        .agg([
            col("case").count().alias("cases"),
            col("dice_et").mean(),
            col("dice_tc").mean(),
            col("dice_wt").mean(),
        ])
        .collect()
        .map_err(table_error(path))?;
    let column = |name: &str| aggregated.column(name).map_err(table_error(path));
    let masks = column("subset_mask")?
        .u32()
        .map_err(table_error(path))?
        .clone();
    let names = column("subset")?.str().map_err(table_error(path))?.clone();
    let counts = column("cases")?
        .cast(&DataType::UInt64)
        .map_err(table_error(path))?;
    let counts = counts.u64().map_err(table_error(path))?.clone();
    let regions = ["dice_et", "dice_tc", "dice_wt"]
        .iter()
        .map(|r| Ok(column(r)?.f64().map_err(table_error(path))?.clone()))
        .collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::with_capacity(aggregated.height());
    for i in 0..aggregated.height() {
        let missing = || ReportError::BadTable {
            path: path.to_owned(),
            problem: format!("row {i} has missing values"),
        };
        rows.push(SubsetDice {
            mask: masks.get(i).ok_or_else(missing)?,
            name: names.get(i).ok_or_else(missing)?.to_owned(),
            cases: counts.get(i).ok_or_else(missing)? as usize,
            dice: [
                regions[0].get(i).ok_or_else(missing)?,
                regions[1].get(i).ok_or_else(missing)?,
                regions[2].get(i).ok_or_else(missing)?,
            ],
        });
    }
    if rows.is_empty() {
        return Err(ReportError::BadTable {
            path: path.to_owned(),
            problem: "the table has no rows".into(),
        });
    }
    rows.sort_by_key(|r| {
        (
            r.mask.count_ones(),
            std::cmp::Reverse(r.mask.reverse_bits()),
        )
    });
    Ok(rows)
}
