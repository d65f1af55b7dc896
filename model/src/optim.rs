//! The optimisers of the method, with PyTorch's update rules and inspectable state (so
//! checkpoints can hold it): SGD with Nesterov momentum for the network, Adam with L2 weight decay
//! for the importance logits.

use candle_core::{backprop::GradStore, Result, Tensor, Var};

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

    /// One step with learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        for (var, buffer) in self.vars.iter().zip(self.momentum_buffers.iter_mut()) {
            let Some(g) = grads.get(var) else { continue };
            // Buffers are cut off from the autograd graph, or each step would keep the last alive.
            let g = if self.weight_decay > 0.0 {
                (g + (var.as_tensor() * self.weight_decay)?)?.detach()
            } else {
                g.detach()
            };
            let b = match buffer.take() {
                Some(b) => ((b * self.momentum)? + &g)?.detach(),
                None => g.clone(),
            };
            let update = (&g + (&b * self.momentum)?)?;
            var.set(&(var.as_tensor() - (update * lr)?)?)?;
            *buffer = Some(b);
        }
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
