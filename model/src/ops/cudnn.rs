//! The convolutions on CUDA devices: cuDNN's N-d convolution (forward, gradient of the input,
//! gradient of the weight) in f32, or in bf16 with f32 accumulation ([`Precision::Bf16`]: the
//! f32 operands are cast to bf16 and the result back to f32), with the algorithm for each
//! geometry chosen once per thread.
//!
//! By default the choice is measured, as PyTorch's `cudnn.benchmark` does: every algorithm cuDNN
//! can run for the geometry is timed on the call's own tensors, and the fastest is kept (or, of
//! those within 5 % of it, the one with the smallest workspace). [`set_autotune`]`(false)` takes
//! cuDNN's heuristics' first choice instead.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::cuda_backend::cudarc::cudnn::{
    self, sys::cudnnConvolutionBwdDataAlgo_t as DataAlgo,
    sys::cudnnConvolutionBwdFilterAlgo_t as FilterAlgo,
    sys::cudnnConvolutionFwdAlgo_t as ForwardAlgo, sys::cudnnConvolutionMode_t,
    sys::cudnnMathType_t, sys::cudnnTensorFormat_t, Cudnn, CudnnDataType, CudnnError,
};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr, ValidAsZeroBits};
use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage, DeviceId, WrapErr};
use candle_core::{bail, DType, Layout, Result, WithDType};
use half::bf16;

use super::autocast::Precision;
use super::conv::geometry::Geometry;
use super::cuda::{output, storage, timed, view};

/// An element type cuDNN convolves: f32, or bf16 (with f32 accumulation).
trait Element: CudnnDataType + DeviceRepr + ValidAsZeroBits + CudaDType + WithDType {
    /// One and zero, the scaling factors of a plain convolution.
    const ONE: Self;
    const ZERO: Self;
}

impl Element for f32 {
    const ONE: Self = 1.0;
    const ZERO: Self = 0.0;
}

impl Element for bf16 {
    const ONE: Self = bf16::ONE;
    const ZERO: Self = bf16::ZERO;
}

static TF32: AtomicBool = AtomicBool::new(false);
static AUTOTUNE: AtomicBool = AtomicBool::new(true);

/// Lets cuDNN's f32 convolutions use TF32 tensor cores (faster, about 1e-3 relative error; off
/// by default, so results match the CPU ops within 1e-4).
pub fn set_tf32(enabled: bool) {
    TF32.store(enabled, Ordering::Relaxed);
}

/// Whether TF32 convolutions are enabled ([`set_tf32`]).
pub fn tf32() -> bool {
    TF32.load(Ordering::Relaxed)
}

/// Whether each convolution geometry's algorithm is chosen by timing cuDNN's algorithms (the
/// default), or taken from cuDNN's heuristics. Geometries met before keep their choice.
pub fn set_autotune(enabled: bool) {
    AUTOTUNE.store(enabled, Ordering::Relaxed);
}

/// Whether convolution algorithms are chosen by timing them ([`set_autotune`]).
pub fn autotune() -> bool {
    AUTOTUNE.load(Ordering::Relaxed)
}

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

