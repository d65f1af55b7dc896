//! MetaKD itself, written once for every task (method spec, sections 2, 4, 6 and 7): the fill
//! of missing modalities ([`fill`]), the importance weights ω = softmax(w) ([`importance`]), the
//! pairwise ω-weighted distillation ([`kd`]), the training loss ([`step`]), the meta steps
//! ([`meta`]) and the modality subsets with their random draw ([`subset`]). A task — 3D
//! segmentation, AV-MNIST, modality tables — supplies its encoder, head and loss through
//! [`MetaKdTask`] ([`task`]).

pub mod fill;
pub mod importance;
pub mod kd;
pub mod meta;
pub mod step;
pub mod subset;
pub mod task;

pub use fill::{check_available, fill_missing};
pub use importance::ImportanceWeights;
pub use kd::{kd_pair_terms, pairwise_kd_loss, KdDistance, KdPairTerm, KdPairs, KdSettings};
pub use meta::{direct_meta_step, lookahead_gradient, lookahead_step, MetaModalities, MetaRule};
pub use step::{training_loss, TrainingLoss};
pub use subset::Subset;
pub use task::{MetaKdTask, TaskLoss};
