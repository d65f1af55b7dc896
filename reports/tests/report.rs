//! Reports from hand-made sweep tables whose aggregates are known: per-run means over cases,
//! mean ± sample std over runs, the comparison with published numbers by data set and
//! protocol, the ablation table, post-processed results apart, bad inputs refused, and the
//! regression check against a baseline.

use std::path::{Path, PathBuf};

use metakd_reports::aggregate::{read_subsets_csv, REGIONS};
use metakd_reports::regress::{regress_files, Tolerances};
use metakd_reports::results::{write_sidecar, write_table, RunInfo};
use metakd_reports::{write_report, ReportError};
use polars::prelude::*;

/// What one hand-made run is.
struct Run<'a> {
    id: &'a str,
    dataset: &'a str,
    protocol: &'a str,
    fold: Option<u32>,
    variant: &'a str,
    postprocess: bool,
}

/// The Dice of a case, subset and region: a made-up value that differs between all of them.
fn dice(run: usize, case: usize, mask: u32, region: usize, postprocessed: bool) -> f64 {
    let base = 0.3 + 0.04 * mask as f64 / 15.0 + 0.1 * region as f64 + 0.01 * case as f64;
    base + 0.05 * run as f64 + if postprocessed { 0.02 } else { 0.0 }
}

fn hd95(run: usize, case: usize, mask: u32, region: usize) -> f64 {
    10.0 - 0.3 * mask as f64 + region as f64 + 0.5 * case as f64 + run as f64
}

const CASES: usize = 3;

/// Writes the table of run number `k` to `path`.
fn write_run(path: &Path, k: usize, run: &Run<'_>) {
    let (mut ids, mut masks, mut names, mut regions, mut pp, mut dices, mut hds) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for case in 0..CASES {
        for mask in 1..16u32 {
            for (r, region) in REGIONS.iter().enumerate() {
                for postprocessed in [false, true] {
                    if postprocessed && !run.postprocess {
                        continue;
                    }
                    ids.push(format!("case{case}"));
                    masks.push(mask);
                    names.push(format!("subset{mask}"));
                    regions.push(region.to_string());
                    pp.push(postprocessed);
                    dices.push(dice(k, case, mask, r, postprocessed));
                    hds.push(hd95(k, case, mask, r));
                }
            }
        }
    }
    let n = ids.len();
    let text = |s: &str| vec![s.to_owned(); n];
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new("run_id".into(), text(run.id)),
            Column::new("dataset".into(), text(run.dataset)),
            Column::new("protocol".into(), text(run.protocol)),
            Column::new("fold".into(), vec![run.fold; n]),
            Column::new("seed".into(), vec![0u64; n]),
            Column::new("variant".into(), text(run.variant)),
            Column::new("checkpoint".into(), text("model.safetensors")),
            Column::new("case".into(), ids),
            Column::new("subset_mask".into(), masks),
            Column::new("subset".into(), names),
            Column::new("region".into(), regions),
            Column::new("postprocessed".into(), pp),
            Column::new("dice".into(), dices),
            Column::new("hd95".into(), hds),
            Column::new("sensitivity".into(), vec![1.0; n]),
            Column::new("specificity".into(), vec![1.0; n]),
        ],
    )
    .unwrap();
    write_table(&mut df, path).unwrap();
    let info = RunInfo {
        run_id: run.id.into(),
        run_dir: PathBuf::from(run.id),
        dataset: run.dataset.into(),
        protocol: run.protocol.into(),
        fold: run.fold,
        seed: 0,
        variant: run.variant.into(),
        checkpoint: "model.safetensors".into(),
        modalities: ["FLAIR", "T1", "T1ce", "T2"].map(String::from).to_vec(),
        importance_logits: vec![0.0; 4],
        importance: vec![0.25; 4],
        config_toml: "[train]\n".into(),
        subsets: (1..16).collect(),
        cases: (0..CASES).map(|c| format!("case{c}")).collect(),
        skipped: Vec::new(),
        slices: None,
    };
    write_sidecar(path, &[info]).unwrap();
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn sample_std(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

fn metakd_fold(id: &str, fold: u32) -> Run<'_> {
    Run {
        id,
        dataset: "brats2020",
        protocol: "B",
        fold: Some(fold),
        variant: "MetaKD",
        postprocess: fold == 1,
    }
}

