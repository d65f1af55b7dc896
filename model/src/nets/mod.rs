//! The MetaKD networks, one part per file: the shared [`encoder`]s (plain for `small`, the
//! [`resnet`] backbone with [`aspp`] for `reference`), the fusing [`decoder`], their [`layers`],
//! and the [`segmenter`] that joins them; the two-modality [`classifier`] (AV-MNIST) and the
//! [`tabular`] classifier of modality tables (ADNI).

pub mod aspp;
pub mod classifier;
pub mod config;
pub mod decoder;
pub mod encoder;
pub mod encoding;
pub mod fused_head;
pub mod init;
pub mod layers;
pub mod resnet;
pub mod segmenter;
pub mod tabular;

pub use config::{FillSkips, Preset, ReferenceSizes, SegmenterConfig, SmallSizes};
pub use segmenter::{MetaKdSegmenter, ModalityFeatures};
