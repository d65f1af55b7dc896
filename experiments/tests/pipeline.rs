//! A short train → sweep → report run through the library, and its files.

use metakd_data::prepare::PrepareOptions;
use metakd_data::synth::{write_dataset, SynthConfig};
use metakd_experiments::config::RunConfig;
use metakd_experiments::files::{CONFIG_FILE, LOG_FILE, MODEL_FILE, SPLIT_FILE, SWEEP_FILE};
use metakd_experiments::subsets::Subset;
use metakd_experiments::{eval_labels, export, prepare, sweep, train};
use polars::prelude::*;

#[test]
fn short_run_trains_sweeps_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&SynthConfig::new(6, [24, 32, 32], 3), &data, || {}).unwrap();
    let shards = dir.path().join("shards");
    prepare(&data, &shards, &PrepareOptions::default(), false).unwrap();

    let mut cfg = RunConfig::default();
    cfg.data.shards = shards.clone();
    cfg.data.test_cases = 2;
    cfg.data.meta_val_cases = 1;
    cfg.train.iterations = 6;
    cfg.train.warmup_iterations = 2;
    cfg.train.crop = [16, 16, 16];
    cfg.train.checkpoint_every = 3;
    cfg.meta.every = 2;
    cfg.meta.every_warmup = 2;
    cfg.meta.samples = 1;
    let run = dir.path().join("run");
    let summary = train::train(&cfg, &run, &train::TrainOptions::default()).unwrap();
    assert_eq!(summary.iterations, 6);
    let saved: usize =
        candle_core::safetensors::load(run.join(MODEL_FILE), &candle_core::Device::Cpu)
            .unwrap()
            .iter()
            .filter(|(name, _)| name.as_str() != "importance.logits")
            .map(|(_, t)| t.elem_count())
            .sum();
    assert_eq!(summary.parameters, saved);
    assert!(saved > 10_000, "{saved}");
    assert!(summary.final_loss.is_finite());
    let omega_sum: f32 = summary.omega.iter().sum();
    assert!((omega_sum - 1.0).abs() < 1e-5);
    for file in [CONFIG_FILE, SPLIT_FILE, MODEL_FILE, LOG_FILE] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    assert_eq!(RunConfig::read(&run.join(CONFIG_FILE)).unwrap(), cfg);

    let table = run.join(SWEEP_FILE);
    let outcome = sweep::sweep(&run, &table, &sweep::SweepOptions::default(), false).unwrap();
    assert_eq!(outcome.plan.units.len(), 2, "one unit per test case");
    assert_eq!(outcome.evaluated, 2);
    let info = &outcome.infos[0];
    assert_eq!(outcome.infos.len(), 1);
    assert_eq!(info.cases.len(), 2);
    assert_eq!(info.importance, summary.omega);
    assert_eq!(
        (info.dataset.as_str(), info.protocol.as_str()),
        ("brats2020", "local")
    );
    assert_eq!(
        (info.variant.as_str(), info.seed),
        ("MetaKD", cfg.train.seed)
    );
    let df = ParquetReader::new(std::fs::File::open(&table).unwrap())
        .finish()
        .unwrap();
    assert_eq!(df.height(), 2 * 15 * 3, "case × subset × region");
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, metakd_reports::sweep_table::COLUMNS.to_vec());
    let masks = df.column("subset_mask").unwrap().u32().unwrap().clone();
    let mut distinct: Vec<u32> = masks.into_no_null_iter().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct, (1..16).collect::<Vec<u32>>());
    let dice = df.column("dice").unwrap().f64().unwrap().clone();
    assert!(dice.into_no_null_iter().all(|d| (0.0..=1.0).contains(&d)));
    let postprocessed = df.column("postprocessed").unwrap().bool().unwrap();
    assert_eq!(
        postprocessed.sum(),
        Some(0),
        "post-processing is off by default"
    );

    // A second sweep finds every unit finished and writes the same table.
    let again = sweep::sweep(&run, &table, &sweep::SweepOptions::default(), false).unwrap();
    assert_eq!((again.evaluated, again.already_done), (0, 2));
    let reread = ParquetReader::new(std::fs::File::open(&table).unwrap())
        .finish()
        .unwrap();
    assert!(reread.equals_missing(&df));

    let log = ParquetReader::new(std::fs::File::open(run.join(LOG_FILE)).unwrap())
        .finish()
        .unwrap();
    assert_eq!(log.height(), 6);
    let subsets = log.column("subset").unwrap().u32().unwrap().clone();
    assert!(
        subsets.into_no_null_iter().take(2).all(|s| s == 15),
        "warm-up uses all modalities"
    );

    let outcome =
        metakd_reports::write_report(std::slice::from_ref(&table), &dir.path().join("report"))
            .unwrap();
    let text = std::fs::read_to_string(&outcome.report).unwrap();
    assert!(text.contains(
        "| FLAIR | T1 | T1ce | T2 | Dice ET | Dice TC | Dice WT | HD95 ET | HD95 TC | HD95 WT |"
    ));
    assert!(text.contains("| ● | ● | ● | ● |"));
    assert!(text.contains("| ○ | ○ | ● | ○ |"));
    assert!(text.contains("Learned importance weights"));
    assert!(text.contains("[train]"));
    assert_eq!(
        text.matches("\n| ●").count() + text.matches("\n| ○").count(),
        15
    );
    assert_eq!(outcome.summary.cases, 2);
    for file in ["summary.json", "subsets.csv", "averages.csv"] {
        assert!(dir.path().join("report").join(file).is_file(), "{file}");
    }

    // The full-modality predictions exported as label maps in the original grid and scored
    // against the release's own label files give the sweep's numbers for that subset.
    let predictions = dir.path().join("predictions");
    let written =
        export::predict_run(&run, None, Subset::full(4), &predictions, false, false).unwrap();
    assert_eq!(written.written.len(), 2);
    assert!(written.skipped.is_empty());
    let scored = eval_labels::evaluate_labels(&predictions, &data, |_, _| {}).unwrap();
    assert_eq!(scored.cases.len(), 2, "{scored:?}");
    assert!(scored.skipped.is_empty(), "{:?}", scored.skipped);
    assert_eq!(scored.missing_predictions.len(), 4, "the 4 training cases");
    for case in &scored.cases {
        for (region, metrics) in &case.regions {
            let row = df
                .clone()
                .lazy()
                .filter(
                    col("subset_mask")
                        .eq(lit(15u32))
                        .and(col("case").eq(lit(case.id.clone())))
                        .and(col("region").eq(lit(region.clone()))),
                )
                .collect()
                .unwrap();
            assert_eq!(row.height(), 1);
            let value = |metric: &str| row.column(metric).unwrap().f64().unwrap().get(0).unwrap();
            let close = |a: f64, b: f64, what: &str| {
                assert!(
                    (a - b).abs() < 1e-9,
                    "{} {region} {what}: {a} vs {b}",
                    case.id
                )
            };
            close(metrics.dice, value("dice"), "Dice");
            close(metrics.hd95, value("hd95"), "HD95");
            close(metrics.sensitivity, value("sensitivity"), "sensitivity");
            close(metrics.specificity, value("specificity"), "specificity");
        }
    }

    // The reference regions written through the same path land exactly on the label files.
    let references = dir.path().join("references");
    let shard_set = metakd_data::shards::ShardSet::open(&shards).unwrap();
    for case in shard_set.read_cases(|_| true).unwrap() {
        export::write_label_map(&references, &case, &case.regions).unwrap();
    }
    let exact = eval_labels::evaluate_labels(&references, &data, |_, _| {}).unwrap();
    assert_eq!(exact.cases.len(), 6);
    for case in &exact.cases {
        for metrics in case.regions.values() {
            assert_eq!((metrics.dice, metrics.hd95), (1.0, 0.0), "{}", case.id);
        }
    }
}
