//! Where training and the GPU check run: the CPU or a CUDA device (`--device cpu|cuda`).

use anyhow::{anyhow, Result};
use candle_core::Device;

/// The device a command computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ComputeDevice {
    /// The CPU (every build).
    #[default]
    Cpu,
    /// The first CUDA device (a build with `--features cuda`).
    Cuda,
}

impl ComputeDevice {
    /// Opens the device.
    pub fn open(self) -> Result<Device> {
        match self {
            ComputeDevice::Cpu => Ok(Device::Cpu),
            ComputeDevice::Cuda => open_cuda(0),
        }
    }
}

/// Opens CUDA device `ordinal`, with a clear error when the build has no CUDA support, no
/// driver can be loaded or the device does not exist.
/// The device is set up for one stream and a memory pool that keeps what is freed
/// (`metakd_model::ops::cuda::prepare_device`).
pub fn open_cuda(ordinal: usize) -> Result<Device> {
    // cudarc panics when it cannot load the driver library; its message (every library name it
    // tried) is replaced by the error below.
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(ordinal));
    std::panic::set_hook(quiet);
    let device = opened
        .map_err(|_| anyhow!("no CUDA driver (libcuda.so) could be loaded"))?
        .map_err(|e| {
            anyhow!(
                "no CUDA device {ordinal} ({e}); CUDA needs a build with --features cuda and a GPU"
            )
        })?;
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = &device {
        metakd_model::ops::cuda::prepare_device(dev)?;
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_opens_and_cuda_without_the_feature_is_refused_with_the_remedy() {
        assert!(ComputeDevice::Cpu.open().unwrap().is_cpu());
        if cfg!(not(feature = "cuda")) {
            let e = ComputeDevice::Cuda.open().unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
