//! The optimisers of the method, with PyTorch's update rules and inspectable state (so
//! checkpoints can hold it): SGD with Nesterov momentum for the network, Adam with L2 weight decay
//! for the importance logits.

use candle_core::{backprop::GradStore, bail, CpuStorage, InplaceOp3, Layout, Result, Tensor, Var};
use rayon::prelude::*;

use crate::ops::contiguous_f32;

/// SGD with Nesterov momentum, as `torch.optim.SGD(nesterov=True)`:
/// b ← μ·b + g, p ← p − lr·(g + μ·b).
#[derive(Debug)]
pub struct SgdNesterov {
    vars: Vec<Var>,
    momentum_buffers: Vec<Option<Tensor>>,
    momentum: f64,
    weight_decay: f64,
}

impl SgdNesterov {
    /// An optimiser over `vars`.
    pub fn new(vars: Vec<Var>, momentum: f64, weight_decay: f64) -> Self {
        let momentum_buffers = vec![None; vars.len()];
        Self {
            vars,
            momentum_buffers,
            momentum,
            weight_decay,
        }
    }

    /// The momentum buffer of each variable, in the order given to [`SgdNesterov::new`] (`None`
    /// before the variable's first step).
    pub fn momentum_buffers(&self) -> &[Option<Tensor>] {
        &self.momentum_buffers
    }

    /// Restores momentum buffers saved from [`SgdNesterov::momentum_buffers`].
    pub fn set_momentum_buffers(&mut self, buffers: Vec<Option<Tensor>>) -> Result<()> {
        if buffers.len() != self.vars.len() {
            candle_core::bail!(
                "{} momentum buffers for {} variables",
                buffers.len(),
                self.vars.len()
            )
        }
        for (var, buffer) in self.vars.iter().zip(&buffers) {
            if let Some(b) = buffer {
                if b.dims() != var.dims() {
                    candle_core::bail!(
                        "momentum buffer {:?} for a variable {:?}",
                        b.dims(),
                        var.dims()
                    )
                }
            }
        }
        self.momentum_buffers = buffers;
        Ok(())
    }

    /// One step with learning rate `lr`; parameters without a gradient are left alone. The
    /// momentum buffers and the parameters are updated in place, one pass each.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        for (var, buffer) in self.vars.iter().zip(self.momentum_buffers.iter_mut()) {
            let Some(g) = grads.get(var) else { continue };
            let (g, w) = (g.contiguous()?, var.as_tensor());
            let b = match buffer {
                Some(b) => b,
                // μ·0 + g equals PyTorch's first buffer, g, exactly.
                None => buffer.insert(w.zeros_like()?),
            };
            if !w.device().is_cpu() {
                // On a GPU: the same update from tensor ops (new tensors, not in place).
                let decayed = (&g + (w * self.weight_decay)?)?;
                let next = ((&*b * self.momentum)? + &decayed)?.detach();
                let step = ((decayed + (&next * self.momentum)?)? * lr)?;
                var.set(&(w - step)?.detach())?;
                *b = next;
                continue;
            }
            let (momentum, decay) = (self.momentum as f32, self.weight_decay as f32);
            let lr = lr as f32;
            let momentum_update = InPlaceUpdate {
                name: "sgd-momentum",
                update: |b: &mut f32, g: f32, p: f32| *b = *b * momentum + (g + p * decay),
            };
            let parameter_update = InPlaceUpdate {
                name: "sgd-nesterov",
                update: |p: &mut f32, g: f32, b: f32| *p -= ((g + *p * decay) + b * momentum) * lr,
            };
            // b ← μ·b + (g + λ·p), then p ← p − lr·((g + λ·p) + μ·b).
            b.inplace_op3(&g, w, &momentum_update)?;
            w.inplace_op3(&g, b, &parameter_update)?;
        }
        Ok(())
    }
}

/// An element-wise update `update(dst[i], a[i], b[i])` applied in place to a tensor, with two
/// source tensors of the same length.
struct InPlaceUpdate<F> {
    name: &'static str,
    update: F,
}

