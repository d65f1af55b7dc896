//! `metakd-gpu-check`: `metakd gpu-check` as a binary of its own, small enough to carry to a GPU
//! machine (see docs/gpu.md).

use std::path::PathBuf;

use clap::Parser;
use metakd_experiments::gpu_check::{run, GpuCheckOptions};

/// Every 3D op on CUDA against the CPU, timed training steps of the `reference` and `small`
/// presets beside the PyTorch twin on the same GPU, and a table of the figures.
#[derive(Parser)]
struct Args {
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    gpu: usize,
    /// Timed steps per preset after one untimed step (the median is printed).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Crop extents D,H,W of the timed step.
    #[arg(long, value_delimiter = ',', num_args = 3, default_values_t = [80, 160, 160])]
    crop: Vec<usize>,
    /// Crops per batch of the timed step.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Python interpreter with torch and safetensors for the comparison.
    #[arg(long, default_value = "python3")]
    python: String,
    /// The PyTorch twin.
    #[arg(long, default_value = "tools/metakd_twin.py")]
    twin_script: PathBuf,
    /// Skip the PyTorch comparison.
    #[arg(long)]
    no_torch: bool,
    /// Let convolutions and matrix products use TF32, here and in PyTorch.
    #[arg(long)]
    tf32: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let crop: [usize; 3] = a
        .crop
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("--crop takes three extents D,H,W"))?;
    run(&GpuCheckOptions {
        gpu: a.gpu,
        runs: a.runs,
        crop,
        batch: a.batch,
        python: a.python,
        twin_script: a.twin_script,
        no_torch: a.no_torch,
        tf32: a.tf32,
    })
}
