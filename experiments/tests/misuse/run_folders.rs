//! A run folder belongs to one run and one process: a second `metakd train` on the same `--out`
//! is refused while the first holds it, a killed holder's lock is taken over, a new run never
//! overwrites an old one without `--overwrite`, and a run whose final files failed to write
//! finishes them on `--resume`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use polars::prelude::{ParquetReader, SerReader};

fn metakd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_metakd"))
}

fn train(config: &Path, run: &Path, extra: &[&str]) -> Output {
    metakd()
        .arg("train")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(run)
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_succeeded(output: &Output) {
    assert!(output.status.success(), "{}", stderr(output));
}

/// A configuration of `iterations` iterations of a tiny network on synthetic shards.
fn config(dir: &Path, iterations: usize) -> PathBuf {
    let shards = dir.join("shards");
    if !shards.exists() {
        common::synthetic_shards(dir, 5, 3);
    }
    let path = dir.join(format!("run{iterations}.toml"));
    std::fs::write(
        &path,
        format!(
            "[data]\nshards = \"{}\"\ntest_cases = 1\nmeta_val_cases = 1\n\n\
             [model.small]\nwidths = [2, 4, 4, 4]\n\n\
             [train]\niterations = {iterations}\nwarmup_iterations = 2\nbatch_size = 1\n\
             crop = [16, 16, 16]\ncheckpoint_every = 2\n\n\
             [meta]\nevery = 2\nevery_warmup = 2\nsamples = 1\n",
            shards.display()
        ),
    )
    .unwrap();
    path
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_train_on_one_folder_is_refused_and_a_killed_holder_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 100_000);
    let run = dir.path().join("run");
    let mut first = metakd()
        .arg("train")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&run)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = run.join(".metakd.lock");
    wait_for("the first run's checkpoint", || {
        run.join("checkpoint.safetensors").is_file()
    });
    let holder = std::fs::read_to_string(&lock).unwrap();
    assert!(
        holder.starts_with(&format!("pid {}\n", first.id())),
        "{holder}"
    );

    let second = train(&config, &run, &[]);
    assert!(!second.status.success());
    let message = stderr(&second);
    assert!(
        message.contains(&format!(
            "this run folder is in use by process {}",
            first.id()
        )),
        "{message}"
    );
    let resumed_meanwhile = train(&config, &run, &["--resume"]);
    assert!(
        !resumed_meanwhile.status.success(),
        "{}",
        stderr(&resumed_meanwhile)
    );

    // SIGKILL: the lock file still names the dead process; the next run takes it over.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(std::fs::read_to_string(&lock)
        .unwrap()
        .contains(&first.id().to_string()));
    let mut taker = metakd()
        .arg("train")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&run)
        .arg("--resume")
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the taker's lock", || {
        std::fs::read_to_string(&lock)
            .is_ok_and(|t| t.starts_with(&format!("pid {}\n", taker.id())))
    });
    taker.kill().unwrap();
    let output = taker.wait_with_output().unwrap();
    let message = stderr(&output);
    assert!(
        message.contains(&format!("taking over the lock of process {}", first.id())),
        "{message}"
    );
}

#[test]
fn a_new_run_never_overwrites_an_old_one_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 4);
    let run = dir.path().join("run");
    assert_succeeded(&train(&config, &run, &[]));
    let model = std::fs::read(run.join("model.safetensors")).unwrap();
    std::fs::write(run.join("sweep.parquet"), "an old sweep").unwrap();

    let again = train(&config, &run, &[]);
    assert!(!again.status.success());
    let message = stderr(&again);
    assert!(
        message.contains("holds a run already (finished)")
            && message.contains("--resume")
            && message.contains("fresh `--out`")
            && message.contains("--overwrite"),
        "{message}"
    );
    assert_eq!(
        message.matches("holds a run already").count(),
        1,
        "{message}"
    );
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), model);

    let both = train(&config, &run, &["--resume", "--overwrite"]);
    assert!(!both.status.success());

    assert_succeeded(&train(&config, &run, &["--overwrite"]));
    assert!(
        !run.join("sweep.parquet").exists(),
        "the stale sweep is gone"
    );
    assert!(run.join("train_summary.json").is_file());

    // A folder that is not a run's is never cleared.
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join("thesis.tex"), "mine").unwrap();
    let refused = train(&config, &home, &["--overwrite"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("thesis.tex"),
        "{}",
        stderr(&refused)
    );
    assert!(home.join("thesis.tex").is_file());
}

#[test]
fn a_run_whose_final_log_failed_to_write_finishes_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 300);
    let run = dir.path().join("run");
    let running = metakd()
        .arg("train")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&run)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the first checkpoint", || {
        run.join("checkpoint.safetensors").is_file()
    });
    // A folder in the place of the log's temporary file makes the final write fail.
    let blocker = run.join(".train_log.parquet.partial");
    std::fs::create_dir(&blocker).unwrap();
    let failed = running.wait_with_output().unwrap();
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("train_log.parquet"),
        "{}",
        stderr(&failed)
    );
    assert!(!run.join("train_summary.json").exists());

    std::fs::remove_dir(&blocker).unwrap();
    let resumed = train(&config, &run, &["--resume"]);
    assert_succeeded(&resumed);
    let stdout = String::from_utf8_lossy(&resumed.stdout).into_owned();
    assert!(stdout.contains("trained 300 iterations"), "{stdout}");
    assert!(run.join("train_summary.json").is_file());
    let log = ParquetReader::new(std::fs::File::open(run.join("train_log.parquet")).unwrap())
        .finish()
        .unwrap();
    assert_eq!(log.height(), 300);

    let finished = train(&config, &run, &["--resume"]);
    assert!(!finished.status.success());
    assert!(
        stderr(&finished).contains("already finished"),
        "{}",
        stderr(&finished)
    );
}
