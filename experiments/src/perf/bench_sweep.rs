//! `metakd bench sweep`: the cost of scoring all 15 modality subsets of a case relative to one
//! full-modality evaluation, with the cached encoder features and with one full forward pass per
//! subset.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use candle_core::Device;
use metakd_data::prepare::{prepare_brats, PrepareOptions};
use metakd_data::shards::ShardSet;
use metakd_data::synth::{write_dataset, SynthConfig};
use metakd_model::nets::SegmenterConfig;

use crate::eval::inference::{zero_features, Inference};
use crate::run::config::EvalConfig;
use crate::run::model::Model;
use metakd_model::method::Subset;

/// Seconds of each way of evaluating one case.
#[derive(Debug, Clone, Copy)]
pub struct SweepTimings {
    /// One subset (all modalities).
    pub full: f64,
    /// All 15 subsets from the cached encoder features (the zero image's features included).
    pub cached: f64,
    /// All 15 subsets, one full forward pass each.
    pub naive: f64,
}

/// Median of `runs` timings of `f`.
fn median_seconds(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Times the evaluation of one synthetic case of extents `case_shape` (prepared in `workdir`)
/// with tiles `tile` on a freshly initialised network of `cfg`.
pub fn bench_sweep(
    cfg: &SegmenterConfig,
    case_shape: [usize; 3],
    tile: [usize; 3],
    runs: usize,
    workdir: &Path,
) -> Result<SweepTimings> {
    let device = Device::Cpu;
    let src = workdir.join("src");
    write_dataset(&SynthConfig::new(1, case_shape, 7), &src, || {})?;
    let shards = workdir.join("shards");
    prepare_brats(&src, &shards, &PrepareOptions::default(), |_| {})?;
    let case = ShardSet::open(&shards)?.read_cases(|_| true)?.remove(0);
    let model = Model::new(cfg, 3, &device)?;
    let eval = EvalConfig::default();
    let inference = Inference {
        model: &model,
        tile,
        eval: &eval,
        device: &device,
    };
    let m = cfg.modalities;
    let (full, all) = ([Subset::full(m)], Subset::all(m));
    // One untimed evaluation first: the allocator's and the thread pool's start-up.
    inference.predict_naive(&case, &full)?;
    let full_seconds = median_seconds(runs, || {
        // A full-modality evaluation needs no zero-image features.
        inference.predict_naive(&case, &full).map(drop)
    })?;
    let cached = median_seconds(runs, || {
        let zero = zero_features(&model, tile, &device)?;
        inference.predict(&case, &all, &zero).map(drop)
    })?;
    let naive = median_seconds(runs, || inference.predict_naive(&case, &all).map(drop))?;
    Ok(SweepTimings {
        full: full_seconds,
        cached,
        naive,
    })
}
