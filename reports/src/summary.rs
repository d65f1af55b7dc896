//! The headline numbers of a report, written as `summary.json` beside it.

use serde::Serialize;

use crate::aggregate::GroupTable;

/// Headline numbers of the main configuration of a report (MetaKD, as predicted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The data set.
    pub dataset: String,
    /// The protocol.
    pub protocol: String,
    /// The variant summarised.
    pub variant: String,
    /// Runs averaged.
    pub runs: usize,
    /// Cases per run.
    pub cases: usize,
    /// Mean Dice (ET, TC, WT) over all subsets.
    pub mean_dice: [f64; 3],
    /// Mean HD95 in mm (ET, TC, WT) over all subsets.
    pub mean_hd95: [f64; 3],
    /// Dice (ET, TC, WT) with every modality.
    pub full_dice: [f64; 3],
    /// Mean ET Dice over the subsets that contain the key modality.
    pub et_with_key_modality: f64,
    /// Mean ET Dice over the subsets without it.
    pub et_without_key_modality: f64,
    /// The key modality (T1ce for BraTS).
    pub key_modality: String,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

impl Summary {
    /// Summarises `table`; `key` is the index of the key modality, `key_name` its name.
    pub fn new(table: &GroupTable, key: usize, key_name: &str) -> Self {
        let rows = &table.rows;
        let full = rows
            .iter()
            .max_by_key(|r| r.mask.count_ones())
            .map(|r| r.stats.dice.map(|s| s.mean))
            .unwrap_or([f64::NAN; 3]);
        let et = |with: bool| {
            mean(
                rows.iter()
                    .filter(|r| r.contains(key) == with)
                    .map(|r| r.stats.dice[0].mean),
            )
        };
        Self {
            dataset: table.group.dataset.clone(),
            protocol: table.group.protocol.clone(),
            variant: table.group.variant.clone(),
            runs: table.runs,
            cases: rows.iter().map(|r| r.cases).max().unwrap_or(0),
            mean_dice: table.average.dice.map(|s| s.mean),
            mean_hd95: table.average.hd95.map(|s| s.mean),
            full_dice: full,
            et_with_key_modality: et(true),
            et_without_key_modality: et(false),
            key_modality: key_name.to_owned(),
        }
    }
}
