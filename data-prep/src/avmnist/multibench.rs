//! MultiBench's AV-MNIST layout: a folder of `.npy` arrays, as MultiBench's
//! `datasets/avmnist/get_data.py` reads it:
//!
//! ```text
//! avmnist/
//!   image/train_data.npy   [n, 784] (or [n, 28, 28]), pixels 0–255
//!   image/test_data.npy
//!   audio/train_data.npy   [n, 112, 112] (or [n, 1, h, w]) spectrograms, 0–255
//!   audio/test_data.npy
//!   train_labels.npy       [n] digits 0–9
//!   test_labels.npy
//! ```
//!
//! Arrays of float32, float64 or uint8 (labels also int64, int32 or uint8) are read. Images are
//! kept as pixel / 255 (MultiBench's `normalize_image`); audio values as they are, with a read
//! scale of 255 in the manifest (MultiBench's `normalize_audio`). MultiBench holds out its last
//! 5,000 training samples for validation; here every training sample is a training sample and the
//! trainer draws its own held-out split. [`write_layout`] writes the layout, for tests and for
//! data made from the real sources ([`build_from_sources`]).

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};

use super::dataset::{
    pair_by_digit, AudioFeatures, AudioKind, AvMnistManifest, AvMnistOptions, AvMnistSample,
    AvMnistSource, Skipped, IMAGE_VALUES,
};
use super::spectrogram::{Spectrogram, SpectrogramSettings};
use crate::error::{DataError, Result};
use crate::files::write_atomic;

/// The read scale of MultiBench's spectrograms (values 0–255).
pub const AUDIO_SCALE: f32 = 255.0;

/// The files of one split, relative to the layout's folder: image, audio, labels.
fn split_files(split: &str) -> [PathBuf; 3] {
    [
        Path::new("image").join(format!("{split}_data.npy")),
        Path::new("audio").join(format!("{split}_data.npy")),
        PathBuf::from(format!("{split}_labels.npy")),
    ]
}

