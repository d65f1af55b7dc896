//! Result tables and reports of MetaKD sweeps: reads a sweep's Parquet table with Polars,
//! aggregates Dice per modality subset and writes `report.md` and `summary.json`.

pub mod error;
pub mod markdown;
pub mod summary;
pub mod sweep_table;

use std::path::{Path, PathBuf};

pub use error::{ReportError, Result};
pub use summary::Summary;

/// Index of T1ce, the modality whose absence costs most ET Dice in BraTS.
const KEY_MODALITY: usize = 2;

/// Writes `report.md` and `summary.json` for the sweep table `table` into `out_dir`, returning
/// the report's path and the summary.
pub fn write_report(table: &Path, out_dir: &Path) -> Result<(PathBuf, Summary)> {
    let info = sweep_table::SweepInfo::read_beside(table)?;
    let df = sweep_table::read_table(table)?;
    let rows = sweep_table::dice_per_subset(&df, table)?;
    let key_name = info
        .modalities
        .get(KEY_MODALITY)
        .cloned()
        .unwrap_or_else(|| "T1ce".into());
    let summary = Summary::new(
        &info.run_id,
        info.cases.len(),
        &rows,
        KEY_MODALITY,
        &key_name,
    );
    let markdown = markdown::render(&info, &rows, &summary);
    std::fs::create_dir_all(out_dir).map_err(|source| ReportError::Io {
        path: out_dir.to_owned(),
        source,
    })?;
    let report = out_dir.join("report.md");
    write_atomic(&report, markdown.as_bytes())?;
    let json = serde_json::to_string_pretty(&summary).expect("the summary serialises");
    write_atomic(&out_dir.join("summary.json"), json.as_bytes())?;
    Ok((report, summary))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = path.with_extension("partial");
    std::fs::write(&temp, bytes).map_err(|source| ReportError::Io {
        path: temp.clone(),
        source,
    })?;
    std::fs::rename(&temp, path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })
}
