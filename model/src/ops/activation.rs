//! LeakyReLU as one fused op (one output tensor, one gradient op) instead of a chain of Candle
//! element-wise ops, alone or after the sum of two tensors (a residual connection).

use super::elementwise::{contiguous_f32, par_map, par_zip_map};
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

struct LeakyRelu {
    slope: f32,
}

/// `grad · (x > 0 ? 1 : slope)`.
struct LeakyReluGrad {
    slope: f32,
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "leaky-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, self.name())?;
        let y = par_map(x, |x| if x > 0.0 { x } else { x * self.slope });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        use candle_core::backend::BackendStorage;
        let (dev, x) = (s.device(), cuda::view(s, l, self.name())?);
        let n = x.len();
        let mut y = cuda::output(dev, n, false)?;
        cuda::launch!(
            dev,
            "leaky_relu",
            cuda::elements(n),
            &x,
            &mut y,
            &n,
            &self.slope
        );
        Ok((cuda::storage(y, dev), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = x
            .contiguous()?
            .apply_op2_no_bwd(&grad.contiguous()?, &LeakyReluGrad { slope: self.slope })?;
        Ok(Some(g))
    }
}

impl CustomOp2 for LeakyReluGrad {
    fn name(&self) -> &'static str {
        "leaky-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(self.name(), l1, l2)?;
        let x = contiguous_f32(s1, l1, self.name())?;
        let g = contiguous_f32(s2, l2, self.name())?;
        let out = par_zip_map(x, g, |x, g| if x > 0.0 { g } else { g * self.slope });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
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
        let dev = s1.device();
        let (x, g) = (
            cuda::view(s1, l1, self.name())?,
            cuda::view(s2, l2, self.name())?,
        );
        let n = x.len();
        if g.len() != n {
            bail!("{}: {} gradients for {n} values", self.name(), g.len())
        }
        let mut out = cuda::output(dev, n, false)?;
        cuda::launch!(
            dev,
            "leaky_relu_grad",
            cuda::elements(n),
            &x,
            &g,
            &mut out,
            &n,
            &self.slope
        );
        Ok((cuda::storage(out, dev), l1.shape().clone()))
    }
}

/// Refuses two arguments of different shapes.
fn same_shape(op: &str, l1: &Layout, l2: &Layout) -> Result<()> {
    if l1.shape() != l2.shape() {
        bail!("{op}: shapes {:?} and {:?} differ", l1.dims(), l2.dims())
    }
    Ok(())
}

/// LeakyReLU of `a + b`.
struct AddLeakyRelu {
    slope: f32,
}

impl CustomOp2 for AddLeakyRelu {
    fn name(&self) -> &'static str {
        "add-leaky-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(self.name(), l1, l2)?;
        let a = contiguous_f32(s1, l1, self.name())?;
        let b = contiguous_f32(s2, l2, self.name())?;
        let y = par_zip_map(a, b, |a, b| {
            let z = a + b;
            if z > 0.0 {
                z
            } else {
                z * self.slope
            }
        });
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
        same_shape(self.name(), l1, l2)?;
        let dev = s1.device();
        let (a, b) = (
            cuda::view(s1, l1, self.name())?,
            cuda::view(s2, l2, self.name())?,
        );
        let n = a.len();
        let mut y = cuda::output(dev, n, false)?;
        cuda::launch!(
            dev,
            "add_leaky_relu",
            cuda::elements(n),
            &a,
            &b,
            &mut y,
            &n,
            &self.slope
        );
        Ok((cuda::storage(y, dev), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // The output has the sign of `a + b` (slope > 0), so it selects the factor.
        let g = res
            .contiguous()?
            .apply_op2_no_bwd(&grad.contiguous()?, &LeakyReluGrad { slope: self.slope })?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// `leaky_relu(a + b, slope)` as one op, forward and backward; `a` and `b` have one shape.
pub fn add_leaky_relu(a: &Tensor, b: &Tensor, slope: f64) -> Result<Tensor> {
    a.contiguous()?.apply_op2(
        &b.contiguous()?,
        AddLeakyRelu {
            slope: slope as f32,
        },
    )
}

/// LeakyReLU: `x` where positive, `slope · x` elsewhere (the gradient at 0 is `slope`, as
/// PyTorch's).
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op1(LeakyRelu {
        slope: slope as f32,
    })
}
