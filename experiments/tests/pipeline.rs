//! A short train → sweep → report run through the library, and its files.

use metakd_data::prepare::PrepareOptions;
use metakd_data::synth::{write_dataset, SynthConfig};
use metakd_experiments::eval::{label_files, predict, sweep};
use metakd_experiments::files::{CONFIG_FILE, LOG_FILE, MODEL_FILE, SPLIT_FILE, SWEEP_FILE};
use metakd_experiments::run::config::RunConfig;
use metakd_experiments::{prepare, train};
use metakd_model::method::Subset;
use polars::prelude::*;

#[test]
fn short_run_trains_sweeps_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&SynthConfig::new(6, [24, 32, 32], 3), &data, || {}).unwrap();
    let shards = dir.path().join("shards");
    prepare(&data, &shards, &PrepareOptions::default(), false, |_| {}).unwrap();

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
    assert_eq!(names, metakd_reports::results::COLUMNS.to_vec());
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

    cluster_units_give_the_same_rows(&run, &df, &dir.path().join("units-report"));

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
    for file in [
        "summary.json",
        "subsets.csv",
        "averages.csv",
        "dice-heatmap-1.png",
        "omega.svg",
        "losses.png",
        "case-slices.png",
    ] {
        assert!(dir.path().join("report").join(file).is_file(), "{file}");
    }
    assert!(
        outcome.figure_problems.is_empty(),
        "{:?}",
        outcome.figure_problems
    );
    // The slices' SVG embeds the images as PNG rather than drawing a rectangle per pixel.
    let svg = std::fs::metadata(dir.path().join("report/case-slices.svg")).unwrap();
    assert!(svg.len() < 1_000_000, "{} bytes", svg.len());

    // The full-modality predictions exported as label maps in the original grid and scored
    // against the release's own label files give the sweep's numbers for that subset.
    let predictions = dir.path().join("predictions");
    let written =
        predict::predict_run(&run, None, Subset::full(4), &predictions, false, false).unwrap();
    assert_eq!(written.written.len(), 2);
    assert!(written.skipped.is_empty());
    let scored = label_files::evaluate_labels(&predictions, &data, |_, _| {}).unwrap();
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
        predict::write_label_map(&references, &case, &case.regions).unwrap();
    }
    let exact = label_files::evaluate_labels(&references, &data, |_, _| {}).unwrap();
    assert_eq!(exact.cases.len(), 6);
    for case in &exact.cases {
        for metrics in case.regions.values() {
            assert_eq!((metrics.dice, metrics.hd95), (1.0, 0.0), "{}", case.id);
        }
    }
}

/// Runs `metakd` with `env` set, returning whether it succeeded and its standard output.
fn metakd(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_metakd"));
    command
        .args(args)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() || !stderr.is_empty() || !stdout.is_empty());
    (out.status.success(), format!("{stdout}{stderr}"))
}

/// The sweep of `run` cut into 3 subset groups × 1 case shard, run unit by unit as array tasks
/// (Slurm's and Kubernetes' index variables, `--task-index`), merged by `metakd report`, gives
/// the rows of the one-unit-per-case sweep `whole`; `metakd regress` finds nothing moved.
fn cluster_units_give_the_same_rows(
    run: &std::path::Path,
    whole: &DataFrame,
    report: &std::path::Path,
) {
    let run_arg = run.to_str().unwrap();
    let table = run.join("grouped.parquet");
    let table_arg = table.to_str().unwrap();
    let sweep = ["sweep", "--run", run_arg, "--out", table_arg];
    let cut = [&sweep[..], &["--subset-groups", "3", "--case-shards", "1"]].concat();
    let (ok, out) = metakd(&[&cut[..], &["--plan"]].concat(), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("3 units"), "{out}");
    let units = run.join("grouped-units");
    assert!(units.join("plan.json").is_file());

    // Other cuts are refused while the plan stands.
    let (ok, out) = metakd(
        &[&sweep[..], &["--case-shards", "2", "--plan"]].concat(),
        &[],
    );
    assert!(!ok && out.contains("different plan"), "{out}");

    let (ok, out) = metakd(&sweep, &[("JOB_COMPLETION_INDEX", "1")]);
    assert!(ok, "{out}");
    let done = |i: usize| units.join(format!("unit-{i:05}.parquet")).is_file();
    assert_eq!([done(0), done(1), done(2)], [false, true, false]);
    // The merged table needs every unit.
    let (ok, out) = metakd(
        &[
            "report",
            "--sweep",
            units.join("plan.json").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok, "{out}");
    let (ok, out) = metakd(&sweep, &[("SLURM_ARRAY_TASK_ID", "0")]);
    assert!(ok, "{out}");
    let (ok, out) = metakd(&[&sweep[..], &["--task-index", "2"]].concat(), &[]);
    assert!(ok, "{out}");
    let (ok, out) = metakd(&[&sweep[..], &["--task-index", "2"]].concat(), &[]);
    assert!(ok && out.contains("already finished"), "{out}");
    let (ok, out) = metakd(&[&sweep[..], &["--task-index", "3"]].concat(), &[]);
    assert!(!ok && out.contains("units 0 to 2"), "{out}");

    // `metakd report` merges the unit folder.
    let (ok, out) = metakd(
        &[
            "report",
            "--sweep",
            units.to_str().unwrap(),
            "--out",
            report.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{out}");
    let sorted = |df: &DataFrame| {
        df.sort(
            ["case", "subset_mask", "region"],
            SortMultipleOptions::default(),
        )
        .unwrap()
    };
    let merged = metakd_reports::results::read_tables(std::slice::from_ref(&units)).unwrap();
    assert!(sorted(&merged.df).equals_missing(&sorted(whole)));

    // Nothing moved between the unit-wise and the case-wise sweep.
    let subsets = report.join("subsets.csv");
    let (ok, out) = metakd(
        &[
            "regress",
            "--baseline",
            subsets.to_str().unwrap(),
            "--results",
            run.join(SWEEP_FILE).to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok && out.contains("match the baseline"), "{out}");
    // A baseline that differs is reported, with a failing status.
    let text = std::fs::read_to_string(&subsets).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut fields: Vec<String> = lines[1].split(',').map(String::from).collect();
    let dice: f64 = fields[8].parse().unwrap();
    fields[8] = format!("{}", dice + 0.5);
    lines[1] = fields.join(",");
    let shifted = report.join("shifted.csv");
    std::fs::write(&shifted, lines.join("\n")).unwrap();
    let (ok, out) = metakd(
        &[
            "regress",
            "--baseline",
            shifted.to_str().unwrap(),
            "--results",
            units.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok && out.contains("MOVED dice -0.5000"), "{out}");

    // Units of a checkpoint that has since changed are not taken for current ones.
    let other = run.join("other.safetensors");
    std::fs::copy(run.join(MODEL_FILE), &other).unwrap();
    let other_sweep = [
        "sweep",
        "--run",
        run_arg,
        "--out",
        run.join("other.parquet").to_str().unwrap(),
        "--checkpoint",
        "other.safetensors",
        "--plan",
    ]
    .map(String::from);
    let other_sweep: Vec<&str> = other_sweep.iter().map(String::as_str).collect();
    let (ok, out) = metakd(&other_sweep, &[]);
    assert!(ok && out.contains("2 units"), "{out}");
    let mut bytes = std::fs::read(&other).unwrap();
    bytes.push(0);
    std::fs::write(&other, bytes).unwrap();
    let (ok, out) = metakd(&other_sweep, &[]);
    assert!(!ok && out.contains("a checkpoint changed"), "{out}");
}
