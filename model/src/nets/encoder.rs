//! The modality-shared encoders: one network that sees each modality's single-channel image on
//! its own and returns the skip features of every resolution level and the bottleneck feature f_m.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{Preset, SegmenterConfig};
use super::encoding::EncoderOutput;
use super::layers::ConvBlock;
use super::resnet::ResnetAsppEncoder;

/// The encoder of a preset.
#[derive(Debug, Clone)]
pub enum Encoder {
    /// The `small` preset's plain encoder.
    Plain(PlainEncoder),
    /// The `reference` preset's ResNet + ASPP encoder.
    ResnetAspp(Box<ResnetAsppEncoder>),
}

impl Encoder {
    /// Builds the encoder of `cfg`'s preset.
    pub fn new(cfg: &SegmenterConfig, vb: VarBuilder) -> Result<Self> {
        Ok(match cfg.preset {
            Preset::Small => Self::Plain(PlainEncoder::new(cfg, vb)?),
            Preset::Reference => Self::ResnetAspp(Box::new(ResnetAsppEncoder::new(cfg, vb)?)),
        })
    }

    /// Encodes `x [b, 1, d, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Result<EncoderOutput> {
        match self {
            Self::Plain(e) => e.forward(x),
            Self::ResnetAspp(e) => e.forward(x),
        }
    }
}

/// One resolution level: a (strided) block followed by a block at the new resolution.
#[derive(Debug, Clone)]
struct Level {
    blocks: Vec<ConvBlock>,
}

impl Level {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.blocks.iter().try_fold(x.clone(), |h, b| b.forward(&h))
    }
}

/// The `small` preset's encoder (parameters `levels.{l}.{b}.*`): level l has `widths[l]`
/// channels at 1/2^l resolution; the last level's output is the bottleneck feature.
#[derive(Debug, Clone)]
pub struct PlainEncoder {
    levels: Vec<Level>,
}

impl PlainEncoder {
    /// Builds the encoder of `cfg.small`: level 0 is one 3×3×3 block from one input channel;
    /// every further level halves the resolution with a stride-2 block and adds one more block.
    pub fn new(cfg: &SegmenterConfig, vb: VarBuilder) -> Result<Self> {
        let slope = cfg.negative_slope;
        let mut levels = Vec::with_capacity(cfg.small.widths.len());
        let mut ci = 1;
        for (l, &co) in cfg.small.widths.iter().enumerate() {
            let vb = vb.pp("levels").pp(l);
            let blocks = if l == 0 {
                vec![ConvBlock::new(ci, co, 3, 1, slope, vb.pp(0))?]
            } else {
                vec![
                    ConvBlock::new(ci, co, 3, 2, slope, vb.pp(0))?,
                    ConvBlock::new(co, co, 3, 1, slope, vb.pp(1))?,
                ]
            };
            levels.push(Level { blocks });
            ci = co;
        }
        Ok(Self { levels })
    }

    /// Encodes `x [b, 1, d, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Result<EncoderOutput> {
        let mut skips = Vec::with_capacity(self.levels.len());
        let mut h = x.clone();
        for level in &self.levels {
            h = level.forward(&h)?;
            skips.push(h.clone());
        }
        let bottleneck = skips.pop().expect("the encoder has at least one level");
        Ok(EncoderOutput { skips, bottleneck })
    }
}
