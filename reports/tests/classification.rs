//! Classification reports from hand-made result tables whose aggregates are known: mean ± sample
//! std over seeds per protocol, rate, variant and test subset; the paper-shaped tables beside
//! the published numbers; MetaKD's margin over the best baseline; modality tables without rates
//! with their average row; and the figure.

use std::path::{Path, PathBuf};

use metakd_reports::classification::classification_frame;
use metakd_reports::results::{read_tables, write_sidecar, write_table, RunInfo, COLUMNS};
use metakd_reports::write_reports;
use polars::prelude::*;

struct Row {
    run_id: String,
    dataset: &'static str,
    protocol: &'static str,
    rate: Option<f64>,
    seed: u64,
    variant: &'static str,
    mask: u32,
    subset: &'static str,
    accuracy: f64,
    f1: f64,
}

/// A made-up accuracy that differs between all seeds, rates, variants and subsets.
fn accuracy(seed: u64, rate: f64, variant: usize, mask: u32) -> f64 {
    0.80 + 0.3 * rate + 0.01 * variant as f64 + 0.02 * mask as f64 + 0.003 * seed as f64
        - 0.001 * (seed * seed) as f64
}

fn write_rows(path: &Path, rows: &[Row]) {
    let n = rows.len();
    let text = |f: &dyn Fn(&Row) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let null = |name: &str| Column::full_null(name.into(), n, &DataType::Float64);
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new("run_id".into(), text(&|r| r.run_id.clone())),
            Column::new("task".into(), vec!["classification"; n]),
            Column::new("dataset".into(), text(&|r| r.dataset.into())),
            Column::new("protocol".into(), text(&|r| r.protocol.into())),
            Column::new(
                "rate".into(),
                rows.iter().map(|r| r.rate).collect::<Vec<_>>(),
            ),
            Column::new("fold".into(), vec![None::<u32>; n]),
            Column::new(
                "seed".into(),
                rows.iter().map(|r| r.seed).collect::<Vec<_>>(),
            ),
            Column::new("variant".into(), text(&|r| r.variant.into())),
            Column::new("checkpoint".into(), vec!["final"; n]),
            Column::new("case".into(), vec!["test"; n]),
            Column::new(
                "subset_mask".into(),
                rows.iter().map(|r| r.mask).collect::<Vec<_>>(),
            ),
            Column::new("subset".into(), text(&|r| r.subset.into())),
            Column::new("region".into(), vec![None::<&str>; n]),
            Column::new("postprocessed".into(), vec![false; n]),
            null("dice"),
            null("hd95"),
            null("sensitivity"),
            null("specificity"),
            Column::new(
                "accuracy".into(),
                rows.iter().map(|r| r.accuracy).collect::<Vec<_>>(),
            ),
            Column::new("f1".into(), rows.iter().map(|r| r.f1).collect::<Vec<_>>()),
        ],
    )
    .unwrap();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, COLUMNS.to_vec(), "the test writes the common schema");
    write_table(&mut df, path).unwrap();
    let mut ids: Vec<&String> = rows.iter().map(|r| &r.run_id).collect();
    ids.dedup();
    let infos: Vec<RunInfo> = ids
        .iter()
        .map(|id| RunInfo {
            run_id: (*id).clone(),
            run_dir: PathBuf::from("units"),
            dataset: rows[0].dataset.into(),
            protocol: rows[0].protocol.into(),
            fold: None,
            seed: 0,
            variant: "MetaKD".into(),
            checkpoint: "final".into(),
            modalities: vec!["image".into(), "audio".into()],
            importance_logits: vec![0.0; 2],
            importance: vec![0.5; 2],
            config_toml: String::new(),
            subsets: vec![1, 2, 3],
            cases: vec!["test".into()],
            skipped: Vec::new(),
            slices: None,
        })
        .collect();
    write_sidecar(path, &infos).unwrap();
}

const VARIANTS: [&str; 3] = ["image only", "late fusion", "MetaKD"];
const SUBSETS: [(u32, &str); 3] = [(3, "image+audio"), (1, "image"), (2, "audio")];