#[test]
fn folds_give_mean_and_std_and_sit_beside_published_numbers_of_their_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let folds = [metakd_fold("fold1", 1), metakd_fold("fold2", 2)];
    let no_kd = Run {
        id: "nokd",
        dataset: "brats2020",
        protocol: "B",
        fold: Some(1),
        variant: "no KD",
        postprocess: false,
    };
    let mut inputs = Vec::new();
    for (k, run) in folds.iter().chain([&no_kd]).enumerate() {
        let path = dir.path().join(format!("{}.parquet", run.id));
        write_run(&path, k, run);
        inputs.push(path);
    }
    let out = dir.path().join("report");
    let outcome = write_report(&inputs, &out).unwrap();

    // Per run: the mean over cases; over the two folds: mean and sample std.
    let per_run = |k: usize, mask: u32, r: usize| {
        mean(
            &(0..CASES)
                .map(|c| dice(k, c, mask, r, false))
                .collect::<Vec<_>>(),
        )
    };
    let metakd = outcome
        .tables
        .iter()
        .find(|t| t.group.variant == "MetaKD" && !t.group.postprocessed)
        .unwrap();
    assert_eq!(metakd.runs, 2);
    assert_eq!(metakd.rows.len(), 15);
    assert_eq!(metakd.rows[0].mask, 1, "single modalities first");
    assert_eq!(metakd.rows[14].mask, 15, "all modalities last");
    for row in &metakd.rows {
        for r in 0..3 {
            let runs = [per_run(0, row.mask, r), per_run(1, row.mask, r)];
            let s = row.stats.dice[r];
            assert!((s.mean - mean(&runs)).abs() < 1e-12);
            assert!((s.std.unwrap() - sample_std(&runs)).abs() < 1e-12);
        }
    }
    // The average row: per run over the 15 subsets, then over runs.
    for r in 0..3 {
        let runs: Vec<f64> = (0..2)
            .map(|k| mean(&(1..16).map(|m| per_run(k, m, r)).collect::<Vec<_>>()))
            .collect();
        assert!((metakd.average.dice[r].mean - mean(&runs)).abs() < 1e-12);
        assert!((metakd.average.dice[r].std.unwrap() - sample_std(&runs)).abs() < 1e-12);
        let hd: Vec<f64> = (0..2)
            .map(|k| {
                mean(
                    &(1..16)
                        .flat_map(|m| (0..CASES).map(move |c| hd95(k, c, m, r)))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        assert!((metakd.average.hd95[r].mean - mean(&hd)).abs() < 1e-9);
    }

    let report = std::fs::read_to_string(&outcome.report).unwrap();
    let et = 100.0 * metakd.average.dice[0].mean;
    let et_std = 100.0 * metakd.average.dice[0].std.unwrap();
    assert!(
        report.contains(&format!("**{et:.2} ± {et_std:.2}**")),
        "{report}"
    );
    // Published BraTS2020 numbers are all protocol B: RFNet sits in the comparable table, and
    // no BraTS2018 method appears.
    assert!(report
        .contains("| RFNet | ICCV 2021 | 61.47 | 78.23 | 86.98 | B | RFNet repository README |"));
    assert!(!report.contains("ShaSpec"));
    assert!(report.contains("**MetaKD (this project)**"));
    // Post-processed results of fold 1 appear apart, once.
    assert_eq!(report.matches("## After post-processing").count(), 1);
    // The ablation: no KD beside MetaKD, with its difference in average Dice.
    assert!(report.contains("### Ablations on brats2020, protocol B"));
    let no_kd_table = outcome
        .tables
        .iter()
        .find(|t| t.group.variant == "no KD")
        .unwrap();
    let delta = 100.0 * (no_kd_table.average.dice[1].mean - metakd.average.dice[1].mean);
    assert!(report.contains(&format!("{delta:+.2}")), "Δ TC {delta:+.2}");

    // The CSV tables say the same.
    let subsets = read_subsets_csv(&out.join("subsets.csv")).unwrap();
    assert_eq!(
        subsets.height(),
        15 * 3 * 3,
        "MetaKD, MetaKD post-processed, no KD"
    );
    let ablation = CsvReadOptions::default()
        .try_into_reader_with_file_path(Some(out.join("ablation.csv")))
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(ablation.height(), 2);
    let comparison = CsvReadOptions::default()
        .try_into_reader_with_file_path(Some(out.join("comparison.csv")))
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(
        comparison.height(),
        7 + 1,
        "seven published BraTS2020 rows and ours"
    );
    // Figures: a heatmap per table as predicted, PNG and SVG; the hand-made runs have no
    // training log, which the report names instead of failing.
    for stem in ["dice-heatmap-1", "dice-heatmap-2"] {
        let png = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("FLAIR + T1ce"));
        assert!(report.contains(&format!("]({stem}.png)")));
    }
    assert!(
        report.contains("- Not drawn: Training curves of `fold1`"),
        "{report}"
    );
    assert_eq!(outcome.figure_problems.len(), 1);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["variant"], "MetaKD");
    assert_eq!(summary["runs"], 2);
}

