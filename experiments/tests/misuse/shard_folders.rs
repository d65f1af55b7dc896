//! A shard folder belongs to one source and one process: `metakd prepare brats` refuses another
//! source's shards (naming both) unless `--overwrite`, refuses a folder another process is
//! preparing, and leaves the manifest incomplete when `--strict` fails or no case survives.

use std::path::Path;
use std::process::{Command, Output};

use metakd_data::lock::Lock;
use metakd_data::shards::Manifest;

fn metakd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metakd"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn synth(out: &Path, cases: &str, seed: &str) {
    let output = metakd(&[
        "synth",
        "brats",
        "--out",
        &out.display().to_string(),
        "--cases",
        cases,
        "--shape",
        "16,24,24",
        "--seed",
        seed,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
}

fn prepare(src: &Path, out: &Path, extra: &[&str]) -> Output {
    let (src, out) = (src.display().to_string(), out.display().to_string());
    let mut args = vec!["prepare", "brats", "--src", &src, "--out", &out];
    args.extend(extra);
    metakd(&args)
}

#[test]
fn a_shard_folder_keeps_to_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, out) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("shards"),
    );
    synth(&a, "3", "1");
    synth(&b, "2", "2");
    assert!(prepare(&a, &out, &[]).status.success());
    let manifest = std::fs::read(out.join("manifest.json")).unwrap();

    let refused = prepare(&b, &out, &[]);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains(&format!("holds the shards of {}", a.display()))
            && message.contains(&format!("not of {}", b.display()))
            && message.contains("--overwrite"),
        "{message}"
    );
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), manifest);

    // The same source again resumes (nothing to do), whatever path spells it.
    let spelled = dir.path().join(".").join("a");
    assert!(prepare(&spelled, &out, &[]).status.success());

    let replaced = prepare(&b, &out, &["--overwrite"]);
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    let manifest = Manifest::read(&out).unwrap();
    assert_eq!(manifest.cases.len(), 2);
    assert_eq!(Path::new(&manifest.source), b);
}

#[test]
fn a_shard_folder_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("src"), dir.path().join("shards"));
    synth(&src, "2", "1");
    let held = Lock::folder(&out, "shard folder").unwrap();
    let refused = prepare(&src, &out, &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(&format!(
            "this shard folder is in use by process {}",
            std::process::id()
        )),
        "{}",
        stderr(&refused)
    );
    assert!(!out.join("manifest.json").exists());
    drop(held);
    assert!(prepare(&src, &out, &[]).status.success());
}

#[test]
fn a_strict_preparation_that_skips_a_case_leaves_the_manifest_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("src"), dir.path().join("shards"));
    synth(&src, "3", "1");
    let case = std::fs::read_dir(&src)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap();
    let t1 = std::fs::read_dir(&case)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_t1.nii.gz"))
        .unwrap();
    let bytes = std::fs::read(&t1).unwrap();
    std::fs::write(&t1, &bytes[..bytes.len() / 2]).unwrap();

    let strict = prepare(&src, &out, &["--strict"]);
    assert!(!strict.status.success());
    assert!(stderr(&strict).contains("--strict"), "{}", stderr(&strict));
    assert!(!Manifest::read_any(&out).unwrap().complete);
    assert!(
        Manifest::read(&out).is_err(),
        "no stage reads it as a release"
    );

    let lenient = prepare(&src, &out, &[]);
    assert!(lenient.status.success(), "{}", stderr(&lenient));
    let manifest = Manifest::read(&out).unwrap();
    assert_eq!((manifest.cases.len(), manifest.skipped.len()), (2, 1));
}

/// `metakd prepare brats --src SRC --out OUT` as an unprivileged user (as root, through
/// `setpriv`, so that a folder without read permission is unreadable to it too).
fn prepare_unprivileged(src: &Path, out: &Path) -> Output {
    let mut command = if nix_is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_metakd"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_metakd"))
    };
    command
        .args(["prepare", "brats", "--src"])
        .arg(src)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn a_symlink_loop_an_unreadable_case_and_a_missing_label_map_are_each_dealt_with() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (src, out) = (dir.path().join("src"), dir.path().join("shards"));
    synth(&src, "4", "1");
    std::os::unix::fs::symlink(".", src.join("loop")).unwrap();
    let mut cases: Vec<_> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect();
    cases.sort();
    let seg = std::fs::read_dir(&cases[1])
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_seg.nii.gz"))
        .unwrap();
    std::fs::remove_file(seg).unwrap();
    std::fs::set_permissions(&cases[0], std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();

    let output = prepare_unprivileged(&src, &out);
    std::fs::set_permissions(&cases[0], std::fs::Permissions::from_mode(0o755)).unwrap();
    let message = stderr(&output);
    assert!(output.status.success(), "{message}");
    assert!(!message.contains("duplicate"), "{message}");
    assert!(message.contains("unreadable folder"), "{message}");
    assert!(message.contains("without a label map"), "{message}");
    let manifest = Manifest::read(&out).unwrap();
    assert_eq!(manifest.cases.len(), 3);
    assert_eq!(manifest.cases.iter().filter(|c| !c.labelled).count(), 1);
    assert_eq!(manifest.skipped.len(), 1);
}
