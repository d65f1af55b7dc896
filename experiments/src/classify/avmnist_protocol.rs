//! The AV-MNIST protocol: every missing rate of the audio (and of the image) × seed × variant
//! trained and scored as one unit, units run side by side and resumed when interrupted, and
//! the scores written as the common result table (`results.parquet`, task `classification`).
//!
//! A unit's result is `OUT/units/<key>.json`; a unit whose file exists is not trained again.
//! The single-modality baseline of the modality a rate does not touch (image only under the
//! audio rates, audio only under the visual rates) does not depend on the rate: it is one unit
//! per seed, and its rows are repeated under every rate.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use metakd_data::avmnist::dataset::AvMnistSample;
use metakd_reports::sweep_table::{self, SweepInfo};
use polars::prelude::*;

use crate::classify::avmnist::{
    reads_only_the_other, train_and_evaluate, AvMnistResult, AvMnistTrainConfig, RateModality,
    Variant, MODALITIES,
};
use crate::files::write_atomic;
use crate::progress;

/// What the protocol runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolPlan {
    /// The modalities whose rate is varied.
    pub rate_modalities: Vec<RateModality>,
    /// The rates (fractions of the training samples keeping the modality).
    pub rates: Vec<f64>,
    /// Training seeds.
    pub seeds: Vec<u64>,
    /// Variants trained under every rate.
    pub variants: Vec<Variant>,
}

impl Default for ProtocolPlan {
    /// SMIL's protocol as MetaKD reports it: audio and visual rates 5, 10, 15 and 20 %, three
    /// seeds, MetaKD, its two ablations and the three baselines.
    fn default() -> Self {
        Self {
            rate_modalities: vec![RateModality::Audio, RateModality::Image],
            rates: vec![0.05, 0.10, 0.15, 0.20],
            seeds: vec![0, 1, 2],
            variants: vec![
                Variant::MetaKd,
                Variant::NoKd,
                Variant::NoMeta,
                Variant::Fusion,
                Variant::ImageOnly,
                Variant::AudioOnly,
            ],
        }
    }
}

/// One trained and scored configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The settings it trains with.
    pub config: AvMnistTrainConfig,
    /// The rates whose tables show it (one, or all for a rate-independent baseline).
    pub shown_at: Vec<f64>,
}

impl Unit {
    /// The unit's file name stem, e.g. `audio-rate-05-meta-kd-seed-0`.
    pub fn key(&self) -> String {
        let c = &self.config;
        let rate = if reads_only_the_other(c) {
            "all".to_string()
        } else {
            format!("{:02}", (c.rate * 100.0).round() as u32)
        };
        format!(
            "{}-rate-{rate}-{}-seed-{}",
            modality_name(c.rate_modality),
            variant_key(c.variant),
            c.seed
        )
    }
}

fn modality_name(m: RateModality) -> &'static str {
    match m {
        RateModality::Image => "visual",
        RateModality::Audio => "audio",
    }
}

fn variant_key(v: Variant) -> &'static str {
    match v {
        Variant::MetaKd => "meta-kd",
        Variant::NoKd => "no-kd",
        Variant::NoMeta => "no-meta",
        Variant::Fusion => "fusion",
        Variant::ImageOnly => "image-only",
        Variant::AudioOnly => "audio-only",
    }
}

/// The variant's name in result tables (the segmentation ablations' names where they exist).
pub fn variant_label(v: Variant) -> &'static str {
    match v {
        Variant::MetaKd => "MetaKD",
        Variant::NoKd => "no KD",
        Variant::NoMeta => "no meta",
        Variant::Fusion => "late fusion",
        Variant::ImageOnly => "image only",
        Variant::AudioOnly => "audio only",
    }
}

/// The protocol's name in result tables.
pub fn protocol_label(m: RateModality) -> &'static str {
    match m {
        RateModality::Image => "visual rate",
        RateModality::Audio => "audio rate",
    }
}

/// The units of `plan`, each with `base`'s other settings.
pub fn units(plan: &ProtocolPlan, base: &AvMnistTrainConfig) -> Vec<Unit> {
    let mut out: Vec<Unit> = Vec::new();
    for &rate_modality in &plan.rate_modalities {
        for &variant in &plan.variants {
            for &seed in &plan.seeds {
                let config = |rate: f64| AvMnistTrainConfig {
                    variant,
                    rate,
                    rate_modality,
                    seed,
                    ..base.clone()
                };
                if reads_only_the_other(&config(1.0)) {
                    out.push(Unit {
                        config: config(1.0),
                        shown_at: plan.rates.clone(),
                    });
                } else {
                    out.extend(plan.rates.iter().map(|&rate| Unit {
                        config: config(rate),
                        shown_at: vec![rate],
                    }));
                }
            }
        }
    }
    out
}