fn cudnn_error(e: CudnnError) -> candle_core::Error {
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

/// The descriptors of one convolution of `T` values (f32 accumulation).
struct ConvDescriptors<T: Element> {
    conv: cudnn::ConvDescriptor<f32>,
    x: cudnn::TensorDescriptor<T>,
    w: cudnn::FilterDescriptor<T>,
    y: cudnn::TensorDescriptor<T>,
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

/// cuDNN's math mode for `T`: tensor cores for bf16; for f32, full f32 arithmetic unless TF32
/// is enabled ([`set_tf32`]).
fn math_type<T: Element>() -> cudnnMathType_t {
    if T::DTYPE == DType::BF16 {
        cudnnMathType_t::CUDNN_TENSOR_OP_MATH
    } else if tf32() {
        cudnnMathType_t::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
    } else {
        cudnnMathType_t::CUDNN_FMA_MATH
    }
}

fn descriptors<T: Element>(handle: &Arc<Cudnn>, g: &Geometry) -> Result<ConvDescriptors<T>> {
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
    conv.set_math_type(math_type::<T>()).map_err(cudnn_error)?;
    let x_dims = i32s(&[g.n, g.c, g.input[0], g.input[1], g.input[2]])?;
    let y_dims = i32s(&g.output_dims())?;
    let w_dims = i32s(&[g.co, g.c / p.groups, g.kernel[0], g.kernel[1], g.kernel[2]])?;
    Ok(ConvDescriptors {
        conv,
        x: handle
            .create_nd_tensor::<T>(&x_dims, &contiguous_strides(&x_dims))
            .map_err(cudnn_error)?,
        w: handle
            .create_nd_filter::<T>(cudnnTensorFormat_t::CUDNN_TENSOR_NCHW, &w_dims)
            .map_err(cudnn_error)?,
        y: handle
            .create_nd_tensor::<T>(&y_dims, &contiguous_strides(&y_dims))
            .map_err(cudnn_error)?,
    })
}

/// Workspace of `bytes` bytes (at least one, so that the pointer is valid); cuDNN does not read
/// it before writing.
fn workspace(dev: &CudaDevice, bytes: usize) -> Result<CudaSlice<u8>> {
    // SAFETY: a scratch buffer that cuDNN writes before it reads.
    unsafe { dev.alloc::<u8>(bytes.max(1)) }
}

/// One algorithm's measured run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trial<A> {
    algo: A,
    seconds: f64,
    workspace: usize,
}

/// Of the trials, the one with the smallest workspace among those within 5 % of the fastest.
fn choose<A: Copy>(trials: &[Trial<A>]) -> Option<A> {
    let fastest = trials.iter().map(|t| t.seconds).min_by(f64::total_cmp)?;
    trials
        .iter()
        .filter(|t| t.seconds <= fastest * 1.05)
        .min_by_key(|t| t.workspace)
        .map(|t| t.algo)
}

/// One direction of a convolution as cuDNN runs it: its algorithms, their workspace and a run.
trait Direction {
    /// cuDNN's algorithm enum of this direction.
    type Algo: Copy + Debug + Eq + std::hash::Hash + 'static;
    /// Every algorithm of the direction.
    const ALGORITHMS: &'static [Self::Algo];
    /// The direction in a profile's names.
    const NAME: &'static str;
    /// The heuristics' first choice.
    fn heuristic(&self) -> std::result::Result<Self::Algo, CudnnError>;
    /// Workspace bytes `algo` needs (an error when it cannot run this geometry).
    fn workspace_size(&self, algo: Self::Algo) -> std::result::Result<usize, CudnnError>;
    /// Runs `algo`, writing the direction's output.
    fn run(
        &mut self,
        algo: Self::Algo,
        workspace: &mut CudaSlice<u8>,
    ) -> std::result::Result<(), CudnnError>;
}

/// cuDNN's choice of algorithm per device, geometry, element type, TF32 setting and choice rule,
/// per thread (a choice costs more than a small convolution).
type Chosen<A> = RefCell<HashMap<(DeviceId, Geometry, DType, bool, bool), A>>;

thread_local! {
    static FORWARD: Chosen<ForwardAlgo> = RefCell::new(HashMap::new());
    static BACKWARD_DATA: Chosen<DataAlgo> = RefCell::new(HashMap::new());
    static BACKWARD_FILTER: Chosen<FilterAlgo> = RefCell::new(HashMap::new());
}

/// Times every algorithm of `op` that runs within `limit` workspace bytes, twice each (the
/// second run counts).
fn trials<D: Direction>(dev: &CudaDevice, op: &mut D, limit: usize) -> Result<Vec<Trial<D::Algo>>> {
    let mut trials = Vec::new();
    for &algo in D::ALGORITHMS {
        let Ok(size) = op.workspace_size(algo) else {
            continue;
        };
        if size > limit {
            continue;
        }
        let Ok(mut ws) = workspace(dev, size) else {
            continue;
        };
        if op.run(algo, &mut ws).is_err() {
            continue;
        }
        dev.synchronize()?;
        let start = Instant::now();
        if op.run(algo, &mut ws).is_err() {
            continue;
        }
        dev.synchronize()?;
        trials.push(Trial {
            algo,
            seconds: start.elapsed().as_secs_f64(),
            workspace: size,
        });
    }
    Ok(trials)
}

/// The algorithm for `op` on geometry `g` with `dtype` values, chosen the first time this thread
/// meets it.
fn algorithm<D: Direction>(
    dev: &CudaDevice,
    (g, dtype): (&Geometry, DType),
    op: &mut D,
    cache: &'static std::thread::LocalKey<Chosen<D::Algo>>,
) -> Result<D::Algo> {
    let key = (dev.id(), *g, dtype, tf32(), autotune());
    if let Some(algo) = cache.with(|c| c.borrow().get(&key).copied()) {
        return Ok(algo);
    }
    let measured = if autotune() {
        // Half the device's free memory bounds a trial's workspace.
        let (free, _) = dev.cuda_stream().context().mem_get_info().w()?;
        choose(&trials(dev, op, free / 2)?)
    } else {
        None
    };
    let algo = match measured {
        Some(algo) => algo,
        None => op.heuristic().map_err(cudnn_error)?,
    };
    cache.with(|c| c.borrow_mut().insert(key, algo));
    Ok(algo)
}

/// The short name of a cuDNN algorithm (`IMPLICIT_PRECOMP_GEMM` for
/// `CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM`).
fn algorithm_name(algo: impl Debug) -> String {
    let full = format!("{algo:?}");
    match full.find("_ALGO_") {
        Some(at) => full[at + "_ALGO_".len()..].to_string(),
        None => full,
    }
}

/// `op` on `dtype` values run with its algorithm and a workspace, timed under its geometry when
/// profiling.
fn execute<D: Direction>(
    dev: &CudaDevice,
    (g, dtype): (&Geometry, DType),
    mut op: D,
    cache: &'static std::thread::LocalKey<Chosen<D::Algo>>,
) -> Result<()> {
    let algo = algorithm(dev, (g, dtype), &mut op, cache)?;
    let mut ws = workspace(dev, op.workspace_size(algo).map_err(cudnn_error)?)?;
    let name = || {
        let [kd, kh, kw] = g.kernel;
        let [d, h, w] = g.input;
        format!(
            "cudnn {} {kd}x{kh}x{kw}/{} {}->{} ch, {d}x{h}x{w} x{} ({}, {})",
            D::NAME,
            g.params.stride[0],
            g.c,
            g.co,
            g.n,
            algorithm_name(algo),
            dtype.as_str()
        )
    };
    timed(dev, name, || op.run(algo, &mut ws).map_err(cudnn_error))
}

struct Forward<'a, T: Element> {
    op: cudnn::ConvForward<'a, T, f32, T>,
    x: &'a CudaView<'a, T>,
    w: &'a CudaView<'a, T>,
    y: &'a mut CudaSlice<T>,
}