fn avmnist_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for seed in 0..3u64 {
        for rate in [0.05, 0.10] {
            for (v, variant) in VARIANTS.iter().enumerate() {
                for (mask, subset) in SUBSETS {
                    rows.push(Row {
                        run_id: format!("{variant}-{rate}-{seed}"),
                        dataset: "avmnist",
                        protocol: "audio rate",
                        rate: Some(rate),
                        seed,
                        variant,
                        mask,
                        subset,
                        accuracy: accuracy(seed, rate, v, mask),
                        f1: accuracy(seed, rate, v, mask) - 0.01,
                    });
                }
            }
        }
    }
    rows
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("metakd-class-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn accuracy_is_averaged_over_seeds_and_set_beside_the_published_numbers() {
    let dir = temp_dir("avmnist");
    let table = dir.join("results.parquet");
    write_rows(&table, &avmnist_rows());

    let read = read_tables(std::slice::from_ref(&table)).unwrap();
    let frame = classification_frame(&read.df, &table).unwrap();
    assert_eq!(frame.height(), 2 * 3 * 3);
    let cells = metakd_reports::classification::cells(&frame, &table).unwrap();
    for c in &cells {
        let v = VARIANTS.iter().position(|x| *x == c.variant).unwrap();
        let rate = c.rate.unwrap() / 100.0;
        let values: Vec<f64> = (0..3)
            .map(|s| 100.0 * accuracy(s, rate, v, c.subset_mask))
            .collect();
        let mean = values.iter().sum::<f64>() / 3.0;
        let std = (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((c.accuracy.mean - mean).abs() < 1e-9, "{c:?}");
        assert!((c.accuracy.std.unwrap() - std).abs() < 1e-9, "{c:?}");
        assert!((c.f1.mean - (mean - 1.0)).abs() < 1e-9, "{c:?}");
        assert_eq!(c.runs, 3);
    }

    let out = dir.join("report");
    let reports = write_reports(std::slice::from_ref(&table), &out).unwrap();
    assert!(reports.segmentation.is_none());
    let outcome = reports.classification.unwrap();
    assert_eq!(outcome.report, out.join("report.md"));
    let md = std::fs::read_to_string(&outcome.report).unwrap();
    assert!(md.contains("### AV-MNIST, audio rate"), "{md}");
    assert!(
        md.contains("| SMIL (published; ShaSpec (CVPR 2023) Table 3) | 92.89 | 93.11 |"),
        "{md}"
    );
    assert!(
        md.contains("| MetaKD (published; MetaKD (secondary)) | — | 94.22 |"),
        "{md}"
    );
    // MetaKD's margin at 5 %: over late fusion (the better baseline), 0.01 · 100 points.
    let mean_of = |v: usize| (0..3).map(|s| 100.0 * accuracy(s, 0.05, v, 3)).sum::<f64>() / 3.0;
    let line = format!(
        "- 5%: MetaKD {:.2}, late fusion {:.2} (+1.00 points)",
        mean_of(2),
        mean_of(1)
    );
    assert!(md.contains(&line), "{line}\n{md}");
    assert!(md.contains("only audio at test"), "{md}");
    assert!(md.contains("![AV-MNIST, audio rate"), "{md}");
    assert!(out.join("accuracy-by-rate-1.png").exists());
    assert!(out.join("classification.csv").exists());
    let margins = &outcome.summary.margins;
    assert_eq!(margins.len(), 2);
    assert_eq!(margins[0].baseline, "late fusion");
    assert!((margins[0].metakd - margins[0].baseline_accuracy - 1.0).abs() < 1e-9);
}

#[test]
fn modality_tables_without_rates_show_every_subset_and_their_average() {
    let dir = temp_dir("tables");
    let table = dir.join("results.parquet");
    let subsets = [(1u32, "genomic"), (2, "clinical"), (3, "genomic+clinical")];
    let mut rows = Vec::new();
    for seed in 0..2u64 {
        for (mask, subset) in subsets {
            rows.push(Row {
                run_id: format!("metakd-{seed}"),
                dataset: "ad-csf",
                protocol: "real missingness",
                rate: None,
                seed,
                variant: "MetaKD",
                mask,
                subset,
                accuracy: 0.5 + 0.1 * mask as f64 + 0.02 * seed as f64,
                f1: 0.4 + 0.1 * mask as f64,
            });
        }
    }
    write_rows(&table, &rows);
    let out = dir.join("report");
    let outcome = write_reports(std::slice::from_ref(&table), &out)
        .unwrap()
        .classification
        .unwrap();
    let md = std::fs::read_to_string(&outcome.report).unwrap();
    assert!(md.contains("AD CSF cohort (stand-in, not ADNI)"), "{md}");
    // Seeds score 60 and 62 on the genomic subset: 61 ± 1.41.
    assert!(
        md.contains("| genomic | 61.00 ± 1.41 | 50.00 ± 0.00 |"),
        "{md}"
    );
    // The average over the three subsets: accuracy (61 + 71 + 81) / 3, F1 (50 + 60 + 70) / 3.
    assert!(
        md.contains("| **average over subsets** | 71.00 | 60.00 |"),
        "{md}"
    );
    assert!(md.contains("| MetaKD | 62.83 | 44.64 |"), "{md}");
    assert!(md.contains("they are context, not a comparison"), "{md}");
}
