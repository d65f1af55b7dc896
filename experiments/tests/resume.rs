//! A training run killed with SIGKILL and resumed with `metakd train --resume` ends with the same
//! weights, bit for bit, as an uninterrupted run (in f32 and in bf16 mixed precision), and so
//! does the schedule trained as two runs (`--stage warmup`, then `--stage missing --from`); a
//! non-finite loss stops training and keeps the last checkpoint.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use polars::prelude::*;

const ITERATIONS: usize = 24;

/// `metakd train --config CONFIG --out RUN`, with `--resume` when asked.
fn train(config: &Path, run: &Path, resume: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_metakd"));
    command
        .arg("train")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(run);
    if resume {
        command.arg("--resume");
    }
    command
}

/// Prepared synthetic shards and a configuration file for a short run.
fn setup(dir: &Path, lr: f64) -> PathBuf {
    let shards = common::synthetic_shards(dir, 6, 12);
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\nshards = \"{}\"\ntest_cases = 1\nmeta_val_cases = 1\n\n\
             [model.small]\nwidths = [4, 8, 8, 8]\n\n\
             [train]\niterations = {ITERATIONS}\nwarmup_iterations = 6\nbatch_size = 1\n\
             crop = [16, 16, 16]\ncheckpoint_every = 2\nlr = {lr}\n\n\
             [meta]\nevery = 3\nevery_warmup = 3\nsamples = 1\n",
            shards.display()
        ),
    )
    .unwrap();
    config
}

/// The configuration of [`setup`] and the folder of its run trained without interruption with
/// the extra arguments `args`.
fn uninterrupted_run(dir: &Path, args: &[&str]) -> (PathBuf, PathBuf) {
    let config = setup(dir, 0.01);
    let whole = dir.join("whole");
    let status = train(&config, &whole, false).args(args).status().unwrap();
    assert!(status.success());
    (config, whole)
}

/// Asserts that a command succeeded, showing its error output otherwise.
fn assert_succeeded(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn assert_same_weights(a: &Path, b: &Path) {
    let (a, b) = (tensors(a), tensors(b));
    assert_eq!(a.len(), b.len());
    for (name, ta) in &a {
        let tb = &b[name];
        let values = |t: &Tensor| {
            t.flatten_all()
                .unwrap()
                .to_dtype(candle_core::DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (va, vb) = (values(ta), values(tb));
        assert_eq!(va.len(), vb.len(), "{name}");
        assert!(
            va.iter().zip(&vb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name} differs"
        );
    }
}

/// Kills a run in `dir` (trained with the extra arguments `args`) once it has written a
/// checkpoint, resumes it and compares it with an uninterrupted run, whose folder it returns.
fn assert_a_killed_run_resumes_to_the_same_weights(dir: &Path, args: &[&str]) -> PathBuf {
    let (config, whole) = uninterrupted_run(dir, args);

    let killed = dir.join("killed");
    let mut child = train(&config, &killed, false).args(args).spawn().unwrap();
    let checkpoint = killed.join("checkpoint.safetensors");
    let started = Instant::now();
    while !checkpoint.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !killed.join("train_log.parquet").exists(),
        "the run was killed before it finished"
    );
    let output = train(&config, &killed, true).args(args).output().unwrap();
    assert_succeeded(&output);
    assert_same_weights(
        &whole.join("model.safetensors"),
        &killed.join("model.safetensors"),
    );
    assert_same_weights(
        &whole.join("checkpoint.safetensors"),
        &killed.join("checkpoint.safetensors"),
    );
    // The log covers every iteration once, the meta log every meta step once, with the same
    // values to the last bit.
    assert_same_logs(&whole, &killed);
    whole
}

/// Asserts that two runs logged the same iterations and meta steps (subsets, losses, rates and
/// ω), bit for bit.
fn assert_same_logs(a: &Path, b: &Path) {
    for file in ["train_log.parquet", "meta_log.parquet"] {
        let read = |run: &Path| {
            ParquetReader::new(std::fs::File::open(run.join(file)).unwrap())
                .finish()
                .unwrap()
        };
        let (a, b) = (read(a), read(b));
        assert!(a.height() > 0, "{file}");
        assert!(a.equals_missing(&b), "{file}:\n{a}\n{b}");
    }
}

#[test]
fn a_killed_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    assert_a_killed_run_resumes_to_the_same_weights(dir.path(), &[]);
}

#[test]
fn a_killed_run_in_bf16_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let run = assert_a_killed_run_resumes_to_the_same_weights(dir.path(), &["--precision", "bf16"]);
    // The run folder's configuration records the precision.
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(saved.contains("precision = \"bf16\""), "{saved}");
}

