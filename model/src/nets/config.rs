//! Sizes and switches of the MetaKD segmentation network.

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

/// Configuration of [`super::MetaKdSegmenter`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmenterConfig {
    /// Number of modalities M (BraTS: 4, in the order FLAIR, T1, T1ce, T2).
    pub modalities: usize,
    /// Channels per encoder level, finest first; the last is the bottleneck width. Every level
    /// after the first halves the resolution, so crop sizes must be divisible by 2^(levels−1).
    pub widths: Vec<usize>,
    /// Output channels (ET, WT, TC).
    pub out_channels: usize,
    /// Negative slope of the LeakyReLU activations.
    pub negative_slope: f64,
    /// Skip features of missing modalities.
    pub fill_skips: FillSkips,
}

impl SegmenterConfig {
    /// The `small` preset: four levels of 8, 16, 32 and 64 channels, for CPU demos and tests.
    pub fn small() -> Self {
        Self {
            modalities: 4,
            widths: vec![8, 16, 32, 64],
            out_channels: 3,
            negative_slope: 0.01,
            fill_skips: FillSkips::Zero,
        }
    }

    /// The factor every crop extent must be divisible by.
    pub fn size_divisor(&self) -> usize {
        1 << (self.widths.len() - 1)
    }
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self::small()
    }
}
