//! What a newcomer sees first, through the binary with its output piped (as into a file or a CI
//! log): the demo says what it shows in notes and warns about nothing of its own making, and log
//! lines carry no colour codes when the stream is not a terminal.

use std::path::Path;
use std::process::{Command, Output};

fn metakd(args: &[&str], workdir: &Path) -> (Output, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_metakd"))
        .args(args)
        .current_dir(workdir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn the_demo_notes_what_it_shows_and_warns_about_nothing_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = metakd(
        &[
            "demo",
            "--workdir",
            "demo",
            "--cases",
            "14",
            "--shape",
            "32,32,32",
            "--iterations",
            "4",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("demo: 14 synthetic cases of 32×32×32 voxels in the brats2020 layout"),
        "{stdout}"
    );
    assert!(
        stdout.contains("names case BraTS20_Training_014's label map W39_1998.09.19_Segm.nii"),
        "{stdout}"
    );
    assert!(stdout.contains("report: demo/report/report.md"), "{stdout}");
    assert!(
        !stderr.contains("WARN"),
        "the demo warns about itself:\n{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}') && !stdout.contains('\u{1b}'),
        "{stderr}"
    );
}

#[test]
fn warnings_in_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (synth, ..) = metakd(
        &["synth", "brats", "--out", "release", "--cases", "3"],
        dir.path(),
    );
    assert!(synth.status.success());
    let (out, stdout, stderr) = metakd(
        &["prepare", "brats", "--src", "release", "--out", "shards"],
        dir.path(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // A user preparing a real BraTS2020 release is told about the renamed label map.
    let warning = stderr
        .lines()
        .find(|l| l.contains("W39_1998.09.19_Segm.nii"))
        .unwrap_or_else(|| panic!("no warning about the renamed label map:\n{stderr}"));
    assert!(warning.contains(" WARN "), "{warning}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe:\n{stderr:?}"
    );
}