fn corrupt(path: &Path, problem: impl Into<String>) -> DataError {
    DataError::Corrupt {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

fn npy_error(path: &Path, e: ReadNpyError) -> DataError {
    match e {
        ReadNpyError::Io(source) => DataError::io(path, source),
        other => corrupt(path, format!("not a readable .npy array: {other}")),
    }
}

/// Reads `path` as an array of `T`; `Ok(None)` when it holds another element type.
fn try_read<T: ndarray_npy::ReadableElement>(path: &Path) -> Result<Option<ArrayD<T>>> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    match ArrayD::<T>::read_npy(std::io::BufReader::new(file)) {
        Ok(array) => Ok(Some(array)),
        Err(ReadNpyError::WrongDescriptor(_)) => Ok(None),
        Err(e) => Err(npy_error(path, e)),
    }
}

/// Reads an `.npy` array of float32, float64, uint8 (and, with `integers`, int64 or int32) as
/// float32 values with its shape.
fn read_values(path: &Path, integers: bool) -> Result<(Vec<usize>, Vec<f32>)> {
    fn flat<T: Copy>(a: ArrayD<T>, f: impl Fn(T) -> f32) -> (Vec<usize>, Vec<f32>) {
        (a.shape().to_vec(), a.iter().map(|&v| f(v)).collect())
    }
    if let Some(a) = try_read::<f32>(path)? {
        return Ok(flat(a, |v| v));
    }
    if let Some(a) = try_read::<f64>(path)? {
        return Ok(flat(a, |v| v as f32));
    }
    if let Some(a) = try_read::<u8>(path)? {
        return Ok(flat(a, f32::from));
    }
    if integers {
        if let Some(a) = try_read::<i64>(path)? {
            return Ok(flat(a, |v| v as f32));
        }
        if let Some(a) = try_read::<i32>(path)? {
            return Ok(flat(a, |v| v as f32));
        }
    }
    Err(corrupt(
        path,
        if integers {
            "elements are not float32, float64, uint8, int64 or int32"
        } else {
            "elements are not float32, float64 or uint8"
        },
    ))
}

/// The per-sample extents of an array `[n, ...]` with leading unit axes dropped.
fn sample_extents(shape: &[usize]) -> Vec<usize> {
    let mut rest: Vec<usize> = shape[1..].to_vec();
    while rest.len() > 2 && rest[0] == 1 {
        rest.remove(0);
    }
    rest
}

/// One split's arrays, checked against each other.
struct SplitArrays {
    images: Vec<f32>,
    audio: Vec<f32>,
    audio_shape: [usize; 2],
    labels: Vec<u8>,
}

fn read_split(dir: &Path, split: &str) -> Result<SplitArrays> {
    let [image_path, audio_path, label_path] = split_files(split).map(|f| dir.join(f));
    let (image_shape, images) = read_values(&image_path, false)?;
    let (audio_shape, audio) = read_values(&audio_path, false)?;
    let (label_shape, label_values) = read_values(&label_path, true)?;

    let n = *label_shape
        .first()
        .ok_or_else(|| corrupt(&label_path, "a scalar, not one label per sample"))?;
    if label_shape.iter().skip(1).any(|&e| e != 1) {
        return Err(corrupt(
            &label_path,
            format!("shape {label_shape:?}, expected [n] labels"),
        ));
    }
    let labels = label_values
        .iter()
        .enumerate()
        .map(|(row, &v)| {
            if v.fract() == 0.0 && (0.0..10.0).contains(&v) {
                Ok(v as u8)
            } else {
                Err(corrupt(
                    &label_path,
                    format!("row {row}: label {v} is not a digit 0–9"),
                ))
            }
        })
        .collect::<Result<Vec<u8>>>()?;

    let image_extents = sample_extents(&image_shape);
    if image_shape.first() != Some(&n) || image_extents.iter().product::<usize>() != IMAGE_VALUES {
        return Err(corrupt(
            &image_path,
            format!(
                "shape {image_shape:?}, expected [{n}, 784] or [{n}, 28, 28] ({n} labels in {})",
                label_path.display()
            ),
        ));
    }
    let audio_extents = sample_extents(&audio_shape);
    let audio_shape = match (audio_shape.first(), audio_extents.as_slice()) {
        (Some(&rows), &[h, w]) if rows == n && h > 0 && w > 0 => [h, w],
        _ => {
            return Err(corrupt(
                &audio_path,
                format!(
                    "shape {audio_shape:?}, expected [{n}, h, w] spectrograms ({n} labels in {})",
                    label_path.display()
                ),
            ))
        }
    };
    for (path, values) in [(&image_path, &images), (&audio_path, &audio)] {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(corrupt(
                path,
                format!(
                    "sample {}: a value that is not finite",
                    i / (values.len() / n)
                ),
            ));
        }
    }
    Ok(SplitArrays {
        images,
        audio,
        audio_shape,
        labels,
    })
}

/// Reads MultiBench's AV-MNIST folder `dir` into samples (training, then test) and their
/// manifest. Each sample's `recording_index` and `image_row` are its row in its split's arrays;
/// its speaker is empty (MultiBench does not keep it).
pub fn read_layout(dir: &Path) -> Result<(Vec<AvMnistSample>, AvMnistManifest)> {
    let train = read_split(dir, "train")?;
    let test = read_split(dir, "test")?;
    if train.audio_shape != test.audio_shape {
        return Err(corrupt(
            &dir.join(&split_files("test")[1]),
            format!(
                "spectrograms of {:?}, the training ones are {:?}",
                test.audio_shape, train.audio_shape
            ),
        ));
    }
    let audio = AudioFeatures {
        kind: AudioKind::Spectrogram,
        shape: train.audio_shape,
        scale: AUDIO_SCALE,
    };
    let (n_train, n_test) = (train.labels.len(), test.labels.len());
    let mut samples = Vec::with_capacity(n_train + n_test);
    for (is_test, arrays) in [(false, train), (true, test)] {
        let a = audio.values();
        for (row, &label) in arrays.labels.iter().enumerate() {
            samples.push(AvMnistSample {
                test: is_test,
                label,
                speaker: String::new(),
                recording_index: row as u32,
                image_row: row as u32,
                audio: arrays.audio[row * a..(row + 1) * a].to_vec(),
                image: arrays.images[row * IMAGE_VALUES..(row + 1) * IMAGE_VALUES]
                    .iter()
                    .map(|&p| p / 255.0)
                    .collect(),
            });
        }
    }
    let manifest = AvMnistManifest {
        source: AvMnistSource::MultiBench {
            dir: dir.to_owned(),
        },
        audio,
        train: n_train,
        test: n_test,
        skipped: Vec::new(),
    };
    Ok((samples, manifest))
}

