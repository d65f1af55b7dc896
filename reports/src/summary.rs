//! The headline numbers of a sweep, written as `summary.json` beside the report.

use serde::Serialize;

use crate::sweep_table::SubsetDice;

/// Headline numbers of one sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The run's id.
    pub run_id: String,
    /// Cases evaluated.
    pub cases: usize,
    /// Mean Dice (ET, TC, WT) over all subsets.
    pub mean_dice: [f64; 3],
    /// Dice (ET, TC, WT) with every modality.
    pub full_dice: [f64; 3],
    /// Mean ET Dice over the subsets that contain the named key modality.
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
    /// Summarises `rows` (one per subset); `key` is the index of the key modality.
    pub fn new(
        run_id: &str,
        cases: usize,
        rows: &[SubsetDice],
        key: usize,
        key_name: &str,
    ) -> Self {
        let full = rows
            .iter()
            .max_by_key(|r| r.mask.count_ones())
            .map(|r| r.dice)
            .unwrap_or([f64::NAN; 3]);
        Self {
            run_id: run_id.to_owned(),
            cases,
            mean_dice: std::array::from_fn(|i| mean(rows.iter().map(|r| r.dice[i]))),
            full_dice: full,
            et_with_key_modality: mean(rows.iter().filter(|r| r.contains(key)).map(|r| r.dice[0])),
            et_without_key_modality: mean(
                rows.iter().filter(|r| !r.contains(key)).map(|r| r.dice[0]),
            ),
            key_modality: key_name.to_owned(),
        }
    }
}
