//! The AV-MNIST data set of SMIL's protocol, built from its sources and kept as one Arrow IPC
//! file (`avmnist.arrow`) with a manifest (`manifest.json`).
//!
//! The protocol: the recordings of FSDD's speakers jackson, nicolas and theo (1,500: 10 digits ×
//! 50 per speaker); those with index below 15 are test samples (450), the others training
//! samples (1,050). Each recording is paired with an MNIST image of its digit: per digit the
//! images are shuffled with the seed, the first 105 go to the training recordings (ordered by
//! speaker, then index), the next 45 to the test recordings. Images are stored as pixel / 255,
//! audio as SMIL's 20 × 20 MFCCs ([`super::mfcc`]).
//!
//! A folder prepared from MultiBench's layout ([`super::multibench`]) has the same file, with
//! MultiBench's samples and 112 × 112 spectrograms; the manifest's [`AudioFeatures`] say which.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt32Array,
    UInt8Array,
};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field, Schema};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::mfcc::{Mfcc, MfccSettings};
use super::sources::{list_recordings, read_mnist_csv, read_wave, Recording};
use crate::error::{DataError, Result};
use crate::files::write_atomic;

/// The data file in a prepared folder.
pub const DATA_FILE: &str = "avmnist.arrow";
/// The manifest in a prepared folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Values of an image (28 × 28).
pub const IMAGE_VALUES: usize = 784;

/// How the data set is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvMnistOptions {
    /// The FSDD speakers used.
    pub speakers: Vec<String>,
    /// Recordings with an index below this are test samples.
    pub test_below: u32,
    /// Seed of the image shuffle.
    pub seed: u64,
}

impl Default for AvMnistOptions {
    fn default() -> Self {
        Self {
            speakers: ["jackson", "nicolas", "theo"].map(String::from).to_vec(),
            test_below: 15,
            seed: 0,
        }
    }
}

/// One sample: a recording's features and an image of the same digit.
#[derive(Debug, Clone, PartialEq)]
pub struct AvMnistSample {
    /// `true` for a test sample.
    pub test: bool,
    /// The digit.
    pub label: u8,
    /// The recording's speaker.
    pub speaker: String,
    /// The recording's index.
    pub recording_index: u32,
    /// The image's row in the MNIST file.
    pub image_row: u32,
    /// 20 × 20 MFCCs, row-major (coefficient, frame).
    pub audio: Vec<f32>,
    /// 28 × 28 pixels / 255, row-major.
    pub image: Vec<f32>,
}

/// Recordings that could not be used, each with the reason.
pub type Skipped = Vec<(PathBuf, String)>;

/// What a prepared folder holds (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvMnistManifest {
    /// Where the samples came from.
    pub source: AvMnistSource,
    /// What the audio values are.
    pub audio: AudioFeatures,
    /// Training samples.
    pub train: usize,
    /// Test samples.
    pub test: usize,
    /// Recordings that could not be used, with the reason.
    pub skipped: Skipped,
}

/// The sources of a prepared AV-MNIST folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "layout", rename_all = "kebab-case")]
pub enum AvMnistSource {
    /// SMIL's protocol built from FSDD recordings and MNIST images.
    Smil {
        /// The FSDD recordings folder read.
        fsdd: PathBuf,
        /// The MNIST file read.
        mnist: PathBuf,
        /// How the data set was built.
        options: AvMnistOptions,
        /// The audio features' settings.
        mfcc: MfccSettings,
    },
    /// MultiBench's `avmnist` folder of `.npy` arrays.
    #[serde(rename = "multibench")]
    MultiBench {
        /// The folder read.
        dir: PathBuf,
    },
}

/// What kind of audio features a prepared folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AudioKind {
    /// MFCCs (coefficient × frame).
    Mfcc,
    /// A spectrogram (frequency bin × frame), values 0–255.
    Spectrogram,
}

/// The audio values of a prepared folder: their kind, extents and the scale a network reads them
/// at (values / `scale`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AudioFeatures {
    /// MFCCs or a spectrogram.
    pub kind: AudioKind,
    /// Extents (rows, columns) of one sample's audio.
    pub shape: [usize; 2],
    /// The divisor that brings the values to about unit range.
    pub scale: f32,
}

impl AudioFeatures {
    /// SMIL's 20 × 20 MFCCs, which span about ±300: read / 100.
    pub const SMIL: AudioFeatures = AudioFeatures {
        kind: AudioKind::Mfcc,
        shape: [MfccSettings::SMIL.n_mfcc, MfccSettings::SMIL.frames],
        scale: 100.0,
    };

    /// Values of one sample's audio.
    pub fn values(&self) -> usize {
        self.shape[0] * self.shape[1]
    }
}

