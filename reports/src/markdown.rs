//! The markdown report: the paper-style table per configuration (● available, ○ missing; Dice
//! in % and HD95 in mm, mean ± std over runs), the comparison with published numbers, the
//! ablations, the effect of the key modality, the learned importance weights, the figures and
//! the settings.

use std::fmt::Write;

use crate::ablation::Ablation;
use crate::aggregate::{GroupTable, RegionStats, Stat};
use crate::published::{Comparison, PublishedResult};
use crate::results::RunInfo;
use crate::summary::Summary;

/// A figure of the report: its caption and file name (beside the report).
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// What it shows.
    pub caption: String,
    /// The PNG file, relative to the report.
    pub file: String,
}

/// Everything the report shows.
pub struct ReportContent<'a> {
    /// Modality names in channel order.
    pub modalities: &'a [String],
    /// The paper-style tables.
    pub tables: &'a [GroupTable],
    /// The runs and checkpoints.
    pub infos: &'a [RunInfo],
    /// Comparisons with published numbers.
    pub comparisons: &'a [Comparison],
    /// Ablation tables.
    pub ablations: &'a [Ablation<'a>],
    /// The headline numbers.
    pub summary: &'a Summary,
    /// The figures.
    pub figures: &'a [Figure],
    /// Figures that could not be drawn, with the reason.
    pub figure_problems: &'a [String],
}

fn dot(available: bool) -> &'static str {
    if available {
        "●"
    } else {
        "○"
    }
}

/// `mean ± std` (or `mean` for one run) with `decimals` decimals, scaled by `scale`.
pub fn format_stat(s: Stat, scale: f64, decimals: usize) -> String {
    match s.std {
        Some(std) => format!(
            "{:.*} ± {:.*}",
            decimals,
            scale * s.mean,
            decimals,
            scale * std
        ),
        None => format!("{:.*}", decimals, scale * s.mean),
    }
}

fn metric_cells(stats: &RegionStats) -> Vec<String> {
    stats
        .dice
        .iter()
        .map(|&s| format_stat(s, 100.0, 2))
        .chain(stats.hd95.iter().map(|&s| format_stat(s, 1.0, 2)))
        .collect()
}

fn runs_phrase(runs: usize) -> String {
    if runs == 1 {
        "one run".into()
    } else {
        format!("mean ± std over {runs} runs")
    }
}

fn subset_table(md: &mut String, names: &[String], table: &GroupTable) {
    let header: Vec<String> = names
        .iter()
        .cloned()
        .chain(
            [
                "Dice ET", "Dice TC", "Dice WT", "HD95 ET", "HD95 TC", "HD95 WT",
            ]
            .map(String::from),
        )
        .collect();
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
    for row in &table.rows {
        let cells: Vec<String> = (0..names.len())
            .map(|m| dot(row.contains(m)).to_owned())
            .chain(metric_cells(&row.stats))
            .collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    let average: Vec<String> = metric_cells(&table.average)
        .into_iter()
        .map(|c| format!("**{c}**"))
        .collect();
    let _ = writeln!(
        md,
        "| **Average of {} subsets** |{} {} |\n",
        table.rows.len(),
        " |".repeat(names.len() - 1),
        average.join(" | ")
    );
}

fn title(table: &GroupTable) -> String {
    let g = &table.group;
    format!(
        "{} on {}, protocol {}, `{}`{}",
        g.variant,
        g.dataset,
        g.protocol,
        g.checkpoint,
        if g.postprocessed {
            ", post-processed"
        } else {
            ""
        }
    )
}

fn published_rows(md: &mut String, rows: &[PublishedResult]) {
    let _ = writeln!(md, "| Method | Venue | ET | TC | WT | Protocol | Source |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for p in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {} | {} |",
            p.method, p.venue, p.et, p.tc, p.wt, p.protocol, p.source
        );
    }
}

fn comparison(md: &mut String, c: &Comparison) {
    let _ = writeln!(
        md,
        "### {} on {} beside published methods\n\nAverage Dice (%) over the 15 subsets. This \
         project's row is protocol {} ({}).\n",
        c.variant,
        c.dataset,
        c.protocol,
        runs_phrase(c.runs)
    );
    if c.same_protocol.is_empty() {
        let _ = writeln!(
            md,
            "No published number of {} was scored under protocol {}.\n",
            c.dataset, c.protocol
        );
    } else {
        published_rows(md, &c.same_protocol);
    }
    let ours: Vec<String> = c.ours.iter().map(|&s| format_stat(s, 1.0, 2)).collect();
    if !c.same_protocol.is_empty() {
        let _ = writeln!(
            md,
            "| **{} (this project)** | | **{}** | **{}** | **{}** | {} | this report |\n",
            c.variant, ours[0], ours[1], ours[2], c.protocol
        );
    } else {
        let _ = writeln!(
            md,
            "This project: ET {}, TC {}, WT {} (protocol {}).\n",
            ours[0], ours[1], ours[2], c.protocol
        );
    }
    if !c.other_protocols.is_empty() {
        let _ = writeln!(
            md,
            "Scored under other or unstated protocols — not directly comparable with the rows \
             above:\n"
        );
        published_rows(md, &c.other_protocols);
        md.push('\n');
    }
}

