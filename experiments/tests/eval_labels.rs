//! `metakd eval-labels` on label maps in the official layouts: identical maps, a missed region,
//! a file with a non-BraTS label (skipped, the others scored), unmatched cases, and HD95 scaling
//! with the voxel spacing.

use std::path::Path;
use std::process::Command;

use metakd_data::nifti_io::{brats_affine, write_volume, StoredType, Volume};
use ndarray::Array3;
use serde_json::Value;

const SHAPE: [usize; 3] = [12, 16, 16];

/// A tumour: oedema (2) in a box, necrotic core (1) inside it, enhancing tumour (4) inside that,
/// shifted by `shift` voxels along the last axis.
fn tumour(shift: usize) -> Array3<f32> {
    Array3::from_shape_fn((SHAPE[0], SHAPE[1], SHAPE[2]), |(z, x, y)| {
        let inside = |lo: usize, hi: usize| {
            (lo..hi).contains(&z) && (lo..hi).contains(&x) && (lo + shift..hi + shift).contains(&y)
        };
        if inside(5, 7) {
            4.0
        } else if inside(4, 8) {
            1.0
        } else if inside(2, 10) {
            2.0
        } else {
            0.0
        }
    })
}

fn write(path: &Path, data: Array3<f32>, spacing: f32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let volume = Volume {
        affine: brats_affine(SHAPE, [spacing; 3]),
        data,
        spacing: [spacing; 3],
    };
    write_volume(path, &volume, StoredType::Uint8).unwrap();
}

fn eval_labels(pred: &Path, reference: &Path) -> (Value, bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_metakd"))
        .args(["eval-labels", "--pred"])
        .arg(pred)
        .arg("--ref")
        .arg(reference)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        json,
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn metric(case: &Value, region: &str, name: &str) -> f64 {
    case["regions"][region][name].as_f64().unwrap()
}

#[test]
fn folders_are_paired_by_case_and_bad_cases_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, pred) = (dir.path().join("ref"), dir.path().join("pred"));
    for k in 1..=4 {
        let id = format!("BraTS20_Training_00{k}");
        write(
            &reference.join(&id).join(format!("{id}_seg.nii.gz")),
            tumour(0),
            1.0,
        );
        // Images beside the label maps, as in the release: not label maps, never read.
        write(
            &reference.join(&id).join(format!("{id}_t1.nii.gz")),
            tumour(3),
            1.0,
        );
    }
    write(&pred.join("BraTS20_Training_001.nii.gz"), tumour(0), 1.0);
    // Case 2 predicts no enhancing tumour: its voxels are necrotic core.
    write(
        &pred.join("BraTS20_Training_002.nii.gz"),
        tumour(0).mapv(|v| if v == 4.0 { 1.0 } else { v }),
        1.0,
    );
    // Case 3 carries label 3, which BraTS 2018–2020 label maps do not have.
    write(
        &pred.join("BraTS20_Training_003.nii.gz"),
        tumour(0).mapv(|v| if v == 4.0 { 3.0 } else { v }),
        1.0,
    );
    // Case 4 has no prediction; case 9 has no reference.
    write(&pred.join("BraTS20_Training_009.nii.gz"), tumour(0), 1.0);

    let (json, ok, stderr) = eval_labels(&pred, &reference);
    assert!(ok, "{stderr}");
    let cases = json["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    let (same, no_et) = (&cases[0], &cases[1]);
    assert_eq!(same["id"], "BraTS20_Training_001");
    for region in ["ET", "TC", "WT"] {
        assert_eq!(metric(same, region, "dice"), 1.0);
        assert_eq!(metric(same, region, "hd95"), 0.0);
        assert_eq!(metric(same, region, "sensitivity"), 1.0);
        assert_eq!(metric(same, region, "specificity"), 1.0);
    }
    assert_eq!(metric(no_et, "ET", "dice"), 0.0);
    assert_eq!(metric(no_et, "ET", "hd95"), 373.13);
    assert_eq!(metric(no_et, "ET", "sensitivity"), 0.0);
    assert_eq!(metric(no_et, "TC", "dice"), 1.0);
    assert_eq!(metric(no_et, "WT", "dice"), 1.0);
    assert!((json["mean"]["ET"]["dice"].as_f64().unwrap() - 0.5).abs() < 1e-12);
    assert!((json["mean"]["ET"]["hd95"].as_f64().unwrap() - 373.13 / 2.0).abs() < 1e-9);

    let skipped = json["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["id"], "BraTS20_Training_003");
    assert!(skipped[0]["file"]
        .as_str()
        .unwrap()
        .ends_with("pred/BraTS20_Training_003.nii.gz"));
    assert!(skipped[0]["reason"].as_str().unwrap().contains("label 3"));
    assert!(stderr.contains("skipped case BraTS20_Training_003"));
    assert_eq!(json["missing_predictions"][0], "BraTS20_Training_004");
    assert_eq!(json["unmatched_predictions"][0], "BraTS20_Training_009");
}

#[test]
fn hd95_is_in_millimetres_and_grids_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    write(&p("ref_1mm.nii.gz"), tumour(0), 1.0);
    write(&p("pred_1mm.nii.gz"), tumour(2), 1.0);
    write(&p("ref_2mm.nii.gz"), tumour(0), 2.0);
    write(&p("pred_2mm.nii.gz"), tumour(2), 2.0);
    let (one, ok, stderr) = eval_labels(&p("pred_1mm.nii.gz"), &p("ref_1mm.nii.gz"));
    assert!(ok, "{stderr}");
    let (two, ok, stderr) = eval_labels(&p("pred_2mm.nii.gz"), &p("ref_2mm.nii.gz"));
    assert!(ok, "{stderr}");
    for region in ["ET", "TC", "WT"] {
        let (a, b) = (
            metric(&one["cases"][0], region, "hd95"),
            metric(&two["cases"][0], region, "hd95"),
        );
        assert!(a > 0.0, "{region}: a shifted tumour has a positive HD95");
        assert!((b - 2.0 * a).abs() < 1e-9, "{region}: {b} vs 2 × {a}");
    }
    // A prediction on another grid is not scored, and with nothing scored the command fails.
    let (json, ok, _) = eval_labels(&p("pred_2mm.nii.gz"), &p("ref_1mm.nii.gz"));
    assert!(!ok);
    assert!(json["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("voxel spacing"));
}
