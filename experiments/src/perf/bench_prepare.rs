//! `metakd bench prepare`: cases per second of data preparation on synthetic 240×240×155 cases,
//! its peak heap, and the ratio to `tools/prepare_reference.py` (nibabel + numpy, the reference
//! implementation's way) doing the same reading, clipping, normalisation and cropping of the same
//! files in the same run.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use metakd_data::prepare::{prepare_brats, PrepareOptions};
use metakd_data::synth::{write_dataset, SynthConfig};

use crate::perf::alloc_stats;

/// What `metakd bench prepare` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareBench {
    /// Cases prepared.
    pub cases: usize,
    /// Volume extents (D, H, W).
    pub shape: [usize; 3],
    /// Threads.
    pub threads: usize,
    /// Wall-clock seconds of each run of `prepare`.
    pub runs: Vec<f64>,
    /// The median of `runs`.
    pub seconds: f64,
    /// Peak heap bytes during `prepare`.
    pub peak_heap: usize,
    /// Wall-clock seconds of the Python script, when it ran.
    pub python_seconds: Option<f64>,
    /// Why the Python comparison did not run.
    pub python_missing: Option<String>,
}

impl PrepareBench {
    /// Cases per second of `prepare`.
    pub fn cases_per_second(&self) -> f64 {
        self.cases as f64 / self.seconds
    }
}

impl fmt::Display for PrepareBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [d, h, w] = self.shape;
        writeln!(
            f,
            "prepare: {} cases of {w}×{h}×{d} in {:.2} s (median of runs {}) on {} threads = {:.2} cases/s; peak heap {:.0} MiB",
            self.cases,
            self.seconds,
            self.runs
                .iter()
                .map(|s| format!("{s:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.threads,
            self.cases_per_second(),
            self.peak_heap as f64 / (1 << 20) as f64
        )?;
        match (self.python_seconds, &self.python_missing) {
            (Some(py), _) => write!(
                f,
                "python (nibabel + numpy): {:.2} s = {:.2} cases/s; metakd is {:.1}× faster",
                py,
                self.cases as f64 / py,
                py / self.seconds
            ),
            (None, Some(why)) => write!(f, "no Python comparison: {why}"),
            (None, None) => Ok(()),
        }
    }
}

/// Runs the Python script on `src`, returning its seconds or why it could not run.
fn python_seconds(python: &str, script: &Path, src: &Path, out: &Path) -> Result<f64, String> {
    let output = Command::new(python)
        .arg(script)
        .arg("--src")
        .arg(src)
        .arg("--out")
        .arg(out)
        .output()
        .map_err(|e| format!("cannot run `{python}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{python} {}` failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("{}: unexpected output: {e}", script.display()))?;
    parsed["seconds"]
        .as_f64()
        .ok_or_else(|| format!("{}: no `seconds` in its output", script.display()))
}

/// Writes `cases` synthetic cases of `shape` into `workdir/data` (not timed), prepares them into
/// `workdir/shards` `runs` times (a fresh folder each time), and runs the Python script once on
/// the same files.
pub fn bench_prepare(
    cases: usize,
    shape: [usize; 3],
    runs: usize,
    workdir: &Path,
    python: &str,
    script: &Path,
) -> Result<PrepareBench> {
    let data = workdir.join("data");
    let shards = workdir.join("shards");
    for dir in [&data, &shards] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("{}: cannot clear", dir.display()))?;
        }
    }
    write_dataset(&SynthConfig::new(cases, shape, 7), &data, || {})?;
    // Let the written files reach the disk before timing, so writeback does not compete.
    let _ = Command::new("sync").status();
    let mut times = Vec::with_capacity(runs);
    let mut peak_heap = 0;
    for _ in 0..runs.max(1) {
        if shards.exists() {
            std::fs::remove_dir_all(&shards)
                .with_context(|| format!("{}: cannot clear", shards.display()))?;
            let _ = Command::new("sync").status();
        }
        let before = alloc_stats::reset_peak();
        let started = Instant::now();
        let report = prepare_brats(&data, &shards, &PrepareOptions::default(), |_| {})?;
        times.push(started.elapsed().as_secs_f64());
        peak_heap = peak_heap.max(alloc_stats::peak().saturating_sub(before));
        anyhow::ensure!(
            report.manifest.cases.len() == cases,
            "prepared {} of {cases} cases: {:?}",
            report.manifest.cases.len(),
            report.manifest.skipped
        );
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let seconds = sorted[sorted.len() / 2];
    let python = python_seconds(python, script, &data, &workdir.join("python-out"));
    Ok(PrepareBench {
        cases,
        shape,
        threads: rayon::current_num_threads(),
        runs: times,
        seconds,
        peak_heap,
        python_seconds: python.as_ref().ok().copied(),
        python_missing: python.err(),
    })
}
