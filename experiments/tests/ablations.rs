//! The ablations reports set beside MetaKD: without distillation (`train.kd = false`) and without
//! meta-learning (`meta.enabled = false`, uniform ω), and the method itself (with the `direct` and
//! the `lookahead` meta rule) for contrast.

mod common;

use metakd_experiments::files::LOG_FILE;
use metakd_experiments::run::config::RunConfig;
use metakd_experiments::train;
use metakd_model::method::MetaRule;
use polars::prelude::*;

fn log_of(cfg: &RunConfig, run: &std::path::Path) -> DataFrame {
    train::train(cfg, run, &train::TrainOptions::default()).unwrap();
    ParquetReader::new(std::fs::File::open(run.join(LOG_FILE)).unwrap())
        .finish()
        .unwrap()
}

fn values(df: &DataFrame, name: &str) -> Vec<f64> {
    df.column(name)
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect()
}

#[test]
fn kd_off_and_meta_off_run_and_do_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let shards = common::synthetic_shards(dir.path(), 5, 6);
    let mut cfg = RunConfig::default();
    cfg.data.shards = shards;
    cfg.data.test_cases = 1;
    cfg.data.meta_val_cases = 1;
    cfg.model.small.widths = vec![4, 8, 8, 8];
    cfg.train.iterations = 8;
    cfg.train.warmup_iterations = 2;
    cfg.train.crop = [16, 16, 16];
    cfg.meta.every = 2;
    cfg.meta.every_warmup = 2;
    cfg.meta.samples = 1;

    let full = log_of(&cfg, &dir.path().join("metakd"));
    assert!(values(&full, "kd_loss")[2..].iter().any(|&k| k > 0.0));
    let omega = values(&full, "omega_t1ce");
    assert_ne!(omega.first(), omega.last(), "meta-learning moves ω");

    let mut no_kd = cfg.clone();
    no_kd.train.kd = false;
    let log = log_of(&no_kd, &dir.path().join("no-kd"));
    assert!(values(&log, "kd_loss").iter().all(|&k| k == 0.0));
    let (d, b) = (values(&log, "dice_loss"), values(&log, "bce_loss"));
    for ((loss, d), b) in values(&log, "loss").iter().zip(&d).zip(&b) {
        assert!(
            (loss - (d + b)).abs() < 1e-5 * loss.abs(),
            "{loss} vs {d} + {b}"
        );
    }

    let mut lookahead = cfg.clone();
    lookahead.meta.rule = MetaRule::Lookahead;
    let log = log_of(&lookahead, &dir.path().join("lookahead"));
    let omega = values(&log, "omega_t1ce");
    assert_ne!(
        omega.first(),
        omega.last(),
        "the lookahead rule moves ω too"
    );
    assert_ne!(
        values(&log, "omega_flair"),
        values(&full, "omega_flair"),
        "the two rules differ"
    );

    let mut no_meta = cfg.clone();
    no_meta.meta.enabled = false;
    let log = log_of(&no_meta, &dir.path().join("no-meta"));
    for modality in ["flair", "t1", "t1ce", "t2"] {
        let omega = values(&log, &format!("omega_{modality}"));
        assert!(
            omega.iter().all(|&o| (o - 0.25).abs() < 1e-6),
            "{modality}: {omega:?}"
        );
    }
}
