//! The learned modality importance (method spec, section 4): logits w and ω = softmax(w).

use candle_core::Tensor;
use candle_core::{DType, Device, Result, Var, D};

/// The learned modality importance: logits w ∈ R^M and ω = softmax(w).
#[derive(Debug, Clone)]
pub struct ImportanceWeights {
    logits: Var,
}

impl ImportanceWeights {
    /// Logits drawn from U[0, 1) with the device's random generator (seed it first).
    pub fn new_random(m: usize, device: &Device) -> Result<Self> {
        Ok(Self {
            logits: Var::rand(0f32, 1f32, m, device)?,
        })
    }

    /// Logits with the given values.
    pub fn from_logits(values: &[f32], device: &Device) -> Result<Self> {
        Ok(Self {
            logits: Var::from_slice(values, values.len(), device)?,
        })
    }

    /// The trainable logits w.
    pub fn logits(&self) -> &Var {
        &self.logits
    }

    /// ω = softmax(w), differentiable with respect to w.
    pub fn omega(&self) -> Result<Tensor> {
        candle_nn::ops::softmax(self.logits.as_tensor(), D::Minus1)
    }

    /// Current values of w.
    pub fn logit_values(&self) -> Result<Vec<f32>> {
        self.logits.to_dtype(DType::F32)?.to_vec1()
    }

    /// Current values of ω.
    pub fn omega_values(&self) -> Result<Vec<f32>> {
        self.omega()?.to_vec1()
    }
}
