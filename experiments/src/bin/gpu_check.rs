//! `metakd-gpu-check`: `metakd gpu-check` as a binary of its own, small enough to carry to a GPU
//! machine (see docs/gpu.md).

use clap::Parser;
use metakd_experiments::perf::gpu_check::{run, GpuCheckOptions};

/// Every 3D op on CUDA against the CPU, timed training steps of the `reference` and `small`
/// presets beside the PyTorch twin on the same GPU, and a table of the figures.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    options: GpuCheckOptions,
}

fn main() -> anyhow::Result<()> {
    run(&Args::parse().options)
}
