//! The ops on CUDA devices (`cuda` feature): launching the kernels of `model/cuda/ops.cu`
//! (compiled to PTX at build time) and the convolutions on cuDNN's N-d convolution.
//!
//! Every function takes contiguous f32 storage, as the CPU ops do, and returns new storage.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cudnn::{
    self, sys::cudnnConvolutionMode_t, sys::cudnnMathType_t, sys::cudnnTensorFormat_t, Cudnn,
};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr};
pub(crate) use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, DeviceId, WrapErr};
use candle_core::{bail, DType, Layout, Result};

use super::geometry::Geometry;

/// The PTX of `model/cuda/ops.cu`.
pub(crate) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/metakd_ops.ptx"));
/// The module name the kernels are loaded under.
pub(crate) const MODULE: &str = "metakd_ops";
/// Threads per block of the element-wise kernels and of the per-row reductions.
const THREADS: u32 = 256;

static TF32: AtomicBool = AtomicBool::new(false);

/// Lets cuDNN's f32 convolutions use TF32 tensor cores (faster, about 1e-3 relative error; off
/// by default, so results match the CPU ops within 1e-4).
pub fn set_tf32(enabled: bool) {
    TF32.store(enabled, Ordering::Relaxed);
}

/// Whether TF32 convolutions are enabled ([`set_tf32`]).
pub fn tf32() -> bool {
    TF32.load(Ordering::Relaxed)
}

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

