//! The fusing decoder: takes the channel-concatenated bottleneck features of all modalities and,
//! at every level, the concatenated skip features through a 1×1×1 projection.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::SegmenterConfig;
use super::layers::{Classifier, ConvBlock, ResidualBlock, Upsample2x};

/// One decoder level: upsample, add the projected skips, residual block.
#[derive(Debug, Clone)]
struct UpLevel {
    up: Upsample2x,
    skip_proj: ConvBlock,
    refine: ResidualBlock,
}

/// The decoder (parameters `fuse.*`, `up.{l}.*`, `classifier.*`).
#[derive(Debug, Clone)]
pub struct Decoder {
    fuse: ConvBlock,
    levels: Vec<UpLevel>,
    classifier: Classifier,
}

impl Decoder {
    /// Builds the decoder of `cfg` for `cfg.modalities` modalities.
    pub fn new(cfg: &SegmenterConfig, vb: VarBuilder) -> Result<Self> {
        let m = cfg.modalities;
        let slope = cfg.negative_slope;
        let widths = &cfg.widths;
        let deepest = *widths.last().expect("at least one level");
        let fuse = ConvBlock::new(m * deepest, deepest, 1, 1, slope, vb.pp("fuse"))?;
        let mut levels = Vec::new();
        for l in (0..widths.len() - 1).rev() {
            let vb = vb.pp("up").pp(l);
            levels.push(UpLevel {
                up: Upsample2x::new(widths[l + 1], widths[l], vb.pp("transposed"))?,
                skip_proj: ConvBlock::new(m * widths[l], widths[l], 1, 1, slope, vb.pp("skip"))?,
                refine: ResidualBlock::new(widths[l], slope, vb.pp("refine"))?,
            });
        }
        let classifier = Classifier::new(widths[0], cfg.out_channels, vb.pp("classifier"))?;
        Ok(Self {
            fuse,
            levels,
            classifier,
        })
    }

    /// Logits from the fused bottleneck `[n, m·c, ...]` and the fused skips, finest level first
    /// (each `[n, m·c_l, ...]`).
    pub fn forward(&self, fused_bottleneck: &Tensor, fused_skips: &[Tensor]) -> Result<Tensor> {
        let mut h = self.fuse.forward(fused_bottleneck)?;
        for (level, skip) in self.levels.iter().zip(fused_skips.iter().rev()) {
            let up = level.up.forward(&h)?;
            h = level
                .refine
                .forward(&(up + level.skip_proj.forward(skip)?)?)?;
        }
        self.classifier.forward(&h)
    }
}
