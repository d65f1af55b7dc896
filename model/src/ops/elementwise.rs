//! Shared plumbing of the CPU custom ops: borrowing contiguous `f32` slices, and the sums the
//! normalisations reduce with.

use candle_core::{backend::BackendStorage, bail, CpuStorage, Layout, Result};

/// Borrows a contiguous `f32` slice of a custom op's argument.
pub(crate) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data,
        other => bail!(
            "{op}: only f32 tensors are supported, got {:?}",
            other.dtype()
        ),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: expects contiguous tensors"),
    }
}

/// Independent accumulators of the reductions (lanes the compiler keeps in vector registers).
const LANES: usize = 8;

/// Σ f(aᵢ, bᵢ) of a pair of sums over two equally long slices, accumulated in `f64` lanes.
pub(crate) fn paired_sums(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f64, f64)) -> (f64, f64) {
    let (mut first, mut second) = ([0f64; LANES], [0f64; LANES]);
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = a_chunks.remainder().iter().zip(b_chunks.remainder());
    for (a, b) in a_chunks.zip(b_chunks) {
        for k in 0..LANES {
            let (u, v) = f(a[k], b[k]);
            first[k] += u;
            second[k] += v;
        }
    }
    for (&a, &b) in tail {
        let (u, v) = f(a, b);
        first[0] += u;
        second[0] += v;
    }
    (first.iter().sum(), second.iter().sum())
}

/// Σ v and Σ v² of `values`, in `f64`.
pub(crate) fn sum_and_squares(values: &[f32]) -> (f64, f64) {
    paired_sums(values, values, |v, _| {
        let v = f64::from(v);
        (v, v * v)
    })
}
