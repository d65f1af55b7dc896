//! The CSV forms of the comparison with published numbers (`comparison.csv`) and of the
//! ablations (`ablation.csv`).

use std::path::Path;

use polars::prelude::*;

use crate::ablation::Ablation;
use crate::aggregate::{GroupTable, Stat, REGIONS};
use crate::error::Result;
use crate::published::Comparison;
use crate::results::table_error;

/// One row of `comparison.csv`.
struct ComparisonRow {
    dataset: String,
    method: String,
    venue: String,
    dice: [Stat; 3],
    protocol: String,
    source: String,
    same_protocol: bool,
}

fn stat_columns(name: &str, stats: &[[Stat; 3]]) -> Vec<Column> {
    let mut columns = Vec::new();
    for (r, region) in REGIONS.iter().enumerate() {
        let region = region.to_lowercase();
        columns.push(Column::new(
            format!("{name}_{region}_mean").into(),
            stats.iter().map(|s| s[r].mean).collect::<Vec<_>>(),
        ));
        columns.push(Column::new(
            format!("{name}_{region}_std").into(),
            stats.iter().map(|s| s[r].std).collect::<Vec<_>>(),
        ));
    }
    columns
}

/// `comparison.csv`: every published row set beside a run, and the run's own rows.
pub fn comparison_frame(comparisons: &[Comparison], origin: &Path) -> Result<DataFrame> {
    let mut rows: Vec<ComparisonRow> = Vec::new();
    for c in comparisons {
        for (list, comparable) in [(&c.same_protocol, true), (&c.other_protocols, false)] {
            for p in list {
                let stat = |v: f64| Stat { mean: v, std: None };
                rows.push(ComparisonRow {
                    dataset: p.dataset.clone(),
                    method: p.method.clone(),
                    venue: p.venue.clone(),
                    dice: [stat(p.et), stat(p.tc), stat(p.wt)],
                    protocol: p.protocol.clone(),
                    source: p.source.clone(),
                    same_protocol: comparable,
                });
            }
        }
        rows.push(ComparisonRow {
            dataset: c.dataset.clone(),
            method: format!("{} (this project)", c.variant),
            venue: String::new(),
            dice: c.ours,
            protocol: c.protocol.clone(),
            source: format!("{} runs", c.runs),
            same_protocol: true,
        });
    }
    let text =
        |f: fn(&ComparisonRow) -> &String| rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    let mut columns = vec![
        Column::new("dataset".into(), text(|r| &r.dataset)),
        Column::new("method".into(), text(|r| &r.method)),
        Column::new("venue".into(), text(|r| &r.venue)),
    ];
    columns.extend(stat_columns(
        "dice_percent",
        &rows.iter().map(|r| r.dice).collect::<Vec<_>>(),
    ));
    columns.push(Column::new("protocol".into(), text(|r| &r.protocol)));
    columns.push(Column::new("source".into(), text(|r| &r.source)));
    columns.push(Column::new(
        "same_protocol".into(),
        rows.iter().map(|r| r.same_protocol).collect::<Vec<_>>(),
    ));
    DataFrame::new(rows.len(), columns).map_err(table_error(origin))
}

/// `ablation.csv`: one row per variant of every ablation.
pub fn ablation_frame(ablations: &[Ablation<'_>], origin: &Path) -> Result<DataFrame> {
    let tables: Vec<&GroupTable> = ablations
        .iter()
        .flat_map(|a| a.variants.iter().copied())
        .collect();
    let text =
        |f: fn(&GroupTable) -> &String| tables.iter().map(|t| f(t).clone()).collect::<Vec<_>>();
    let mut columns = vec![
        Column::new("dataset".into(), text(|t| &t.group.dataset)),
        Column::new("protocol".into(), text(|t| &t.group.protocol)),
        Column::new("checkpoint".into(), text(|t| &t.group.checkpoint)),
        Column::new("variant".into(), text(|t| &t.group.variant)),
        Column::new(
            "runs".into(),
            tables.iter().map(|t| t.runs as u32).collect::<Vec<_>>(),
        ),
    ];
    columns.extend(stat_columns(
        "dice",
        &tables.iter().map(|t| t.average.dice).collect::<Vec<_>>(),
    ));
    columns.extend(stat_columns(
        "hd95",
        &tables.iter().map(|t| t.average.hd95).collect::<Vec<_>>(),
    ));
    DataFrame::new(tables.len(), columns).map_err(table_error(origin))
}
