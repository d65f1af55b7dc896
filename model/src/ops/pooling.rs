//! 3D max and average pooling (kernel, stride, padding; PyTorch's defaults of dilation 1, floor
//! rounding, and padding counted in the average) and global average pooling.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::elementwise::contiguous_f32;

/// Window of a 3D pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool3dParams {
    /// Window extents.
    pub kernel: [usize; 3],
    /// Step between windows.
    pub stride: [usize; 3],
    /// Implicit padding on both sides (at most half the kernel).
    pub padding: [usize; 3],
}

impl Pool3dParams {
    /// A cubic window of `kernel` with the given stride and padding on every axis.
    pub fn cubic(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            kernel: [kernel; 3],
            stride: [stride; 3],
            padding: [padding; 3],
        }
    }
}

/// Input and output extents of one pooling.
#[derive(Clone, Copy, Debug)]
struct PoolShape {
    planes: usize,
    input: [usize; 3],
    output: [usize; 3],
    params: Pool3dParams,
}

impl PoolShape {
    fn new(dims: &[usize], params: Pool3dParams, op: &str) -> Result<Self> {
        if dims.len() != 5 {
            bail!("{op}: expects [n, c, d, h, w], got {dims:?}")
        }
        let input = [dims[2], dims[3], dims[4]];
        let mut output = [0; 3];
        for a in 0..3 {
            let (k, s, p) = (params.kernel[a], params.stride[a], params.padding[a]);
            if k == 0 || s == 0 || 2 * p > k || input[a] + 2 * p < k {
                bail!("{op}: window {params:?} does not fit input {input:?}")
            }
            output[a] = (input[a] + 2 * p - k) / s + 1;
        }
        Ok(Self {
            planes: dims[0] * dims[1],
            input,
            output,
            params,
        })
    }

    /// The extents and window as the CUDA kernels take them.
    #[cfg(feature = "cuda")]
    fn cuda_args(&self) -> super::cuda::PoolArgs {
        let u = |a: [usize; 3]| a.map(|v| v as u64);
        super::cuda::PoolArgs {
            input: u(self.input),
            output: u(self.output),
            kernel: u(self.params.kernel),
            stride: u(self.params.stride),
            padding: u(self.params.padding),
        }
    }

    fn input_volume(&self) -> usize {
        self.input.iter().product()
    }

    fn output_volume(&self) -> usize {
        self.output.iter().product()
    }

    fn output_dims(&self, dims: &[usize]) -> Shape {
        Shape::from(vec![
            dims[0],
            dims[1],
            self.output[0],
            self.output[1],
            self.output[2],
        ])
    }

    /// Visits every output voxel with its flat index and the in-bounds input range per axis.
    fn for_each_window(&self, mut visit: impl FnMut(usize, [std::ops::Range<usize>; 3])) {
        let p = &self.params;
        let range = |o: usize, a: usize| {
            let start = (o * p.stride[a]).saturating_sub(p.padding[a]);
            let end = (o * p.stride[a] + p.kernel[a])
                .saturating_sub(p.padding[a])
                .min(self.input[a]);
            start..end
        };
        let mut index = 0;
        for z in 0..self.output[0] {
            for y in 0..self.output[1] {
                for x in 0..self.output[2] {
                    visit(index, [range(z, 0), range(y, 1), range(x, 2)]);
                    index += 1;
                }
            }
        }
    }

    fn flat(&self, z: usize, y: usize, x: usize) -> usize {
        (z * self.input[1] + y) * self.input[2] + x
    }

    /// Without padding every window lies inside the input: the flat offsets of its taps from
    /// the window's first voxel, in scan order. None with padding.
    fn unpadded_taps(&self) -> Option<Vec<usize>> {
        if self.params.padding != [0; 3] {
            return None;
        }
        let k = self.params.kernel;
        let mut taps = Vec::with_capacity(k.iter().product());
        for z in 0..k[0] {
            for y in 0..k[1] {
                for x in 0..k[2] {
                    taps.push(self.flat(z, y, x));
                }
            }
        }
        Some(taps)
    }

    /// Visits every output voxel with its flat index and the flat index of its window's first
    /// input voxel (unpadded windows).
    fn for_each_corner(&self, mut visit: impl FnMut(usize, usize)) {
        let s = self.params.stride;
        let mut index = 0;
        for z in 0..self.output[0] {
            for y in 0..self.output[1] {
                let row = self.flat(z * s[0], y * s[1], 0);
                for x in 0..self.output[2] {
                    visit(index, row + x * s[2]);
                    index += 1;
                }
            }
        }
    }

