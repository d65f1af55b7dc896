//! `metakd`: prepare BraTS data, train MetaKD, sweep every modality subset and report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use metakd_data::avmnist::dataset as avmnist;
use metakd_data::avmnist::multibench as avmnist_multibench;
use metakd_data::prepare::PrepareOptions;
use metakd_data::release::ReleaseSplit;
use metakd_data::shards::ImageDtype;
use metakd_data::synth::{write_dataset, Layout, SynthConfig};
use metakd_experiments::alloc_stats::CountingAllocator;
use metakd_experiments::cli::{
    AvmnistCommand, BenchWhat, Cli, Command, PrepareDataset, PresetArg, RateProtocol, StageArg,
    Switch, SynthDataset, TrackingCommand,
};
use metakd_experiments::config::RunConfig;
use metakd_experiments::demo::{run_demo, DemoOptions};
use metakd_experiments::files::SWEEP_FILE;
use metakd_experiments::parallel_zeroing::ParallelZeroing;
use metakd_experiments::split_command::write_splits;
use metakd_experiments::tracking::TrackingReport;
use metakd_experiments::{
    bench, bench_prepare, bench_sweep, bench_train, eval_labels, export, files, progress, sweep,
    train,
};
use metakd_model::method::Subset;
use metakd_model::nets::SegmenterConfig;
use metakd_reports::regress::{self, Tolerances};

/// Tensors of several MiB are allocated and freed at every step; mimalloc reuses their memory
/// where the system allocator returns it and faults it back in (a third of the CPU time). The
/// counting wrapper lets `metakd bench` report working memory; large zeroed buffers are filled on
/// every thread.
#[global_allocator]
static ALLOCATOR: CountingAllocator<ParallelZeroing<mimalloc::MiMalloc>> =
    CountingAllocator(ParallelZeroing(mimalloc::MiMalloc));

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (mimalloc.h of libmimalloc-sys 0.1.49).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory in mimalloc's arenas instead of returning it to the system: a training step
/// frees and reallocates the same large tensors, and pages given back are zeroed by the kernel on
/// their next use (a quarter of a `reference` step's time otherwise).
fn keep_freed_memory() {
    // SAFETY: `mi_option_set` only stores an option value; it is called before any other thread
    // exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// The unit index of a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`), when set.
fn job_completion_index() -> Result<Option<usize>> {
    match std::env::var("JOB_COMPLETION_INDEX") {
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("JOB_COMPLETION_INDEX={value:?} is not a unit index")),
        Err(_) => Ok(None),
    }
}

fn print_regression(outcome: &regress::Regression, tolerances: Tolerances) {
    println!(
        "compared {} values (tolerances: Dice {}, HD95 {} mm)",
        outcome.compared, tolerances.dice, tolerances.hd95
    );
    for c in &outcome.largest_within {
        println!(
            "largest {} change within tolerance: {:+.4} ({}: {:.4} → {:.4})",
            c.metric,
            c.delta(),
            c.what,
            c.baseline,
            c.result
        );
    }
    for c in &outcome.moved {
        println!(
            "MOVED {} {:+.4}: {} ({:.4} → {:.4})",
            c.metric,
            c.delta(),
            c.what,
            c.baseline,
            c.result
        );
    }
    for what in &outcome.missing {
        println!("MISSING from the results: {what}");
    }
    for what in &outcome.unexpected {
        println!("NOT IN THE BASELINE: {what}");
    }
    if outcome.passed() {
        println!("the results match the baseline");
    } else {
        println!(
            "{} values moved, {} rows missing, {} rows not in the baseline",
            outcome.moved.len(),
            outcome.missing.len(),
            outcome.unexpected.len()
        );
    }
}

fn print_plan(plan: &sweep::Plan, table: &std::path::Path) {
    let units = sweep::units_dir(table);
    println!(
        "{} units ({} checkpoint(s) × {} subset group(s) × {} case shard(s)); plan {}",
        plan.units.len(),
        plan.units.len() / (plan.subset_groups * plan.case_shards),
        plan.subset_groups,
        plan.case_shards,
        units.join("plan.json").display()
    );
    println!("index\tdone\tcheckpoint\tsubsets\tcases");
    for unit in &plan.units {
        let done = sweep::unit_table(&units, unit.index).is_file();
        println!(
            "{}\t{}\t{}\t{}\t{}",
            unit.index,
            if done { "yes" } else { "no" },
            unit.checkpoint.display(),
            unit.subsets.len(),
            unit.cases.join(",")
        );
    }
}

