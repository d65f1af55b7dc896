//! Training MetaKD (method spec, sections 2 to 7): stage 1 with all modalities, stage 2 with a
//! random subset per iteration; the task loss plus λ·pairwise KD for the network (SGD, Nesterov
//! momentum, poly schedule); meta phases that take Adam steps on the importance logits w on
//! meta-validation crops with every bottleneck feature scaled by its importance.

pub mod schedule;
pub mod step;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use metakd_data::shards::ShardSet;
use metakd_data::Modality;
use metakd_model::method::{direct_meta_step, lookahead_step, MetaModalities, MetaRule, Subset};
use metakd_model::optim::{Adam, SgdNesterov};
use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::batches::augment::AugmentConfig;
use crate::batches::loader::{BatchLoader, BatchPlan, CaseSet};
use crate::batches::sampler::CropSampler;
use crate::files::{
    CHECKPOINT_FILE, CONFIG_FILE, FINISHED_FILE, LOG_FILE, META_LOG_FILE, MODEL_FILE, SPLIT_FILE,
};
use crate::progress;
use crate::run::checkpoint::{
    load_checkpoint, named_vars, save_checkpoint, LogRow, MetaLogRow, TrainingState,
};
use crate::run::config::RunConfig;
use crate::run::folder::{self, Existing};
use crate::run::model::Model;
use crate::run::splits::Splits;
use crate::tables::write_parquet;
use crate::tracking::client::KeyValue;
use crate::tracking::{config_params, Tracker, TrackingOptions, TrackingReport};
use crate::train::step::{training_step, SegmentationTask};
use metakd_data::files::write_atomic;

/// What a finished training run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Iterations done at the end of the run.
    pub iterations: usize,
    /// Trainable network parameters.
    pub parameters: usize,
    /// Mean total loss over the last tenth of the iterations.
    pub final_loss: f64,
    /// The learned importance ω.
    pub omega: Vec<f32>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Share of the training loop's time spent waiting for batches from the loader.
    pub data_wait_fraction: f64,
    /// What reached the tracking server, when the run was tracked.
    pub tracking: Option<TrackingReport>,
}

/// Which part of the two-stage schedule (method spec, section 7) a run trains.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Stage {
    /// Both stages in one run: all modalities until `train.warmup_iterations`, then random
    /// missing modalities until `train.iterations`.
    #[default]
    Both,
    /// Stage 1 only: stops after `train.warmup_iterations` with a checkpoint.
    Warmup,
    /// Stage 2 only: starts from the checkpoint of the stage-1 run folder `from` (network, both
    /// optimisers, generator) and trains to `train.iterations`; the learning rate follows
    /// `train.lr_schedule` at the same iterations as in one run (see [`crate::train::schedule`]).
    Missing {
        /// The stage-1 run folder.
        from: PathBuf,
    },
}

/// How [`train`] runs.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from the run folder's own checkpoint (written with the same configuration); the
    /// run ends with the weights an uninterrupted run would have.
    pub resume: bool,
    /// Delete the run already in the folder and start anew (without it, a folder holding a run is
    /// refused unless `resume` is set).
    pub overwrite: bool,
    /// The stages to train.
    pub stage: Stage,
    /// Show a progress bar.
    pub show_progress: bool,
    /// Track the run on an MLflow server.
    pub tracking: Option<TrackingOptions>,
    /// Where the network trains.
    pub device: crate::run::device::ComputeDevice,
}

/// Trains the run described by `cfg` into `run_dir` (config, splits, model, log, checkpoint),
/// tracking it on an MLflow server when asked.
pub fn train(cfg: &RunConfig, run_dir: &Path, options: &TrainOptions) -> Result<TrainSummary> {
    cfg.validate()?;
    let existing = match (options.resume, options.overwrite) {
        (true, true) => bail!("--resume continues the run, --overwrite deletes it: give one"),
        (true, false) => Existing::Resume,
        (false, true) => Existing::Overwrite,
        (false, false) => Existing::Refuse,
    };
    let _lock = folder::take(run_dir, existing)?;
    let Some(tracking) = &options.tracking else {
        return train_run(cfg, run_dir, options, None);
    };
    let tracker = Tracker::start(run_dir, tracking.clone())?;
    let result = train_run(cfg, run_dir, options, Some(&tracker));
    let status = if result.is_ok() { "FINISHED" } else { "FAILED" };
    let report = tracker.finish(status);
    let mut summary = result?;
    summary.tracking = Some(report?);
    Ok(summary)
}

