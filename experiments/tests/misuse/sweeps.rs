//! A sweep and its tables under misuse and faults, through the `metakd` binary: a table path
//! that is not a sweep table is refused, a unit that scored no case is not finished, a damaged
//! model, checkpoint or table is caught by its digest, a plan made with a relative `--run`
//! serves from any directory, a sweep or unit in use is refused, and `report` and `regress`
//! refuse tables they cannot trust or that hold nothing to compare.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use metakd_data::lock::Lock;
use polars::prelude::*;

fn metakd_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metakd"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

fn metakd(args: &[&str]) -> Output {
    metakd_in(Path::new("."), args)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_succeeded(output: &Output) {
    assert!(output.status.success(), "{}", stderr(output));
}

fn assert_failed_with(output: &Output, words: &[&str]) {
    assert!(!output.status.success(), "it succeeded");
    let message = stderr(output);
    for w in words {
        assert!(message.contains(w), "no {w:?} in: {message}");
    }
    assert!(!message.contains("panicked"), "{message}");
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

/// A tiny trained run in `dir/run` (one test case), and its shards.
fn trained_run(dir: &Path) -> (PathBuf, PathBuf) {
    let shards = common::synthetic_shards(dir, 4, 5);
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\nshards = \"{}\"\ntest_cases = 1\nmeta_val_cases = 1\n\n\
             [model.small]\nwidths = [2, 4, 4, 4]\n\n\
             [train]\niterations = 2\nwarmup_iterations = 1\nbatch_size = 1\n\
             crop = [16, 16, 16]\ncheckpoint_every = 1\n\n\
             [meta]\nevery = 1\nevery_warmup = 1\nsamples = 1\n",
            shards.display()
        ),
    )
    .unwrap();
    let run = dir.join("run");
    assert_succeeded(&metakd(&[
        "train",
        "--config",
        &s(&config),
        "--out",
        &s(&run),
    ]));
    (run, shards)
}

fn flip_a_bit(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

fn read_parquet(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

/// Writes `df` as the table `path` beside the sidecar `sidecar`, with its digest, as a sweep
/// would.
fn write_table(mut df: DataFrame, sidecar: &str, path: &Path) {
    ParquetWriter::new(std::fs::File::create(path).unwrap())
        .finish(&mut df)
        .unwrap();
    std::fs::write(path.with_extension("json"), sidecar).unwrap();
    metakd_data::digest::record(path).unwrap();
}

#[test]
fn a_sweep_never_overwrites_what_is_not_a_sweep_table() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = trained_run(dir.path());
    let model = std::fs::read(run.join("model.safetensors")).unwrap();
    let log = std::fs::read(run.join("train_log.parquet")).unwrap();
    let sweep = |out: &str| metakd(&["sweep", "--run", &s(&run), "--out", &s(&run.join(out))]);
    assert_failed_with(
        &sweep("model.safetensors"),
        &["model.safetensors", "a sweep table is a .parquet file"],
    );
    assert_failed_with(
        &sweep("train_log.parquet"),
        &["train_log.parquet", "is not a sweep table's"],
    );
    // `split.parquet` would put its sidecar over the run's split.json.
    assert_failed_with(
        &sweep("split.parquet"),
        &["split.json", "is not a sweep table's"],
    );
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), model);
    assert_eq!(std::fs::read(run.join("train_log.parquet")).unwrap(), log);
    assert!(!run.join("split-units").exists());
    // A sweep table is replaced by the next sweep.
    assert_succeeded(&sweep("sweep.parquet"));
    assert_succeeded(&sweep("sweep.parquet"));
}

#[test]
fn a_unit_that_scored_no_case_is_not_finished_and_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let (run, shards) = trained_run(dir.path());
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for entry in std::fs::read_dir(&shards).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, broken.join(path.file_name().unwrap())).unwrap();
        if path.extension().is_some_and(|e| e == "arrow") {
            flip_a_bit(&broken.join(path.file_name().unwrap()), 4000);
        }
    }
    let with_broken = metakd(&["sweep", "--run", &s(&run), "--shards", &s(&broken)]);
    assert_failed_with(&with_broken, &["1 of 1 units scored no case", "checksum"]);
    assert!(!run.join("sweep-units/unit-00000.parquet").exists());
    assert!(!run.join("sweep.parquet").exists());
    let unit = metakd(&[
        "sweep",
        "--run",
        &s(&run),
        "--shards",
        &s(&broken),
        "--task-index",
        "0",
    ]);
    assert_failed_with(&unit, &["unit 0 scored none of its 1 cases"]);

    let fixed = metakd(&["sweep", "--run", &s(&run)]);
    assert_succeeded(&fixed);
    let stdout = String::from_utf8_lossy(&fixed.stdout).into_owned();
    assert!(
        stdout.contains("1 evaluated now, 0 already finished"),
        "{stdout}"
    );
}

