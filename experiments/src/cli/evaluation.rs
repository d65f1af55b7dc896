//! `metakd sweep`, `predict`, `eval-labels`, `report` and `regress`: evaluation and results.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use metakd_data::Modality;
use metakd_model::method::Subset;
use metakd_reports::regress::{self, Tolerances};

use super::{EvalLabelsArgs, PredictArgs, RegressArgs, ReportArgs, SweepArgs};
use crate::eval::{label_files, predict, sweep};
use crate::files::{self, SWEEP_FILE};
use crate::progress;
use crate::run::config::RunConfig;
use crate::units::is_finished;

/// `metakd sweep`: every modality subset of a run into the result table.
pub fn sweep(a: SweepArgs, show: bool) -> Result<()> {
    let out = a.out.unwrap_or_else(|| a.run.join(SWEEP_FILE));
    let options = sweep::SweepOptions {
        shards: a.shards,
        checkpoints: a.checkpoints,
        subset_groups: a.subset_groups,
        case_shards: a.case_shards,
    };
    let plan = sweep::plan(&a.run, &out, &options)?;
    let task_index = match a.task_index {
        Some(i) => Some(i),
        None => job_completion_index()?,
    };
    if a.plan {
        print_plan(&plan, &out);
    } else if let Some(index) = task_index {
        match sweep::UnitRunner::new(&plan, &out, options.shards.as_deref()).run(index, show)? {
            sweep::UnitOutcome::AlreadyDone => {
                println!("unit {index} was already finished")
            }
            sweep::UnitOutcome::NothingScored { skipped } => {
                for (id, reason) in &skipped {
                    eprintln!("skipped case {id}: {reason}");
                }
                bail!(
                    "unit {index} scored none of its {} cases: it is not finished and \
                         runs again next time",
                    skipped.len()
                )
            }
            sweep::UnitOutcome::Done { scored, skipped } => {
                for (id, reason) in &skipped {
                    eprintln!("skipped case {id}: {reason}");
                }
                println!(
                    "unit {index}: {scored} cases scored ({} skipped); table {}",
                    skipped.len(),
                    sweep::unit_table(&sweep::units_dir(&out), index).display()
                )
            }
        }
    } else {
        let outcome = sweep::sweep(&a.run, &out, &options, show)?;
        let (cases, skipped): (usize, usize) = outcome
            .infos
            .iter()
            .fold((0, 0), |(c, s), i| (c + i.cases.len(), s + i.skipped.len()));
        for info in &outcome.infos {
            for (id, reason) in &info.skipped {
                eprintln!("skipped case {id}: {reason}");
            }
        }
        println!(
            "{} units ({} evaluated now, {} already finished): {cases} cases × subsets \
                 scored ({skipped} skipped); table {}",
            outcome.plan.units.len(),
            outcome.evaluated,
            outcome.already_done,
            out.display()
        );
    }
    Ok(())
}

/// `metakd predict`: label maps of a run's cases with the modalities named.
pub fn predict(a: PredictArgs, show: bool) -> Result<()> {
    let subset =
        Subset::from_names(&a.modalities, &Modality::DISPLAY_NAMES).map_err(anyhow::Error::msg)?;
    let postprocess = a.postprocess
        || RunConfig::read(&a.run.join(files::CONFIG_FILE))
            .map(|cfg| cfg.eval.postprocess)
            .unwrap_or(false);
    let report = predict::predict_run(
        &a.run,
        a.shards.as_deref(),
        subset,
        &a.out,
        postprocess,
        show,
    )?;
    for (id, reason) in &report.skipped {
        eprintln!("skipped case {id}: {reason}");
    }
    println!(
        "{} label maps in {} ({} skipped)",
        report.written.len(),
        a.out.display(),
        report.skipped.len()
    );
    if report.written.is_empty() {
        bail!("no label map was written")
    }
    Ok(())
}

