//! The run configuration: one TOML file holding every knob of a run, saved into the run folder.
//! Every field has a documented default (see `docs/configuration.md`); unknown keys are errors.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use metakd_data::preprocess::PreparedCase;
use metakd_model::losses::DiceReduction;
use metakd_model::method::{KdDistance, KdPairs, KdSettings, MetaModalities, MetaRule};
use metakd_model::nets::SegmenterConfig;
use metakd_model::ops::Precision;
use serde::{Deserialize, Serialize};

use crate::batches::sampler::CropRule;
use crate::run::checks::KeyChecks;
use crate::train::schedule::{LrSchedule, PolySchedule};

/// Which cases train, meta-validate and test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Folder of prepared shards (holding `manifest.json`).
    pub shards: PathBuf,
    /// A split file written by `metakd split`; when set, `test_cases`, `meta_val_cases` and
    /// `split_seed` are not used.
    pub split: Option<PathBuf>,
    /// Cases held out for evaluation (the last ones after a seeded shuffle).
    pub test_cases: usize,
    /// Training cases taken out as the meta-validation split.
    pub meta_val_cases: usize,
    /// Seed of the shuffle that assigns cases to splits.
    pub split_seed: u64,
    /// The data set's name in result tables and reports (default: the shards' release, e.g.
    /// `brats2020`); reports set published numbers beside a run only for the same data set.
    pub dataset: Option<String>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            shards: PathBuf::from("shards"),
            split: None,
            test_cases: 8,
            meta_val_cases: 4,
            split_seed: 0,
            dataset: None,
        }
    }
}

/// Network optimisation and the missing-modality schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Total iterations (stage 1 and stage 2).
    pub iterations: usize,
    /// Stage 1: iterations with all modalities before random missing modalities start.
    pub warmup_iterations: usize,
    /// Crops per batch.
    pub batch_size: usize,
    /// Crop extents (d, h, w); each divisible by the network's size divisor.
    pub crop: [usize; 3],
    /// Initial learning rate of SGD.
    pub lr: f64,
    /// Nesterov momentum of SGD.
    pub momentum: f64,
    /// L2 weight decay of SGD.
    pub weight_decay: f64,
    /// Exponent of the poly schedule lr = lr0 · (1 − t/T)^power.
    pub poly_power: f64,
    /// How the poly schedule spans the two stages: `per_stage` (the reference's restart) or
    /// `single`.
    pub lr_schedule: LrSchedule,
    /// How the soft Dice loss gathers its sums: `per_sample` (the reference's, per sample and
    /// region) or `pooled` (over the batch, smoothing in the numerator too).
    pub dice: DiceReduction,
    /// Probability of centring a crop on a foreground voxel.
    pub foreground_probability: f64,
    /// Where crops are placed and how they are flipped: `whole_volume` (the reference's, in the
    /// original volume with its margins and flip rule) or `brain_box`.
    pub crop_rule: CropRule,
    /// Whether the pairwise distillation loss is used (`false` is the "without KD" ablation).
    pub kd: bool,
    /// Weight λ of the distillation loss.
    pub kd_weight: f64,
    /// Distance of the distillation loss.
    pub kd_distance: KdDistance,
    /// Which pairs distil.
    pub kd_pairs: KdPairs,
    /// Random flips of the crops along each axis.
    pub flips: bool,
    /// Seed of every random choice of the run.
    pub seed: u64,
    /// Write a checkpoint every this many iterations (and at the end).
    pub checkpoint_every: usize,
    /// Background threads cutting training batches from the shards.
    pub loader_threads: usize,
    /// Finished batches the loader may hold ahead of training.
    pub prefetch_batches: usize,
    /// Arithmetic of the convolutions in training steps and meta phases: `f32`, or `bf16`
    /// mixed precision (operands and results rounded to bf16, f32 accumulation; parameters,
    /// norms and losses stay f32). See docs/gpu.md.
    pub precision: Precision,
}

impl TrainConfig {
    /// The learning-rate schedule of the network's SGD.
    pub fn schedule(&self) -> PolySchedule {
        PolySchedule {
            lr: self.lr,
            power: self.poly_power,
            warmup_iterations: self.warmup_iterations,
            iterations: self.iterations,
            kind: self.lr_schedule,
        }
    }

