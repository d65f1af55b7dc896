//! The run folder and what it holds: the configuration ([`config`]) and its range checks
//! ([`checks`]), the case splits ([`splits`], written by [`split_files`]), the network with its
//! importance logits ([`model`]), the training checkpoint ([`checkpoint`]), the compute device
//! ([`device`]) and the folder's ownership ([`folder`]).

pub mod checkpoint;
pub mod checks;
pub mod config;
pub mod device;
pub mod folder;
pub mod model;
pub mod split_files;
pub mod splits;