/// `metakd eval-labels`: scores label files against references.
pub fn eval_labels(a: EvalLabelsArgs, show: bool) -> Result<()> {
    let bar = progress::bar(0, "eval-labels", show);
    let evaluation = label_files::evaluate_labels(&a.pred, &a.reference, |id, total| {
        bar.set_length(total as u64);
        bar.set_message(id.to_owned());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    let json = serde_json::to_string_pretty(&evaluation)?;
    if let Some(out) = &a.out {
        metakd_data::files::write_atomic(out, format!("{json}\n").as_bytes())?;
    }
    println!("{json}");
    for s in &evaluation.skipped {
        eprintln!("skipped case {} ({}): {}", s.id, s.file.display(), s.reason);
    }
    if evaluation.cases.is_empty() {
        bail!(
            "no case was scored ({} skipped, {} references without a prediction)",
            evaluation.skipped.len(),
            evaluation.missing_predictions.len()
        )
    }
    Ok(())
}

/// `metakd report`: markdown reports, tables and figures of result tables.
pub fn report(a: ReportArgs) -> Result<()> {
    let out = a.out.unwrap_or_else(|| {
        a.sweeps[0]
            .parent()
            .map_or_else(|| PathBuf::from("report"), |p| p.join("report"))
    });
    let reports = metakd_reports::write_reports(&a.sweeps, &out).with_context(|| {
        format!(
            "cannot report on {}",
            a.sweeps
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    for warning in &reports.warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(r) = &reports.segmentation {
        println!("report: {}", r.report.display());
    }
    if let Some(r) = &reports.classification {
        println!("classification report: {}", r.report.display());
    }
    Ok(())
}

/// `metakd regress`: results against a baseline.
pub fn regress(a: RegressArgs) -> Result<()> {
    let tolerances = Tolerances {
        dice: a.dice_tolerance,
        hd95: a.hd95_tolerance,
    };
    let outcome = regress::regress_files(&a.baseline, &a.results, tolerances)
        .with_context(|| format!("cannot compare with {}", a.baseline.display()))?;
    print_regression(&outcome, tolerances);
    if !outcome.passed() {
        std::process::exit(1);
    }
    Ok(())
}

/// The unit index of a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`), when set.
fn job_completion_index() -> Result<Option<usize>> {
    match std::env::var("JOB_COMPLETION_INDEX") {
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("JOB_COMPLETION_INDEX={value:?} is not a unit index")),
        Err(_) => Ok(None),
    }
}

fn print_plan(plan: &sweep::Plan, table: &std::path::Path) {
    let units = sweep::units_dir(table);
    println!(
        "{} units ({} checkpoint(s) × {} subset group(s) × {} case shard(s)); plan {}",
        plan.units.len(),
        plan.units.len() / (plan.subset_groups * plan.case_shards),
        plan.subset_groups,
        plan.case_shards,
        units.join("plan.json").display()
    );
    println!("index\tdone\tcheckpoint\tsubsets\tcases");
    for unit in &plan.units {
        let done = is_finished(&sweep::unit_table(&units, unit.index));
        println!(
            "{}\t{}\t{}\t{}\t{}",
            unit.index,
            if done { "yes" } else { "no" },
            unit.checkpoint.display(),
            unit.subsets.len(),
            unit.cases.join(",")
        );
    }
}

fn print_regression(outcome: &regress::Regression, tolerances: Tolerances) {
    println!(
        "compared {} values (tolerances: Dice {}, HD95 {} mm)",
        outcome.compared, tolerances.dice, tolerances.hd95
    );
    for c in &outcome.largest_within {
        println!(
            "largest {} change within tolerance: {:+.4} ({}: {:.4} → {:.4})",
            c.metric,
            c.delta(),
            c.what,
            c.baseline,
            c.result
        );
    }
    for c in &outcome.moved {
        println!(
            "MOVED {} {:+.4}: {} ({:.4} → {:.4})",
            c.metric,
            c.delta(),
            c.what,
            c.baseline,
            c.result
        );
    }
    for what in &outcome.missing {
        println!("MISSING from the results: {what}");
    }
    for what in &outcome.unexpected {
        println!("NOT IN THE BASELINE: {what}");
    }
    if outcome.passed() {
        println!("the results match the baseline");
    } else {
        println!(
            "{} values moved, {} rows missing, {} rows not in the baseline",
            outcome.moved.len(),
            outcome.missing.len(),
            outcome.unexpected.len()
        );
    }
}
