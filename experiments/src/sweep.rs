//! The modality-subset sweep: every held-out case of a run evaluated for all 2^M − 1 subsets,
//! written as one Parquet table (one row per case × subset) and a `sweep.json` beside it with
//! the run's importance weights and settings.

use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::Device;
use metakd_data::shards::ShardSet;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Model;
use crate::config::RunConfig;
use crate::evaluate::Inference;
use crate::files::{write_atomic, CONFIG_FILE, MODEL_FILE, SPLIT_FILE};
use crate::metrics::{RegionMetrics, REGIONS};
use crate::progress;
use crate::splits::Splits;
use crate::subsets::Subset;
use crate::tables::write_parquet;

/// What a sweep records beside its table (`<table>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepInfo {
    /// The run's id (its folder name).
    pub run_id: String,
    /// The run folder.
    pub run_dir: PathBuf,
    /// Modality names in channel order.
    pub modalities: Vec<String>,
    /// Learned importance logits w.
    pub importance_logits: Vec<f32>,
    /// Learned importance ω = softmax(w).
    pub importance: Vec<f32>,
    /// The run's configuration (TOML).
    pub config_toml: String,
    /// Cases evaluated.
    pub cases: Vec<String>,
    /// Cases that could not be evaluated, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Where the sidecar of a sweep table lives: `sweep.parquet` → `sweep.json`.
pub fn info_path(table: &Path) -> PathBuf {
    table.with_extension("json")
}

/// Evaluates the run in `run_dir` on its test split (shards from the run's configuration unless
/// `shards` overrides them) and writes the table to `out`.
pub fn sweep(
    run_dir: &Path,
    shards: Option<&Path>,
    out: &Path,
    show_progress: bool,
) -> Result<SweepInfo> {
    let device = Device::Cpu;
    if !run_dir.is_dir() {
        anyhow::bail!("{}: no such run folder", run_dir.display())
    }
    let cfg = RunConfig::read(&run_dir.join(CONFIG_FILE))?;
    let shards = shards
        .map(Path::to_owned)
        .unwrap_or_else(|| cfg.data.shards.clone());
    let splits = Splits::read(&run_dir.join(SPLIT_FILE))?;
    let model = Model::load(&run_dir.join(MODEL_FILE), &cfg.model, &device)?;
    let shard_set = ShardSet::open(&shards)?;
    let m = cfg.model.modalities;
    let subsets = Subset::all(m);
    let (inference, zero) = Inference::of_run(&model, &cfg, &device)?;
    let run_id = run_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "run".into());

    let bar = progress::bar(splits.test.len() as u64, "sweep", show_progress);
    let (mut rows, mut cases, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for id in &splits.test {
        bar.set_message(id.clone());
        let scored = shard_set
            .case(id)
            .and_then(|view| view.to_prepared())
            .map_err(anyhow::Error::from)
            .and_then(|case| inference.evaluate(&case, &subsets, &zero));
        match scored {
            Ok(scores) => {
                rows.extend(subsets.iter().zip(scores).map(|(s, d)| (id.clone(), *s, d)));
                cases.push(id.clone());
            }
            Err(e) => {
                tracing::warn!("skipping case {id}: {e:#}");
                skipped.push((id.clone(), format!("{e:#}")));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let modality_names: Vec<String> = metakd_data::Modality::ALL
        .iter()
        .map(|m| m.display_name().to_owned())
        .collect();
    let mut columns = vec![
        Column::new("run_id".into(), vec![run_id.clone(); rows.len()]),
        Column::new(
            "case".into(),
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "subset_mask".into(),
            rows.iter().map(|r| r.1 .0).collect::<Vec<_>>(),
        ),
        Column::new(
            "subset".into(),
            rows.iter().map(|r| r.1.name()).collect::<Vec<_>>(),
        ),
    ];
    for (i, name) in modality_names.iter().enumerate() {
        columns.push(Column::new(
            name.to_lowercase().into(),
            rows.iter().map(|r| r.1.contains(i)).collect::<Vec<_>>(),
        ));
    }
    for (i, (_, region)) in REGIONS.iter().enumerate() {
        let region = region.to_lowercase();
        let metric = |name: &str, f: fn(&RegionMetrics) -> f64| {
            Column::new(
                format!("{name}_{region}").into(),
                rows.iter().map(|r| f(&r.2[i])).collect::<Vec<_>>(),
            )
        };
        columns.push(metric("dice", |m| m.dice));
        columns.push(metric("hd95", |m| m.hd95));
        columns.push(metric("sensitivity", |m| m.sensitivity));
        columns.push(metric("specificity", |m| m.specificity));
    }
    let mut df = DataFrame::new(rows.len(), columns)?;
    write_parquet(&mut df, out)?;

    let info = SweepInfo {
        run_id,
        run_dir: run_dir.to_owned(),
        modalities: modality_names,
        importance_logits: model.importance.logit_values()?,
        importance: model.importance.omega_values()?,
        config_toml: cfg.to_toml(),
        cases,
        skipped,
    };
    write_atomic(
        &info_path(out),
        serde_json::to_string_pretty(&info)?.as_bytes(),
    )?;
    Ok(info)
}
