//! 3D tensor operations that Candle lacks, differentiable through Candle's autograd.
//!
//! - [`conv3d`] and [`conv_transpose3d`]: 3D convolution and transposed convolution (CPU kernels
//!   built on vol2col and `gemm`);
//! - [`instance_norm3d`] and [`standardize_weight`]: instance norm with affine parameters and
//!   weight standardisation as the MetaKD reference network uses them;
//! - [`leaky_relu`]: LeakyReLU.

mod conv3d;
mod conv3d_kernels;
mod geometry;
mod norm;

pub use conv3d::{conv3d, conv_transpose3d, Conv3dParams};
pub use geometry::Geometry;
pub use norm::{instance_norm3d, standardize_weight};

/// LeakyReLU with the given negative slope.
pub fn leaky_relu(x: &candle_core::Tensor, slope: f64) -> candle_core::Result<candle_core::Tensor> {
    candle_nn::ops::leaky_relu(x, slope)
}
