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
pub(crate) const LANES: usize = 8;

/// Σ v and Σ v² of `values`, in `f64`.
pub(crate) fn sum_and_squares(values: &[f32]) -> (f64, f64) {
    let (mut sum, mut squares) = ([0f64; LANES], [0f64; LANES]);
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for k in 0..LANES {
            let v = f64::from(chunk[k]);
            sum[k] += v;
            squares[k] += v * v;
        }
    }
    for &v in tail {
        sum[0] += f64::from(v);
        squares[0] += f64::from(v) * f64::from(v);
    }
    (sum.iter().sum(), squares.iter().sum())
}
