//! Classification results (rows of task `classification`): accuracy and macro-F1 per data set,
//! protocol, missing rate, variant and test subset, mean ± sample std over seeds, in the shape of
//! the paper's tables — variants by rate for AV-MNIST, subsets by variant for the modality
//! tables — beside the published numbers of `reports/data/published-classification.csv`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::aggregate::Stat;
use crate::error::{ReportError, Result};
use crate::results::{table_error, CLASSIFICATION};

/// The published classification numbers, as shipped with the program.
const PUBLISHED: &str = include_str!("../data/published-classification.csv");

/// One published accuracy (and macro-F1 where given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedScore {
    /// The data set (`avmnist`, `adni`).
    pub dataset: String,
    /// The protocol (`audio rate`, `real missingness`).
    pub protocol: String,
    /// The method.
    pub method: String,
    /// The missing rate in % (none for an average over subsets).
    pub rate: Option<f64>,
    /// Accuracy in %.
    pub accuracy: f64,
    /// Macro-F1 in %, where published.
    pub f1: Option<f64>,
    /// Where the number was read.
    pub source: String,
}

/// The published classification scores.
pub fn published_scores() -> Vec<PublishedScore> {
    csv::Reader::from_reader(PUBLISHED.as_bytes())
        .deserialize()
        .collect::<std::result::Result<_, _>>()
        .expect("the shipped table of published classification results parses")
}

/// Mean ± std over seeds of one data set, protocol, rate, variant and test subset.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassCell {
    /// The data set.
    pub dataset: String,
    /// The protocol.
    pub protocol: String,
    /// The missing rate in % (none without one).
    pub rate: Option<f64>,
    /// The variant.
    pub variant: String,
    /// Test modalities as a bitmask.
    pub subset_mask: u32,
    /// Test modalities by name.
    pub subset: String,
    /// Accuracy in %.
    pub accuracy: Stat,
    /// Macro-F1 in %.
    pub f1: Stat,
    /// Seeds (runs) averaged.
    pub runs: usize,
}

/// The classification rows of `df` aggregated over seeds, with the columns `dataset, protocol,
/// rate, variant, subset_mask, subset, accuracy_mean, accuracy_std, f1_mean, f1_std, runs`
/// (accuracy and F1 in %; `classification.csv`).
pub fn classification_frame(df: &DataFrame, path: &Path) -> Result<DataFrame> {
    df.clone()
        .lazy()
        .filter(col("task").eq(lit(CLASSIFICATION)))
        .with_columns([
            (col("rate") * lit(100.0))
                .round(6, RoundMode::HalfToEven)
                .alias("rate"),
            (col("accuracy") * lit(100.0)).alias("accuracy"),
            (col("f1") * lit(100.0)).alias("f1"),
        ])
        .group_by([
            col("dataset"),
            col("protocol"),
            col("rate"),
            col("variant"),
            col("subset_mask"),
            col("subset"),
        ])
        .agg([
            col("accuracy").mean().alias("accuracy_mean"),
            col("accuracy").std(1).alias("accuracy_std"),
            col("f1").mean().alias("f1_mean"),
            col("f1").std(1).alias("f1_std"),
            col("run_id").count().cast(DataType::UInt32).alias("runs"),
        ])
        .sort(
            ["dataset", "protocol", "rate", "variant", "subset_mask"],
            SortMultipleOptions::default().with_nulls_last(true),
        )
        .collect()
        .map_err(table_error(path))
}

