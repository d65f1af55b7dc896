//! The rows of the common result table, built once for every task: a row names its run and
//! checkpoint (from the run's [`RunInfo`]), its case and modality subset, and carries either a
//! segmentation region's scores or a classifier's accuracy and F1.

use polars::prelude::*;

use super::{RunInfo, CLASSIFICATION, COLUMNS, SEGMENTATION};

/// The `case` of a classification row: the whole test split.
pub const TEST_CASE: &str = "test";

/// A segmentation region's scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionScores {
    /// Dice.
    pub dice: f64,
    /// 95th percentile Hausdorff distance (mm).
    pub hd95: f64,
    /// Sensitivity.
    pub sensitivity: f64,
    /// Specificity.
    pub specificity: f64,
}

/// What a row scores.
#[derive(Debug, Clone, PartialEq)]
pub enum RowScores {
    /// One region of a segmentation, raw or post-processed.
    Segmentation {
        /// `ET`, `TC` or `WT`.
        region: String,
        /// Whether post-processing was applied.
        postprocessed: bool,
        /// The scores.
        scores: RegionScores,
    },
    /// A classifier on the test split.
    Classification {
        /// The missing rate the row is shown under (fraction keeping the modality), if any.
        rate: Option<f64>,
        /// Accuracy (fraction).
        accuracy: f64,
        /// Macro-F1 (fraction).
        f1: f64,
    },
}

/// One row of the result table.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow<'a> {
    /// The run and checkpoint.
    pub info: &'a RunInfo,
    /// The case (`test` for classification).
    pub case: String,
    /// The modality subset as a bitmask.
    pub subset_mask: u32,
    /// Its modalities' names joined by `+`.
    pub subset: String,
    /// The scores.
    pub scores: RowScores,
}

/// Rows gathered for one table.
#[derive(Debug, Clone, Default)]
pub struct ResultRows<'a>(Vec<ResultRow<'a>>);

impl<'a> ResultRows<'a> {
    /// Adds a row.
    pub fn push(&mut self, row: ResultRow<'a>) {
        self.0.push(row);
    }

