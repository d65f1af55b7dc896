//! The markdown report of one sweep: the subset table in the paper's layout (● available,
//! ○ missing), the effect of the key modality, the learned importance weights and the settings.

use std::fmt::Write;

use crate::summary::Summary;
use crate::sweep_table::{SubsetDice, SweepInfo};

fn dot(available: bool) -> &'static str {
    if available {
        "●"
    } else {
        "○"
    }
}

/// Renders the report.
pub fn render(info: &SweepInfo, rows: &[SubsetDice], summary: &Summary) -> String {
    let mut md = String::new();
    let names = &info.modalities;
    let _ = writeln!(md, "# MetaKD results: run `{}`\n", info.run_id);
    let _ = writeln!(
        md,
        "Dice of the enhancing tumour (ET), tumour core (TC) and whole tumour (WT) on {} held-out \
         cases, for every combination of available modalities (● available, ○ missing).\n",
        summary.cases
    );
    let _ = writeln!(md, "## Dice per modality subset\n");
    let header: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .chain(["ET", "TC", "WT", "Mean"])
        .collect();
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let dots: Vec<&str> = (0..names.len()).map(|m| dot(row.contains(m))).collect();
        let _ = writeln!(
            md,
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} |",
            dots.join(" | "),
            row.dice[0],
            row.dice[1],
            row.dice[2],
            row.mean()
        );
    }
    let [et, tc, wt] = summary.mean_dice;
    let _ = writeln!(
        md,
        "| **Mean over {} subsets** |{} **{et:.4}** | **{tc:.4}** | **{wt:.4}** | **{:.4}** |\n",
        rows.len(),
        " |".repeat(names.len() - 1),
        (et + tc + wt) / 3.0
    );
    let _ = writeln!(md, "## The effect of {}\n", summary.key_modality);
    let _ = writeln!(
        md,
        "Mean ET Dice over the subsets with {k}: **{:.4}**; without {k}: **{:.4}**; difference \
         **{:.4}**. With every modality: ET {:.4}, TC {:.4}, WT {:.4}.\n",
        summary.et_with_key_modality,
        summary.et_without_key_modality,
        summary.et_with_key_modality - summary.et_without_key_modality,
        summary.full_dice[0],
        summary.full_dice[1],
        summary.full_dice[2],
        k = summary.key_modality,
    );
    let _ = writeln!(md, "## Learned importance weights\n");
    let _ = writeln!(md, "| Modality | w | ω = softmax(w) |\n|---|---|---|");
    for ((name, w), omega) in names
        .iter()
        .zip(&info.importance_logits)
        .zip(&info.importance)
    {
        let _ = writeln!(md, "| {name} | {w:.4} | {omega:.4} |");
    }
    if !info.skipped.is_empty() {
        let _ = writeln!(md, "\n## Skipped cases\n");
        for (id, reason) in &info.skipped {
            let _ = writeln!(md, "- `{id}`: {reason}");
        }
    }
    let _ = writeln!(md, "\n## Settings\n\nCases: {}\n", info.cases.join(", "));
    let _ = writeln!(md, "```toml\n{}```", info.config_toml);
    md
}