#[test]
fn other_protocols_are_listed_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.parquet");
    write_run(
        &path,
        0,
        &Run {
            id: "a",
            dataset: "BraTS2018",
            protocol: "A",
            fold: None,
            variant: "MetaKD",
            postprocess: false,
        },
    );
    let outcome = write_report(&[path], &dir.path().join("report")).unwrap();
    let report = std::fs::read_to_string(&outcome.report).unwrap();
    let (comparable, others) = report
        .split_once("Scored under other or unstated protocols")
        .expect("a table of other protocols");
    assert!(comparable.contains("| ShaSpec | CVPR 2023 | 61.58"));
    assert!(
        comparable.contains("| SimMLM |"),
        "A (secondary) is protocol A"
    );
    assert!(!comparable.contains("| RFNet |"));
    assert!(others.contains("| RFNet | ICCV 2021 | 57.12"));
    assert!(
        others.contains("| HeMIS |"),
        "as quoted by ShaSpec: protocol unstated"
    );
}

#[test]
fn a_case_in_two_inputs_and_a_table_without_its_columns_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.parquet");
    write_run(&a, 0, &metakd_fold("fold1", 1));
    let copy = dir.path().join("copy.parquet");
    std::fs::copy(&a, &copy).unwrap();
    std::fs::copy(dir.path().join("a.json"), dir.path().join("copy.json")).unwrap();
    let err = write_report(&[a.clone(), copy], &dir.path().join("r")).unwrap_err();
    assert!(
        err.to_string().contains("is also in") && err.to_string().contains("a.parquet"),
        "{err}"
    );

    let bad = dir.path().join("bad.parquet");
    let mut df = DataFrame::new(1, vec![Column::new("case".into(), vec!["x"])]).unwrap();
    write_table(&mut df, &bad).unwrap();
    std::fs::copy(dir.path().join("a.json"), dir.path().join("bad.json")).unwrap();
    match write_report(&[bad], &dir.path().join("r")) {
        Err(ReportError::BadTable { path, problem }) => {
            assert!(path.ends_with("bad.parquet"));
            assert!(problem.contains("run_id"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn regress_lists_what_moved_beyond_the_tolerances() {
    let dir = tempfile::tempdir().unwrap();
    let baseline_table = dir.path().join("baseline.parquet");
    write_run(&baseline_table, 0, &metakd_fold("fold1", 1));
    let out = dir.path().join("report");
    write_report(std::slice::from_ref(&baseline_table), &out).unwrap();
    let baseline = out.join("subsets.csv");
    let tolerances = Tolerances::default();

    // The table against the report made from it: nothing moved.
    let same = regress_files(&baseline, std::slice::from_ref(&baseline_table), tolerances).unwrap();
    assert!(same.passed(), "{same:?}");
    assert_eq!(
        same.compared,
        15 * 3 * 2 * 2,
        "subsets × regions × (raw, post-processed) × metrics"
    );

    // Run number 1 of `write_run`: Dice +0.05 and HD95 +1 mm everywhere; no post-processing.
    let moved_table = dir.path().join("moved.parquet");
    let mut run = metakd_fold("fold1", 1);
    run.postprocess = false;
    write_run(&moved_table, 1, &run);
    let moved = regress_files(&baseline, &[moved_table], tolerances).unwrap();
    assert!(!moved.passed());
    assert_eq!(moved.moved.len(), 15 * 3, "every raw Dice, no HD95");
    assert!(moved
        .moved
        .iter()
        .all(|c| c.metric == "dice" && (c.delta() - 0.05).abs() < 1e-9));
    assert_eq!(moved.missing.len(), 15 * 3, "the post-processed rows");
    assert!(moved.missing[0].contains("post-processed"));
    assert!(moved.unexpected.is_empty());
    let hd = moved
        .largest_within
        .iter()
        .find(|c| c.metric == "hd95")
        .unwrap();
    assert!((hd.delta() - 1.0).abs() < 1e-9);

    // Wider tolerances accept the same change.
    let loose = Tolerances {
        dice: 0.06,
        hd95: 2.0,
    };
    let moved_table = dir.path().join("moved.parquet");
    let accepted = regress_files(&baseline, &[moved_table], loose).unwrap();
    assert!(accepted.moved.is_empty());
}
