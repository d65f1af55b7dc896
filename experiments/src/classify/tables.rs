//! MetaKD on modality tables with real missingness (Flex-MoE's ADNI setting, or the AD CSF
//! stand-in): a seeded stratified split, features standardised on the training subjects,
//! batches of subjects sharing their availability, the spec's random missing modalities on top,
//! a meta step on held-out training subjects, and test accuracy and macro-F1 for every subset
//! of modalities (each subject keeps the modalities of the subset it has). Then every seed ×
//! variant as a unit into the common result table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use metakd_data::adni::{TabularDataset, TabularSubject};
use metakd_model::method::{
    direct_meta_step, training_loss, ImportanceWeights, KdDistance, KdPairs, KdSettings, Subset,
};
use metakd_model::nets::fused_head::ClassificationTask;
use metakd_model::nets::init::reinitialize_seeded;
use metakd_model::nets::tabular::{TabularClassifier, TabularConfig};
use metakd_model::optim::Adam;
use metakd_reports::results::{
    self, ClassificationRun, ResultRow, ResultRows, RowScores, RunInfo, TEST_CASE,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::metrics::classification::{class_scores, ClassScores};
use crate::units::{run_units, Schedule};

/// What is trained on the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TabularVariant {
    /// Mean fill, pairwise KD weighted by meta-learned ω.
    MetaKd,
    /// MetaKD without the distillation loss.
    NoKd,
    /// MetaKD with ω kept uniform.
    NoMeta,
    /// Late fusion: missing modalities' features zero-filled, no KD, no meta step.
    Fusion,
}

impl TabularVariant {
    /// The name in result tables.
    pub fn label(self) -> &'static str {
        match self {
            TabularVariant::MetaKd => "MetaKD",
            TabularVariant::NoKd => "no KD",
            TabularVariant::NoMeta => "no meta",
            TabularVariant::Fusion => "late fusion",
        }
    }

    fn key(self) -> &'static str {
        match self {
            TabularVariant::MetaKd => "meta-kd",
            TabularVariant::NoKd => "no-kd",
            TabularVariant::NoMeta => "no-meta",
            TabularVariant::Fusion => "fusion",
        }
    }

    fn fills(self) -> bool {
        self != TabularVariant::Fusion
    }
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TabularTrainConfig {
    /// Hidden and embedding widths (inputs and classes come from the data).
    pub hidden: usize,
    /// Embedding width.
    pub embedding: usize,
    /// What is trained.
    pub variant: TabularVariant,
    /// Seed of the split, initialisation and batches.
    pub seed: u64,
    /// Share of the subjects (per class) held out for testing.
    pub test_share: f64,
    /// Share of the training subjects (per class) held out for the meta step.
    pub meta_share: f64,
    /// Iterations.
    pub iterations: usize,
    /// Subjects per batch.
    pub batch_size: usize,
    /// Adam learning rate of the network.
    pub lr: f64,
    /// Adam weight decay of the network.
    pub weight_decay: f64,
    /// Weight λ of the distillation loss.
    pub kd_weight: f64,
    /// A meta step every this many iterations.
    pub meta_every: usize,
    /// Adam learning rate of the importance logits.
    pub meta_lr: f64,
}

impl Default for TabularTrainConfig {
    fn default() -> Self {
        Self {
            hidden: 64,
            embedding: 32,
            variant: TabularVariant::MetaKd,
            seed: 0,
            test_share: 0.2,
            meta_share: 0.1,
            iterations: 1000,
            batch_size: 32,
            lr: 1e-3,
            weight_decay: 1e-4,
            kd_weight: 0.1,
            meta_every: 10,
            meta_lr: 1e-2,
        }
    }
}

/// Test scores with one subset of modalities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TabularSubsetScore {
    /// The subset as a bitmask over the data set's modalities.
    pub mask: u32,
    /// Its modalities' names joined by `+`.
    pub subset: String,
    /// Test subjects having at least one modality of the subset (the ones scored).
    pub subjects: usize,
    /// Accuracy and macro-F1 over them.
    pub scores: ClassScores,
}

