//! The fusing decoder: takes the channel-concatenated bottleneck features of all modalities and,
//! at every level, the concatenated skip features through a 1×1×1 projection.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{Preset, SegmenterConfig};
use super::layers::{Classifier, ConvBlock, ResidualBlock, Upsample2x};
use crate::ops::{self, ResampleTo};

/// One decoder level: upsample, add the projected skips, residual block.
#[derive(Debug, Clone)]
struct UpLevel {
    up: Upsample2x,
    skip_proj: ConvBlock,
    refine: ResidualBlock,
}

/// The channel plan of a decoder, derived from a preset's sizes.
struct DecoderPlan {
    /// A 1×1×1 block fusing the concatenated bottleneck features (`small`), from → to channels.
    fuse: Option<(usize, usize)>,
    /// Channels entering the first transposed convolution.
    input: usize,
    /// Per skip level, finest first: the skip features' channels per modality and the level's
    /// output channels.
    levels: Vec<(usize, usize)>,
    /// Final trilinear upsampling of the logits (`reference`: × (1, 2, 2)).
    final_scale: Option<[f64; 3]>,
}

impl DecoderPlan {
    fn of(cfg: &SegmenterConfig) -> Self {
        let m = cfg.modalities;
        match cfg.preset {
            Preset::Small => {
                let widths = &cfg.small.widths;
                let deepest = *widths.last().expect("at least one level");
                let skips = &widths[..widths.len() - 1];
                Self {
                    fuse: Some((m * deepest, deepest)),
                    input: deepest,
                    levels: skips.iter().map(|&w| (w, w)).collect(),
                    final_scale: None,
                }
            }
            Preset::Reference => {
                let sizes = &cfg.reference;
                let outputs = sizes.decoder_widths.iter().rev();
                Self {
                    fuse: None,
                    input: m * sizes.aspp_width,
                    levels: sizes
                        .skip_widths()
                        .into_iter()
                        .zip(outputs.copied())
                        .collect(),
                    final_scale: Some([1.0, 2.0, 2.0]),
                }
            }
        }
    }
}

/// The decoder (parameters `fuse.*` for `small`, `up.{l}.*` per skip level l, `classifier.*`).
#[derive(Debug, Clone)]
pub struct Decoder {
    fuse: Option<ConvBlock>,
    levels: Vec<UpLevel>,
    classifier: Classifier,
    final_scale: Option<[f64; 3]>,
}

impl Decoder {
    /// Builds the decoder of `cfg` for `cfg.modalities` modalities.
    pub fn new(cfg: &SegmenterConfig, vb: VarBuilder) -> Result<Self> {
        let plan = DecoderPlan::of(cfg);
        let m = cfg.modalities;
        let slope = cfg.negative_slope;
        let fuse = plan
            .fuse
            .map(|(ci, co)| ConvBlock::new(ci, co, 1, 1, slope, vb.pp("fuse")))
            .transpose()?;
        let mut levels = Vec::new();
        let mut ci = plan.input;
        for (l, &(skip, co)) in plan.levels.iter().enumerate().rev() {
            let vb = vb.pp("up").pp(l);
            levels.push(UpLevel {
                up: Upsample2x::new(ci, co, vb.pp("transposed"))?,
                skip_proj: ConvBlock::new(m * skip, co, 1, 1, slope, vb.pp("skip"))?,
                refine: ResidualBlock::new(co, slope, vb.pp("refine"))?,
            });
            ci = co;
        }
        let classifier = Classifier::new(
            ci,
            cfg.out_channels,
            cfg.has_classifier_bias(),
            vb.pp("classifier"),
        )?;
        Ok(Self {
            fuse,
            levels,
            classifier,
            final_scale: plan.final_scale,
        })
    }

    /// Logits from the fused bottleneck `[n, m·c, ...]` and the fused skips, finest level first
    /// (each `[n, m·c_l, ...]`).
    pub fn forward(&self, fused_bottleneck: &Tensor, fused_skips: &[Tensor]) -> Result<Tensor> {
        let mut h = match &self.fuse {
            Some(fuse) => fuse.forward(fused_bottleneck)?,
            None => fused_bottleneck.clone(),
        };
        for (level, skip) in self.levels.iter().zip(fused_skips.iter().rev()) {
            let up = level.up.forward(&h)?;
            h = level
                .refine
                .forward(&(up + level.skip_proj.forward(skip)?)?)?;
        }
        let logits = self.classifier.forward(&h)?;
        match self.final_scale {
            Some(scale) => ops::upsample_trilinear3d(&logits, ResampleTo::Scale(scale), false),
            None => Ok(logits),
        }
    }
}
