//! The shipped configurations, and `tools/reproduce.sh` (behind `just reproduce-brats20XX`) run
//! end to end on a small synthetic BraTS2018 release with three RFNet-style folds: prepare,
//! split, both training stages per fold, sweeps and one report over the folds, resumable.

use std::path::{Path, PathBuf};
use std::process::Command;

use metakd_experiments::batches::sampler::CropRule;
use metakd_experiments::run::config::{EvalWindow, RunConfig};
use metakd_experiments::train::schedule::LrSchedule;
use metakd_model::losses::DiceReduction;
use metakd_model::method::MetaModalities;
use metakd_model::nets::Preset;

fn config(name: &str) -> RunConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs")
        .join(name);
    RunConfig::read(&path).unwrap()
}

#[test]
fn the_paper_configurations_hold_the_paper_settings() {
    for release in ["brats2018", "brats2019", "brats2020"] {
        let cfg = config(&format!("{release}.toml"));
        assert_eq!(cfg.model.preset, Preset::Reference, "{release}");
        let t = &cfg.train;
        assert_eq!((t.iterations, t.warmup_iterations), (115_000, 80_000));
        assert_eq!((t.batch_size, t.crop), (2, [80, 160, 160]));
        assert_eq!(
            (t.lr, t.momentum, t.weight_decay, t.kd_weight),
            (1e-2, 0.99, 0.0, 0.1)
        );
        assert_eq!(t.lr_schedule, LrSchedule::PerStage, "{release}");
        let m = &cfg.meta;
        assert_eq!((m.every_warmup, m.every, m.samples), (100, 500, 20));
        assert_eq!(cfg.data.meta_val_cases, 5, "{release}");
        assert_eq!((m.lr, m.weight_decay), (1e-2, 5e-4));
        assert!(
            cfg.eval.postprocess,
            "post-processed results are reported beside the raw ones"
        );
        assert!(!cfg.model.has_classifier_bias(), "{release}");
    }
    let cpu = config("brats-cpu.toml");
    assert_eq!(cpu.model.preset, Preset::Small);
    assert_eq!(cpu.train.crop, [64, 64, 64]);
    for (name, cfg) in ["brats2018", "brats2019", "brats2020", "brats-cpu"]
        .map(|name| (name, config(&format!("{name}.toml"))))
    {
        assert_eq!(reference_recipe(&cfg), ReferenceRecipe::all(true), "{name}");
    }
    // The demo keeps its own settings, as its committed CI baseline was trained.
    let demo = RunConfig::from_toml(metakd_experiments::demo::DEMO_CONFIG, "demo").unwrap();
    assert_eq!(reference_recipe(&demo), ReferenceRecipe::all(false));
}

/// Which of the reference recipe's switches a configuration sets to the reference's behaviour.
#[derive(Debug, PartialEq)]
struct ReferenceRecipe {
    schedule_per_stage: bool,
    per_sample_dice: bool,
    random_meta_subsets: bool,
    augmented_meta_crops: bool,
    whole_volume_crops: bool,
    whole_volume_window: bool,
}

impl ReferenceRecipe {
    fn all(value: bool) -> Self {
        Self {
            schedule_per_stage: value,
            per_sample_dice: value,
            random_meta_subsets: value,
            augmented_meta_crops: value,
            whole_volume_crops: value,
            whole_volume_window: value,
        }
    }
}

fn reference_recipe(cfg: &RunConfig) -> ReferenceRecipe {
    ReferenceRecipe {
        schedule_per_stage: cfg.train.lr_schedule == LrSchedule::PerStage,
        per_sample_dice: cfg.train.dice == DiceReduction::PerSample,
        random_meta_subsets: cfg.meta.stage2_modalities == MetaModalities::Random,
        augmented_meta_crops: cfg.meta.augment,
        whole_volume_crops: cfg.train.crop_rule == CropRule::WholeVolume,
        whole_volume_window: cfg.eval.window == EvalWindow::WholeVolume,
    }
}