/// New device memory of `n` f32 values, zeroed when `zeroed` (outputs that kernels accumulate
/// into).
pub(crate) fn output(dev: &CudaDevice, n: usize, zeroed: bool) -> Result<CudaSlice<f32>> {
    if zeroed {
        dev.alloc_zeros::<f32>(n)
    } else {
        // SAFETY: every kernel that writes into a non-zeroed output writes each of its values.
        unsafe { dev.alloc::<f32>(n) }
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

/// One block per row, `rows` rows.
pub(crate) fn rows(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
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
            // SAFETY: the caller passes the kernel's arguments in order and type.
            candle_core::cuda_backend::WrapErr::w(unsafe { builder.launch(config) })?;
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

thread_local! {
    static CUDNN: RefCell<HashMap<DeviceId, Arc<Cudnn>>> = RefCell::new(HashMap::new());
}

/// This thread's cuDNN handle of `dev`, on the device's stream.
fn cudnn_handle(dev: &CudaDevice) -> Result<Arc<Cudnn>> {
    CUDNN.with(|handles| {
        if let Some(handle) = handles.borrow().get(&dev.id()) {
            return Ok(handle.clone());
        }
        let handle = Cudnn::new(dev.cuda_stream()).map_err(cudnn_error)?;
        handles.borrow_mut().insert(dev.id(), handle.clone());
        Ok(handle)
    })
}

fn cudnn_error(e: cudnn::CudnnError) -> candle_core::Error {
    candle_core::Error::Cuda(Box::new(e))
}

/// Strides of a contiguous tensor of `dims`.
fn contiguous_strides(dims: &[i32]) -> Vec<i32> {
    let mut strides = vec![1i32; dims.len()];
    for a in (0..dims.len() - 1).rev() {
        strides[a] = strides[a + 1] * dims[a + 1];
    }
    strides
}

/// The descriptors of one convolution.
struct ConvDescriptors {
    conv: cudnn::ConvDescriptor<f32>,
    x: cudnn::TensorDescriptor<f32>,
    w: cudnn::FilterDescriptor<f32>,
    y: cudnn::TensorDescriptor<f32>,
}

fn i32s(values: &[usize]) -> Result<Vec<i32>> {
    values
        .iter()
        .map(|&v| {
            i32::try_from(v)
                .map_err(|_| candle_core::Error::Msg(format!("{v} exceeds cuDNN's 32-bit extents")))
        })
        .collect()
}

fn descriptors(handle: &Arc<Cudnn>, g: &Geometry) -> Result<ConvDescriptors> {
    let p = g.params;
    let mut conv = handle
        .create_convnd::<f32>(
            &i32s(&p.padding)?,
            &i32s(&p.stride)?,
            &i32s(&p.dilation)?,
            cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
        )
        .map_err(cudnn_error)?;
    conv.set_group_count(p.groups as i32).map_err(cudnn_error)?;
    conv.set_math_type(if tf32() {
        cudnnMathType_t::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
    } else {
        cudnnMathType_t::CUDNN_FMA_MATH
    })
    .map_err(cudnn_error)?;
    let x_dims = i32s(&[g.n, g.c, g.input[0], g.input[1], g.input[2]])?;
    let y_dims = i32s(&g.output_dims())?;
    let w_dims = i32s(&[g.co, g.c / p.groups, g.kernel[0], g.kernel[1], g.kernel[2]])?;
    Ok(ConvDescriptors {
        conv,
        x: handle
            .create_nd_tensor::<f32>(&x_dims, &contiguous_strides(&x_dims))
            .map_err(cudnn_error)?,
        w: handle
            .create_nd_filter::<f32>(cudnnTensorFormat_t::CUDNN_TENSOR_NCHW, &w_dims)
            .map_err(cudnn_error)?,
        y: handle
            .create_nd_tensor::<f32>(&y_dims, &contiguous_strides(&y_dims))
            .map_err(cudnn_error)?,
    })
}

/// Workspace of `bytes` bytes (at least one, so that the pointer is valid); cuDNN does not read
/// it before writing.
fn workspace(dev: &CudaDevice, bytes: usize) -> Result<CudaSlice<u8>> {
    // SAFETY: a scratch buffer that cuDNN writes before it reads.
    unsafe { dev.alloc::<u8>(bytes.max(1)) }
}

/// cuDNN's choice of algorithm for each convolution geometry, direction and math mode, made once
/// per thread (the heuristics query and the choice cost more than a small convolution).
struct AlgorithmCache<A> {
    chosen: RefCell<HashMap<(DeviceId, Geometry, bool), A>>,
}

impl<A: Copy> AlgorithmCache<A> {
    fn new() -> Self {
        Self {
            chosen: RefCell::new(HashMap::new()),
        }
    }

    /// The algorithm for `g` on `dev`, picked by `pick` the first time.
    fn get(
        &self,
        dev: &CudaDevice,
        g: &Geometry,
        pick: impl FnOnce() -> std::result::Result<A, cudnn::CudnnError>,
    ) -> Result<A> {
        let key = (dev.id(), *g, tf32());
        if let Some(&algo) = self.chosen.borrow().get(&key) {
            return Ok(algo);
        }
        let algo = pick().map_err(cudnn_error)?;
        self.chosen.borrow_mut().insert(key, algo);
        Ok(algo)
    }
}

thread_local! {
    static FORWARD: AlgorithmCache<cudnn::sys::cudnnConvolutionFwdAlgo_t> = AlgorithmCache::new();
    static BACKWARD_DATA: AlgorithmCache<cudnn::sys::cudnnConvolutionBwdDataAlgo_t> =
        AlgorithmCache::new();
    static BACKWARD_FILTER: AlgorithmCache<cudnn::sys::cudnnConvolutionBwdFilterAlgo_t> =
        AlgorithmCache::new();
}

/// `y = conv3d(x, w)` on cuDNN.
pub(crate) fn conv_forward(
    dev: &CudaDevice,
    x: &CudaView<f32>,
    w: &CudaView<f32>,
    g: &Geometry,
) -> Result<CudaSlice<f32>> {
    let handle = cudnn_handle(dev)?;
    let d = descriptors(&handle, g)?;
    let op = cudnn::ConvForward {
        conv: &d.conv,
        x: &d.x,
        w: &d.w,
        y: &d.y,
    };
    let algo = FORWARD.with(|cache| cache.get(dev, g, || op.pick_algorithm()))?;
    let mut ws = workspace(dev, op.get_workspace_size(algo).map_err(cudnn_error)?)?;
    let mut y = output(dev, g.n * g.co * g.output_volume(), false)?;
    // SAFETY: the descriptors describe `x`, `w` and `y` (contiguous f32 of these extents).
    unsafe { op.launch(algo, Some(&mut ws), (1.0, 0.0), x, w, &mut y) }.map_err(cudnn_error)?;
    Ok(y)
}

/// `dx = data(dy, w)`, the gradient of `conv3d` with respect to its input, on cuDNN.
pub(crate) fn conv_backward_data(
    dev: &CudaDevice,
    dy: &CudaView<f32>,
    w: &CudaView<f32>,
    g: &Geometry,
) -> Result<CudaSlice<f32>> {
    let handle = cudnn_handle(dev)?;
    let d = descriptors(&handle, g)?;
    let op = cudnn::ConvBackwardData {
        conv: &d.conv,
        dx: &d.x,
        w: &d.w,
        dy: &d.y,
    };
    let algo = BACKWARD_DATA.with(|cache| cache.get(dev, g, || op.pick_algorithm()))?;
    let mut ws = workspace(dev, op.get_workspace_size(algo).map_err(cudnn_error)?)?;
    let mut dx = output(dev, g.n * g.c * g.input_volume(), false)?;
    // SAFETY: as in `conv_forward`.
    unsafe { op.launch(algo, Some(&mut ws), (1.0, 0.0), &mut dx, w, dy) }.map_err(cudnn_error)?;
    Ok(dx)
}

/// `dw = filter(x, dy)`, the gradient of `conv3d` with respect to its weight, on cuDNN.
pub(crate) fn conv_backward_filter(
    dev: &CudaDevice,
    x: &CudaView<f32>,
    dy: &CudaView<f32>,
    g: &Geometry,
) -> Result<CudaSlice<f32>> {
    let handle = cudnn_handle(dev)?;
    let d = descriptors(&handle, g)?;
    let op = cudnn::ConvBackwardFilter {
        conv: &d.conv,
        x: &d.x,
        dw: &d.w,
        dy: &d.y,
    };
    let algo = BACKWARD_FILTER.with(|cache| cache.get(dev, g, || op.pick_algorithm()))?;
    let mut ws = workspace(dev, op.get_workspace_size(algo).map_err(cudnn_error)?)?;
    let weights = g.co * (g.c / g.params.groups) * g.kernel_volume();
    let mut dw = output(dev, weights, false)?;
    // SAFETY: as in `conv_forward`.
    unsafe { op.launch(algo, Some(&mut ws), (1.0, 0.0), x, &mut dw, dy) }.map_err(cudnn_error)?;
    Ok(dw)
}

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
