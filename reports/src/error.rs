//! Errors of report generation; each names the file it concerns.

use std::path::PathBuf;

/// Everything that can go wrong while reading results or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written (the cause is the error's source).
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A result table could not be read or aggregated (the cause is the error's source).
    #[error("{path}")]
    Table {
        /// The table.
        path: PathBuf,
        /// The underlying error.
        source: polars::error::PolarsError,
    },
    /// A sweep's sidecar could not be parsed (the cause is the error's source).
    #[error("{path}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A table lacks what a report needs.
    #[error("{path}: {problem}")]
    BadTable {
        /// The table.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A file failed a check of the data layer (its digest, a lock).
    #[error(transparent)]
    Data(#[from] metakd_data::DataError),
    /// A figure could not be drawn.
    #[error("{path}: cannot draw the figure: {problem}")]
    Figure {
        /// The figure's file stem.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
}

impl ReportError {
    /// The error with every cause, `path: cause: cause…`.
    pub fn describe(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// Result of report generation.
pub type Result<T> = std::result::Result<T, ReportError>;
