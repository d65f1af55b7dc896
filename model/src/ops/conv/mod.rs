//! 3D convolution and transposed convolution as Candle custom ops, differentiable to any order.
//!
//! Three linear maps make up a convolution and its gradients: the forward `conv(x, w)`, its
//! gradient with respect to the input `data(dy, w)` (which is also the transposed convolution) and
//! its gradient with respect to the weight `filter(x, dy)`. Each one's gradients are the other two,
//! so each op's backward pass is built from the ops themselves, in the precision
//! ([`crate::ops::autocast`]) its forward pass ran in.

mod batched;
pub(crate) mod geometry;
mod kernels;
mod shifted;
pub(crate) mod strided_gemm;

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

pub use self::geometry::Conv3dParams;
use self::geometry::Geometry;
use crate::ops::autocast::{self, Precision};
use crate::ops::elementwise::contiguous_f32;

/// `y = conv3d(x, w)`.
struct Conv3dForward {
    params: Conv3dParams,
    precision: Precision,
}

/// `dx = data(dy, w)`, the gradient with respect to the input of a convolution whose input has
/// dims `input_dims`.
struct Conv3dData {
    params: Conv3dParams,
    precision: Precision,
    input_dims: [usize; 5],
}

/// `dw = filter(x, dy)`, the gradient with respect to a weight of dims `weight_dims`.
struct Conv3dFilter {
    params: Conv3dParams,
    precision: Precision,
    weight_dims: [usize; 5],
}

