//! MultiBench's AV-MNIST layout: written from the real sources in `../shared/data` (FSDD
//! recordings as 112 × 112 spectrograms, MNIST digits), read back into the prepared format, the
//! element types and shapes MultiBench's files come in, and bad folders refused by name.

use std::path::{Path, PathBuf};

use metakd_data::avmnist::dataset::{read, write, AudioKind, AvMnistOptions, AvMnistSource};
use metakd_data::avmnist::multibench::{build_from_sources, read_layout, write_layout};
use metakd_data::avmnist::sources::read_wave;
use metakd_data::avmnist::spectrogram::{Spectrogram, SpectrogramSettings};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::write_npy;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// The header of an `.npy` file (format 1.0 or 2.0) as text.
fn npy_header(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    String::from_utf8(bytes[start..start + len].to_vec()).unwrap()
}

/// A small layout of `n_train` and `n_test` samples, written by the project's writer.
fn small_layout(
    dir: &Path,
    n_train: usize,
    n_test: usize,
) -> Vec<metakd_data::avmnist::dataset::AvMnistSample> {
    let samples: Vec<_> = (0..n_train + n_test)
        .map(|i| metakd_data::avmnist::dataset::AvMnistSample {
            test: i >= n_train,
            label: (i % 10) as u8,
            speaker: String::new(),
            recording_index: (if i >= n_train { i - n_train } else { i }) as u32,
            image_row: (if i >= n_train { i - n_train } else { i }) as u32,
            audio: (0..6 * 5).map(|k| ((i * 7 + k) % 256) as f32).collect(),
            image: (0..784).map(|k| ((i + k) % 256) as f32 / 255.0).collect(),
        })
        .collect();
    write_layout(dir, &samples, [6, 5]).unwrap();
    samples
}

#[test]
fn the_layout_from_real_sources_reads_back_as_written() {
    let fsdd = shared().join("fsdd/recordings");
    let mnist = shared().join("mnist5k/mnist_5k.csv.gz");
    let (samples, audio_shape, skipped) =
        build_from_sources(&fsdd, &mnist, &AvMnistOptions::default()).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(audio_shape, [112, 112]);
    assert_eq!(samples.len(), 1500);

    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("avmnist");
    write_layout(&layout, &samples, audio_shape).unwrap();
    // MultiBench's file names, shapes and element types.
    let expected = [
        ("image/train_data.npy", "'<f4'", "(1050, 784)"),
        ("image/test_data.npy", "'<f4'", "(450, 784)"),
        ("audio/train_data.npy", "'<f4'", "(1050, 112, 112)"),
        ("audio/test_data.npy", "'<f4'", "(450, 112, 112)"),
        ("train_labels.npy", "'<i8'", "(1050,)"),
        ("test_labels.npy", "'<i8'", "(450,)"),
    ];
    for (file, descr, shape) in expected {
        let header = npy_header(&layout.join(file));
        assert!(header.contains(descr), "{file}: {header}");
        assert!(header.contains(shape), "{file}: {header}");
        assert!(
            header.contains("'fortran_order': False"),
            "{file}: {header}"
        );
    }

    let (back, manifest) = read_layout(&layout).unwrap();
    assert_eq!((manifest.train, manifest.test), (1050, 450));
    assert_eq!(manifest.audio.kind, AudioKind::Spectrogram);
    assert_eq!(manifest.audio.shape, [112, 112]);
    assert_eq!(manifest.audio.scale, 255.0);
    assert_eq!(
        manifest.source,
        AvMnistSource::MultiBench {
            dir: layout.clone()
        }
    );
    let (train, test): (Vec<_>, Vec<_>) = samples.iter().partition(|s| !s.test);
    for (original, read) in train.iter().chain(&test).zip(&back) {
        assert_eq!(read.test, original.test);
        assert_eq!(read.label, original.label);
        assert_eq!(
            read.image, original.image,
            "pixels / 255 survive the 0–255 files"
        );
        assert_eq!(read.audio, original.audio);
    }
    // The audio is the recording's spectrogram.
    let theo = samples
        .iter()
        .find(|s| s.speaker == "theo" && s.label == 3 && s.recording_index == 20)
        .unwrap();
    let wave = read_wave(&fsdd.join("3_theo_20.wav")).unwrap();
    assert_eq!(
        theo.audio,
        Spectrogram::new(SpectrogramSettings::MULTIBENCH).features(&wave)
    );
    assert!(theo.audio.iter().any(|&v| v > 250.0));

    // Prepared (Arrow) and read back unchanged, the spectrogram's extents kept.
    let prepared = dir.path().join("prepared");
    write(&prepared, &back, &manifest).unwrap();
    let (again, again_manifest) = read(&prepared).unwrap();
    assert_eq!(again, back);
    assert_eq!(again_manifest, manifest);
}

