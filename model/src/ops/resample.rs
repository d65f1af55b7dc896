//! Trilinear and nearest-neighbour resampling of `[n, c, d, h, w]` volumes, with PyTorch's
//! coordinate conventions (`torch.nn.functional.interpolate`). Both are separable: each volume is
//! resampled by three one-axis passes of two taps per output. Resampling is linear, so the op and
//! its adjoint (the passes transposed, in reverse order) are each the other's gradient.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::elementwise::contiguous_f32;

/// The target of a resampling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResampleTo {
    /// Output extents (d, h, w).
    Size([usize; 3]),
    /// Scale factor per axis; the output extent is floor(input · factor) and source coordinates
    /// use 1/factor, as `interpolate(scale_factor=…)` does.
    Scale([f64; 3]),
}

/// How output voxels read the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResampleMode {
    /// Trilinear interpolation; `align_corners` maps the corner voxels' centres onto each other.
    Trilinear {
        /// PyTorch's `align_corners`.
        align_corners: bool,
    },
    /// The nearest voxel below the source coordinate (PyTorch's `nearest`).
    Nearest,
}

/// Two input indices and their weights for one output index along one axis.
#[derive(Clone, Copy, Debug)]
struct Tap {
    index: [usize; 2],
    weight: [f32; 2],
}

fn axis_taps(input: usize, output: usize, factor: Option<f64>, mode: ResampleMode) -> Vec<Tap> {
    let scale = factor.map_or(input as f64 / output as f64, |f| 1.0 / f);
    (0..output)
        .map(|o| match mode {
            ResampleMode::Nearest => {
                let i = ((o as f64 * scale).floor() as usize).min(input - 1);
                Tap {
                    index: [i, i],
                    weight: [1.0, 0.0],
                }
            }
            ResampleMode::Trilinear { align_corners } => {
                let src = if align_corners {
                    if output > 1 {
                        o as f64 * (input as f64 - 1.0) / (output as f64 - 1.0)
                    } else {
                        0.0
                    }
                } else {
                    ((o as f64 + 0.5) * scale - 0.5).max(0.0)
                };
                let i0 = (src.floor() as usize).min(input - 1);
                let i1 = (i0 + 1).min(input - 1);
                let l1 = (src - i0 as f64) as f32;
                Tap {
                    index: [i0, i1],
                    weight: [1.0 - l1, l1],
                }
            }
        })
        .collect()
}

/// A resampling from `input` to `output` extents, or its adjoint.
#[derive(Clone, Debug)]
struct Resample {
    input: [usize; 3],
    output: [usize; 3],
    taps: [Vec<Tap>; 3],
    adjoint: bool,
}

impl Resample {
    fn in_vol(&self) -> usize {
        self.input.iter().product()
    }

    fn out_vol(&self) -> usize {
        self.output.iter().product()
    }

    /// Resamples one `[d, h, w]` volume along `axis` with that axis's taps (from the input
    /// extent to the output extent), or applies the pass's adjoint (from output to input).
    fn pass(&self, src: &[f32], extents: [usize; 3], axis: usize) -> (Vec<f32>, [usize; 3]) {
        let taps = &self.taps[axis];
        let (n_in, n_out) = (self.input[axis], self.output[axis]);
        let outer: usize = extents[..axis].iter().product();
        let inner: usize = extents[axis + 1..].iter().product();
        let mut next = extents;
        if self.adjoint {
            next[axis] = n_in;
            let mut dst = vec![0f32; outer * n_in * inner];
            for b in 0..outer {
                for (o, tap) in taps.iter().enumerate() {
                    let from = &src[(b * n_out + o) * inner..(b * n_out + o + 1) * inner];
                    for (&index, &weight) in tap.index.iter().zip(&tap.weight) {
                        let to =
                            &mut dst[(b * n_in + index) * inner..(b * n_in + index + 1) * inner];
                        for (t, f) in to.iter_mut().zip(from) {
                            *t += weight * f;
                        }
                    }
                }
            }
            (dst, next)
        } else {
            next[axis] = n_out;
            let mut dst = vec![0f32; outer * n_out * inner];
            for b in 0..outer {
                for (o, tap) in taps.iter().enumerate() {
                    let row0 = &src[(b * n_in + tap.index[0]) * inner..][..inner];
                    let row1 = &src[(b * n_in + tap.index[1]) * inner..][..inner];
                    let [w0, w1] = tap.weight;
                    let to = &mut dst[(b * n_out + o) * inner..(b * n_out + o + 1) * inner];
                    for ((t, a), c) in to.iter_mut().zip(row0).zip(row1) {
                        *t = w0 * a + w1 * c;
                    }
                }
            }
            (dst, next)
        }
    }