impl<T: Element> Direction for Forward<'_, T> {
    type Algo = ForwardAlgo;
    const ALGORITHMS: &'static [ForwardAlgo] = &[
        ForwardAlgo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        ForwardAlgo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        ForwardAlgo::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        ForwardAlgo::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        ForwardAlgo::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        ForwardAlgo::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        ForwardAlgo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        ForwardAlgo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
    ];
    const NAME: &'static str = "forward";

    fn heuristic(&self) -> std::result::Result<ForwardAlgo, CudnnError> {
        self.op.pick_algorithm()
    }

    fn workspace_size(&self, algo: ForwardAlgo) -> std::result::Result<usize, CudnnError> {
        self.op.get_workspace_size(algo)
    }

    fn run(
        &mut self,
        algo: ForwardAlgo,
        ws: &mut CudaSlice<u8>,
    ) -> std::result::Result<(), CudnnError> {
        // SAFETY: the descriptors describe `x`, `w` and `y` (contiguous `T` of these extents).
        unsafe {
            self.op
                .launch(algo, Some(ws), (T::ONE, T::ZERO), self.x, self.w, self.y)
        }
    }
}

struct BackwardData<'a, T: Element> {
    op: cudnn::ConvBackwardData<'a, T, f32, T>,
    dy: &'a CudaView<'a, T>,
    w: &'a CudaView<'a, T>,
    dx: &'a mut CudaSlice<T>,
}

