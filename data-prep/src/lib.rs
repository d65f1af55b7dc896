//! Data preparation for MetaKD: synthetic BraTS-like releases ([`synth`]), NIfTI reading and
//! writing ([`nifti_io`]), BraTS release layouts ([`release`], [`brats`], [`metadata`]),
//! preprocessing as the reference implementation does it ([`preprocess`]), checksummed Arrow IPC
//! shards with their manifest ([`shards`]) and the resumable [`prepare`] stage.

pub mod adni;
pub mod avmnist;
pub mod brats;
pub mod digest;
pub mod error;
pub mod files;
pub mod lock;
pub mod metadata;
pub mod modality;
pub mod nifti_io;
pub mod prepare;
pub mod preprocess;
pub mod release;
pub mod shards;
pub mod synth;

pub use error::{DataError, Result};
pub use modality::Modality;