    /// The rows as a table with the columns [`COLUMNS`], in that order.
    pub fn frame(&self) -> PolarsResult<DataFrame> {
        let rows = &self.0;
        let n = rows.len();
        let text = |f: &dyn Fn(&ResultRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
        let segmentation = |f: fn(&RegionScores) -> f64| {
            rows.iter()
                .map(|r| match &r.scores {
                    RowScores::Segmentation { scores, .. } => Some(f(scores)),
                    RowScores::Classification { .. } => None,
                })
                .collect::<Vec<_>>()
        };
        let classification = |f: fn(Option<f64>, f64, f64) -> Option<f64>| {
            rows.iter()
                .map(|r| match r.scores {
                    RowScores::Classification { rate, accuracy, f1 } => f(rate, accuracy, f1),
                    RowScores::Segmentation { .. } => None,
                })
                .collect::<Vec<_>>()
        };
        let columns = vec![
            Column::new("run_id".into(), text(&|r| r.info.run_id.clone())),
            Column::new(
                "task".into(),
                text(&|r| {
                    match r.scores {
                        RowScores::Segmentation { .. } => SEGMENTATION,
                        RowScores::Classification { .. } => CLASSIFICATION,
                    }
                    .to_owned()
                }),
            ),
            Column::new("dataset".into(), text(&|r| r.info.dataset.clone())),
            Column::new("protocol".into(), text(&|r| r.info.protocol.clone())),
            Column::new("rate".into(), classification(|rate, _, _| rate)),
            Column::new(
                "fold".into(),
                rows.iter().map(|r| r.info.fold).collect::<Vec<_>>(),
            ),
            Column::new(
                "seed".into(),
                rows.iter().map(|r| r.info.seed).collect::<Vec<_>>(),
            ),
            Column::new("variant".into(), text(&|r| r.info.variant.clone())),
            Column::new("checkpoint".into(), text(&|r| r.info.checkpoint.clone())),
            Column::new("case".into(), text(&|r| r.case.clone())),
            Column::new(
                "subset_mask".into(),
                rows.iter().map(|r| r.subset_mask).collect::<Vec<_>>(),
            ),
            Column::new("subset".into(), text(&|r| r.subset.clone())),
            Column::new(
                "region".into(),
                rows.iter()
                    .map(|r| match &r.scores {
                        RowScores::Segmentation { region, .. } => Some(region.clone()),
                        RowScores::Classification { .. } => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "postprocessed".into(),
                rows.iter()
                    .map(|r| {
                        matches!(
                            r.scores,
                            RowScores::Segmentation {
                                postprocessed: true,
                                ..
                            }
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
            Column::new("dice".into(), segmentation(|s| s.dice)),
            Column::new("hd95".into(), segmentation(|s| s.hd95)),
            Column::new("sensitivity".into(), segmentation(|s| s.sensitivity)),
            Column::new("specificity".into(), segmentation(|s| s.specificity)),
            Column::new("accuracy".into(), classification(|_, a, _| Some(a))),
            Column::new("f1".into(), classification(|_, _, f1| Some(f1))),
        ];
        debug_assert!(columns.iter().map(|c| c.name().as_str()).eq(COLUMNS));
        DataFrame::new(n, columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            run_id: "r".into(),
            run_dir: "runs/r".into(),
            dataset: "synthetic".into(),
            protocol: "local".into(),
            fold: Some(1),
            seed: 3,
            variant: "MetaKD".into(),
            checkpoint: "final".into(),
            modalities: vec!["a".into(), "b".into()],
            importance_logits: vec![0.0, 0.0],
            importance: vec![0.5, 0.5],
            config_toml: String::new(),
            subsets: vec![1, 2, 3],
            cases: vec!["c".into()],
            skipped: Vec::new(),
            slices: None,
        }
    }

    #[test]
    fn both_tasks_fill_their_own_columns_of_one_schema() {
        let info = info();
        let mut rows = ResultRows::default();
        rows.push(ResultRow {
            info: &info,
            case: "c".into(),
            subset_mask: 3,
            subset: "a+b".into(),
            scores: RowScores::Segmentation {
                region: "WT".into(),
                postprocessed: true,
                scores: RegionScores {
                    dice: 0.9,
                    hd95: 2.0,
                    sensitivity: 0.8,
                    specificity: 1.0,
                },
            },
        });
        rows.push(ResultRow {
            info: &info,
            case: TEST_CASE.into(),
            subset_mask: 1,
            subset: "a".into(),
            scores: RowScores::Classification {
                rate: Some(0.1),
                accuracy: 0.7,
                f1: 0.6,
            },
        });
        let df = rows.frame().unwrap();
        let names: Vec<&str> = df.get_column_names().iter().map(|c| c.as_str()).collect();
        assert_eq!(names, COLUMNS);
        let task: Vec<_> = df.column("task").unwrap().str().unwrap().iter().collect();
        assert_eq!(task, [Some(SEGMENTATION), Some(CLASSIFICATION)]);
        let dice: Vec<_> = df.column("dice").unwrap().f64().unwrap().iter().collect();
        assert_eq!(dice, [Some(0.9), None]);
        let f1: Vec<_> = df.column("f1").unwrap().f64().unwrap().iter().collect();
        assert_eq!(f1, [None, Some(0.6)]);
        let rate: Vec<_> = df.column("rate").unwrap().f64().unwrap().iter().collect();
        assert_eq!(rate, [None, Some(0.1)]);
        let region: Vec<_> = df.column("region").unwrap().str().unwrap().iter().collect();
        assert_eq!(region, [Some("WT"), None]);
        let fold: Vec<_> = df.column("fold").unwrap().u32().unwrap().iter().collect();
        assert_eq!(fold, [Some(1), Some(1)]);
    }
}