fn ablation(md: &mut String, a: &Ablation<'_>) {
    let _ = writeln!(
        md,
        "### Ablations on {}, protocol {}, `{}`\n\nAverage over the 15 subsets; Δ is the \
         difference in average Dice (percentage points) from the first row.\n",
        a.dataset, a.protocol, a.checkpoint
    );
    let _ = writeln!(
        md,
        "| Variant | Runs | Dice ET | Dice TC | Dice WT | HD95 ET | HD95 TC | HD95 WT | Δ ET | Δ TC | Δ WT |"
    );
    let _ = writeln!(md, "|{}", "---|".repeat(11));
    let base = a.variants[0].average.dice.map(|s| s.mean);
    for table in &a.variants {
        let delta: Vec<String> = table
            .average
            .dice
            .iter()
            .zip(base)
            .map(|(s, b)| format!("{:+.2}", 100.0 * (s.mean - b)))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            table.group.variant,
            table.runs,
            metric_cells(&table.average).join(" | "),
            delta.join(" | ")
        );
    }
    md.push('\n');
}

/// Renders the report.
pub fn render(content: &ReportContent<'_>) -> String {
    let mut md = String::new();
    let names = content.modalities;
    let summary = content.summary;
    let runs: Vec<&str> = content.infos.iter().map(|i| i.run_id.as_str()).collect();
    let _ = writeln!(md, "# MetaKD results\n");
    let _ = writeln!(
        md,
        "Runs: {}. Dice (%) and HD95 (mm) of the enhancing tumour (ET), tumour core (TC) and \
         whole tumour (WT) on held-out cases, for every combination of available modalities \
         (● available, ○ missing). Per run, metrics are averaged over cases; several runs of one \
         configuration (folds, seeds) give mean ± sample standard deviation.\n",
        runs.iter()
            .map(|r| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for table in content.tables.iter().filter(|t| !t.group.postprocessed) {
        let _ = writeln!(md, "## {}\n", title(table));
        let _ = writeln!(
            md,
            "{} cases per run, {}.\n",
            table.rows.iter().map(|r| r.cases).max().unwrap_or(0),
            runs_phrase(table.runs)
        );
        subset_table(&mut md, names, table);
    }
    let postprocessed: Vec<&GroupTable> = content
        .tables
        .iter()
        .filter(|t| t.group.postprocessed)
        .collect();
    if !postprocessed.is_empty() {
        let _ = writeln!(
            md,
            "## After post-processing\n\nThe same predictions after the optional \
             post-processing: tumour components smaller than min(2000, 0.1 × the largest) \
             voxels removed; ET relabelled as necrotic core when fewer than 500 voxels.\n"
        );
        for table in postprocessed {
            let _ = writeln!(md, "### {}\n", title(table));
            subset_table(&mut md, names, table);
        }
    }
    if !content.comparisons.is_empty() {
        let _ = writeln!(md, "## Published results\n");
        for c in content.comparisons {
            comparison(&mut md, c);
        }
    } else {
        let _ = writeln!(
            md,
            "## Published results\n\nNo published numbers for data set `{}`: published tables are \
             set beside runs on the same data set only.\n",
            summary.dataset
        );
    }
    if !content.ablations.is_empty() {
        let _ = writeln!(md, "## Ablations\n");
        for a in content.ablations {
            ablation(&mut md, a);
        }
    }
    let k = &summary.key_modality;
    let _ = writeln!(md, "## The effect of {k}\n");
    let _ = writeln!(
        md,
        "{} on {}: mean ET Dice over the subsets with {k}: **{:.2}**; without {k}: **{:.2}**; \
         difference **{:.2}** points. With every modality: ET {:.2}, TC {:.2}, WT {:.2}.\n",
        summary.variant,
        summary.dataset,
        100.0 * summary.et_with_key_modality,
        100.0 * summary.et_without_key_modality,
        100.0 * (summary.et_with_key_modality - summary.et_without_key_modality),
        100.0 * summary.full_dice[0],
        100.0 * summary.full_dice[1],
        100.0 * summary.full_dice[2],
    );
    if !content.figures.is_empty() || !content.figure_problems.is_empty() {
        let _ = writeln!(md, "## Figures\n");
        for f in content.figures {
            let _ = writeln!(md, "![{}]({})\n\n*{}*\n", f.caption, f.file, f.caption);
        }
        for problem in content.figure_problems {
            let _ = writeln!(md, "- Not drawn: {problem}");
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Learned importance weights\n");
    let header: Vec<String> = ["Run", "Variant", "Checkpoint"]
        .iter()
        .map(|s| s.to_string())
        .chain(names.iter().map(|n| format!("ω {n}")))
        .collect();
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
    for info in content.infos {
        let omegas: Vec<String> = info.importance.iter().map(|w| format!("{w:.4}")).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            info.run_id,
            info.variant,
            info.checkpoint,
            omegas.join(" | ")
        );
    }
    md.push('\n');
    let skipped: Vec<(&str, &(String, String))> = content
        .infos
        .iter()
        .flat_map(|i| i.skipped.iter().map(move |s| (i.run_id.as_str(), s)))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(md, "## Skipped cases\n");
        for (run, (id, reason)) in skipped {
            let _ = writeln!(md, "- `{run}` / `{id}`: {reason}");
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Settings\n");
    for info in content.infos {
        let fold = info.fold.map_or(String::new(), |f| format!(", fold {f}"));
        let _ = writeln!(
            md,
            "### `{}` ({}, protocol {}{fold}, seed {})\n\nCases: {}\n\n```toml\n{}```\n",
            info.run_id,
            info.dataset,
            info.protocol,
            info.seed,
            info.cases.join(", "),
            info.config_toml
        );
    }
    md
}
