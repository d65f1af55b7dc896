//! AV-MNIST as SMIL built it: spoken digits of the Free Spoken Digit Dataset (speakers jackson,
//! nicolas and theo) as 20 × 20 MFCC features ([`mfcc`]), paired by digit with 28 × 28 MNIST
//! images ([`sources`]), kept as one Arrow file ([`dataset`]).

pub mod dataset;
pub mod mfcc;
pub mod sources;
