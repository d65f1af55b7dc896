//! `manifest.json`: the index of a shard folder — every shard with its size and BLAKE3 digest,
//! every case with its place and geometry, the preprocessing settings, and the cases that were
//! skipped and why.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::brats::SkippedCase;
use crate::error::{DataError, Result};
use crate::preprocess::{Normalisation, PreprocessSettings};
use crate::release::{Grade, Release, ReleaseSplit};

/// Version of the shard layout written into every manifest.
pub const FORMAT_VERSION: u32 = 2;
/// Name of the manifest inside a shard folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Element type of the stored images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageDtype {
    /// 32-bit floats.
    Float32,
    /// 16-bit floats (`--half`).
    Float16,
}

impl ImageDtype {
    /// Bytes per stored voxel value.
    pub fn size(self) -> usize {
        match self {
            ImageDtype::Float32 => 4,
            ImageDtype::Float16 => 2,
        }
    }
}

/// Settings a shard folder was prepared with; a resumed run must use the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareSettings {
    /// Element type of the images.
    pub dtype: ImageDtype,
    /// Target shard size in bytes.
    pub shard_bytes: u64,
    /// How the cases were preprocessed.
    pub preprocessing: PreprocessSettings,
}

/// One shard file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name inside the shard folder.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// BLAKE3 digest (hex) of the whole file.
    pub blake3: String,
    /// Cases (record batches) it holds.
    pub cases: usize,
}

/// One case's entry in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseEntry {
    /// The case id.
    pub id: String,
    /// The shard file (relative to the manifest) holding the case.
    pub shard: String,
    /// The record batch of the case inside its shard.
    pub batch: usize,
    /// Extents (d, h, w) after cropping.
    pub shape: [usize; 3],
    /// Extents (d, h, w) of the original volumes.
    pub original_shape: [usize; 3],
    /// First voxel of the crop in the original grid.
    pub crop_offset: [usize; 3],
    /// Voxel size in mm along (x, y, z).
    pub spacing: [f32; 3],
    /// Whether the case has a label map.
    pub labelled: bool,
    /// The grade, when known.
    #[serde(default)]
    pub grade: Option<Grade>,
    /// How each modality's intensities were normalised (absent in shards written before it was
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalisation: Option<[Normalisation; 4]>,
}

/// The index of a shard folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Shard layout version.
    pub format_version: u32,
    /// Whether preparation finished; an unfinished folder is resumed by running prepare again.
    pub complete: bool,
    /// The folder the cases were read from.
    pub source: String,
    /// The release, when known.
    pub release: Option<Release>,
    /// Training (labelled) or validation data.
    pub split: ReleaseSplit,
    /// Modalities in channel order.
    pub modalities: Vec<String>,
    /// Checksum algorithm of the shard digests.
    pub checksum: String,
    /// Settings the shards were written with.
    pub settings: PrepareSettings,
    /// The CSV tables whose columns were kept as case metadata.
    pub metadata_files: Vec<String>,
    /// Every shard.
    pub shards: Vec<ShardEntry>,
    /// Every case, in id order.
    pub cases: Vec<CaseEntry>,
    /// Cases that could not be prepared, with the reason.
    pub skipped: Vec<SkippedCase>,
    /// Problems that did not stop any case (a renamed label file, an unreadable CSV table).
    pub warnings: Vec<String>,
}

impl Manifest {
    /// The manifest path of shard folder `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    /// Reads `dir/manifest.json`, finished or not.
    pub fn read_any(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::BadShard {
                path: dir.to_owned(),
                problem: format!(
                    "no prepared shards here ({} is missing); run `metakd prepare` into this \
                     folder first, or give the folder it wrote",
                    path.display()
                ),
            },
            _ => DataError::io(&path, e),
        })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| DataError::Json {
                path: path.clone(),
                source,
            })?;
        let version = json.get("format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(DataError::BadShard {
                path,
                problem: format!(
                    "shard format version {} (this program reads version {FORMAT_VERSION}); \
                     prepare the data again",
                    version.map_or("unknown".into(), |v| v.to_string())
                ),
            });
        }
        serde_json::from_value(json).map_err(|source| DataError::Json { path, source })
    }

    /// Reads `dir/manifest.json`, refusing a folder whose preparation did not finish.
    pub fn read(dir: &Path) -> Result<Self> {
        let manifest = Self::read_any(dir)?;
        if !manifest.complete {
            return Err(DataError::BadShard {
                path: Self::path(dir),
                problem: "preparation of this folder did not finish; run `metakd prepare` \
                          again with the same arguments to resume it"
                    .into(),
            });
        }
        Ok(manifest)
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let text = serde_json::to_string_pretty(self).map_err(|source| DataError::Json {
            path: path.clone(),
            source,
        })?;
        crate::files::write_atomic(&path, text.as_bytes())
    }

    /// The entry of case `id`.
    pub fn case(&self, id: &str) -> Option<&CaseEntry> {
        self.cases.iter().find(|c| c.id == id)
    }

    /// The entry of shard `file`.
    pub fn shard(&self, file: &str) -> Option<&ShardEntry> {
        self.shards.iter().find(|s| s.file == file)
    }
}
