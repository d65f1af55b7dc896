//! MetaKD for classification with two modalities of different shapes (AV-MNIST: a 28 × 28 image
//! and 20 × 20 MFCCs): a small LeNet-style CNN per modality into a shared embedding, the mean
//! fill of a missing modality's embedding, and a linear classifier over the concatenated
//! embeddings. Distillation and the meta step act on the embeddings `[n, 2, embedding]`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::fused_head::{fused_logits, importance_weighted_logits, ModalityClassifier};
use crate::ops::{add_channel_bias, conv3d, max_pool3d, Conv3dParams, Pool3dParams};

/// Sizes of the classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierConfig {
    /// Channels of the two convolution stages of each modality's CNN.
    pub channels: [usize; 2],
    /// Width of the shared embedding.
    pub embedding: usize,
    /// Classes.
    pub classes: usize,
    /// Extents (h, w) of each modality's input, one channel each.
    pub inputs: Vec<[usize; 2]>,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            channels: [16, 32],
            embedding: 64,
            classes: 10,
            inputs: vec![[28, 28], [20, 20]],
        }
    }
}

/// A 3 × 3 convolution with bias and zero padding 1 (PyTorch's `Conv2d(c_in, c_out, 3,
/// padding=1)`: weight `[c_out, c_in, 3, 3]`, bias `[c_out]`), run as a 3D convolution of unit
/// depth by the project's own convolution kernels.
#[derive(Debug, Clone)]
struct SameConv2d {
    weight: Tensor,
    bias: Tensor,
}

impl SameConv2d {
    fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / ((c_in * 9) as f64).sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Self {
            weight: vb.get_with_hints((c_out, c_in, 3, 3), "weight", init)?,
            bias: vb.get_with_hints(c_out, "bias", init)?,
        })
    }

    /// `[n, c_in, h, w]` → `[n, c_out, h, w]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let params = Conv3dParams {
            padding: [0, 1, 1],
            ..Conv3dParams::default()
        };
        let y = conv3d(&x.unsqueeze(2)?, &self.weight.unsqueeze(2)?, params)?.squeeze(2)?;
        add_channel_bias(&y, &self.bias)
    }
}

/// 2 × 2 max pooling with stride 2 of `[n, c, h, w]`.
fn max_pool_2x2(x: &Tensor) -> Result<Tensor> {
    let params = Pool3dParams {
        kernel: [1, 2, 2],
        stride: [1, 2, 2],
        padding: [0; 3],
    };
    max_pool3d(&x.unsqueeze(2)?, params)?.squeeze(2)
}

/// One modality's CNN: two stages of 3 × 3 convolution, 2 × 2 max pooling and ReLU, then a
/// linear map of the flattened maps to the embedding.
#[derive(Debug, Clone)]
pub struct ModalityCnn {
    conv1: SameConv2d,
    conv2: SameConv2d,
    project: Linear,
}

impl ModalityCnn {
    /// Builds the CNN for inputs of `input` extents.
    pub fn new(cfg: &ClassifierConfig, input: [usize; 2], vb: VarBuilder) -> Result<Self> {
        let [c1, c2] = cfg.channels;
        let flat = c2 * (input[0] / 4) * (input[1] / 4);
        Ok(Self {
            conv1: SameConv2d::new(1, c1, vb.pp("conv1"))?,
            conv2: SameConv2d::new(c1, c2, vb.pp("conv2"))?,
            project: linear(flat, cfg.embedding, vb.pp("project"))?,
        })
    }

    /// The embeddings `[n, embedding]` of inputs `[n, 1, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // ReLU is monotone, so pooling first gives the same maps (and gradients) at a quarter
        // of the activation's cost.
        let x = max_pool_2x2(&self.conv1.forward(x)?)?.relu()?;
        let x = max_pool_2x2(&self.conv2.forward(&x)?)?.relu()?;
        self.project.forward(&x.flatten_from(1)?)?.relu()
    }
}

/// The two-modality MetaKD classifier.
#[derive(Debug, Clone)]
pub struct MetaKdClassifier {
    cfg: ClassifierConfig,
    encoders: Vec<ModalityCnn>,
    head: Linear,
}

