//! The ops on CUDA devices (`cuda` feature): launching the kernels of `model/cuda/ops.cu`
//! (compiled to PTX at build time), the device's peak memory, and the settings of the
//! convolutions, which run on cuDNN's N-d convolution.
//!
//! Every function takes contiguous f32 storage, as the CPU ops do, and returns new storage.

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr, ValidAsZeroBits};
pub(crate) use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::{bail, DType, Layout, Result};

use super::profile;

/// The PTX of `model/cuda/ops.cu`.
pub(crate) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/metakd_ops.ptx"));
/// The module name the kernels are loaded under.
pub(crate) const MODULE: &str = "metakd_ops";
/// Threads per block of the element-wise kernels and of the per-row reductions.
const THREADS: u32 = 256;

/// A contiguous f32 view of a custom op's argument.
pub(crate) fn view<'a>(s: &'a CudaStorage, l: &Layout, op: &str) -> Result<CudaView<'a, f32>> {
    if s.dtype() != DType::F32 {
        bail!("{op}: only f32 tensors are supported, got {:?}", s.dtype())
    }
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(s.as_cuda_slice::<f32>()?.slice(start..end)),
        None => bail!("{op}: expects contiguous tensors"),
    }
}

/// New device memory of `n` values of `T` (f32 for the kernels, bf16 too for cuDNN), zeroed when
/// `zeroed` (outputs that kernels accumulate into).
pub(crate) fn output<T: DeviceRepr + ValidAsZeroBits>(
    dev: &CudaDevice,
    n: usize,
    zeroed: bool,
) -> Result<CudaSlice<T>> {
    if zeroed {
        dev.alloc_zeros::<T>(n)
    } else {
        // SAFETY: every kernel (and cuDNN call) that writes into a non-zeroed output writes each
        // of its values.
        unsafe { dev.alloc::<T>(n) }
    }
}

/// Wraps a result as storage of `dev`.
pub(crate) fn storage(slice: CudaSlice<f32>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(slice, dev.clone())
}

/// A grid-stride launch over `n` elements.
pub(crate) fn elements(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The blocks of a kernel over `planes` planes of `len` values each: `per_plane` blocks per
/// plane, each over a chunk of at most [`Chunks::LEN`] consecutive values (the `Chunk` layout of
/// `model/cuda/ops.cu`), so that a few large planes still spread over the whole GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunks {
    /// Planes.
    pub planes: usize,
    /// Blocks (chunks) per plane, at least one.
    pub per_plane: usize,
}

impl Chunks {
    /// Values per chunk (the last chunk of a plane may be shorter).
    pub const LEN: usize = 32 * THREADS as usize;

    /// The chunks of `planes` planes of `len` values.
    pub fn new(planes: usize, len: usize) -> Self {
        Self {
            planes,
            per_plane: len.div_ceil(Self::LEN).max(1),
        }
    }

    /// Every chunk of every plane.
    pub fn blocks(&self) -> usize {
        self.planes * self.per_plane
    }

    /// A buffer for one partial result per chunk, in block order (every block writes its own,
    /// so it is not zeroed).
    pub fn partials(&self, dev: &CudaDevice) -> Result<CudaSlice<f64>> {
        // SAFETY: the chunked kernels write the partial of every block they launch, and nothing
        // reads the buffer before them.
        unsafe { dev.alloc::<f64>(self.blocks().max(1)) }
    }

    /// One block per chunk (an error beyond CUDA's grid).
    pub fn config(&self) -> Result<LaunchConfig> {
        let blocks = u32::try_from(self.blocks())
            .ok()
            .filter(|&b| b < i32::MAX as u32)
            .ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "{} planes of {} chunks exceed a CUDA grid",
                    self.planes, self.per_plane
                ))
            })?;
        Ok(LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        })
    }
}

/// One block per row, `rows` rows.
pub(crate) fn rows(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Runs `f`; while a [`profile`] is being taken, waits for `dev` before and after it and records
/// the time between under `name()`.
pub(crate) fn timed<T>(
    dev: &CudaDevice,
    name: impl FnOnce() -> String,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let (out, elapsed) = profile::measure(|| dev.synchronize(), f)?;
    if let Some(elapsed) = elapsed {
        profile::record(&name(), elapsed);
    }
    Ok(out)
}

/// Launches kernel `$name` of the ops' module on `$dev` with `$config` and the arguments in
/// order (skipped for an empty grid). The arguments must match the kernel's signature in
/// `model/cuda/ops.cu` in order and type, and the buffers the element counts passed with them.
macro_rules! launch {
    ($dev:expr, $name:expr, $config:expr, $($arg:expr),* $(,)?) => {{
        let config: $crate::ops::cuda::LaunchConfig = $config;
        if config.grid_dim.0 > 0 {
            let func = $dev.get_or_load_custom_func(
                $name,
                $crate::ops::cuda::MODULE,
                $crate::ops::cuda::PTX,
            )?;
            let mut builder = func.builder();
            $( $crate::ops::cuda::PushKernelArg::arg(&mut builder, $arg); )*
            $crate::ops::cuda::timed($dev, || $name.to_string(), || {
                // SAFETY: the caller passes the kernel's arguments in order and type.
                candle_core::cuda_backend::WrapErr::w(unsafe { builder.launch(config) })
                    .map(|_| ())
            })?;
        }
    }};
}
pub(crate) use launch;

/// Extents and window of a pooling, as the kernels' `Pool` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolArgs {
    /// Input extents (d, h, w).
    pub input: [u64; 3],
    /// Output extents.
    pub output: [u64; 3],
    /// Window extents.
    pub kernel: [u64; 3],
    /// Window step.
    pub stride: [u64; 3],
    /// Padding on both sides.
    pub padding: [u64; 3],
}

