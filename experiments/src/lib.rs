//! Experiments with MetaKD, by stage: the command line ([`cli`]), the run folder ([`run`]:
//! configuration, splits, model, checkpoint), training batches ([`batches`]), training with
//! meta-learned importance weights ([`train`]), evaluation and the modality-subset sweep
//! ([`eval`]), the classification tasks ([`classify`]: AV-MNIST, modality tables), metrics
//! ([`metrics`]), experiment tracking ([`tracking`]), benches and the GPU check ([`perf`]), and
//! the end-to-end [`demo`]. docs/architecture.md draws how they connect.

pub mod batches;
pub mod classify;
pub mod cli;
pub mod demo;
pub mod eval;
pub mod files;
pub mod metrics;
pub mod perf;
pub mod progress;
pub mod run;
pub mod tables;
#[cfg(test)]
mod test_cases;
pub mod tracking;
pub mod train;
pub mod units;

use std::path::Path;

use anyhow::Result;

/// Prepares the BraTS folder `src` into shards in `out` with a progress bar, handing each warning
/// of the source folder to `on_warning` before any case is prepared, then prints the list of
/// skipped cases.
pub fn prepare(
    src: &Path,
    out: &Path,
    options: &metakd_data::prepare::PrepareOptions,
    show_progress: bool,
    on_warning: impl Fn(&str) + Sync,
) -> Result<metakd_data::prepare::PrepareReport> {
    use metakd_data::prepare::PrepareEvent;
    let bar = progress::bar(0, "prepare", show_progress);
    let report = metakd_data::prepare::prepare_brats(src, out, options, |event| match event {
        PrepareEvent::Found { cases, warnings } => {
            bar.set_length(cases as u64);
            bar.suspend(|| warnings.iter().for_each(|w| on_warning(w)));
        }
        PrepareEvent::CaseDone { id } => {
            bar.set_message(id.to_owned());
            bar.inc(1);
        }
    })?;
    bar.finish_and_clear();
    for skipped in &report.manifest.skipped {
        eprintln!("skipped case {}: {}", skipped.id, skipped.reason);
    }
    Ok(report)
}
