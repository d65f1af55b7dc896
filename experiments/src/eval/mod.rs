//! Evaluation of a trained run: sliding-window inference ([`inference`]), post-processing
//! ([`postprocess`]), the sweep over modality subsets into the common result table ([`sweep`]),
//! label maps of new cases ([`predict`]), scoring label files ([`label_files`]) and the case
//! slices shown in reports ([`case_slices`]).

pub mod case_slices;
pub mod inference;
pub mod label_files;
pub mod postprocess;
pub mod predict;
pub mod sweep;
