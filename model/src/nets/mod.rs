//! The MetaKD networks, one part per file: the shared [`encoder`], the fusing [`decoder`], their
//! [`layers`], and the [`segmenter`] that joins them.

pub mod config;
pub mod decoder;
pub mod encoder;
pub mod init;
pub mod layers;
pub mod segmenter;

pub use config::{FillSkips, SegmenterConfig};
pub use segmenter::{MetaKdSegmenter, ModalityFeatures};
