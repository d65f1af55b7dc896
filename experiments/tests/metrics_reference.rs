//! Dice, HD95, sensitivity and specificity against medpy and scipy on random masks with
//! anisotropic spacing (fixture written by `tools/hd95_reference.py`).

use metakd_experiments::metrics::{region_metrics, Grid};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    shape: [usize; 3],
    spacing: [f64; 3],
    predicted: String,
    reference: String,
    hd95: f64,
    dice: f64,
    sensitivity: f64,
    specificity: f64,
}

#[derive(Deserialize)]
struct Fixture {
    hd95_checked_against_medpy: bool,
    cases: Vec<Case>,
}

/// The mask of `voxels` bits packed most-significant bit first (numpy.packbits), hex encoded.
fn unpack(hex: &str, voxels: usize) -> Vec<bool> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    (0..voxels)
        .map(|v| bytes[v / 8] & (0x80 >> (v % 8)) != 0)
        .collect()
}

#[test]
fn metrics_match_medpy_and_scipy_on_random_anisotropic_masks() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics_reference.json"
    );
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(fixture.hd95_checked_against_medpy);
    assert_eq!(fixture.cases.len(), 10);
    for case in &fixture.cases {
        let voxels = case.shape.iter().product();
        let grid = Grid {
            shape: case.shape,
            spacing: case.spacing,
        };
        let m = region_metrics(
            &unpack(&case.predicted, voxels),
            &unpack(&case.reference, voxels),
            &grid,
            0,
        );
        let close = |ours: f64, theirs: f64, what: &str| {
            assert!(
                (ours - theirs).abs() <= 1e-6 * theirs.abs().max(1.0),
                "{}: {what} {ours} vs {theirs}",
                case.name
            );
        };
        close(m.hd95, case.hd95, "HD95");
        close(m.dice, case.dice, "Dice");
        close(m.sensitivity, case.sensitivity, "sensitivity");
        close(m.specificity, case.specificity, "specificity");
    }
}
