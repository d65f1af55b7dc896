//! The demo: a fresh synthetic data set, prepared, trained on, swept and reported, all in one
//! working folder.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use metakd_data::prepare::PrepareOptions;
use metakd_data::synth::{write_dataset, SynthConfig, MISNAMED_SEG_FILE};

use crate::files::SWEEP_FILE;
use crate::progress;
use crate::run::config::RunConfig;

/// The embedded demo configuration (`configs/demo.toml`).
pub const DEMO_CONFIG: &str = include_str!("../../configs/demo.toml");

/// Sizes of a demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The working folder.
    pub workdir: PathBuf,
    /// Synthetic cases.
    pub cases: usize,
    /// Volume extents (D, H, W).
    pub shape: [usize; 3],
    /// Seed of the data set.
    pub seed: u64,
    /// Training iterations (the configuration's when `None`).
    pub iterations: Option<usize>,
    /// Progress bars.
    pub show_progress: bool,
    /// Where the demo's notes go (what it shows, and the quirks its synthetic release copies).
    pub on_note: fn(&str),
}

/// Where a demo left its results.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// The report.
    pub report: PathBuf,
    /// Its headline numbers.
    pub summary: metakd_reports::Summary,
    /// Seconds per stage: synth, prepare, train, sweep, report.
    pub stage_seconds: [f64; 5],
}

/// Runs every stage of the pipeline in `options.workdir`: `data/` (NIfTI cases), `shards/`,
/// `runs/demo/` (configuration, splits, model, log, sweep table) and `report/`.
pub fn run_demo(options: &DemoOptions) -> Result<DemoOutcome> {
    let dir = &options.workdir;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut seconds = [0.0; 5];
    let mut clock = Instant::now();
    let mut lap = |i: usize| {
        seconds[i] = clock.elapsed().as_secs_f64();
        clock = Instant::now();
    };

    let data = dir.join("data");
    let synth = SynthConfig::new(options.cases, options.shape, options.seed);
    let [d, h, w] = options.shape;
    (options.on_note)(&format!(
        "demo: {} synthetic cases of {d}×{h}×{w} voxels in the {} layout ({}), prepared, trained on, \
         evaluated for every modality subset and reported",
        options.cases,
        synth.layout.release,
        data.display()
    ));
    // The synthetic BraTS2020 release copies the real one's misnamed label map on purpose: the
    // demo says so once, and does not pass preparation's warning about it on.
    let quirk_case = synth
        .layout
        .misnamed_seg_case(synth.cases)
        .map(|index| synth.layout.case_id(index));
    if let Some(id) = &quirk_case {
        (options.on_note)(&format!(
            "demo: like the real BraTS2020 release, the synthetic one names case {id}'s label map \
             {MISNAMED_SEG_FILE}; preparation finds it under that name"
        ));
    }
    let bar = progress::bar(synth.cases as u64, "synth", options.show_progress);
    write_dataset(&synth, &data, || bar.inc(1))?;
    bar.finish_and_clear();
    lap(0);

    let shards = dir.join("shards");
    crate::prepare(
        &data,
        &shards,
        &PrepareOptions::default(),
        options.show_progress,
        |warning| {
            let noted = quirk_case.as_ref().is_some_and(|id| {
                warning.starts_with(&format!("case {id}:")) && warning.contains(MISNAMED_SEG_FILE)
            });
            if !noted {
                tracing::warn!("{warning}")
            }
        },
    )?;
    lap(1);

    let mut cfg = RunConfig::from_toml(DEMO_CONFIG, "the embedded demo configuration")?;
    cfg.data.shards = shards;
    if let Some(iterations) = options.iterations {
        cfg.train.warmup_iterations =
            cfg.train.warmup_iterations * iterations / cfg.train.iterations;
        cfg.train.iterations = iterations;
    }
    let run = dir.join("runs").join("demo");
    crate::train::train(
        &cfg,
        &run,
        &crate::train::TrainOptions {
            show_progress: options.show_progress,
            // The demo rebuilds its whole working folder, its run included.
            overwrite: true,
            ..Default::default()
        },
    )?;
    lap(2);

    let table = run.join(SWEEP_FILE);
    crate::eval::sweep::sweep(
        &run,
        &table,
        &crate::eval::sweep::SweepOptions::default(),
        options.show_progress,
    )?;
    lap(3);

    let outcome = metakd_reports::write_report(&[table], &dir.join("report"))?;
    lap(4);
    Ok(DemoOutcome {
        report: outcome.report,
        summary: outcome.summary,
        stage_seconds: seconds,
    })
}

/// The default working folder of the demo.
pub fn default_workdir() -> &'static Path {
    Path::new("work/demo")
}
