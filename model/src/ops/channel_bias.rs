//! A per-channel bias `y[n, c, …] = x[n, c, …] + b[c]` whose weight gradient is one pass of
//! contiguous per-channel sums (Candle's broadcast addition reduces over the batch and spatial
//! axes with its strided generic reduction, which dominated small convolutional networks), and
//! those per-channel sums as an op of their own (Candle's reductions on a GPU give each output
//! value one block, which leaves a large reduction to a few blocks).

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::elementwise::contiguous_f32;

/// Batch, channels and values per channel of a tensor `[n, c, …]`.
fn extents(dims: &[usize], op: &str) -> Result<(usize, usize, usize)> {
    if dims.len() < 2 {
        bail!("{op}: expects [n, c, …], got {dims:?}")
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// Channels and values per channel of `x`, checking that the bias holds one value per channel.
fn bias_extents(op: &str, x: &Layout, bias: &Layout) -> Result<(usize, usize)> {
    let (_, c, inner) = extents(x.dims(), op)?;
    if bias.dims() != [c] {
        bail!("{op}: {c} channels but a bias of dims {:?}", bias.dims())
    }
    Ok((c, inner))
}

struct AddChannelBias;

impl CustomOp2 for AddChannelBias {
    fn name(&self) -> &'static str {
        "add-channel-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (c, inner) = bias_extents(self.name(), l1, l2)?;
        let x = contiguous_f32(s1, l1, self.name())?;
        let b = contiguous_f32(s2, l2, self.name())?;
        let mut y = x.to_vec();
        if inner > 0 {
            y.par_chunks_mut(inner)
                .enumerate()
                .for_each(|(plane, values)| {
                    let bias = b[plane % c];
                    values.iter_mut().for_each(|v| *v += bias);
                });
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
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
        let (c, inner) = bias_extents(self.name(), l1, l2)?;
        let dev = s1.device();
        let (x, bias) = (
            cuda::view(s1, l1, self.name())?,
            cuda::view(s2, l2, self.name())?,
        );
        let n = x.len();
        let mut y = cuda::output(dev, n, false)?;
        if let Some(planes) = n.checked_div(inner) {
            let chunks = cuda::Chunks::new(planes, inner);
            cuda::launch!(
                dev,
                "add_channel_bias",
                chunks.config()?,
                &x,
                &bias,
                &mut y,
                &inner,
                &chunks.per_plane,
                &cuda::Chunks::LEN,
                &c
            );
        }
        Ok((cuda::storage(y, dev), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(channel_sums(grad)?)))
    }
}

/// `[n, c, …] → [c]`: the sum over the batch and every value of each channel.
struct ChannelSums;

impl CustomOp1 for ChannelSums {
    fn name(&self) -> &'static str {
        "channel-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, inner) = extents(l.dims(), self.name())?;
        let x = contiguous_f32(s, l, self.name())?;
        let sums: Vec<f32> = (0..c)
            .into_par_iter()
            .map(|channel| {
                let mut sum = 0f64;
                for sample in 0..n {
                    let start = (sample * c + channel) * inner;
                    sum += x[start..start + inner]
                        .iter()
                        .map(|&v| f64::from(v))
                        .sum::<f64>();
                }
                sum as f32
            })
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        use candle_core::backend::BackendStorage;
        let (n, c, inner) = extents(l.dims(), self.name())?;
        let (dev, x) = (s.device(), cuda::view(s, l, self.name())?);
        let chunks = cuda::Chunks::new(n * c, inner);
        let mut partial = chunks.partials(dev)?;
        cuda::launch!(
            dev,
            "chunk_sums",
            chunks.config()?,
            &x,
            &mut partial,
            &inner,
            &chunks.per_plane,
            &cuda::Chunks::LEN
        );
        let mut sums = cuda::output(dev, c, true)?;
        cuda::launch!(
            dev,
            "channel_sums",
            cuda::elements(c),
            &partial,
            &mut sums,
            &n,
            &c,
            &chunks.per_plane
        );
        Ok((cuda::storage(sums, dev), Shape::from(c)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let mut per_channel = vec![1; arg.rank()];
        per_channel[1] = grad.dim(0)?;
        Ok(Some(grad.reshape(per_channel)?.broadcast_as(arg.shape())?))
    }
}

/// `x [n, c, …] → [c]`: each channel's sum over the batch and all its values, accumulated in
/// double precision; on a GPU every chunk of every channel's plane is summed by its own block.
pub fn channel_sums(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(ChannelSums)
}

/// `x [n, c, …] + b [c]`, broadcast over the batch and the spatial axes.
pub fn add_channel_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&b.contiguous()?, AddChannelBias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_broadcast_addition_forward_and_backward() {
        let d = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4, 5, 6), &d).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 4, &d).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (3, 4, 5, 6), &d).unwrap();
        let ours = add_channel_bias(&x, &b).unwrap();
        let reference = x.broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap()).unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(diff(&ours, &reference), 0.0);
        let g_ours = (ours * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_ref = (reference * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(diff(g_ours.get(&x).unwrap(), g_ref.get(&x).unwrap()), 0.0);
        assert!(diff(g_ours.get(&b).unwrap(), g_ref.get(&b).unwrap()) < 1e-5);
    }

    #[test]
    fn bias_gradient_is_differentiable() {
        // d/dg Σ_c v_c · channel_sums(g)_c = v broadcast over the batch and spatial axes.
        let d = Device::Cpu;
        let g = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 4), &d).unwrap()).unwrap();
        let v = Tensor::new(&[1f32, -2.0, 0.5], &d).unwrap();
        let grads = (channel_sums(&g).unwrap() * &v)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let dg = grads.get(&g).unwrap().to_vec3::<f32>().unwrap();
        for sample in dg {
            for (channel, values) in sample.iter().enumerate() {
                let expected = [1.0, -2.0, 0.5][channel];
                assert!(values.iter().all(|&x| x == expected), "{values:?}");
            }
        }
    }

    #[test]
    fn a_bias_of_the_wrong_length_is_refused() {
        let d = Device::Cpu;
        let x = Tensor::zeros((1, 3, 2), candle_core::DType::F32, &d).unwrap();
        let b = Tensor::zeros(2, candle_core::DType::F32, &d).unwrap();
        let err = add_channel_bias(&x, &b).unwrap_err().to_string();
        assert!(err.contains("3 channels"), "{err}");
    }
}