    /// Resamples one `[d, h, w]` volume (or applies the adjoint) as three one-axis passes.
    fn volume(&self, src: &[f32]) -> Vec<f32> {
        let (order, start) = if self.adjoint {
            ([0, 1, 2], self.output)
        } else {
            ([2, 1, 0], self.input)
        };
        let (mut data, mut extents) = (src.to_vec(), start);
        for axis in order {
            (data, extents) = self.pass(&data, extents, axis);
        }
        data
    }
}

impl CustomOp1 for Resample {
    fn name(&self) -> &'static str {
        if self.adjoint {
            "resample3d-adjoint"
        } else {
            "resample3d"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let v = contiguous_f32(s, l, self.name())?;
        let dims = l.dims();
        let (from, to) = if self.adjoint {
            (self.out_vol(), self.in_vol())
        } else {
            (self.in_vol(), self.out_vol())
        };
        let planes = dims[0] * dims[1];
        let mut out = vec![0f32; planes * to];
        out.par_chunks_mut(to)
            .zip(v.par_chunks(from))
            .for_each(|(out, v)| out.copy_from_slice(&self.volume(v)));
        let extents = if self.adjoint {
            self.input
        } else {
            self.output
        };
        Ok((
            CpuStorage::F32(out),
            Shape::from(vec![dims[0], dims[1], extents[0], extents[1], extents[2]]),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        use candle_core::backend::BackendStorage;
        let dims = l.dims();
        let (dev, v) = (s.device(), cuda::view(s, l, self.name())?);
        let planes = dims[0] * dims[1];
        let (index, weight): (Vec<u32>, Vec<f32>) = self
            .taps
            .iter()
            .flatten()
            .flat_map(|t| {
                [
                    (t.index[0] as u32, t.weight[0]),
                    (t.index[1] as u32, t.weight[1]),
                ]
            })
            .unzip();
        let (index, weight) = (dev.clone_htod(&index)?, dev.clone_htod(&weight)?);
        let u = |a: [usize; 3]| a.map(|v| v as u64);
        let args = cuda::ResampleArgs {
            input: u(self.input),
            output: u(self.output),
        };
        let outputs = planes * self.out_vol();
        let (out, extents) = if self.adjoint {
            let mut dx = cuda::output(dev, planes * self.in_vol(), true)?;
            cuda::launch!(
                dev,
                "resample3d_adjoint",
                cuda::elements(outputs),
                &v,
                &mut dx,
                &planes,
                &args,
                &index,
                &weight
            );
            (dx, self.input)
        } else {
            let mut y = cuda::output(dev, outputs, false)?;
            cuda::launch!(
                dev,
                "resample3d",
                cuda::elements(outputs),
                &v,
                &mut y,
                &planes,
                &args,
                &index,
                &weight
            );
            (y, self.output)
        };
        Ok((
            cuda::storage(out, dev),
            Shape::from(vec![dims[0], dims[1], extents[0], extents[1], extents[2]]),
        ))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let transposed = Resample {
            adjoint: !self.adjoint,
            ..self.clone()
        };
        Ok(Some(grad.contiguous()?.apply_op1(transposed)?))
    }
}

/// Resamples `x [n, c, d, h, w]` to `to` with `mode`.
pub fn resample3d(x: &Tensor, to: ResampleTo, mode: ResampleMode) -> Result<Tensor> {
    let (_, _, d, h, w) = x.dims5()?;
    let input = [d, h, w];
    let (output, factors) = match to {
        ResampleTo::Size(size) => (size, [None; 3]),
        ResampleTo::Scale(f) => (
            std::array::from_fn(|a| (input[a] as f64 * f[a]).floor() as usize),
            f.map(Some),
        ),
    };
    if output.contains(&0) || input.contains(&0) {
        bail!("resample3d: cannot resample {input:?} to {output:?}")
    }
    let taps = std::array::from_fn(|a| axis_taps(input[a], output[a], factors[a], mode));
    x.contiguous()?.apply_op1(Resample {
        input,
        output,
        taps,
        adjoint: false,
    })
}

/// Trilinear upsampling (or downsampling) of `x [n, c, d, h, w]`.
pub fn upsample_trilinear3d(x: &Tensor, to: ResampleTo, align_corners: bool) -> Result<Tensor> {
    resample3d(x, to, ResampleMode::Trilinear { align_corners })
}

/// Nearest-neighbour upsampling of `x [n, c, d, h, w]`.
pub fn upsample_nearest3d(x: &Tensor, to: ResampleTo) -> Result<Tensor> {
    resample3d(x, to, ResampleMode::Nearest)
}
