//! Result tables and reports of MetaKD sweeps: reads any set of sweep tables (Parquet) with
//! Polars, aggregates them as the paper's tables are made, and writes `report.md` with its
//! figures, the tables as CSV (`subsets.csv`, `averages.csv`, `comparison.csv`, `ablation.csv`,
//! or `classification.csv` for classification results) and `summary.json`.

pub mod ablation;
pub mod aggregate;
pub mod classification;
pub mod csv_tables;
pub mod error;
pub mod markdown;
pub mod plots;
pub mod published;
pub mod regress;
pub mod results;
pub mod slices;
pub mod summary;

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
    /// Figures that could not be drawn, with the reason (the report says so too).
    pub figure_problems: Vec<String>,
}

/// The table the summary describes: MetaKD as predicted when present, else the first table.
fn main_table(tables: &[GroupTable]) -> &GroupTable {
    tables
        .iter()
        .find(|t| !t.group.postprocessed && t.group.variant == ablation::METAKD)
        .or_else(|| tables.iter().find(|t| !t.group.postprocessed))
        .unwrap_or(&tables[0])
}

/// The reports written by [`write_reports`].
#[derive(Debug, Clone)]
pub struct Reports {
    /// The segmentation report, when the tables had segmentation rows.
    pub segmentation: Option<ReportOutcome>,
    /// The classification report, when they had classification rows.
    pub classification: Option<classification::ClassificationOutcome>,
    /// What reading the tables noticed that leaves the reports incomplete (missing units).
    pub warnings: Vec<String>,
}

/// Writes the reports of the result tables `inputs`: segmentation rows into `out_dir`,
/// classification rows into `out_dir` too when there are no segmentation rows, else into
/// `out_dir/classification`.
pub fn write_reports(inputs: &[PathBuf], out_dir: &Path) -> Result<Reports> {
    let read = results::read_tables(inputs)?;
    let origin = read.files[0].clone();
    let classification_rows = classification::has_classification(&read.df);
    let segmentation = if has_segmentation(&read.df) {
        Some(segmentation_report(&read, out_dir)?)
    } else {
        None
    };
    let classification = if classification_rows {
        let dir = match segmentation {
            Some(_) => out_dir.join("classification"),
            None => out_dir.to_owned(),
        };
        Some(classification::write_classification_report(
            &read.df, &origin, &dir,
        )?)
    } else {
        None
    };
    if segmentation.is_none() && classification.is_none() {
        return Err(ReportError::BadTable {
            path: origin,
            problem: "the table has no rows: nothing to report on (did the sweep skip every case?)"
                .into(),
        });
    }
    Ok(Reports {
        segmentation,
        classification,
        warnings: read.warnings,
    })
}

fn has_segmentation(df: &polars::prelude::DataFrame) -> bool {
    df.column("task")
        .ok()
        .and_then(|c| {
            c.str()
                .ok()
                .map(|s| s.iter().any(|v| v == Some(results::SEGMENTATION)))
        })
        .unwrap_or(false)
}

/// Writes the segmentation report of the sweep tables `inputs` (files or folders of unit
/// files, each with its `.json` sidecar) into `out_dir`.
pub fn write_report(inputs: &[PathBuf], out_dir: &Path) -> Result<ReportOutcome> {
    let read = results::read_tables(inputs)?;
    segmentation_report(&read, out_dir)
}

fn segmentation_report(read: &results::ResultTables, out_dir: &Path) -> Result<ReportOutcome> {
    use polars::prelude::*;
    let origin = read.files[0].clone();
    let df = read
        .df
        .clone()
        .lazy()
        .filter(col("task").eq(lit(results::SEGMENTATION)))
        .collect()
        .map_err(results::table_error(&origin))?;
    let mut subsets = aggregate::subset_frame(&df, &origin)?;
    let mut averages = aggregate::average_frame(&df, &origin)?;
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
    let (figures, figure_problems) = draw_figures(&tables, &read.infos, &modalities, out_dir);
    let markdown = markdown::render(&markdown::ReportContent {
        modalities: &modalities,
        tables: &tables,
        infos: &read.infos,
        comparisons: &comparisons,
        ablations: &ablations,
        summary: &summary,
        figures: &figures,
        figure_problems: &figure_problems,
    });
    let report = out_dir.join("report.md");
    write_atomic(&report, markdown.as_bytes())?;
    let json = serde_json::to_string_pretty(&summary).expect("the summary serialises");
    write_atomic(&out_dir.join("summary.json"), json.as_bytes())?;
    Ok(ReportOutcome {
        report,
        summary,
        tables,
        figure_problems,
    })
}

/// Draws the report's figures into `out_dir`: the Dice heatmap of every table as predicted,
/// ω and the losses over training of the main table's first run, and one case's slices. A
/// figure that cannot be drawn (an unreadable training log, no usable font) is left out and
/// named in the second list.
fn draw_figures(
    tables: &[GroupTable],
    infos: &[results::RunInfo],
    modalities: &[String],
    out_dir: &Path,
) -> (Vec<markdown::Figure>, Vec<String>) {
    use plots::{save, Curves, DiceHeatmap, SliceFigure, TrainingLog};
    let mut figures = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut keep = |caption: String, result: Result<[PathBuf; 2]>| match result {
        Ok([png, _]) => figures.push(markdown::Figure {
            caption,
            file: png
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }),
        Err(e) => problems.push(format!("{caption}: {}", e.describe())),
    };
    for (i, table) in tables.iter().filter(|t| !t.group.postprocessed).enumerate() {
        let g = &table.group;
        keep(
            format!(
                "Dice (%) per subset and region: {} on {}, `{}`",
                g.variant, g.dataset, g.checkpoint
            ),
            save(
                &DiceHeatmap { table, modalities },
                &out_dir.join(format!("dice-heatmap-{}", i + 1)),
            ),
        );
    }
    let main = main_table(tables);
    let run = infos
        .iter()
        .find(|i| i.variant == main.group.variant && i.dataset == main.group.dataset);
    if let Some(info) = run {
        let log_path = info.run_dir.join("train_log.parquet");
        match TrainingLog::read(&log_path, &info.run_id, modalities) {
            Ok(log) => {
                keep(
                    format!("Importance weights ω over training (`{}`)", info.run_id),
                    save(&Curves::omega(&log), &out_dir.join("omega")),
                );
                keep(
                    format!("Training losses (`{}`)", info.run_id),
                    save(&Curves::losses(&log), &out_dir.join("losses")),
                );
            }
            Err(e) => keep(format!("Training curves of `{}`", info.run_id), Err(e)),
        }
    }
    if let Some(path) = infos.iter().find_map(|i| i.slices.as_ref()) {
        match slices::CaseSlices::read(path) {
            Ok(s) => keep(
                format!(
                    "Case {}: the input modalities, the reference labels and the labels predicted \
                     from every modality and from each one alone (red necrotic core, green \
                     oedema, yellow enhancing tumour)",
                    s.case
                ),
                save(
                    &SliceFigure {
                        slices: &s,
                        background: KEY_MODALITY,
                    },
                    &out_dir.join("case-slices"),
                ),
            ),
            Err(e) => keep("Case slices".into(), Err(e)),
        }
    }
    (figures, problems)
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `bytes` to `path` atomically ([`metakd_data::files::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(metakd_data::files::write_atomic(path, bytes)?)
}