#[test]
fn resuming_without_a_checkpoint_or_with_another_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 0.01);
    let run = dir.path().join("run");
    let output = train(&config, &run, true).output().unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("split.json") || err.contains("checkpoint"),
        "{err}"
    );

    assert!(train(&config, &run, false).status().unwrap().success());
    let other = dir.path().join("other.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("lr = 0.01", "lr = 0.02");
    std::fs::write(&other, text).unwrap();
    let output = train(&other, &run, true).output().unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("another configuration"), "{err}");
}

#[test]
fn a_diverging_loss_stops_training_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 1e12);
    let run = dir.path().join("run");
    let output = train(&config, &run, false).output().unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("the loss is") || err.contains("no longer finite"),
        "{err}"
    );
    // The message says what is left to resume from, and only what is there.
    let checkpoint = run.join("checkpoint.safetensors");
    let left = if checkpoint.exists() {
        "the last checkpoint"
    } else {
        "no checkpoint was written yet"
    };
    assert!(
        err.contains("training stopped") && err.contains(left),
        "{err}"
    );
    // The checkpoint left behind holds only finite weights.
    if checkpoint.exists() {
        for (name, t) in tensors(&checkpoint) {
            if name == "training_state" {
                continue;
            }
            let v = t
                .flatten_all()
                .unwrap()
                .to_dtype(candle_core::DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert!(v.iter().all(|x| x.is_finite()), "{name} is not finite");
        }
    }
}

#[test]
fn two_stage_runs_end_where_one_run_does_and_restart_the_poly_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let (config, whole) = uninterrupted_run(dir.path(), &[]);

    let stage1 = dir.path().join("stage1");
    let status = train(&config, &stage1, false)
        .args(["--stage", "warmup"])
        .status()
        .unwrap();
    assert!(status.success());
    let stage2 = dir.path().join("stage2");
    let output = train(&config, &stage2, false)
        .args(["--stage", "missing", "--from"])
        .arg(&stage1)
        .output()
        .unwrap();
    assert_succeeded(&output);
    assert_same_weights(
        &whole.join("model.safetensors"),
        &stage2.join("model.safetensors"),
    );
    assert_same_logs(&whole, &stage2);

    // Stage 1 stopped after the warm-up; stage 2's log continues it with the poly lr at t = 6.
    let log = |run: &Path| {
        ParquetReader::new(std::fs::File::open(run.join("train_log.parquet")).unwrap())
            .finish()
            .unwrap()
    };
    let lr = |run: &Path| -> Vec<f64> {
        log(run)
            .column("lr")
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    assert_eq!(lr(&stage1).len(), 6);
    let stage2_lr = lr(&stage2);
    assert_eq!(stage2_lr.len(), ITERATIONS);
    let restart = 0.01 * (1.0 - 6.0 / ITERATIONS as f64).powf(0.9);
    assert!((stage2_lr[6] - restart).abs() < 1e-12, "{}", stage2_lr[6]);
    // The default schedule is the reference's, per stage: stage 1 decays over its own 6
    // iterations (0.01 · (1 − i/6)^0.9, near 0 at its end), then stage 2 restarts above it.
    for (i, &rate) in lr(&stage1).iter().enumerate() {
        let expected = 0.01 * (1.0 - i as f64 / 6.0).powf(0.9);
        assert!((rate - expected).abs() < 1e-12, "iteration {i}: {rate}");
    }
    assert!(stage2_lr[5] < stage2_lr[6], "no restart: {stage2_lr:?}");
    assert_eq!(
        lr(&whole),
        stage2_lr,
        "one run and two stages follow the same rates"
    );

    // Stage 2 refuses a stage-1 run made with another configuration.
    let other = dir.path().join("short.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("warmup_iterations = 6", "warmup_iterations = 8");
    std::fs::write(&other, text).unwrap();
    let output = train(&other, &dir.path().join("bad"), false)
        .args(["--stage", "missing", "--from"])
        .arg(&stage1)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("another configuration"), "{err}");
}
