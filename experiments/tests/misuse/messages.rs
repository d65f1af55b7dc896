//! What a user reads when a command fails or skips something: the file, the problem and the next
//! step, once.

use std::path::Path;
use std::process::{Command, Output};

use crate::common;

fn metakd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metakd"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn a_skipped_case_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let out = metakd(&[
        "synth",
        "brats",
        "--out",
        &s(&src),
        "--cases",
        "3",
        "--shape",
        "16,24,24",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let broken = src.join("BraTS20_Training_002/BraTS20_Training_002_flair.nii.gz");
    std::fs::write(&broken, b"not a volume").unwrap();
    let prepared = metakd(&[
        "prepare",
        "brats",
        "--src",
        &s(&src),
        "--out",
        &s(&dir.path().join("shards")),
    ]);
    assert!(prepared.status.success(), "{}", stderr(&prepared));
    let message = stderr(&prepared);
    assert_eq!(
        message.matches("BraTS20_Training_002_flair.nii.gz").count(),
        1,
        "{message}"
    );
}

#[test]
fn missing_shards_name_the_step_that_makes_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.toml");
    std::fs::write(&config, "[data]\nshards = \"nowhere\"\n").unwrap();
    let out = metakd(&[
        "train",
        "--config",
        &s(&config),
        "--out",
        &s(&dir.path().join("run")),
    ]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("nowhere") && message.contains("run `metakd prepare`"),
        "{message}"
    );
    assert_eq!(
        message.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{message}"
    );
}

#[test]
fn a_file_given_as_an_output_folder_is_named_with_its_role() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    std::fs::write(&file, "mine").unwrap();
    let shards = common::synthetic_shards(dir.path(), 3, 1);
    let prepared = metakd(&[
        "prepare",
        "brats",
        "--src",
        &s(&dir.path().join("src")),
        "--out",
        &s(&file),
    ]);
    assert!(!prepared.status.success());
    assert!(
        stderr(&prepared).contains("the shard folder is a file, not a folder"),
        "{}",
        stderr(&prepared)
    );
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        format!("[data]\nshards = \"{}\"\n", shards.display()),
    )
    .unwrap();
    let trained = metakd(&["train", "--config", &s(&config), "--out", &s(&file)]);
    assert!(!trained.status.success());
    assert!(
        stderr(&trained).contains("the run folder is a file, not a folder"),
        "{}",
        stderr(&trained)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
}
