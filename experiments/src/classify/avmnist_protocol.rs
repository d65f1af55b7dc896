//! The AV-MNIST protocol: every missing rate of the audio (and of the image) × seed × variant
//! trained and scored as one unit, units run side by side and resumed when interrupted, and
//! the scores written as the common result table (`results.parquet`, task `classification`).
//!
//! A unit's result is `OUT/units/<key>.json`; a unit whose file exists is not trained again.
//! The single-modality baseline of the modality a rate does not touch (image only under the
//! audio rates, audio only under the visual rates) does not depend on the rate: it is one unit
//! per seed, and its rows are repeated under every rate.

use std::path::{Path, PathBuf};

use anyhow::Result;
use metakd_data::avmnist::dataset::AvMnistSample;
use metakd_reports::results::{
    self, ClassificationRun, ResultRow, ResultRows, RowScores, RunInfo, TEST_CASE,
};

use crate::classify::avmnist::{
    reads_only_the_other, train_and_evaluate, AvMnistResult, AvMnistTrainConfig, RateModality,
    Variant, MODALITIES,
};
use crate::units::{run_units, Schedule};

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
    let keyed: Vec<(String, &Unit)> = all.iter().map(|u| (u.key(), u)).collect();
    let done = run_units(
        &keyed,
        out_dir,
        Schedule::OnePerThread,
        "AV-MNIST units",
        show_progress,
        |unit| train_and_evaluate(samples, &unit.config),
    )?;
    let results: Vec<(&Unit, AvMnistResult)> = all.iter().zip(done.results).collect();
    let table = out_dir.join("results.parquet");
    write_results(&results, out_dir, &table)?;
    Ok(ProtocolOutcome {
        trained: done.trained,
        already_done: done.already_done,
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
    let infos = results
        .iter()
        .map(|(unit, result)| {
            let c = &unit.config;
            let run = ClassificationRun {
                run_id: unit.key(),
                run_dir: out_dir.join("units"),
                dataset: "avmnist".into(),
                protocol: protocol_label(c.rate_modality).into(),
                seed: c.seed,
                variant: variant_label(c.variant).into(),
                modalities: MODALITIES.iter().map(|m| m.to_string()).collect(),
                config_toml: toml::to_string(c)?,
            };
            let subsets = result
                .scores
                .iter()
                .map(|s| subset_of(s.available).0)
                .collect();
            Ok(RunInfo::classification(run, &result.omega, subsets))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rows = ResultRows::default();
    for ((unit, result), info) in results.iter().zip(&infos) {
        for &rate in &unit.shown_at {
            for s in &result.scores {
                let (mask, name) = subset_of(s.available);
                rows.push(ResultRow {
                    info,
                    case: TEST_CASE.into(),
                    subset_mask: mask,
                    subset: name,
                    scores: RowScores::Classification {
                        rate: Some(rate),
                        accuracy: s.scores.accuracy,
                        f1: s.scores.macro_f1,
                    },
                });
            }
        }
    }
    let mut df = rows.frame()?;
    results::write_sidecar(table, &infos)?;
    results::write_table(&mut df, table)?;
    Ok(())
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
