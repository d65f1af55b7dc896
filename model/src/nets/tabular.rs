//! MetaKD for modality tables (Flex-MoE's ADNI setting): a two-layer MLP per modality into a
//! shared embedding, the mean fill of a missing modality's embedding, and a linear classifier
//! over the concatenated embeddings. Distillation and the meta step act on the embeddings
//! `[n, modalities, embedding]`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::fused_head::{fused_logits, importance_weighted_logits, ModalityClassifier};

/// Sizes of the tabular classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TabularConfig {
    /// Hidden width of each modality's MLP.
    pub hidden: usize,
    /// Width of the shared embedding.
    pub embedding: usize,
    /// Classes.
    pub classes: usize,
    /// Features of each modality.
    pub inputs: Vec<usize>,
}

impl Default for TabularConfig {
    fn default() -> Self {
        Self {
            hidden: 64,
            embedding: 32,
            classes: 3,
            inputs: vec![1, 1, 1, 1],
        }
    }
}

/// One modality's MLP: linear, ReLU, linear, ReLU.
#[derive(Debug, Clone)]
struct ModalityMlp {
    hidden: Linear,
    project: Linear,
}

impl ModalityMlp {
    fn new(cfg: &TabularConfig, input: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            hidden: linear(input, cfg.hidden, vb.pp("hidden"))?,
            project: linear(cfg.hidden, cfg.embedding, vb.pp("project"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.project
            .forward(&self.hidden.forward(x)?.relu()?)?
            .relu()
    }
}

/// The tabular MetaKD classifier.
#[derive(Debug, Clone)]
pub struct TabularClassifier {
    encoders: Vec<ModalityMlp>,
    head: Linear,
}

impl TabularClassifier {
    /// Builds the network under `vb` (`encoders.<m>.…`, `head.…`).
    pub fn new(cfg: &TabularConfig, vb: VarBuilder) -> Result<Self> {
        let encoders = cfg
            .inputs
            .iter()
            .enumerate()
            .map(|(m, &input)| ModalityMlp::new(cfg, input, vb.pp(format!("encoders.{m}"))))
            .collect::<Result<Vec<_>>>()?;
        let head = linear(cfg.embedding * cfg.inputs.len(), cfg.classes, vb.pp("head"))?;
        Ok(Self { encoders, head })
    }

    /// The embeddings `[n, modalities, embedding]` of each modality's features `[n, features]`
    /// (a missing modality's rows may hold anything: its embedding is replaced by the fill).
    pub fn encode(&self, inputs: &[Tensor]) -> Result<Tensor> {
        let embeddings = self
            .encoders
            .iter()
            .zip(inputs)
            .map(|(e, x)| e.forward(x))
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&embeddings, 1)
    }

    /// Class logits of embeddings whose missing modalities take the mean of the available ones.
    pub fn classify(&self, embeddings: &Tensor, available: &[bool]) -> Result<Tensor> {
        fused_logits(&self.head, embeddings, available)
    }

    /// Class logits with every embedding scaled by its importance `omega [modalities]`.
    pub fn classify_weighted(&self, embeddings: &Tensor, omega: &Tensor) -> Result<Tensor> {
        importance_weighted_logits(&self.head, embeddings, omega)
    }
}

impl ModalityClassifier for TabularClassifier {
    /// Runs every modality's MLP (a missing modality's rows hold the training mean).
    fn embed(&self, inputs: &[Tensor], _available: &[bool]) -> Result<Tensor> {
        self.encode(inputs)
    }

    fn head(&self) -> &Linear {
        &self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn a_missing_modality_takes_the_mean_of_the_others() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let cfg = TabularConfig {
            inputs: vec![3, 5, 2],
            classes: 2,
            ..Default::default()
        };
        let net = TabularClassifier::new(&cfg, vb).unwrap();
        let d = Device::Cpu;
        let inputs: Vec<Tensor> = cfg
            .inputs
            .iter()
            .map(|&k| Tensor::randn(0f32, 1.0, (4, k), &d).unwrap())
            .collect();
        let e = net.encode(&inputs).unwrap();
        assert_eq!(e.dims(), &[4, 3, 32]);
        let logits = net.classify(&e, &[true, false, true]).unwrap();
        let mean =
            ((e.narrow(1, 0, 1).unwrap() + e.narrow(1, 2, 1).unwrap()).unwrap() / 2.0).unwrap();
        let filled = Tensor::cat(
            &[
                &e.narrow(1, 0, 1).unwrap(),
                &mean,
                &e.narrow(1, 2, 1).unwrap(),
            ],
            1,
        )
        .unwrap();
        let expected = net.classify(&filled, &[true, true, true]).unwrap();
        let diff = (logits - expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "{diff}");
        let names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
        assert!(names.contains(&"encoders.2.project.weight".to_string()));
    }
}