/// What a protocol run did.
#[derive(Debug, Clone)]
pub struct ProtocolOutcome {
    /// Units trained now.
    pub trained: usize,
    /// Units found finished.
    pub already_done: usize,
    /// The result table (`OUT/results.parquet`, sidecar `results.json`).
    pub table: PathBuf,
}

fn unit_path(out_dir: &Path, unit: &Unit) -> PathBuf {
    out_dir.join("units").join(format!("{}.json", unit.key()))
}

fn read_unit(path: &Path) -> Result<AvMnistResult> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a unit result", path.display()))
}

/// Trains and scores every unit of `plan` missing from `out_dir` (as many at a time as the
/// compute pool has threads), then writes the result table of all of them.
pub fn run_protocol(
    samples: &[AvMnistSample],
    base: &AvMnistTrainConfig,
    plan: &ProtocolPlan,
    out_dir: &Path,
    show_progress: bool,
) -> Result<ProtocolOutcome> {
    let all = units(plan, base);
    std::fs::create_dir_all(out_dir.join("units"))
        .with_context(|| format!("creating {}", out_dir.join("units").display()))?;
    let todo: Vec<&Unit> = all
        .iter()
        .filter(|u| !unit_path(out_dir, u).exists())
        .collect();
    let already_done = all.len() - todo.len();
    let bar = progress::bar(todo.len() as u64, "AV-MNIST units", show_progress);
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    // One worker per compute thread, each training its units on a single-thread pool of its
    // own: the small network gains nothing from two threads per step, and a unit's result does
    // not depend on how many run beside it.
    let workers = rayon::current_num_threads().min(todo.len()).max(1);
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
                    while let Some(unit) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let result = pool
                            .install(|| train_and_evaluate(samples, &unit.config))
                            .with_context(|| format!("unit {}", unit.key()))?;
                        let json = serde_json::to_string_pretty(&result)?;
                        write_atomic(&unit_path(out_dir, unit), format!("{json}\n").as_bytes())?;
                        finished.fetch_add(1, Ordering::Relaxed);
                        bar.inc(1);
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("a unit worker panicked")?;
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let results = all
        .iter()
        .map(|u| Ok((u, read_unit(&unit_path(out_dir, u))?)))
        .collect::<Result<Vec<_>>>()?;
    let table = out_dir.join("results.parquet");
    write_results(&results, out_dir, &table)?;
    Ok(ProtocolOutcome {
        trained: finished.into_inner(),
        already_done,
        table,
    })
}

/// The subset's bitmask and name (`image+audio`, `image`, `audio`).
fn subset_of(available: [bool; 2]) -> (u32, String) {
    let mask = available
        .iter()
        .enumerate()
        .filter(|(_, &a)| a)
        .fold(0u32, |m, (i, _)| m | 1 << i);
    let names: Vec<&str> = MODALITIES
        .iter()
        .zip(available)
        .filter(|(_, a)| *a)
        .map(|(n, _)| *n)
        .collect();
    (mask, names.join("+"))
}

/// Writes the units' scores as one result table with its sidecar.
fn write_results(results: &[(&Unit, AvMnistResult)], out_dir: &Path, table: &Path) -> Result<()> {
    let mut rows = ClassificationRows::default();
    let mut infos = Vec::new();
    for (unit, result) in results {
        let c = &unit.config;
        let run_id = unit.key();
        for &rate in &unit.shown_at {
            for s in &result.scores {
                let (mask, name) = subset_of(s.available);
                rows.push(ClassificationRow {
                    run_id: run_id.clone(),
                    dataset: "avmnist".into(),
                    protocol: protocol_label(c.rate_modality).into(),
                    rate: Some(rate),
                    seed: c.seed,
                    variant: variant_label(c.variant).into(),
                    subset_mask: mask,
                    subset: name,
                    accuracy: s.scores.accuracy,
                    f1: s.scores.macro_f1,
                });
            }
        }
        infos.push(SweepInfo {
            run_id: run_id.clone(),
            run_dir: out_dir.join("units"),
            dataset: "avmnist".into(),
            protocol: protocol_label(c.rate_modality).into(),
            fold: None,
            seed: c.seed,
            variant: variant_label(c.variant).into(),
            checkpoint: "final".into(),
            modalities: MODALITIES.iter().map(|m| m.to_string()).collect(),
            importance_logits: result.omega.iter().map(|w| w.ln()).collect(),
            importance: result.omega.clone(),
            config_toml: toml::to_string(c)?,
            subsets: result
                .scores
                .iter()
                .map(|s| subset_of(s.available).0)
                .collect(),
            cases: vec![TEST_CASE.into()],
            skipped: Vec::new(),
            slices: None,
        });
    }
    let mut df = rows.frame()?;
    sweep_table::write_sidecar(table, &infos)?;
    sweep_table::write_table(&mut df, table)?;
    Ok(())
}

