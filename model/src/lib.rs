//! Networks and numerics of MetaKD (arXiv 2405.07155): 3D tensor ops for Candle ([`ops`]), the
//! segmentation network ([`nets`]), fill, importance weights and pairwise distillation
//! ([`metakd`]), task losses ([`losses`]) and optimisers ([`optim`]).

pub mod losses;
pub mod metakd;
pub mod nets;
pub mod ops;
pub mod optim;