    /// The distillation term of the training loss.
    pub fn kd_settings(&self) -> KdSettings {
        KdSettings {
            enabled: self.kd,
            weight: self.kd_weight,
            distance: self.kd_distance,
            pairs: self.kd_pairs,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            iterations: 600,
            warmup_iterations: 200,
            batch_size: 2,
            crop: [32, 32, 32],
            lr: 1e-2,
            momentum: 0.99,
            weight_decay: 0.0,
            poly_power: 0.9,
            lr_schedule: LrSchedule::PerStage,
            dice: DiceReduction::PerSample,
            foreground_probability: 0.5,
            crop_rule: CropRule::WholeVolume,
            kd: true,
            kd_weight: 0.1,
            kd_distance: KdDistance::L1,
            kd_pairs: KdPairs::All,
            flips: true,
            seed: 0,
            checkpoint_every: 200,
            loader_threads: 2,
            prefetch_batches: 4,
            precision: Precision::F32,
        }
    }
}

/// The meta phases that learn the importance logits w.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaConfig {
    /// Whether w is meta-learned; `false` keeps ω uniform (1/M), the "without meta-learning"
    /// ablation.
    pub enabled: bool,
    /// How a meta phase computes the gradient of w: `direct` (the reference) or `lookahead`.
    pub rule: MetaRule,
    /// Run a meta phase every this many iterations during stage 1.
    pub every_warmup: usize,
    /// Run a meta phase every this many iterations during stage 2.
    pub every: usize,
    /// Which modalities stage 2's meta passes see: `random` (a subset per sample, the
    /// reference) or `all`.
    pub stage2_modalities: MetaModalities,
    /// Meta-validation crops (batch 1) per meta phase.
    pub samples: usize,
    /// Whether meta-validation crops are drawn and augmented exactly as training crops (scale,
    /// crop rule, flips, `[augment]`), as the reference; `false`: plain crops (no scaling, no
    /// intensity augmentation).
    pub augment: bool,
    /// Adam learning rate of w.
    pub lr: f64,
    /// Adam L2 weight decay of w.
    pub weight_decay: f64,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rule: MetaRule::Direct,
            every_warmup: 50,
            every: 50,
            stage2_modalities: MetaModalities::Random,
            samples: 4,
            augment: true,
            lr: 1e-2,
            weight_decay: 5e-4,
        }
    }
}

/// How the probabilities of overlapping tiles are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TileWeighting {
    /// Every voxel of a tile counts the same (the reference behaviour).
    #[default]
    Uniform,
    /// A Gaussian centred on the tile, σ = 1/8 of the tile along each axis (nnU-Net's importance
    /// map): voxels near a tile's border, which see less context, count less.
    Gaussian,
}

/// The grid the sliding window covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EvalWindow {
    /// The whole original volume (the reference's): the stored brain box put back in its zero
    /// background; predictions outside the box count.
    #[default]
    WholeVolume,
    /// The stored brain box only; everything outside it is predicted background.
    BrainBox,
}

impl EvalWindow {
    /// `case` on the grid this window covers.
    pub fn place(self, case: PreparedCase) -> PreparedCase {
        match self {
            EvalWindow::WholeVolume => case.on_whole_volume(),
            EvalWindow::BrainBox => case,
        }
    }
}

