//! Data preparation for MetaKD: synthetic BraTS-like phantoms ([`synth`]), NIfTI reading and
//! writing ([`nifti_io`]), BraTS case discovery ([`brats`]), preprocessing ([`preprocess`]) and
//! Arrow IPC shards with their manifest ([`shards`]).

pub mod brats;
pub mod error;
pub mod modality;
pub mod nifti_io;
pub mod prepare;
pub mod preprocess;
pub mod shards;
pub mod synth;

pub use error::{DataError, Result};
pub use modality::Modality;
