//! Errors of data preparation; each names the file or case it concerns.

use std::path::PathBuf;

/// Everything that can go wrong while reading, generating or writing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A NIfTI file could not be read or written.
    #[error("{path}: not a readable NIfTI volume: {source}")]
    Nifti {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: nifti::NiftiError,
    },
    /// A file is damaged: truncated, a corrupt gzip stream, an impossible header.
    #[error("{path}: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A case cannot be used as it is; the reason names the file where one is at fault.
    #[error("case {case}: {problem}")]
    BadCase {
        /// The case id.
        case: String,
        /// What is wrong.
        problem: String,
    },
    /// A NIfTI file holds something other than one 3D volume.
    #[error("{path}: expected a 3D volume, found dims {dims:?}")]
    NotAVolume {
        /// The file.
        path: PathBuf,
        /// Its dims.
        dims: Vec<usize>,
    },
    /// The modalities and label map of a case disagree in shape.
    #[error("case {case}: {what} has shape {found:?}, but {reference} has {expected:?}")]
    ShapeMismatch {
        /// The case id.
        case: String,
        /// The volume that disagrees.
        what: String,
        /// The volume taken as reference.
        reference: String,
        /// The reference's shape.
        expected: [usize; 3],
        /// The disagreeing shape.
        found: [usize; 3],
    },
    /// A case folder lacks a required file.
    #[error("case {case}: missing {file}")]
    MissingFile {
        /// The case id.
        case: String,
        /// The file that is missing.
        file: PathBuf,
    },
    /// A label map holds values other than BraTS's 0, 1, 2 and 4.
    #[error("{path}: label value {value} is not a BraTS label (0, 1, 2, 4)")]
    BadLabel {
        /// The label file.
        path: PathBuf,
        /// The offending value.
        value: f32,
    },
    /// A case has no brain voxels.
    #[error("case {case}: every voxel of {modality} is background")]
    EmptyVolume {
        /// The case id.
        case: String,
        /// The modality.
        modality: String,
    },
    /// A folder holds no case in a known layout.
    #[error("{path}: no BraTS case folders found (expected folders holding *_flair, *_t1, *_t1ce, *_t2 and *_seg NIfTI files)")]
    NoCases {
        /// The folder.
        path: PathBuf,
    },
    /// An Arrow shard could not be written or read.
    #[error("{path}: {source}")]
    Arrow {
        /// The shard.
        path: PathBuf,
        /// The underlying error.
        source: arrow_schema::ArrowError,
    },
    /// A shard or manifest does not hold what the reader expects.
    #[error("{path}: {problem}")]
    BadShard {
        /// The shard or manifest.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A shard's content differs from what its manifest recorded.
    #[error("{path}: checksum mismatch: {problem}; the shard is damaged or was changed after it was written (re-run `metakd prepare` to rebuild it)")]
    Checksum {
        /// The shard.
        path: PathBuf,
        /// What differs.
        problem: String,
    },
    /// A manifest could not be parsed or written.
    #[error("{path}: {source}")]
    Json {
        /// The manifest.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A file differs from the digest recorded beside it.
    #[error("{path}: {problem}")]
    Digest {
        /// The file.
        path: PathBuf,
        /// What differs, and how to rebuild the file.
        problem: String,
    },
    /// A folder or file is held by another process.
    #[error("{path}: {problem}")]
    Locked {
        /// The folder or file.
        path: PathBuf,
        /// Who holds it and what to do.
        problem: String,
    },
    /// An argument is out of range.
    #[error("{0}")]
    InvalidArgument(String),
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result of data preparation.
pub type Result<T> = std::result::Result<T, DataError>;
