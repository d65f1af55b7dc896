//! The pairwise modality-weighted distillation (method spec, section 4):
//! Σ_{i∈A} Σ_{j∈A, j≠i} sg(ω_i/ω_j) · |sg(f_i) − f_j|, and the settings that choose its distance,
//! its pairs and its weight λ.

use candle_core::{bail, DType, Result, Tensor};
use serde::{Deserialize, Serialize};

use super::fill::check_available;

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

/// The distillation term of a training loss: whether it is on, its weight λ, distance and pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KdSettings {
    /// Whether the loss has a distillation term.
    pub enabled: bool,
    /// Its weight λ.
    pub weight: f64,
    /// Distance between teacher and student features.
    pub distance: KdDistance,
    /// Which pairs distil.
    pub pairs: KdPairs,
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
