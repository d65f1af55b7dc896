//! Every numeric key of a run configuration is range-checked when the file is read: `metakd
//! train` refuses a value out of range naming the key, the value and the allowed range, instead
//! of panicking mid-run or silently changing the method; and a crop larger than every case is
//! refused.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

fn train(config: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metakd"))
        .arg("train")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// `[table] key = value` appended to a small valid configuration on `shards`.
fn config_with(dir: &Path, shards: &Path, table: &str, line: &str) -> std::path::PathBuf {
    let mut tables = vec![
        (
            "data",
            format!(
                "shards = \"{}\"\ntest_cases = 1\nmeta_val_cases = 1",
                shards.display()
            ),
        ),
        ("model.small", "widths = [2, 4, 4, 4]".to_owned()),
        (
            "train",
            "iterations = 2\nwarmup_iterations = 1\nbatch_size = 1\ncrop = [16, 16, 16]".to_owned(),
        ),
        ("meta", "every = 1\nevery_warmup = 1".to_owned()),
        ("eval", String::new()),
        ("augment", String::new()),
    ];
    for (name, body) in &mut tables {
        if *name == table {
            body.push('\n');
            body.push_str(line);
        }
    }
    let text: String = tables
        .iter()
        .map(|(name, body)| format!("[{name}]\n{body}\n\n"))
        .collect();
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_out_of_range_value_is_refused_naming_its_key_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let shards = common::synthetic_shards(dir.path(), 4, 2);
    let cases = [
        (
            "train",
            "checkpoint_every = 0",
            "train.checkpoint_every = 0: must be at least 1",
        ),
        (
            "train",
            "foreground_probability = 1.5",
            "train.foreground_probability = 1.5: must be a probability in [0, 1]",
        ),
        (
            "train",
            "foreground_probability = nan",
            "train.foreground_probability = NaN: must be a probability in [0, 1]",
        ),
        (
            "train",
            "poly_power = -1.0",
            "train.poly_power = -1: must be finite and at least 0",
        ),
        (
            "train",
            "kd_weight = -0.1",
            "train.kd_weight = -0.1: must be finite and at least 0",
        ),
        (
            "train",
            "lr = inf",
            "train.lr = inf: must be finite and above 0",
        ),
        (
            "train",
            "momentum = 1.0",
            "train.momentum = 1: must be in [0, 1)",
        ),
        (
            "augment",
            "gamma_range = [0.7, inf]",
            "augment.gamma_range = [0.7, inf]: must be [low, high] with 0 < low <= high <= 10",
        ),
        (
            "augment",
            "noise_variance = nan",
            "augment.noise_variance = NaN: must be in [0, 10]",
        ),
        (
            "eval",
            "threshold = nan",
            "eval.threshold = NaN: must be a probability in [0, 1]",
        ),
        (
            "meta",
            "samples = 0",
            "meta.samples = 0 with meta.enabled = true: must be at least 1",
        ),
        (
            "data",
            "meta_val_cases = 0",
            "data.meta_val_cases = 0 with meta.enabled = true: must be at least 1",
        ),
    ];
    for (table, line, expected) in cases {
        // A later key of the same table replaces the valid one.
        let config = config_with(dir.path(), &shards, table, line);
        let text = std::fs::read_to_string(&config).unwrap();
        let text = match line {
            "meta_val_cases = 0" => text.replace("meta_val_cases = 1\n", ""),
            _ => text,
        };
        std::fs::write(&config, text).unwrap();
        let output = train(&config, &dir.path().join("run"));
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{line} was accepted");
        assert!(message.contains(expected), "{line}: {message}");
        assert!(message.contains("run.toml"), "{line}: {message}");
        assert!(!message.contains("panicked"), "{line}: {message}");
        assert!(
            !dir.path().join("run").exists(),
            "{line}: nothing is written"
        );
    }
    // With meta-learning off, no meta-validation cases are needed.
    let config = config_with(dir.path(), &shards, "meta", "enabled = false");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("meta_val_cases = 1", "meta_val_cases = 0");
    std::fs::write(&config, text).unwrap();
    let output = train(&config, &dir.path().join("ablation"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_crop_larger_than_every_case_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shards = common::synthetic_shards(dir.path(), 4, 2);
    let config = config_with(dir.path(), &shards, "train", "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("crop = [16, 16, 16]", "crop = [32, 48, 48]");
    std::fs::write(&config, text).unwrap();
    let output = train(&config, &dir.path().join("run"));
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("train.crop [32, 48, 48] is larger than every case")
            && message.contains("[24, 32, 32]"),
        "{message}"
    );
}