/// The cells of a [`classification_frame`].
pub fn cells(frame: &DataFrame, path: &Path) -> Result<Vec<ClassCell>> {
    let text = |name: &str| -> Result<Vec<String>> {
        let c = frame.column(name).map_err(table_error(path))?;
        Ok(c.str()
            .map_err(table_error(path))?
            .iter()
            .map(|v| v.unwrap_or_default().to_owned())
            .collect())
    };
    let float = |name: &str| -> Result<Vec<Option<f64>>> {
        let c = frame
            .column(name)
            .and_then(|c| c.cast(&DataType::Float64))
            .map_err(table_error(path))?;
        Ok(c.f64().map_err(table_error(path))?.iter().collect())
    };
    let unsigned = |name: &str| -> Result<Vec<u32>> {
        let c = frame
            .column(name)
            .and_then(|c| c.cast(&DataType::UInt32))
            .map_err(table_error(path))?;
        Ok(c.u32()
            .map_err(table_error(path))?
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect())
    };
    let (dataset, protocol, variant, subset) = (
        text("dataset")?,
        text("protocol")?,
        text("variant")?,
        text("subset")?,
    );
    let (rate, acc_mean, acc_std, f1_mean, f1_std) = (
        float("rate")?,
        float("accuracy_mean")?,
        float("accuracy_std")?,
        float("f1_mean")?,
        float("f1_std")?,
    );
    let (mask, runs) = (unsigned("subset_mask")?, unsigned("runs")?);
    Ok((0..frame.height())
        .map(|i| ClassCell {
            dataset: dataset[i].clone(),
            protocol: protocol[i].clone(),
            rate: rate[i],
            variant: variant[i].clone(),
            subset_mask: mask[i],
            subset: subset[i].clone(),
            accuracy: Stat {
                mean: acc_mean[i].unwrap_or(f64::NAN),
                std: acc_std[i],
            },
            f1: Stat {
                mean: f1_mean[i].unwrap_or(f64::NAN),
                std: f1_std[i],
            },
            runs: runs[i] as usize,
        })
        .collect())
}

/// Variants in table order: baselines first, MetaKD last; others after, by name.
const VARIANT_ORDER: [&str; 6] = [
    "image only",
    "audio only",
    "late fusion",
    "no KD",
    "no meta",
    "MetaKD",
];

fn variant_rank(v: &str) -> (usize, String) {
    (
        VARIANT_ORDER
            .iter()
            .position(|o| *o == v)
            .unwrap_or(VARIANT_ORDER.len()),
        v.to_owned(),
    )
}

/// The data set's name as the paper writes it.
fn dataset_title(dataset: &str) -> String {
    match dataset {
        "avmnist" => "AV-MNIST".into(),
        "adni" => "ADNI".into(),
        "ad-csf" => "AD CSF cohort (stand-in, not ADNI)".into(),
        other => other.into(),
    }
}

fn stat_text(s: &Stat) -> String {
    if s.mean.is_nan() {
        return "—".into();
    }
    match s.std {
        Some(std) => format!("{:.2} ± {:.2}", s.mean, std),
        None => format!("{:.2}", s.mean),
    }
}

/// One protocol's cells.
#[derive(Debug, Clone)]
pub struct ProtocolCells<'a> {
    /// The data set.
    pub dataset: &'a str,
    /// The protocol.
    pub protocol: &'a str,
    /// Its cells.
    pub cells: Vec<&'a ClassCell>,
}

impl ProtocolCells<'_> {
    /// Rates present, ascending.
    pub fn rates(&self) -> Vec<f64> {
        let mut rates: Vec<f64> = self.cells.iter().filter_map(|c| c.rate).collect();
        rates.sort_by(f64::total_cmp);
        rates.dedup();
        rates
    }

    /// Variants present, in table order.
    pub fn variants(&self) -> Vec<String> {
        let set: BTreeSet<(usize, String)> = self
            .cells
            .iter()
            .map(|c| variant_rank(&c.variant))
            .collect();
        set.into_iter().map(|(_, v)| v).collect()
    }

    /// The test subsets present (mask and name), by mask.
    pub fn subsets(&self) -> Vec<(u32, String)> {
        self.cells
            .iter()
            .map(|c| (c.subset_mask, c.subset.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The full subset (every modality) mask.
    pub fn full_mask(&self) -> u32 {
        self.cells
            .iter()
            .map(|c| c.subset_mask)
            .fold(0, |a, m| a | m)
    }

    fn cell(&self, variant: &str, rate: Option<f64>, mask: u32) -> Option<&ClassCell> {
        self.cells
            .iter()
            .copied()
            .find(|c| c.variant == variant && c.subset_mask == mask && rate_eq(c.rate, rate))
    }
}

fn rate_eq(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        (None, None) => true,
        _ => false,
    }
}

/// Groups `cells` by data set and protocol.
pub fn by_protocol(cells: &[ClassCell]) -> Vec<ProtocolCells<'_>> {
    let keys: BTreeSet<(&str, &str)> = cells
        .iter()
        .map(|c| (c.dataset.as_str(), c.protocol.as_str()))
        .collect();
    keys.into_iter()
        .map(|(dataset, protocol)| ProtocolCells {
            dataset,
            protocol,
            cells: cells
                .iter()
                .filter(|c| c.dataset == dataset && c.protocol == protocol)
                .collect(),
        })
        .collect()
}

