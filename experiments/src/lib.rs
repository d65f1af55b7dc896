//! Experiments with MetaKD: run configuration ([`config`]), training with meta-learned importance
//! weights ([`train`]), checkpoints ([`checkpoint`]), sliding-window evaluation ([`evaluate`]),
//! modality-subset sweeps ([`sweep`]) and the end-to-end [`demo`]. The `metakd` command wires
//! them to the data preparation and report stages.

pub mod alloc_stats;
pub mod augment;
pub mod avmnist;
pub mod avmnist_protocol;
pub mod bench;
pub mod bench_prepare;
pub mod bench_sweep;
pub mod bench_train;
pub mod case_slices;
pub mod checkpoint;
pub mod checks;
pub mod cli;
pub mod compute_device;
pub mod config;
pub mod demo;
pub mod eval_labels;
pub mod evaluate;
pub mod export;
pub mod files;
pub mod gpu_check;
pub mod loader;
pub mod metrics;
pub mod parallel_zeroing;
pub mod postprocess;
pub mod progress;
pub mod resume;
pub mod run_folder;
pub mod sampler;
pub mod schedule;
pub mod split_command;
pub mod splits;
pub mod step;
pub mod sweep;
pub mod tables;
pub mod tabular;
#[cfg(test)]
mod test_cases;
pub mod tracking;
pub mod train;

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
