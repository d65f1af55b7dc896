//! Shared plumbing of the CPU custom ops: borrowing contiguous `f32` slices, the sums the
//! normalisations reduce with, and element-wise maps.
//!
//! The reductions and maps are compiled several times, for AVX-512, for AVX2 + FMA and for the
//! baseline, and the widest the CPU supports is chosen at run time (`multiversion`); the closures
//! they take are inlined into each version. The build itself targets the baseline, so one binary
//! runs everywhere.

use std::mem::{ManuallyDrop, MaybeUninit};

use candle_core::{backend::BackendStorage, bail, CpuStorage, Layout, Result};
use multiversion::multiversion;
use rayon::prelude::*;

/// Elements per parallel work item of the element-wise ops.
const CHUNK: usize = 1 << 14;

/// An output buffer of `len` elements that is written before it is read. Unlike
/// `vec![0.0; len]` it costs no pass over memory; [`assume_written`] turns it into data.
pub(crate) fn output_buffer(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut buffer = Vec::with_capacity(len);
    buffer.resize_with(len, MaybeUninit::uninit);
    buffer
}

/// The data of an [`output_buffer`].
///
/// # Safety
///
/// Every element of `buffer` has been written.
pub(crate) unsafe fn assume_written(buffer: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut buffer = ManuallyDrop::new(buffer);
    let (ptr, len, capacity) = (buffer.as_mut_ptr(), buffer.len(), buffer.capacity());
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, the allocation is handed over
    // unchanged, and the caller guarantees that every element is initialised.
    unsafe { Vec::from_raw_parts(ptr.cast::<f32>(), len, capacity) }
}

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

/// Elements whose terms are computed (in `f32`) before they are added (in `f64`).
const BLOCK: usize = 256;

/// Adds `g(values)` (in `f64`) to the lanes `acc`, value `i` to lane `i % LANES`.
#[inline(always)]
fn accumulate(acc: &mut [f64; LANES], values: &[f32], g: impl Fn(f64) -> f64) {
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for k in 0..LANES {
            acc[k] += g(f64::from(chunk[k]));
        }
    }
    for (k, &v) in tail.iter().enumerate() {
        acc[k] += g(f64::from(v));
    }
}

/// Σ f(aᵢ, bᵢ) of a pair of sums over two equally long slices. Each term is computed in `f32`
/// and added in `f64` lanes: a block's terms are computed first (a loop without a reduction,
/// which the compiler vectorises whatever `f` branches on), then added.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(crate) fn paired_sums<F>(a: &[f32], b: &[f32], f: F) -> (f64, f64)
where
    F: Fn(f32, f32) -> (f32, f32),
{
    let (mut first, mut second) = ([0f64; LANES], [0f64; LANES]);
    let (mut u, mut v) = ([0f32; BLOCK], [0f32; BLOCK]);
    for (a, b) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let n = a.len().min(b.len());
        let terms = u[..n].iter_mut().zip(&mut v[..n]).zip(a.iter().zip(b));
        for ((u, v), (&a, &b)) in terms {
            (*u, *v) = f(a, b);
        }
        accumulate(&mut first, &u[..n], |u| u);
        accumulate(&mut second, &v[..n], |v| v);
    }
    (first.iter().sum(), second.iter().sum())
}

/// Σ v and Σ v² of `values`, in `f64` (the squares too), block by block: one pass for the sum and
/// one for the squares while the block is in cache.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(crate) fn sum_and_squares(values: &[f32]) -> (f64, f64) {
    let (mut sum, mut squares) = ([0f64; LANES], [0f64; LANES]);
    for block in values.chunks(BLOCK) {
        accumulate(&mut sum, block, |v| v);
        accumulate(&mut squares, block, |v| v * v);
    }
    (sum.iter().sum(), squares.iter().sum())
}

/// `y[i] = f(x[i])`, writing every element of `y` (the lengths must be equal).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(crate) fn map_into<F>(y: &mut [MaybeUninit<f32>], x: &[f32], f: F)
where
    F: Fn(f32) -> f32,
{
    assert_eq!(y.len(), x.len(), "map_into: lengths differ");
    for (y, &x) in y.iter_mut().zip(x) {
        y.write(f(x));
    }
}

