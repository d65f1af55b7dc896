//! AV-MNIST's audio features against librosa: the fixture (`tools/avmnist_mfcc_reference.py`)
//! holds the MFCCs librosa computes for five real FSDD recordings, the shortest and the longest
//! of the protocol's speakers among them; the recordings themselves are read from
//! `../shared/data/fsdd` (the test fails when it is missing).

use std::path::Path;

use metakd_data::avmnist::mfcc::{Mfcc, MfccSettings};
use metakd_data::avmnist::sources::read_wave;

#[derive(serde::Deserialize)]
struct Case {
    file: String,
    decimated_samples: usize,
    frames: usize,
    mfcc: Vec<f64>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[test]
fn mfccs_match_librosa_on_real_recordings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture: Fixture = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/avmnist_mfcc.json")).unwrap(),
    )
    .unwrap();
    let recordings = root.join("../../shared/data/fsdd/recordings");
    let mfcc = Mfcc::new(MfccSettings::SMIL);
    let mut worst = 0f64;
    for case in &fixture.cases {
        let wave = read_wave(&recordings.join(&case.file)).unwrap();
        assert_eq!(
            wave.len().div_ceil(3),
            case.decimated_samples,
            "{}",
            case.file
        );
        let signal: Vec<f64> = wave.iter().step_by(3).map(|&v| f64::from(v)).collect();
        assert_eq!(
            mfcc.coefficients(&signal)[0].len(),
            case.frames,
            "{}",
            case.file
        );
        let ours = mfcc.features(&wave);
        assert_eq!(ours.len(), 400);
        for (i, (a, b)) in ours.iter().zip(&case.mfcc).enumerate() {
            let diff = (f64::from(*a) - b).abs();
            worst = worst.max(diff);
            assert!(
                diff < 1e-3,
                "{} coefficient {} frame {}: {a} vs librosa {b}",
                case.file,
                i / 20,
                i % 20
            );
        }
    }
    // Seen: 6.1e-5 (librosa works in float32).
    assert!(
        worst > 0.0,
        "a comparison of identical numbers proves nothing"
    );
}