/// Sliding-window inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Fraction of the tile shared by neighbouring tiles.
    pub overlap: f64,
    /// Probability above which a voxel belongs to a region.
    pub threshold: f32,
    /// Weighting of overlapping tiles.
    pub weighting: TileWeighting,
    /// Tiles run through the network together.
    pub tile_batch: usize,
    /// The grid the window covers: `whole_volume` (the reference's) or `brain_box`.
    pub window: EvalWindow,
    /// Also score the label maps after the spec's post-processing (small tumour components
    /// removed, a small ET relabelled as necrotic core); the sweep reports both.
    pub postprocess: bool,
    /// Which post-processing `postprocess` runs: `reference` (the reference's `postprocess.py`)
    /// or `components26`.
    pub postprocess_rule: crate::eval::postprocess::PostprocessRule,
    /// Arithmetic of the convolutions at inference: `f32`, or `bf16` (as `train.precision`).
    pub precision: Precision,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            overlap: 1.0 / 3.0,
            threshold: 0.5,
            weighting: TileWeighting::Uniform,
            tile_batch: 2,
            window: EvalWindow::WholeVolume,
            postprocess: false,
            postprocess_rule: crate::eval::postprocess::PostprocessRule::Reference,
            precision: Precision::F32,
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Cases and splits.
    pub data: DataConfig,
    /// The network.
    pub model: SegmenterConfig,
    /// Optimisation.
    pub train: TrainConfig,
    /// Meta-learning of the importance weights.
    pub meta: MetaConfig,
    /// Intensity augmentation of the training crops.
    pub augment: crate::batches::augment::AugmentConfig,
    /// Evaluation.
    pub eval: EvalConfig,
}

impl RunConfig {
    /// Parses a configuration from TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let config: RunConfig =
            toml::from_str(text).with_context(|| format!("{origin}: invalid configuration"))?;
        config
            .validate()
            .with_context(|| format!("{origin}: invalid configuration"))?;
        Ok(config)
    }

    /// Reads and checks a configuration file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the configuration", path.display()))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the configuration serialises")
    }

    /// Checks values that would otherwise fail deep inside training.
    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        self.model.check().map_err(anyhow::Error::msg)?;
        let divisors = self.model.size_divisors();
        if t.crop
            .iter()
            .zip(divisors)
            .any(|(&c, d)| c == 0 || c % d != 0)
        {
            bail!(
                "train.crop {:?}: the extents must be positive multiples of {divisors:?} for this \
                 network",
                t.crop
            )
        }
        if t.warmup_iterations > t.iterations {
            bail!(
                "train.warmup_iterations ({}) exceeds train.iterations ({})",
                t.warmup_iterations,
                t.iterations
            )
        }
        if self.model.modalities != 4 {
            bail!("model.modalities must be 4 for BraTS (FLAIR, T1, T1ce, T2)")
        }
        let mut checks = KeyChecks::default();
        checks.at_least_one("train.iterations", t.iterations);
        checks.at_least_one("train.batch_size", t.batch_size);
        checks.positive("train.lr", t.lr);
        checks.fraction("train.momentum", t.momentum);
        checks.non_negative("train.weight_decay", t.weight_decay);
        checks.non_negative("train.poly_power", t.poly_power);
        checks.probability("train.foreground_probability", t.foreground_probability);
        checks.non_negative("train.kd_weight", t.kd_weight);
        checks.at_least_one("train.checkpoint_every", t.checkpoint_every);
        checks.at_least_one("train.loader_threads", t.loader_threads);
        checks.at_least_one("train.prefetch_batches", t.prefetch_batches);
        let m = &self.meta;
        checks.at_least_one("meta.every", m.every);
        checks.at_least_one("meta.every_warmup", m.every_warmup);
        checks.non_negative("meta.lr", m.lr);
        checks.non_negative("meta.weight_decay", m.weight_decay);
        if m.enabled {
            // Meta-learning with nothing to learn from would leave ω uniform while the results
            // still say MetaKD.
            checks.require(m.samples > 0, || {
                "meta.samples = 0 with meta.enabled = true: must be at least 1 (or set \
                 meta.enabled = false for the \"no meta\" ablation)"
                    .into()
            });
            checks.require(
                self.data.split.is_some() || self.data.meta_val_cases > 0,
                || {
                    "data.meta_val_cases = 0 with meta.enabled = true: must be at least 1 (or set \
                 meta.enabled = false for the \"no meta\" ablation)"
                        .into()
                },
            );
        }
        checks.fraction("eval.overlap", self.eval.overlap);
        checks.probability("eval.threshold", f64::from(self.eval.threshold));
        checks.at_least_one("eval.tile_batch", self.eval.tile_batch);
        self.augment.check(&mut checks);
        checks.finish().map_err(anyhow::Error::msg)?;
        Ok(())
    }
}
