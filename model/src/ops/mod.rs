//! 3D tensor operations that Candle lacks, differentiable through Candle's autograd.
//!
//! - [`conv3d`] and [`conv_transpose3d`]: 3D convolution and transposed convolution (CPU kernels
//!   built on vol2col and `gemm`);
//! - [`instance_norm3d`], [`group_norm`] and [`standardize_weight`]: instance and group norm with
//!   affine parameters and weight standardisation as the MetaKD reference network uses them;
//! - LeakyReLU as one fused op, [`leaky_relu`].

mod activation;
mod conv3d;
mod conv3d_kernels;
mod elementwise;
mod geometry;
mod normalization;
mod weight_standardization;

pub use activation::leaky_relu;
pub use conv3d::{conv3d, conv_transpose3d, Conv3dParams, ConvTranspose3dParams};
pub use geometry::Geometry;
pub use normalization::{group_norm, instance_norm3d};
pub use weight_standardization::standardize_weight;
