//! The `metakd` command's handling of bad input.

use std::process::Command;

fn metakd(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_metakd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_has_help() {
    for cmd in [
        &["--help"][..],
        &["synth", "brats", "--help"],
        &["prepare", "brats", "--help"],
        &["prepare", "avmnist", "--help"],
        &["avmnist", "train", "--help"],
        &["split", "protocol-a", "--help"],
        &["split", "protocol-b", "--help"],
        &["split", "rfnet", "--help"],
        &["bench", "prepare", "--help"],
        &["train", "--help"],
        &["sweep", "--help"],
        &["report", "--help"],
        &["regress", "--help"],
        &["predict", "--help"],
        &["eval-labels", "--help"],
        &["demo", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_metakd"))
            .args(cmd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{cmd:?}"
        );
    }
}

#[test]
fn a_missing_folder_is_named() {
    let (ok, err) = metakd(&[
        "prepare",
        "brats",
        "--src",
        "/no/such/brats",
        "--out",
        "/tmp/unused-shards",
    ]);
    assert!(!ok);
    assert!(
        err.contains("/no/such/brats") && err.contains("no such folder"),
        "{err}"
    );
    let (ok, err) = metakd(&["sweep", "--run", "/no/such/run"]);
    assert!(!ok);
    assert!(err.contains("/no/such/run"), "{err}");
}

#[test]
fn a_bad_configuration_key_is_named_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[train]\niterations = 10\nlearning_rate = 0.1\n").unwrap();
    let (ok, err) = metakd(&["train", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("bad.toml") && err.contains("learning_rate"),
        "{err}"
    );

    std::fs::write(&path, "[train]\ncrop = [30, 32, 32]\n").unwrap();
    let (ok, err) = metakd(&["train", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("train.crop"), "{err}");
}

#[test]
fn a_bad_shape_is_explained() {
    let (ok, err) = metakd(&["synth", "brats", "--out", "/tmp/unused", "--shape", "48,64"]);
    assert!(!ok);
    assert!(err.contains("D,H,W"), "{err}");
}

#[test]
fn a_missing_sweep_table_is_named() {
    let (ok, err) = metakd(&["report", "--sweep", "/no/such/sweep.parquet"]);
    assert!(!ok);
    assert!(err.contains("/no/such/sweep"), "{err}");
}

#[test]
fn prepare_fails_only_when_nothing_is_prepared_or_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (ok, err) = metakd(&[
        "synth",
        "brats",
        "--out",
        &path(&src),
        "--cases",
        "3",
        "--shape",
        "16,20,20",
    ]);
    assert!(ok, "{err}");
    let broken = src.join("BraTS20_Training_002/BraTS20_Training_002_flair.nii.gz");
    std::fs::write(&broken, b"not a volume").unwrap();
    let out = dir.path().join("shards");
    let (ok, err) = metakd(&[
        "prepare",
        "brats",
        "--src",
        &path(&src),
        "--out",
        &path(&out),
    ]);
    assert!(ok, "one bad case of three is skipped, not an error: {err}");
    assert!(err.contains("skipped case BraTS20_Training_002"), "{err}");
    assert!(err.contains("_flair.nii.gz"), "{err}");
    let strict = dir.path().join("strict");
    let (ok, err) = metakd(&[
        "prepare",
        "brats",
        "--src",
        &path(&src),
        "--out",
        &path(&strict),
        "--strict",
    ]);
    assert!(!ok);
    assert!(err.contains("1 cases were skipped (--strict)"), "{err}");
    for i in [1, 3] {
        let f = src.join(format!(
            "BraTS20_Training_00{i}/BraTS20_Training_00{i}_flair.nii.gz"
        ));
        std::fs::write(&f, b"not a volume").unwrap();
    }
    let none = dir.path().join("none");
    let (ok, err) = metakd(&[
        "prepare",
        "brats",
        "--src",
        &path(&src),
        "--out",
        &path(&none),
    ]);
    assert!(!ok);
    assert!(
        err.contains("no case could be prepared (3 skipped"),
        "{err}"
    );
}
