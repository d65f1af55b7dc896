//! Training batches: crops drawn from prepared cases ([`sampler`]), their augmentation
//! ([`augment`]) and the background loader that assembles them ([`loader`]).

pub mod augment;
pub mod loader;
pub mod sampler;