fn print_tracking(report: &TrackingReport, run: &std::path::Path) {
    println!(
        "tracking: MLflow run {}, {} events sent",
        report
            .run_id
            .as_deref()
            .unwrap_or("(not created: the server never answered)"),
        report.sent
    );
    if report.pending > 0 {
        println!(
            "tracking: {} events wait in {}; send them with `metakd tracking sync --run {}`",
            report.pending,
            run.join(metakd_experiments::tracking::TRACKING_DIR)
                .display(),
            run.display()
        );
    }
    if report.lost > 0 {
        eprintln!(
            "tracking: {} events could not be written to {} (the disk was full) and are lost; \
             the MLflow run lacks them",
            report.lost,
            run.join(metakd_experiments::tracking::TRACKING_DIR)
                .display()
        );
    }
}

fn main() {
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .init();
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Avmnist {
            what: AvmnistCommand::Run(_)
        }
    ) {
        single_thread_candle_ops();
    }
    if let Err(e) = on_compute_pool(|| run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Whether log lines are coloured: only on a terminal, and never when `NO_COLOR` is set to a
/// non-empty value (<https://no-color.org>).
fn colour_on_stderr() -> bool {
    std::io::stderr().is_terminal() && progress::colour_wanted()
}

/// Candle runs large element-wise ops on a spinning thread pool of its own, shared by the whole
/// process. The AV-MNIST protocol trains one unit per compute thread, each single-threaded: the
/// shared pool would only make them wait on each other, so it gets no extra threads (unless
/// `CANDLE_NUM_THREADS` says otherwise).
fn single_thread_candle_ops() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called from `main` before any other thread of this program is started.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") }
    }
}

/// Runs `job` on a worker of a rayon pool with rayon's default thread count (`RAYON_NUM_THREADS`
/// or one per core). Every parallel op the job starts then begins on the calling worker, which
/// shares the work, instead of being handed from the main thread to a sleeping pool and waited
/// for: a training step starts thousands of parallel ops, and the hand-offs cost about a tenth of
/// its time on two cores. Threads of the job's own (batch loading, tracking) use rayon's global
/// pool, so they never wait on a worker the job keeps busy.
fn on_compute_pool<T: Send>(job: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("metakd-compute-{i}"))
        .build()
        .context("cannot start the compute threads")?
        .install(job)
}

/// The subset of the modalities named (case-insensitive: flair, t1, t1ce, t2); all when none is.
fn subset_of_names(names: &[String]) -> Result<Subset> {
    let all = metakd_data::Modality::ALL;
    if names.is_empty() {
        return Ok(Subset::full(all.len()));
    }
    let mut mask = 0;
    for name in names {
        let index = all
            .iter()
            .position(|m| m.display_name().eq_ignore_ascii_case(name.trim()))
            .with_context(|| {
                let known: Vec<&str> = all.iter().map(|m| m.display_name()).collect();
                format!("unknown modality {name:?} (known: {})", known.join(", "))
            })?;
        mask |= 1 << index;
    }
    Ok(Subset(mask))
}

