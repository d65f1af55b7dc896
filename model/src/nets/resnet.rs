//! The `reference` preset's encoder (method spec, section 3): a 3D ResNet-50 backbone of
//! bottleneck blocks, a 1×1×1 reduction and ASPP, all with standardised convolutions, instance
//! norm and LeakyReLU.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::aspp::Aspp;
use super::config::SegmenterConfig;
use super::encoding::EncoderOutput;
use super::layers::{ConvBlock, InstanceNorm3d, StandardizedConv3d};
use crate::ops::{self, Conv3dParams, Pool3dParams};

/// A standardised convolution followed by instance norm, without activation.
#[derive(Debug, Clone)]
struct ConvNorm {
    conv: StandardizedConv3d,
    norm: InstanceNorm3d,
}

impl ConvNorm {
    fn new(
        ci: usize,
        co: usize,
        kernel: usize,
        params: Conv3dParams,
        conv: VarBuilder,
        norm: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            conv: StandardizedConv3d::new(ci, co, kernel, params, conv)?,
            norm: InstanceNorm3d::new(co, norm)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(&self.conv.forward(x)?)
    }

    /// The convolution, the norm, then LeakyReLU.
    fn forward_leaky_relu(&self, x: &Tensor, slope: f64) -> Result<Tensor> {
        self.norm.forward_leaky_relu(&self.conv.forward(x)?, slope)
    }
}

/// ResNet bottleneck block: 1×1×1 → IN → LReLU → 3×3×3 (with the stride) → IN → LReLU → 1×1×1
/// (× expansion) → IN, plus the shortcut (a 1×1×1 strided projection + IN on a stage's first
/// block), then LReLU. Parameters `conv{1,2,3}.weight`, `norm{1,2,3}.*`, `shortcut.{conv,norm}.*`.
#[derive(Debug, Clone)]
struct Bottleneck {
    reduce: ConvNorm,
    spatial: ConvNorm,
    expand: ConvNorm,
    shortcut: Option<ConvNorm>,
    slope: f64,
}

impl Bottleneck {
    fn new(
        ci: usize,
        width: usize,
        expansion: usize,
        stride: usize,
        project: bool,
        slope: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let co = width * expansion;
        let unit = Conv3dParams::default();
        let shortcut = if project {
            let vb = vb.pp("shortcut");
            let params = Conv3dParams::uniform(stride, 0, 1);
            Some(ConvNorm::new(
                ci,
                co,
                1,
                params,
                vb.pp("conv"),
                vb.pp("norm"),
            )?)
        } else {
            None
        };
        Ok(Self {
            reduce: ConvNorm::new(ci, width, 1, unit, vb.pp("conv1"), vb.pp("norm1"))?,
            spatial: ConvNorm::new(
                width,
                width,
                3,
                Conv3dParams::uniform(stride, 1, 1),
                vb.pp("conv2"),
                vb.pp("norm2"),
            )?,
            expand: ConvNorm::new(width, co, 1, unit, vb.pp("conv3"), vb.pp("norm3"))?,
            shortcut,
            slope,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.reduce.forward_leaky_relu(x, self.slope)?;
        let h = self.spatial.forward_leaky_relu(&h, self.slope)?;
        let h = self.expand.forward(&h)?;
        let identity = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        ops::add_leaky_relu(&h, &identity, self.slope)
    }
}

/// The ResNet + ASPP encoder (parameters `stem.*`, `stages.{s}.{b}.*`, `reduce.*`, `aspp.*`).
/// Skip features: the stem's output (before max-pooling) and the outputs of every stage but the
/// last; the bottleneck feature f_m is the ASPP output.
#[derive(Debug, Clone)]
pub struct ResnetAsppEncoder {
    stem: ConvBlock,
    stages: Vec<Vec<Bottleneck>>,
    reduce: ConvBlock,
    aspp: Aspp,
}

impl ResnetAsppEncoder {
    /// Builds the encoder of `cfg.reference`.
    pub fn new(cfg: &SegmenterConfig, vb: VarBuilder) -> Result<Self> {
        let sizes = &cfg.reference;
        let slope = cfg.negative_slope;
        let stem_params = Conv3dParams {
            stride: [1, 2, 2],
            padding: [3, 3, 3],
            ..Conv3dParams::default()
        };
        let stem =
            ConvBlock::with_params(1, sizes.stem_width, 7, stem_params, slope, vb.pp("stem"))?;
        let mut ci = sizes.stem_width;
        let mut stages = Vec::with_capacity(sizes.stage_widths.len());
        for (s, (&width, &blocks)) in sizes.stage_widths.iter().zip(&sizes.blocks).enumerate() {
            let vb = vb.pp("stages").pp(s);
            let mut stage = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                let block =
                    Bottleneck::new(ci, width, sizes.expansion, stride, b == 0, slope, vb.pp(b))?;
                stage.push(block);
                ci = width * sizes.expansion;
            }
            stages.push(stage);
        }
        let reduce = ConvBlock::new(ci, sizes.aspp_width, 1, 1, slope, vb.pp("reduce"))?;
        let aspp = Aspp::new(
            sizes.aspp_width,
            sizes.aspp_width,
            &sizes.aspp_dilations,
            slope,
            vb.pp("aspp"),
        )?;
        Ok(Self {
            stem,
            stages,
            reduce,
            aspp,
        })
    }

    /// Encodes `x [b, 1, d, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Result<EncoderOutput> {
        let stem = self.stem.forward(x)?;
        let mut h = ops::max_pool3d(&stem, Pool3dParams::cubic(3, 2, 1))?;
        let mut skips = vec![stem];
        for stage in &self.stages {
            h = stage.iter().try_fold(h, |h, block| block.forward(&h))?;
            skips.push(h.clone());
        }
        // The deepest stage feeds the ASPP head instead of a skip connection.
        let deepest = skips.pop().expect("at least one stage");
        let bottleneck = self.aspp.forward(&self.reduce.forward(&deepest)?)?;
        Ok(EncoderOutput { skips, bottleneck })
    }
}
