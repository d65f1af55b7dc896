//! What every encoder of the segmentation networks returns.

use candle_core::Tensor;

/// What an encoder returns for a batch of single-channel images.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// Skip features, finest level first.
    pub skips: Vec<Tensor>,
    /// The bottleneck feature f.
    pub bottleneck: Tensor,
}