#[test]
fn damaged_models_checkpoints_and_tables_are_caught_by_their_digests() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = trained_run(dir.path());
    assert_succeeded(&metakd(&["sweep", "--run", &s(&run)]));
    let unit = run.join("sweep-units/unit-00000.parquet");
    for file in [
        "model.safetensors",
        "checkpoint.safetensors",
        "sweep.parquet",
    ] {
        assert!(run.join(format!("{file}.blake3")).is_file(), "{file}");
    }
    assert!(PathBuf::from(format!("{}.blake3", unit.display())).is_file());

    // A unit table: a flipped bit in the middle of the file.
    let len = std::fs::metadata(&unit).unwrap().len() as usize;
    flip_a_bit(&unit, len / 2);
    let report = metakd(&[
        "report",
        "--sweep",
        &s(&run.join("sweep-units")),
        "--out",
        &s(&dir.path().join("r")),
    ]);
    assert_failed_with(
        &report,
        &["unit-00000.parquet", "BLAKE3", "run `metakd sweep` again"],
    );

    // The model: a flipped bit in a parameter.
    let model = run.join("model.safetensors");
    let len = std::fs::metadata(&model).unwrap().len() as usize;
    flip_a_bit(&model, len - 3);
    let sweep = metakd(&[
        "sweep",
        "--run",
        &s(&run),
        "--out",
        &s(&run.join("again.parquet")),
    ]);
    assert_failed_with(&sweep, &["model.safetensors", "BLAKE3", "restore it"]);

    // The checkpoint: a changed `iterations_done` in its training state.
    let checkpoint = run.join("checkpoint.safetensors");
    let bytes = std::fs::read(&checkpoint).unwrap();
    let at = bytes
        .windows(b"\"iterations_done\":2".len())
        .position(|w| w == b"\"iterations_done\":2")
        .expect("the training state names the iterations done");
    let mut changed = bytes.clone();
    changed[at + b"\"iterations_done\":".len()] = b'1';
    std::fs::write(&checkpoint, changed).unwrap();
    let config = dir.path().join("run.toml");
    let resume = metakd(&[
        "train",
        "--config",
        &s(&config),
        "--out",
        &s(&run),
        "--resume",
    ]);
    assert_failed_with(
        &resume,
        &["checkpoint.safetensors", "BLAKE3", "--overwrite"],
    );
}

#[test]
fn a_plan_made_with_a_relative_run_serves_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = trained_run(dir.path());
    assert_succeeded(&metakd_in(dir.path(), &["sweep", "--run", "run", "--plan"]));
    let elsewhere = dir.path().join("jobs");
    std::fs::create_dir(&elsewhere).unwrap();
    let unit = metakd_in(
        &elsewhere,
        &["sweep", "--run", "../run", "--task-index", "0"],
    );
    assert_succeeded(&unit);
    let plan = std::fs::read_to_string(dir.path().join("run/sweep-units/plan.json")).unwrap();
    assert!(plan.contains("\"run_dir\": \"..\""), "{plan}");
    // Another run is refused for these units.
    let (other, _) = {
        let other_dir = dir.path().join("other");
        std::fs::create_dir(&other_dir).unwrap();
        trained_run(&other_dir)
    };
    let mixed = metakd(&[
        "sweep",
        "--run",
        &s(&other),
        "--out",
        &s(&dir.path().join("run/sweep.parquet")),
    ]);
    assert!(!mixed.status.success());
}