/// Metric values of one iteration, as tracked.
fn tracked_metrics(row: &LogRow, waiting: f64) -> Vec<(String, f64)> {
    let mut values = vec![
        ("loss".to_owned(), row.loss),
        ("dice_loss".to_owned(), row.dice),
        ("bce_loss".to_owned(), row.bce),
        ("kd_loss".to_owned(), row.kd),
        ("lr".to_owned(), row.lr),
        ("data_wait_fraction".to_owned(), waiting),
    ];
    for (modality, omega) in metakd_data::Modality::ALL.iter().zip(&row.omega) {
        values.push((format!("omega_{}", modality.suffix()), f64::from(*omega)));
    }
    values
}

fn train_run(
    cfg: &RunConfig,
    run_dir: &Path,
    options: &TrainOptions,
    tracker: Option<&Tracker>,
) -> Result<TrainSummary> {
    let started = Instant::now();
    let device = options.device.open()?;
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("{}: cannot create the run folder", run_dir.display()))?;
    let config_text = cfg.to_toml();
    let t = &cfg.train;
    let end = match options.stage {
        Stage::Warmup if t.warmup_iterations == 0 => {
            bail!("train.warmup_iterations is 0: there is no stage 1 to train")
        }
        Stage::Warmup => t.warmup_iterations,
        _ => t.iterations,
    };
    // Where the starting state comes from: this run's checkpoint, stage 1's, or none.
    let origin = match (&options.stage, options.resume) {
        (_, true) => Some(run_dir.to_owned()),
        (Stage::Missing { from }, false) => Some(from.clone()),
        _ => None,
    };

    let shards = ShardSet::open(&cfg.data.shards)?;
    let splits = match &origin {
        Some(dir) => Splits::read(&dir.join(SPLIT_FILE))?,
        None => Splits::for_run(&cfg.data, shards.manifest())?,
    };
    if !options.resume {
        write_atomic(&run_dir.join(CONFIG_FILE), config_text.as_bytes())?;
        splits.write(&run_dir.join(SPLIT_FILE))?;
    }
    let train_cases = Arc::new(CaseSet::open(&shards, &splits.train)?);
    let meta_cases = CaseSet::open(&shards, &splits.meta_val)?;
    if train_cases.is_empty() {
        bail!(
            "{}: the split has no training cases",
            cfg.data.shards.display()
        )
    }
    if cfg.meta.enabled && meta_cases.is_empty() {
        bail!(
            "{}: the split has no meta-validation case, so ω cannot be meta-learned; give the \
             split meta-validation cases, or set meta.enabled = false for the \"no meta\" ablation",
            cfg.data.shards.display()
        )
    }
    check_crop_fits(t.crop, shards.manifest())?;

    let m = cfg.model.modalities;
    let mut model = Model::new(&cfg.model, t.seed, &device)?;
    if !cfg.meta.enabled {
        // Equal logits: ω = 1/M for every modality, never updated.
        let logits = model.importance.logits();
        logits.set(&logits.zeros_like()?)?;
    }
    let vars = named_vars(&model).into_iter().map(|(_, v)| v).collect();
    let mut sgd = SgdNesterov::new(vars, t.momentum, t.weight_decay);
    let mut adam = Adam::new(
        vec![model.importance.logits().clone()],
        cfg.meta.lr,
        cfg.meta.weight_decay,
    )?;
    let sampler = CropSampler::new(
        t.crop,
        t.foreground_probability,
        t.flips,
        Some(cfg.augment.clone()),
    )
    .with_rule(t.crop_rule);
    let meta_augment = cfg.meta.augment.then_some(&cfg.augment);
    let meta_sampler = CropSampler::new(
        t.crop,
        t.foreground_probability,
        t.flips,
        meta_augment.cloned(),
    )
    .with_rule(t.crop_rule);
    let checkpoint = run_dir.join(CHECKPOINT_FILE);
    let (mut rng, mut log, mut meta_log, start) = match &origin {
        Some(dir) => {
            let path = dir.join(CHECKPOINT_FILE);
            let state = load_checkpoint(&path, &mut model, &mut sgd, &mut adam, &device)?;
            if state.config != config_text {
                bail!(
                    "{}: the checkpoint was written with another configuration; continue with that run's own ({})",
                    path.display(),
                    dir.join(CONFIG_FILE).display()
                )
            }
            if !options.resume && state.iterations_done != t.warmup_iterations {
                bail!(
                    "{}: stage 1 ran {} iterations, train.warmup_iterations is {}",
                    path.display(),
                    state.iterations_done,
                    t.warmup_iterations
                )
            }
            (state.rng, state.log, state.meta_log, state.iterations_done)
        }
        None => (
            ChaCha12Rng::seed_from_u64(t.seed),
            Vec::new(),
            Vec::new(),
            0,
        ),
    };
    // A resumed run whose last iteration is in its checkpoint but whose final files are not
    // (their write failed) only writes them.
    let finished = run_dir.join(FINISHED_FILE).is_file() || !options.resume;
    if start >= end && finished {
        bail!(
            "{}: the run had already finished ({start} of {end} iterations); train a new one into a fresh `--out`",
            run_dir.display()
        )
    }
    let plan = BatchPlan {
        cases: train_cases.clone(),
        sampler: sampler.clone(),
        augment: cfg.augment.clone(),
        batch_size: t.batch_size,
        crop: t.crop,
        seed: t.seed,
    };
    let mut loader = BatchLoader::start(plan, start, t.loader_threads, t.prefetch_batches);
    if let (Some(tracker), false) = (tracker, options.resume) {
        let mut params = config_params(&config_text)?;
        params.push(KeyValue {
            key: "model.parameters".into(),
            value: model.parameter_count().to_string(),
        });
        tracker.log_params(params);
    }
    let loop_started = Instant::now();
    let bar = progress::bar(end as u64, "train", options.show_progress);
    bar.set_position(start as u64);

    for it in start..end {
        let warmup = it < t.warmup_iterations;
        let subset = if warmup {
            Subset::full(m)
        } else {
            Subset::random(m, &mut rng)
        };
        let available = subset.flags(m);
        let (x, y) = loader.next_batch()?.into_tensors(&device)?;
        let lr = t.schedule().learning_rate(it);
        let step = training_step(&model, &mut sgd, (&x, &y), &available, t, lr)?;
        if !step.loss.is_finite() {
            bail!(
                "iteration {it}: the loss is {}; training stopped: {}",
                step.loss,
                kept_checkpoint(&checkpoint)
            )
        }

        let every = if warmup {
            cfg.meta.every_warmup
        } else {
            cfg.meta.every
        };
        if cfg.meta.enabled && (it + 1) % every == 0 && !meta_cases.is_empty() {
            let sources = MetaSources {
                meta_cases: &meta_cases,
                meta_sampler: &meta_sampler,
                meta_augment,
                train_cases: &train_cases,
                train_sampler: &sampler,
                available: &available,
                lr,
            };
            let phase = MetaPhase {
                iteration: it,
                random_subsets: !warmup && cfg.meta.stage2_modalities == MetaModalities::Random,
            };
            meta_phase(
                &model,
                &mut adam,
                &sources,
                phase,
                cfg,
                &mut rng,
                &mut meta_log,
                &device,
            )?;
        }
        let omega = model.importance.omega_values()?;
        let row = LogRow {
            iteration: it as u32,
            subset: subset.0,
            lr,
            loss: step.loss,
            dice: step.dice,
            bce: step.bce,
            kd: step.kd,
            omega,
        };
        let waiting = loader.waited().as_secs_f64() / loop_started.elapsed().as_secs_f64();
        bar.set_message(format!(
            "loss {:.3} (dice {:.3} bce {:.3} kd {:.3}) lr {:.1e} ω [{}] data wait {:.0}%",
            row.loss,
            row.dice,
            row.bce,
            row.kd,
            lr,
            row.omega
                .iter()
                .map(|o| format!("{o:.3}"))
                .collect::<Vec<_>>()
                .join(" "),
            100.0 * waiting
        ));
        bar.inc(1);
        if let Some(tracker) = tracker {
            tracker.log_metrics(it, &tracked_metrics(&row, waiting));
        }
        log.push(row);
        if (it + 1) % t.checkpoint_every == 0 || it + 1 == end {
            if let Some(name) = first_non_finite_parameter(&model)? {
                bail!(
                    "iteration {it}: parameter `{name}` is no longer finite; training stopped: {}",
                    kept_checkpoint(&checkpoint)
                )
            }
            model.save(&run_dir.join(MODEL_FILE))?;
            let state = TrainingState {
                iterations_done: it + 1,
                rng: rng.clone(),
                config: config_text.clone(),
                log: log.clone(),
                meta_log: meta_log.clone(),
            };
            save_checkpoint(&checkpoint, &model, &sgd, &adam, &state)?;
        }
    }
    bar.finish_and_clear();
    write_log(&log, m, &run_dir.join(LOG_FILE))?;
    write_meta_log(&meta_log, m, &run_dir.join(META_LOG_FILE))?;
    if let Some(tracker) = tracker {
        for file in [CONFIG_FILE, SPLIT_FILE, LOG_FILE, META_LOG_FILE, MODEL_FILE] {
            tracker.log_artifact(&run_dir.join(file));
        }
    }
    let tail = &log[log.len() - (log.len() / 10).max(1)..];
    let summary = TrainSummary {
        iterations: end,
        parameters: model.parameter_count(),
        final_loss: tail.iter().map(|r| r.loss).sum::<f64>() / tail.len() as f64,
        omega: model.importance.omega_values()?,
        seconds: started.elapsed().as_secs_f64(),
        data_wait_fraction: loader.waited().as_secs_f64() / loop_started.elapsed().as_secs_f64(),
        tracking: None,
    };
    let finished = serde_json::json!({
        "iterations": summary.iterations,
        "parameters": summary.parameters,
        "final_loss": summary.final_loss,
        "omega": summary.omega,
        "seconds": summary.seconds,
    });
    write_atomic(
        &run_dir.join(FINISHED_FILE),
        serde_json::to_string_pretty(&finished)?.as_bytes(),
    )?;
    Ok(summary)
}

