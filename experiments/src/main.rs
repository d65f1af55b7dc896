//! `metakd`: prepare BraTS data, train MetaKD, sweep every modality subset and report.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use metakd_data::synth::{write_dataset, SynthConfig};
use metakd_experiments::alloc_stats::CountingAllocator;
use metakd_experiments::config::RunConfig;
use metakd_experiments::demo::{default_workdir, run_demo, DemoOptions};
use metakd_experiments::files::SWEEP_FILE;
use metakd_experiments::{bench, progress, sweep, train};

/// Tensors of several MiB are allocated and freed at every step; mimalloc reuses their memory
/// where the system allocator returns it and faults it back in (a third of the CPU time). The
/// counting wrapper lets `metakd bench` report working memory.
#[global_allocator]
static ALLOCATOR: CountingAllocator<mimalloc::MiMalloc> = CountingAllocator(mimalloc::MiMalloc);

/// MetaKD: meta-learned modality-weighted knowledge distillation for multi-modal learning with
/// missing modalities.
#[derive(Parser)]
#[command(name = "metakd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate synthetic data in an official layout.
    Synth {
        #[command(subcommand)]
        dataset: SynthDataset,
    },
    /// Read a downloaded data set, preprocess it and write Arrow IPC shards with a manifest.
    Prepare {
        #[command(subcommand)]
        dataset: PrepareDataset,
    },
    /// Train MetaKD as a TOML configuration describes.
    Train(TrainArgs),
    /// Evaluate a trained run on its held-out cases for every modality subset (Parquet table).
    Sweep(SweepArgs),
    /// Write the markdown report of a sweep table.
    Report(ReportArgs),
    /// Run every stage on a fresh synthetic data set and print where the report is.
    Demo(DemoArgs),
    /// Time the 3D ops, forward + backward.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// conv3d, transposed conv3d, instance norm and LeakyReLU at the shapes the networks use.
    Ops {
        /// Timed runs per op (the median is printed).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Python interpreter for the PyTorch comparison.
        #[arg(long, default_value = "python3")]
        python: String,
        /// The PyTorch benchmark script.
        #[arg(long, default_value = "tools/bench_torch.py")]
        torch_script: PathBuf,
    },
}

#[derive(Subcommand)]
enum SynthDataset {
    /// BraTS-like phantoms in the BraTS2020 training layout (NIfTI, int16 images, uint8 labels).
    Brats(SynthArgs),
}

#[derive(Args)]
struct SynthArgs {
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
    /// Number of cases.
    #[arg(long, default_value_t = 32)]
    cases: usize,
    /// Volume extents D,H,W (z, x, y) in 1 mm voxels.
    #[arg(long, value_parser = parse_shape, default_value = "48,64,64")]
    shape: [usize; 3],
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Subcommand)]
enum PrepareDataset {
    /// A BraTS folder of case folders (`<id>/<id>_{flair,t1,t1ce,t2,seg}.nii.gz`).
    Brats(PrepareArgs),
}

#[derive(Args)]
struct PrepareArgs {
    /// The downloaded (or synthetic) data folder.
    #[arg(long)]
    src: PathBuf,
    /// Output folder for the shards and `manifest.json`.
    #[arg(long)]
    out: PathBuf,
    /// Largest shard size in MiB.
    #[arg(long, default_value_t = 256)]
    shard_mib: usize,
}

#[derive(Args)]
struct TrainArgs {
    /// The run configuration (TOML; see docs/configuration.md).
    #[arg(long)]
    config: PathBuf,
    /// The run folder (default: `runs/<config file stem>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Shards to train on, overriding `data.shards` of the configuration.
    #[arg(long)]
    shards: Option<PathBuf>,
}

#[derive(Args)]
struct SweepArgs {
    /// The run folder written by `metakd train`.
    #[arg(long)]
    run: PathBuf,
    /// Shards to evaluate, overriding the run's configuration.
    #[arg(long)]
    shards: Option<PathBuf>,
    /// The result table (default: `<run>/sweep.parquet`).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct ReportArgs {
    /// The sweep table (its `.json` sidecar must lie beside it).
    #[arg(long)]
    sweep: PathBuf,
    /// Output folder for `report.md` and `summary.json` (default: the table's folder).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct DemoArgs {
    /// Working folder for data, shards, run and report.
    #[arg(long, default_value = default_workdir().as_os_str())]
    workdir: PathBuf,
    /// Number of synthetic cases.
    #[arg(long, default_value_t = 32)]
    cases: usize,
    /// Volume extents D,H,W.
    #[arg(long, value_parser = parse_shape, default_value = "48,64,64")]
    shape: [usize; 3],
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Training iterations (default: the demo configuration's).
    #[arg(long)]
    iterations: Option<usize>,
}

fn parse_shape(text: &str) -> Result<[usize; 3], String> {
    let parts: Vec<usize> = text
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{text}`: expected D,H,W such as 48,64,64"))
        })
        .collect::<Result<_, _>>()?;
    parts
        .try_into()
        .map_err(|_| format!("`{text}`: expected three extents D,H,W"))
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let show = std::io::stderr().is_terminal();
    match cli.command {
        Command::Synth {
            dataset: SynthDataset::Brats(a),
        } => {
            let cfg = SynthConfig {
                cases: a.cases,
                shape: a.shape,
                seed: a.seed,
            };
            let bar = progress::bar(a.cases as u64, "synth", show);
            write_dataset(&cfg, &a.out, || bar.inc(1))?;
            bar.finish_and_clear();
            println!("wrote {} cases to {}", a.cases, a.out.display());
        }
        Command::Prepare {
            dataset: PrepareDataset::Brats(a),
        } => {
            if !a.src.is_dir() {
                bail!("{}: no such folder", a.src.display())
            }
            let manifest = metakd_experiments::prepare(&a.src, &a.out, a.shard_mib << 20, show)?;
            println!(
                "prepared {} cases into {} ({} skipped)",
                manifest.cases.len(),
                a.out.display(),
                manifest.skipped.len()
            );
        }
        Command::Train(a) => {
            let mut cfg = RunConfig::read(&a.config)?;
            if let Some(shards) = a.shards {
                cfg.data.shards = shards;
            }
            let stem = a
                .config
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
            let out = a.out.unwrap_or_else(|| PathBuf::from("runs").join(stem));
            let summary = train::train(&cfg, &out, show)?;
            println!(
                "trained {} iterations in {:.0} s (final loss {:.4}, ω {:?}); run folder {}",
                summary.iterations,
                summary.seconds,
                summary.final_loss,
                summary.omega,
                out.display()
            );
        }
        Command::Sweep(a) => {
            let out = a.out.unwrap_or_else(|| a.run.join(SWEEP_FILE));
            let info = sweep::sweep(&a.run, a.shards.as_deref(), &out, show)?;
            println!(
                "evaluated {} cases × 15 subsets ({} skipped); table {}",
                info.cases.len(),
                info.skipped.len(),
                out.display()
            );
        }
        Command::Report(a) => {
            let out = a
                .out
                .or_else(|| a.sweep.parent().map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("."));
            let (report, _) = metakd_reports::write_report(&a.sweep, &out)
                .with_context(|| format!("cannot report on {}", a.sweep.display()))?;
            println!("report: {}", report.display());
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
        Command::Demo(a) => {
            let outcome = run_demo(&DemoOptions {
                workdir: a.workdir,
                cases: a.cases,
                shape: a.shape,
                seed: a.seed,
                iterations: a.iterations,
                show_progress: show,
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
