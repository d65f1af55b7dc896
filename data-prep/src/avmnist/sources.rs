//! Reading AV-MNIST's sources: FSDD recordings (`{digit}_{speaker}_{index}.wav`, mono 16-bit PCM
//! at 8 kHz) and MNIST images as CSV rows (784 pixel values, then the label).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// One FSDD recording, named `{digit}_{speaker}_{index}.wav`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Recording {
    /// The spoken digit.
    pub digit: u8,
    /// The speaker.
    pub speaker: String,
    /// The recording's index (0–49 per speaker and digit).
    pub index: u32,
    /// The file.
    pub path: PathBuf,
}

impl Recording {
    /// Parses a recording's file name; `None` for other files.
    pub fn from_path(path: &Path) -> Option<Self> {
        let stem = path.file_name()?.to_str()?.strip_suffix(".wav")?;
        let mut parts = stem.split('_');
        let digit: u8 = parts.next()?.parse().ok().filter(|d| *d < 10)?;
        let speaker = parts.next()?.to_owned();
        let index: u32 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || speaker.is_empty() {
            return None;
        }
        Some(Self {
            digit,
            speaker,
            index,
            path: path.to_owned(),
        })
    }
}

fn bad(path: &Path, problem: impl Into<String>) -> DataError {
    DataError::Corrupt {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// Reads an FSDD wave: mono 16-bit PCM at 8 kHz, returned as samples / 32768.
pub fn read_wave(path: &Path) -> Result<Vec<f32>> {
    let mut reader = hound::WavReader::open(path).map_err(|e| bad(path, e.to_string()))?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.sample_rate != 8000
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(bad(
            path,
            format!(
                "expected mono 16-bit PCM at 8000 Hz, found {} channel(s), {} bits, {} Hz",
                spec.channels, spec.bits_per_sample, spec.sample_rate
            ),
        ));
    }
    reader
        .samples::<i16>()
        .map(|s| s.map(|v| f32::from(v) / 32768.0))
        .collect::<std::result::Result<Vec<f32>, _>>()
        .map_err(|e| bad(path, e.to_string()))
}

/// The FSDD recordings in `dir` (sorted), skipping files not named as recordings.
pub fn list_recordings(dir: &Path) -> Result<Vec<Recording>> {
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut recordings: Vec<Recording> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Recording::from_path(&e.path()))
        .collect();
    recordings.sort();
    Ok(recordings)
}

/// One MNIST image: its label and 784 pixel values (0–255, row-major 28 × 28).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digit {
    /// The label.
    pub label: u8,
    /// The pixels.
    pub pixels: Vec<u8>,
}

/// Reads MNIST images from a CSV file (gzip-compressed when named `.gz`), one image per row: 784
/// pixel values then the label, no header.
pub fn read_mnist_csv(path: &Path) -> Result<Vec<Digit>> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(reader);
    let mut digits = Vec::new();
    for (row, record) in csv.records().enumerate() {
        let record = record.map_err(|e| bad(path, format!("row {}: {e}", row + 1)))?;
        if record.len() != 785 {
            return Err(bad(
                path,
                format!(
                    "row {}: {} values, expected 784 pixels and a label",
                    row + 1,
                    record.len()
                ),
            ));
        }
        let value = |i: usize| -> Result<u8> {
            let text = record[i].trim();
            let v: f64 = text
                .parse()
                .map_err(|_| bad(path, format!("row {}: {text:?} is not a number", row + 1)))?;
            if !(0.0..=255.0).contains(&v) || v.fract() != 0.0 {
                return Err(bad(
                    path,
                    format!("row {}: {text} is not a pixel value", row + 1),
                ));
            }
            Ok(v as u8)
        };
        let label = value(784)?;
        if label > 9 {
            return Err(bad(
                path,
                format!("row {}: label {label} is not a digit", row + 1),
            ));
        }
        digits.push(Digit {
            label,
            pixels: (0..784).map(value).collect::<Result<_>>()?,
        });
    }
    if digits.is_empty() {
        return Err(bad(path, "no image"));
    }
    Ok(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_names_are_parsed_and_others_ignored() {
        let r = Recording::from_path(Path::new("/x/7_theo_42.wav")).unwrap();
        assert_eq!((r.digit, r.speaker.as_str(), r.index), (7, "theo", 42));
        for other in [
            "README.md",
            "7_theo.wav",
            "12_theo_1.wav",
            "7_theo_x.wav",
            "7_theo_1_2.wav",
        ] {
            assert!(Recording::from_path(Path::new(other)).is_none(), "{other}");
        }
    }
}
