//! The MetaKD segmentation network: a modality-shared encoder, mean fill of missing bottleneck
//! features, and a decoder fusing all modalities (method spec, sections 2 and 3).

use candle_core::{bail, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{FillSkips, SegmenterConfig};
use super::decoder::Decoder;
use super::encoder::Encoder;
use crate::method::{check_available, fill_missing};

/// The encoder's outputs for every modality of a batch, stacked along a modality axis: modality
/// `i` of sample `s` is `[s, i]`. Stacked, the channel concatenation the decoder fuses is a
/// reshape, with no copy in either direction.
#[derive(Debug, Clone)]
pub struct ModalityFeatures {
    /// Bottleneck features f_m, `[n, m, c, d, h, w]`.
    pub bottleneck: Tensor,
    /// Skip features per level (finest first), each `[n, m, c_l, d_l, h_l, w_l]`.
    pub skips: Vec<Tensor>,
}

impl ModalityFeatures {
    /// The bottleneck feature of each modality, `[n, c, d, h, w]` each.
    pub fn modality_bottlenecks(&self) -> Result<Vec<Tensor>> {
        let m = self.bottleneck.dim(1)?;
        (0..m)
            .map(|i| self.bottleneck.narrow(1, i, 1)?.squeeze(1))
            .collect()
    }

    /// Features where every missing modality takes `zero`'s features of that modality (the
    /// encoder's response to a zero image, computed once for one sample and shared by every
    /// sample) and every available one keeps its own.
    pub fn with_missing_as(&self, available: &[bool], zero: &ModalityFeatures) -> Result<Self> {
        if available.iter().all(|&a| a) {
            return Ok(self.clone());
        }
        let pick = |own: &Tensor, zero: &Tensor| -> Result<Tensor> {
            let n = own.dim(0)?;
            let mut per_modality = Vec::with_capacity(available.len());
            for (i, &a) in available.iter().enumerate() {
                let source = if a { own } else { zero };
                let t = source.narrow(1, i, 1)?;
                let mut dims = t.dims().to_vec();
                dims[0] = n;
                per_modality.push(t.broadcast_as(dims)?);
            }
            Tensor::cat(&per_modality, 1)
        };
        Ok(Self {
            bottleneck: pick(&self.bottleneck, &zero.bottleneck)?,
            skips: self
                .skips
                .iter()
                .zip(&zero.skips)
                .map(|(own, z)| pick(own, z))
                .collect::<Result<_>>()?,
        })
    }

    /// A copy cut off from the autograd graph.
    pub fn detach(&self) -> Self {
        Self {
            bottleneck: self.bottleneck.detach(),
            skips: self.skips.iter().map(Tensor::detach).collect(),
        }
    }
}

/// Views `t [n·m, ...]` (sample-major) as `[n, m, ...]`.
fn stack_modalities(t: &Tensor, n: usize, m: usize) -> Result<Tensor> {
    let mut dims = vec![n, m];
    dims.extend_from_slice(&t.dims()[1..]);
    t.reshape(dims)
}

/// Views `t [n, m, c, ...]` as the channel concatenation `[n, m·c, ...]` of its modalities.
fn concatenate_modalities(t: &Tensor) -> Result<Tensor> {
    let dims = t.dims();
    let mut fused = vec![dims[0], dims[1] * dims[2]];
    fused.extend_from_slice(&dims[3..]);
    t.reshape(fused)
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
            bottleneck: stack_modalities(&out.bottleneck, n, m)?,
            skips: out
                .skips
                .iter()
                .map(|s| stack_modalities(s, n, m))
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
        let m = self.config.modalities;
        let scaled = features
            .bottleneck
            .broadcast_mul(&omega.reshape((1, m, 1, 1, 1, 1))?)?;
        self.decode_fused(&scaled, &features.skips)
    }

    /// Decodes stacked features `[n, m, c, ...]` after fusing each level's modalities.
    fn decode_fused(&self, bottleneck: &Tensor, skips: &[Tensor]) -> Result<Tensor> {
        let fused_skips = skips
            .iter()
            .map(concatenate_modalities)
            .collect::<Result<Vec<_>>>()?;
        self.decoder
            .forward(&concatenate_modalities(bottleneck)?, &fused_skips)
    }
}
