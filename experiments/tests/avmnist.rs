//! AV-MNIST training on the real sources (`../shared/data`): a short MetaKD run with 10 % of the
//! training samples keeping their audio learns the digits, moves ω and reports accuracy with both
//! modalities and with each one missing; at the visual rate the audio is read best; the
//! image-only baseline has no audio-only score.

use std::path::Path;

use metakd_data::avmnist::dataset::{build, AvMnistOptions};
use metakd_experiments::avmnist::{train_and_evaluate, AvMnistTrainConfig, RateModality, Variant};

#[test]
fn a_short_metakd_run_learns_the_digits() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let (samples, _) = build(
        &shared.join("fsdd/recordings"),
        &shared.join("mnist5k/mnist_5k.csv.gz"),
        &AvMnistOptions::default(),
    )
    .unwrap();
    let cfg = AvMnistTrainConfig {
        iterations: 150,
        ..Default::default()
    };
    let result = train_and_evaluate(&samples, &cfg).unwrap();
    assert!(result.accuracy_both() > 0.7, "{result:?}");
    assert!(result.accuracy([true, false]).unwrap() > 0.7, "{result:?}");
    // Audio alone is scored too (its level after ~100 samples with audio is not asserted).
    assert!((0.0..=1.0).contains(&result.accuracy([false, true]).unwrap()));
    for s in &result.scores {
        assert!((0.0..=1.0).contains(&s.scores.macro_f1), "{s:?}");
    }
    assert!((result.omega.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert_ne!(result.omega[0], 0.5, "the meta step moves ω");

    // The visual rate: every sample keeps its audio, 10 % their image; the audio is then the
    // modality the network reads best.
    let visual = train_and_evaluate(
        &samples,
        &AvMnistTrainConfig {
            rate_modality: RateModality::Image,
            iterations: 150,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        visual.accuracy([false, true]).unwrap() > visual.accuracy([true, false]).unwrap() + 0.1,
        "{visual:?}"
    );

    // The image-only baseline never reads audio: no audio-only score, and the same model
    // whatever the audio rate.
    let image_only = |rate: f64| {
        train_and_evaluate(
            &samples,
            &AvMnistTrainConfig {
                variant: Variant::ImageOnly,
                rate,
                iterations: 20,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (a, b) = (image_only(0.05), image_only(0.2));
    assert_eq!(a.accuracy([false, true]), None);
    assert_eq!(a.accuracy([true, false]), Some(a.accuracy_both()));
    assert_eq!(a.scores, b.scores);
}
