//! Damaged NIfTI files cannot make `metakd prepare brats` allocate what they claim: a truncated
//! gzip whose last bytes claim 3.3 GB, a 2 GB sparse file and a header declaring 1024³ voxels
//! are each read no further than their header allows, under a 1 GB address-space limit, and the
//! case is skipped with the reason while the others are prepared.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `metakd ARGS` under a 1 GB limit of virtual memory: an allocation of gigabytes fails.
fn metakd_in_1gb(args: &[&str]) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg("ulimit -v 1000000; exec \"$@\"")
        .arg("metakd")
        .arg(env!("CARGO_BIN_EXE_metakd"))
        .args(args)
        .output()
        .unwrap()
}

fn synth(out: &Path, plain: bool) {
    let out = out.display().to_string();
    let mut args = vec![
        "synth", "brats", "--out", &out, "--cases", "3", "--shape", "16,24,24",
    ];
    if plain {
        args.push("--plain");
    }
    let output = metakd_in_1gb(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The file of `modality` of the `index`-th case folder (sorted) of `src`.
fn case_file(src: &Path, index: usize, suffix: &str) -> PathBuf {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    std::fs::read_dir(&cases[index])
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap()
}

fn prepare(src: &Path, out: &Path) -> (Output, String) {
    let output = metakd_in_1gb(&[
        "prepare",
        "brats",
        "--src",
        &src.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stderr)
}

#[test]
fn a_truncated_gzip_claiming_gigabytes_is_skipped_without_allocating_them() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    synth(&src, false);
    let t1 = case_file(&src, 0, "_t1.nii.gz");
    let mut bytes = std::fs::read(&t1).unwrap();
    bytes.truncate(bytes.len() * 3 / 5);
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&3_300_000_000u32.to_le_bytes());
    std::fs::write(&t1, bytes).unwrap();

    let (output, stderr) = prepare(&src, &dir.path().join("shards"));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("_t1.nii.gz") && stderr.contains("gzip"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("2 cases"),
        "{stderr}"
    );
}

#[test]
fn sparse_files_and_huge_headers_are_read_no_further_than_the_header_allows() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    synth(&src, true);
    // A 2 GB sparse file whose first bytes are a valid volume: its voxels are read, the rest
    // is not.
    let sparse = case_file(&src, 0, "_flair.nii");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sparse)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    // A header declaring 1024³ int16 voxels, in a (sparse) file long enough to hold them.
    let huge = case_file(&src, 1, "_t2.nii");
    let mut bytes = std::fs::read(&huge).unwrap();
    for (i, extent) in [1024i16, 1024, 1024].iter().enumerate() {
        bytes[42 + 2 * i..44 + 2 * i].copy_from_slice(&extent.to_le_bytes());
    }
    std::fs::write(&huge, &bytes).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(352 + (2u64 << 30))
        .unwrap();

    let (output, stderr) = prepare(&src, &dir.path().join("shards"));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("_t2.nii")
            && stderr.contains("[1024, 1024, 1024]")
            && stderr.contains("memory bound"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("2 cases"),
        "{stderr}"
    );
}
