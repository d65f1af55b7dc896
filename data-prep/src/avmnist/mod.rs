//! AV-MNIST as SMIL built it: spoken digits of the Free Spoken Digit Dataset (speakers jackson,
//! nicolas and theo) as 20 × 20 MFCC features ([`mfcc`]), paired by digit with 28 × 28 MNIST
//! images ([`sources`]), kept as one Arrow file ([`dataset`]); or MultiBench's AV-MNIST folder of
//! `.npy` arrays (28 × 28 images, 112 × 112 spectrograms) read into the same file
//! ([`multibench`]), which can also be written from the real sources ([`spectrogram`]).

pub mod dataset;
pub mod mfcc;
pub mod multibench;
pub mod sources;
pub mod spectrogram;