fn write(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// A synthetic training release of `cases` cases in `dir/release`.
fn synthetic_release(dir: &Path, release: &str, cases: usize) -> PathBuf {
    let data = dir.join("release");
    let synth = Command::new(env!("CARGO_BIN_EXE_metakd"))
        .args(["synth", "brats", "--release", release, "--cases"])
        .arg(cases.to_string())
        .args(["--shape", "24,32,32", "--seed", "4", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(synth.status.success(), "{synth:?}");
    data
}

/// The CPU configuration shrunk to seconds: a narrow network, 16³ crops, 4 iterations.
fn tiny_config(dir: &Path) -> PathBuf {
    let mut cfg = config("brats-cpu.toml");
    cfg.model.small.widths = vec![4, 8, 16];
    cfg.train.crop = [16, 16, 16];
    cfg.train.iterations = 4;
    cfg.train.warmup_iterations = 2;
    cfg.train.checkpoint_every = 2;
    cfg.meta.every = 2;
    cfg.meta.every_warmup = 2;
    cfg.meta.samples = 1;
    let path = dir.join("tiny.toml");
    std::fs::write(&path, cfg.to_toml()).unwrap();
    path
}

/// `tools/reproduce.sh RELEASE ARGS…` with the test's binary; its output, stdout then stderr.
fn reproduce(release: &str, args: &[String]) -> String {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/reproduce.sh"))
        .arg(release)
        .args(args)
        .env("METAKD", env!("CARGO_BIN_EXE_metakd"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

fn assert_every_fold_trained(work: &Path) {
    for fold in 1..=3 {
        for run in [format!("fold{fold}-stage1"), format!("fold{fold}")] {
            let summary = work.join("runs").join(&run).join("train_summary.json");
            assert!(summary.is_file(), "{run}");
        }
    }
}

#[test]
fn reproduce_runs_every_stage_for_every_fold_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_release(dir.path(), "brats2018", 9);
    let mut ids: Vec<String> = ["HGG", "LGG"]
        .iter()
        .flat_map(|grade| std::fs::read_dir(data.join(grade)).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 9);

    // Three folds: 2 test cases, 1 validation case, 6 training cases each (as RFNet's lists).
    let lists = dir.path().join("lists");
    std::fs::create_dir_all(&lists).unwrap();
    for fold in 1..=3usize {
        let test: Vec<String> = ids.iter().skip(2 * (fold - 1)).take(2).cloned().collect();
        let val = vec![ids[8].clone()];
        let train: Vec<String> = ids
            .iter()
            .filter(|id| !test.contains(id) && !val.contains(id))
            .map(|id| format!("HGG_{id}"))
            .collect();
        write(&lists.join(format!("train{fold}.txt")), &train);
        write(&lists.join(format!("val{fold}.txt")), &val);
        write(&lists.join(format!("test{fold}.txt")), &test);
    }

    let config_path = tiny_config(dir.path());
    let work = dir.path().join("work");
    let args = [
        format!("DATA={}", data.display()),
        format!("CONFIG={}", config_path.display()),
        format!("SPLITS={}", lists.display()),
        format!("WORK={}", work.display()),
    ];
    reproduce("brats2018", &args);
    assert_every_fold_trained(&work);
    for fold in 1..=3 {
        let split = std::fs::read_to_string(work.join(format!("splits/split{fold}.json"))).unwrap();
        assert!(
            split.contains(&ids[2 * (fold - 1)]),
            "fold {fold}'s test cases"
        );
    }
    let report = std::fs::read_to_string(work.join("report/report.md")).unwrap();
    assert!(
        report.contains("## MetaKD on brats2018, protocol B"),
        "{report}"
    );
    assert!(report.contains("mean ± std over 3 runs"));
    assert!(report.contains("## After post-processing"));
    // BraTS2018's protocol-B numbers in the comparable table, protocol A's apart.
    let (comparable, others) = report.split_once("Scored under other").unwrap();
    assert!(comparable.contains("| DeMoSeg | 2024 | 64.90"));
    assert!(others.contains("| ShaSpec | CVPR 2023 | 61.58"));

    // A second call finds every stage done and rewrites the same report.
    let again = reproduce("brats2018", &args);
    assert_eq!(again.matches("finished earlier").count(), 6, "{again}");
    assert_eq!(
        std::fs::read_to_string(work.join("report/report.md")).unwrap(),
        report
    );
}

/// The headline command as typed, `just reproduce-brats2020 DATA=…` (no `SPLITS`): three seeded
/// Protocol B folds drawn from the release itself.
#[test]
fn reproduce_without_split_lists_draws_three_protocol_b_folds() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_release(dir.path(), "brats2020", 9);
    let config_path = tiny_config(dir.path());
    let work = dir.path().join("work");
    let out = reproduce(
        "brats2020",
        &[
            format!("DATA={}", data.display()),
            format!("CONFIG={}", config_path.display()),
            format!("WORK={}", work.display()),
        ],
    );
    assert!(
        !out.contains('\u{1b}'),
        "colour codes in piped output:\n{out}"
    );
    let mut test_sets = Vec::new();
    for fold in 1..=3 {
        let file = work.join(format!("splits/split{fold}.json"));
        let split = metakd_experiments::run::splits::Splits::read(&file).unwrap();
        assert_eq!(split.protocol, format!("protocol-b split {fold} (seed 0)"));
        // 9 cases: 2 test, 1 validation, 6 training cases of which 5 meta-validate.
        assert_eq!(
            (
                split.train.len(),
                split.meta_val.len(),
                split.val.len(),
                split.test.len()
            ),
            (1, 5, 1, 2),
            "{}",
            file.display()
        );
        test_sets.push(split.test);
        // A split leaving one training case is warned about, once per fold.
        assert!(
            out.contains(&format!(
                "split{fold}.json: the meta-validation set takes 5 of the 6"
            )),
            "{out}"
        );
    }
    assert!(test_sets[0] != test_sets[1] && test_sets[1] != test_sets[2]);
    assert_every_fold_trained(&work);
    let report = std::fs::read_to_string(work.join("report/report.md")).unwrap();
    assert!(
        report.contains("## MetaKD on brats2020, protocol B"),
        "{report}"
    );
    assert!(report.contains("mean ± std over 3 runs"), "{report}");
}
