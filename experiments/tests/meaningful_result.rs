//! The effect the paper is about, on a short fixed-seed demo run: losing T1ce costs ET Dice, and
//! with every modality the network segments all three regions.

use metakd_experiments::demo::{run_demo, DemoOptions};

#[test]
fn demo_run_shows_the_missing_t1ce_effect_and_segments_with_all_modalities() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run_demo(&DemoOptions {
        workdir: dir.path().to_owned(),
        cases: 32,
        shape: [48, 64, 64],
        seed: 0,
        iterations: None,
        show_progress: false,
        on_note: |_| {},
    })
    .unwrap();
    let s = &outcome.summary;
    let gap = s.et_with_key_modality - s.et_without_key_modality;
    assert!(
        gap >= 0.15,
        "ET Dice with T1ce {:.3}, without {:.3}",
        s.et_with_key_modality,
        s.et_without_key_modality
    );
    for (region, dice) in ["ET", "TC", "WT"].iter().zip(s.full_dice) {
        assert!(dice >= 0.6, "full-modality {region} Dice {dice:.3}");
    }
    let report = std::fs::read_to_string(&outcome.report).unwrap();
    assert!(report.contains(&format!("**{:.2}**", 100.0 * s.et_with_key_modality)));
}