impl<T: Element> Direction for BackwardData<'_, T> {
    type Algo = DataAlgo;
    const ALGORITHMS: &'static [DataAlgo] = &[
        DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
        DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
        DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
        DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
        DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
        DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
    ];
    const NAME: &'static str = "data";

    fn heuristic(&self) -> std::result::Result<DataAlgo, CudnnError> {
        self.op.pick_algorithm()
    }

    fn workspace_size(&self, algo: DataAlgo) -> std::result::Result<usize, CudnnError> {
        self.op.get_workspace_size(algo)
    }

    fn run(
        &mut self,
        algo: DataAlgo,
        ws: &mut CudaSlice<u8>,
    ) -> std::result::Result<(), CudnnError> {
        // SAFETY: as in `Forward::run`.
        unsafe {
            self.op
                .launch(algo, Some(ws), (T::ONE, T::ZERO), self.dx, self.w, self.dy)
        }
    }
}

struct BackwardFilter<'a, T: Element> {
    op: cudnn::ConvBackwardFilter<'a, T, f32, T>,
    x: &'a CudaView<'a, T>,
    dy: &'a CudaView<'a, T>,
    dw: &'a mut CudaSlice<T>,
}

impl<T: Element> Direction for BackwardFilter<'_, T> {
    type Algo = FilterAlgo;
    const ALGORITHMS: &'static [FilterAlgo] = &[
        FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
        FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
        FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
        FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
        FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED,
        FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
    ];
    const NAME: &'static str = "filter";

    fn heuristic(&self) -> std::result::Result<FilterAlgo, CudnnError> {
        self.op.pick_algorithm()
    }

    fn workspace_size(&self, algo: FilterAlgo) -> std::result::Result<usize, CudnnError> {
        self.op.get_workspace_size(algo)
    }

    fn run(
        &mut self,
        algo: FilterAlgo,
        ws: &mut CudaSlice<u8>,
    ) -> std::result::Result<(), CudnnError> {
        // SAFETY: as in `Forward::run`.
        unsafe {
            self.op
                .launch(algo, Some(ws), (T::ONE, T::ZERO), self.x, self.dw, self.dy)
        }
    }
}

/// `y = conv3d(x, w)` on cuDNN.
fn conv_forward<T: Element>(
    dev: &CudaDevice,
    x: &CudaView<T>,
    w: &CudaView<T>,
    g: &Geometry,
) -> Result<CudaSlice<T>> {
    let handle = cudnn_handle(dev)?;
    let d = descriptors::<T>(&handle, g)?;
    // cuDNN writes every value of the output (beta is zero).
    let mut y = output(dev, g.n * g.co * g.output_volume(), false)?;
    let op = Forward {
        op: cudnn::ConvForward {
            conv: &d.conv,
            x: &d.x,
            w: &d.w,
            y: &d.y,
        },
        x,
        w,
        y: &mut y,
    };
    execute(dev, (g, T::DTYPE), op, &FORWARD)?;
    Ok(y)
}

/// `dx = data(dy, w)`, the gradient of `conv3d` with respect to its input, on cuDNN.
fn conv_backward_data<T: Element>(
    dev: &CudaDevice,
    dy: &CudaView<T>,
    w: &CudaView<T>,
    g: &Geometry,
) -> Result<CudaSlice<T>> {
    let handle = cudnn_handle(dev)?;
    let d = descriptors::<T>(&handle, g)?;
    let mut dx = output(dev, g.n * g.c * g.input_volume(), false)?;
    let op = BackwardData {
        op: cudnn::ConvBackwardData {
            conv: &d.conv,
            dx: &d.x,
            w: &d.w,
            dy: &d.y,
        },
        dy,
        w,
        dx: &mut dx,
    };
    execute(dev, (g, T::DTYPE), op, &BACKWARD_DATA)?;
    Ok(dx)
}

/// `dw = filter(x, dy)`, the gradient of `conv3d` with respect to its weight, on cuDNN.
fn conv_backward_filter<T: Element>(
    dev: &CudaDevice,
    x: &CudaView<T>,
    dy: &CudaView<T>,
    g: &Geometry,
) -> Result<CudaSlice<T>> {
    let handle = cudnn_handle(dev)?;
    let d = descriptors::<T>(&handle, g)?;
    let weights = g.co * (g.c / g.params.groups) * g.kernel_volume();
    let mut dw = output(dev, weights, false)?;
    let op = BackwardFilter {
        op: cudnn::ConvBackwardFilter {
            conv: &d.conv,
            x: &d.x,
            dw: &d.w,
            dy: &d.y,
        },
        x,
        dy,
        dw: &mut dw,
    };
    execute(dev, (g, T::DTYPE), op, &BACKWARD_FILTER)?;
    Ok(dw)
}