/// The `case` of a classification row: the whole test split.
pub const TEST_CASE: &str = "test";

/// One row of a classification result table.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationRow {
    /// The run.
    pub run_id: String,
    /// The data set.
    pub dataset: String,
    /// The protocol (`audio rate`, `visual rate`, `real missingness`).
    pub protocol: String,
    /// The missing rate the row is shown under (fraction keeping the modality), if any.
    pub rate: Option<f64>,
    /// Training seed.
    pub seed: u64,
    /// The variant.
    pub variant: String,
    /// Test modalities as a bitmask.
    pub subset_mask: u32,
    /// Test modalities by name.
    pub subset: String,
    /// Accuracy (fraction).
    pub accuracy: f64,
    /// Macro-F1 (fraction).
    pub f1: f64,
}

/// Rows gathered for a table with the common columns ([`sweep_table::COLUMNS`]).
#[derive(Debug, Clone, Default)]
pub struct ClassificationRows(Vec<ClassificationRow>);

impl ClassificationRows {
    /// Adds a row.
    pub fn push(&mut self, row: ClassificationRow) {
        self.0.push(row);
    }

    /// The rows as a table: task `classification`, case `test`, no fold, region or
    /// segmentation metrics.
    pub fn frame(&self) -> Result<DataFrame> {
        let rows = &self.0;
        let n = rows.len();
        let text = |f: fn(&ClassificationRow) -> &str| {
            rows.iter().map(|r| f(r).to_owned()).collect::<Vec<_>>()
        };
        let null_f64 = |name: &str| Column::full_null(name.into(), n, &DataType::Float64);
        let columns = vec![
            Column::new("run_id".into(), text(|r| &r.run_id)),
            Column::new("task".into(), vec![sweep_table::CLASSIFICATION; n]),
            Column::new("dataset".into(), text(|r| &r.dataset)),
            Column::new("protocol".into(), text(|r| &r.protocol)),
            Column::new(
                "rate".into(),
                rows.iter().map(|r| r.rate).collect::<Vec<_>>(),
            ),
            Column::new("fold".into(), vec![None::<u32>; n]),
            Column::new(
                "seed".into(),
                rows.iter().map(|r| r.seed).collect::<Vec<_>>(),
            ),
            Column::new("variant".into(), text(|r| &r.variant)),
            Column::new("checkpoint".into(), vec!["final"; n]),
            Column::new("case".into(), vec![TEST_CASE; n]),
            Column::new(
                "subset_mask".into(),
                rows.iter().map(|r| r.subset_mask).collect::<Vec<_>>(),
            ),
            Column::new("subset".into(), text(|r| &r.subset)),
            Column::new("region".into(), vec![None::<&str>; n]),
            Column::new("postprocessed".into(), vec![false; n]),
            null_f64("dice"),
            null_f64("hd95"),
            null_f64("sensitivity"),
            null_f64("specificity"),
            Column::new(
                "accuracy".into(),
                rows.iter().map(|r| r.accuracy).collect::<Vec<_>>(),
            ),
            Column::new("f1".into(), rows.iter().map(|r| r.f1).collect::<Vec<_>>()),
        ];
        Ok(DataFrame::new(n, columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_plan_has_one_unit_per_seed_for_the_untouched_baseline() {
        let units = units(&ProtocolPlan::default(), &AvMnistTrainConfig::default());
        // Per protocol: 5 rate-dependent variants × 4 rates × 3 seeds + 3 shared baselines.
        assert_eq!(units.len(), 2 * (5 * 4 * 3 + 3));
        let image_only: Vec<&Unit> = units
            .iter()
            .filter(|u| {
                u.config.variant == Variant::ImageOnly
                    && u.config.rate_modality == RateModality::Audio
            })
            .collect();
        assert_eq!(image_only.len(), 3);
        assert_eq!(image_only[0].shown_at, vec![0.05, 0.10, 0.15, 0.20]);
        assert_eq!(image_only[0].key(), "audio-rate-all-image-only-seed-0");
        let keys: std::collections::BTreeSet<String> = units.iter().map(Unit::key).collect();
        assert_eq!(keys.len(), units.len(), "keys are unique");
        assert!(keys.contains("visual-rate-05-meta-kd-seed-2"));
    }

    #[test]
    fn subsets_are_named_by_their_modalities() {
        assert_eq!(subset_of([true, true]), (3, "image+audio".into()));
        assert_eq!(subset_of([false, true]), (2, "audio".into()));
    }
}
