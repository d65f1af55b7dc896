//! Writing Polars data frames as Parquet files, atomically.

use std::path::Path;

use anyhow::{Context, Result};
use metakd_data::files::{partial_path, write_atomic_via};
use polars::prelude::{DataFrame, ParquetWriter};

/// Writes `df` to `path` as Parquet through a temporary file and a rename.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    write_atomic_via(path, &partial_path(path), |temp| -> Result<()> {
        let file = std::fs::File::create(temp)
            .with_context(|| format!("{}: cannot write", temp.display()))?;
        ParquetWriter::new(file)
            .finish(df)
            .with_context(|| format!("{}: cannot write Parquet", temp.display()))?;
        Ok(())
    })
}
