//! Predicted label maps as NIfTI files in the original grid, named as the BraTS online evaluator
//! expects (`<case id>.nii.gz`, uint8 labels 0, 1, 2, 4, the case's affine and spacing).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use metakd_data::nifti_io::{write_volume, StoredType, Volume};
use metakd_data::preprocess::PreparedCase;
use metakd_data::shards::ShardSet;
use ndarray::Array3;

use crate::eval::inference::{predicted_regions, Inference};
use crate::eval::postprocess::postprocess_regions;
use crate::files::{CONFIG_FILE, MODEL_FILE, SPLIT_FILE};
use crate::progress;
use crate::run::config::RunConfig;
use crate::run::model::Model;
use crate::run::splits::Splits;
use metakd_data::preprocess::label_of_regions;
use metakd_model::method::Subset;

/// The label map of region bits `regions` (the case's cropped grid, C order) placed back into
/// the case's original grid through its crop offset; background elsewhere.
pub fn label_volume(case: &PreparedCase, regions: &[u8]) -> Volume {
    let [d, h, w] = case.shape;
    let [oz, ox, oy] = case.crop_offset;
    let mut data = Array3::<f32>::zeros(case.original_shape);
    for z in 0..d {
        for x in 0..h {
            for y in 0..w {
                let label = label_of_regions(regions[(z * h + x) * w + y]);
                data[[z + oz, x + ox, y + oy]] = f32::from(label);
            }
        }
    }
    let a = &case.affine;
    Volume {
        data,
        spacing: case.spacing,
        affine: [
            [a[0], a[1], a[2], a[3]],
            [a[4], a[5], a[6], a[7]],
            [a[8], a[9], a[10], a[11]],
        ],
    }
}

/// Writes the label map of `regions` for `case` to `dir/<case id>.nii.gz` and returns the path.
pub fn write_label_map(dir: &Path, case: &PreparedCase, regions: &[u8]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}.nii.gz", case.id));
    write_volume(&path, &label_volume(case, regions), StoredType::Uint8)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// What `metakd predict` wrote and skipped.
#[derive(Debug, Clone, Default)]
pub struct PredictReport {
    /// Label maps written.
    pub written: Vec<PathBuf>,
    /// Cases that could not be predicted, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Predicts the label maps of the run in `run_dir` with the modalities of `subset` and writes
/// them to `out`: every case of `shards` when given (a validation release, Protocol A),
/// otherwise the run's test cases from its own shards; `postprocess` applies the optional
/// post-processing ([`crate::eval::postprocess`]) to every map. Cases already written are kept, so an
/// interrupted run resumes; a case that fails is skipped and reported.
pub fn predict_run(
    run_dir: &Path,
    shards: Option<&Path>,
    subset: Subset,
    out: &Path,
    postprocess: bool,
    show_progress: bool,
) -> Result<PredictReport> {
    let device = Device::Cpu;
    if !run_dir.is_dir() {
        bail!("{}: no such run folder", run_dir.display())
    }
    let cfg = RunConfig::read(&run_dir.join(CONFIG_FILE))?;
    let model = Model::load(&run_dir.join(MODEL_FILE), &cfg.model, &device)?;
    let (shard_set, ids) = match shards {
        Some(dir) => {
            let set = ShardSet::open(dir)?;
            let ids = set.manifest().cases.iter().map(|c| c.id.clone()).collect();
            (set, ids)
        }
        None => (
            ShardSet::open(&cfg.data.shards)?,
            Splits::read(&run_dir.join(SPLIT_FILE))?.test,
        ),
    };
    let (inference, zero) = Inference::of_run(&model, &cfg, &device)?;
    let bar = progress::bar(ids.len() as u64, "predict", show_progress);
    let mut report = PredictReport::default();
    for id in &ids {
        bar.set_message(id.clone());
        let path = out.join(format!("{id}.nii.gz"));
        if path.is_file() {
            report.written.push(path);
            bar.inc(1);
            continue;
        }
        let written = shard_set
            .case(id)
            .and_then(|view| view.to_prepared())
            .map_err(anyhow::Error::from)
            .map(|case| cfg.eval.window.place(case))
            .and_then(|case| {
                let probabilities = inference.predict(&case, &[subset], &zero)?;
                let mut regions = predicted_regions(&probabilities[0], cfg.eval.threshold);
                if postprocess {
                    postprocess_regions(&mut regions, &case, cfg.eval.postprocess_rule);
                }
                write_label_map(out, &case, &regions)
            });
        match written {
            Ok(path) => report.written.push(path),
            Err(e) => report.skipped.push((id.clone(), format!("{e:#}"))),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(report)
}
