//! Result tables and reports of MetaKD sweeps: reads any set of sweep tables (Parquet) with
//! Polars, aggregates them as the paper's tables are made, and writes `report.md` with its
//! figures, the tables as CSV (`subsets.csv`, `averages.csv`, `comparison.csv`, `ablation.csv`)
//! and `summary.json`.

pub mod ablation;
pub mod aggregate;
pub mod csv_tables;
pub mod error;
pub mod markdown;
pub mod published;
pub mod regress;
pub mod summary;
pub mod sweep_table;

use std::path::{Path, PathBuf};

pub use error::{ReportError, Result};
pub use summary::Summary;

use crate::aggregate::GroupTable;
use crate::published::Comparison;

/// Index of T1ce, the modality whose absence costs most ET Dice in BraTS.
const KEY_MODALITY: usize = 2;

/// What `write_report` wrote.
#[derive(Debug, Clone)]
pub struct ReportOutcome {
    /// `report.md`.
    pub report: PathBuf,
    /// The headline numbers (also in `summary.json`).
    pub summary: Summary,
    /// The paper-style tables.
    pub tables: Vec<GroupTable>,
}

/// The table the summary describes: MetaKD as predicted when present, else the first table.
fn main_table(tables: &[GroupTable]) -> &GroupTable {
    tables
        .iter()
        .find(|t| !t.group.postprocessed && t.group.variant == ablation::METAKD)
        .or_else(|| tables.iter().find(|t| !t.group.postprocessed))
        .unwrap_or(&tables[0])
}

/// Writes the report of the sweep tables `inputs` (files or folders of unit files, each with
/// its `.json` sidecar) into `out_dir`.
pub fn write_report(inputs: &[PathBuf], out_dir: &Path) -> Result<ReportOutcome> {
    let read = sweep_table::read_tables(inputs)?;
    let origin = read.files[0].clone();
    let mut subsets = aggregate::subset_frame(&read.df, &origin)?;
    let mut averages = aggregate::average_frame(&read.df, &origin)?;
    let tables = aggregate::group_tables(&subsets, &averages, &origin)?;
    if tables.is_empty() {
        return Err(ReportError::BadTable {
            path: origin,
            problem: "the table has no rows".into(),
        });
    }
    let modalities = read.infos[0].modalities.clone();
    let key_name = modalities
        .get(KEY_MODALITY)
        .cloned()
        .unwrap_or_else(|| "T1ce".into());
    let summary = Summary::new(main_table(&tables), KEY_MODALITY, &key_name);
    let published = published::published_brats();
    let comparisons: Vec<Comparison> = tables
        .iter()
        .filter(|t| !t.group.postprocessed && t.group.variant == ablation::METAKD)
        .filter_map(|t| published::compare(t, &published))
        .collect();
    let ablations = ablation::ablations(&tables);

    create_dir(out_dir)?;
    aggregate::write_csv(&mut subsets, &out_dir.join("subsets.csv"))?;
    aggregate::write_csv(&mut averages, &out_dir.join("averages.csv"))?;
    aggregate::write_csv(
        &mut csv_tables::comparison_frame(&comparisons, &origin)?,
        &out_dir.join("comparison.csv"),
    )?;
    aggregate::write_csv(
        &mut csv_tables::ablation_frame(&ablations, &origin)?,
        &out_dir.join("ablation.csv"),
    )?;
    let markdown = markdown::render(&markdown::ReportContent {
        modalities: &modalities,
        tables: &tables,
        infos: &read.infos,
        comparisons: &comparisons,
        ablations: &ablations,
        summary: &summary,
        figures: &[],
    });
    let report = out_dir.join("report.md");
    write_atomic(&report, markdown.as_bytes())?;
    let json = serde_json::to_string_pretty(&summary).expect("the summary serialises");
    write_atomic(&out_dir.join("summary.json"), json.as_bytes())?;
    Ok(ReportOutcome {
        report,
        summary,
        tables,
    })
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
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
