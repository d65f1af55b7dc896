//! The `metakd` command line: every subcommand and its arguments, parsed by clap. The binary
//! parses [`Cli`] and dispatches on [`Command`].

mod classify;
mod data;
mod demo;
mod evaluation;
mod perf;
mod training;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use metakd_data::release::Release;
use metakd_model::nets::Preset;
use metakd_reports::regress::Tolerances;

use crate::classify::avmnist::Variant;
use crate::demo::default_workdir;
use crate::perf::bench_train::TwinArgs;
use crate::perf::gpu_check::parse_extents;
use crate::run::split_files::SplitRequest;
use crate::tracking::TrackingOptions;

/// MetaKD: meta-learned modality-weighted knowledge distillation for multi-modal learning with
/// missing modalities.
#[derive(Parser)]
#[command(name = "metakd", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Carries out the command, with progress bars when standard error is a terminal.
    pub fn run(self) -> Result<()> {
        let show = std::io::stderr().is_terminal();
        match self.command {
            Command::Synth { dataset } => data::synth(dataset, show),
            Command::Prepare { dataset } => data::prepare(dataset, show),
            Command::Split { request } => data::split(request),
            Command::Train(a) => training::train(a, show),
            Command::Tracking { what } => training::tracking(what),
            Command::Sweep(a) => evaluation::sweep(a, show),
            Command::Predict(a) => evaluation::predict(a, show),
            Command::EvalLabels(a) => evaluation::eval_labels(a, show),
            Command::Report(a) => evaluation::report(a),
            Command::Regress(a) => evaluation::regress(a),
            Command::Avmnist { what } => classify::avmnist(what, show),
            Command::Tables(a) => classify::tables(a, show),
            Command::Bench { what } => perf::bench(what),
            Command::GpuCheck(a) => crate::perf::gpu_check::run(&a),
            Command::Demo(a) => demo::demo(a, show),
        }
    }
}

