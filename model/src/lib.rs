//! Networks and numerics of MetaKD (arXiv 2405.07155): the method itself, once for every task
//! ([`method`]: fill, importance weights, pairwise distillation, training loss, meta steps,
//! modality subsets), 3D tensor ops for Candle ([`ops`]), the networks ([`nets`]), task losses
//! ([`losses`]) and optimisers ([`optim`]).

pub mod losses;
pub mod method;
pub mod nets;
pub mod ops;
pub mod optim;