/// Refuses a crop larger than the largest case (its original volume) along any axis: such a
/// crop would be mostly padding, and its memory grows with its volume. A crop larger than some
/// cases, or than a case's stored brain box, is padded, as the reference pads.
fn check_crop_fits(crop: [usize; 3], manifest: &metakd_data::shards::Manifest) -> Result<()> {
    let mut largest = [0usize; 3];
    for case in &manifest.cases {
        for (l, e) in largest.iter_mut().zip(case.original_shape) {
            *l = (*l).max(e);
        }
    }
    if crop.iter().zip(largest).any(|(&c, l)| c > l) {
        bail!(
            "train.crop {crop:?} is larger than every case along some axis (the largest volumes \
             span {largest:?}, D×H×W); choose a crop within them"
        )
    }
    Ok(())
}

/// What a stopped run leaves to resume from.
fn kept_checkpoint(checkpoint: &Path) -> String {
    if checkpoint.is_file() {
        format!("the last checkpoint, {}, is kept", checkpoint.display())
    } else {
        format!(
            "no checkpoint was written yet (one is written to {} every `train.checkpoint_every` iterations)",
            checkpoint.display()
        )
    }
}

/// The name of a network parameter or importance logit holding a NaN or infinite value, if any.
fn first_non_finite_parameter(model: &Model) -> Result<Option<String>> {
    let finite = |t: &Tensor| -> Result<bool> {
        Ok(t.flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|v| v.is_finite()))
    };
    for (name, var) in named_vars(model) {
        if !finite(var.as_tensor())? {
            return Ok(Some(name));
        }
    }
    if !finite(model.importance.logits().as_tensor())? {
        return Ok(Some(crate::run::model::IMPORTANCE_KEY.to_owned()));
    }
    Ok(None)
}