/// One trained variant's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TabularResult {
    /// The settings.
    pub config: TabularTrainConfig,
    /// Per subset of modalities.
    pub scores: Vec<TabularSubsetScore>,
    /// ω per modality at the end.
    pub omega: Vec<f32>,
}

/// The modalities a subject has, as flags.
fn flags(s: &TabularSubject) -> Vec<bool> {
    s.values.iter().map(Option::is_some).collect()
}

/// Per class, the subjects shuffled and cut: `share` of each class to the second list.
fn stratified<'a>(
    subjects: &[&'a TabularSubject],
    share: f64,
    rng: &mut impl Rng,
) -> (Vec<&'a TabularSubject>, Vec<&'a TabularSubject>) {
    let mut by_class: BTreeMap<u8, Vec<&TabularSubject>> = BTreeMap::new();
    for s in subjects {
        by_class.entry(s.label).or_default().push(s);
    }
    let (mut kept, mut held) = (Vec::new(), Vec::new());
    for (_, mut members) in by_class {
        members.shuffle(rng);
        let cut = ((members.len() as f64) * share).round() as usize;
        held.extend_from_slice(&members[..cut]);
        kept.extend_from_slice(&members[cut..]);
    }
    (kept, held)
}

/// Per modality, the mean and standard deviation of each feature over the training subjects
/// that have it (a constant feature gets 1).
struct Standardiser {
    stats: Vec<Vec<(f32, f32)>>,
}

impl Standardiser {
    fn fit(train: &[&TabularSubject], widths: &[usize]) -> Self {
        let stats = widths
            .iter()
            .enumerate()
            .map(|(m, &width)| {
                let rows: Vec<&Vec<f32>> =
                    train.iter().filter_map(|s| s.values[m].as_ref()).collect();
                (0..width)
                    .map(|f| {
                        let n = rows.len().max(1) as f64;
                        let mean = rows.iter().map(|r| f64::from(r[f])).sum::<f64>() / n;
                        let var = rows
                            .iter()
                            .map(|r| (f64::from(r[f]) - mean).powi(2))
                            .sum::<f64>()
                            / n;
                        let std = if var > 1e-12 { var.sqrt() } else { 1.0 };
                        (mean as f32, std as f32)
                    })
                    .collect()
            })
            .collect();
        Self { stats }
    }

    /// The inputs `[n, features]` per modality of `subjects`; a missing modality gives zeros
    /// (the training mean).
    fn inputs(&self, subjects: &[&TabularSubject], device: &Device) -> Result<Vec<Tensor>> {
        self.stats
            .iter()
            .enumerate()
            .map(|(m, stats)| {
                let values: Vec<f32> = subjects
                    .iter()
                    .flat_map(|s| match &s.values[m] {
                        Some(v) => v
                            .iter()
                            .zip(stats)
                            .map(|(x, (mean, std))| (x - mean) / std)
                            .collect::<Vec<_>>(),
                        None => vec![0.0; stats.len()],
                    })
                    .collect();
                Ok(Tensor::from_vec(
                    values,
                    (subjects.len(), stats.len()),
                    device,
                )?)
            })
            .collect()
    }
}

fn labels(subjects: &[&TabularSubject], device: &Device) -> Result<Tensor> {
    let l: Vec<u32> = subjects.iter().map(|s| u32::from(s.label)).collect();
    Ok(Tensor::from_vec(l, subjects.len(), device)?)
}