impl CustomOp2 for Conv3dForward {
    fn name(&self) -> &'static str {
        "conv3d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1.dims(), l2.dims(), self.params)?;
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let y = self
            .precision
            .convolve(x, w, |x, w| kernels::forward(x, w, &g));
        Ok((CpuStorage::F32(y), Shape::from(g.output_dims().to_vec())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use crate::ops::cudnn::{convolution, Pass};
        let g = Geometry::new(l1.dims(), l2.dims(), self.params)?;
        let y = convolution(Pass::Forward, self.precision, (s1, l1), (s2, l2), &g)?;
        Ok((y, Shape::from(g.output_dims().to_vec())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dims5 = |t: &Tensor| -> Result<[usize; 5]> { t.dims5().map(|d| d.into()) };
        // An input outside the graph (the images themselves) needs no gradient.
        let dx = if x.track_op() {
            Some(data(dy, w, self.params, self.precision, dims5(x)?)?)
        } else {
            None
        };
        let dw = filter(x, dy, self.params, self.precision, dims5(w)?)?;
        Ok((dx, Some(dw)))
    }
}

impl CustomOp2 for Conv3dData {
    fn name(&self) -> &'static str {
        "conv3d-backward-data"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = gradient_geometry(self.name(), &self.input_dims, l2.dims(), self.params, l1)?;
        let dy = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let dx = self
            .precision
            .convolve(dy, w, |dy, w| kernels::backward_data(dy, w, &g));
        Ok((CpuStorage::F32(dx), Shape::from(self.input_dims.to_vec())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use crate::ops::cudnn::{convolution, Pass};
        let g = gradient_geometry(self.name(), &self.input_dims, l2.dims(), self.params, l1)?;
        let dx = convolution(Pass::Data, self.precision, (s1, l1), (s2, l2), &g)?;
        Ok((dx, Shape::from(self.input_dims.to_vec())))
    }

    fn bwd(
        &self,
        dy: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d_dy = forward(grad, w, self.params, self.precision)?;
        let dw = filter(grad, dy, self.params, self.precision, w.dims5()?.into())?;
        Ok((Some(d_dy), Some(dw)))
    }
}

impl CustomOp2 for Conv3dFilter {
    fn name(&self) -> &'static str {
        "conv3d-backward-filter"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = gradient_geometry(self.name(), l1.dims(), &self.weight_dims, self.params, l2)?;
        let x = contiguous_f32(s1, l1, self.name())?;
        let dy = contiguous_f32(s2, l2, self.name())?;
        let dw = self
            .precision
            .convolve(x, dy, |x, dy| kernels::backward_filter(x, dy, &g));
        Ok((CpuStorage::F32(dw), Shape::from(self.weight_dims.to_vec())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use crate::ops::cudnn::{convolution, Pass};
        let g = gradient_geometry(self.name(), l1.dims(), &self.weight_dims, self.params, l2)?;
        let dw = convolution(Pass::Filter, self.precision, (s1, l1), (s2, l2), &g)?;
        Ok((dw, Shape::from(self.weight_dims.to_vec())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        dy: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = data(dy, grad, self.params, self.precision, x.dims5()?.into())?;
        let d_dy = forward(x, grad, self.params, self.precision)?;
        Ok((Some(dx), Some(d_dy)))
    }
}

/// The geometry of a convolution of an input of dims `x` with a weight of dims `w`, checking
/// that the output gradient's layout `dy` has the convolution's output dims.
fn gradient_geometry(
    op: &str,
    x: &[usize],
    w: &[usize],
    params: Conv3dParams,
    dy: &Layout,
) -> Result<Geometry> {
    let g = Geometry::new(x, w, params)?;
    if dy.dims() != g.output_dims() {
        bail!(
            "{op}: gradient has dims {:?}, expected {:?}",
            dy.dims(),
            g.output_dims()
        )
    }
    Ok(g)
}

/// The convolution `conv3d(x, w)` in `precision`.
fn forward(x: &Tensor, w: &Tensor, params: Conv3dParams, precision: Precision) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv3dForward { params, precision })
}

/// The gradient of `conv3d` with respect to an input of dims `input_dims`, in `precision`.
fn data(
    dy: &Tensor,
    w: &Tensor,
    params: Conv3dParams,
    precision: Precision,
    input_dims: [usize; 5],
) -> Result<Tensor> {
    dy.contiguous()?.apply_op2(
        &w.contiguous()?,
        Conv3dData {
            params,
            precision,
            input_dims,
        },
    )
}

/// The gradient of `conv3d` with respect to a weight of dims `weight_dims`, in `precision`.
fn filter(
    x: &Tensor,
    dy: &Tensor,
    params: Conv3dParams,
    precision: Precision,
    weight_dims: [usize; 5],
) -> Result<Tensor> {
    x.contiguous()?.apply_op2(
        &dy.contiguous()?,
        Conv3dFilter {
            params,
            precision,
            weight_dims,
        },
    )
}

/// 3D convolution (cross-correlation, as PyTorch's `conv3d`) of `x [n, c, d, h, w]` with
/// `w [co, c/groups, kd, kh, kw]`, without bias. Returns `[n, co, od, oh, ow]`. Inside an
/// [`autocast`](crate::ops::autocast::autocast) scope it runs in the scope's precision.
pub fn conv3d(x: &Tensor, w: &Tensor, params: Conv3dParams) -> Result<Tensor> {
    forward(x, w, params, autocast::precision())
}

/// The geometry of a transposed convolution beyond its kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose3dParams {
    /// Upsampling step per axis.
    pub stride: [usize; 3],
    /// Padding removed from both sides of the output, per axis.
    pub padding: [usize; 3],
    /// Extra output on the far side, per axis (smaller than the stride).
    pub output_padding: [usize; 3],
    /// Spacing between kernel taps, per axis.
    pub dilation: [usize; 3],
    /// Channel groups.
    pub groups: usize,
}

impl ConvTranspose3dParams {
    /// Stride `stride` on every axis, no padding, dilation 1, one group.
    pub fn stride(stride: usize) -> Self {
        Self {
            stride: [stride; 3],
            padding: [0; 3],
            output_padding: [0; 3],
            dilation: [1; 3],
            groups: 1,
        }
    }
}

/// 3D transposed convolution of `x [n, ci, d, h, w]` with `w [ci, co/groups, kd, kh, kw]`
/// (PyTorch's layout for `conv_transpose3d`), without bias. Inside an
/// [`autocast`](crate::ops::autocast::autocast) scope it runs in the scope's precision.
pub fn conv_transpose3d(x: &Tensor, w: &Tensor, p: ConvTranspose3dParams) -> Result<Tensor> {
    let (n, ci, d, h, wd) = x.dims5()?;
    let (wci, co_per_group, kd, kh, kw) = w.dims5()?;
    let (stride, padding, output_padding) = (p.stride, p.padding, p.output_padding);
    let co = co_per_group * p.groups;
    if ci != wci {
        bail!("conv_transpose3d: input has {ci} channels but the weight expects {wci}")
    }
    let size = |input: usize, k: usize, axis: usize| -> Result<usize> {
        if output_padding[axis] >= stride[axis] {
            bail!("conv_transpose3d: output padding must be smaller than the stride")
        }
        ((input - 1) * stride[axis] + p.dilation[axis] * (k - 1) + 1 + output_padding[axis])
            .checked_sub(2 * padding[axis])
            .ok_or_else(|| candle_core::Error::Msg("conv_transpose3d: padding too large".into()))
    };
    let out = [n, co, size(d, kd, 0)?, size(h, kh, 1)?, size(wd, kw, 2)?];
    let params = Conv3dParams {
        stride,
        padding,
        dilation: p.dilation,
        groups: p.groups,
    };
    data(x, w, params, autocast::precision(), out)
}
