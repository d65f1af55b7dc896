//! 3D max and average pooling (kernel, stride, padding; PyTorch's defaults of dilation 1, floor
//! rounding, and padding counted in the average) and global average pooling.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use std::sync::{Arc, OnceLock};

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

    /// The flat offsets of a whole window's taps from its first voxel, in scan order.
    fn window_taps(&self) -> Vec<usize> {
        let k = self.params.kernel;
        let mut taps = Vec::with_capacity(k.iter().product());
        for z in 0..k[0] {
            for y in 0..k[1] {
                for x in 0..k[2] {
                    taps.push(self.flat(z, y, x));
                }
            }
        }
        taps
    }

    /// Writes the flat index of each window's maximum in `plane` ([`NO_VOXEL`] for a window
    /// without input voxels). Windows wholly inside the input scan their precomputed `taps`.
    fn maxima(&self, plane: &[f32], taps: &[usize], indices: &mut [u32]) {
        let kernel = self.params.kernel;
        self.for_each_window(|o, window| {
            let whole = window.iter().zip(kernel).all(|(r, k)| r.len() == k);
            let index = if whole {
                let corner = self.flat(window[0].start, window[1].start, window[2].start);
                Some(corner + first_max(plane, corner, taps))
            } else {
                self.argmax(plane, &window)
            };
            indices[o] = index.map_or(NO_VOXEL, |i| i as u32);
        });
    }

    /// The maxima's flat indices of every plane of `x`.
    fn all_maxima(&self, x: &[f32], op: &str) -> Result<Vec<u32>> {
        if self.input_volume() >= NO_VOXEL as usize {
            bail!(
                "{op}: planes of {} voxels exceed the 32-bit indices of the maxima",
                self.input_volume()
            )
        }
        let taps = self.window_taps();
        let mut indices = vec![0u32; self.planes * self.output_volume()];
        indices
            .par_chunks_mut(self.output_volume())
            .zip(x.par_chunks(self.input_volume()))
            .for_each(|(indices, plane)| self.maxima(plane, &taps, indices));
        Ok(indices)
    }

    /// `dx`: each output's gradient added to its window's maximum.
    fn scatter(&self, indices: &[u32], dy: &[f32]) -> Vec<f32> {
        let mut dx = vec![0f32; self.planes * self.input_volume()];
        dx.par_chunks_mut(self.input_volume())
            .zip(
                indices
                    .par_chunks(self.output_volume())
                    .zip(dy.par_chunks(self.output_volume())),
            )
            .for_each(|(dx, (indices, dy))| {
                for (&i, &g) in indices.iter().zip(dy) {
                    if i != NO_VOXEL {
                        dx[i as usize] += g;
                    }
                }
            });
        dx
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

/// The offset (among `taps`, from `corner`) of the first maximum of a whole window; NaN wins,
/// as in PyTorch.
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

/// Marks a window without input voxels among the maxima's indices.
const NO_VOXEL: u32 = u32::MAX;

struct MaxPool3d {
    params: Pool3dParams,
    /// The maxima's flat indices, kept by the CPU forward pass for the backward pass (as
    /// PyTorch's `max_pool3d_with_indices`).
    maxima: OnceLock<Arc<[u32]>>,
}

/// (x, dy) → dx: the gradient goes to each window's maximum, found again in x.
struct MaxPool3dGrad {
    params: Pool3dParams,
}

/// dy → dx through the maxima a forward pass found.
struct MaxPool3dScatter {
    shape: PoolShape,
    input_dims: Shape,
    maxima: Arc<[u32]>,
}

impl CustomOp1 for MaxPool3d {
    fn name(&self) -> &'static str {
        "max-pool3d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let shape = PoolShape::new(l.dims(), self.params, self.name())?;
        let x = contiguous_f32(s, l, self.name())?;
        let maxima = shape.all_maxima(x, self.name())?;
        let mut y = vec![0f32; maxima.len()];
        y.par_chunks_mut(shape.output_volume())
            .zip(
                maxima
                    .par_chunks(shape.output_volume())
                    .zip(x.par_chunks(shape.input_volume())),
            )
            .for_each(|(y, (maxima, x))| {
                for (y, &i) in y.iter_mut().zip(maxima) {
                    *y = if i == NO_VOXEL {
                        f32::NEG_INFINITY
                    } else {
                        x[i as usize]
                    };
                }
            });
        // A second forward pass of the same op (there is none in Candle) would find the same.
        let _ = self.maxima.set(maxima.into());
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
        if let Some(maxima) = self.maxima.get() {
            let shape = PoolShape::new(x.dims(), self.params, self.name())?;
            let dx = grad.contiguous()?.apply_op1_no_bwd(&MaxPool3dScatter {
                shape,
                input_dims: x.shape().clone(),
                maxima: maxima.clone(),
            })?;
            return Ok(Some(dx));
        }
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
        check_gradient(self.name(), dy.len(), &shape)?;
        let dx = shape.scatter(&shape.all_maxima(x, self.name())?, dy);
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

/// Fails unless `len` gradients match the pooling's outputs.
fn check_gradient(op: &str, len: usize, shape: &PoolShape) -> Result<()> {
    let outputs = shape.planes * shape.output_volume();
    if len != outputs {
        bail!("{op}: {len} gradients for {outputs} outputs")
    }
    Ok(())
}

impl CustomOp1 for MaxPool3dScatter {
    fn name(&self) -> &'static str {
        "max-pool3d-scatter"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dy = contiguous_f32(s, l, self.name())?;
        check_gradient(self.name(), dy.len(), &self.shape)?;
        let dx = self.shape.scatter(&self.maxima, dy);
        Ok((CpuStorage::F32(dx), self.input_dims.clone()))
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
    x.contiguous()?.apply_op1(MaxPool3d {
        params,
        maxima: OnceLock::new(),
    })
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

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// PyTorch's max pooling by its definition: scan each window in order, keep the first
    /// maximum, let a NaN replace it. Returns the outputs and the gradient of `Σ y·r`.
    fn naive(x: &[f32], dims: [usize; 3], p: Pool3dParams, r: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let out: [usize; 3] =
            std::array::from_fn(|a| (dims[a] + 2 * p.padding[a] - p.kernel[a]) / p.stride[a] + 1);
        let (mut y, mut dx) = (Vec::new(), vec![0f32; x.len()]);
        for oz in 0..out[0] {
            for oy in 0..out[1] {
                for ox in 0..out[2] {
                    let mut best: Option<usize> = None;
                    for kz in 0..p.kernel[0] {
                        for ky in 0..p.kernel[1] {
                            for kx in 0..p.kernel[2] {
                                let at = [
                                    oz * p.stride[0] + kz,
                                    oy * p.stride[1] + ky,
                                    ox * p.stride[2] + kx,
                                ];
                                if (0..3).any(|a| {
                                    at[a] < p.padding[a] || at[a] - p.padding[a] >= dims[a]
                                }) {
                                    continue;
                                }
                                let i = ((at[0] - p.padding[0]) * dims[1] + at[1] - p.padding[1])
                                    * dims[2]
                                    + at[2]
                                    - p.padding[2];
                                if best.is_none_or(|b| x[i] > x[b] || x[i].is_nan()) {
                                    best = Some(i);
                                }
                            }
                        }
                    }
                    let i = best.unwrap();
                    dx[i] += r[y.len()];
                    y.push(x[i]);
                }
            }
        }
        (y, dx)
    }

    #[test]
    fn max_pooling_keeps_pytorchs_maxima_through_both_gradient_paths() {
        let dims = [5, 6, 7];
        // Few distinct values, so most windows hold ties; two NaNs.
        let mut x: Vec<f32> = (0..dims.iter().product::<usize>())
            .map(|i| ((i * 7919) % 5) as f32)
            .collect();
        x[17] = f32::NAN;
        x[101] = f32::NAN;
        let params = [
            Pool3dParams::cubic(3, 2, 1),
            Pool3dParams {
                kernel: [2, 3, 2],
                stride: [1, 2, 3],
                padding: [1, 0, 1],
            },
        ];
        for p in params {
            let shape = PoolShape::new(&[1, 1, dims[0], dims[1], dims[2]], p, "test").unwrap();
            let r: Vec<f32> = (0..shape.output_volume()).map(|i| 1.0 + i as f32).collect();
            let (y_want, dx_want) = naive(&x, dims, p, &r);
            let xv = Var::from_slice(&x, (1, 1, dims[0], dims[1], dims[2]), &Device::Cpu).unwrap();
            let y = max_pool3d(&xv, p).unwrap();
            let y_got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            let same = |a: f32, b: f32| a == b || (a.is_nan() && b.is_nan());
            assert!(
                y_got.iter().zip(&y_want).all(|(&a, &b)| same(a, b)),
                "{p:?}: outputs"
            );
            // Through the maxima the forward pass kept.
            let rt = Tensor::from_slice(&r, y.dims(), &Device::Cpu).unwrap();
            let grads = (&y * &rt).unwrap().sum_all().unwrap().backward().unwrap();
            let dx: Vec<f32> = grads
                .get(&xv)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(dx, dx_want, "{p:?}: gradient through the kept maxima");
            // Through the maxima found again (the path of a forward pass that kept none).
            let dx_again = xv
                .as_tensor()
                .apply_op2_no_bwd(&rt, &MaxPool3dGrad { params: p })
                .unwrap();
            let dx_again: Vec<f32> = dx_again.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(
                dx_again, dx_want,
                "{p:?}: gradient through the maxima found again"
            );
        }
    }
}
