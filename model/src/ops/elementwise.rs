//! Shared plumbing of the CPU custom ops: borrowing contiguous `f32` slices.

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