#[test]
fn a_sweep_or_unit_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = trained_run(dir.path());
    let table = run.join("sweep.parquet");
    let held = Lock::file(&table, "sweep table").unwrap();
    let refused = metakd(&["sweep", "--run", &s(&run)]);
    let pid = format!(
        "this sweep table is in use by process {}",
        std::process::id()
    );
    assert_failed_with(&refused, &[&pid]);
    drop(held);
    assert_succeeded(&metakd(&["sweep", "--run", &s(&run), "--plan"]));
    let unit = run.join("sweep-units/unit-00000.parquet");
    let held = Lock::file(&unit, "sweep unit").unwrap();
    let refused = metakd(&["sweep", "--run", &s(&run), "--task-index", "0"]);
    let pid = format!(
        "this sweep unit is in use by process {}",
        std::process::id()
    );
    assert_failed_with(&refused, &[&pid]);
    drop(held);
    assert_succeeded(&metakd(&["sweep", "--run", &s(&run), "--task-index", "0"]));
}

#[test]
fn report_and_regress_refuse_tables_they_cannot_trust_or_compare() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = trained_run(dir.path());
    assert_succeeded(&metakd(&["sweep", "--run", &s(&run)]));
    let good = read_parquet(&run.join("sweep.parquet"));
    let sidecar = std::fs::read_to_string(run.join("sweep.json")).unwrap();
    let report = |table: &Path| {
        metakd(&[
            "report",
            "--sweep",
            &s(table),
            "--out",
            &s(&dir.path().join("report")),
        ])
    };
    let table = dir.path().join("t.parquet");

    write_table(good.clone(), "[]", &table);
    assert_failed_with(&report(&table), &["t.json", "describes no run"]);

    let with_dice = |value: f64| {
        let mut dice: Vec<Option<f64>> = good.column("dice").unwrap().f64().unwrap().to_vec();
        dice[3] = Some(value);
        let mut df = good.clone();
        df.with_column(Column::new("dice".into(), dice)).unwrap();
        df
    };
    write_table(with_dice(f64::NAN), &sidecar, &table);
    assert_failed_with(&report(&table), &["row 3", "Dice NaN, outside [0, 1]"]);
    write_table(with_dice(1.5), &sidecar, &table);
    assert_failed_with(&report(&table), &["row 3", "Dice 1.5"]);

    let mut masks: Vec<Option<u32>> = good.column("subset_mask").unwrap().u32().unwrap().to_vec();
    masks[0] = Some(16);
    let mut df = good.clone();
    df.with_column(Column::new("subset_mask".into(), masks))
        .unwrap();
    write_table(df, &sidecar, &table);
    assert_failed_with(&report(&table), &["row 0", "subset mask 16"]);

    let mut doubled = good.clone();
    doubled.vstack_mut(&good.slice(0, 1)).unwrap();
    write_table(doubled, &sidecar, &table);
    assert_failed_with(&report(&table), &["repeats row 0"]);

    write_table(good.slice(0, 0), &sidecar, &table);
    assert_failed_with(&report(&table), &["no rows"]);

    // A units folder whose plan lists a unit it lacks is reported with a warning.
    let plan_dir = run.join("sweep-units");
    let plan = std::fs::read_to_string(plan_dir.join("plan.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let mut extra = json["units"][0].clone();
    extra["index"] = 1.into();
    json["units"].as_array_mut().unwrap().push(extra);
    std::fs::write(plan_dir.join("plan.json"), json.to_string()).unwrap();
    let partial = report(&plan_dir);
    assert_succeeded(&partial);
    assert!(
        stderr(&partial).contains("units 1 of the plan are not finished"),
        "{}",
        stderr(&partial)
    );

    // A baseline that shares nothing with the results.
    let baseline = dir.path().join("baseline.csv");
    std::fs::write(
        &baseline,
        "dataset,protocol,variant,checkpoint,postprocessed,subset_mask,subset,region,dice_mean,dice_std,hd95_mean,hd95_std,runs,cases\n\
         brats2020,A,MetaKD,model.safetensors,false,1,FLAIR,ET,0.5,,9.0,,1,8\n",
    )
    .unwrap();
    let regress = metakd(&[
        "regress",
        "--baseline",
        &s(&baseline),
        "--results",
        &s(&run.join("sweep.parquet")),
    ]);
    assert_failed_with(&regress, &["nothing to compare"]);
}
