//! The parts of MetaKD that make it robust to missing modalities (method spec, sections 2, 4
//! and 6): mean fill of missing bottleneck features, importance weights ω = softmax(w), and the
//! pairwise modality-weighted distillation loss.

use candle_core::{bail, DType, Device, Result, Tensor, Var, D};
use serde::{Deserialize, Serialize};

/// Distance between teacher and student features in the distillation loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KdDistance {
    /// Mean absolute difference (the default).
    #[default]
    L1,
    /// Mean squared difference.
    L2,
}

/// Which ordered pairs (teacher i, student j) of available modalities distil.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KdPairs {
    /// Every ordered pair i ≠ j (the default).
    #[default]
    All,
    /// Only pairs whose teacher is more important than the student (ω_i > ω_j).
    TeacherMoreImportant,
}

/// Checks that `available` names at least one of `m` modalities.
pub fn check_available(available: &[bool], m: usize) -> Result<()> {
    if available.len() != m {
        bail!("{} availability flags for {m} modalities", available.len())
    }
    if !available.iter().any(|&a| a) {
        bail!("at least one modality must be available")
    }
    Ok(())
}

/// Replaces the features of missing modalities in `features [n, m, ...]` (modalities stacked on
/// axis 1) by the mean of the available ones; gradient flows through the mean, and available
/// features are returned unchanged. The fill is one product with an m × m mixing matrix, so no
/// modality is cut out of, or copied back into, the stack.
pub fn fill_missing(features: &Tensor, available: &[bool]) -> Result<Tensor> {
    let dims = features.dims();
    if dims.len() < 2 {
        bail!("features must be [n, m, ...], got {:?}", dims)
    }
    let (n, m) = (dims[0], dims[1]);
    check_available(available, m)?;
    let present = available.iter().filter(|&&a| a).count();
    if present == m {
        return Ok(features.clone());
    }
    let share = 1.0 / present as f32;
    let mut mixing = vec![0f32; m * m];
    for (row, &row_available) in available.iter().enumerate() {
        for (col, &col_available) in available.iter().enumerate() {
            mixing[row * m + col] = match (row_available, col_available) {
                (true, _) => f32::from(u8::from(row == col)),
                (false, true) => share,
                (false, false) => 0.0,
            };
        }
    }
    let mixing = Tensor::from_vec(mixing, (1, m, m), features.device())?
        .to_dtype(features.dtype())?
        .broadcast_as((n, m, m))?
        .contiguous()?;
    mixing.matmul(&features.reshape((n, m, ()))?)?.reshape(dims)
}

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

/// One distilling pair of [`kd_pair_terms`]: teacher i, student j and mean |sg(f_i) − f_j| (or the
/// squared difference), differentiable with respect to the student.
#[derive(Debug, Clone)]
pub struct KdPairTerm {
    /// Teacher modality i.
    pub teacher: usize,
    /// Student modality j.
    pub student: usize,
    /// The feature distance, averaged over batch, channels and voxels.
    pub distance: Tensor,
}

/// The pairs that distil among the available modalities and their feature distances (before the
/// importance ratio): every ordered pair i ≠ j of available modalities, or only those with
/// ω_i > ω_j.
pub fn kd_pair_terms(
    features: &[Tensor],
    available: &[bool],
    logits: &[f32],
    distance: KdDistance,
    pairs: KdPairs,
) -> Result<Vec<KdPairTerm>> {
    check_available(available, features.len())?;
    if logits.len() != features.len() {
        bail!(
            "{} importance logits for {} modalities",
            logits.len(),
            features.len()
        )
    }
    let mut terms = Vec::new();
    for (i, teacher) in features.iter().enumerate().filter(|(i, _)| available[*i]) {
        let teacher = teacher.detach();
        for (j, student) in features.iter().enumerate() {
            if j == i || !available[j] {
                continue;
            }
            if pairs == KdPairs::TeacherMoreImportant && logits[i] <= logits[j] {
                continue;
            }
            let diff = (&teacher - student)?;
            let d = match distance {
                KdDistance::L1 => diff.abs()?.mean_all()?,
                KdDistance::L2 => diff.sqr()?.mean_all()?,
            };
            terms.push(KdPairTerm {
                teacher: i,
                student: j,
                distance: d,
            });
        }
    }
    Ok(terms)
}

/// Pairwise modality-weighted distillation between the available modalities' features:
/// Σ_{i∈A} Σ_{j∈A, j≠i} sg(ω_i/ω_j) · mean |sg(f_i) − f_j| (mean over batch, channels and voxels).
/// Zero when a single modality is available.
pub fn pairwise_kd_loss(
    features: &[Tensor],
    available: &[bool],
    logits: &[f32],
    distance: KdDistance,
    pairs: KdPairs,
) -> Result<Tensor> {
    let terms = kd_pair_terms(features, available, logits, distance, pairs)?;
    let mut total = Tensor::zeros((), DType::F32, features[0].device())?;
    for term in terms {
        let ratio = f64::from(logits[term.teacher] - logits[term.student]).exp();
        total = (total + (term.distance * ratio)?)?;
    }
    Ok(total)
}

/// Class logits of per-modality embeddings `[n, m, e]` through a linear `head` over their
/// concatenation, missing modalities taking the mean of the available ones' embeddings.
pub fn fused_logits(
    head: &candle_nn::Linear,
    embeddings: &Tensor,
    available: &[bool],
) -> Result<Tensor> {
    use candle_core::Module;
    head.forward(&fill_missing(embeddings, available)?.flatten_from(1)?)
}

/// Class logits with every embedding scaled by its importance `omega [m]` (the meta step's
/// forward pass, every modality present).
pub fn importance_weighted_logits(
    head: &candle_nn::Linear,
    embeddings: &Tensor,
    omega: &Tensor,
) -> Result<Tensor> {
    use candle_core::Module;
    let weighted = embeddings.broadcast_mul(&omega.reshape((1, omega.dim(0)?, 1))?)?;
    head.forward(&weighted.flatten_from(1)?)
}