/// MetaKD's margin over the best baseline (image only or late fusion) with every modality at
/// test, per rate: (rate, MetaKD, best baseline name, its accuracy).
pub fn margins(p: &ProtocolCells) -> Vec<(f64, f64, String, f64)> {
    let full = p.full_mask();
    p.rates()
        .into_iter()
        .filter_map(|rate| {
            let ours = p.cell("MetaKD", Some(rate), full)?.accuracy.mean;
            let best = ["image only", "audio only", "late fusion"]
                .iter()
                .filter_map(|v| p.cell(v, Some(rate), full).map(|c| (*v, c.accuracy.mean)))
                .filter(|(v, _)| {
                    // The baseline of the modality the rate removes is not a competitor.
                    !(p.protocol == "audio rate" && *v == "audio only"
                        || p.protocol == "visual rate" && *v == "image only")
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))?;
            Some((rate, ours, best.0.to_owned(), best.1))
        })
        .collect()
}

/// The markdown of one protocol with rates: a table per test subset (variants × rates,
/// accuracy), the macro-F1 with every modality, published rows above ours.
fn rate_tables(p: &ProtocolCells, published: &[PublishedScore]) -> String {
    let rates = p.rates();
    let variants = p.variants();
    let full = p.full_mask();
    let mut masks = p.subsets();
    masks.sort_by_key(|(m, _)| (std::cmp::Reverse(m.count_ones()), *m));
    let runs = p.cells.iter().map(|c| c.runs).max().unwrap_or(0);
    let header = |first: &str| {
        let mut h = format!("| {first} |");
        for r in &rates {
            h += &format!(" {r}% |");
        }
        h += "\n|---|";
        h += &"---|".repeat(rates.len());
        h + "\n"
    };
    let mut out = String::new();
    for (mask, subset) in &masks {
        let test = if *mask == full {
            "every modality at test".to_string()
        } else {
            format!("only {subset} at test")
        };
        out += &format!(
            "\n#### Accuracy (%), {test}: mean ± std over {runs} seeds\n\n{}",
            header("method")
        );
        if *mask == full {
            for row in published
                .iter()
                .filter(|s| s.dataset == p.dataset && s.protocol == p.protocol && s.rate.is_some())
            {
                if out.contains(&format!("| {} (published", row.method)) {
                    continue;
                }
                out += &format!("| {} (published; {}) |", row.method, row.source);
                for &r in &rates {
                    let v = published.iter().find(|s| {
                        s.method == row.method
                            && s.dataset == p.dataset
                            && s.protocol == p.protocol
                            && s.rate.is_some_and(|x| (x - r).abs() < 1e-6)
                    });
                    out += &match v {
                        Some(v) => format!(" {:.2} |", v.accuracy),
                        None => " — |".into(),
                    };
                }
                out += "\n";
            }
        }
        for v in &variants {
            let row: Vec<Option<&ClassCell>> =
                rates.iter().map(|&r| p.cell(v, Some(r), *mask)).collect();
            if row.iter().all(Option::is_none) {
                continue;
            }
            let name = if v == "MetaKD" {
                "**MetaKD (ours)**".into()
            } else {
                v.clone()
            };
            out += &format!("| {name} |");
            for c in row {
                out += &match c {
                    Some(c) => format!(" {} |", stat_text(&c.accuracy)),
                    None => " — |".into(),
                };
            }
            out += "\n";
        }
    }
    out += &format!(
        "\n#### Macro-F1 (%), every modality at test\n\n{}",
        header("method")
    );
    for v in &variants {
        out += &format!("| {v} |");
        for &r in &rates {
            out += &match p.cell(v, Some(r), full) {
                Some(c) => format!(" {} |", stat_text(&c.f1)),
                None => " — |".into(),
            };
        }
        out += "\n";
    }
    let margins = margins(p);
    if !margins.is_empty() {
        out += "\nMetaKD against the best baseline, every modality at test:\n\n";
        for (rate, ours, best, theirs) in margins {
            out += &format!(
                "- {rate}%: MetaKD {ours:.2}, {best} {theirs:.2} ({:+.2} points)\n",
                ours - theirs
            );
        }
    }
    out
}

