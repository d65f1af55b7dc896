//! The MetaKD segmentation network: a modality-shared encoder, mean fill of missing bottleneck
//! features, and a decoder fusing all modalities (method spec, sections 2 and 3).

use candle_core::{bail, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{FillSkips, SegmenterConfig};
use super::decoder::Decoder;
use super::encoder::Encoder;
use crate::metakd::{check_available, fill_missing};

/// The encoder's outputs for every modality of a batch.
#[derive(Debug, Clone)]
pub struct ModalityFeatures {
    /// Bottleneck feature f_m per modality, each `[n, c, d, h, w]`.
    pub bottleneck: Vec<Tensor>,
    /// Skip features per level (finest first), then per modality.
    pub skips: Vec<Vec<Tensor>>,
}

impl ModalityFeatures {
    /// Features where every missing modality takes `zero`'s features (the encoder's response to a
    /// zero image, computed once) and every available one keeps its own. `zero` holds one entry
    /// per level, shared by all modalities.
    pub fn with_missing_as(&self, available: &[bool], zero: &ModalityFeatures) -> Self {
        let pick = |own: &[Tensor], zero: &Tensor| -> Vec<Tensor> {
            own.iter()
                .zip(available)
                .map(|(t, &a)| if a { t.clone() } else { zero.clone() })
                .collect()
        };
        Self {
            bottleneck: pick(&self.bottleneck, &zero.bottleneck[0]),
            skips: self
                .skips
                .iter()
                .zip(&zero.skips)
                .map(|(own, z)| pick(own, &z[0]))
                .collect(),
        }
    }

    /// A copy cut off from the autograd graph.
    pub fn detach(&self) -> Self {
        Self {
            bottleneck: self.bottleneck.iter().map(|t| t.detach()).collect(),
            skips: self
                .skips
                .iter()
                .map(|level| level.iter().map(|t| t.detach()).collect())
                .collect(),
        }
    }
}

/// Splits `t [n·m, ...]` (sample-major) into m tensors `[n, ...]`.
fn split_modalities(t: &Tensor, n: usize, m: usize) -> Result<Vec<Tensor>> {
    let mut dims = vec![n, m];
    dims.extend_from_slice(&t.dims()[1..]);
    let t = t.reshape(dims)?;
    (0..m).map(|i| t.narrow(1, i, 1)?.squeeze(1)).collect()
}

/// The MetaKD segmentation network (parameters `encoder.*` and `decoder.*`).
#[derive(Debug, Clone)]
pub struct MetaKdSegmenter {
    config: SegmenterConfig,
    encoder: Encoder,
    decoder: Decoder,
}

impl MetaKdSegmenter {
    /// Builds the network of `config`, creating or loading its parameters through `vb`.
    pub fn new(config: &SegmenterConfig, vb: VarBuilder) -> Result<Self> {
        if let Err(problem) = config.check() {
            bail!("{problem}")
        }
        Ok(Self {
            config: config.clone(),
            encoder: Encoder::new(config, vb.pp("encoder"))?,
            decoder: Decoder::new(config, vb.pp("decoder"))?,
        })
    }

    /// The configuration the network was built from.
    pub fn config(&self) -> &SegmenterConfig {
        &self.config
    }

    /// Runs the shared encoder on every modality of `x [n, m, d, h, w]` in one call (the batch is
    /// reshaped to `[n·m, 1, d, h, w]`).
    pub fn encode(&self, x: &Tensor) -> Result<ModalityFeatures> {
        let (n, m, d, h, w) = x.dims5()?;
        if m != self.config.modalities {
            bail!(
                "input has {m} modalities, the network expects {}",
                self.config.modalities
            )
        }
        let out = self.encoder.forward(&x.reshape((n * m, 1, d, h, w))?)?;
        Ok(ModalityFeatures {
            bottleneck: split_modalities(&out.bottleneck, n, m)?,
            skips: out
                .skips
                .iter()
                .map(|s| split_modalities(s, n, m))
                .collect::<Result<_>>()?,
        })
    }

    /// Decodes with the modalities in `available`: missing bottleneck features are replaced by the
    /// mean of the available ones, missing skip features are kept (the encoder's response to a
    /// zero image) or filled likewise, as the configuration says.
    pub fn decode(&self, features: &ModalityFeatures, available: &[bool]) -> Result<Tensor> {
        check_available(available, self.config.modalities)?;
        let bottleneck = fill_missing(&features.bottleneck, available)?;
        let skips = match self.config.fill_skips {
            FillSkips::Zero => features.skips.clone(),
            FillSkips::Mean => features
                .skips
                .iter()
                .map(|level| fill_missing(level, available))
                .collect::<Result<_>>()?,
        };
        self.decode_fused(&bottleneck, &skips)
    }

    /// Decodes with every modality present and each bottleneck feature scaled by its importance,
    /// f_m ← ω_m · f_m (the meta phase's forward pass). `omega` has one entry per modality.
    pub fn decode_weighted(&self, features: &ModalityFeatures, omega: &Tensor) -> Result<Tensor> {
        let scaled = features
            .bottleneck
            .iter()
            .enumerate()
            .map(|(m, f)| f.broadcast_mul(&omega.narrow(0, m, 1)?.reshape((1, 1, 1, 1, 1))?))
            .collect::<Result<Vec<_>>>()?;
        self.decode_fused(&scaled, &features.skips)
    }

    fn decode_fused(&self, bottleneck: &[Tensor], skips: &[Vec<Tensor>]) -> Result<Tensor> {
        let fused = Tensor::cat(bottleneck, 1)?;
        let fused_skips = skips
            .iter()
            .map(|level| Tensor::cat(level, 1))
            .collect::<Result<Vec<_>>>()?;
        self.decoder.forward(&fused, &fused_skips)
    }
}