/// The subcommands of `metakd`.
#[derive(Subcommand)]
pub enum Command {
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
    /// Write split files (Protocol A, Protocol B, RFNet-style lists) for `data.split`.
    Split {
        #[command(subcommand)]
        request: SplitRequest,
    },
    /// Train MetaKD as a TOML configuration describes.
    Train(TrainArgs),
    /// Evaluate a trained run on its held-out cases for every modality subset (Parquet table).
    Sweep(SweepArgs),
    /// Write the report of any set of sweep tables (or unit folders): markdown with figures,
    /// CSV tables and `summary.json`.
    Report(ReportArgs),
    /// Compare a run's per-subset results with a baseline within tolerances, listing what moved;
    /// exits with status 1 when anything did.
    Regress(RegressArgs),
    /// Write a run's predicted label maps as NIfTI files in the original grid, named as the
    /// BraTS online evaluator expects (`<case id>.nii.gz`).
    Predict(PredictArgs),
    /// Score predicted BraTS label maps against reference label maps (files or folders) as the
    /// BraTS evaluator does, printing JSON: Dice, HD95, sensitivity and specificity per case and
    /// region (ET, TC, WT) and their means.
    EvalLabels(EvalLabelsArgs),
    /// Run every stage on a fresh synthetic data set and print where the report is.
    Demo(DemoArgs),
    /// MetaKD for classification on AV-MNIST (`metakd prepare avmnist` first).
    Avmnist {
        #[command(subcommand)]
        what: AvmnistCommand,
    },
    /// MetaKD on modality tables with real missingness (`metakd prepare adni` or `ad-csf`
    /// first): every seed × variant into `OUT/results.parquet`, every modality subset scored.
    Tables(TablesRunArgs),
    /// Experiment tracking (MLflow).
    Tracking {
        #[command(subcommand)]
        what: TrackingCommand,
    },
    /// On a CUDA device (a build with the `cuda` feature): every 3D op against the CPU, a timed
    /// training step of the `reference` and `small` presets beside the PyTorch twin on the same
    /// GPU, and a table of the figures; exits with status 1 when an op differs.
    GpuCheck(crate::perf::gpu_check::GpuCheckOptions),
    /// Time the 3D ops, forward + backward.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

/// What `metakd bench` times.
#[derive(Subcommand)]
pub enum BenchWhat {
    /// conv3d, transposed conv3d, instance norm and LeakyReLU at the shapes the networks use.
    Ops(OpsBenchArgs),
    /// Evaluating one case for all 15 modality subsets, relative to one full-modality
    /// evaluation: with the cached encoder features, and with one forward pass per subset.
    Sweep(SweepBenchArgs),
    /// One training step of a network preset at 32×64×64 (batch 2) and 16×64×64 (batch 1),
    /// beside the same step of its PyTorch twin on the same weights and batch.
    Train(TrainBenchArgs),
    /// Data preparation: cases per second on synthetic 240×240×155 cases, against a Python
    /// script (nibabel + numpy) doing the same reading, clipping, normalisation and cropping.
    Prepare(PrepareBenchArgs),
}

/// Options of `metakd bench ops`.
#[derive(Args)]
pub struct OpsBenchArgs {
    /// Timed runs per op (the median is printed).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Python interpreter for the PyTorch comparison.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// The PyTorch benchmark script.
    #[arg(long, default_value = "tools/bench_torch.py")]
    pub torch_script: PathBuf,
}

/// Options of `metakd bench sweep`.
#[derive(Args)]
pub struct SweepBenchArgs {
    /// Network preset.
    #[arg(long, value_enum, default_value_t = Preset::Reference)]
    pub preset: Preset,
    /// Timed runs of each evaluation (the median is printed).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Extents D,H,W of the synthetic case.
    #[arg(long, value_parser = parse_extents, default_value = "48,64,64")]
    pub case: [usize; 3],
    /// Tile extents D,H,W.
    #[arg(long, value_parser = parse_extents, default_value = "32,64,64")]
    pub tile: [usize; 3],
}

/// Options of `metakd bench train`.
#[derive(Args)]
pub struct TrainBenchArgs {
    /// Network preset.
    #[arg(long, value_enum, default_value_t = Preset::Reference)]
    pub preset: Preset,
    /// Timed steps per shape (the median is printed).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Untimed steps before them, on both sides (the first one's logits are compared).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// The PyTorch twin to compare with.
    #[command(flatten)]
    pub twin: TwinArgs,
    /// Arithmetic of the convolutions: f32, or bf16 mixed precision (PyTorch's twin under
    /// `torch.autocast`).
    #[arg(long, default_value = "f32")]
    pub precision: metakd_model::ops::Precision,
}

/// Options of `metakd bench prepare`.
#[derive(Args)]
pub struct PrepareBenchArgs {
    /// Synthetic cases to prepare.
    #[arg(long, default_value_t = 6)]
    pub cases: usize,
    /// Timed runs of `prepare` (the median is compared).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Volume extents D,H,W.
    #[arg(long, value_parser = parse_extents, default_value = "155,240,240")]
    pub shape: [usize; 3],
    /// Working folder for the synthetic release and the shards (default: a temporary one).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Python interpreter with nibabel and numpy for the comparison.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// The Python preparation script.
    #[arg(long, default_value = "tools/prepare_reference.py")]
    pub script: PathBuf,
}

/// The data sets `metakd synth` generates.
#[derive(Subcommand)]
pub enum SynthDataset {
    /// BraTS-like phantoms in an official BraTS layout (NIfTI, int16 images, uint8 labels).
    Brats(SynthArgs),
    /// AV-MNIST in MultiBench's layout (`.npy` arrays) from the real sources: SMIL's pairing of
    /// FSDD recordings with MNIST images, the audio as 112 × 112 spectrograms.
    AvmnistMultibench(MultibenchLayoutArgs),
}

/// `metakd synth avmnist-multibench`: AV-MNIST in MultiBench's `.npy` layout.
#[derive(Args)]
pub struct MultibenchLayoutArgs {
    /// The FSDD `recordings` folder (`{digit}_{speaker}_{index}.wav`).
    #[arg(long)]
    pub fsdd: PathBuf,
    /// MNIST images as CSV (784 pixel values, then the label; `.gz` allowed).
    #[arg(long)]
    pub mnist: PathBuf,
    /// Output folder (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the pairing of recordings with images.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `metakd synth brats`: synthetic cases in a BraTS release layout.
#[derive(Args)]
pub struct SynthArgs {
    /// Output folder (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of cases.
    #[arg(long, default_value_t = 32)]
    pub cases: usize,
    /// Volume extents D,H,W (z, x, y) in 1 mm voxels.
    #[arg(long, value_parser = parse_extents, default_value = "48,64,64")]
    pub shape: [usize; 3],
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Release layout: brats2018, brats2019 or brats2020.
    #[arg(long, default_value = "brats2020")]
    pub release: Release,
    /// Write the validation release (no label maps) instead of the training release.
    #[arg(long)]
    pub validation: bool,
    /// Write plain `.nii` files instead of `.nii.gz`.
    #[arg(long)]
    pub plain: bool,
}

/// The data sets `metakd prepare` reads.
#[derive(Subcommand)]
pub enum PrepareDataset {
    /// A BraTS 2018, 2019 or 2020 release folder, training or validation, as downloaded.
    Brats(PrepareArgs),
    /// AV-MNIST as SMIL built it: FSDD recordings of jackson, nicolas and theo as 20 × 20 MFCCs,
    /// paired by digit with MNIST images (1,050 training and 450 test samples).
    Avmnist(AvmnistArgs),
    /// Flex-MoE-style modality tables (ADNI: `labels.csv` with CN / MCI / AD and one CSV per
    /// modality: image, genomic, clinical, biospecimen), subjects missing what they miss.
    Adni(AdniArgs),
    /// The AD CSF cohort (`ad_data.csv.gz`, a real stand-in for ADNI's non-imaging modalities)
    /// written as modality tables with seeded per-modality missing rates, then prepared.
    AdCsf(AdCsfArgs),
}

/// `metakd prepare adni`: Flex-MoE-style ADNI modality tables.
#[derive(Args)]
pub struct AdniArgs {
    /// The folder of modality tables.
    #[arg(long)]
    pub tables: PathBuf,
    /// Output folder for `tables.arrow` and `manifest.json`.
    #[arg(long)]
    pub out: PathBuf,
}

/// `metakd prepare ad-csf`: the AD CSF cohort as modality tables with missing rates.
#[derive(Args)]
pub struct AdCsfArgs {
    /// `ad_data.csv.gz`.
    #[arg(long)]
    pub csv: PathBuf,
    /// Output folder: the modality tables in `tables/`, the prepared data beside them.
    #[arg(long)]
    pub out: PathBuf,
    /// Shares of the subjects missing genomic, clinical and biospecimen data.
    #[arg(long, value_delimiter = ',', default_values_t = [0.3, 0.2, 0.4])]
    pub missing: Vec<f64>,
    /// Seed of who misses what.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `metakd tables`: MetaKD on prepared modality tables, every seed and variant.
#[derive(Args)]
pub struct TablesRunArgs {
    /// The folder written by `metakd prepare adni` or `metakd prepare ad-csf`.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (unit results in `units/`, then `results.parquet`).
    #[arg(long)]
    pub out: PathBuf,
    /// Training seeds (each its own split).
    #[arg(long, value_delimiter = ',', default_values_t = [0, 1, 2])]
    pub seeds: Vec<u64>,
    /// Variants (default: MetaKD, no KD, no meta, late fusion).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub variants: Vec<crate::classify::tables::TabularVariant>,
    /// Training iterations (default: the configuration's).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Training settings (TOML, keys of `TabularTrainConfig`).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// The `metakd avmnist` subcommands.
#[derive(Subcommand)]
pub enum AvmnistCommand {
    /// Train one variant with a share of the training samples keeping their audio (or image) and
    /// print its test accuracy (both modalities, image only, audio only) as JSON.
    Train(AvmnistTrainArgs),
    /// Run the protocol: every audio and visual rate × seed × variant, resumable, into the
    /// common result table `OUT/results.parquet` (then `metakd report --sweep` it).
    Run(AvmnistRunArgs),
}

/// A modality whose missing rate the AV-MNIST protocol varies.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum RateProtocol {
    /// Only a share of the training samples keep their audio.
    Audio,
    /// Only a share of the training samples keep their image.
    Visual,
}

/// `metakd avmnist run`: the AV-MNIST protocol over rates, seeds and variants.
#[derive(Args)]
pub struct AvmnistRunArgs {
    /// The folder written by `metakd prepare avmnist`.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (unit results in `units/`, then `results.parquet` and `results.json`).
    #[arg(long)]
    pub out: PathBuf,
    /// Protocols to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [RateProtocol::Audio, RateProtocol::Visual])]
    pub protocols: Vec<RateProtocol>,
    /// Missing rates in percent of the training samples keeping the modality.
    #[arg(long, value_delimiter = ',', default_values_t = [5.0, 10.0, 15.0, 20.0])]
    pub rates: Vec<f64>,
    /// Training seeds.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 1, 2])]
    pub seeds: Vec<u64>,
    /// Variants (default: MetaKD, its ablations and the three baselines).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub variants: Vec<Variant>,
    /// Training iterations of every unit (default: the configuration's).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Training settings (TOML, keys of `AvMnistTrainConfig`).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `metakd avmnist train`: one AV-MNIST variant.
#[derive(Args)]
pub struct AvmnistTrainArgs {
    /// The folder written by `metakd prepare avmnist`.
    #[arg(long)]
    pub data: PathBuf,
    /// What to train.
    #[arg(long, value_enum, default_value_t = Variant::MetaKd)]
    pub variant: Variant,
    /// Share of the training samples that keep their audio (0–1; the audio rate).
    #[arg(long, default_value_t = 0.1, conflicts_with = "image_rate")]
    pub audio_rate: f64,
    /// Share of the training samples that keep their image instead (0–1; the visual rate);
    /// every sample then keeps its audio.
    #[arg(long)]
    pub image_rate: Option<f64>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Training iterations (default: the configuration's).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Training settings (TOML, keys of `AvMnistTrainConfig`; the others keep their defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also write the JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `metakd prepare avmnist`: AV-MNIST from its sources or MultiBench's layout.
#[derive(Args)]
pub struct AvmnistArgs {
    /// The FSDD `recordings` folder (`{digit}_{speaker}_{index}.wav`).
    #[arg(long, required_unless_present = "multibench", requires = "mnist")]
    pub fsdd: Option<PathBuf>,
    /// MNIST images as CSV (784 pixel values, then the label; `.gz` allowed).
    #[arg(long, requires = "fsdd")]
    pub mnist: Option<PathBuf>,
    /// Instead of the sources: MultiBench's `avmnist` folder (`image/`, `audio/` of
    /// `{train,test}_data.npy`, `{train,test}_labels.npy`), 112 × 112 spectrograms.
    #[arg(long, conflicts_with_all = ["fsdd", "mnist"])]
    pub multibench: Option<PathBuf>,
    /// Output folder for `avmnist.arrow` and `manifest.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the pairing of recordings with images.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `metakd prepare brats`: a downloaded release into Arrow shards.
#[derive(Args)]
pub struct PrepareArgs {
    /// The downloaded (or synthetic) data folder.
    #[arg(long)]
    pub src: PathBuf,
    /// Output folder for the shards and `manifest.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Target shard size in MiB.
    #[arg(long, default_value_t = 256)]
    pub shard_mib: u64,
    /// The release, when it should not be detected from the case ids.
    #[arg(long)]
    pub release: Option<Release>,
    /// Store images as float16 instead of float32.
    #[arg(long)]
    pub half: bool,
    /// Fail when any case is skipped (the manifest is then left incomplete).
    #[arg(long)]
    pub strict: bool,
    /// Delete the shards of another source found in `--out` (without it they are refused).
    #[arg(long)]
    pub overwrite: bool,
    /// Bound on the working memory of the cases prepared at once, in MiB.
    #[arg(long, default_value_t = 1536)]
    pub memory_mib: u64,
}

/// `metakd train`: MetaKD training from a TOML configuration.
#[derive(Args)]
pub struct TrainArgs {
    /// The run configuration (TOML; see docs/configuration.md).
    #[arg(long)]
    pub config: PathBuf,
    /// The run folder (default: `runs/<config file stem>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Shards to train on, overriding `data.shards` of the configuration.
    #[arg(long)]
    pub shards: Option<PathBuf>,
    /// A split file written by `metakd split`, overriding `data.split` of the configuration.
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Continue the run in `--out` from its last checkpoint (same configuration).
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Delete the run already in `--out` (its checkpoint, model, logs, sweep and report) and
    /// train anew. Without it (or `--resume`) a folder holding a run is refused.
    #[arg(long)]
    pub overwrite: bool,
    /// The pairwise distillation loss (`off`: the "without KD" ablation; sets `train.kd`).
    #[arg(long, value_enum)]
    pub kd: Option<Switch>,
    /// Meta-learning of ω (`off`: uniform ω, the "without meta-learning" ablation; sets
    /// `meta.enabled`).
    #[arg(long, value_enum)]
    pub meta: Option<Switch>,
    /// Arithmetic of the convolutions in training: `f32`, or `bf16` mixed precision (sets
    /// `train.precision`; inference follows `eval.precision`).
    #[arg(long)]
    pub precision: Option<metakd_model::ops::Precision>,
    /// The stages of the schedule to train: `both` in one run, `warmup` (stage 1, all
    /// modalities, up to `train.warmup_iterations`) or `missing` (stage 2, from `--from`).
    #[arg(long, value_enum, default_value_t = StageArg::Both)]
    pub stage: StageArg,
    /// The stage-1 run folder whose checkpoint stage 2 starts from.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Where the network trains: `cpu`, or `cuda` (the first GPU; a build with `--features
    /// cuda`). Data loading and augmentation stay on the CPU.
    #[arg(long, value_enum, default_value_t = crate::run::device::ComputeDevice::Cpu)]
    pub device: crate::run::device::ComputeDevice,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

/// Where and how training reports to an MLflow tracking server.
#[derive(Args)]
pub struct TrackingArgs {
    /// MLflow tracking server (`http://host:port`) to log params, metrics and artifacts to.
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    pub tracking_uri: Option<String>,
    /// MLflow experiment name.
    #[arg(long, default_value = "metakd")]
    pub experiment: String,
    /// MLflow run name (default: the run folder's name).
    #[arg(long)]
    pub run_name: Option<String>,
    /// Seconds one request to the server may take.
    #[arg(long, default_value_t = 10)]
    pub request_timeout: u64,
    /// Seconds the end of training waits for queued events to reach the server.
    #[arg(long, default_value_t = 60)]
    pub flush_timeout: u64,
}

impl TrackingArgs {
    /// The tracking options of the run folder `run`, or `None` without a server.
    pub fn options(&self, run: &std::path::Path) -> Option<TrackingOptions> {
        let uri = self.tracking_uri.clone()?;
        Some(TrackingOptions {
            uri,
            experiment: self.experiment.clone(),
            run_name: self.run_name.clone().unwrap_or_else(|| {
                run.file_name()
                    .map_or_else(|| "metakd".into(), |n| n.to_string_lossy().into_owned())
            }),
            request_timeout: std::time::Duration::from_secs(self.request_timeout),
            flush_timeout: std::time::Duration::from_secs(self.flush_timeout),
        })
    }
}

/// The `metakd tracking` subcommands.
#[derive(Subcommand)]
pub enum TrackingCommand {
    /// Send what a run folder still has queued for its tracking server.
    Sync {
        /// The run folder.
        #[arg(long)]
        run: PathBuf,
        #[command(flatten)]
        tracking: TrackingArgs,
    },
}

/// Stages of the training schedule.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StageArg {
    Both,
    Warmup,
    Missing,
}

/// On or off.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// `metakd sweep`: every modality subset of a run's test cases.
#[derive(Args)]
pub struct SweepArgs {
    /// The run folder written by `metakd train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Shards to evaluate, overriding the run's configuration.
    #[arg(long)]
    pub shards: Option<PathBuf>,
    /// The result table (default: `<run>/sweep.parquet`); its units go to `<table>-units/`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A checkpoint to evaluate, relative to the run folder (repeatable; default:
    /// `model.safetensors`).
    #[arg(long = "checkpoint")]
    pub checkpoints: Vec<PathBuf>,
    /// Cut the 15 subsets into this many groups, one unit each (default 1).
    #[arg(long)]
    pub subset_groups: Option<usize>,
    /// Cut the test cases into this many shards, one unit each (default: one per case).
    #[arg(long)]
    pub case_shards: Option<usize>,
    /// Write the plan and list its units (checkpoint × subset group × case shard), then stop.
    #[arg(long)]
    pub plan: bool,
    /// Run only this unit (0-based), writing its own table; read from SLURM_ARRAY_TASK_ID or
    /// JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) when not given.
    #[arg(long, env = "SLURM_ARRAY_TASK_ID")]
    pub task_index: Option<usize>,
}

/// `metakd report`: the report of sweep tables.
#[derive(Args)]
pub struct ReportArgs {
    /// A sweep table, or a folder of unit tables (repeatable: any set of them is merged); each
    /// needs its `.json` sidecar beside it.
    #[arg(long = "sweep", required = true)]
    pub sweeps: Vec<PathBuf>,
    /// Output folder for `report.md`, its figures, the CSV tables and `summary.json` (default:
    /// `report/` beside the first table).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `metakd regress`: a run's results against a baseline.
#[derive(Args)]
pub struct RegressArgs {
    /// The baseline: a `subsets.csv` written by `metakd report`, or a sweep table.
    #[arg(long)]
    pub baseline: PathBuf,
    /// The run's results: sweep tables, unit folders, or a `subsets.csv` (repeatable).
    #[arg(long = "results", required = true)]
    pub results: Vec<PathBuf>,
    /// How far a subset's mean Dice (a fraction) may move.
    #[arg(long, default_value_t = Tolerances::default().dice)]
    pub dice_tolerance: f64,
    /// How far a subset's mean HD95 (mm) may move.
    #[arg(long, default_value_t = Tolerances::default().hd95)]
    pub hd95_tolerance: f64,
}

/// `metakd predict`: label maps for the BraTS evaluator.
#[derive(Args)]
pub struct PredictArgs {
    /// The run folder written by `metakd train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Shards whose every case is predicted (e.g. a validation release); default: the run's
    /// test cases.
    #[arg(long)]
    pub shards: Option<PathBuf>,
    /// Output folder for the label maps.
    #[arg(long)]
    pub out: PathBuf,
    /// The available modalities, comma-separated (default: all), e.g. `flair,t1ce`.
    #[arg(long, value_delimiter = ',')]
    pub modalities: Vec<String>,
    /// Post-process the maps (small tumour components removed, a small ET relabelled as
    /// necrotic core); default: the run's `eval.postprocess`.
    #[arg(long)]
    pub postprocess: bool,
}

/// `metakd eval-labels`: label maps scored against references.
#[derive(Args)]
pub struct EvalLabelsArgs {
    /// Predicted label map, or a folder of them (`<case id>.nii.gz`).
    #[arg(long)]
    pub pred: PathBuf,
    /// Reference label map, or a folder of them (a release folder: its `*_seg` files).
    #[arg(long = "ref")]
    pub reference: PathBuf,
    /// Also write the JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `metakd demo`: every stage on fresh synthetic data.
#[derive(Args)]
pub struct DemoArgs {
    /// Working folder for data, shards, run and report.
    #[arg(long, default_value = default_workdir().as_os_str())]
    pub workdir: PathBuf,
    /// Number of synthetic cases.
    #[arg(long, default_value_t = 32)]
    pub cases: usize,
    /// Volume extents D,H,W.
    #[arg(long, value_parser = parse_extents, default_value = "48,64,64")]
    pub shape: [usize; 3],
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Training iterations (default: the demo configuration's).
    #[arg(long)]
    pub iterations: Option<usize>,
}