/// The markdown of one protocol without rates (real missingness): every test subset × variant,
/// accuracy and macro-F1, their average over subsets, and the published averages.
fn subset_table(p: &ProtocolCells, published: &[PublishedScore]) -> String {
    let variants = p.variants();
    let mut masks = p.subsets();
    masks.sort_by_key(|(m, _)| (m.count_ones(), *m));
    let runs = p.cells.iter().map(|c| c.runs).max().unwrap_or(0);
    let mut out = format!(
        "\n#### Accuracy / macro-F1 (%) per test subset: mean ± std over {runs} seeds\n\n| test modalities |"
    );
    for v in &variants {
        out += &format!(" {v} acc. | {v} F1 |");
    }
    out += "\n|---|";
    out += &"---|---|".repeat(variants.len());
    out += "\n";
    for (mask, subset) in &masks {
        out += &format!("| {subset} |");
        for v in &variants {
            out += &match p.cell(v, None, *mask) {
                Some(c) => format!(" {} | {} |", stat_text(&c.accuracy), stat_text(&c.f1)),
                None => " — | — |".into(),
            };
        }
        out += "\n";
    }
    out += "| **average over subsets** |";
    for v in &variants {
        let cells: Vec<&ClassCell> = masks
            .iter()
            .filter_map(|(m, _)| p.cell(v, None, *m))
            .collect();
        let mean = |f: fn(&ClassCell) -> f64| {
            cells.iter().map(|c| f(c)).sum::<f64>() / cells.len().max(1) as f64
        };
        out += &format!(
            " {:.2} | {:.2} |",
            mean(|c| c.accuracy.mean),
            mean(|c| c.f1.mean)
        );
    }
    out += "\n";
    let quoted: Vec<&PublishedScore> = published
        .iter()
        .filter(|s| s.protocol == p.protocol && s.rate.is_none())
        .collect();
    if !quoted.is_empty() {
        out += "\nPublished averages over subsets (on ADNI";
        if p.dataset != "adni" {
            out += &format!(
                ", a different data set from the {} scored above: they are context, not a \
                 comparison",
                dataset_title(p.dataset)
            );
        }
        out += "):\n\n| method | accuracy | macro-F1 | source |\n|---|---|---|---|\n";
        for s in quoted {
            out += &format!(
                "| {} | {:.2} | {} | {} |\n",
                s.method,
                s.accuracy,
                s.f1.map_or("—".into(), |f| format!("{f:.2}")),
                s.source
            );
        }
    }
    out
}

/// The classification part of a report: a section per data set and protocol.
pub fn render(cells: &[ClassCell], figures: &[(String, String)]) -> String {
    let published = published_scores();
    let mut out = String::from("## Classification\n");
    for p in by_protocol(cells) {
        out += &format!("\n### {}, {}\n", dataset_title(p.dataset), p.protocol);
        if p.rates().is_empty() {
            out += &subset_table(&p, &published);
        } else {
            out += &format!(
                "\nThe rate is the share of training samples that keep the {} modality.\n",
                if p.protocol == "visual rate" {
                    "image"
                } else {
                    "audio"
                }
            );
            out += &rate_tables(&p, &published);
        }
        for (caption, file) in figures
            .iter()
            .filter(|(c, _)| c.contains(&dataset_title(p.dataset)) && c.contains(p.protocol))
        {
            out += &format!("\n![{caption}]({file})\n");
        }
    }
    out
}

/// Accuracy over the missing rate of one protocol, one line per variant.
#[derive(Debug, Clone, PartialEq)]
pub struct RateCurves {
    /// The figure's caption.
    pub caption: String,
    /// The rates in %.
    pub rates: Vec<f64>,
    /// Per variant, its mean accuracy (%) with every modality at test at each rate.
    pub series: Vec<(String, Vec<f64>)>,
}

/// The [`RateCurves`] of every protocol with rates.
pub fn rate_curves(cells: &[ClassCell]) -> Vec<RateCurves> {
    by_protocol(cells)
        .into_iter()
        .filter(|p| !p.rates().is_empty())
        .map(|p| {
            let rates = p.rates();
            let full = p.full_mask();
            let series = p
                .variants()
                .into_iter()
                .map(|v| {
                    let ys = rates
                        .iter()
                        .map(|&r| {
                            p.cell(&v, Some(r), full)
                                .map_or(f64::NAN, |c| c.accuracy.mean)
                        })
                        .collect();
                    (v, ys)
                })
                .collect();
            RateCurves {
                caption: format!(
                    "{}, {}: accuracy (%) with every modality at test",
                    dataset_title(p.dataset),
                    p.protocol
                ),
                rates,
                series,
            }
        })
        .collect()
}