impl MetaKdClassifier {
    /// Builds the network under `vb` (`encoders.<m>.…`, `head.…`).
    pub fn new(cfg: &ClassifierConfig, vb: VarBuilder) -> Result<Self> {
        let encoders = cfg
            .inputs
            .iter()
            .enumerate()
            .map(|(m, &input)| ModalityCnn::new(cfg, input, vb.pp(format!("encoders.{m}"))))
            .collect::<Result<Vec<_>>>()?;
        let head = linear(cfg.embedding * cfg.inputs.len(), cfg.classes, vb.pp("head"))?;
        Ok(Self {
            cfg: cfg.clone(),
            encoders,
            head,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClassifierConfig {
        &self.cfg
    }

    /// The embeddings `[n, modalities, embedding]` of each modality's input `[n, 1, h, w]`.
    pub fn encode(&self, inputs: &[Tensor]) -> Result<Tensor> {
        let embeddings = self
            .encoders
            .iter()
            .zip(inputs)
            .map(|(e, x)| e.forward(x))
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&embeddings, 1)
    }

    /// The embeddings of the modalities `available`; the others are zeros without running
    /// their CNN (the mean fill of [`Self::classify`] replaces them whatever they hold).
    pub fn encode_available(&self, inputs: &[Tensor], available: &[bool]) -> Result<Tensor> {
        let n = inputs[0].dim(0)?;
        let embeddings = self
            .encoders
            .iter()
            .zip(inputs)
            .zip(available)
            .map(|((e, x), &present)| {
                if present {
                    e.forward(x)
                } else {
                    Tensor::zeros((n, self.cfg.embedding), x.dtype(), x.device())
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&embeddings, 1)
    }

    /// Class logits `[n, classes]` of embeddings `[n, modalities, embedding]`: missing
    /// modalities take the mean of the available ones' embeddings, then the classifier sees
    /// their concatenation.
    pub fn classify(&self, embeddings: &Tensor, available: &[bool]) -> Result<Tensor> {
        fused_logits(&self.head, embeddings, available)
    }

    /// Class logits with every embedding scaled by its importance `omega [modalities]` (the
    /// meta step's forward pass, all modalities present).
    pub fn classify_weighted(&self, embeddings: &Tensor, omega: &Tensor) -> Result<Tensor> {
        importance_weighted_logits(&self.head, embeddings, omega)
    }
}

impl ModalityClassifier for MetaKdClassifier {
    /// Runs only the available modalities' CNNs ([`MetaKdClassifier::encode_available`]).
    fn embed(&self, inputs: &[Tensor], available: &[bool]) -> Result<Tensor> {
        self.encode_available(inputs, available)
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

    fn net() -> (VarMap, MetaKdClassifier) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let net = MetaKdClassifier::new(&ClassifierConfig::default(), vb).unwrap();
        (varmap, net)
    }

    fn inputs(n: usize) -> Vec<Tensor> {
        let d = Device::Cpu;
        vec![
            Tensor::randn(0f32, 1.0, (n, 1, 28, 28), &d).unwrap(),
            Tensor::randn(0f32, 1.0, (n, 1, 20, 20), &d).unwrap(),
        ]
    }

    #[test]
    fn shapes_and_names() {
        let (varmap, net) = net();
        let e = net.encode(&inputs(3)).unwrap();
        assert_eq!(e.dims(), &[3, 2, 64]);
        assert_eq!(net.classify(&e, &[true, false]).unwrap().dims(), &[3, 10]);
        let names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
        assert!(names.contains(&"encoders.1.conv2.weight".to_string()));
        assert!(names.contains(&"head.bias".to_string()));
    }

    #[test]
    fn a_missing_modality_takes_the_available_embedding() {
        let (_, net) = net();
        let e = net.encode(&inputs(2)).unwrap();
        let image_only = net.classify(&e, &[true, false]).unwrap();
        // With the audio embedding replaced by the image's, both halves are the image's.
        let image = e.narrow(1, 0, 1).unwrap();
        let doubled = Tensor::cat(&[&image, &image], 1).unwrap();
        let expected = net.classify(&doubled, &[true, true]).unwrap();
        let diff = (image_only - expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn skipping_a_missing_modality_leaves_the_logits_unchanged() {
        let (_, net) = net();
        let x = inputs(3);
        for available in [[true, false], [false, true]] {
            let all = net.classify(&net.encode(&x).unwrap(), &available).unwrap();
            let some = net
                .classify(&net.encode_available(&x, &available).unwrap(), &available)
                .unwrap();
            let diff = (all - some).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        }
    }

    #[test]
    fn uniform_importance_of_one_leaves_the_logits_unchanged() {
        let (_, net) = net();
        let e = net.encode(&inputs(2)).unwrap();
        let ones = Tensor::ones(2, DType::F32, &Device::Cpu).unwrap();
        let a = net.classify_weighted(&e, &ones).unwrap();
        let b = net.classify(&e, &[true, true]).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}