/// Trains `cfg.variant` on `data` and scores every subset of its modalities on the test split.
pub fn train_and_evaluate(
    data: &TabularDataset,
    cfg: &TabularTrainConfig,
) -> Result<TabularResult> {
    let device = Device::Cpu;
    let m = data.manifest.modalities.len();
    let widths: Vec<usize> = data.manifest.features.iter().map(Vec::len).collect();
    let mut rng = ChaCha12Rng::seed_from_u64(cfg.seed);
    let all: Vec<&TabularSubject> = data.subjects.iter().collect();
    let (train, test) = stratified(&all, cfg.test_share, &mut rng);
    let uses_meta = matches!(cfg.variant, TabularVariant::MetaKd | TabularVariant::NoKd);
    let (train, meta_val) = if uses_meta {
        stratified(&train, cfg.meta_share, &mut rng)
    } else {
        (train, Vec::new())
    };
    if train.is_empty() || test.is_empty() || (uses_meta && meta_val.is_empty()) {
        bail!("{} subjects are too few to split", data.subjects.len())
    }
    let scaler = Standardiser::fit(&train, &widths);
    // Subjects grouped by the modalities they have.
    let mut groups: BTreeMap<Vec<bool>, Vec<&TabularSubject>> = BTreeMap::new();
    for s in &train {
        groups.entry(flags(s)).or_default().push(s);
    }
    let groups: Vec<(Vec<bool>, Vec<&TabularSubject>)> = groups.into_iter().collect();

    let varmap = VarMap::new();
    let model_cfg = TabularConfig {
        hidden: cfg.hidden,
        embedding: cfg.embedding,
        classes: data.manifest.classes.len(),
        inputs: widths.clone(),
    };
    let net = TabularClassifier::new(
        &model_cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
    )?;
    reinitialize_seeded(&varmap, cfg.seed)?;
    let importance = ImportanceWeights::from_logits(&vec![0.0; m], &device)?;
    let params: Vec<Var> = varmap.all_vars();
    let mut adam = Adam::new(params.clone(), cfg.lr, cfg.weight_decay)?;
    let task = ClassificationTask::new(&net, &params);
    let mut meta_adam = Adam::new(vec![importance.logits().clone()], cfg.meta_lr, 5e-4)?;

    // The meta step sees every modality: held-out subjects that have all (all held-out ones
    // when none has).
    let complete: Vec<&TabularSubject> = meta_val
        .iter()
        .copied()
        .filter(|s| flags(s).iter().all(|&a| a))
        .collect();
    let meta_pool = if complete.is_empty() {
        &meta_val
    } else {
        &complete
    };

    for iteration in 0..cfg.iterations {
        let pick = rng.random_range(0..train.len());
        let mut seen = 0;
        let (own, group) = groups
            .iter()
            .find(|(_, g)| {
                seen += g.len();
                pick < seen
            })
            .expect("the groups cover the training subjects");
        let chosen: Vec<&TabularSubject> = (0..cfg.batch_size)
            .map(|_| group[rng.random_range(0..group.len())])
            .collect();
        let inputs = scaler.inputs(&chosen, &device)?;
        let available = if cfg.variant.fills() {
            Subset::from_flags(own).random_among(&mut rng).flags(m)
        } else {
            vec![true; m]
        };
        let kd = KdSettings {
            enabled: matches!(cfg.variant, TabularVariant::MetaKd | TabularVariant::NoMeta),
            weight: cfg.kd_weight,
            distance: KdDistance::L1,
            pairs: KdPairs::All,
        };
        let targets = labels(&chosen, &device)?;
        let loss = training_loss(&task, &importance, (&inputs, &targets), &available, &kd)?;
        adam.step(&loss.total.backward()?)?;
        if uses_meta && iteration % cfg.meta_every == 0 {
            let chosen: Vec<&TabularSubject> = (0..cfg.batch_size.min(meta_pool.len()))
                .map(|_| meta_pool[rng.random_range(0..meta_pool.len())])
                .collect();
            direct_meta_step(
                &task,
                &importance,
                &mut meta_adam,
                (
                    &scaler.inputs(&chosen, &device)?,
                    &labels(&chosen, &device)?,
                ),
                &vec![true; m],
            )?;
        }
    }

    let names = &data.manifest.modalities;
    let mut scores = Vec::new();
    for mask in 1u32..(1 << m) {
        let in_subset: Vec<bool> = (0..m).map(|i| mask & (1 << i) != 0).collect();
        let mut by_flags: BTreeMap<Vec<bool>, Vec<&TabularSubject>> = BTreeMap::new();
        for s in &test {
            let kept: Vec<bool> = flags(s)
                .iter()
                .zip(&in_subset)
                .map(|(a, b)| *a && *b)
                .collect();
            if kept.iter().any(|&k| k) {
                by_flags.entry(kept).or_default().push(s);
            }
        }
        let (mut predicted, mut truth) = (Vec::new(), Vec::new());
        for (kept, subjects) in &by_flags {
            let mut inputs = scaler.inputs(subjects, &device)?;
            let flags_used = if cfg.variant.fills() {
                kept.clone()
            } else {
                for (i, k) in kept.iter().enumerate() {
                    if !k {
                        inputs[i] = inputs[i].zeros_like()?;
                    }
                }
                vec![true; m]
            };
            let logits = net.classify(&net.encode(&inputs)?, &flags_used)?;
            predicted.extend(logits.argmax(1)?.to_vec1::<u32>()?);
            truth.extend(subjects.iter().map(|s| u32::from(s.label)));
        }
        let subset: Vec<&str> = (0..m)
            .filter(|&i| in_subset[i])
            .map(|i| names[i].as_str())
            .collect();
        scores.push(TabularSubsetScore {
            mask,
            subset: subset.join("+"),
            subjects: truth.len(),
            scores: class_scores(&predicted, &truth, data.manifest.classes.len()),
        });
    }
    Ok(TabularResult {
        config: cfg.clone(),
        scores,
        omega: importance.omega_values()?,
    })
}

