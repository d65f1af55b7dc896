//! `metakd train` and `metakd tracking`.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::{StageArg, Switch, TrackingCommand, TrainArgs};
use crate::run::config::RunConfig;
use crate::tracking::TrackingReport;
use crate::train;

/// `metakd train`: a run folder from a configuration.
pub fn train(a: TrainArgs, show: bool) -> Result<()> {
    let mut cfg = RunConfig::read(&a.config)?;
    if let Some(split) = a.split {
        cfg.data.split = Some(split);
    }
    if let Some(shards) = a.shards {
        cfg.data.shards = shards;
    }
    if let Some(kd) = a.kd {
        cfg.train.kd = kd == Switch::On;
    }
    if let Some(meta) = a.meta {
        cfg.meta.enabled = meta == Switch::On;
    }
    if let Some(precision) = a.precision {
        cfg.train.precision = precision;
    }
    let stem = a
        .config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let out = a.out.unwrap_or_else(|| PathBuf::from("runs").join(stem));
    let stage = match (a.stage, a.from) {
        (StageArg::Both, None) => train::Stage::Both,
        (StageArg::Warmup, None) => train::Stage::Warmup,
        (StageArg::Missing, Some(from)) => train::Stage::Missing { from },
        (StageArg::Missing, None) if a.resume => train::Stage::Missing { from: out.clone() },
        (StageArg::Missing, None) => {
            bail!("--stage missing needs --from <the stage-1 run folder>")
        }
        (_, Some(_)) => bail!("--from is only used with --stage missing"),
    };
    let options = train::TrainOptions {
        resume: a.resume,
        overwrite: a.overwrite,
        stage,
        show_progress: show,
        tracking: a.tracking.options(&out),
        device: a.device,
    };
    let summary = train::train(&cfg, &out, &options)?;
    println!(
            "trained {} iterations of a {}-parameter network in {:.0} s (final loss {:.4}, ω {:?}); waited for data {:.1}% of the time; run folder {}",
            summary.iterations,
            summary.parameters,
            summary.seconds,
            summary.final_loss,
            summary.omega,
            100.0 * summary.data_wait_fraction,
            out.display()
        );
    if let Some(report) = summary.tracking {
        print_tracking(&report, &out);
    }
    Ok(())
}

/// `metakd tracking`.
pub fn tracking(what: TrackingCommand) -> Result<()> {
    let TrackingCommand::Sync { run, mut tracking } = what;
    if tracking.tracking_uri.is_none() {
        tracking.tracking_uri = crate::tracking::recorded_uri(&run);
    }
    let Some(options) = tracking.options(&run) else {
        bail!(
            "{}: the run never reached a tracking server, so none is recorded; give \
                 --tracking-uri (or MLFLOW_TRACKING_URI)",
            run.display()
        )
    };
    let report = crate::tracking::sync(&run, options)?;
    print_tracking(&report, &run);
    Ok(())
}

fn print_tracking(report: &TrackingReport, run: &std::path::Path) {
    println!(
        "tracking: MLflow run {}, {} events sent",
        report
            .run_id
            .as_deref()
            .unwrap_or("(not created: the server never answered)"),
        report.sent
    );
    if report.pending > 0 {
        println!(
            "tracking: {} events wait in {}; send them with `metakd tracking sync --run {}`",
            report.pending,
            run.join(crate::tracking::TRACKING_DIR).display(),
            run.display()
        );
    }
    if report.lost > 0 {
        eprintln!(
            "tracking: {} events could not be written to {} (the disk was full) and are lost; \
             the MLflow run lacks them",
            report.lost,
            run.join(crate::tracking::TRACKING_DIR).display()
        );
    }
}
