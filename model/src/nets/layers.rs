//! Building blocks shared by the MetaKD networks: standardised convolutions, instance norm,
//! convolution blocks, residual blocks and transposed-convolution upsampling.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::ops::{self, Conv3dParams, ConvTranspose3dParams};

/// Epsilon of instance norm.
const NORM_EPS: f64 = 1e-5;
/// Epsilon of weight standardisation.
const WS_EPS: f64 = 1e-12;

/// Kaiming-normal initialisation over the fan-out, as the reference initialises convolutions.
fn kaiming_fan_out(fan_out: usize) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: (2.0 / fan_out as f64).sqrt(),
    }
}

/// A bias-free 3D convolution whose weight is standardised before use (weight `[co, ci, k, k, k]`).
#[derive(Debug, Clone)]
pub struct StandardizedConv3d {
    weight: Tensor,
    params: Conv3dParams,
}

impl StandardizedConv3d {
    /// A `kernel`³ convolution from `ci` to `co` channels with the given geometry; the parameter
    /// is named `weight`.
    pub fn new(
        ci: usize,
        co: usize,
        kernel: usize,
        params: Conv3dParams,
        vb: VarBuilder,
    ) -> Result<Self> {
        let fan_out = co * kernel * kernel * kernel;
        let weight = vb.get_with_hints(
            (co, ci, kernel, kernel, kernel),
            "weight",
            kaiming_fan_out(fan_out),
        )?;
        Ok(Self { weight, params })
    }

    /// Applies the convolution.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = ops::standardize_weight(&self.weight, WS_EPS)?;
        ops::conv3d(x, &w, self.params)
    }
}

/// Instance norm with per-channel affine parameters `weight` (1) and `bias` (0).
#[derive(Debug, Clone)]
pub struct InstanceNorm3d {
    weight: Tensor,
    bias: Tensor,
}

impl InstanceNorm3d {
    /// Instance norm over `channels` channels.
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
        })
    }

    /// Normalises `x [n, c, d, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::instance_norm3d(x, &self.weight, &self.bias, NORM_EPS)
    }

    /// Normalises `x [n, c, d, h, w]`, then applies LeakyReLU with `slope` (one fused op).
    pub fn forward_leaky_relu(&self, x: &Tensor, slope: f64) -> Result<Tensor> {
        ops::instance_norm3d_leaky_relu(x, &self.weight, &self.bias, NORM_EPS, slope)
    }
}

/// Convolution → instance norm → LeakyReLU (parameters `conv.*` and `norm.*`).
#[derive(Debug, Clone)]
pub struct ConvBlock {
    conv: StandardizedConv3d,
    norm: InstanceNorm3d,
    slope: f64,
}

impl ConvBlock {
    /// A block from `ci` to `co` channels with a `kernel`³ convolution of the given stride
    /// (padding keeps the size for odd kernels).
    pub fn new(
        ci: usize,
        co: usize,
        kernel: usize,
        stride: usize,
        slope: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let params = Conv3dParams::uniform(stride, kernel / 2, 1);
        Self::with_params(ci, co, kernel, params, slope, vb)
    }

    /// A block whose `kernel`³ convolution has the given geometry.
    pub fn with_params(
        ci: usize,
        co: usize,
        kernel: usize,
        params: Conv3dParams,
        slope: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            conv: StandardizedConv3d::new(ci, co, kernel, params, vb.pp("conv"))?,
            norm: InstanceNorm3d::new(co, vb.pp("norm"))?,
            slope,
        })
    }

    /// Applies the block.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.norm
            .forward_leaky_relu(&self.conv.forward(x)?, self.slope)
    }
}

/// Residual basic block: 3×3×3 conv → IN → LReLU → 3×3×3 conv → IN, add the input, LReLU.
#[derive(Debug, Clone)]
pub struct ResidualBlock {
    first: ConvBlock,
    conv2: StandardizedConv3d,
    norm2: InstanceNorm3d,
    slope: f64,
}

impl ResidualBlock {
    /// A block over `channels` channels (parameters `conv1.*`, `conv2.*`, `norm2.*`).
    pub fn new(channels: usize, slope: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            first: ConvBlock::new(channels, channels, 3, 1, slope, vb.pp("block1"))?,
            conv2: StandardizedConv3d::new(
                channels,
                channels,
                3,
                Conv3dParams::uniform(1, 1, 1),
                vb.pp("conv2"),
            )?,
            norm2: InstanceNorm3d::new(channels, vb.pp("norm2"))?,
            slope,
        })
    }

    /// Applies the block.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self
            .norm2
            .forward(&self.conv2.forward(&self.first.forward(x)?)?)?;
        ops::add_leaky_relu(&y, x, self.slope)
    }
}

/// A 2×2×2 stride-2 transposed convolution without bias (weight `[ci, co, 2, 2, 2]`).
#[derive(Debug, Clone)]
pub struct Upsample2x {
    weight: Tensor,
}

impl Upsample2x {
    /// Upsampling from `ci` to `co` channels.
    pub fn new(ci: usize, co: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((ci, co, 2, 2, 2), "weight", kaiming_fan_out(ci * 8))?;
        Ok(Self { weight })
    }

    /// Doubles every spatial extent of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::conv_transpose3d(x, &self.weight, ConvTranspose3dParams::stride(2))
    }
}

/// The final 1×1×1 classifier (no standardisation), with or without a bias.
#[derive(Debug, Clone)]
pub struct Classifier {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Classifier {
    /// A classifier from `ci` channels to `classes` logits, with a bias (`bias`, initialised to
    /// 0) when `with_bias`.
    pub fn new(ci: usize, classes: usize, with_bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight =
            vb.get_with_hints((classes, ci, 1, 1, 1), "weight", kaiming_fan_out(classes))?;
        let bias = with_bias
            .then(|| vb.get_with_hints(classes, "bias", Init::Const(0.0)))
            .transpose()?;
        Ok(Self { weight, bias })
    }

    /// Per-voxel logits of `x [n, ci, d, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = ops::conv3d(x, &self.weight, Conv3dParams::default())?;
        match &self.bias {
            Some(bias) => y.broadcast_add(&bias.reshape((1, (), 1, 1, 1))?),
            None => Ok(y),
        }
    }
}