#[test]
fn other_element_types_and_shapes_of_the_layout_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let samples = small_layout(dir.path(), 4, 3);
    let (reference, _) = read_layout(dir.path()).unwrap();
    // Images as uint8 [n, 28, 28], audio as float64 [n, 1, 6, 5], labels as int32 [n, 1].
    let train: Vec<_> = samples.iter().filter(|s| !s.test).collect();
    let n = train.len();
    let pixels: Vec<u8> = train
        .iter()
        .flat_map(|s| s.image.iter().map(|&p| (p * 255.0).round() as u8))
        .collect();
    write_npy(
        dir.path().join("image/train_data.npy"),
        &ArrayD::from_shape_vec(IxDyn(&[n, 28, 28]), pixels).unwrap(),
    )
    .unwrap();
    let audio: Vec<f64> = train
        .iter()
        .flat_map(|s| s.audio.iter().map(|&v| f64::from(v)))
        .collect();
    write_npy(
        dir.path().join("audio/train_data.npy"),
        &ArrayD::from_shape_vec(IxDyn(&[n, 1, 6, 5]), audio).unwrap(),
    )
    .unwrap();
    let labels: Vec<i32> = train.iter().map(|s| i32::from(s.label)).collect();
    write_npy(
        dir.path().join("train_labels.npy"),
        &ArrayD::from_shape_vec(IxDyn(&[n, 1]), labels).unwrap(),
    )
    .unwrap();
    let (back, manifest) = read_layout(dir.path()).unwrap();
    assert_eq!(back, reference);
    assert_eq!(manifest.audio.shape, [6, 5]);
    assert_eq!((manifest.train, manifest.test), (4, 3));
}

fn error_of(dir: &Path) -> String {
    read_layout(dir).unwrap_err().to_string()
}

#[test]
fn bad_layouts_are_refused_naming_the_file_and_the_problem() {
    // A missing file.
    let dir = tempfile::tempdir().unwrap();
    small_layout(dir.path(), 4, 3);
    std::fs::remove_file(dir.path().join("audio/test_data.npy")).unwrap();
    let e = error_of(dir.path());
    assert!(e.contains("audio/test_data.npy"), "{e}");

    // A label that is not a digit.
    let dir = tempfile::tempdir().unwrap();
    small_layout(dir.path(), 4, 3);
    write_npy(
        dir.path().join("train_labels.npy"),
        &ArrayD::from_shape_vec(IxDyn(&[4]), vec![1i64, 2, 10, 3]).unwrap(),
    )
    .unwrap();
    let e = error_of(dir.path());
    assert!(
        e.contains("train_labels.npy") && e.contains("row 2") && e.contains("label 10"),
        "{e}"
    );

    // More labels than images.
    let dir = tempfile::tempdir().unwrap();
    small_layout(dir.path(), 4, 3);
    write_npy(
        dir.path().join("test_labels.npy"),
        &ArrayD::from_shape_vec(IxDyn(&[4]), vec![1i64, 2, 3, 4]).unwrap(),
    )
    .unwrap();
    let e = error_of(dir.path());
    assert!(
        e.contains("image/test_data.npy") && e.contains("4 labels"),
        "{e}"
    );

    // Images that are not 28 × 28.
    let dir = tempfile::tempdir().unwrap();
    small_layout(dir.path(), 4, 3);
    write_npy(
        dir.path().join("image/train_data.npy"),
        &ArrayD::from_shape_vec(IxDyn(&[4, 32, 32]), vec![0f32; 4 * 1024]).unwrap(),
    )
    .unwrap();
    let e = error_of(dir.path());
    assert!(
        e.contains("image/train_data.npy") && e.contains("[4, 32, 32]"),
        "{e}"
    );

    // A value that is not finite.
    let dir = tempfile::tempdir().unwrap();
    small_layout(dir.path(), 4, 3);
    let mut audio = vec![1f32; 4 * 30];
    audio[2 * 30 + 7] = f32::NAN;
    write_npy(
        dir.path().join("audio/train_data.npy"),
        &ArrayD::from_shape_vec(IxDyn(&[4, 6, 5]), audio).unwrap(),
    )
    .unwrap();
    let e = error_of(dir.path());
    assert!(
        e.contains("audio/train_data.npy") && e.contains("sample 2"),
        "{e}"
    );

    // Test spectrograms of other extents than the training ones.
    let dir = tempfile::tempdir().unwrap();
    small_layout(dir.path(), 4, 3);
    write_npy(
        dir.path().join("audio/test_data.npy"),
        &ArrayD::from_shape_vec(IxDyn(&[3, 5, 6]), vec![0f32; 90]).unwrap(),
    )
    .unwrap();
    let e = error_of(dir.path());
    assert!(
        e.contains("audio/test_data.npy") && e.contains("[5, 6]"),
        "{e}"
    );

    // Not an .npy file at all.
    let dir = tempfile::tempdir().unwrap();
    small_layout(dir.path(), 4, 3);
    std::fs::write(dir.path().join("image/test_data.npy"), b"not numpy").unwrap();
    let e = error_of(dir.path());
    assert!(
        e.contains("image/test_data.npy") && e.contains(".npy"),
        "{e}"
    );
}