/// `y[i] = f(a[i], b[i])`, writing every element of `y` (the lengths must be equal).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(crate) fn zip_map_into<F>(y: &mut [MaybeUninit<f32>], a: &[f32], b: &[f32], f: F)
where
    F: Fn(f32, f32) -> f32,
{
    assert!(
        y.len() == a.len() && y.len() == b.len(),
        "zip_map_into: lengths differ"
    );
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        y.write(f(a, b));
    }
}

/// `f(x[i])` for every element, in parallel chunks.
pub(crate) fn par_map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut y = output_buffer(x.len());
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| map_into(y, x, &f));
    // SAFETY: the output's chunks match the input's one for one, and map_into wrote each whole.
    unsafe { assume_written(y) }
}

/// `f(a[i], b[i])` for every element of two equally long slices, in parallel chunks.
pub(crate) fn par_zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "par_zip_map: lengths differ");
    let mut y = output_buffer(a.len());
    y.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(y, (a, b))| zip_map_into(y, a, b, &f));
    // SAFETY: the inputs are equally long, so the output's chunks match theirs one for one, and
    // zip_map_into wrote each whole.
    unsafe { assume_written(y) }
}

/// Adds to `dst` the buffers that `parts` parallel calls of `fill(part, buffer)` fill, each from
/// zeros: per-thread accumulators of a reduction. They are added in the order of the parts, so
/// the result depends only on `parts`.
pub(crate) fn add_parts(dst: &mut [f32], parts: usize, fill: impl Fn(usize, &mut [f32]) + Sync) {
    let partial: Vec<Vec<f32>> = (0..parts)
        .into_par_iter()
        .map(|part| {
            let mut acc = vec![0f32; dst.len()];
            fill(part, &mut acc);
            acc
        })
        .collect();
    dst.par_chunks_mut(CHUNK).enumerate().for_each(|(i, dst)| {
        for acc in &partial {
            for (d, a) in dst.iter_mut().zip(&acc[i * CHUNK..]) {
                *d += a;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values with a remainder after the lanes, so both the vector body and the tail run.
    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect()
    }

    #[test]
    fn sums_match_a_naive_loop() {
        let (a, b) = (
            values(1003),
            values(1003).into_iter().rev().collect::<Vec<_>>(),
        );
        let (s, q) = sum_and_squares(&a);
        let naive: (f64, f64) = a.iter().fold((0.0, 0.0), |(s, q), &v| {
            (s + f64::from(v), q + f64::from(v) * f64::from(v))
        });
        assert!((s - naive.0).abs() < 1e-9 && (q - naive.1).abs() < 1e-9);
        let (u, v) = paired_sums(&a, &b, |a, b| (a * b, a - b));
        let naive = a.iter().zip(&b).fold((0.0, 0.0), |(u, v), (&a, &b)| {
            (u + f64::from(a * b), v + f64::from(a - b))
        });
        assert!((u - naive.0).abs() < 1e-6 && (v - naive.1).abs() < 1e-9);
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn a_map_refuses_an_output_it_would_not_fill() {
        map_into(&mut output_buffer(8), &values(7), |x| x);
    }

    #[test]
    fn maps_apply_their_function_to_every_element() {
        let (a, b) = (values(37), values(37).into_iter().rev().collect::<Vec<_>>());
        let mut y = output_buffer(37);
        map_into(&mut y, &a, |x| x.max(0.0) * 2.0);
        // SAFETY: map_into wrote all 37 elements.
        let mapped = unsafe { assume_written(y) };
        assert!(mapped.iter().zip(&a).all(|(y, a)| *y == a.max(0.0) * 2.0));
        let mut y = output_buffer(37);
        zip_map_into(&mut y, &a, &b, |a, b| a * b - 1.0);
        // SAFETY: zip_map_into wrote all 37 elements.
        let zipped = unsafe { assume_written(y) };
        assert!(zipped
            .iter()
            .zip(a.iter().zip(&b))
            .all(|(y, (a, b))| *y == a * b - 1.0));
    }

    #[test]
    fn parts_are_added_to_what_the_destination_holds() {
        let mut dst = vec![1f32; 3 * CHUNK + 5];
        add_parts(&mut dst, 3, |part, acc| {
            acc.iter_mut().for_each(|a| *a = part as f32 + 1.0)
        });
        assert!(dst.iter().all(|&d| d == 7.0));
    }
}
