//! Errors of report generation; each names the file it concerns.

use std::path::PathBuf;

/// Everything that can go wrong while reading results or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A result table could not be read or aggregated.
    #[error("{path}: {source}")]
    Table {
        /// The table.
        path: PathBuf,
        /// The underlying error.
        source: polars::error::PolarsError,
    },
    /// A sweep's sidecar could not be parsed.
    #[error("{path}: {source}")]
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
    /// A figure could not be drawn.
    #[error("{path}: cannot draw the figure: {problem}")]
    Figure {
        /// The figure's file stem.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
}

/// Result of report generation.
pub type Result<T> = std::result::Result<T, ReportError>;
