//! Writing Polars data frames as Parquet files, atomically.

use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::{DataFrame, ParquetWriter};

/// Writes `df` to `path` as Parquet through a temporary file and a rename.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let temp = path.with_extension("parquet.partial");
    let file = std::fs::File::create(&temp)
        .with_context(|| format!("{}: cannot write", temp.display()))?;
    ParquetWriter::new(file)
        .finish(df)
        .with_context(|| format!("{}: cannot write Parquet", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("{}: cannot write", path.display()))
}