/// What [`run_tables`] did.
#[derive(Debug, Clone)]
pub struct TablesOutcome {
    /// Units trained now.
    pub trained: usize,
    /// Units found finished.
    pub already_done: usize,
    /// The result table.
    pub table: PathBuf,
}

/// Trains every seed × variant missing from `out_dir/units` and writes the result table
/// (`results.parquet`, protocol `real missingness`).
pub fn run_tables(
    data: &TabularDataset,
    base: &TabularTrainConfig,
    seeds: &[u64],
    variants: &[TabularVariant],
    out_dir: &Path,
    show_progress: bool,
) -> Result<TablesOutcome> {
    let units: Vec<(String, TabularTrainConfig)> = variants
        .iter()
        .flat_map(|&variant| {
            seeds.iter().map(move |&seed| {
                let config = TabularTrainConfig {
                    variant,
                    seed,
                    ..base.clone()
                };
                (format!("{}-seed-{seed}", variant.key()), config)
            })
        })
        .collect();
    let done = run_units(
        &units,
        out_dir,
        Schedule::OneAtATime,
        "table units",
        show_progress,
        |config| train_and_evaluate(data, config),
    )?;
    let (trained, already_done, results) = (done.trained, done.already_done, done.results);
    let units_dir = out_dir.join("units");

    let dataset = &data.manifest.dataset;
    let infos = results
        .iter()
        .map(|r| {
            let run = ClassificationRun {
                run_id: format!(
                    "{dataset}-{}-seed-{}",
                    r.config.variant.key(),
                    r.config.seed
                ),
                run_dir: units_dir.clone(),
                dataset: dataset.clone(),
                protocol: REAL_MISSINGNESS.into(),
                seed: r.config.seed,
                variant: r.config.variant.label().into(),
                modalities: data.manifest.modalities.clone(),
                config_toml: toml::to_string(&r.config)?,
            };
            let subsets = r.scores.iter().map(|s| s.mask).collect();
            Ok(RunInfo::classification(run, &r.omega, subsets))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rows = ResultRows::default();
    for (r, info) in results.iter().zip(&infos) {
        for s in &r.scores {
            rows.push(ResultRow {
                info,
                case: TEST_CASE.into(),
                subset_mask: s.mask,
                subset: s.subset.clone(),
                scores: RowScores::Classification {
                    rate: None,
                    accuracy: s.scores.accuracy,
                    f1: s.scores.macro_f1,
                },
            });
        }
    }
    let table = out_dir.join("results.parquet");
    let mut df = rows.frame()?;
    results::write_sidecar(&table, &infos)?;
    results::write_table(&mut df, &table)?;
    Ok(TablesOutcome {
        trained,
        already_done,
        table,
    })
}

/// The protocol of modality tables: the subjects' own missing modalities.
pub const REAL_MISSINGNESS: &str = "real missingness";