fn write_array(
    dir: &Path,
    file: &Path,
    array: &ArrayD<impl ndarray_npy::WritableElement>,
) -> Result<()> {
    let path = dir.join(file);
    let mut bytes = Vec::new();
    array
        .write_npy(&mut bytes)
        .map_err(|e| corrupt(&path, format!("cannot be written: {e}")))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    write_atomic(&path, &bytes)
}

/// Writes `samples` in MultiBench's layout into `dir`: images as float32 `[n, 784]` pixels
/// 0–255 (stored pixel / 255 × 255, rounded), audio as float32 `[n, h, w]` with the extents
/// `audio_shape`, labels as int64 `[n]`; each file atomically.
pub fn write_layout(dir: &Path, samples: &[AvMnistSample], audio_shape: [usize; 2]) -> Result<()> {
    let a = audio_shape[0] * audio_shape[1];
    for (split, is_test) in [("train", false), ("test", true)] {
        let chosen: Vec<&AvMnistSample> = samples.iter().filter(|s| s.test == is_test).collect();
        let n = chosen.len();
        if let Some(s) = chosen
            .iter()
            .find(|s| s.audio.len() != a || s.image.len() != IMAGE_VALUES)
        {
            return Err(corrupt(
                dir,
                format!(
                    "a sample of {} audio and {} image values, expected {a} and {IMAGE_VALUES}",
                    s.audio.len(),
                    s.image.len()
                ),
            ));
        }
        let images: Vec<f32> = chosen
            .iter()
            .flat_map(|s| s.image.iter().map(|&p| (p * 255.0).round()))
            .collect();
        let audio: Vec<f32> = chosen
            .iter()
            .flat_map(|s| s.audio.iter().copied())
            .collect();
        let labels: Vec<i64> = chosen.iter().map(|s| i64::from(s.label)).collect();
        let shape_error = |e: ndarray::ShapeError| corrupt(dir, e.to_string());
        let [image_file, audio_file, label_file] = split_files(split);
        write_array(
            dir,
            &image_file,
            &ArrayD::from_shape_vec(IxDyn(&[n, IMAGE_VALUES]), images).map_err(shape_error)?,
        )?;
        write_array(
            dir,
            &audio_file,
            &ArrayD::from_shape_vec(IxDyn(&[n, audio_shape[0], audio_shape[1]]), audio)
                .map_err(shape_error)?,
        )?;
        write_array(
            dir,
            &label_file,
            &ArrayD::from_shape_vec(IxDyn(&[n]), labels).map_err(shape_error)?,
        )?;
    }
    Ok(())
}

/// AV-MNIST in MultiBench's shape made from the real sources: SMIL's split and pairing of FSDD
/// recordings with MNIST images ([`pair_by_digit`]), each recording as a 112 × 112 spectrogram
/// ([`SpectrogramSettings::MULTIBENCH`]). Returns the samples, the spectrograms' extents and
/// the recordings skipped.
pub fn build_from_sources(
    fsdd: &Path,
    mnist: &Path,
    options: &AvMnistOptions,
) -> Result<(Vec<AvMnistSample>, [usize; 2], Skipped)> {
    let settings = SpectrogramSettings::MULTIBENCH;
    let spectrogram = Spectrogram::new(settings);
    let (samples, skipped) =
        pair_by_digit(fsdd, mnist, options, |wave| spectrogram.features(wave))?;
    Ok((samples, [settings.bins(), settings.frames], skipped))
}
