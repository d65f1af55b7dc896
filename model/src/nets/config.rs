//! Sizes and switches of the MetaKD segmentation networks.

use serde::{Deserialize, Serialize};

/// How the skip features of missing modalities are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FillSkips {
    /// The encoder's response to a zero image (the reference behaviour).
    #[default]
    Zero,
    /// The mean of the available modalities' skip features, like the bottleneck.
    Mean,
}

/// The network topology (`small` or `reference`, in configurations and on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Preset {
    /// A plain convolutional encoder-decoder for CPU demos and tests (sizes in `[model.small]`).
    #[default]
    Small,
    /// The reference network: 3D ResNet-50 + ASPP encoder and residual decoder (method spec,
    /// section 3; sizes in `[model.reference]`).
    Reference,
}

impl Preset {
    /// The name in configurations and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Small => "small",
            Preset::Reference => "reference",
        }
    }
}

/// Sizes of the `small` preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmallSizes {
    /// Channels per encoder level, finest first; the last is the bottleneck width. Every level
    /// after the first halves the resolution.
    pub widths: Vec<usize>,
}

impl Default for SmallSizes {
    fn default() -> Self {
        Self {
            widths: vec![8, 16, 32, 64],
        }
    }
}

/// Sizes of the `reference` preset (defaults: the reference network, about 44 M parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferenceSizes {
    /// Output channels of the 7×7×7 stem convolution.
    pub stem_width: usize,
    /// Inner width of each ResNet stage's bottleneck blocks.
    pub stage_widths: Vec<usize>,
    /// Bottleneck blocks per stage.
    pub blocks: Vec<usize>,
    /// Channel expansion of a bottleneck block (stage output = width × expansion).
    pub expansion: usize,
    /// Width of the 1×1×1 reduction after the backbone, of every ASPP branch and of f_m.
    pub aspp_width: usize,
    /// Dilations of the three-by-three ASPP branches.
    pub aspp_dilations: Vec<usize>,
    /// Output channels of the decoder levels, coarsest first (one per stage).
    pub decoder_widths: Vec<usize>,
}

impl Default for ReferenceSizes {
    fn default() -> Self {
        Self {
            stem_width: 64,
            stage_widths: vec![64, 128, 256, 320],
            blocks: vec![3, 4, 6, 3],
            expansion: 4,
            aspp_width: 256,
            aspp_dilations: vec![2, 4, 8],
            decoder_widths: vec![256, 128, 64, 32],
        }
    }
}

impl ReferenceSizes {
    /// Channels of the skip features, finest first: the stem's, then stages 1 to S−1.
    pub fn skip_widths(&self) -> Vec<usize> {
        let stages = self.stage_widths.len();
        std::iter::once(self.stem_width)
            .chain(
                self.stage_widths[..stages.saturating_sub(1)]
                    .iter()
                    .map(|w| w * self.expansion),
            )
            .collect()
    }

    fn check(&self) -> Result<(), String> {
        let stages = self.stage_widths.len();
        if stages == 0 {
            return Err("model.reference.stage_widths is empty".into());
        }
        if self.blocks.len() != stages || self.decoder_widths.len() != stages {
            return Err(format!(
                "model.reference: {stages} stage widths need as many blocks and decoder widths \
                 (got {} and {})",
                self.blocks.len(),
                self.decoder_widths.len()
            ));
        }
        let sizes = [self.stem_width, self.expansion, self.aspp_width];
        if sizes.iter().chain(&self.stage_widths).any(|&w| w == 0)
            || self.blocks.contains(&0)
            || self.decoder_widths.contains(&0)
            || self.aspp_dilations.contains(&0)
        {
            return Err("model.reference: widths, blocks and dilations must be positive".into());
        }
        Ok(())
    }
}

/// Configuration of [`super::MetaKdSegmenter`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmenterConfig {
    /// The network topology.
    pub preset: Preset,
    /// Number of modalities M (BraTS: 4, in the order FLAIR, T1, T1ce, T2).
    pub modalities: usize,
    /// Output channels (ET, WT, TC).
    pub out_channels: usize,
    /// Negative slope of the LeakyReLU activations.
    pub negative_slope: f64,
    /// Skip features of missing modalities.
    pub fill_skips: FillSkips,
    /// Whether the final 1×1×1 classifier has a bias; unset: none for `reference` (as the
    /// reference network), one for `small`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classifier_bias: Option<bool>,
    /// Sizes used by the `small` preset.
    pub small: SmallSizes,
    /// Sizes used by the `reference` preset.
    pub reference: ReferenceSizes,
}

impl SegmenterConfig {
    /// The network of `preset` at its default sizes.
    pub fn of(preset: Preset) -> Self {
        match preset {
            Preset::Small => Self::small(),
            Preset::Reference => Self::reference(),
        }
    }

    /// The `small` preset: four levels of 8, 16, 32 and 64 channels, for CPU demos and tests.
    pub fn small() -> Self {
        Self {
            preset: Preset::Small,
            modalities: 4,
            out_channels: 3,
            negative_slope: 0.01,
            fill_skips: FillSkips::Zero,
            classifier_bias: None,
            small: SmallSizes::default(),
            reference: ReferenceSizes::default(),
        }
    }

    /// The `reference` preset: the reference network of the method spec (about 44 M parameters).
    pub fn reference() -> Self {
        Self {
            preset: Preset::Reference,
            ..Self::small()
        }
    }

    /// Whether the final classifier has a bias (`classifier_bias`, or the preset's default).
    pub fn has_classifier_bias(&self) -> bool {
        self.classifier_bias.unwrap_or(self.preset == Preset::Small)
    }

    /// The factor each crop extent (d, h, w) must be divisible by.
    pub fn size_divisors(&self) -> [usize; 3] {
        match self.preset {
            Preset::Small => [1 << self.small.widths.len().saturating_sub(1); 3],
            Preset::Reference => {
                // The stem halves h and w only; max-pooling and stages 2.. halve all three.
                let depth = 1 << self.reference.stage_widths.len();
                [depth, depth * 2, depth * 2]
            }
        }
    }

    /// Checks the sizes of the chosen preset.
    pub fn check(&self) -> Result<(), String> {
        if self.modalities == 0 || self.out_channels == 0 {
            return Err("model.modalities and model.out_channels must be positive".into());
        }
        match self.preset {
            Preset::Small => {
                if self.small.widths.is_empty() || self.small.widths.contains(&0) {
                    return Err(
                        "model.small.widths must be a non-empty list of positive widths".into(),
                    );
                }
                Ok(())
            }
            Preset::Reference => self.reference.check(),
        }
    }
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self::small()
    }
}