/// Builds the data set from the FSDD recordings in `fsdd` and the MNIST CSV `mnist`. A
/// recording that cannot be read is skipped and listed in the manifest; too few images of a
/// digit is an error.
pub fn build(
    fsdd: &Path,
    mnist: &Path,
    options: &AvMnistOptions,
) -> Result<(Vec<AvMnistSample>, AvMnistManifest)> {
    let mfcc = Mfcc::new(MfccSettings::SMIL);
    let (samples, skipped) = pair_by_digit(fsdd, mnist, options, |wave| mfcc.features(wave))?;
    let test = samples.iter().filter(|s| s.test).count();
    let manifest = AvMnistManifest {
        source: AvMnistSource::Smil {
            fsdd: fsdd.to_owned(),
            mnist: mnist.to_owned(),
            options: options.clone(),
            mfcc: MfccSettings::SMIL,
        },
        audio: AudioFeatures::SMIL,
        train: samples.len() - test,
        test,
        skipped,
    };
    Ok((samples, manifest))
}

/// SMIL's split and pairing of the FSDD recordings in `fsdd` with the MNIST images of `mnist`,
/// each recording's audio made by `features`. Returns the samples and the recordings skipped,
/// with the reason.
pub fn pair_by_digit(
    fsdd: &Path,
    mnist: &Path,
    options: &AvMnistOptions,
    features: impl Fn(&[f32]) -> Vec<f32> + Sync,
) -> Result<(Vec<AvMnistSample>, Skipped)> {
    let recordings: Vec<Recording> = list_recordings(fsdd)?
        .into_iter()
        .filter(|r| options.speakers.contains(&r.speaker))
        .collect();
    if recordings.is_empty() {
        return Err(DataError::Corrupt {
            path: fsdd.to_owned(),
            problem: format!(
                "no recording of the speakers {} (files named digit_speaker_index.wav)",
                options.speakers.join(", ")
            ),
        });
    }
    let features: Vec<Result<Vec<f32>>> = recordings
        .par_iter()
        .map(|r| Ok(features(&read_wave(&r.path)?)))
        .collect();
    let digits = read_mnist_csv(mnist)?;
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(options.seed);
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    for digit in 0..10u8 {
        let mut rows: Vec<u32> = digits
            .iter()
            .enumerate()
            .filter(|(_, d)| d.label == digit)
            .map(|(i, _)| i as u32)
            .collect();
        rows.shuffle(&mut rng);
        let mut of_digit: Vec<(&Recording, &Result<Vec<f32>>)> = recordings
            .iter()
            .zip(&features)
            .filter(|(r, _)| r.digit == digit)
            .collect();
        // Training recordings first, each split ordered by speaker and index.
        of_digit.sort_by_key(|(r, _)| (r.index < options.test_below, r.speaker.clone(), r.index));
        let usable: Vec<(&Recording, &Vec<f32>)> = of_digit
            .into_iter()
            .filter_map(|(r, f)| match f {
                Ok(f) => Some((r, f)),
                Err(e) => {
                    skipped.push((r.path.clone(), e.to_string()));
                    None
                }
            })
            .collect();
        if rows.len() < usable.len() {
            return Err(DataError::Corrupt {
                path: mnist.to_owned(),
                problem: format!(
                    "{} images of digit {digit}, but {} recordings to pair",
                    rows.len(),
                    usable.len()
                ),
            });
        }
        for ((recording, audio), &row) in usable.into_iter().zip(&rows) {
            samples.push(AvMnistSample {
                test: recording.index < options.test_below,
                label: digit,
                speaker: recording.speaker.clone(),
                recording_index: recording.index,
                image_row: row,
                audio: audio.clone(),
                image: digits[row as usize]
                    .pixels
                    .iter()
                    .map(|&p| f32::from(p) / 255.0)
                    .collect(),
            });
        }
    }
    Ok((samples, skipped))
}

fn schema(audio_values: usize) -> Schema {
    let item = |t: DataType| Arc::new(Field::new("item", t, false));
    Schema::new(vec![
        Field::new("split", DataType::Utf8, false),
        Field::new("label", DataType::UInt8, false),
        Field::new("speaker", DataType::Utf8, false),
        Field::new("recording_index", DataType::UInt32, false),
        Field::new("image_row", DataType::UInt32, false),
        Field::new(
            "audio",
            DataType::FixedSizeList(item(DataType::Float32), audio_values as i32),
            false,
        ),
        Field::new(
            "image",
            DataType::FixedSizeList(item(DataType::Float32), IMAGE_VALUES as i32),
            false,
        ),
    ])
}

fn arrow_error(path: &Path) -> impl Fn(arrow_schema::ArrowError) -> DataError + '_ {
    move |source| DataError::Arrow {
        path: path.to_owned(),
        source,
    }
}