/// One of the three linear maps of a convolution (`model/src/ops/conv3d.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// `y = conv3d(x, w)`; operands `x`, `w`.
    Forward,
    /// The gradient of the input; operands `dy`, `w`.
    Data,
    /// The gradient of the weight; operands `x`, `dy`.
    Filter,
}

impl Pass {
    fn name(self) -> &'static str {
        match self {
            Pass::Forward => "conv3d",
            Pass::Data => "conv3d-backward-data",
            Pass::Filter => "conv3d-backward-filter",
        }
    }

    fn run<T: Element>(
        self,
        dev: &CudaDevice,
        a: &CudaView<T>,
        b: &CudaView<T>,
        g: &Geometry,
    ) -> Result<CudaSlice<T>> {
        match self {
            Pass::Forward => conv_forward(dev, a, b, g),
            Pass::Data => conv_backward_data(dev, a, b, g),
            Pass::Filter => conv_backward_filter(dev, a, b, g),
        }
    }
}

/// A contiguous f32 operand cast to bf16 on the device.
fn to_bf16(s: &CudaStorage, l: &Layout, pass: Pass) -> Result<CudaStorage> {
    if s.dtype() != DType::F32 {
        bail!(
            "{}: only f32 tensors are supported, got {:?}",
            pass.name(),
            s.dtype()
        )
    }
    timed(
        s.device(),
        || "cast f32 -> bf16 (convolution operands)".to_string(),
        || s.to_dtype(l, DType::BF16),
    )
}

/// The convolution pass `pass` of f32 operands `a` and `b` on geometry `g`, in `precision`; the
/// result is f32.
pub(crate) fn convolution(
    pass: Pass,
    precision: Precision,
    (a, la): (&CudaStorage, &Layout),
    (b, lb): (&CudaStorage, &Layout),
    g: &Geometry,
) -> Result<CudaStorage> {
    let dev = a.device();
    match precision {
        Precision::F32 => {
            let (a, b) = (view(a, la, pass.name())?, view(b, lb, pass.name())?);
            Ok(storage(pass.run(dev, &a, &b, g)?, dev))
        }
        Precision::Bf16 => {
            let (a, b) = (to_bf16(a, la, pass)?, to_bf16(b, lb, pass)?);
            let (a, b) = (a.as_cuda_slice::<bf16>()?, b.as_cuda_slice::<bf16>()?);
            let out = pass.run(dev, &a.as_view(), &b.as_view(), g)?;
            let n = out.len();
            let out = CudaStorage::wrap_cuda_slice(out, dev.clone());
            timed(
                dev,
                || "cast bf16 -> f32 (convolution results)".to_string(),
                || out.to_dtype(&Layout::contiguous(n), DType::F32),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(algo: u8, seconds: f64, workspace: usize) -> Trial<u8> {
        Trial {
            algo,
            seconds,
            workspace,
        }
    }

    #[test]
    fn the_fastest_algorithm_wins_unless_a_near_one_needs_less_workspace() {
        assert_eq!(choose::<u8>(&[]), None);
        let clear_winner = [trial(0, 2.0, 0), trial(1, 1.0, 1 << 30), trial(2, 1.5, 0)];
        assert_eq!(choose(&clear_winner), Some(1));
        let near = [
            trial(0, 1.04, 1 << 20),
            trial(1, 1.0, 1 << 30),
            trial(2, 1.2, 0),
        ];
        assert_eq!(choose(&near), Some(0));
    }

    #[test]
    fn algorithm_names_drop_cudnns_prefix() {
        assert_eq!(
            algorithm_name(ForwardAlgo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM),
            "IMPLICIT_PRECOMP_GEMM"
        );
        assert_eq!(
            algorithm_name(FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3),
            "3"
        );
    }
}