    /// The first input voxel holding the window's maximum (PyTorch's choice among ties).
    fn argmax(&self, plane: &[f32], window: &[std::ops::Range<usize>; 3]) -> Option<usize> {
        let mut best: Option<(usize, f32)> = None;
        for z in window[0].clone() {
            for y in window[1].clone() {
                for x in window[2].clone() {
                    let i = self.flat(z, y, x);
                    if best.is_none_or(|(_, v)| plane[i] > v || plane[i].is_nan()) {
                        best = Some((i, plane[i]));
                    }
                }
            }
        }
        best.map(|(i, _)| i)
    }
}

/// The offset (among `taps`, from `corner`) of the first maximum of an unpadded window; NaN
/// wins, as in PyTorch.
fn first_max(x: &[f32], corner: usize, taps: &[usize]) -> usize {
    let mut best = taps[0];
    for &t in &taps[1..] {
        let v = x[corner + t];
        if v > x[corner + best] || v.is_nan() {
            best = t;
        }
    }
    best
}

struct MaxPool3d {
    params: Pool3dParams,
}

/// (x, dy) → dx: the gradient goes to each window's maximum.
struct MaxPool3dGrad {
    params: Pool3dParams,
}

impl CustomOp1 for MaxPool3d {
    fn name(&self) -> &'static str {
        "max-pool3d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let shape = PoolShape::new(l.dims(), self.params, self.name())?;
        let x = contiguous_f32(s, l, self.name())?;
        let mut y = vec![0f32; shape.planes * shape.output_volume()];
        let taps = shape.unpadded_taps();
        y.par_chunks_mut(shape.output_volume())
            .zip(x.par_chunks(shape.input_volume()))
            .for_each(|(y, x)| match &taps {
                Some(taps) => shape.for_each_corner(|o, corner| {
                    y[o] = x[corner + first_max(x, corner, taps)];
                }),
                None => shape.for_each_window(|o, window| {
                    y[o] = shape.argmax(x, &window).map_or(f32::NEG_INFINITY, |i| x[i]);
                }),
            });
        Ok((CpuStorage::F32(y), shape.output_dims(l.dims())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        use candle_core::backend::BackendStorage;
        let shape = PoolShape::new(l.dims(), self.params, self.name())?;
        let (dev, x) = (s.device(), cuda::view(s, l, self.name())?);
        let (planes, args) = (shape.planes, shape.cuda_args());
        let mut y = cuda::output(dev, planes * shape.output_volume(), false)?;
        cuda::launch!(
            dev,
            "max_pool3d",
            cuda::elements(planes * shape.output_volume()),
            &x,
            &mut y,
            &planes,
            &args
        );
        Ok((cuda::storage(y, dev), shape.output_dims(l.dims())))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dx = x.contiguous()?.apply_op2_no_bwd(
            &grad.contiguous()?,
            &MaxPool3dGrad {
                params: self.params,
            },
        )?;
        Ok(Some(dx))
    }
}

impl CustomOp2 for MaxPool3dGrad {
    fn name(&self) -> &'static str {
        "max-pool3d-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let shape = PoolShape::new(l1.dims(), self.params, self.name())?;
        let x = contiguous_f32(s1, l1, self.name())?;
        let dy = contiguous_f32(s2, l2, self.name())?;
        let mut dx = vec![0f32; x.len()];
        let taps = shape.unpadded_taps();
        dx.par_chunks_mut(shape.input_volume())
            .zip(
                x.par_chunks(shape.input_volume())
                    .zip(dy.par_chunks(shape.output_volume())),
            )
            .for_each(|(dx, (x, dy))| match &taps {
                Some(taps) => shape.for_each_corner(|o, corner| {
                    dx[corner + first_max(x, corner, taps)] += dy[o];
                }),
                None => shape.for_each_window(|o, window| {
                    if let Some(i) = shape.argmax(x, &window) {
                        dx[i] += dy[o];
                    }
                }),
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        use candle_core::backend::BackendStorage;
        let shape = PoolShape::new(l1.dims(), self.params, self.name())?;
        let dev = s1.device();
        let (x, dy) = (
            cuda::view(s1, l1, self.name())?,
            cuda::view(s2, l2, self.name())?,
        );
        let (planes, args) = (shape.planes, shape.cuda_args());
        if dy.len() != planes * shape.output_volume() {
            bail!(
                "{}: {} gradients for {} outputs",
                self.name(),
                dy.len(),
                planes * shape.output_volume()
            )
        }
        let mut dx = cuda::output(dev, x.len(), true)?;
        cuda::launch!(
            dev,
            "max_pool3d_grad",
            cuda::elements(dy.len()),
            &x,
            &dy,
            &mut dx,
            &planes,
            &args
        );
        Ok((cuda::storage(dx, dev), l1.shape().clone()))
    }
}

/// Average pooling and its adjoint, each the other's gradient.
struct AvgPool3d {
    params: Pool3dParams,
    /// Dims of the pooled input: set for the adjoint, which maps outputs back onto inputs.
    adjoint_of: Option<[usize; 5]>,
}

impl CustomOp1 for AvgPool3d {
    fn name(&self) -> &'static str {
        "avg-pool3d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let v = contiguous_f32(s, l, self.name())?;
        let input_dims = self
            .adjoint_of
            .map_or_else(|| l.dims().to_vec(), |d| d.to_vec());
        let shape = PoolShape::new(&input_dims, self.params, self.name())?;
        let scale = 1.0 / self.params.kernel.iter().product::<usize>() as f32;
        let (in_vol, out_vol) = (shape.input_volume(), shape.output_volume());
        match self.adjoint_of {
            None => {
                let mut y = vec![0f32; shape.planes * out_vol];
                y.par_chunks_mut(out_vol)
                    .zip(v.par_chunks(in_vol))
                    .for_each(|(y, x)| {
                        shape.for_each_window(|o, [rz, ry, rx]| {
                            let mut sum = 0f32;
                            for z in rz {
                                for y in ry.clone() {
                                    for x_ in rx.clone() {
                                        sum += x[shape.flat(z, y, x_)];
                                    }
                                }
                            }
                            y[o] = sum * scale;
                        });
                    });
                Ok((CpuStorage::F32(y), shape.output_dims(&input_dims)))
            }
            Some(dims) => {
                let mut dx = vec![0f32; shape.planes * in_vol];
                dx.par_chunks_mut(in_vol)
                    .zip(v.par_chunks(out_vol))
                    .for_each(|(dx, dy)| {
                        shape.for_each_window(|o, [rz, ry, rx]| {
                            for z in rz {
                                for y in ry.clone() {
                                    for x in rx.clone() {
                                        dx[shape.flat(z, y, x)] += dy[o] * scale;
                                    }
                                }
                            }
                        });
                    });
                Ok((CpuStorage::F32(dx), Shape::from(dims.to_vec())))
            }
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        use candle_core::backend::BackendStorage;
        let input_dims = self
            .adjoint_of
            .map_or_else(|| l.dims().to_vec(), |d| d.to_vec());
        let shape = PoolShape::new(&input_dims, self.params, self.name())?;
        let scale = 1.0 / self.params.kernel.iter().product::<usize>() as f32;
        let (dev, v) = (s.device(), cuda::view(s, l, self.name())?);
        let (planes, args) = (shape.planes, shape.cuda_args());
        let outputs = planes * shape.output_volume();
        match self.adjoint_of {
            None => {
                let mut y = cuda::output(dev, outputs, false)?;
                cuda::launch!(
                    dev,
                    "avg_pool3d",
                    cuda::elements(outputs),
                    &v,
                    &mut y,
                    &planes,
                    &args,
                    &scale
                );
                Ok((cuda::storage(y, dev), shape.output_dims(&input_dims)))
            }
            Some(dims) => {
                let mut dx = cuda::output(dev, planes * shape.input_volume(), true)?;
                cuda::launch!(
                    dev,
                    "avg_pool3d_adjoint",
                    cuda::elements(outputs),
                    &v,
                    &mut dx,
                    &planes,
                    &args,
                    &scale
                );
                Ok((cuda::storage(dx, dev), Shape::from(dims.to_vec())))
            }
        }
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let params = self.params;
        let g = match self.adjoint_of {
            None => grad.contiguous()?.apply_op1(AvgPool3d {
                params,
                adjoint_of: Some(arg.dims5()?.into()),
            })?,
            Some(_) => grad.contiguous()?.apply_op1(AvgPool3d {
                params,
                adjoint_of: None,
            })?,
        };
        Ok(Some(g))
    }
}

/// Max pooling of `x [n, c, d, h, w]`; padding counts as −∞.
pub fn max_pool3d(x: &Tensor, params: Pool3dParams) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool3d { params })
}

/// Average pooling of `x [n, c, d, h, w]`; padded voxels count as zeros in the average
/// (PyTorch's `count_include_pad=True`).
pub fn avg_pool3d(x: &Tensor, params: Pool3dParams) -> Result<Tensor> {
    x.contiguous()?.apply_op1(AvgPool3d {
        params,
        adjoint_of: None,
    })
}

/// Mean over every voxel of each channel: `[n, c, d, h, w]` → `[n, c, 1, 1, 1]`.
pub fn global_avg_pool3d(x: &Tensor) -> Result<Tensor> {
    let (n, c, _, _, _) = x.dims5()?;
    x.flatten_from(2)?.mean_keepdim(2)?.reshape((n, c, 1, 1, 1))
}