/// Whether `df` has classification rows.
pub fn has_classification(df: &DataFrame) -> bool {
    df.column("task")
        .ok()
        .and_then(|c| {
            c.str()
                .ok()
                .map(|s| s.iter().any(|v| v == Some(CLASSIFICATION)))
        })
        .unwrap_or(false)
}

/// Headline numbers of a classification report (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationSummary {
    /// Per protocol with rates and rate: MetaKD's accuracy, the best baseline and its accuracy.
    pub margins: Vec<Margin>,
}

/// MetaKD beside the best baseline at one rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Margin {
    /// The data set.
    pub dataset: String,
    /// The protocol.
    pub protocol: String,
    /// The rate in %.
    pub rate: f64,
    /// MetaKD's mean accuracy (%).
    pub metakd: f64,
    /// The best baseline.
    pub baseline: String,
    /// Its mean accuracy (%).
    pub baseline_accuracy: f64,
}

/// The summary of `cells`.
pub fn summary(cells: &[ClassCell]) -> ClassificationSummary {
    ClassificationSummary {
        margins: by_protocol(cells)
            .iter()
            .flat_map(|p| {
                margins(p)
                    .into_iter()
                    .map(|(rate, metakd, baseline, baseline_accuracy)| Margin {
                        dataset: p.dataset.to_owned(),
                        protocol: p.protocol.to_owned(),
                        rate,
                        metakd,
                        baseline,
                        baseline_accuracy,
                    })
            })
            .collect(),
    }
}

/// What [`write_classification_report`] wrote.
#[derive(Debug, Clone)]
pub struct ClassificationOutcome {
    /// `report.md`.
    pub report: PathBuf,
    /// The aggregated cells.
    pub cells: Vec<ClassCell>,
    /// The headline numbers.
    pub summary: ClassificationSummary,
    /// Figures that could not be drawn.
    pub figure_problems: Vec<String>,
}

/// Writes the classification report of the rows of `df` (read from `origin`) into `out_dir`:
/// `report.md`, `classification.csv`, `summary.json` and a figure per protocol with rates.
pub fn write_classification_report(
    df: &DataFrame,
    origin: &Path,
    out_dir: &Path,
) -> Result<ClassificationOutcome> {
    let mut frame = classification_frame(df, origin)?;
    let cells = cells(&frame, origin)?;
    if cells.is_empty() {
        return Err(ReportError::BadTable {
            path: origin.to_owned(),
            problem: "the table has no classification rows".into(),
        });
    }
    std::fs::create_dir_all(out_dir).map_err(|source| ReportError::Io {
        path: out_dir.to_owned(),
        source,
    })?;
    crate::aggregate::write_csv(&mut frame, &out_dir.join("classification.csv"))?;
    let mut figures = Vec::new();
    let mut figure_problems = Vec::new();
    for (
        i,
        RateCurves {
            caption,
            rates,
            series,
        },
    ) in rate_curves(&cells).into_iter().enumerate()
    {
        let curves = crate::plots::Curves {
            title: caption.clone(),
            x_label: "missing rate: % of training samples keeping the modality",
            y_label: "accuracy (%)",
            x: &rates,
            series,
        };
        match crate::plots::save(
            &curves,
            &out_dir.join(format!("accuracy-by-rate-{}", i + 1)),
        ) {
            Ok([png, _]) => figures.push((
                caption,
                png.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )),
            Err(e) => figure_problems.push(format!("{caption}: {}", e.describe())),
        }
    }
    let mut markdown = String::from("# MetaKD classification report\n\n");
    markdown += &format!(
        "Results of {} run(s) read from `{}`. Accuracy and macro-F1 in %, mean ± sample std \
         over seeds.\n\n",
        df.column("run_id")
            .ok()
            .and_then(|c| c.n_unique().ok())
            .unwrap_or(0),
        origin.display()
    );
    markdown += &render(&cells, &figures);
    for p in &figure_problems {
        markdown += &format!("\nNot drawn: {p}\n");
    }
    let report = out_dir.join("report.md");
    crate::write_atomic(&report, markdown.as_bytes())?;
    let summary = summary(&cells);
    let json = serde_json::to_string_pretty(&summary).expect("the summary serialises");
    crate::write_atomic(&out_dir.join("summary.json"), json.as_bytes())?;
    Ok(ClassificationOutcome {
        report,
        cells,
        summary,
        figure_problems,
    })
}
