//! AV-MNIST built from the real sources in `../shared/data` (FSDD recordings, 5,000 MNIST
//! digits): SMIL's split and pairing, the Arrow file read back, bad recordings skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use metakd_data::avmnist::dataset::{build, read, write, AvMnistOptions};
use metakd_data::avmnist::mfcc::{Mfcc, MfccSettings};
use metakd_data::avmnist::sources::{read_mnist_csv, read_wave};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

#[test]
fn smil_split_pairs_every_recording_with_an_image_of_its_digit() {
    let fsdd = shared().join("fsdd/recordings");
    let mnist = shared().join("mnist5k/mnist_5k.csv.gz");
    let (samples, manifest) = build(&fsdd, &mnist, &AvMnistOptions::default()).unwrap();
    assert_eq!((manifest.train, manifest.test), (1050, 450));
    assert!(manifest.skipped.is_empty());
    let mut per_digit: HashMap<(bool, u8), usize> = HashMap::new();
    for s in &samples {
        *per_digit.entry((s.test, s.label)).or_default() += 1;
        assert_eq!(s.test, s.recording_index < 15);
        assert!(["jackson", "nicolas", "theo"].contains(&s.speaker.as_str()));
    }
    for digit in 0..10 {
        assert_eq!(per_digit[&(false, digit)], 105);
        assert_eq!(per_digit[&(true, digit)], 45);
    }
    // Each image is used once and shows the recording's digit.
    let digits = read_mnist_csv(&mnist).unwrap();
    let mut rows: Vec<u32> = samples.iter().map(|s| s.image_row).collect();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), 1500);
    for s in &samples {
        let digit = &digits[s.image_row as usize];
        assert_eq!(digit.label, s.label);
        assert_eq!(s.image[300], f32::from(digit.pixels[300]) / 255.0);
    }
    // The audio is the recording's MFCCs.
    let first = samples
        .iter()
        .find(|s| s.speaker == "theo" && s.label == 3 && s.recording_index == 20)
        .unwrap();
    let wave = read_wave(&fsdd.join("3_theo_20.wav")).unwrap();
    assert_eq!(first.audio, Mfcc::new(MfccSettings::SMIL).features(&wave));

    // Another seed pairs other images with the same recordings.
    let other = AvMnistOptions {
        seed: 1,
        ..Default::default()
    };
    let (reseeded, _) = build(&fsdd, &mnist, &other).unwrap();
    assert_eq!(reseeded.len(), 1500);
    let same = samples
        .iter()
        .zip(&reseeded)
        .filter(|(a, b)| a.image_row == b.image_row)
        .count();
    assert!(same < 50, "{same} pairs unchanged");

    // Written and read back unchanged.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &samples, &manifest).unwrap();
    let (back, back_manifest) = read(dir.path()).unwrap();
    assert_eq!(back, samples);
    assert_eq!(back_manifest, manifest);
}

#[test]
fn an_unreadable_recording_is_skipped_and_named() {
    let fsdd = shared().join("fsdd/recordings");
    let dir = tempfile::tempdir().unwrap();
    let recordings = dir.path().join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    for name in [
        "0_theo_3.wav",
        "0_theo_30.wav",
        "1_jackson_40.wav",
        "2_george_1.wav",
    ] {
        std::fs::copy(fsdd.join(name), recordings.join(name)).unwrap();
    }
    std::fs::write(recordings.join("1_nicolas_2.wav"), b"RIFF, but not a wave").unwrap();
    let mnist = shared().join("mnist5k/mnist_5k.csv.gz");
    let (samples, manifest) = build(&recordings, &mnist, &AvMnistOptions::default()).unwrap();
    assert_eq!(
        samples.len(),
        3,
        "george is not one of the protocol's speakers"
    );
    assert_eq!((manifest.train, manifest.test), (2, 1));
    assert_eq!(manifest.skipped.len(), 1);
    assert!(manifest.skipped[0].0.ends_with("1_nicolas_2.wav"));
}
