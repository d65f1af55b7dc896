//! Mixed precision: the convolutions in bf16 inside an autocast scope, as PyTorch's
//! `torch.autocast(dtype=torch.bfloat16)` runs them.
//!
//! Inside [`autocast`]`(Precision::Bf16)`, [`super::conv`] and [`super::conv_transpose3d`]
//! round their f32 operands to bf16, convolve with f32 accumulation and round the result to bf16;
//! tensors stay f32, so everything else (norms, activations, losses, the optimiser and the
//! parameters themselves) keeps full precision. A convolution's gradients run in the precision
//! its forward pass ran in, wherever the backward pass is taken.
//!
//! On a GPU the convolutions run on cuDNN in bf16 (tensor cores); on the CPU the same rounding
//! surrounds the f32 kernels, so results agree with the GPU's up to the order of summation.

use std::cell::Cell;
use std::marker::PhantomData;

use half::bf16;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The arithmetic of the convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Full f32 throughout.
    #[default]
    F32,
    /// Operands and results of the convolutions rounded to bf16, accumulation in f32.
    Bf16,
}

impl Precision {
    /// The name used in configurations and on the command line (`f32`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Runs a convolution `f` of `a` and `b` on the CPU in this precision.
    pub(crate) fn convolve(
        self,
        a: &[f32],
        b: &[f32],
        f: impl FnOnce(&[f32], &[f32]) -> Vec<f32>,
    ) -> Vec<f32> {
        match self {
            Precision::F32 => f(a, b),
            Precision::Bf16 => {
                let mut out = f(&rounded(a), &rounded(b));
                round_in_place(&mut out);
                out
            }
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!(
                "unknown precision {other:?} (expected f32 or bf16)"
            )),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

thread_local! {
    static PRECISION: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// The precision new convolutions of this thread run in.
pub fn precision() -> Precision {
    PRECISION.with(Cell::get)
}

/// While the returned scope lives, this thread's convolutions run in `precision`; dropping it
/// restores the precision before it. Scopes nest.
#[must_use = "the precision reverts when the scope is dropped"]
pub fn autocast(precision: Precision) -> AutocastScope {
    let previous = PRECISION.with(|p| p.replace(precision));
    AutocastScope {
        previous,
        _this_thread: PhantomData,
    }
}

/// An [`autocast`] scope; it belongs to the thread that opened it.
#[derive(Debug)]
pub struct AutocastScope {
    previous: Precision,
    _this_thread: PhantomData<*const ()>,
}

impl Drop for AutocastScope {
    fn drop(&mut self) {
        PRECISION.with(|p| p.set(self.previous));
    }
}

/// `values` rounded to the nearest bf16 (ties to even), as f32.
fn rounded(values: &[f32]) -> Vec<f32> {
    let mut out = values.to_vec();
    round_in_place(&mut out);
    out
}

/// Rounds every value to the nearest bf16 (ties to even).
fn round_in_place(values: &mut [f32]) {
    values.par_chunks_mut(1 << 14).for_each(|chunk| {
        for v in chunk {
            *v = bf16::from_f32(*v).to_f32();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore_the_previous_precision() {
        assert_eq!(precision(), Precision::F32);
        {
            let _outer = autocast(Precision::Bf16);
            assert_eq!(precision(), Precision::Bf16);
            {
                let _inner = autocast(Precision::F32);
                assert_eq!(precision(), Precision::F32);
            }
            assert_eq!(precision(), Precision::Bf16);
            let other_thread = std::thread::spawn(precision).join().unwrap();
            assert_eq!(other_thread, Precision::F32);
        }
        assert_eq!(precision(), Precision::F32);
    }

    #[test]
    fn bf16_rounds_to_eight_significant_bits_ties_to_even() {
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: the even neighbour (1) wins.
        let halfway = 1.0 + 2f32.powi(-8);
        let above = 1.0 + 2f32.powi(-8) + 2f32.powi(-12);
        assert_eq!(
            rounded(&[halfway, above, 3.0]),
            [1.0, 1.0 + 2f32.powi(-7), 3.0]
        );
        let out = Precision::Bf16.convolve(&[halfway], &[1.0], |a, b| vec![a[0] * b[0] + 2e-3]);
        assert_eq!(out, [bf16::from_f32(1.002).to_f32()]);
        let exact = Precision::F32.convolve(&[halfway], &[1.0], |a, b| vec![a[0] * b[0]]);
        assert_eq!(exact, [halfway]);
    }

    #[test]
    fn precisions_parse_and_print_their_names() {
        for p in [Precision::F32, Precision::Bf16] {
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
        }
        assert!("fp16"
            .parse::<Precision>()
            .unwrap_err()
            .contains("f32 or bf16"));
    }
}