/// Where a meta phase draws its crops: meta-validation crops (augmented as training crops unless
/// `meta.augment` is off) and, for the `lookahead` rule, training crops with the iteration's
/// modalities.
struct MetaSources<'a> {
    meta_cases: &'a CaseSet,
    meta_sampler: &'a CropSampler,
    meta_augment: Option<&'a AugmentConfig>,
    train_cases: &'a CaseSet,
    train_sampler: &'a CropSampler,
    available: &'a [bool],
    lr: f64,
}

/// When a meta phase runs and what its samples see.
#[derive(Debug, Clone, Copy)]
struct MetaPhase {
    /// The training iteration it follows.
    iteration: usize,
    /// Each sample draws its own subset of modalities (stage 2 of the `direct` rule).
    random_subsets: bool,
}

/// One meta phase: `meta.samples` Adam steps on w alone, each from one meta-validation crop
/// (batch 1; all modalities, or a random subset per sample in stage 2), by the configured rule,
/// with the convolutions in `train.precision`. Every step is appended to `meta_log`.
#[allow(clippy::too_many_arguments)]
fn meta_phase(
    model: &Model,
    adam: &mut Adam,
    sources: &MetaSources,
    phase: MetaPhase,
    cfg: &RunConfig,
    rng: &mut impl Rng,
    meta_log: &mut Vec<MetaLogRow>,
    device: &Device,
) -> Result<()> {
    let t = &cfg.train;
    let m = cfg.model.modalities;
    let _precision = metakd_model::ops::autocast(t.precision);
    for _ in 0..cfg.meta.samples {
        let val = sources
            .meta_cases
            .batch(sources.meta_sampler, sources.meta_augment, 1, t.crop, rng)?
            .into_tensors(device)?;
        let subset = if phase.random_subsets && cfg.meta.rule == MetaRule::Direct {
            Subset::random(m, rng)
        } else {
            Subset::full(m)
        };
        let task = SegmentationTask::new(model, t);
        let loss = match cfg.meta.rule {
            MetaRule::Direct => direct_meta_step(
                &task,
                &model.importance,
                adam,
                (&val.0, &val.1),
                &subset.flags(m),
            )?,
            MetaRule::Lookahead => {
                let train = sources
                    .train_cases
                    .batch(
                        sources.train_sampler,
                        Some(&cfg.augment),
                        t.batch_size,
                        t.crop,
                        rng,
                    )?
                    .into_tensors(device)?;
                lookahead_step(
                    &task,
                    &model.importance,
                    adam,
                    ((&train.0, &train.1), sources.available),
                    (&val.0, &val.1),
                    &t.kd_settings(),
                    sources.lr,
                )?;
                f64::NAN
            }
        };
        meta_log.push(MetaLogRow {
            iteration: phase.iteration as u32,
            subset: subset.0,
            loss,
            omega: model.importance.omega_values()?,
        });
    }
    Ok(())
}

