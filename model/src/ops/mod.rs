//! 3D tensor operations that Candle lacks, differentiable through Candle's autograd.
//!
//! - [`conv3d`] and [`conv_transpose3d`]: 3D convolution and transposed convolution (CPU kernels
//!   built on vol2col and `gemm`, in `conv/`);
//! - [`instance_norm3d`], [`group_norm`] and [`standardize_weight`]: instance and group norm with
//!   affine parameters and weight standardisation as the MetaKD reference network uses them;
//! - [`max_pool3d`], [`avg_pool3d`] and [`global_avg_pool3d`]: 3D pooling;
//! - [`upsample_trilinear3d`] and [`upsample_nearest3d`]: resampling with PyTorch's coordinates;
//! - [`add_channel_bias`]: a per-channel bias with a fast weight gradient, and [`channel_sums`];
//! - LeakyReLU as one fused op, [`leaky_relu`], also after instance norm
//!   ([`instance_norm3d_leaky_relu`]) or after a residual sum ([`add_leaky_relu`]);
//! - mixed precision: the convolutions in bf16 inside an [`autocast`] scope.
//!
//! Each op runs on the CPU, and with the `cuda` feature on CUDA devices too: the convolutions on
//! cuDNN's N-d convolution, the others on kernels of `model/cuda/ops.cu` ([`cuda`]); [`profile`]
//! times them op by op.

mod activation;
pub mod autocast;
mod channel_bias;
mod conv;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "cuda")]
pub mod cudnn;
mod elementwise;
mod normalization;
mod pooling;
pub mod profile;
mod resample;
mod transpose;
mod weight_standardization;

pub use activation::{add_leaky_relu, leaky_relu};
pub use autocast::{autocast, Precision};
pub use channel_bias::{add_channel_bias, channel_sums};
pub use conv::geometry::Geometry;
pub use conv::{conv3d, conv_transpose3d, Conv3dParams, ConvTranspose3dParams};
pub(crate) use elementwise::contiguous_f32;
pub use normalization::{group_norm, instance_norm3d, instance_norm3d_leaky_relu};
pub use pooling::{avg_pool3d, global_avg_pool3d, max_pool3d, Pool3dParams};
pub use resample::{
    resample3d, upsample_nearest3d, upsample_trilinear3d, ResampleMode, ResampleTo,
};
pub use weight_standardization::standardize_weight;
