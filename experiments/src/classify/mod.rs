//! MetaKD on classification tasks: AV-MNIST ([`avmnist`], its protocol in [`avmnist_protocol`])
//! and modality tables ([`tables`]); each unit of their protocols is trained once and kept
//! ([`crate::units`]).

pub mod avmnist;
pub mod avmnist_protocol;
pub mod tables;
