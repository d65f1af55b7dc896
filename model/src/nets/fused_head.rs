//! A linear classification head over the concatenated per-modality embeddings of a classifier,
//! with the fill of missing modalities (training and evaluation) or the importance scaling of
//! the meta step, and classification as a MetaKD task ([`ClassificationTask`]): the classifiers
//! (AV-MNIST's CNNs, the tables' MLPs) differ only in how they embed each modality.

use candle_core::{Module, Result, Tensor, Var};
use candle_nn::Linear;

use crate::method::{fill_missing, MetaKdTask};

/// Class logits of per-modality embeddings `[n, m, e]` through a linear `head` over their
/// concatenation, missing modalities taking the mean of the available ones' embeddings.
pub fn fused_logits(
    head: &candle_nn::Linear,
    embeddings: &Tensor,
    available: &[bool],
) -> Result<Tensor> {
    head.forward(&fill_missing(embeddings, available)?.flatten_from(1)?)
}

/// Class logits with every embedding scaled by its importance `omega [m]` (the meta step's
/// forward pass, every modality present).
pub fn importance_weighted_logits(
    head: &candle_nn::Linear,
    embeddings: &Tensor,
    omega: &Tensor,
) -> Result<Tensor> {
    let weighted = embeddings.broadcast_mul(&omega.reshape((1, omega.dim(0)?, 1))?)?;
    head.forward(&weighted.flatten_from(1)?)
}

/// A classifier with one encoder per modality and a fused linear head.
pub trait ModalityClassifier {
    /// The embeddings `[n, modalities, embedding]` of `inputs` (one tensor per modality) with
    /// the modalities `available`; a missing modality's embedding may hold anything (the fill
    /// replaces it).
    fn embed(&self, inputs: &[Tensor], available: &[bool]) -> Result<Tensor>;

    /// The linear head over the concatenated embeddings.
    fn head(&self) -> &Linear;
}

/// Classification as a MetaKD task: the classifier's embeddings, its fused head, cross-entropy
/// on class indices.
pub struct ClassificationTask<'a, N> {
    net: &'a N,
    parameters: &'a [Var],
}

impl<'a, N: ModalityClassifier> ClassificationTask<'a, N> {
    /// The task of `net`, whose trainable parameters are `parameters`.
    pub fn new(net: &'a N, parameters: &'a [Var]) -> Self {
        Self { net, parameters }
    }
}

impl<N: ModalityClassifier> MetaKdTask for ClassificationTask<'_, N> {
    type Inputs = Vec<Tensor>;
    type Targets = Tensor;
    type Encoding = Tensor;
    type Loss = Tensor;

    fn encode(&self, inputs: &Vec<Tensor>, available: &[bool]) -> Result<Tensor> {
        self.net.embed(inputs, available)
    }

    fn detach(&self, embeddings: &Tensor) -> Tensor {
        embeddings.detach()
    }

    fn distilled_features(&self, embeddings: &Tensor) -> Result<Vec<Tensor>> {
        (0..embeddings.dim(1)?)
            .map(|i| embeddings.narrow(1, i, 1))
            .collect()
    }

    fn head(&self, embeddings: &Tensor, available: &[bool]) -> Result<Tensor> {
        fused_logits(self.net.head(), embeddings, available)
    }

    fn weighted_head(&self, embeddings: &Tensor, omega: &Tensor) -> Result<Tensor> {
        importance_weighted_logits(self.net.head(), embeddings, omega)
    }

    fn loss(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        candle_nn::loss::cross_entropy(logits, labels)
    }

    fn parameters(&self) -> Vec<Var> {
        self.parameters.to_vec()
    }
}