/// `f32` slices of an in-place op's destination and two sources, all contiguous and equally long.
fn inplace_slices<'a>(
    op: &str,
    dst: &'a mut CpuStorage,
    dst_l: &Layout,
    [(s1, l1), (s2, l2)]: [(&'a CpuStorage, &Layout); 2],
) -> Result<(&'a mut [f32], &'a [f32], &'a [f32])> {
    let dst = match (dst, dst_l.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => &mut data[start..end],
        _ => bail!("{op}: expects a contiguous f32 destination"),
    };
    let (a, b) = (contiguous_f32(s1, l1, op)?, contiguous_f32(s2, l2, op)?);
    if a.len() != dst.len() || b.len() != dst.len() {
        bail!(
            "{op}: lengths {}, {} and {} differ",
            dst.len(),
            a.len(),
            b.len()
        )
    }
    Ok((dst, a, b))
}

/// Elements per parallel work item of the updates.
const UPDATE_CHUNK: usize = 1 << 15;

impl<F: Fn(&mut f32, f32, f32) + Sync> InplaceOp3 for InPlaceUpdate<F> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (dst, a, b) = inplace_slices(self.name, dst, dst_l, [(s1, l1), (s2, l2)])?;
        dst.par_chunks_mut(UPDATE_CHUNK)
            .zip(a.par_chunks(UPDATE_CHUNK).zip(b.par_chunks(UPDATE_CHUNK)))
            .for_each(|(dst, (a, b))| {
                for ((d, &a), &b) in dst.iter_mut().zip(a).zip(b) {
                    (self.update)(d, a, b);
                }
            });
        Ok(())
    }
}

/// Adam with L2 weight decay added to the gradient, as `torch.optim.Adam(weight_decay=…)`.
#[derive(Debug)]
pub struct Adam {
    vars: Vec<Var>,
    first_moments: Vec<Tensor>,
    second_moments: Vec<Tensor>,
    steps: usize,
    /// Learning rate.
    pub lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl Adam {
    /// Adam over `vars` with betas (0.9, 0.999) and eps 1e-8.
    pub fn new(vars: Vec<Var>, lr: f64, weight_decay: f64) -> Result<Self> {
        let zeros = |v: &Var| v.zeros_like();
        Ok(Self {
            first_moments: vars.iter().map(zeros).collect::<Result<_>>()?,
            second_moments: vars.iter().map(zeros).collect::<Result<_>>()?,
            vars,
            steps: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// The step count and the first and second moments of each variable.
    pub fn state(&self) -> (usize, &[Tensor], &[Tensor]) {
        (self.steps, &self.first_moments, &self.second_moments)
    }

    /// Restores a state saved from [`Adam::state`].
    pub fn set_state(
        &mut self,
        steps: usize,
        first: Vec<Tensor>,
        second: Vec<Tensor>,
    ) -> Result<()> {
        let fits = |moments: &[Tensor]| {
            moments.len() == self.vars.len()
                && moments
                    .iter()
                    .zip(&self.vars)
                    .all(|(m, v)| m.dims() == v.dims())
        };
        if !fits(&first) || !fits(&second) {
            candle_core::bail!("Adam moments do not match the optimised variables")
        }
        self.steps = steps;
        self.first_moments = first;
        self.second_moments = second;
        Ok(())
    }

    /// One step; parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        for ((var, m), v) in self
            .vars
            .iter()
            .zip(self.first_moments.iter_mut())
            .zip(self.second_moments.iter_mut())
        {
            let Some(g) = grads.get(var) else { continue };
            // Moments are cut off from the autograd graph, or each step would keep the last alive.
            let g = (g + (var.as_tensor() * self.weight_decay)?)?.detach();
            *m = ((&*m * self.beta1)? + (&g * (1.0 - self.beta1))?)?.detach();
            *v = ((&*v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?.detach();
            let denom = ((v.clone() / c2)?.sqrt()? + self.eps)?;
            let update = ((m.clone() / c1)? / denom)?;
            var.set(&(var.as_tensor() - (update * self.lr)?)?)?;
        }
        Ok(())
    }
}