/// Writes the meta steps as Parquet: iteration, subset (bitmask and name), loss and ω after each
/// step.
fn write_meta_log(rows: &[MetaLogRow], m: usize, path: &Path) -> Result<()> {
    let mut columns = vec![
        Column::new(
            "iteration".into(),
            rows.iter().map(|r| r.iteration).collect::<Vec<_>>(),
        ),
        Column::new(
            "subset".into(),
            rows.iter().map(|r| r.subset).collect::<Vec<_>>(),
        ),
        Column::new(
            "modalities".into(),
            rows.iter()
                .map(|r| Subset(r.subset).name(&Modality::DISPLAY_NAMES))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "loss".into(),
            rows.iter().map(|r| r.loss).collect::<Vec<_>>(),
        ),
    ];
    columns.extend(omega_columns(rows.iter().map(|r| r.omega.as_slice()), m));
    let mut df = DataFrame::new(rows.len(), columns)?;
    write_parquet(&mut df, path)
}

/// One `omega_<modality>` column per modality of the ω rows `omegas`.
fn omega_columns<'a>(omegas: impl Iterator<Item = &'a [f32]> + Clone, m: usize) -> Vec<Column> {
    metakd_data::Modality::ALL
        .iter()
        .enumerate()
        .take(m)
        .map(|(i, modality)| {
            Column::new(
                format!("omega_{}", modality.suffix()).into(),
                omegas.clone().map(|o| o[i]).collect::<Vec<_>>(),
            )
        })
        .collect()
}

/// Writes the training log as Parquet.
fn write_log(log: &[LogRow], m: usize, path: &Path) -> Result<()> {
    let mut columns = vec![
        Column::new(
            "iteration".into(),
            log.iter().map(|r| r.iteration).collect::<Vec<_>>(),
        ),
        Column::new(
            "subset".into(),
            log.iter().map(|r| r.subset).collect::<Vec<_>>(),
        ),
        Column::new("lr".into(), log.iter().map(|r| r.lr).collect::<Vec<_>>()),
        Column::new(
            "loss".into(),
            log.iter().map(|r| r.loss).collect::<Vec<_>>(),
        ),
        Column::new(
            "dice_loss".into(),
            log.iter().map(|r| r.dice).collect::<Vec<_>>(),
        ),
        Column::new(
            "bce_loss".into(),
            log.iter().map(|r| r.bce).collect::<Vec<_>>(),
        ),
        Column::new(
            "kd_loss".into(),
            log.iter().map(|r| r.kd).collect::<Vec<_>>(),
        ),
    ];
    columns.extend(omega_columns(log.iter().map(|r| r.omega.as_slice()), m));
    let mut df = DataFrame::new(log.len(), columns)?;
    write_parquet(&mut df, path)
}
