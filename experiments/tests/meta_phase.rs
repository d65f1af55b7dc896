//! The meta phases as the reference runs them, through the binary: stage 1's meta samples see
//! every modality, stage 2's each draw their own subset (`meta.stage2_modalities = "random"`, the
//! default) or keep every modality (`"all"`), and every meta step is logged to
//! `meta_log.parquet` with the ω it left, which the training log's ω at that iteration matches.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use polars::prelude::*;

const ITERATIONS: usize = 24;
const WARMUP: usize = 6;
const EVERY: usize = 3;
const SAMPLES: usize = 6;

/// Trains a short run on `shards` with the extra `[meta]` lines `meta`, returning its folder.
fn train(dir: &Path, shards: &Path, name: &str, meta: &str) -> PathBuf {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[data]\nshards = \"{}\"\ntest_cases = 1\nmeta_val_cases = 2\n\n\
             [model.small]\nwidths = [4, 8, 8, 8]\n\n\
             [train]\niterations = {ITERATIONS}\nwarmup_iterations = {WARMUP}\nbatch_size = 1\n\
             crop = [16, 16, 16]\ncheckpoint_every = 24\n\n\
             [meta]\nevery = {EVERY}\nevery_warmup = {EVERY}\nsamples = {SAMPLES}\n{meta}\n",
            shards.display()
        ),
    )
    .unwrap();
    let run = dir.join(name);
    let output = Command::new(env!("CARGO_BIN_EXE_metakd"))
        .arg("train")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    run
}

fn read(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

fn u32s(df: &DataFrame, name: &str) -> Vec<u32> {
    df.column(name)
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect()
}

fn f64s(df: &DataFrame, name: &str) -> Vec<f64> {
    df.column(name)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect()
}

fn omegas(df: &DataFrame) -> Vec<[f32; 4]> {
    let columns: Vec<Vec<f32>> = ["flair", "t1", "t1ce", "t2"]
        .iter()
        .map(|m| {
            df.column(&format!("omega_{m}"))
                .unwrap()
                .f32()
                .unwrap()
                .into_no_null_iter()
                .collect()
        })
        .collect();
    (0..df.height())
        .map(|i| std::array::from_fn(|m| columns[m][i]))
        .collect()
}

#[test]
fn stage_two_meta_samples_draw_their_own_subsets_and_every_step_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let shards = common::synthetic_shards(dir.path(), 6, 21);
    let run = train(dir.path(), &shards, "random", "");
    let meta = read(&run.join("meta_log.parquet"));
    let phases = ITERATIONS / EVERY;
    assert_eq!(meta.height(), phases * SAMPLES);

    let iterations = u32s(&meta, "iteration");
    let subsets = u32s(&meta, "subset");
    let expected_iterations: Vec<u32> = (0..phases)
        .flat_map(|p| std::iter::repeat_n((p * EVERY + EVERY - 1) as u32, SAMPLES))
        .collect();
    assert_eq!(iterations, expected_iterations);
    let (stage1, stage2): (Vec<_>, Vec<_>) = iterations
        .iter()
        .zip(&subsets)
        .partition(|(it, _)| (**it as usize) < WARMUP);
    assert!(stage1.iter().all(|(_, s)| **s == 0b1111), "{stage1:?}");
    // 36 draws of k uniform in 1..4: a partial subset is all but certain, and every draw is a
    // non-empty subset.
    assert!(stage2.iter().all(|(_, s)| (1..16).contains(*s)));
    let partial = stage2.iter().filter(|(_, s)| **s != 0b1111).count();
    assert!(partial >= stage2.len() / 2, "{partial} of {}", stage2.len());
    let names: Vec<String> = meta
        .column("modalities")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|name| name.unwrap().to_owned())
        .collect();
    assert_eq!(names[0], "FLAIR+T1+T1ce+T2");
    assert!(f64s(&meta, "loss")
        .iter()
        .all(|l| l.is_finite() && *l > 0.0));

    // ω after the last step of each phase is the ω the training log shows at that iteration,
    // and every step moves it.
    let log = read(&run.join("train_log.parquet"));
    let log_omega = omegas(&log);
    let meta_omega = omegas(&meta);
    for p in 0..phases {
        let last = (p + 1) * SAMPLES - 1;
        assert_eq!(meta_omega[last], log_omega[iterations[last] as usize]);
    }
    assert!(meta_omega.windows(2).all(|w| w[0] != w[1]));

    // Keeping every modality in stage 2 is the option.
    let all = train(dir.path(), &shards, "all", "stage2_modalities = \"all\"");
    let meta_all = read(&all.join("meta_log.parquet"));
    assert_eq!(meta_all.height(), phases * SAMPLES);
    assert!(u32s(&meta_all, "subset").iter().all(|s| *s == 0b1111));
    // Stage 1 is the same under both settings: same crops, same ω.
    let stage1_rows = WARMUP / EVERY * SAMPLES;
    assert_eq!(
        omegas(&meta_all)[..stage1_rows],
        meta_omega[..stage1_rows],
        "stage 1's meta phases differ"
    );
}

#[test]
fn meta_validation_crops_are_augmented_as_training_crops_unless_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let shards = common::synthetic_shards(dir.path(), 6, 22);
    // Every augmentation always on, so an augmented meta crop differs from a plain one.
    let always = "[augment]\nscale_probability = 1.0\nbrightness_probability = 1.0\n\
                  contrast_probability = 1.0\ngamma_probability = 1.0\n";
    let augmented = train(dir.path(), &shards, "augmented", always);
    let plain = train(
        dir.path(),
        &shards,
        "plain",
        &format!("augment = false\n{always}"),
    );
    let loss = |run: &Path| f64s(&read(&run.join("meta_log.parquet")), "loss");
    let (a, p) = (loss(&augmented), loss(&plain));
    assert_eq!(a.len(), p.len());
    // The first meta step follows the same three training iterations in both runs, so only its
    // crop can differ.
    assert_ne!(a[0], p[0]);
}
