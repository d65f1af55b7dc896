//! What a task brings to MetaKD: its per-modality encoder, its head and its loss. The method
//! ([`super::training_loss`], [`super::direct_meta_step`], [`super::lookahead_gradient`]) is
//! written once against this trait; 3D segmentation, AV-MNIST and the modality tables each
//! implement it.

use candle_core::{Result, Tensor, Var};

/// A task loss with its parts (Dice and BCE for segmentation, cross-entropy alone for
/// classification).
pub trait TaskLoss {
    /// The loss that is minimised.
    fn total(&self) -> Result<Tensor>;
}

impl TaskLoss for Tensor {
    fn total(&self) -> Result<Tensor> {
        Ok(self.clone())
    }
}

/// A multi-modal task trained with MetaKD.
pub trait MetaKdTask {
    /// A batch's inputs, every modality (a missing one may hold anything).
    type Inputs;
    /// A batch's targets.
    type Targets;
    /// The per-modality encodings of a batch.
    type Encoding;
    /// The task loss.
    type Loss: TaskLoss;

    /// Encodes every modality of `inputs` through the shared encoder(s), the modalities missing
    /// from `available` as the task treats them (zeroed input, or zeros without running the
    /// encoder): the head replaces them anyway.
    fn encode(&self, inputs: &Self::Inputs, available: &[bool]) -> Result<Self::Encoding>;

    /// The encoding cut off from the autograd graph (the meta step learns ω only).
    fn detach(&self, encoding: &Self::Encoding) -> Self::Encoding;

    /// The feature of each modality that the distillation compares, `[n, ...]` each.
    fn distilled_features(&self, encoding: &Self::Encoding) -> Result<Vec<Tensor>>;

    /// The task's output with the modalities in `available`, missing ones filled with the
    /// mean of the available ones' features.
    fn head(&self, encoding: &Self::Encoding, available: &[bool]) -> Result<Tensor>;

    /// The task's output with each modality's feature scaled by its importance `omega [m]`
    /// (the meta step's forward pass, no fill).
    fn weighted_head(&self, encoding: &Self::Encoding, omega: &Tensor) -> Result<Tensor>;

    /// The task loss of `output` against `targets`.
    fn loss(&self, output: &Tensor, targets: &Self::Targets) -> Result<Self::Loss>;

    /// The network's trainable parameters in a fixed order (the lookahead meta rule moves them).
    fn parameters(&self) -> Vec<Var>;
}
