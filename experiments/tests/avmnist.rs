//! AV-MNIST training on the real sources (`../shared/data`): a short MetaKD run with 10 % of the
//! training samples keeping their audio learns the digits, moves ω and reports accuracy with both
//! modalities and with each one missing; at the visual rate the audio is read best; the
//! image-only baseline has no audio-only score.

use std::path::Path;

use metakd_data::avmnist::dataset::{build, AvMnistOptions};
use metakd_experiments::classify::avmnist::{
    train_and_evaluate, AvMnistTrainConfig, RateModality, Variant,
};

/// AV-MNIST built from the real FSDD and MNIST files of `../shared/data`.
fn real_samples() -> Vec<metakd_data::avmnist::dataset::AvMnistSample> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    build(
        &shared.join("fsdd/recordings"),
        &shared.join("mnist5k/mnist_5k.csv.gz"),
        &AvMnistOptions::default(),
    )
    .unwrap()
    .0
}

#[test]
fn a_short_metakd_run_learns_the_digits() {
    let samples = real_samples();
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

    // The visual rate: every sample keeps its audio, 10 % their image; the audio alone is then
    // read far better than when only 10 % of the samples kept it.
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
        visual.accuracy([false, true]).unwrap() > result.accuracy([false, true]).unwrap() + 0.1,
        "{visual:?}\n{result:?}"
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

#[test]
fn the_protocol_runs_in_resumable_units_into_the_common_table() {
    use metakd_experiments::classify::avmnist_protocol::{run_protocol, ProtocolPlan};
    let samples = real_samples();
    let out = std::env::temp_dir().join(format!("metakd-avmnist-protocol-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let plan = ProtocolPlan {
        rate_modalities: vec![RateModality::Audio],
        rates: vec![0.05, 0.10],
        seeds: vec![0, 1],
        variants: vec![Variant::MetaKd, Variant::ImageOnly],
    };
    let base = AvMnistTrainConfig {
        iterations: 20,
        meta_every: 5,
        ..Default::default()
    };
    let first = run_protocol(&samples, &base, &plan, &out, false).unwrap();
    // MetaKD: 2 rates × 2 seeds; image only: one unit per seed, whatever the audio rate.
    assert_eq!((first.trained, first.already_done), (6, 0));
    let again = run_protocol(&samples, &base, &plan, &out, false).unwrap();
    assert_eq!((again.trained, again.already_done), (0, 6));

    let read = metakd_reports::results::read_tables(std::slice::from_ref(&first.table)).unwrap();
    // MetaKD: 4 units × 3 test subsets; image only: 2 units shown at 2 rates × 2 subsets.
    assert_eq!(read.df.height(), 4 * 3 + 2 * 2 * 2);
    let tasks = read.df.column("task").unwrap().str().unwrap().clone();
    assert!(tasks.iter().all(|t| t == Some("classification")));
    let accuracy = read.df.column("accuracy").unwrap().f64().unwrap().clone();
    assert!(accuracy
        .iter()
        .all(|a| a.is_some_and(|a| (0.0..=1.0).contains(&a))));

    let reports =
        metakd_reports::write_reports(std::slice::from_ref(&first.table), &out.join("report"))
            .unwrap();
    let md = std::fs::read_to_string(reports.classification.unwrap().report).unwrap();
    assert!(md.contains("### AV-MNIST, audio rate"), "{md}");
    assert!(md.contains("| image only |"), "{md}");
    assert!(md.contains("MetaKD against the best baseline"), "{md}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn multibench_layout_trains_with_its_112_by_112_spectrograms() {
    use metakd_data::avmnist::multibench::{build_from_sources, read_layout, write_layout};
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let (samples, audio_shape, _) = build_from_sources(
        &shared.join("fsdd/recordings"),
        &shared.join("mnist5k/mnist_5k.csv.gz"),
        &AvMnistOptions::default(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), &samples, audio_shape).unwrap();
    let (samples, manifest) = read_layout(dir.path()).unwrap();

    // The default settings expect SMIL's 20 × 20 MFCCs: refused, naming both extents.
    let e = train_and_evaluate(&samples, &AvMnistTrainConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("12544 audio") && e.contains("[20, 20]"), "{e}");

    // Fitted to the folder, the audio network reads the spectrograms: the audio alone, trained on
    // every sample, is far above chance (10 %).
    let cfg = AvMnistTrainConfig {
        variant: Variant::AudioOnly,
        rate_modality: RateModality::Image,
        iterations: 150,
        ..Default::default()
    }
    .for_data(&manifest.audio);
    assert_eq!(cfg.model.inputs[1], [112, 112]);
    assert_eq!(cfg.audio_scale, 255.0);
    let result = train_and_evaluate(&samples, &cfg).unwrap();
    let audio = result.accuracy([false, true]).unwrap();
    assert!(audio > 0.7, "{result:?}");
}