fn run(cli: Cli) -> Result<()> {
    let show = std::io::stderr().is_terminal();
    match cli.command {
        Command::Synth {
            dataset: SynthDataset::Brats(a),
        } => {
            let cfg = SynthConfig {
                layout: Layout {
                    release: a.release,
                    split: if a.validation {
                        ReleaseSplit::Validation
                    } else {
                        ReleaseSplit::Training
                    },
                    gzip: !a.plain,
                },
                ..SynthConfig::new(a.cases, a.shape, a.seed)
            };
            let bar = progress::bar(a.cases as u64, "synth", show);
            write_dataset(&cfg, &a.out, || bar.inc(1))?;
            bar.finish_and_clear();
            println!("wrote {} cases to {}", a.cases, a.out.display());
        }
        Command::Avmnist {
            what: AvmnistCommand::Train(a),
        } => {
            use metakd_experiments::avmnist::{
                train_and_evaluate, AvMnistTrainConfig, RateModality,
            };
            let (samples, manifest) = avmnist::read(&a.data)?;
            let (rate, rate_modality) = match a.image_rate {
                Some(rate) => (rate, RateModality::Image),
                None => (a.audio_rate, RateModality::Audio),
            };
            let base = read_settings::<metakd_experiments::avmnist::AvMnistTrainConfig>(
                a.config.as_deref(),
            )?
            .for_data(&manifest.audio);
            let cfg = AvMnistTrainConfig {
                variant: a.variant,
                rate,
                rate_modality,
                seed: a.seed,
                iterations: a.iterations.unwrap_or(base.iterations),
                ..base
            };
            let result = train_and_evaluate(&samples, &cfg)?;
            let json = serde_json::to_string_pretty(&result)?;
            if let Some(out) = &a.out {
                files::write_atomic(out, format!("{json}\n").as_bytes())?;
            }
            println!("{json}");
        }
        Command::Avmnist {
            what: AvmnistCommand::Run(a),
        } => {
            use metakd_experiments::avmnist::RateModality;
            use metakd_experiments::avmnist_protocol::{run_protocol, ProtocolPlan};
            let (samples, manifest) = avmnist::read(&a.data)?;
            let mut base = read_settings::<metakd_experiments::avmnist::AvMnistTrainConfig>(
                a.config.as_deref(),
            )?
            .for_data(&manifest.audio);
            if let Some(iterations) = a.iterations {
                base.iterations = iterations;
            }
            let defaults = ProtocolPlan::default();
            let plan = ProtocolPlan {
                rate_modalities: a
                    .protocols
                    .iter()
                    .map(|p| match p {
                        RateProtocol::Audio => RateModality::Audio,
                        RateProtocol::Visual => RateModality::Image,
                    })
                    .collect(),
                rates: a.rates.iter().map(|r| r / 100.0).collect(),
                seeds: a.seeds.clone(),
                variants: if a.variants.is_empty() {
                    defaults.variants
                } else {
                    a.variants.clone()
                },
            };
            if let Some(bad) = plan.rates.iter().find(|r| !(0.0..=1.0).contains(*r)) {
                bail!("--rates: {} is not a percentage", bad * 100.0)
            }
            let outcome = run_protocol(&samples, &base, &plan, &a.out, show)?;
            print_units(outcome.trained, outcome.already_done, &outcome.table);
        }
        Command::Prepare {
            dataset: PrepareDataset::Adni(a),
        } => {
            use metakd_data::adni;
            let data = adni::read_tables(
                &a.tables,
                "adni",
                &adni::ADNI_MODALITIES,
                &adni::ADNI_CLASSES,
            )?;
            adni::write(&a.out, &data)?;
            print_tables_manifest(&data.manifest, &a.out);
        }
        Command::Prepare {
            dataset: PrepareDataset::AdCsf(a),
        } => {
            use metakd_data::adni;
            let missing: [f64; 3] = a.missing.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!("--missing takes three rates (genomic, clinical, biospecimen)")
            })?;
            let tables = a.out.join("tables");
            adni::ad_csf_tables(&a.csv, &tables, missing, a.seed)?;
            let data = adni::read_tables(
                &tables,
                "ad-csf",
                &adni::AD_CSF_MODALITIES,
                &adni::AD_CSF_CLASSES,
            )?;
            adni::write(&a.out, &data)?;
            print_tables_manifest(&data.manifest, &a.out);
        }
        Command::Tables(a) => {
            use metakd_experiments::tabular::{run_tables, TabularTrainConfig, TabularVariant};
            let data = metakd_data::adni::read(&a.data)?;
            let mut base: TabularTrainConfig = read_settings(a.config.as_deref())?;
            if let Some(iterations) = a.iterations {
                base.iterations = iterations;
            }
            let variants = if a.variants.is_empty() {
                vec![
                    TabularVariant::MetaKd,
                    TabularVariant::NoKd,
                    TabularVariant::NoMeta,
                    TabularVariant::Fusion,
                ]
            } else {
                a.variants.clone()
            };
            let outcome = run_tables(&data, &base, &a.seeds, &variants, &a.out, show)?;
            print_units(outcome.trained, outcome.already_done, &outcome.table);
        }
        Command::Prepare {
            dataset: PrepareDataset::Avmnist(a),
        } => {
            let (samples, manifest) = match (&a.multibench, &a.fsdd, &a.mnist) {
                (Some(dir), _, _) => avmnist_multibench::read_layout(dir)?,
                (None, Some(fsdd), Some(mnist)) => {
                    let options = avmnist::AvMnistOptions {
                        seed: a.seed,
                        ..Default::default()
                    };
                    avmnist::build(fsdd, mnist, &options)?
                }
                _ => bail!("give --fsdd and --mnist, or --multibench"),
            };
            avmnist::write(&a.out, &samples, &manifest)?;
            for (path, reason) in &manifest.skipped {
                eprintln!("skipped {}: {reason}", path.display());
            }
            println!(
                "AV-MNIST: {} training and {} test samples, audio {:?} {:?}, in {} ({} recordings skipped)",
                manifest.train,
                manifest.test,
                manifest.audio.kind,
                manifest.audio.shape,
                a.out.display(),
                manifest.skipped.len()
            );
        }
        Command::Synth {
            dataset: SynthDataset::AvmnistMultibench(a),
        } => {
            let options = avmnist::AvMnistOptions {
                seed: a.seed,
                ..Default::default()
            };
            let (samples, audio_shape, skipped) =
                avmnist_multibench::build_from_sources(&a.fsdd, &a.mnist, &options)?;
            avmnist_multibench::write_layout(&a.out, &samples, audio_shape)?;
            for (path, reason) in &skipped {
                eprintln!("skipped {}: {reason}", path.display());
            }
            println!(
                "AV-MNIST in MultiBench's layout: {} samples, spectrograms {audio_shape:?}, in {} ({} recordings skipped)",
                samples.len(),
                a.out.display(),
                skipped.len()
            );
        }
        Command::Prepare {
            dataset: PrepareDataset::Brats(a),
        } => {
            if !a.src.is_dir() {
                bail!("{}: no such folder", a.src.display())
            }
            let options = PrepareOptions {
                release: a.release,
                shard_bytes: a.shard_mib << 20,
                dtype: if a.half {
                    ImageDtype::Float16
                } else {
                    ImageDtype::Float32
                },
                memory_budget: a.memory_mib << 20,
                overwrite: a.overwrite,
                strict: a.strict,
            };
            let report = metakd_experiments::prepare(&a.src, &a.out, &options, show, |w| {
                tracing::warn!("{w}")
            })?;
            let m = &report.manifest;
            println!(
                "{} ({}): {} cases in {} shards in {} ({} prepared now, {} kept from an earlier run), {} skipped",
                m.release.map_or("unknown release".into(), |r| r.to_string()),
                match m.split {
                    ReleaseSplit::Training => "training",
                    ReleaseSplit::Validation => "validation",
                },
                m.cases.len(),
                m.shards.len(),
                a.out.display(),
                report.prepared,
                report.reused,
                m.skipped.len()
            );
        }
        Command::Split { request } => {
            for (path, s) in write_splits(&request)? {
                if let Some(warning) = s.meta_val_warning() {
                    tracing::warn!("{}: {warning}", path.display());
                }
                println!(
                    "{}: {} train, {} meta-val, {} val, {} test ({})",
                    path.display(),
                    s.train.len(),
                    s.meta_val.len(),
                    s.val.len(),
                    s.test.len(),
                    s.protocol
                );
            }
        }
        Command::Train(a) => {
            let mut cfg = RunConfig::read(&a.config)?;
            if let Some(split) = a.split {
                cfg.data.split = Some(split);
            }
            if let Some(shards) = a.shards {
                cfg.data.shards = shards;
            }
            if let Some(kd) = a.kd {
                cfg.train.kd = kd == Switch::On;
            }
            if let Some(meta) = a.meta {
                cfg.meta.enabled = meta == Switch::On;
            }
            if let Some(precision) = a.precision {
                cfg.train.precision = precision;
            }
            let stem = a
                .config
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
            let out = a.out.unwrap_or_else(|| PathBuf::from("runs").join(stem));
            let stage = match (a.stage, a.from) {
                (StageArg::Both, None) => train::Stage::Both,
                (StageArg::Warmup, None) => train::Stage::Warmup,
                (StageArg::Missing, Some(from)) => train::Stage::Missing { from },
                (StageArg::Missing, None) if a.resume => {
                    train::Stage::Missing { from: out.clone() }
                }
                (StageArg::Missing, None) => {
                    bail!("--stage missing needs --from <the stage-1 run folder>")
                }
                (_, Some(_)) => bail!("--from is only used with --stage missing"),
            };
            let options = train::TrainOptions {
                resume: a.resume,
                overwrite: a.overwrite,
                stage,
                show_progress: show,
                tracking: a.tracking.options(&out),
                device: a.device,
            };
            let summary = train::train(&cfg, &out, &options)?;
            println!(
                "trained {} iterations of a {}-parameter network in {:.0} s (final loss {:.4}, ω {:?}); waited for data {:.1}% of the time; run folder {}",
                summary.iterations,
                summary.parameters,
                summary.seconds,
                summary.final_loss,
                summary.omega,
                100.0 * summary.data_wait_fraction,
                out.display()
            );
            if let Some(report) = summary.tracking {
                print_tracking(&report, &out);
            }
        }
        Command::Tracking {
            what: TrackingCommand::Sync { run, mut tracking },
        } => {
            if tracking.tracking_uri.is_none() {
                tracking.tracking_uri = metakd_experiments::tracking::recorded_uri(&run);
            }
            let Some(options) = tracking.options(&run) else {
                bail!(
                    "{}: the run never reached a tracking server, so none is recorded; give \
                     --tracking-uri (or MLFLOW_TRACKING_URI)",
                    run.display()
                )
            };
            let report = metakd_experiments::tracking::sync(&run, options)?;
            print_tracking(&report, &run);
        }
        Command::Sweep(a) => {
            let out = a.out.unwrap_or_else(|| a.run.join(SWEEP_FILE));
            let options = sweep::SweepOptions {
                shards: a.shards,
                checkpoints: a.checkpoints,
                subset_groups: a.subset_groups,
                case_shards: a.case_shards,
            };
            let plan = sweep::plan(&a.run, &out, &options)?;
            let task_index = match a.task_index {
                Some(i) => Some(i),
                None => job_completion_index()?,
            };
            if a.plan {
                print_plan(&plan, &out);
            } else if let Some(index) = task_index {
                match sweep::UnitRunner::new(&plan, &out, options.shards.as_deref())
                    .run(index, show)?
                {
                    sweep::UnitOutcome::AlreadyDone => {
                        println!("unit {index} was already finished")
                    }
                    sweep::UnitOutcome::NothingScored { skipped } => {
                        for (id, reason) in &skipped {
                            eprintln!("skipped case {id}: {reason}");
                        }
                        bail!(
                            "unit {index} scored none of its {} cases: it is not finished and \
                             runs again next time",
                            skipped.len()
                        )
                    }
                    sweep::UnitOutcome::Done { scored, skipped } => {
                        for (id, reason) in &skipped {
                            eprintln!("skipped case {id}: {reason}");
                        }
                        println!(
                            "unit {index}: {scored} cases scored ({} skipped); table {}",
                            skipped.len(),
                            sweep::unit_table(&sweep::units_dir(&out), index).display()
                        )
                    }
                }
            } else {
                let outcome = sweep::sweep(&a.run, &out, &options, show)?;
                let (cases, skipped): (usize, usize) = outcome
                    .infos
                    .iter()
                    .fold((0, 0), |(c, s), i| (c + i.cases.len(), s + i.skipped.len()));
                for info in &outcome.infos {
                    for (id, reason) in &info.skipped {
                        eprintln!("skipped case {id}: {reason}");
                    }
                }
                println!(
                    "{} units ({} evaluated now, {} already finished): {cases} cases × subsets \
                     scored ({skipped} skipped); table {}",
                    outcome.plan.units.len(),
                    outcome.evaluated,
                    outcome.already_done,
                    out.display()
                );
            }
        }
        Command::Predict(a) => {
            let subset = subset_of_names(&a.modalities)?;
            let postprocess = a.postprocess
                || RunConfig::read(&a.run.join(files::CONFIG_FILE))
                    .map(|cfg| cfg.eval.postprocess)
                    .unwrap_or(false);
            let report = export::predict_run(
                &a.run,
                a.shards.as_deref(),
                subset,
                &a.out,
                postprocess,
                show,
            )?;
            for (id, reason) in &report.skipped {
                eprintln!("skipped case {id}: {reason}");
            }
            println!(
                "{} label maps in {} ({} skipped)",
                report.written.len(),
                a.out.display(),
                report.skipped.len()
            );
            if report.written.is_empty() {
                bail!("no label map was written")
            }
        }
        Command::EvalLabels(a) => {
            let bar = progress::bar(0, "eval-labels", show);
            let evaluation = eval_labels::evaluate_labels(&a.pred, &a.reference, |id, total| {
                bar.set_length(total as u64);
                bar.set_message(id.to_owned());
                bar.inc(1);
            })?;
            bar.finish_and_clear();
            let json = serde_json::to_string_pretty(&evaluation)?;
            if let Some(out) = &a.out {
                files::write_atomic(out, format!("{json}\n").as_bytes())?;
            }
            println!("{json}");
            for s in &evaluation.skipped {
                eprintln!("skipped case {} ({}): {}", s.id, s.file.display(), s.reason);
            }
            if evaluation.cases.is_empty() {
                bail!(
                    "no case was scored ({} skipped, {} references without a prediction)",
                    evaluation.skipped.len(),
                    evaluation.missing_predictions.len()
                )
            }
        }
        Command::Report(a) => {
            let out = a.out.unwrap_or_else(|| {
                a.sweeps[0]
                    .parent()
                    .map_or_else(|| PathBuf::from("report"), |p| p.join("report"))
            });
            let reports = metakd_reports::write_reports(&a.sweeps, &out).with_context(|| {
                format!(
                    "cannot report on {}",
                    a.sweeps
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            for warning in &reports.warnings {
                eprintln!("warning: {warning}");
            }
            if let Some(r) = &reports.segmentation {
                println!("report: {}", r.report.display());
            }
            if let Some(r) = &reports.classification {
                println!("classification report: {}", r.report.display());
            }
        }
        Command::Regress(a) => {
            let tolerances = Tolerances {
                dice: a.dice_tolerance,
                hd95: a.hd95_tolerance,
            };
            let outcome = regress::regress_files(&a.baseline, &a.results, tolerances)
                .with_context(|| format!("cannot compare with {}", a.baseline.display()))?;
            print_regression(&outcome, tolerances);
            if !outcome.passed() {
                std::process::exit(1);
            }
        }
        Command::Bench {
            what:
                BenchWhat::Ops {
                    runs,
                    python,
                    torch_script,
                },
        } => {
            let cases = bench::standard_cases();
            let ours = bench::bench_ops(&cases, runs)?;
            let threads = rayon::current_num_threads();
            let torch = bench::torch_timings(&python, &torch_script, &cases, threads, runs)?;
            println!("forward + backward, {threads} threads, median of {runs} runs");
            match &torch {
                Some(_) => println!(
                    "{:>10} {:>10} {:>8} {:>9}  op",
                    "metakd ms", "torch ms", "ratio", "workspace"
                ),
                None => println!(
                    "PyTorch is not available through `{python} {}`: no comparison",
                    torch_script.display()
                ),
            }
            for (i, t) in ours.iter().enumerate() {
                match &torch {
                    Some((_, times)) => println!(
                        "{:>10.2} {:>10.2} {:>7.2}x {:>8.2}x  {}",
                        t.millis,
                        times[i],
                        t.millis / times[i],
                        t.extra_memory_ratio,
                        t.case.name
                    ),
                    None => println!(
                        "{:>10.2} {:>8.2}x  {}",
                        t.millis, t.extra_memory_ratio, t.case.name
                    ),
                }
            }
            if let Some((version, _)) = torch {
                println!("PyTorch {version}; ratio = metakd / PyTorch");
            }
            println!(
                "workspace = peak memory beyond inputs, outputs and gradients / the largest tensor"
            );
        }
        Command::Bench {
            what:
                BenchWhat::Sweep {
                    preset,
                    runs,
                    case,
                    tile,
                },
        } => {
            let cfg = match preset {
                PresetArg::Small => SegmenterConfig::small(),
                PresetArg::Reference => SegmenterConfig::reference(),
            };
            let workdir = tempfile::tempdir()?;
            let t = bench_sweep::bench_sweep(&cfg, case, tile, runs, workdir.path())?;
            println!(
                "one {case:?} case in {tile:?} tiles, {} network, {} threads, median of {runs}",
                preset.to_possible_value().expect("named").get_name(),
                rayon::current_num_threads()
            );
            println!("full-modality evaluation: {:.2} s", t.full);
            println!(
                "15 subsets, cached encoder features: {:.2} s = {:.2}x one evaluation",
                t.cached,
                t.cached / t.full
            );
            println!(
                "15 subsets, one forward pass each: {:.2} s = {:.2}x one evaluation",
                t.naive,
                t.naive / t.full
            );
        }
        Command::Bench {
            what:
                BenchWhat::Train {
                    preset,
                    runs,
                    warmup,
                    python,
                    twin_script,
                    no_torch,
                    precision,
                },
        } => {
            let cfg = match preset {
                PresetArg::Small => SegmenterConfig::small(),
                PresetArg::Reference => SegmenterConfig::reference(),
            };
            let threads = rayon::current_num_threads();
            let twin = bench_train::TorchTwin {
                python: &python,
                script: &twin_script,
                threads,
                device: "cpu",
                tf32: false,
            };
            let workdir = tempfile::tempdir()?;
            let steps = bench_train::StepRuns {
                warmup,
                runs,
                precision,
                profile: false,
            };
            let (parameters, timings) = bench_train::bench_train(
                &cfg,
                &bench_train::STANDARD_SHAPES,
                &steps,
                (!no_torch).then_some(&twin),
                workdir.path(),
                &candle_core::Device::Cpu,
            )?;
            println!(
                "training step of the {} network ({parameters} parameters) in {precision}, {threads} threads, median of {runs} after {warmup} untimed",
                preset.to_possible_value().expect("named").get_name()
            );
            for t in &timings {
                println!("{t}");
            }
            if !no_torch && timings.iter().any(|t| t.torch.is_none()) {
                println!(
                    "PyTorch was not available through `{python} {}`: no comparison",
                    twin_script.display()
                );
            }
        }
        Command::GpuCheck(a) => metakd_experiments::gpu_check::run(&a)?,
        Command::Bench {
            what:
                BenchWhat::Prepare {
                    cases,
                    runs,
                    shape,
                    workdir,
                    python,
                    script,
                },
        } => {
            let temp = tempfile::tempdir()?;
            let workdir = workdir.unwrap_or_else(|| temp.path().to_owned());
            let result =
                bench_prepare::bench_prepare(cases, shape, runs, &workdir, &python, &script)?;
            println!("{result}");
        }
        Command::Demo(a) => {
            let outcome = run_demo(&DemoOptions {
                workdir: a.workdir,
                cases: a.cases,
                shape: a.shape,
                seed: a.seed,
                iterations: a.iterations,
                show_progress: show,
                on_note: |note| println!("{note}"),
            })?;
            let s = &outcome.summary;
            let [synth, prepare, train, sweep, report] = outcome.stage_seconds;
            println!("stages: synth {synth:.0} s, prepare {prepare:.0} s, train {train:.0} s, sweep {sweep:.0} s, report {report:.1} s");
            println!(
                "full-modality Dice: ET {:.3}, TC {:.3}, WT {:.3}; mean over 15 subsets: ET {:.3}, TC {:.3}, WT {:.3}",
                s.full_dice[0], s.full_dice[1], s.full_dice[2], s.mean_dice[0], s.mean_dice[1], s.mean_dice[2]
            );
            println!(
                "mean ET Dice with T1ce {:.3}, without {:.3}",
                s.et_with_key_modality, s.et_without_key_modality
            );
            println!("report: {}", outcome.report.display());
        }
    }
    Ok(())
}

/// Training settings from a TOML file (the keys of `T`, the others at their defaults), or the
/// defaults.
fn read_settings<T: serde::de::DeserializeOwned + Default>(path: Option<&Path>) -> Result<T> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}: bad settings", path.display()))
        }
        None => Ok(T::default()),
    }
}

/// Prints what a prepared folder of modality tables holds.
fn print_tables_manifest(m: &metakd_data::adni::TabularManifest, out: &Path) {
    let present: Vec<String> = m
        .modalities
        .iter()
        .zip(&m.present)
        .zip(&m.features)
        .map(|((name, n), f)| format!("{name} {n} ({} features)", f.len()))
        .collect();
    println!(
        "{} subjects ({}); {}; written to {}",
        m.subjects,
        m.classes.join(" / "),
        present.join(", "),
        out.display()
    );
}

/// Prints what a run of classification units did.
fn print_units(trained: usize, already_done: usize, table: &Path) {
    println!(
        "{trained} units trained, {already_done} finished earlier; results in {}",
        table.display()
    );
}
