//! The modality-shared encoder: one network that sees each modality's single-channel image on its
//! own and returns the skip features of every resolution level and the bottleneck feature f_m.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::SegmenterConfig;
use super::layers::ConvBlock;

/// What the encoder returns for a batch of single-channel images.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// Skip features, finest level first: level l has `widths[l]` channels at 1/2^l resolution.
    pub skips: Vec<Tensor>,
    /// The bottleneck feature f: `widths.last()` channels at the coarsest resolution.
    pub bottleneck: Tensor,
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

/// The shared encoder (parameters `levels.{l}.{b}.*`).
#[derive(Debug, Clone)]
pub struct Encoder {
    levels: Vec<Level>,
}

impl Encoder {
    /// Builds the encoder of `cfg`: level 0 is one 3×3×3 block from one input channel; every
    /// further level halves the resolution with a stride-2 block and adds one more block.
    pub fn new(cfg: &SegmenterConfig, vb: VarBuilder) -> Result<Self> {
        let slope = cfg.negative_slope;
        let mut levels = Vec::with_capacity(cfg.widths.len());
        let mut ci = 1;
        for (l, &co) in cfg.widths.iter().enumerate() {
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