/// Writes `samples` and `manifest` into `dir` (`avmnist.arrow`, `manifest.json`), each
/// atomically.
pub fn write(dir: &Path, samples: &[AvMnistSample], manifest: &AvMnistManifest) -> Result<()> {
    let path = dir.join(DATA_FILE);
    let audio_values = manifest.audio.values();
    if let Some(s) = samples
        .iter()
        .find(|s| s.audio.len() != audio_values || s.image.len() != IMAGE_VALUES)
    {
        return Err(DataError::Corrupt {
            path,
            problem: format!(
                "a sample of {} audio and {} image values, the manifest says {audio_values} and {IMAGE_VALUES}",
                s.audio.len(),
                s.image.len()
            ),
        });
    }
    let schema = Arc::new(schema(audio_values));
    let fixed = |values: Vec<f32>, n: usize| -> ArrayRef {
        Arc::new(FixedSizeListArray::new(
            Arc::new(Field::new("item", DataType::Float32, false)),
            n as i32,
            Arc::new(Float32Array::from(values)),
            None,
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(samples.iter().map(|s| {
            if s.test {
                "test"
            } else {
                "train"
            }
        }))),
        Arc::new(UInt8Array::from_iter_values(
            samples.iter().map(|s| s.label),
        )),
        Arc::new(StringArray::from_iter_values(
            samples.iter().map(|s| s.speaker.as_str()),
        )),
        Arc::new(UInt32Array::from_iter_values(
            samples.iter().map(|s| s.recording_index),
        )),
        Arc::new(UInt32Array::from_iter_values(
            samples.iter().map(|s| s.image_row),
        )),
        fixed(
            samples
                .iter()
                .flat_map(|s| s.audio.iter().copied())
                .collect(),
            audio_values,
        ),
        fixed(
            samples
                .iter()
                .flat_map(|s| s.image.iter().copied())
                .collect(),
            IMAGE_VALUES,
        ),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(arrow_error(&path))?;
    let mut bytes = Vec::new();
    {
        let mut writer = FileWriter::try_new(&mut bytes, &schema).map_err(arrow_error(&path))?;
        writer.write(&batch).map_err(arrow_error(&path))?;
        writer.finish().map_err(arrow_error(&path))?;
    }
    write_atomic(&path, &bytes)?;
    let json = serde_json::to_string_pretty(manifest).expect("the manifest serialises");
    write_atomic(&dir.join(MANIFEST_FILE), json.as_bytes())
}

/// Reads a folder written by [`write`].
pub fn read(dir: &Path) -> Result<(Vec<AvMnistSample>, AvMnistManifest)> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text =
        std::fs::read_to_string(&manifest_path).map_err(|e| DataError::io(&manifest_path, e))?;
    let manifest: AvMnistManifest =
        serde_json::from_str(&text).map_err(|e| DataError::Corrupt {
            path: manifest_path.clone(),
            problem: e.to_string(),
        })?;
    let path = dir.join(DATA_FILE);
    let file = std::fs::File::open(&path).map_err(|e| DataError::io(&path, e))?;
    let reader = FileReader::try_new(file, None).map_err(arrow_error(&path))?;
    let bad = |problem: &str| DataError::Corrupt {
        path: path.clone(),
        problem: problem.to_owned(),
    };
    let mut samples = Vec::new();
    for batch in reader {
        let batch = batch.map_err(arrow_error(&path))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| bad(&format!("no column {name}")))
        };
        let strings = |name: &str| -> Result<StringArray> {
            column(name)?
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| bad(&format!("{name} is not text")))
        };
        let u32s = |name: &str| -> Result<UInt32Array> {
            column(name)?
                .as_any()
                .downcast_ref::<UInt32Array>()
                .cloned()
                .ok_or_else(|| bad(&format!("{name} is not uint32")))
        };
        let floats = |name: &str| -> Result<(Float32Array, usize)> {
            let list = column(name)?
                .as_any()
                .downcast_ref::<FixedSizeListArray>()
                .cloned()
                .ok_or_else(|| bad(&format!("{name} is not a fixed-size list")))?;
            let n = list.value_length() as usize;
            let values = list
                .values()
                .as_any()
                .downcast_ref::<Float32Array>()
                .cloned()
                .ok_or_else(|| bad(&format!("{name} does not hold float32")))?;
            Ok((values, n))
        };
        let (split, speaker) = (strings("split")?, strings("speaker")?);
        let labels = column("label")?
            .as_any()
            .downcast_ref::<UInt8Array>()
            .cloned()
            .ok_or_else(|| bad("label is not uint8"))?;
        let (index, row) = (u32s("recording_index")?, u32s("image_row")?);
        let ((audio, na), (image, ni)) = (floats("audio")?, floats("image")?);
        if na != manifest.audio.values() || ni != IMAGE_VALUES {
            return Err(bad(&format!(
                "{na} audio and {ni} image values per sample, the manifest says {} and {IMAGE_VALUES}",
                manifest.audio.values()
            )));
        }
        for i in 0..batch.num_rows() {
            samples.push(AvMnistSample {
                test: split.value(i) == "test",
                label: labels.value(i),
                speaker: speaker.value(i).to_owned(),
                recording_index: index.value(i),
                image_row: row.value(i),
                audio: audio.values()[i * na..(i + 1) * na].to_vec(),
                image: image.values()[i * ni..(i + 1) * ni].to_vec(),
            });
        }
    }
    Ok((samples, manifest))
}