// SAFETY: plain `repr(C)` data laid out as `struct Pool` in ops.cu.
unsafe impl DeviceRepr for PoolArgs {}

/// A norm's planes and activation, as the kernels' `NormPlanes` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct NormPlanes {
    /// Values per (sample, channel) plane.
    pub voxels: u64,
    /// Chunks per plane ([`Chunks::per_plane`]).
    pub chunks: u64,
    /// Values per chunk ([`Chunks::LEN`]).
    pub chunk_len: u64,
    /// Planes (channels) per normalised span.
    pub per_group: u64,
    /// Channels.
    pub c: u64,
    /// 1 when LeakyReLU follows the norm.
    pub has_slope: i32,
    /// LeakyReLU's negative slope.
    pub slope: f32,
}

impl NormPlanes {
    /// Planes of `voxels` values in `chunks`, `per_group` per span, `c` channels, and the
    /// LeakyReLU slope if one follows.
    pub fn new(
        voxels: usize,
        chunks: Chunks,
        per_group: usize,
        c: usize,
        slope: Option<f32>,
    ) -> Self {
        Self {
            voxels: voxels as u64,
            chunks: chunks.per_plane as u64,
            chunk_len: Chunks::LEN as u64,
            per_group: per_group as u64,
            c: c as u64,
            has_slope: i32::from(slope.is_some()),
            slope: slope.unwrap_or(0.0),
        }
    }
}

// SAFETY: plain `repr(C)` data laid out as `struct NormPlanes` in ops.cu (five 64-bit integers,
// an int and a float).
unsafe impl DeviceRepr for NormPlanes {}

/// Input and output extents of a resampling, as the kernels' `Extents` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResampleArgs {
    /// Input extents (d, h, w).
    pub input: [u64; 3],
    /// Output extents.
    pub output: [u64; 3],
}

// SAFETY: plain `repr(C)` data laid out as `struct Extents` in ops.cu.
unsafe impl DeviceRepr for ResampleArgs {}

/// The default memory pool of `dev`'s GPU, where the device's allocations are made.
fn memory_pool(
    dev: &CudaDevice,
) -> Result<candle_core::cuda_backend::cudarc::driver::sys::CUmemoryPool> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let stream = dev.cuda_stream();
    let context = stream.context();
    context.bind_to_thread().w()?;
    let mut pool = std::ptr::null_mut();
    // SAFETY: the context is current and `pool` is a valid out-pointer.
    unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, context.cu_device()) }
        .result()
        .w()?;
    Ok(pool)
}

/// Sets `dev` up as metakd uses it. Its slices go untracked: cudarc otherwise records and waits
/// on two events per slice at every allocation and kernel argument, to order uses across
/// streams, and here there is one. And its memory pool keeps freed memory for later allocations
/// instead of handing it back to the driver at every synchronisation (a training step would map
/// its memory afresh each time), as PyTorch's caching allocator does.
pub fn prepare_device(dev: &CudaDevice) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    // SAFETY: everything metakd runs on `dev` (Candle's ops, the kernels here, cuDNN's handle,
    // copies to and from the host) is queued on the device's one stream, so stream order alone
    // orders every use and every free of a slice.
    unsafe { dev.disable_event_tracking() };
    let pool = memory_pool(dev)?;
    let mut keep_all = u64::MAX;
    // SAFETY: RELEASE_THRESHOLD is a 64-bit attribute; `keep_all` outlives the call.
    unsafe {
        sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut keep_all as *mut u64).cast(),
        )
    }
    .result()
    .w()?;
    Ok(())
}

/// Hands the memory `dev`'s pool keeps without using back to the driver, so that another process
/// on the same GPU (the GPU check's PyTorch twin) finds it free.
pub fn release_pool_memory(dev: &CudaDevice) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    // Frees queued on the stream return their memory to the pool once the stream reaches them.
    dev.synchronize()?;
    let pool = memory_pool(dev)?;
    // SAFETY: `pool` is the device's default pool; trimming releases only memory no allocation
    // holds.
    unsafe { sys::cuMemPoolTrimTo(pool, 0) }.result().w()?;
    Ok(())
}

/// The most bytes `dev`'s allocations have held at once since [`reset_peak_memory`].
pub fn peak_memory(dev: &CudaDevice) -> Result<u64> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let pool = memory_pool(dev)?;
    let mut value: u64 = 0;
    // SAFETY: USED_MEM_HIGH is a 64-bit attribute; `value` outlives the call.
    unsafe {
        sys::cuMemPoolGetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
            (&mut value as *mut u64).cast(),
        )
    }
    .result()
    .w()?;
    Ok(value)
}

/// Starts a new [`peak_memory`] measurement.
pub fn reset_peak_memory(dev: &CudaDevice) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let pool = memory_pool(dev)?;
    let mut zero: u64 = 0;
    // SAFETY: as in `peak_memory`; setting USED_MEM_HIGH to 0 resets it.
    unsafe {
        sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
            (&mut zero as *mut u64).cast(),
        )
    }
    .result()
    .w()?;
    Ok(())
}
